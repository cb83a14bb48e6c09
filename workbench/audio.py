"""Getting audio in and out safely, and judging whether a take is usable.

Every waveform inside the package is a 1-D ``float32`` array of samples at
16 kHz (:data:`workbench.SAMPLE_RATE`), mono, nominally in [-1, 1]. Durations
are in seconds, lengths in samples at 16 kHz, levels in dBFS (0 dBFS is a full
scale sine peak; digital silence is reported as -120 dBFS).

>>> import numpy as np
>>> t = np.arange(16_000) / 16_000
>>> wav = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
>>> report = check_quality(wav)
>>> report.duration_s
1.0
>>> [p.code for p in report.problems]  # a steady tone has no pauses: noise cannot be told apart
['noisy']

Heavy imports (librosa for resampling, IPython for playback) happen inside the
functions that need them, so ``import workbench.audio`` stays fast and works
without any UI package.
"""

from __future__ import annotations

import io
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal

import numpy as np
import soundfile as sf

from workbench._optional import require
from workbench._atomic import disk_error_message, write_bytes_atomic
from workbench.errors import AudioError

__all__ = [
    "AUDIO_SUFFIXES",
    "PROBLEM_CODES",
    "UNSUPPORTED_AUDIO_SUFFIXES",
    "Problem",
    "QualityReport",
    "Recording",
    "check_quality",
    "encode_audio",
    "float_to_pcm16",
    "load_audio",
    "pcm16_to_float",
    "play",
    "read_audio",
    "resample",
    "save_audio",
    "to_mono",
    "trim_silence",
]

_SR = 16_000  # Hz; same value as workbench.SAMPLE_RATE (not imported: avoids a cycle)
_FLOOR_DBFS = -120.0  # level reported for digital silence
_EPS_POWER = 10.0 ** (_FLOOR_DBFS / 10.0)  # mean-square power at the floor
_FRAME_S = 0.025  # analysis frame, seconds
_HOP_S = 0.010  # analysis hop, seconds
_CLIP_LEVEL = 0.999  # |x| at or above this counts as full scale
_CLIP_RATIO = 0.001  # more than 0.1 % of samples at full scale -> clipped
_SILENT_DBFS = -60.0  # speech level below this -> silent
_QUIET_ERROR_DBFS = -50.0  # speech level below this -> too quiet (error)
_QUIET_WARN_DBFS = -38.0  # speech level below this -> too quiet (warning)
_LOUD_PEAK = 0.99  # peak at or above this without clipping -> too loud (warning)
_NOISY_SNR_DB = 15.0  # estimated SNR below this -> noisy (warning)
_LONG_SILENCE_S = 1.5  # leading or trailing silence above this -> warning
_TRIM_TOP_DB = 35.0  # frames this far below the loudest frame count as silence
_MIN_RATE = 8_000  # Hz; below this speech recognition is hopeless
_MAX_CHANNELS = 16  # the channel axis of a 2-D array is the smaller one, at most this
_HEADER_MAGIC = (b"RIFF", b"RF64", b"fLaC", b"OggS", b"FORM")
_RAW_SUFFIXES = (".pcm", ".raw")


def _readable_suffixes() -> tuple[str, ...]:
    """The endings this soundfile build decodes (MP3 needs libsndfile >= 1.1, Opus a build with it)."""
    formats = sf.available_formats()
    out = [".wav", ".flac", ".ogg", ".oga"]
    if "OPUS" in sf.available_subtypes("OGG"):
        out.append(".opus")
    if "MP3" in formats:
        out.append(".mp3")
    return (*out, ".aiff", ".aif")


#: File endings of the audio files the workbench reads: one list for ``transcribe``,
#: :func:`workbench.corpus.import_folder` and the app (lower case, with the dot).
AUDIO_SUFFIXES: tuple[str, ...] = _readable_suffixes()
#: Common audio endings it cannot read; such files are reported with "export it as WAV".
UNSUPPORTED_AUDIO_SUFFIXES: tuple[str, ...] = tuple(
    s for s in (".mp3", ".m4a", ".aac", ".wma", ".amr", ".3gp", ".opus", ".webm") if s not in AUDIO_SUFFIXES
)
_FORMAT_NAMES = "WAV, FLAC, OGG" + (", MP3" if ".mp3" in AUDIO_SUFFIXES else "") + " or AIFF"
_WRITE_FORMATS = {  # suffix -> (soundfile format, subtype)
    ".wav": ("WAV", "PCM_16"),
    ".flac": ("FLAC", "PCM_16"),
    ".ogg": ("OGG", "VORBIS"),
}

#: Every :attr:`Problem.code` that :func:`check_quality` can report.
PROBLEM_CODES = (
    "bad_shape",
    "clipped",
    "empty",
    "long_silence",
    "noisy",
    "nonfinite",
    "not_audio",
    "silent",
    "stereo",
    "too_long",
    "too_loud",
    "too_quiet",
    "too_short",
    "wrong_rate",
)

Severity = Literal["error", "warning"]

# --------------------------------------------------------------------------- #
# Conversions
# --------------------------------------------------------------------------- #


