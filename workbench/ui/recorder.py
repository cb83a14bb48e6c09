"""Recording a take in Jupyter: the kernel's microphone, the browser's, or an upload.

Three sources, one result: a :class:`~workbench.audio.Recording` of ``(n,)``
float32 samples at 16 kHz, handed to the callbacks registered with
``on_recording`` / ``on_take``.

- :class:`KernelRecorder` records with the microphone of the computer that runs
  the kernel (sounddevice/PortAudio): a device picker with input devices only, a
  level meter (dBFS of the last ~0.1 s block), start/stop, playback, the quality
  check of :func:`workbench.audio.check_quality` in plain language, keep or redo.
  Its stream factory is injectable, so tests feed it a fake stream.
- :class:`BrowserRecorder` records with the microphone of the computer in front
  of the user (JupyterHub, Colab, a remote server). ``static/recorder.js`` takes
  the microphone with getUserMedia, resamples to 16 kHz mono int16 in the page
  and sends one custom message per second of audio (32 KB, far below Jupyter's
  10 MB message limit), numbered; :class:`ChunkAssembler` puts them back
  together here. Audio never goes into a synced trait, so it cannot end up in a
  saved notebook, and the assembler is dropped once the take is delivered.
- Upload (an ``ipywidgets.FileUpload``), the last fallback: :func:`load_upload`.

:func:`recorder` picks the kernel's microphone when there is one, else the
browser's, and always offers the others as fallbacks.

Threads: sounddevice calls :meth:`KernelRecorder._callback` on its audio
thread, which only copies the block into a lock-protected buffer. The view's
meter thread updates widget traits (about 10 times a second); nothing is ever
printed into an Output widget from a thread.

>>> asm = ChunkAssembler("take1")
>>> asm.add(1, b"\\x00\\xc0"); asm.add(0, b"\\x00\\x40")
True
True
>>> asm.finish(n_chunks=2).tolist()
[0.5, -0.5]
"""

from __future__ import annotations

import html
import importlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from workbench._optional import require
from workbench.audio import (
    QualityReport,
    Recording,
    check_quality,
    load_audio,
    pcm16_to_float,
    resample,
)
from workbench.errors import AudioError, WorkbenchError
from workbench.ui._render import error_html

anywidget = require("anywidget", extra="ui", purpose="record with the browser's microphone")
traitlets = require("traitlets", extra="ui", purpose="record with the browser's microphone")

__all__ = [
    "BrowserRecorder",
    "ChunkAssembler",
    "InputDevice",
    "KernelRecorder",
    "MicrophoneError",
    "Recorder",
    "list_input_devices",
    "load_upload",
    "recorder",
]

_SR = 16_000  # Hz, the package's rate
_STATIC = Path(__file__).parent / "static"
_FLOOR_DBFS = -120.0  # level of digital silence, as in workbench.audio
_METER_MIN_DBFS = -60.0  # left end of the level meters

_BROWSER_HINT = (
    "If Jupyter runs on another computer (JupyterHub, Colab, a server), use the browser recorder "
    "below: it records with the microphone of the computer in front of you."
)
NO_INPUT_MESSAGE = "No microphone was found by the kernel. " + _BROWSER_HINT
NO_SOUNDDEVICE_MESSAGE = (
    "The kernel cannot use a microphone: the Python package 'sounddevice' is not installed "
    "(install it with: pip install 'workbench[ui]'). " + _BROWSER_HINT
)
NO_PORTAUDIO_MESSAGE = (
    "The kernel cannot use a microphone: the PortAudio sound library is missing (install it with: "
    "sudo apt-get install libportaudio2, or conda install -c conda-forge portaudio). " + _BROWSER_HINT
)


class MicrophoneError(WorkbenchError, RuntimeError):
    """The kernel's microphone cannot be used; ``str(err)`` says why and what to do.

    Attributes:
        reason: ``"no_sounddevice"``, ``"no_portaudio"``, ``"no_input"`` or ``"device"``.
    """

    def __init__(self, message: str, *, reason: str = "device") -> None:
        super().__init__(message)
        self.reason = reason


def _level_dbfs(x: np.ndarray) -> float:
    """Mean-square level of a block in dBFS (the convention of workbench.audio); -120 for silence."""
    if x.size == 0:
        return _FLOOR_DBFS
    power = float(np.mean(np.square(x, dtype=np.float64)))
    return float(10.0 * np.log10(max(power, 10.0 ** (_FLOOR_DBFS / 10.0))))


# --------------------------------------------------------------------------- #
# Chunks from the browser
# --------------------------------------------------------------------------- #


