"""The browser recorder of the notebooks (``workbench/ui/static/recorder.js``), hosted in Panel.

The anywidget ESM is reused unchanged: its default export is renamed and a
small shim gives it the anywidget model API (``get``/``on``/``off``/``send``)
on top of Panel's :class:`panel.custom.JSComponent` model. Audio chunks travel
as base64 in Panel's custom messages (``model.send_msg``); the Python side hands
them to a :class:`workbench.takes.TakeProtocol`, the same code that reassembles
takes for the notebooks' recorder, and sends its answer back with
``msg:custom``. Nothing is loaded from the network: the ESM is inlined.

Browsers allow the microphone only on ``https://`` pages or ``http://localhost``
/ ``127.0.0.1``; elsewhere the recorder says so and the upload remains.
"""

from __future__ import annotations

import base64
import binascii
import re
from pathlib import Path
from typing import Any

import panel as pn
import param

from workbench._deprecated import renamed_fields
from workbench.takes import ErrorCallback, TakeCallback, TakeProtocol

__all__ = ["PanelRecorder", "recorder_available"]

_STATIC = Path(__file__).resolve().parent.parent / "ui" / "static"
_DEFAULT_EXPORT = re.compile(r"^export\s+default\s+", re.MULTILINE)

_SHIM = r"""
// ---- workbench app: anywidget model API on a Panel JSComponent model ----
function __wbB64(buf) {
  const bytes = buf instanceof ArrayBuffer ? new Uint8Array(buf)
    : new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(s);
}
function __wbAdapter(model) {
  const wrapped = new Map();
  return {
    get: (name) => model[name],
    set: (name, value) => { model[name] = value; },
    save_changes: () => {},
    on: (name, cb) => {
      const fn = name === "msg:custom" ? (msg) => cb(msg, []) : cb;
      wrapped.set(cb, fn);
      model.on(name, fn);
    },
    off: (name, cb) => {
      if (!name || !cb) return;
      const fn = wrapped.get(cb) || cb;
      wrapped.delete(cb);
      model.off(name, fn);
    },
    send: (content, callbacks, buffers) => {
      model.send_msg({ content, buffers: (buffers || []).map(__wbB64) });
    },
  };
}
function __wbRender({ model, el }) {
  const adapter = __wbAdapter(model);
  const go = (def) => {
    const cleanup = def.render({ model: adapter, el });
    if (typeof cleanup === "function") model.on("remove", cleanup);
  };
  const d = __wbRecorder;
  if (typeof d === "function") return Promise.resolve(d()).then(go);
  go(d);
}
export default { render: __wbRender };
"""


def _esm() -> str | None:
    """recorder.js with its default export renamed, plus the shim; None if it cannot be hosted."""
    try:
        source = (_STATIC / "recorder.js").read_text(encoding="utf-8")
    except OSError:
        return None
    if len(_DEFAULT_EXPORT.findall(source)) != 1:
        return None
    return _DEFAULT_EXPORT.sub("const __wbRecorder = ", source) + _SHIM


def _css() -> list[str]:
    try:
        return [(_STATIC / "recorder.css").read_text(encoding="utf-8")]
    except OSError:
        return []


_ESM = _esm()


def recorder_available() -> bool:
    """True when the browser recorder can be shown (its ESM is installed and could be hosted)."""
    return _ESM is not None


@renamed_fields(max_seconds="max_s", chunk_seconds="chunk_s")  # old names: a warning, until the next release
class PanelRecorder(pn.custom.JSComponent):
    """Record one take with the browser's microphone; ``on_recording(recording)`` gets it at 16 kHz.

    Attributes (Python side):
        protocol: the :class:`~workbench.takes.TakeProtocol` that handles the page's messages;
            its ``report`` and ``error`` describe the last take.
    """

    max_s = param.Number(default=30.0, bounds=(1, 600), doc="the page stops by itself after this long")
    chunk_s = param.Number(default=1.0, doc="audio per message")
    disabled = param.Boolean(default=False)

    _esm = _ESM or "export function render({el}) { el.textContent = 'The recorder is not installed.' }"
    _stylesheets = _css()

    def __init__(self, on_recording: TakeCallback | None = None, **params: Any) -> None:
        super().__init__(**params)
        self.protocol = TakeProtocol(self._reply, max_s=self.max_s)
        self.param.watch(lambda event: setattr(self.protocol, "max_s", float(event.new)), "max_s")
        if on_recording is not None:
            self.protocol.on_recording(on_recording)

    def on_recording(self, fn: TakeCallback) -> TakeCallback:
        """Call ``fn(recording)`` with every take. Returns ``fn``.

        A callback that saves the take returns the :class:`~workbench.audio.QualityReport` the
        corpus decided; the page shows that report.
        """
        return self.protocol.on_recording(fn)

    def on_error(self, fn: ErrorCallback) -> ErrorCallback:
        """Call ``fn(code, message)`` when the browser or the transfer fails. Returns ``fn``."""
        return self.protocol.on_error(fn)

    def reset(self) -> None:
        """Clear the last take's message and Play button in the page (the page moved to another
        sentence); a take being recorded is left alone."""
        self._reply({"type": "reset"})

    def _reply(self, content: dict[str, object]) -> None:
        self._send_msg(content)  # looked up on each answer: tests replace it to read the answers

    def _handle_msg(self, data: object) -> None:
        if not isinstance(data, dict):
            return
        try:
            buffers = [base64.b64decode(b, validate=True) for b in data.get("buffers") or []]
        except (binascii.Error, TypeError, ValueError):
            buffers = []  # a damaged piece: the assembler reports the gap in plain words
        self.protocol.handle_message(data.get("content"), buffers)

    def close(self) -> None:
        """Drop the callbacks into the page and session: a late message from a closed page goes nowhere."""
        self.protocol.close()