def _as_float32(x: Any) -> np.ndarray:
    """Any real numeric array -> float32, integer PCM scaled to [-1, 1).

    Signed integers are divided by 2**(bits-1) (int16: 32768); unsigned ones are
    centred first (uint8 128 -> 0.0). Raises AudioError for non-numeric data.
    """
    arr = np.asarray(x)
    kind = arr.dtype.kind
    if kind == "f":
        with np.errstate(
            over="ignore"
        ):  # beyond float32 range -> inf, reported as nonfinite
            return arr.astype(np.float32, copy=False)
    if kind == "i":
        return (
            arr.astype(np.float64) / float(2 ** (8 * arr.dtype.itemsize - 1))
        ).astype(np.float32)
    if kind == "u":
        half = float(2 ** (8 * arr.dtype.itemsize - 1))
        return ((arr.astype(np.float64) - half) / half).astype(np.float32)
    if kind == "b":
        return arr.astype(np.float32)
    raise AudioError(
        f"Expected an array of audio samples (numbers), got dtype {arr.dtype}. "
        "Pass a NumPy array of float or int16 samples."
    )


def _channel_axis(shape: tuple[int, ...]) -> int | None:
    """Which axis of a 2-D array holds the channels: the last if it has at most 16, else the first."""
    rows, cols = shape
    if cols <= _MAX_CHANNELS:
        return 1
    if rows <= _MAX_CHANNELS:
        return 0
    return None


def to_mono(x: np.ndarray) -> np.ndarray:
    """Mix down to one channel.

    Args:
        x: ``(n,)`` mono, or ``(n, channels)`` as soundfile returns it, with
            at most 16 channels. A ``(channels, n)`` array (librosa's layout) is
            also accepted when ``n > 16``.
            Integer PCM (int16, int32, uint8) is scaled to [-1, 1).

    Returns:
        ``(n,)`` float32, the mean over channels.

    >>> to_mono(np.array([[0.2, 0.4], [0.0, 1.0]], dtype=np.float32)).tolist()
    [0.30000001192092896, 0.5]
    """
    arr = _as_float32(x)
    if arr.ndim == 0:
        return arr.reshape(1).copy()
    if arr.ndim == 1:
        return arr.copy()
    if arr.ndim == 2:
        axis = _channel_axis(arr.shape)
        if axis is None:
            raise AudioError(
                f"Cannot tell the channels apart in an array of shape {arr.shape}: expected "
                f"(samples,) or (samples, channels) with at most {_MAX_CHANNELS} channels."
            )
        if arr.shape[axis] == 0:
            return np.zeros(0, dtype=np.float32)
        if arr.shape[axis] == 1:
            return arr.reshape(-1).copy()
        return arr.mean(axis=axis, dtype=np.float64).astype(np.float32)
    raise AudioError(
        f"Expected mono (samples,) or (samples, channels) audio, got an array of shape {arr.shape}."
    )


def _check_rate(sample_rate: Any, what: str = "sample_rate") -> int:
    if (
        isinstance(sample_rate, bool)
        or not isinstance(sample_rate, (int, np.integer))
        or sample_rate <= 0
    ):
        raise AudioError(
            f"{what} must be a positive whole number of Hz, e.g. 16000; got {sample_rate!r}."
        )
    return int(sample_rate)


def resample(wav: np.ndarray, orig_sr: int, target_sr: int = _SR) -> np.ndarray:
    """Change the sample rate (librosa, ``res_type="soxr_hq"``).

    Args:
        wav: ``(..., n)`` samples at ``orig_sr``; resampled along the last axis.
        orig_sr: rate of ``wav`` in Hz.
        target_sr: wanted rate in Hz (default 16000).

    Returns:
        ``(..., ceil(n * target_sr / orig_sr))`` float32. A copy even when the
        rates are equal.

    >>> resample(np.zeros(8000, dtype=np.float32), 8000).shape
    (16000,)
    """
    orig_sr = _check_rate(orig_sr, "orig_sr")
    target_sr = _check_rate(target_sr, "target_sr")
    x = _as_float32(wav)
    if orig_sr == target_sr or x.shape[-1:] == (0,):
        return x.copy()
    librosa = require("librosa", extra="core", purpose="resample audio")
    y = librosa.resample(
        np.ascontiguousarray(x),
        orig_sr=orig_sr,
        target_sr=target_sr,
        res_type="soxr_hq",
    )
    return np.asarray(y, dtype=np.float32)


def pcm16_to_float(data: bytes | bytearray | memoryview | np.ndarray) -> np.ndarray:
    """Little-endian 16-bit PCM -> ``(n,)`` float32 in [-1, 1).

    Args:
        data: raw bytes (2 bytes a sample, as the browser recorder sends them),
            or an int16 array.

    >>> pcm16_to_float(b"\\x00\\x40\\x00\\xc0").tolist()
    [0.5, -0.5]
    """
    if isinstance(data, np.ndarray):
        if data.dtype != np.int16:
            raise AudioError(
                f"Expected an int16 array of PCM samples, got dtype {data.dtype}."
            )
        return (data.reshape(-1).astype(np.float32) / 32768.0).astype(np.float32)
    buf = bytes(data)
    if len(buf) % 2:
        raise AudioError(
            f"Raw 16-bit audio must have an even number of bytes, got {len(buf)}: "
            "the data was cut off. Send whole samples (2 bytes each)."
        )
    return np.frombuffer(buf, dtype="<i2").astype(np.float32) / np.float32(32768.0)