def _pieces(seqs: Sequence[int]) -> str:
    """0-based chunk numbers as 1-based words: [3] -> 'piece 4', [1, 2] -> 'pieces 2, 3'."""
    shown = ", ".join(str(s + 1) for s in seqs[:8]) + (", ..." if len(seqs) > 8 else "")
    return f"piece {shown}" if len(seqs) == 1 else f"pieces {shown}"


class ChunkAssembler:
    """Put one recording back together from numbered chunks of 16-bit PCM.

    Chunks may arrive in any order; an identical duplicate is ignored (counted in
    :attr:`duplicates`); a missing chunk, a duplicate with different audio or a
    wrong total is an :class:`~workbench.errors.AudioError` with a plain message.

    Args:
        take: id of the recording the chunks belong to (the browser's ``take``).
        sample_rate: rate of the samples in Hz (16000 from the browser recorder).
        max_seconds: refuse more audio than this (``None``: no limit).
    """

    def __init__(self, take: str = "", *, sample_rate: int = _SR, max_seconds: float | None = 600.0) -> None:
        self.take = take
        self.sample_rate = int(sample_rate)
        self.max_samples = None if max_seconds is None else round(max_seconds * self.sample_rate)
        self.duplicates = 0
        self._chunks: dict[int, bytes] = {}
        self._n_bytes = 0

    @property
    def n_samples(self) -> int:
        """Samples received so far (all chunks, gaps or not)."""
        return self._n_bytes // 2

    @property
    def n_chunks(self) -> int:
        """Distinct chunks received so far."""
        return len(self._chunks)

    def add(self, seq: int, data: bytes | bytearray | memoryview) -> bool:
        """Store chunk ``seq`` (0, 1, 2, ...) of little-endian int16 samples.

        Returns:
            True if stored, False for an identical duplicate.
        """
        if isinstance(seq, bool) or not isinstance(seq, (int, np.integer)) or seq < 0:
            raise AudioError(f"A piece of the recording has an invalid number ({seq!r}); record again.")
        seq = int(seq)
        buf = bytes(data)
        if len(buf) % 2:
            raise AudioError(
                f"Piece {seq + 1} of the recording is cut off ({len(buf)} bytes; 16-bit audio needs an even number). "
                "Record again."
            )
        old = self._chunks.get(seq)
        if old is not None:
            if old == buf:
                self.duplicates += 1
                return False
            raise AudioError(
                f"Piece {seq + 1} of the recording arrived twice with different sound, so the take is mixed up. "
                "Record again."
            )
        if self.max_samples is not None and (self._n_bytes + len(buf)) // 2 > self.max_samples:
            raise AudioError(
                f"The recording is longer than the {self.max_samples / self.sample_rate:.0f} s limit. "
                "Record shorter takes (one prompt each)."
            )
        self._chunks[seq] = buf
        self._n_bytes += len(buf)
        return True

    def missing(self, n_chunks: int | None = None) -> list[int]:
        """Chunk numbers not received among ``0 .. n_chunks - 1`` (default: up to the highest seen)."""
        total = (max(self._chunks) + 1 if self._chunks else 0) if n_chunks is None else int(n_chunks)
        return [i for i in range(total) if i not in self._chunks]

    def finish(self, *, n_chunks: int | None = None, n_samples: int | None = None) -> np.ndarray:
        """The whole recording, ``(n,)`` float32 in [-1, 1) at :attr:`sample_rate`.

        Args:
            n_chunks: how many chunks the sender says it sent (checks for lost ones at the end).
            n_samples: how many samples the sender says it sent.
        """
        if n_chunks is not None:
            extra = sorted(s for s in self._chunks if s >= n_chunks)
            if extra:
                raise AudioError(
                    f"The recording has more pieces than were sent ({_pieces(extra)} of {n_chunks}): "
                    "two takes got mixed up. Record again."
                )
        gone = self.missing(n_chunks)
        if gone:
            total = n_chunks if n_chunks is not None else max(self._chunks) + 1
            raise AudioError(
                f"Part of the recording did not reach Python ({_pieces(gone)} of {total} missing), perhaps "
                "because the connection dropped. Record again."
            )
        data = b"".join(self._chunks[i] for i in sorted(self._chunks))
        wav = pcm16_to_float(data)
        if n_samples is not None and wav.size != int(n_samples):
            raise AudioError(
                f"The recording arrived incomplete ({wav.size} of {int(n_samples)} samples). Record again."
            )
        return wav


