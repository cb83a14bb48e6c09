"""The browser recorder of the notebooks (``workbench/ui/static/recorder.js``), hosted in Panel.

The anywidget ESM is reused unchanged: its default export is renamed and a
small shim gives it the anywidget model API (``get``/``on``/``off``/``send``)
on top of Panel's :class:`panel.custom.JSComponent` model. Audio chunks travel
as base64 in Panel's custom messages (``model.send_msg``); the Python side hands
them to :meth:`workbench.ui.recorder.BrowserRecorder.handle_message`, the same
code that reassembles and checks takes in Jupyter, and sends its answer back
with ``msg:custom``. Nothing is loaded from the network: the ESM is inlined.

Browsers allow the microphone only on ``https://`` pages or ``http://localhost``
/ ``127.0.0.1``; elsewhere the recorder says so and the upload remains.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import panel as pn
import param

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
    """True when the browser recorder can be shown (its ESM and Python side are installed)."""
    if _ESM is None:
        return False
    try:
        from workbench.ui.recorder import BrowserRecorder  # noqa: F401
    except Exception:  # noqa: BLE001 - anywidget missing: upload only
        return False
    return True


@functools.cache
def _receiver_class() -> type:
    """:class:`~workbench.ui.recorder.BrowserRecorder` for its message handling only, never displayed.

    Its ESM is a plain string here: given the file path, anywidget ties every instance
    to the file's change signal (hot reload) with a strong reference, so no recorder,
    and no page or session it calls back into, could ever be freed.
    """
    from workbench.ui.recorder import BrowserRecorder

    return type("_Receiver", (BrowserRecorder,), {"_esm": "export default {};", "_css": "",
                                                   "__module__": __name__})


class PanelRecorder(pn.custom.JSComponent):
    """Record one take with the browser's microphone; ``on_recording(recording)`` gets it at 16 kHz.

    Attributes (Python side):
        receiver: the :class:`~workbench.ui.recorder.BrowserRecorder` whose message handling
            is reused (never displayed); its ``report`` and ``error`` describe the last take.
    """

    max_seconds = param.Number(default=30.0, bounds=(1, 600), doc="the page stops by itself after this long")
    chunk_seconds = param.Number(default=1.0, doc="audio per message")
    disabled = param.Boolean(default=False)

    _esm = _ESM or "export function render({el}) { el.textContent = 'The recorder is not installed.' }"
    _stylesheets = _css()

    def __init__(self, on_recording: Callable[[Any], Any] | None = None, **params: Any) -> None:
        super().__init__(**params)
        self.receiver = _receiver_class()(max_seconds=self.max_seconds)
        self.receiver._reply = lambda content: self._send_msg(content)  # to this page, not to a Jupyter comm
        if on_recording is not None:
            self.receiver.on_recording(on_recording)

    def on_recording(self, fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """Call ``fn(recording)`` with every take. Returns ``fn``."""
        return self.receiver.on_recording(fn)

    def on_error(self, fn: Callable[[str, str], Any]) -> Callable[[str, str], Any]:
        """Call ``fn(code, message)`` when the browser or the transfer fails. Returns ``fn``."""
        return self.receiver.on_error(fn)

    def _handle_msg(self, data: Any) -> None:
        if not isinstance(data, dict):
            return
        try:
            buffers = [base64.b64decode(b, validate=True) for b in data.get("buffers") or []]
        except (binascii.Error, TypeError, ValueError):
            buffers = []  # a damaged piece: the assembler reports the gap in plain words
        self.receiver.handle_message(data.get("content"), buffers)

    def close(self) -> None:
        """Release the hidden Jupyter widget (and its layout, which ipywidgets also keeps in a registry)."""
        receiver = self.receiver
        receiver._reply = lambda content: None  # a late message from a closed page goes nowhere
        receiver._callbacks.clear()
        receiver._error_callbacks.clear()
        for widget in (getattr(receiver, "layout", None), receiver):
            try:
                if widget is not None:
                    widget.close()
            except Exception:  # noqa: BLE001, S110 - closing twice is harmless
                pass
