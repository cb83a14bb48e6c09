"""A file upload for the app that checks sizes in the browser and sends files in small pieces.

Panel's ``FileInput`` sends every chosen file in one websocket message. One over the
server's message limit closes the connection: the page still looks alive, but nothing
the person does afterwards reaches the server (a take recorded next is not saved).

:class:`FileUpload` instead refuses, in the browser, a file over
:data:`MAX_FILE_BYTES` or an upload over :data:`MAX_TOTAL_BYTES` (the server is
told only the names and sizes, and the page shows why), and sends the rest in
pieces of :data:`CHUNK_BYTES` (base64 in Panel's custom messages, like the
recorder), a few at a time: the server acknowledges each piece. The server checks
the sizes again (a page can be tampered with) and hands ``[(file name, bytes)]``
to the ``on_files`` callbacks. File names are text only, never paths.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from typing import Any

import panel as pn
import param

__all__ = ["CHUNK_BYTES", "MAX_FILE_BYTES", "MAX_TOTAL_BYTES", "FileUpload", "size_problem"]

MAX_FILE_BYTES = 100 * 1024 * 1024  # one recording: 10 minutes of 48 kHz stereo WAV is 110 MB
MAX_TOTAL_BYTES = 400 * 1024 * 1024  # one upload of many recordings
CHUNK_BYTES = 512 * 1024  # per message (~0.7 MB as base64), far below the server's message limit
_WINDOW = 8  # pieces in flight before the page waits for the server

_ESM = r"""
function b64(buf) {
  const bytes = new Uint8Array(buf);
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

export function render({ model, el }) {
  const label = document.createElement("label");
  label.className = "wb-upload";
  const title = document.createElement("span");
  title.className = "wb-upload-title";
  const input = document.createElement("input");
  input.type = "file";
  const note = document.createElement("span");
  note.className = "wb-upload-note";
  note.setAttribute("aria-live", "polite");
  label.append(title, input, note);
  el.append(label);
  let busy = false;
  let acked = 0;
  let wake = null;
  const sync = () => {
    title.textContent = model.label;
    input.accept = model.accept || "";
    input.multiple = !!model.multiple;
    input.disabled = !!model.disabled || busy;
  };
  sync();
  for (const name of ["label", "accept", "multiple", "disabled"]) model.on(name, sync);
  model.on("msg:custom", (msg) => {
    if (msg && msg.type === "ack") { acked = msg.received; if (wake) { wake(); wake = null; } }
  });
  const waitFor = (sent) => new Promise((resolve) => {
    const check = () => { if (sent - acked < %(window)d) resolve(); else wake = check; };
    check();
  });
  const mb = (n) => (n / 1048576).toFixed(1) + " MB";
  input.addEventListener("change", async () => {
    const files = Array.from(input.files || []);
    input.value = "";  // the File objects stay readable; the same file can be chosen again
    if (!files.length || busy) return;
    const names = files.map((f) => f.name), sizes = files.map((f) => f.size);
    const total = sizes.reduce((a, b) => a + b, 0);
    const upload = Date.now().toString(36) + Math.random().toString(36).slice(2, 8);
    if (sizes.some((s) => s > model.max_file_bytes) || total > model.max_total_bytes) {
      model.send_msg({ type: "refused", upload, names, sizes });  // only names and sizes travel
      return;
    }
    busy = true; acked = 0; sync();
    model.send_msg({ type: "begin", upload, names, sizes });
    const chunk = model.chunk_bytes;
    let sent = 0, done = 0;
    try {
      for (let i = 0; i < files.length; i++) {
        for (let off = 0, seq = 0; off < files[i].size; off += chunk, seq++) {
          await waitFor(sent);
          const buf = await files[i].slice(off, off + chunk).arrayBuffer();
          model.send_msg({ type: "chunk", upload, file: i, seq, data: b64(buf) });
          sent += 1; done += buf.byteLength;
          note.textContent = "Sending… " + mb(done) + " of " + mb(total);
        }
      }
      model.send_msg({ type: "end", upload });
    } catch (err) {
      model.send_msg({ type: "failed", upload, message: String(err) });
    } finally {
      busy = false; note.textContent = ""; sync();
    }
  });
}
""".replace("%(window)d", str(_WINDOW))

_CSS = """
.wb-upload { display: flex; flex-direction: column; gap: 4px; font-size: 0.95rem; color: #212529; }
.wb-upload-title { font-weight: 500; }
.wb-upload-note { color: #495057; font-size: 0.9em; min-height: 1.2em; }
"""


def _mb(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MB"


def size_problem(names: Sequence[str], sizes: Sequence[int], *, max_file: int = MAX_FILE_BYTES,
                 max_total: int = MAX_TOTAL_BYTES) -> str | None:
    """Why an upload of files of ``sizes`` bytes is refused, in plain words; None when it is fine."""
    from workbench.corpus import upload_name

    big = [(upload_name(n), int(s)) for n, s in zip(names, sizes, strict=False) if int(s) > max_file]
    if big:
        name, size = big[0]
        more = f" (and {len(big) - 1} more)" if len(big) > 1 else ""
        return (f"{name}{more} is {_mb(size)}; one file can be at most {_mb(max_file)}. Nothing was uploaded. "
                "A recording of one sentence is usually under 5 MB: cut a long recording into sentences "
                "first.")
    total = sum(int(s) for s in sizes)
    if total > max_total:
        return (f"These {len(sizes)} files are {_mb(total)} together; one upload can be at most {_mb(max_total)}. "
                "Nothing was uploaded. Upload them in smaller groups, each with the transcript file.")
    return None


class FileUpload(pn.custom.JSComponent):
    """Choose files in the browser; ``on_files([(name, bytes), ...])`` gets them, ``on_refused(message)`` if not.

    The Python side can be driven without a browser with :meth:`receive` (what the
    page's pieces add up to) and :meth:`_handle_msg` (the page's messages).
    """

    label = param.String(default="", doc="shown above the button; also the input's accessible name")
    accept = param.String(default="", doc="file types offered in the chooser, e.g. '.wav,.flac'")
    multiple = param.Boolean(default=False)
    disabled = param.Boolean(default=False)
    max_file_bytes = param.Integer(default=MAX_FILE_BYTES, bounds=(1, None))
    max_total_bytes = param.Integer(default=MAX_TOTAL_BYTES, bounds=(1, None))
    chunk_bytes = param.Integer(default=CHUNK_BYTES, bounds=(1024, 4 * 1024 * 1024))

    _esm = _ESM
    _stylesheets = [_CSS]

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._file_callbacks: list[Callable[[list[tuple[str, bytes]]], Any]] = []
        self._refused_callbacks: list[Callable[[str], Any]] = []
        self._pending: dict[str, Any] | None = None

    def on_files(self, fn: Callable[[list[tuple[str, bytes]]], Any]) -> Callable[[list[tuple[str, bytes]]], Any]:
        """Call ``fn(files)`` with every complete upload. Returns ``fn``."""
        self._file_callbacks.append(fn)
        return fn

    def on_refused(self, fn: Callable[[str], Any]) -> Callable[[str], Any]:
        """Call ``fn(message)`` when an upload is refused or fails. Returns ``fn``."""
        self._refused_callbacks.append(fn)
        return fn

    def _refuse(self, message: str) -> None:
        self._pending = None
        for fn in list(self._refused_callbacks):
            fn(message)

    def receive(self, files: Sequence[tuple[str, bytes]]) -> bool:
        """Hand a complete upload to the callbacks, after checking its sizes; False if refused."""
        files = [(str(n), bytes(c)) for n, c in files]
        problem = size_problem([n for n, _ in files], [len(c) for _, c in files], max_file=self.max_file_bytes,
                               max_total=self.max_total_bytes)
        if problem:
            self._refuse(problem)
            return False
        for fn in list(self._file_callbacks):
            fn(files)
        return True

    def _handle_msg(self, data: Any) -> None:
        if not isinstance(data, dict):
            return
        kind, upload = data.get("type"), str(data.get("upload", ""))
        if kind == "refused":
            names, sizes = list(data.get("names") or []), list(data.get("sizes") or [])
            self._refuse(size_problem(names, [int(s) for s in sizes if isinstance(s, (int, float))],
                                      max_file=self.max_file_bytes, max_total=self.max_total_bytes)
                         or "The upload was refused by the page. Try again.")
        elif kind == "begin":
            self._begin(upload, data)
        elif kind == "chunk":
            self._chunk(upload, data)
        elif kind == "end":
            pending, self._pending = self._pending, None
            if pending is None or pending["upload"] != upload:
                return
            if [len(p) for p in pending["parts"]] != pending["sizes"]:
                self._refuse("Part of the upload went missing on the way. Nothing was added: upload it again.")
                return
            self.receive(list(zip(pending["names"], pending["parts"], strict=True)))
        elif kind == "failed":
            self._refuse(f"The browser could not read the file ({str(data.get('message', ''))[:200]}). "
                         "Nothing was added: choose it again.")

    def _begin(self, upload: str, data: dict) -> None:
        try:
            names = [str(n) for n in data.get("names") or []]
            sizes = [int(s) for s in data.get("sizes") or []]
        except (TypeError, ValueError):
            return self._refuse("The upload could not be read. Try again.")
        if not names or len(names) != len(sizes) or min(sizes) < 0:
            return self._refuse("The upload could not be read. Try again.")
        problem = size_problem(names, sizes, max_file=self.max_file_bytes, max_total=self.max_total_bytes)
        if problem:  # a page that skipped its own check
            return self._refuse(problem)
        self._pending = {"upload": upload, "names": names, "sizes": sizes, "parts": [bytearray() for _ in names],
                         "received": 0}

    def _chunk(self, upload: str, data: dict) -> None:
        pending = self._pending
        if pending is None or pending["upload"] != upload:
            return
        try:
            i = int(data.get("file", -1))
            piece = base64.b64decode(str(data.get("data", "")), validate=True)
        except (TypeError, ValueError, binascii.Error):
            return self._refuse("Part of the upload was damaged on the way. Nothing was added: upload it again.")
        if not 0 <= i < len(pending["parts"]) or len(pending["parts"][i]) + len(piece) > pending["sizes"][i]:
            return self._refuse("The upload was larger than the page said. Nothing was added: upload it again.")
        pending["parts"][i] += piece
        pending["received"] += 1
        self._send_msg({"type": "ack", "upload": upload, "received": pending["received"]})

    def clear(self) -> None:
        """Forget a half-received upload."""
        self._pending = None
