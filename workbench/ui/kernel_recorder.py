"""Recording a take with the microphone of the computer that runs the kernel (sounddevice/PortAudio).

:class:`KernelRecorder`: a device picker with input devices only, a level meter
(dBFS of the last ~0.1 s block), start/stop, playback, the quality check of
:func:`workbench.audio.check_quality` in plain language, keep or redo. Its stream
factory is injectable, so tests feed it a fake stream. A take is ``(n,)`` float32
at 16 kHz (opened at the device's own rate when it refuses 16 kHz, then resampled).
:class:`workbench.ui.recorder.Recorder` offers it first when the kernel has a
microphone, with the browser's microphone and an upload as fallbacks.

Threads: sounddevice calls :meth:`KernelRecorder._callback` on its audio
thread, which only copies the block into a lock-protected buffer. The view's
meter thread updates widget traits (about 10 times a second); nothing is ever
printed into an Output widget from a thread.

>>> InputDevice(3, "USB headset mic", host_api="ALSA", is_default=True).label
'USB headset mic (ALSA) - default'
"""

from __future__ import annotations

import html
import importlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from workbench._deprecated import renamed_fields
from workbench._optional import require
from workbench.audio import QualityReport, Recording, check_quality, resample
from workbench.constants import SAMPLE_RATE
from workbench.errors import AudioError, MicrophoneError, WorkbenchError
from workbench.takes import TakeCallback, hand_over, received_message

__all__ = [
    "NO_INPUT_MESSAGE",
    "NO_PORTAUDIO_MESSAGE",
    "NO_SOUNDDEVICE_MESSAGE",
    "InputDevice",
    "KernelRecorder",
    "list_input_devices",
]

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


# What sounddevice raises when PortAudio refuses (bad rate, busy or vanished device), besides its own
# PortAudioError: parameter errors. A fake stream in the tests raises RuntimeError, as PortAudio's does.
_PARAMETER_ERRORS: tuple[type[Exception], ...] = (OSError, RuntimeError, TypeError, ValueError)


def _portaudio_errors(sd: Any) -> tuple[type[Exception], ...]:
    """The errors a sounddevice call can raise: its ``PortAudioError`` (when ``sd`` has one) and bad parameters."""
    own = getattr(sd, "PortAudioError", None)
    return _PARAMETER_ERRORS + ((own,) if isinstance(own, type) and issubclass(own, Exception) else ())


def _level_dbfs(x: np.ndarray) -> float:
    """Mean-square level of a block in dBFS (the convention of workbench.audio); -120 for silence."""
    if x.size == 0:
        return _FLOOR_DBFS
    power = float(np.mean(np.square(x, dtype=np.float64)))
    return float(10.0 * np.log10(max(power, 10.0 ** (_FLOOR_DBFS / 10.0))))



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
    default_rate: float = float(SAMPLE_RATE)
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
    except _portaudio_errors(sd) as err:  # they vary by platform; the person needs the gist
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
                               float(d.get("default_samplerate") or SAMPLE_RATE), api, index == default_in))
    return out


