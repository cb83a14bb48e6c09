"""Recording a take in Jupyter: the kernel's microphone, the browser's, or an upload.

Three sources, one result: a :class:`~workbench.audio.Recording` of ``(n,)``
float32 samples at 16 kHz, handed to the callbacks registered with
``on_recording`` / ``on_take``.

- :class:`~workbench.ui.kernel_recorder.KernelRecorder` records with the
  microphone of the computer that runs the kernel (sounddevice/PortAudio).
- :class:`BrowserRecorder` records with the microphone of the computer in front
  of the user (JupyterHub, Colab, a remote server). ``static/recorder.js`` takes
  the microphone with getUserMedia, resamples to 16 kHz mono int16 in the page
  and sends one custom message per second of audio (32 KB, far below Jupyter's
  10 MB message limit), numbered. The widget only carries the messages: a
  :class:`workbench.takes.TakeProtocol` puts the take back together, hands it on
  and answers the page. Audio never goes into a synced trait, so it cannot end
  up in a saved notebook, and the chunks are dropped once the take is delivered.
- Upload (an ``ipywidgets.FileUpload``), the last fallback: :func:`load_upload`.

:func:`recorder` picks the kernel's microphone when there is one, else the
browser's, and always offers the others as fallbacks.

A take is checked once: a callback that saves it (a prompt session) returns the
:class:`~workbench.audio.QualityReport` the corpus decided, and the recorders
show that report; only a take nobody saved is checked by the recorder itself.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from workbench._deprecated import renamed_fields, renamed_keywords
from workbench._optional import require
from workbench.audio import QualityReport, Recording
from workbench.constants import SAMPLE_RATE
from workbench.corpus import load_one_upload
from workbench.errors import MicrophoneError, WorkbenchError
from workbench.takes import (
    Buffer,
    ErrorCallback,
    TakeCallback,
    TakeProtocol,
    hand_over,
    received_message,
)
from workbench.ui._render import error_html
from workbench.ui.kernel_recorder import InputDevice, KernelRecorder

anywidget = require("anywidget", extra="ui", purpose="record with the browser's microphone")
traitlets = require("traitlets", extra="ui", purpose="record with the browser's microphone")

__all__ = [
    "BrowserRecorder",
    "Recorder",
    "load_upload",
    "recorder",
]

_STATIC = Path(__file__).parent / "static"


# --------------------------------------------------------------------------- #
# The browser's microphone (anywidget)
# --------------------------------------------------------------------------- #


def _from_protocol(name: str, doc: str) -> property:
    """A read-only attribute of the widget that is its :class:`~workbench.takes.TakeProtocol`'s."""
    return property(lambda self: getattr(self.protocol, name), doc=doc)