# --------------------------------------------------------------------------- #
# The kernel's microphone (sounddevice)
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class InputDevice:
    """A microphone the kernel can record from.

    Attributes:
        index: PortAudio device number (what sounddevice's ``device=`` takes).
        name: what the system calls it.
        channels: most input channels it offers.
        default_rate: its native rate in Hz.
        host_api: the sound system (ALSA, CoreAudio, MME, ...).
        is_default: the system's default input.
    """

    index: int
    name: str
    channels: int = 1
    default_rate: float = float(_SR)
    host_api: str = ""
    is_default: bool = False

    @property
    def label(self) -> str:
        """Name for the device picker."""
        api = f" ({self.host_api})" if self.host_api else ""
        return f"{self.name}{api}" + (" - default" if self.is_default else "")


def _load_sounddevice() -> ModuleType:
    """``import sounddevice``, or :class:`MicrophoneError` saying what is missing."""
    try:
        return importlib.import_module("sounddevice")
    except ImportError:
        raise MicrophoneError(NO_SOUNDDEVICE_MESSAGE, reason="no_sounddevice") from None
    except OSError:  # sounddevice raises OSError("PortAudio library not found")
        raise MicrophoneError(NO_PORTAUDIO_MESSAGE, reason="no_portaudio") from None


def list_input_devices(sounddevice: Any = None) -> list[InputDevice]:
    """The microphones PortAudio sees (devices with at least one input channel).

    Args:
        sounddevice: the sounddevice module (default: imported); tests pass a fake.

    Raises:
        MicrophoneError: sounddevice or PortAudio is missing, or the device list cannot be read.
    """
    sd = sounddevice if sounddevice is not None else _load_sounddevice()
    try:
        devices = list(sd.query_devices())
        apis = [a.get("name", "") for a in sd.query_hostapis()]
        default = sd.default.device
    except Exception as err:  # noqa: BLE001 - PortAudio errors vary by platform; the person needs the gist
        raise MicrophoneError(
            f"The kernel could not list its sound devices ({err}). " + _BROWSER_HINT, reason="device"
        ) from None
    try:
        default_in = int(default[0])
    except (TypeError, IndexError, ValueError):
        default_in = int(default) if isinstance(default, (int, np.integer)) else -1
    out = []
    for i, d in enumerate(devices):
        if int(d.get("max_input_channels", 0)) <= 0:
            continue
        index = int(d.get("index", i))
        api_no = d.get("hostapi")
        api = apis[api_no] if isinstance(api_no, int) and 0 <= api_no < len(apis) else ""
        out.append(InputDevice(index, str(d.get("name", f"device {index}")), int(d["max_input_channels"]),
                               float(d.get("default_samplerate") or _SR), api, index == default_in))
    return out