@renamed_fields(max_seconds="max_s", block_seconds="block_s")  # old names: a warning, until the next release
class KernelRecorder:
    """Record takes with a microphone attached to the kernel's computer.

    Args:
        device: index or (part of the) name of the input device; default: the
            system's default input, else the first one.
        max_s: recording stops by itself after this long (default 60 s).
        block_s: length of the blocks the meter measures (0.1 s: ~10 updates/s).
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
        max_s: float = 60.0,
        block_s: float = 0.1,
        auto_keep: bool = False,
        stream_factory: Callable[..., Any] | None = None,
        devices: Sequence[InputDevice] | None = None,
        sounddevice: Any = None,
    ) -> None:
        if not max_s > 0 or not block_s > 0:
            raise AudioError(
                f"max_s and block_s must be positive, got {max_s!r} and {block_s!r}."
            )
        self._sd = sounddevice
        if sounddevice is None and (devices is None or stream_factory is None):
            self._sd = _load_sounddevice()
        self.devices = list(devices) if devices is not None else list_input_devices(self._sd)
        if not self.devices:
            raise MicrophoneError(NO_INPUT_MESSAGE, reason="no_input")
        self._factory = stream_factory if stream_factory is not None else self._sd.InputStream
        self.max_s = float(max_s)
        self.block_s = float(block_s)
        self.auto_keep = bool(auto_keep)
        self.show_quality = True  # False when the caller shows the quality message itself (a prompt session)
        self.device = self._find(device)
        self.take: Recording | None = None  # stopped, not yet kept or redone
        self.report: QualityReport | None = None
        self.message = ""
        self._callbacks: list[TakeCallback] = []
        self._lock = threading.Lock()
        self._stream: Any = None
        self._rate = SAMPLE_RATE
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
        """True once ``max_s`` are recorded (call :meth:`stop`)."""
        return self._full

    def on_take(self, fn: TakeCallback) -> TakeCallback:
        """Call ``fn(recording)`` with every kept take (16 kHz). Returns ``fn``.

        A callback that saves the take returns the :class:`~workbench.audio.QualityReport` it decided
        (:meth:`~workbench.corpus.SpeakerCorpus.add_take`'s); :attr:`report` becomes that report.
        """
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
        rates = [SAMPLE_RATE] + ([round(self.device.default_rate)] if round(self.device.default_rate) != SAMPLE_RATE else [])
        error: Exception | None = None
        refused = _portaudio_errors(self._sd)
        for rate in rates:
            try:
                stream = self._factory(
                    samplerate=rate, device=self.device.index, channels=1, dtype="float32",
                    blocksize=max(1, round(rate * self.block_s)), callback=self._callback,
                )
            except refused as err:  # PortAudio refuses rates with several error types
                error = err
                continue
            with self._lock:
                self._rate, self._max_n = rate, round(rate * self.max_s)
            try:
                stream.start()
            except refused as err:
                _close_quietly(stream, refused)
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
        in plain language). With ``auto_keep`` the take is delivered first, and the
        report is the one the callback that saved it decided (the take is checked once).
        Returns None if not recording.
        """
        stream, self._stream = self._stream, None
        if stream is None:
            return None
        _close_quietly(stream, _portaudio_errors(self._sd))
        with self._lock:
            blocks, rate, full, overflows = self._blocks, self._rate, self._full, self._overflows
            self._blocks, self._level = [], _FLOOR_DBFS
        wav = np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.float32)
        if rate != SAMPLE_RATE and wav.size:
            wav = resample(wav, rate, SAMPLE_RATE)
        take = Recording(wav, SAMPLE_RATE)
        self.take, self.report = take, None
        if self.auto_keep:
            self.keep()  # sets the report when a callback saved the take
        if self.report is None:
            self.report = check_quality(wav, SAMPLE_RATE)  # what Keep or Record again is decided on
        notes = []
        if full:
            notes.append(f"Stopped at the {self.max_s:.0f} s limit.")
        if overflows:
            notes.append("Some sound was lost because the computer was busy; listen, and record again if it sounds choppy.")
        self.message = " ".join(notes + [self.report.message if self.show_quality else received_message(take)])
        return take

    def keep(self) -> Recording:
        """Deliver the stopped take to the ``on_take`` callbacks and clear it.

        :attr:`report` becomes the report a callback that saved the take returned, if one did.
        """
        take = self.take
        if take is None:
            raise AudioError("There is no take to keep yet: press Record, then Stop.")
        self.take = None
        decided = hand_over(take, self._callbacks)
        if decided is not None:
            self.report = decided
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
                time.sleep(self.block_s)

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



def _close_quietly(stream: Any, errors: tuple[type[Exception], ...] = _PARAMETER_ERRORS) -> None:
    """Stop and close a stream; PortAudio's complaints about a broken one must not hide the take."""
    for name in ("stop", "close"):
        try:
            getattr(stream, name)()
        except errors:
            pass