def float_to_pcm16(wav: np.ndarray) -> np.ndarray:
    """``(n,)`` float samples -> ``(n,)`` int16, scaled by 32768 and clipped.

    Exact inverse of :func:`pcm16_to_float` on its outputs. Use ``.tobytes()``
    for the little-endian byte stream (on little-endian machines).

    >>> float_to_pcm16(np.array([0.5, -1.0, 2.0], dtype=np.float32)).tolist()
    [16384, -32768, 32767]
    """
    x = _as_float32(wav)
    if not np.all(np.isfinite(x)):
        raise AudioError(
            "Cannot convert audio with NaN or infinite samples to 16-bit PCM: the audio is damaged."
        )
    return np.clip(np.round(x.astype(np.float64) * 32768.0), -32768, 32767).astype(
        np.int16
    )


# --------------------------------------------------------------------------- #
# Loading
# --------------------------------------------------------------------------- #


def _not_audio_message(name: str) -> str:
    return (
        f"{name} is not an audio file we can read ({_FORMAT_NAMES}). "
        "If it came from a phone app, export it as WAV and try again."
    )


def _too_long_message(name: str, seconds: float, max_seconds: float) -> str:
    return (
        f"{name} is {seconds / 60:.1f} minutes long; the limit is {max_seconds / 60:.1f} minutes. "
        "Cut it into shorter pieces, best one prompt per file (in Audacity, or with sox: "
        "'sox LONG.wav piece.wav trim 0 60 : newfile : restart' makes 1-minute pieces), and use the pieces. "
        "(From Python, load_audio(path, max_seconds=None) reads it whole.)"
    )


def read_audio(
    source: str | os.PathLike | bytes | bytearray | memoryview | BinaryIO,
    *,
    sample_rate: int | None = None,
    max_seconds: float | None = 600,
) -> tuple[np.ndarray, int]:
    """Decode a recording as stored, without mixing or resampling.

    Same arguments and errors as :func:`load_audio`; use it when the original
    rate and channel count matter (e.g. to report them in a quality check).

    Returns:
        ``(samples, rate)``: ``(n,)`` float32 for mono files, ``(n, channels)``
        otherwise, and the file's rate in Hz (``sample_rate`` for raw PCM).

    >>> read_audio(b"\\x00\\x40" * 4, sample_rate=8000)[1]
    8000
    """
    if sample_rate is not None:
        sample_rate = _check_rate(sample_rate)
    data: bytes | None = None  # whole input, for bytes and streams
    path: Path | None = (
        None  # or a file, read lazily so that huge files are refused from the header
    )
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, name, suffix = bytes(source), "The audio data", ""
    elif hasattr(source, "read"):
        data, name, suffix = source.read(), "The audio data", ""  # type: ignore[union-attr]
        if not isinstance(data, (bytes, bytearray)):
            raise AudioError("The audio stream must be opened in binary mode ('rb').")
        data = bytes(data)
    else:
        path = Path(os.fspath(source))
        name, suffix = repr(path.name), path.suffix.lower()
        if not path.exists():
            raise AudioError(
                f"{name} was not found (looked in {str(path.parent.resolve())!r}). Check the file name and folder."
            )
        if path.is_dir():
            raise AudioError(
                f"{name} is a folder, not an audio file. Pick one audio file inside it."
            )
    try:
        if path is not None:
            size = path.stat().st_size
            with open(path, "rb") as fh:
                head8 = fh.read(8)
        else:
            assert data is not None
            size, head8 = len(data), data[:8]
        head = head8[:4]
    except OSError as exc:
        raise AudioError(
            f"{name} could not be read ({exc.strerror or exc}). Check that the file is not open elsewhere."
        ) from None
    if size == 0:
        raise AudioError(
            f"{name} is empty (0 bytes): nothing was recorded. Record again."
        )
    raw = (
        sample_rate is not None
        and head not in _HEADER_MAGIC
        and (suffix in _RAW_SUFFIXES or suffix == "")
    )
    if suffix in _RAW_SUFFIXES and sample_rate is None:
        raise AudioError(
            f"{name} is raw PCM without a header, so its sample rate is unknown. "
            "Pass it, e.g. load_audio(path, sample_rate=16000)."
        )
    if raw:
        assert sample_rate is not None
        if max_seconds is not None and size / 2 / sample_rate > max_seconds:
            raise AudioError(
                _too_long_message(name, size / 2 / sample_rate, max_seconds)
            )
        return pcm16_to_float(
            data if data is not None else path.read_bytes()
        ), sample_rate  # type: ignore[union-attr]
    try:
        with sf.SoundFile(io.BytesIO(data) if data is not None else str(path)) as snd:
            rate, frames = int(snd.samplerate), int(snd.frames)
            if max_seconds is not None and rate > 0 and frames / rate > max_seconds:
                raise AudioError(_too_long_message(name, frames / rate, max_seconds))
            x = snd.read(dtype="float32", always_2d=True)
    except AudioError:
        raise
    except Exception:  # noqa: BLE001 - soundfile raises several types; the person only needs to know it is unreadable
        hint = "" if suffix else " If it is raw 16-bit PCM, pass its sample_rate."
        raise AudioError(_not_audio_message(name) + hint) from None
    if sample_rate is not None and sample_rate != rate:
        raise AudioError(
            f"{name} says it was recorded at {rate} Hz, but sample_rate={sample_rate} was passed. "
            "sample_rate only describes raw PCM; leave it out (the result is always 16 kHz)."
        )
    if x.shape[0] == 0:
        raise AudioError(f"{name} contains no sound (0 samples). Record again.")
    announced = int.from_bytes(head8[4:8], "little") + 8 if head == b"RIFF" and len(head8) == 8 else 0
    if 8 < announced < 0xFFFFFFFF and size < announced:  # 0 / 0xFFFFFFFF: written by a streaming recorder
        warnings.warn(
            f"{name} looks cut off: it holds {x.shape[0] / rate:.1f} s, only {100 * size / announced:.0f} % of what "
            "its header announces (the copy or the recording stopped early). The part that is there was read; "
            "check the original file.",
            stacklevel=2,
        )
    return (x[:, 0].copy() if x.shape[1] == 1 else x), rate