class KernelRecorder:
    """Record takes with a microphone attached to the kernel's computer.

    Args:
        device: index or (part of the) name of the input device; default: the
            system's default input, else the first one.
        max_seconds: recording stops by itself after this long (default 60 s).
        block_seconds: length of the blocks the meter measures (0.1 s: ~10 updates/s).
        auto_keep: deliver every take as soon as it stops (the prompt session
            saves each take at once); otherwise :meth:`keep` or :meth:`redo` decides.
        stream_factory: builds the input stream; called like
            ``sounddevice.InputStream(samplerate=, device=, channels=1, dtype="float32",
            blocksize=, callback=)``. Tests pass a fake.
        devices: the input devices to offer (default: :func:`list_input_devices`).
        sounddevice: the sounddevice module (default: imported when needed).

    Raises:
        MicrophoneError: no sounddevice, no PortAudio, or no input device. The
            message says so plainly and points to the browser recorder.

    Example (a fake stream; a real one calls ``callback`` from its audio thread)::

        rec = KernelRecorder(devices=[InputDevice(0, "fake mic")], stream_factory=FakeStream)
        rec.start(); ...; take = rec.stop(); rec.message  # 'Good recording.'
    """

    def __init__(
        self,
        device: int | str | None = None,
        *,
        max_seconds: float = 60.0,
        block_seconds: float = 0.1,
        auto_keep: bool = False,
        stream_factory: Callable[..., Any] | None = None,
        devices: Sequence[InputDevice] | None = None,
        sounddevice: Any = None,
    ) -> None:
        if not max_seconds > 0 or not block_seconds > 0:
            raise AudioError(
                f"max_seconds and block_seconds must be positive, got {max_seconds!r} and {block_seconds!r}."
            )
        self._sd = sounddevice
        if sounddevice is None and (devices is None or stream_factory is None):
            self._sd = _load_sounddevice()
        self.devices = list(devices) if devices is not None else list_input_devices(self._sd)
        if not self.devices:
            raise MicrophoneError(NO_INPUT_MESSAGE, reason="no_input")
        self._factory = stream_factory if stream_factory is not None else self._sd.InputStream
        self.max_seconds = float(max_seconds)
        self.block_seconds = float(block_seconds)
        self.auto_keep = bool(auto_keep)
        self.show_quality = True  # False when the caller shows the quality message itself (a prompt session)
        self.device = self._find(device)
        self.take: Recording | None = None  # stopped, not yet kept or redone
        self.report: QualityReport | None = None
        self.message = ""
        self._callbacks: list[Callable[[Recording], Any]] = []
        self._lock = threading.Lock()
        self._stream: Any = None
        self._rate = _SR
        self._blocks: list[np.ndarray] = []
        self._n = 0
        self._max_n = 0
        self._level = _FLOOR_DBFS
        self._full = False
        self._overflows = 0

    # -- devices ----------------------------------------------------------- #

    def _find(self, device: int | str | InputDevice | None) -> InputDevice:
        if isinstance(device, InputDevice):
            device = device.index
        if device is None:
            return next((d for d in self.devices if d.is_default), self.devices[0])
        if isinstance(device, (int, np.integer)) and not isinstance(device, bool):
            for d in self.devices:
                if d.index == device:
                    return d
        elif isinstance(device, str):
            for d in self.devices:
                if device.casefold() in d.name.casefold():
                    return d
        names = "; ".join(f"{d.index}: {d.name}" for d in self.devices)
        raise MicrophoneError(f"There is no input device {device!r}. The microphones are: {names}.")

    def select(self, device: int | str | InputDevice) -> InputDevice:
        """Choose the microphone (by index or part of its name) for the next take."""
        if self.recording:
            raise MicrophoneError("Stop the recording before choosing another microphone.")
        self.device = self._find(device)
        return self.device

    # -- state -------------------------------------------------------------- #

    @property
    def recording(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._stream is not None

    @property
    def level_dbfs(self) -> float:
        """Level of the last block in dBFS (-120 for silence); for the meter."""
        return self._level

    @property
    def seconds(self) -> float:
        """Length of the take so far, in seconds."""
        return self._n / self._rate

    @property
    def full(self) -> bool:
        """True once ``max_seconds`` are recorded (call :meth:`stop`)."""
        return self._full

    def on_take(self, fn: Callable[[Recording], Any]) -> Callable[[Recording], Any]:
        """Call ``fn(recording)`` with every kept take (16 kHz). Returns ``fn``."""
        self._callbacks.append(fn)
        return fn

    # -- recording ---------------------------------------------------------- #

    def start(self) -> None:
        """Open the microphone and start recording (discards a take not yet kept).

        Opens at 16 kHz when the device allows it, else at its native rate (the
        take is resampled on :meth:`stop`).
        """
        if self.recording:
            return
        self.take, self.report, self.message = None, None, ""
        with self._lock:
            self._blocks, self._n, self._full, self._overflows = [], 0, False, 0
            self._level = _FLOOR_DBFS
        rates = [_SR] + ([round(self.device.default_rate)] if round(self.device.default_rate) != _SR else [])
        error: Exception | None = None
        for rate in rates:
            try:
                stream = self._factory(
                    samplerate=rate, device=self.device.index, channels=1, dtype="float32",
                    blocksize=max(1, round(rate * self.block_seconds)), callback=self._callback,
                )
            except Exception as err:  # noqa: BLE001 - PortAudio refuses rates with several error types
                error = err
                continue
            with self._lock:
                self._rate, self._max_n = rate, round(rate * self.max_seconds)
            try:
                stream.start()
            except Exception as err:  # noqa: BLE001
                _close_quietly(stream)
                error = err
                continue
            self._stream = stream
            return
        raise MicrophoneError(
            f"The microphone '{self.device.name}' could not be opened ({error}). Pick another microphone, "
            "close other programs that use it, or use the browser recorder below."
        )

    def _callback(self, indata: Any, frames: int, time_info: Any, status: Any) -> None:
        """sounddevice's audio thread: copy the block, nothing slow."""
        block = np.asarray(indata, dtype=np.float32)
        mono = block.mean(axis=1) if block.ndim == 2 else block.reshape(-1)
        with self._lock:
            if status:
                self._overflows += 1
            self._level = _level_dbfs(mono)
            room = self._max_n - self._n
            if room <= 0:
                self._full = True
                return
            part = np.array(mono[:room], dtype=np.float32)  # a copy: PortAudio reuses its buffer
            self._blocks.append(part)
            self._n += part.size
            if self._n >= self._max_n:
                self._full = True

    def stop(self) -> Recording | None:
        """Stop, check the take and return it (``(n,)`` float32 at 16 kHz).

        Sets :attr:`take`, :attr:`report` and :attr:`message` (the quality check
        in plain language). With ``auto_keep`` the take is also delivered.
        Returns None if not recording.
        """
        stream, self._stream = self._stream, None
        if stream is None:
            return None
        _close_quietly(stream)
        with self._lock:
            blocks, rate, full, overflows = self._blocks, self._rate, self._full, self._overflows
            self._blocks, self._level = [], _FLOOR_DBFS
        wav = np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.float32)
        if rate != _SR and wav.size:
            wav = resample(wav, rate, _SR)
        take = Recording(wav, _SR)
        self.report = check_quality(wav, _SR)
        notes = []
        if full:
            notes.append(f"Stopped at the {self.max_seconds:.0f} s limit.")
        if overflows:
            notes.append("Some sound was lost because the computer was busy; listen, and record again if it sounds choppy.")
        self.message = " ".join(notes + [self.report.message if self.show_quality else _received(take)])
        self.take = take
        if self.auto_keep:
            self.keep()
        return take

    def keep(self) -> Recording:
        """Deliver the stopped take to the ``on_take`` callbacks and clear it."""
        take = self.take
        if take is None:
            raise AudioError("There is no take to keep yet: press Record, then Stop.")
        self.take = None
        for fn in list(self._callbacks):
            fn(take)
        return take

    def redo(self) -> None:
        """Throw the stopped take away (nothing is delivered)."""
        self.take, self.report, self.message = None, None, ""

    def play(self, recording: Recording | None = None, *, blocking: bool = False) -> None:
        """Play a take (default: the stopped one) on the kernel computer's speakers."""
        rec = recording if recording is not None else self.take
        if rec is None:
            raise AudioError("There is no take to play yet: press Record, then Stop.")
        sd = self._sd if self._sd is not None else _load_sounddevice()
        sd.play(rec.audio, rec.sample_rate, blocking=blocking)

    # -- view ---------------------------------------------------------------- #

    def widget(self) -> Any:
        """The ipywidgets view: microphone picker, Record/Stop, level meter, player, Keep/Record again."""
        from workbench.ui._render import wav_bytes

        w = require("ipywidgets", extra="ui", purpose="show the recorder")
        picker = w.Dropdown(options=[(d.label, d.index) for d in self.devices], value=self.device.index,
                            description="Microphone", style={"description_width": "initial"},
                            layout=w.Layout(width="min-content"))
        record = w.Button(description="Record", icon="circle", button_style="danger")
        stop = w.Button(description="Stop", icon="stop", disabled=True)
        meter = w.FloatProgress(value=_METER_MIN_DBFS, min=_METER_MIN_DBFS, max=0.0, description="Level",
                                bar_style="success")
        clock = w.Label("0.0 s")
        message = w.HTML()
        player = w.Audio(format="wav", autoplay=False, layout=w.Layout(display="none"))
        keep = w.Button(description="Keep", icon="check", button_style="success")
        redo = w.Button(description="Record again", icon="refresh")
        decide = w.HBox([keep, redo], layout=w.Layout(display="none"))
        lock = threading.Lock()

        def show(text: str, ok: bool | None) -> None:
            color = {True: "#2e7d32", False: "#b00020", None: "inherit"}[ok]
            message.value = f"<div style='color:{color}'>{html.escape(text)}</div>" if text else ""

        def finish() -> None:  # Stop button (kernel thread) or the meter thread at the limit
            with lock:
                if not self.recording:
                    return
                take = self.stop()
            record.disabled, stop.disabled, picker.disabled = False, True, False
            meter.value = _METER_MIN_DBFS
            report = self.report
            show(self.message, None if report is None else report.ok)
            if take is not None and take.audio.size:
                player.value = wav_bytes(take.audio)  # cleared again on Keep/Record again/next take
                player.layout.display = ""
            decide.layout.display = "none" if self.auto_keep else ""

        def meter_loop() -> None:  # trait updates only; ~10 per second
            while self.recording:
                meter.value = max(_METER_MIN_DBFS, min(0.0, self.level_dbfs))
                meter.bar_style = "danger" if self.level_dbfs > -3 else "success"
                clock.value = f"{self.seconds:.1f} s"
                if self.full:
                    finish()
                    return
                time.sleep(self.block_seconds)

        def on_record(_: Any) -> None:
            player.value, player.layout.display, decide.layout.display = b"", "none", "none"
            try:
                self.start()
            except MicrophoneError as err:
                show(str(err), False)
                return
            record.disabled, stop.disabled, picker.disabled = True, False, True
            show("Recording... press Stop when the sentence is finished.", None)
            threading.Thread(target=meter_loop, name="workbench-meter", daemon=True).start()

        def on_keep(_: Any) -> None:
            try:
                self.keep()
            except WorkbenchError as err:
                show(str(err), False)
                return
            player.value, player.layout.display, decide.layout.display = b"", "none", "none"
            show("Kept.", True)

        def on_redo(_: Any) -> None:
            self.redo()
            player.value, player.layout.display, decide.layout.display = b"", "none", "none"
            show("Take discarded. Press Record when ready.", None)

        picker.observe(lambda ch: self.select(ch["new"]), names="value")
        record.on_click(on_record)
        stop.on_click(lambda _: finish())
        keep.on_click(on_keep)
        redo.on_click(on_redo)
        return w.VBox([picker, w.HBox([record, stop, meter, clock]), message, player, decide])