@renamed_fields(max_seconds="max_s", chunk_seconds="chunk_s")  # old names: a warning, until the next release
class BrowserRecorder(anywidget.AnyWidget):
    """Record with the browser's microphone; the take arrives in the kernel at 16 kHz.

    The page (``static/recorder.js``) resamples to 16 kHz int16 and sends
    numbered one-second chunks as custom messages; :meth:`handle_message` gives
    them to :attr:`protocol` (a :class:`~workbench.takes.TakeProtocol`), which
    reassembles them, calls the ``on_recording`` callbacks and answers the page
    with the plain-language result through this widget's comm. No audio is ever
    held in a synced trait (so none is saved with the notebook), and the chunks
    are dropped once the take is delivered.

    Browsers allow the microphone only in a secure context: an ``https://``
    page, or ``http://localhost``. Elsewhere the page says so and suggests the upload.

    Args:
        on_recording: optional callback ``fn(recording)``.
        max_s: the page stops by itself after this long.

    Attributes:
        protocol: the take protocol; :attr:`recording`, :attr:`report`, :attr:`error` and
            :attr:`receiving` are its (``protocol.input_rate``: the page's rate, for diagnostics).
    """

    # Strings, not paths: anywidget keeps a class-level file watcher (hot reload) with a strong
    # reference to every widget whose _esm is a path, so each recorder would never be freed.
    _esm = (_STATIC / "recorder.js").read_text(encoding="utf-8")
    _css = (_STATIC / "recorder.css").read_text(encoding="utf-8")
    max_s = traitlets.Float(60.0).tag(sync=True)
    chunk_s = traitlets.Float(1.0).tag(sync=True)  # audio per message: 1 s = 32 KB
    disabled = traitlets.Bool(False).tag(sync=True)
    # the take's state is the protocol's; read-only here
    recording = _from_protocol("recording", "The last take received (a Recording at 16 kHz), kernel memory only.")
    report = _from_protocol("report", "The last take's QualityReport: the one that decided it.")
    error = _from_protocol("error", "The last problem (browser or transfer) in plain language, else None.")
    receiving = _from_protocol("receiving", "True while chunks of a take are being collected.")
    _assembler = _from_protocol("assembler", "The chunks being received, None between takes.")

    def __init__(self, on_recording: TakeCallback | None = None, *, max_s: float = 60.0,
                 **kwargs: Any) -> None:
        super().__init__(max_s=float(max_s), **kwargs)
        self.protocol = TakeProtocol(self._reply, max_s=self.max_s)
        self.observe(lambda change: setattr(self.protocol, "max_s", float(change["new"])), names="max_s")
        if on_recording is not None:
            self.protocol.on_recording(on_recording)
        self.on_msg(self._on_custom_msg)

    @property
    def show_quality(self) -> bool:
        """Whether the page is told what the quality check found (False: a prompt session says it)."""
        return self.protocol.show_quality

    @show_quality.setter
    def show_quality(self, value: bool) -> None:
        self.protocol.show_quality = bool(value)

    def on_recording(self, fn: TakeCallback) -> TakeCallback:
        """Call ``fn(recording)`` with every take received. Returns ``fn``."""
        return self.protocol.on_recording(fn)

    def on_error(self, fn: ErrorCallback) -> ErrorCallback:
        """Call ``fn(code, message)`` when the browser or the transfer fails. Returns ``fn``."""
        return self.protocol.on_error(fn)

    def _on_custom_msg(self, _widget: object, content: object, buffers: Sequence[Buffer]) -> None:
        self.handle_message(content, buffers)

    def handle_message(self, content: object, buffers: Sequence[Buffer] = ()) -> Recording | None:
        """Handle one message from the page (what the comm delivers; tests call it directly).

        Returns:
            The finished :class:`~workbench.audio.Recording` on ``"stop"``, else None.
        """
        return self.protocol.handle_message(content, buffers)

    def _reply(self, content: dict[str, object]) -> None:
        if self.comm is not None:
            self.send(content)


# --------------------------------------------------------------------------- #
# Upload, and the helper that picks a source
# --------------------------------------------------------------------------- #


def load_upload(value: object) -> tuple[Recording, str]:
    """The first file of an ``ipywidgets.FileUpload`` value as a 16 kHz :class:`Recording`.

    Reading it is :func:`workbench.corpus.load_one_upload`, as for the app's upload buttons;
    this only takes the file out of the widget's value. Any ending the widget lets through
    (``audio/*``) is tried.

    Args:
        value: the widget's ``value`` (ipywidgets 8: a tuple of dicts with
            ``name`` and ``content``; ipywidgets 7: a dict by name), or raw bytes.

    Returns:
        ``(recording, file name)``.

    Raises:
        AudioError: nothing uploaded, or not a readable recording.
    """
    name, content = _first_file(value)
    return load_one_upload(name, content, suffixes=None), name or "the upload"