def load_audio(
    source: str | os.PathLike | bytes | bytearray | memoryview | BinaryIO,
    *,
    sample_rate: int | None = None,
    max_seconds: float | None = 600,
) -> np.ndarray:
    """Read a recording as ``(n,)`` float32 mono at 16 kHz.

    Args:
        source: a path, the file's bytes, or a binary file object. WAV, FLAC
            and OGG are decoded with soundfile (their header gives the rate).
        sample_rate: the rate of *raw* headerless 16-bit little-endian mono PCM
            (a ``.pcm``/``.raw`` file, or bytes without a header). It does not
            choose the output rate, which is always 16 kHz.
        max_seconds: refuse longer recordings (default 10 minutes); ``None``
            for no limit. Checked from the header, before decoding.

    Returns:
        ``(n,)`` float32 at 16 kHz; channels averaged; samples as stored (a float
        file may hold values beyond ±1 or NaN: :func:`check_quality` reports them).

    Raises:
        AudioError: missing, empty, unreadable or too long input, never a
        soundfile traceback.

    >>> load_audio(b"\\x00\\x40" * 8000, sample_rate=8000).shape
    (16000,)
    """
    x, rate = read_audio(source, sample_rate=sample_rate, max_seconds=max_seconds)
    x = to_mono(x)
    return resample(x, rate, _SR) if rate != _SR else x


# --------------------------------------------------------------------------- #
# Saving
# --------------------------------------------------------------------------- #


def save_audio(
    path: str | os.PathLike, wav: np.ndarray, sample_rate: int = _SR
) -> Path:
    """Write a recording atomically: the file is either the old one or the complete new one.

    The audio goes to a temporary file in the same folder, which is flushed,
    fsynced and renamed over ``path`` (``os.replace``); then the folder is
    fsynced. A crash at any point leaves at worst a stray ``.<name>.*.tmp``.

    Args:
        path: ``.wav`` or ``.flac`` (16-bit PCM) or ``.ogg`` (Vorbis). The
            parent folder is created if needed.
        wav: ``(n,)`` samples in [-1, 1] (``(n, channels)`` is mixed to mono).
            Values beyond ±1 are clipped to ±1, because 16-bit files cannot hold
            them; run :func:`check_quality` first to record that they were clipped.
        sample_rate: rate of ``wav`` in Hz (default 16000), stored in the header.

    Returns:
        The path written.

    Raises:
        AudioError: NaN/inf samples, no samples, an unsupported suffix, or the file
        could not be written (full disk, read-only folder; nothing is left behind).
    """
    path = Path(os.fspath(path))
    data = _checked_bytes(path, wav, sample_rate)
    try:
        write_bytes_atomic(path, data)
    except OSError as err:
        raise AudioError(disk_error_message(err, path) + " Nothing was saved.") from None
    return path


def _checked_bytes(path: Path, wav: np.ndarray, sample_rate: int) -> bytes:
    """Check ``wav`` and the suffix of ``path`` (plain AudioErrors), then encode it in memory."""
    sample_rate = _check_rate(sample_rate)
    fmt = _WRITE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise AudioError(
            f"Cannot save audio as {path.name!r}: use a name ending in .flac (recommended), .wav or .ogg."
        )
    x = to_mono(wav)
    if x.size == 0:
        raise AudioError(
            f"Nothing to save in {path.name!r}: the recording has no samples. Record again."
        )
    n_bad = int(np.count_nonzero(~np.isfinite(x)))
    if n_bad:
        raise AudioError(
            f"Cannot save {path.name!r}: {n_bad} samples are not numbers (NaN or infinity), "
            "so the recording is damaged. Check the microphone connection and record again."
        )
    return _encode(np.clip(x, -1.0, 1.0), sample_rate, fmt)


