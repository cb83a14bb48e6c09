"""Audio files in and out: which formats are read, ``read_audio``/``load_audio``, ``save_audio``/``encode_audio``.

Reading refuses missing, empty, unreadable and too long input with a plain
:class:`~workbench.errors.AudioError` (never a soundfile traceback); writing is
atomic (the file is either the old one or the complete new one). What is read
comes back as ``(n,)`` float32 mono at 16 kHz (:func:`load_audio`) or as stored
(:func:`read_audio`).

>>> ".wav" in AUDIO_SUFFIXES and ".flac" in AUDIO_SUFFIXES
True
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf

from workbench._atomic import disk_error_message, write_bytes_atomic
from workbench._deprecated import renamed_keywords
from workbench.audio.samples import _check_rate, pcm16_to_float, resample, to_mono
from workbench.constants import SAMPLE_RATE
from workbench.errors import AudioError
from workbench.notices import notify

__all__ = [
    "AUDIO_SUFFIXES",
    "UNSUPPORTED_AUDIO_SUFFIXES",
    "encode_audio",
    "load_audio",
    "read_audio",
    "save_audio",
]

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


def _not_audio_message(name: str) -> str:
    return (
        f"{name} is not an audio file we can read ({_FORMAT_NAMES}). "
        "If it came from a phone app, export it as WAV and try again."
    )


def _too_long_message(name: str, seconds: float, max_s: float) -> str:
    return (
        f"{name} is {seconds / 60:.1f} minutes long; the limit is {max_s / 60:.1f} minutes. "
        "Cut it into shorter pieces, best one prompt per file (in Audacity, or with sox: "
        "'sox LONG.wav piece.wav trim 0 60 : newfile : restart' makes 1-minute pieces), and use the pieces. "
        "(From Python, load_audio(path, max_s=None) reads it whole.)"
    )


@renamed_keywords(max_seconds="max_s")
def read_audio(
    source: str | os.PathLike | bytes | bytearray | memoryview | BinaryIO,
    *,
    sample_rate: int | None = None,
    max_s: float | None = 600,
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
        if max_s is not None and size / 2 / sample_rate > max_s:
            raise AudioError(
                _too_long_message(name, size / 2 / sample_rate, max_s)
            )
        return pcm16_to_float(
            data if data is not None else path.read_bytes()
        ), sample_rate  # type: ignore[union-attr]
    try:
        with sf.SoundFile(io.BytesIO(data) if data is not None else str(path)) as snd:
            rate, frames = int(snd.samplerate), int(snd.frames)
            if max_s is not None and rate > 0 and frames / rate > max_s:
                raise AudioError(_too_long_message(name, frames / rate, max_s))
            x = snd.read(dtype="float32", always_2d=True)
    except AudioError:
        raise
    except (sf.SoundFileError, RuntimeError, TypeError, ValueError, OSError):
        # libsndfile refuses the data (SoundFileError, a RuntimeError); soundfile's own checks raise
        # TypeError/ValueError; reading a file that changed under us raises OSError. All mean "unreadable".
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
        notify(
            f"{name} looks cut off: it holds {x.shape[0] / rate:.1f} s, only {100 * size / announced:.0f} % of what "
            "its header announces (the copy or the recording stopped early). The part that is there was read; "
            "check the original file.",
            stacklevel=2,
        )
    return (x[:, 0].copy() if x.shape[1] == 1 else x), rate


@renamed_keywords(max_seconds="max_s")
def load_audio(
    source: str | os.PathLike | bytes | bytearray | memoryview | BinaryIO,
    *,
    sample_rate: int | None = None,
    max_s: float | None = 600,
) -> np.ndarray:
    """Read a recording as ``(n,)`` float32 mono at 16 kHz.

    Args:
        source: a path, the file's bytes, or a binary file object. WAV, FLAC
            and OGG are decoded with soundfile (their header gives the rate).
        sample_rate: the rate of *raw* headerless 16-bit little-endian mono PCM
            (a ``.pcm``/``.raw`` file, or bytes without a header). It does not
            choose the output rate, which is always 16 kHz.
        max_s: refuse longer recordings (default 10 minutes); ``None``
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
    x, rate = read_audio(source, sample_rate=sample_rate, max_s=max_s)
    x = to_mono(x)
    return resample(x, rate, SAMPLE_RATE) if rate != SAMPLE_RATE else x


# --------------------------------------------------------------------------- #
# Saving
# --------------------------------------------------------------------------- #


def save_audio(
    path: str | os.PathLike, wav: np.ndarray, sample_rate: int = SAMPLE_RATE
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


def encode_audio(wav: np.ndarray, suffix: str = ".flac", sample_rate: int = SAMPLE_RATE) -> bytes:
    """The bytes :func:`save_audio` would write, with the same checks, without touching the disk.

    Args:
        wav: ``(n,)`` samples in [-1, 1] (clipped beyond), as for :func:`save_audio`.
        suffix: ``".flac"`` (16-bit), ``".wav"`` (16-bit) or ``".ogg"`` (Vorbis).
        sample_rate: rate of ``wav`` in Hz.

    >>> encode_audio(np.zeros(160, np.float32))[:4]
    b'fLaC'
    """
    return _checked_bytes(Path("audio" + suffix), wav, sample_rate)