def _first_file(value: object) -> tuple[str | None, Buffer | None]:
    """``(name, bytes)`` of the first file in a FileUpload value (either ipywidgets shape); name None for raw bytes."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return None, value
    item: object = None
    if isinstance(value, dict) and value:
        if "content" in value:
            item = value
        else:
            name, item = next(iter(value.items()))
            if not isinstance(item, dict):
                return str(name), item if isinstance(item, (bytes, bytearray, memoryview)) else None
            item = {"name": name, **item}
    elif isinstance(value, (tuple, list)) and value:
        item = value[0]
    if not isinstance(item, dict):
        return None, None
    content = item.get("content")
    return str(item.get("name", "the upload")), content if isinstance(content, (bytes, bytearray, memoryview)) else None


_PREFER = ("auto", "kernel", "browser", "upload")


@renamed_fields(max_seconds="max_s")
class Recorder:
    """One place to get a take: the kernel's microphone if it has one, else the browser's; upload always.

    Args:
        on_recording: optional callback ``fn(recording)`` for every take (16 kHz).
        prefer: ``"auto"`` (kernel microphone when available, else browser),
            ``"kernel"`` (fail with a plain :class:`MicrophoneError` if none),
            ``"browser"`` or ``"upload"``.
        device: kernel input device, index or part of its name.
        max_s: longest take.
        auto_keep: deliver kernel takes as soon as they stop (no Keep button).
        stream_factory, devices, sounddevice: passed to :class:`KernelRecorder` (tests).

    Attributes:
        kernel: the :class:`KernelRecorder`, or None.
        kernel_problem: why there is none (plain language), or None.
        source: ``"kernel"``, ``"browser"`` or ``"upload"``: what the view offers first.
        last: the last take delivered; ``last_source`` says where it came from.
        report: the :class:`~workbench.audio.QualityReport` a callback that saved the last
            take returned (the corpus's decision), or None when none did.
    """

    def __init__(
        self,
        on_recording: TakeCallback | None = None,
        *,
        prefer: str = "auto",
        device: int | str | None = None,
        max_s: float = 60.0,
        auto_keep: bool = False,
        stream_factory: Callable[..., Any] | None = None,
        devices: Sequence[InputDevice] | None = None,
        sounddevice: Any = None,
    ) -> None:
        if prefer not in _PREFER:
            raise ValueError(f"prefer must be one of {', '.join(_PREFER)}; got {prefer!r}.")
        self.max_s = float(max_s)
        self.kernel: KernelRecorder | None = None
        self.kernel_problem: str | None = None
        if prefer in ("auto", "kernel"):
            try:
                self.kernel = KernelRecorder(device, max_s=max_s, auto_keep=auto_keep,
                                             stream_factory=stream_factory, devices=devices, sounddevice=sounddevice)
            except MicrophoneError as err:
                if prefer == "kernel":
                    raise
                self.kernel_problem = str(err)
        self.source = "kernel" if self.kernel is not None else ("upload" if prefer == "upload" else "browser")
        self.last: Recording | None = None
        self.last_source: str | None = None
        self.report: QualityReport | None = None
        self.message = ""
        self._show_quality = True
        self._browser: BrowserRecorder | None = None
        self._callbacks: list[TakeCallback] = []
        self._view: Any = None
        if on_recording is not None:
            self._callbacks.append(on_recording)
        if self.kernel is not None:
            self.kernel.on_take(lambda rec: self._hand_over(rec, "kernel"))

    @property
    def browser(self) -> BrowserRecorder:
        """The browser recorder (made on first use)."""
        if self._browser is None:
            self._browser = BrowserRecorder(max_s=self.max_s)
            self._browser.show_quality = self._show_quality
            self._browser.on_recording(lambda rec: self._hand_over(rec, "browser"))
        return self._browser

    @property
    def show_quality(self) -> bool:
        """Whether the recorder shows the quality check itself (default True).

        A :class:`~workbench.ui.session.PromptSession` sets it to False: its own message
        says whether the take was saved and why not, so the problem is shown once.
        """
        return self._show_quality

    @show_quality.setter
    def show_quality(self, value: bool) -> None:
        self._show_quality = bool(value)
        for rec in (self.kernel, self._browser):
            if rec is not None:
                rec.show_quality = self._show_quality

    def on_recording(self, fn: TakeCallback) -> TakeCallback:
        """Call ``fn(recording)`` with every take, whatever its source. Returns ``fn``.

        A callback that saves the take returns the :class:`~workbench.audio.QualityReport` it
        decided; the recorders show that report instead of checking the take again.
        """
        self._callbacks.append(fn)
        return fn

    def deliver(self, recording: Recording, source: str = "program") -> Recording:
        """Hand a take to the callbacks, as the recorders do (a notebook can also feed one).

        Sets :attr:`report` to the report a callback that saved the take returned, else None.
        """
        if recording.sample_rate != SAMPLE_RATE:
            recording = recording.resampled(SAMPLE_RATE)
        self.last, self.last_source, self.report = recording, source, None
        self.report = hand_over(recording, self._callbacks)
        return recording

    def _hand_over(self, recording: Recording, source: str) -> QualityReport | None:
        """:meth:`deliver` for the kernel and browser recorders: they show the report that decided."""
        self.deliver(recording, source)
        return self.report

    def receive_upload(self, value: object) -> Recording:
        """Load an upload (see :func:`load_upload`), deliver it, say what was found; sets :attr:`message`."""
        rec, name = load_upload(value)
        self.deliver(rec, "upload")
        if not self._show_quality:
            self.message = f"{name}: {received_message(rec)}"
        else:  # the report of whoever saved it, else the recorder's own check
            self.message = f"{name}: {(self.report or rec.quality()).message}"
        return rec

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        if self._view is None:
            self._view = self.widget()
        return self._view._repr_mimebundle_(**kwargs)

    def widget(self) -> Any:
        """The view: the preferred recorder first, the others under it."""
        w = require("ipywidgets", extra="ui", purpose="show the recorder")
        upload = w.FileUpload(accept=".wav,.flac,.ogg,audio/*", multiple=False, description="Upload")
        upload_msg = w.HTML()

        def on_upload(change: Any) -> None:
            if not change["new"]:
                return
            try:
                self.receive_upload(change["new"])
                upload_msg.value = html.escape(self.message)
            except WorkbenchError as err:
                upload_msg.value = error_html(str(err))
            finally:
                upload.value = ()  # the file's bytes leave the widget state at once

        upload.observe(on_upload, names="value")
        upload_box = w.VBox([w.HBox([w.Label("Or upload a recording (WAV, FLAC or OGG):"), upload]), upload_msg])
        if self.source == "kernel":
            assert self.kernel is not None
            others = w.Accordion([w.VBox([w.Label("The browser's microphone:"), self.browser, upload_box])])
            others.set_title(0, "Other ways to record")
            others.selected_index = None
            return w.VBox([self.kernel.widget(), others])
        notice = []
        if self.kernel_problem:
            notice = [w.HTML(f"<div style='padding:4px 0;color:#555'>{html.escape(self.kernel_problem)}</div>")]
        if self.source == "upload":
            return w.VBox(notice + [upload_box])
        return w.VBox(notice + [self.browser, upload_box])


@renamed_keywords(max_seconds="max_s")
def recorder(
    on_recording: TakeCallback | None = None,
    *,
    prefer: str = "auto",
    device: int | str | None = None,
    max_s: float = 60.0,
    auto_keep: bool = False,
) -> Recorder:
    """A :class:`Recorder`: the kernel's microphone if there is one, else the browser's, upload always.

    Shown as a widget when it is the last thing in a notebook cell::

        rec = recorder()
        rec            # record, then: rec.last.audio  (float32, 16 kHz)
    """
    return Recorder(on_recording, prefer=prefer, device=device, max_s=max_s, auto_keep=auto_keep)