def _encode(x: np.ndarray, sample_rate: int, fmt: tuple[str, str]) -> bytes:
    """The file's bytes, encoded in memory: a write error is then an ``OSError`` from our own write,
    not a bare ``AssertionError`` from inside soundfile."""
    buf = io.BytesIO()
    sf.write(buf, x, sample_rate, format=fmt[0], subtype=fmt[1])
    return buf.getvalue()


def encode_audio(wav: np.ndarray, suffix: str = ".flac", sample_rate: int = _SR) -> bytes:
    """The bytes :func:`save_audio` would write, with the same checks, without touching the disk.

    Args:
        wav: ``(n,)`` samples in [-1, 1] (clipped beyond), as for :func:`save_audio`.
        suffix: ``".flac"`` (16-bit), ``".wav"`` (16-bit) or ``".ogg"`` (Vorbis).
        sample_rate: rate of ``wav`` in Hz.

    >>> encode_audio(np.zeros(160, np.float32))[:4]
    b'fLaC'
    """
    return _checked_bytes(Path("audio" + suffix), wav, sample_rate)


# --------------------------------------------------------------------------- #
# Quality
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a recording.

    Attributes:
        code: stable identifier, one of :data:`PROBLEM_CODES` (for programs).
        severity: ``"error"`` (the take should not be used for training) or
            ``"warning"`` (usable, but could be better).
        message: plain language, with the measured value and what to do.
    """

    code: str
    severity: Severity
    message: str

    def __post_init__(self) -> None:
        if self.severity not in ("error", "warning"):
            raise ValueError(
                f"severity must be 'error' or 'warning', got {self.severity!r}"
            )

    def to_dict(self) -> dict[str, str]:
        """``{"code", "severity", "message"}``."""
        return {"code": self.code, "severity": self.severity, "message": self.message}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Problem:
        """Inverse of :meth:`to_dict`."""
        return cls(
            code=str(d["code"]), severity=d["severity"], message=str(d["message"])
        )


@dataclass
class QualityReport:
    """What :func:`check_quality` measured, and the problems it found.

    Attributes:
        duration_s: length in seconds.
        peak: largest ``|sample|`` (0..1 for valid audio; above 1 will be clipped).
        clipping_ratio: fraction of samples with ``|x| >= 0.999``.
        rms_dbfs: level of the whole take in dBFS (-120 for digital silence).
        speech_dbfs: level of the loud part: 95th percentile of 25 ms frame levels.
        snr_db: estimated signal-to-noise ratio: 95th minus 10th percentile of
            25 ms frame levels (10 ms hop), i.e. loud frames vs the pauses. Low
            when there are no pauses to measure the noise in.
        leading_silence_s: silence before the speech starts (frames 35 dB below
            the loudest one count as silence).
        trailing_silence_s: silence after the speech ends.
        speech_s: total time of non-silent frames.
        n_nonfinite: number of NaN/inf samples.
        sample_rate: rate of the checked audio in Hz.
        n_channels: channels of the checked audio.
        problems: what is wrong, errors first.
    """

    duration_s: float = 0.0
    peak: float = 0.0
    clipping_ratio: float = 0.0
    rms_dbfs: float = _FLOOR_DBFS
    speech_dbfs: float = _FLOOR_DBFS
    snr_db: float = 0.0
    leading_silence_s: float = 0.0
    trailing_silence_s: float = 0.0
    speech_s: float = 0.0
    n_nonfinite: int = 0
    sample_rate: int = _SR
    n_channels: int = 1
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no problem is an error (warnings are fine)."""
        return not any(p.severity == "error" for p in self.problems)

    @property
    def codes(self) -> list[str]:
        """The problem codes, in order."""
        return [p.code for p in self.problems]

    @property
    def message(self) -> str:
        """All problem messages in one paragraph, or ``"Good recording."``."""
        if not self.problems:
            return "Good recording."
        return " ".join(p.message for p in self.problems)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (finite floats rounded to 4 decimals), for the manifest."""
        out: dict[str, Any] = {}
        for name in _REPORT_FLOATS:
            v = float(getattr(self, name))
            out[name] = round(v, 4) if math.isfinite(v) else 0.0
        out["n_nonfinite"] = int(self.n_nonfinite)
        out["sample_rate"] = int(self.sample_rate)
        out["n_channels"] = int(self.n_channels)
        out["ok"] = self.ok
        out["problems"] = [p.to_dict() for p in self.problems]
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QualityReport:
        """Inverse of :meth:`to_dict`; missing fields take their defaults, unknown ones are ignored."""
        kwargs: dict[str, Any] = {k: float(d[k]) for k in _REPORT_FLOATS if k in d}
        for k in ("n_nonfinite", "sample_rate", "n_channels"):
            if k in d:
                kwargs[k] = int(d[k])
        kwargs["problems"] = [Problem.from_dict(p) for p in d.get("problems", [])]
        return cls(**kwargs)


_REPORT_FLOATS = (
    "duration_s",
    "peak",
    "clipping_ratio",
    "rms_dbfs",
    "speech_dbfs",
    "snr_db",
    "leading_silence_s",
    "trailing_silence_s",
    "speech_s",
)


def _frame_levels_db(x: np.ndarray, sample_rate: int) -> tuple[np.ndarray, int, int]:
    """RMS level of 25 ms frames every 10 ms, in dBFS.

    Args:
        x: ``(n,)`` finite float samples, n >= 1.

    Returns:
        ``(levels_db (n_frames,), frame_len, hop)``, frame i covering samples
        ``[i * hop, i * hop + frame_len)``. Shorter input is one frame.
    """
    frame_len = max(1, round(_FRAME_S * sample_rate))
    hop = max(1, round(_HOP_S * sample_rate))
    if x.size <= frame_len:
        frame_len = x.size
        starts = np.zeros(1, dtype=np.int64)
    else:
        starts = np.arange(0, x.size - frame_len + 1, hop, dtype=np.int64)
    # Running sum of squares: O(n) for any frame overlap, no (frames, frame_len) copy.
    cs = np.concatenate([[0.0], np.cumsum(np.square(x, dtype=np.float64))])
    power = np.maximum((cs[starts + frame_len] - cs[starts]) / frame_len, 0.0)
    return 10.0 * np.log10(np.maximum(power, _EPS_POWER)), frame_len, hop


def _speech_bounds(levels_db: np.ndarray, top_db: float) -> tuple[int, int, int]:
    """``(first, last, count)`` of frames within ``top_db`` of the loudest frame."""
    loud = np.flatnonzero(levels_db > levels_db.max() - top_db)
    return int(loud[0]), int(loud[-1]), int(loud.size)


def _valid_rate(sample_rate: Any) -> bool:
    """A positive whole number of Hz (``16000`` or ``16000.0``)."""
    if isinstance(sample_rate, bool) or not isinstance(
        sample_rate, (int, np.integer, float, np.floating)
    ):
        return False
    return (
        math.isfinite(sample_rate)
        and sample_rate > 0
        and float(sample_rate).is_integer()
    )


def _rate_problem(sample_rate: Any) -> Problem | None:
    if not _valid_rate(sample_rate):
        return Problem(
            "wrong_rate",
            "error",
            f"The sample rate {sample_rate!r} is not valid: it must be a number of Hz such as 16000. "
            "Check the recorder settings.",
        )
    rate = float(sample_rate)
    if rate < _MIN_RATE:
        return Problem(
            "wrong_rate",
            "error",
            f"Sample rate {rate:g} Hz is too low for speech recognition (at least 8000 Hz, ideally "
            "16000 Hz or more): change the recorder settings and record again.",
        )
    if rate < _SR:
        quality = (
            "telephone quality"
            if rate == _MIN_RATE
            else "lower quality than the 16000 Hz we use"
        )
        return Problem(
            "wrong_rate",
            "warning",
            f"Sample rate {rate:g} Hz ({quality}): it will be converted to 16000 Hz, but high sounds "
            "such as 's' and 'f' are lost. If you can, set the recorder to 16000 Hz or more.",
        )
    if rate != _SR:
        return Problem(
            "wrong_rate",
            "warning",
            f"Sample rate {rate:g} Hz: it will be converted to 16000 Hz automatically. Nothing to do.",
        )
    return None


def check_quality(
    wav: np.ndarray,
    sample_rate: int = _SR,
    *,
    min_seconds: float = 0.5,
    max_seconds: float = 30.0,
) -> QualityReport:
    """Measure a take and list what is wrong with it, in plain language.

    Never raises on a numeric array of any dtype or shape (NaN, empty, int16,
    stereo ``(n, 2)``...); unusable input is reported as an error problem.

    Args:
        wav: ``(n,)`` or ``(n, channels)`` samples at ``sample_rate``; integer
            PCM is scaled (int16 / 32768).
        sample_rate: rate of ``wav`` in Hz. Not 16000: a ``wrong_rate``
            warning (it will be resampled); below 8000 Hz: an error.
        min_seconds: shorter takes are ``too_short`` errors.
        max_seconds: longer takes are ``too_long`` errors.

    Returns:
        A :class:`QualityReport`; ``report.ok`` is False when any problem is an
        error. Errors: empty, not_audio, bad_shape, nonfinite, too_short,
        too_long, silent, too_quiet (below -50 dBFS), clipped (over 0.1 % of
        samples at full scale), wrong_rate (below 8 kHz). Warnings: stereo,
        wrong_rate, too_quiet (below -38 dBFS), too_loud, noisy (SNR below
        15 dB), long_silence (over 1.5 s before or after the speech; it is
        trimmed by :func:`trim_silence`).
    """
    problems: list[Problem] = []
    rate_problem = _rate_problem(sample_rate)
    valid_rate = _valid_rate(sample_rate)
    rate = int(sample_rate) if valid_rate else _SR  # durations need some rate
    report = QualityReport(
        sample_rate=rate if valid_rate else 0
    )  # 0: the given rate was not valid

    def done() -> QualityReport:
        report.problems = sorted(
            problems, key=lambda p: p.severity != "error"
        )  # stable: errors first
        return report

    if rate_problem is not None:
        problems.append(rate_problem)
    try:
        x = _as_float32(wav)
    except (AudioError, TypeError, ValueError):
        problems.append(
            Problem(
                "not_audio",
                "error",
                "This is not audio (the data are not numbers). Record again; if it keeps happening, "
                "restart the recorder.",
            )
        )
        return done()
    if x.ndim == 2 and _channel_axis(x.shape) is not None:
        axis = _channel_axis(x.shape)
        report.n_channels = int(x.shape[axis])  # type: ignore[index]
        if report.n_channels > 1:
            problems.append(
                Problem(
                    "stereo",
                    "warning",
                    f"Stereo recording ({report.n_channels} channels): it will be mixed to mono automatically.",
                )
            )
        nonfinite = ~np.isfinite(x)
        x = np.where(nonfinite, 0.0, x).astype(np.float32)
        report.n_nonfinite = int(np.count_nonzero(nonfinite))
        x = to_mono(x)
    elif x.ndim <= 1:
        x = x.reshape(-1)
        nonfinite = ~np.isfinite(x)
        report.n_nonfinite = int(np.count_nonzero(nonfinite))
        x = np.where(nonfinite, 0.0, x).astype(np.float32)
    else:
        problems.append(
            Problem(
                "bad_shape",
                "error",
                f"The audio has an unexpected shape {x.shape}: expected (samples,) or (samples, channels). "
                "Record again; if it keeps happening, restart the recorder.",
            )
        )
        return done()

    n = int(x.size)
    if n == 0:
        problems.append(
            Problem(
                "empty",
                "error",
                "Nothing was recorded (0 samples): check that the microphone is connected and selected, "
                "then record again.",
            )
        )
        return done()
    if report.n_nonfinite:
        problems.append(
            Problem(
                "nonfinite",
                "error",
                f"{report.n_nonfinite} samples ({100 * report.n_nonfinite / n:.1f}%) are not numbers (NaN or "
                "infinity): the recording is damaged. Check the microphone connection and record again.",
            )
        )

    report.duration_s = n / rate
    if report.duration_s < min_seconds:
        problems.append(
            Problem(
                "too_short",
                "error",
                f"Too short ({report.duration_s:.2f} s): a take needs at least {min_seconds:g} s. "
                "Record again and read the whole prompt.",
            )
        )
    if report.duration_s > max_seconds:
        problems.append(
            Problem(
                "too_long",
                "error",
                f"Too long ({report.duration_s:.1f} s; the limit is {max_seconds:g} s): record one prompt "
                "per take, or split the recording.",
            )
        )

    ax = np.abs(x)
    report.peak = float(ax.max())
    report.clipping_ratio = float(np.count_nonzero(ax >= _CLIP_LEVEL) / n)
    mean_power = float(np.mean(np.square(x, dtype=np.float64)))
    report.rms_dbfs = float(10.0 * math.log10(max(mean_power, _EPS_POWER)))
    levels, frame_len, hop = _frame_levels_db(x, rate)
    report.speech_dbfs = float(np.percentile(levels, 95))
    report.snr_db = float(max(0.0, report.speech_dbfs - np.percentile(levels, 10)))

    if report.peak == 0.0 or report.speech_dbfs < _SILENT_DBFS:
        level = (
            "digital silence"
            if report.peak == 0.0
            else f"{report.speech_dbfs:.0f} dBFS"
        )
        problems.append(
            Problem(
                "silent",
                "error",
                f"Silent ({level}): no sound reached the microphone. Check that the right microphone is "
                "selected and not muted, then record again.",
            )
        )
        return done()

    first, last, count = _speech_bounds(levels, _TRIM_TOP_DB)
    start, end = first * hop, min(n, last * hop + frame_len)
    report.leading_silence_s = start / rate
    report.trailing_silence_s = (n - end) / rate
    report.speech_s = min(report.duration_s, count * hop / rate)

    if report.clipping_ratio > _CLIP_RATIO:
        problems.append(
            Problem(
                "clipped",
                "error",
                f"Clipped ({100 * report.clipping_ratio:.1f}% of samples at full scale): the sound was too "
                "loud for the recorder. Move the microphone a little further away (15-45 cm) or lower the "
                "input volume, then record again.",
            )
        )
    elif report.peak >= _LOUD_PEAK:
        problems.append(
            Problem(
                "too_loud",
                "warning",
                f"Very loud (peak at {100 * min(report.peak, 1.0):.0f}% of full scale): close to clipping. "
                "Move the microphone a little further away or lower the input volume.",
            )
        )
    if report.speech_dbfs < _QUIET_WARN_DBFS:
        severity: Severity = (
            "error" if report.speech_dbfs < _QUIET_ERROR_DBFS else "warning"
        )
        problems.append(
            Problem(
                "too_quiet",
                severity,
                f"Too quiet ({report.speech_dbfs:.0f} dBFS): move the microphone closer (15-45 cm) or speak "
                "a little louder, then record again.",
            )
        )
    if report.snr_db < _NOISY_SNR_DB:
        problems.append(
            Problem(
                "noisy",
                "warning",
                f"Background noise is high (estimated signal-to-noise ratio {report.snr_db:.0f} dB): record in "
                "a quieter room, away from fans and traffic, or move the microphone closer.",
            )
        )
    if max(report.leading_silence_s, report.trailing_silence_s) > _LONG_SILENCE_S:
        parts = []
        if report.leading_silence_s > _LONG_SILENCE_S:
            parts.append(f"{report.leading_silence_s:.1f} s before the speech")
        if report.trailing_silence_s > _LONG_SILENCE_S:
            parts.append(f"{report.trailing_silence_s:.1f} s after it")
        problems.append(
            Problem(
                "long_silence",
                "warning",
                f"Long silence ({' and '.join(parts)}): it is trimmed automatically. Next time, start "
                "speaking soon after pressing Record and stop soon after the last word.",
            )
        )
    return done()


def trim_silence(
    wav: np.ndarray,
    *,
    top_db: float = _TRIM_TOP_DB,
    pad_seconds: float = 0.1,
    sample_rate: int = _SR,
) -> np.ndarray:
    """Cut leading and trailing silence, keeping a little padding.

    The rule of ``librosa.effects.trim``: frames more than ``top_db`` below the
    loudest frame are silence. It is computed here with numpy on 25 ms frames
    every 10 ms, because importing ``librosa.effects`` also imports
    scikit-learn and numba (over a second) just for this.

    Args:
        wav: ``(n,)`` samples at ``sample_rate`` (``(n, channels)`` is mixed to mono).
        top_db: silence threshold below the loudest frame, in dB.
        pad_seconds: silence kept on each side of the speech, in seconds.
        sample_rate: rate of ``wav`` in Hz (default 16000).

    Returns:
        ``(m,)`` float32 with ``m <= n``, a contiguous slice of ``wav``. Empty
        only for empty input; all-silent input is returned unchanged.

    >>> x = np.zeros(48_000, dtype=np.float32); x[16_000:32_000] = 0.5
    >>> trim_silence(x).shape  # 1 s of sound + 0.1 s each side (+ frame rounding)
    (19760,)
    """
    x = to_mono(wav)
    sample_rate = _check_rate(sample_rate)
    if x.size == 0:
        return x
    if not np.all(np.isfinite(x)):
        raise AudioError(
            "Cannot trim audio with NaN or infinite samples: the recording is damaged. Record again."
        )
    if top_db <= 0 or pad_seconds < 0:
        raise AudioError(
            f"top_db must be > 0 and pad_seconds >= 0; got top_db={top_db}, pad_seconds={pad_seconds}."
        )
    levels, frame_len, hop = _frame_levels_db(x, sample_rate)
    first, last, _ = _speech_bounds(levels, top_db)
    pad = round(pad_seconds * sample_rate)
    start = max(0, first * hop - pad)
    end = min(x.size, last * hop + frame_len + pad)
    return x[start:end].copy()


# --------------------------------------------------------------------------- #
# Recording and playback
# --------------------------------------------------------------------------- #


@dataclass(eq=False)
class Recording:
    """One take in memory.

    Attributes:
        audio: ``(n,)`` float32 samples at ``sample_rate`` (16 kHz inside the
            package). Given ``(n, channels)`` or int16, it is mixed to mono and
            scaled on construction.
        sample_rate: Hz.
        text: what was said (the prompt or a transcript), may be empty.

    >>> Recording(np.zeros(8000, dtype=np.float32)).duration_s
    0.5
    """

    audio: np.ndarray
    sample_rate: int = _SR
    text: str = ""

    def __post_init__(self) -> None:
        self.audio = to_mono(self.audio)
        self.sample_rate = _check_rate(self.sample_rate)

    @property
    def duration_s(self) -> float:
        """Length in seconds."""
        return self.audio.size / self.sample_rate

    def quality(
        self, *, min_seconds: float = 0.5, max_seconds: float = 30.0
    ) -> QualityReport:
        """:func:`check_quality` of this take."""
        return check_quality(
            self.audio,
            self.sample_rate,
            min_seconds=min_seconds,
            max_seconds=max_seconds,
        )

    def resampled(self, target_sr: int = _SR) -> Recording:
        """A copy at ``target_sr`` Hz (default 16000)."""
        return Recording(
            resample(self.audio, self.sample_rate, target_sr), target_sr, self.text
        )


def play(wav: np.ndarray | Recording, sample_rate: int = _SR) -> Any:
    """An ``IPython.display.Audio`` player for a notebook (needs ``workbench[ui]``).

    Args:
        wav: ``(n,)`` samples in [-1, 1] at ``sample_rate``, or a :class:`Recording`.
            Played at its true loudness (not normalized); values beyond ±1 are clipped.
    """
    if isinstance(wav, Recording):
        wav, sample_rate = wav.audio, wav.sample_rate
    display = require("IPython.display", extra="ui", purpose="play audio in a notebook")
    x = to_mono(wav)
    x = np.clip(np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0), -1.0, 1.0)
    return display.Audio(data=x, rate=_check_rate(sample_rate), normalize=False)