def _received(take: Recording) -> str:
    """What a recorder says about a take whose quality message is shown elsewhere."""
    return f"Received {take.duration_s:.1f} s: see the message below."


def _close_quietly(stream: Any) -> None:
    for name in ("stop", "close"):
        try:
            getattr(stream, name)()
        except Exception:  # noqa: BLE001, S110 - closing a broken stream must not hide the take
            pass


# --------------------------------------------------------------------------- #
# The browser's microphone (anywidget)
# --------------------------------------------------------------------------- #


class BrowserRecorder(anywidget.AnyWidget):
    """Record with the browser's microphone; the take arrives in the kernel at 16 kHz.

    The page (``static/recorder.js``) resamples to 16 kHz int16 and sends
    numbered one-second chunks as custom messages; :meth:`handle_message`
    reassembles them with a :class:`ChunkAssembler`, checks the quality, calls
    the ``on_recording`` callbacks and answers the page with the plain-language
    result. No audio is ever held in a synced trait (so none is saved with the
    notebook), and the chunks are dropped once the take is delivered.

    Browsers allow the microphone only in a secure context: an ``https://``
    page, or ``http://localhost``. Elsewhere the page says so and suggests the upload.

    Args:
        on_recording: optional callback ``fn(recording)``.
        max_seconds: the page stops by itself after this long.

    Attributes:
        recording: the last take received (:class:`~workbench.audio.Recording`), kernel memory only.
        report: its :class:`~workbench.audio.QualityReport`.
        error: the last problem (browser or transfer) in plain language, else None.
    """

    # Strings, not paths: anywidget keeps a class-level file watcher (hot reload) with a strong
    # reference to every widget whose _esm is a path, so each recorder would never be freed.
    _esm = (_STATIC / "recorder.js").read_text(encoding="utf-8")
    _css = (_STATIC / "recorder.css").read_text(encoding="utf-8")
    max_seconds = traitlets.Float(60.0).tag(sync=True)
    chunk_seconds = traitlets.Float(1.0).tag(sync=True)  # audio per message: 1 s = 32 KB
    disabled = traitlets.Bool(False).tag(sync=True)

    def __init__(self, on_recording: Callable[[Recording], Any] | None = None, *, max_seconds: float = 60.0,
                 **kwargs: Any) -> None:
        super().__init__(max_seconds=float(max_seconds), **kwargs)
        self.recording: Recording | None = None
        self.report: QualityReport | None = None
        self.error: str | None = None
        self.input_rate: float | None = None  # the page's AudioContext rate, for diagnostics
        self._assembler: ChunkAssembler | None = None
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[Recording], Any]] = []
        self._error_callbacks: list[Callable[[str, str], Any]] = []
        self.show_quality = True  # False when the caller shows the quality message itself (a prompt session)
        if on_recording is not None:
            self._callbacks.append(on_recording)
        self.on_msg(self._on_custom_msg)

    def on_recording(self, fn: Callable[[Recording], Any]) -> Callable[[Recording], Any]:
        """Call ``fn(recording)`` with every take received. Returns ``fn``."""
        self._callbacks.append(fn)
        return fn

    def on_error(self, fn: Callable[[str, str], Any]) -> Callable[[str, str], Any]:
        """Call ``fn(code, message)`` when the browser or the transfer fails. Returns ``fn``."""
        self._error_callbacks.append(fn)
        return fn

    @property
    def receiving(self) -> bool:
        """True while chunks of a take are being collected."""
        return self._assembler is not None

    def _on_custom_msg(self, _widget: Any, content: Any, buffers: Sequence[Any]) -> None:
        self.handle_message(content, buffers)

    def handle_message(self, content: Any, buffers: Sequence[Any] = ()) -> Recording | None:
        """Handle one message from the page (what the comm delivers; tests call it directly).

        Returns:
            The finished :class:`~workbench.audio.Recording` on ``"stop"``, else None.
        """
        if not isinstance(content, dict):
            return None
        kind = content.get("type")
        take = str(content.get("take", ""))
        if kind == "start":
            rate = content.get("rate")
            with self._lock:
                self.error = None
                self.input_rate = content.get("input_rate")
                self._assembler = ChunkAssembler(take, sample_rate=_SR, max_seconds=self.max_seconds + 5)
            if rate != _SR:
                self._fail("transfer", f"The browser sent audio at {rate!r} Hz instead of {_SR} Hz. "
                           "Reload the page (the recorder code is out of date) and record again.", take)
            return None
        if kind == "chunk":
            with self._lock:
                asm = self._assembler
                if asm is None or asm.take != take:
                    return None  # a late piece of an abandoned take
                try:
                    if not buffers:
                        raise AudioError(f"Piece {content.get('seq')!r} of the recording arrived without sound. "
                                         "Record again.")
                    asm.add(content.get("seq"), buffers[0])
                except AudioError as err:
                    self._assembler = None
                    error: AudioError | None = err
                else:
                    error = None
            if error is not None:
                self._fail("transfer", str(error), take)
            return None
        if kind == "stop":
            with self._lock:
                asm, self._assembler = self._assembler, None  # the chunks go once the take is built
            if asm is None or asm.take != take:
                return None
            try:
                wav = asm.finish(n_chunks=content.get("chunks"), n_samples=content.get("samples"))
            except AudioError as err:
                self._fail("transfer", str(err), take)
                return None
            return self._deliver(Recording(wav, _SR), take, content.get("reason"))
        if kind == "error":
            message = str(content.get("message") or "The browser could not record.")
            self._fail(str(content.get("code", "other")), message, take, reply=False)
        return None

    def _deliver(self, rec: Recording, take: str, reason: Any) -> Recording:
        self.recording, self.report = rec, rec.quality()
        message, ok = (self.report.message if self.show_quality else _received(rec)), self.report.ok
        if reason == "limit":
            message = f"Stopped at the {rec.duration_s:.0f} s limit. " + message
        try:
            for fn in list(self._callbacks):
                fn(rec)
        except WorkbenchError as err:  # e.g. no consent yet: the person sees why it was not saved
            message, ok = str(err), False
        self._reply({"type": "result", "take": take, "ok": bool(ok), "message": message,
                     "seconds": round(rec.duration_s, 3)})
        return rec

    def _fail(self, code: str, message: str, take: str, *, reply: bool = True) -> None:
        self.error = message
        if reply:
            self._reply({"type": "result", "take": take, "ok": False, "message": message})
        for fn in list(self._error_callbacks):
            fn(code, message)

    def _reply(self, content: dict[str, Any]) -> None:
        if self.comm is not None:
            self.send(content)


# --------------------------------------------------------------------------- #
# Upload, and the helper that picks a source
# --------------------------------------------------------------------------- #


def load_upload(value: Any) -> tuple[Recording, str]:
    """The first file of an ``ipywidgets.FileUpload`` value as a 16 kHz :class:`Recording`.

    Args:
        value: the widget's ``value`` (ipywidgets 8: a tuple of dicts with
            ``name`` and ``content``; ipywidgets 7: a dict by name), or raw bytes.

    Returns:
        ``(recording, file name)``.

    Raises:
        AudioError: nothing uploaded, or not a readable recording.
    """
    name, content = "the upload", None
    if isinstance(value, (bytes, bytearray, memoryview)):
        content = value
    elif isinstance(value, dict) and value:
        if "content" in value:
            name, content = value.get("name", name), value["content"]
        else:
            name, item = next(iter(value.items()))
            content = item.get("content") if isinstance(item, dict) else item
    elif isinstance(value, (tuple, list)) and value:
        item = value[0]
        name, content = item.get("name", name), item.get("content")
    if content is None:
        raise AudioError("No file was uploaded. Choose a WAV, FLAC or OGG recording.")
    try:
        wav = load_audio(bytes(content))
    except AudioError as err:
        raise AudioError(f"{name}: {err}") from None
    return Recording(wav, _SR), str(name)


_PREFER = ("auto", "kernel", "browser", "upload")


class Recorder:
    """One place to get a take: the kernel's microphone if it has one, else the browser's; upload always.

    Args:
        on_recording: optional callback ``fn(recording)`` for every take (16 kHz).
        prefer: ``"auto"`` (kernel microphone when available, else browser),
            ``"kernel"`` (fail with a plain :class:`MicrophoneError` if none),
            ``"browser"`` or ``"upload"``.
        device: kernel input device, index or part of its name.
        max_seconds: longest take.
        auto_keep: deliver kernel takes as soon as they stop (no Keep button).
        stream_factory, devices, sounddevice: passed to :class:`KernelRecorder` (tests).

    Attributes:
        kernel: the :class:`KernelRecorder`, or None.
        kernel_problem: why there is none (plain language), or None.
        source: ``"kernel"``, ``"browser"`` or ``"upload"``: what the view offers first.
        last: the last take delivered; ``last_source`` says where it came from.
    """

    def __init__(
        self,
        on_recording: Callable[[Recording], Any] | None = None,
        *,
        prefer: str = "auto",
        device: int | str | None = None,
        max_seconds: float = 60.0,
        auto_keep: bool = False,
        stream_factory: Callable[..., Any] | None = None,
        devices: Sequence[InputDevice] | None = None,
        sounddevice: Any = None,
    ) -> None:
        if prefer not in _PREFER:
            raise ValueError(f"prefer must be one of {', '.join(_PREFER)}; got {prefer!r}.")
        self.max_seconds = float(max_seconds)
        self.kernel: KernelRecorder | None = None
        self.kernel_problem: str | None = None
        if prefer in ("auto", "kernel"):
            try:
                self.kernel = KernelRecorder(device, max_seconds=max_seconds, auto_keep=auto_keep,
                                             stream_factory=stream_factory, devices=devices, sounddevice=sounddevice)
            except MicrophoneError as err:
                if prefer == "kernel":
                    raise
                self.kernel_problem = str(err)
        self.source = "kernel" if self.kernel is not None else ("upload" if prefer == "upload" else "browser")
        self.last: Recording | None = None
        self.last_source: str | None = None
        self.message = ""
        self._show_quality = True
        self._browser: BrowserRecorder | None = None
        self._callbacks: list[Callable[[Recording], Any]] = []
        self._view: Any = None
        if on_recording is not None:
            self._callbacks.append(on_recording)
        if self.kernel is not None:
            self.kernel.on_take(lambda rec: self.deliver(rec, "kernel"))

    @property
    def browser(self) -> BrowserRecorder:
        """The browser recorder (made on first use)."""
        if self._browser is None:
            self._browser = BrowserRecorder(max_seconds=self.max_seconds)
            self._browser.show_quality = self._show_quality
            self._browser.on_recording(lambda rec: self.deliver(rec, "browser"))
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

    def on_recording(self, fn: Callable[[Recording], Any]) -> Callable[[Recording], Any]:
        """Call ``fn(recording)`` with every take, whatever its source. Returns ``fn``."""
        self._callbacks.append(fn)
        return fn

    def deliver(self, recording: Recording, source: str = "program") -> Recording:
        """Hand a take to the callbacks, as the recorders do (a notebook can also feed one)."""
        if recording.sample_rate != _SR:
            recording = recording.resampled(_SR)
        self.last, self.last_source = recording, source
        for fn in list(self._callbacks):
            fn(recording)
        return recording

    def receive_upload(self, value: Any) -> Recording:
        """Load an upload (see :func:`load_upload`), check it, deliver it; sets :attr:`message`."""
        rec, name = load_upload(value)
        self.message = f"{name}: {rec.quality().message if self._show_quality else _received(rec)}"
        return self.deliver(rec, "upload")

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


def recorder(
    on_recording: Callable[[Recording], Any] | None = None,
    *,
    prefer: str = "auto",
    device: int | str | None = None,
    max_seconds: float = 60.0,
    auto_keep: bool = False,
) -> Recorder:
    """A :class:`Recorder`: the kernel's microphone if there is one, else the browser's, upload always.

    Shown as a widget when it is the last thing in a notebook cell::

        rec = recorder()
        rec            # record, then: rec.last.audio  (float32, 16 kHz)
    """
    return Recorder(on_recording, prefer=prefer, device=device, max_seconds=max_seconds, auto_keep=auto_keep)
