"""Samples and rates: arrays in any layout or dtype -> ``(n,)`` float32 mono, resampling, 16-bit PCM.

Every function here works on arrays in memory (no files): ``(n,)`` or
``(n, channels)`` samples, integer PCM scaled to [-1, 1), rates in Hz.

>>> to_mono(np.zeros((4, 2), dtype=np.int16)).shape
(4,)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from workbench._deprecated import renamed_keywords
from workbench._optional import require
from workbench.constants import SAMPLE_RATE
from workbench.errors import AudioError

__all__ = ["float_to_pcm16", "pcm16_to_float", "resample", "to_mono"]

_MAX_CHANNELS = 16  # the channel axis of a 2-D array is the smaller one, at most this


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


@renamed_keywords(orig_sr="orig_sample_rate", target_sr="target_sample_rate")
def resample(wav: np.ndarray, orig_sample_rate: int, target_sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Change the sample rate (librosa, ``res_type="soxr_hq"``).

    Args:
        wav: ``(..., n)`` samples at ``orig_sample_rate``; resampled along the last axis.
        orig_sample_rate: rate of ``wav`` in Hz.
        target_sample_rate: wanted rate in Hz (default 16000).

    Returns:
        ``(..., ceil(n * target_sample_rate / orig_sample_rate))`` float32. A copy even when the
        rates are equal.

    >>> resample(np.zeros(8000, dtype=np.float32), 8000).shape
    (16000,)
    """
    orig_sample_rate = _check_rate(orig_sample_rate, "orig_sample_rate")
    target_sample_rate = _check_rate(target_sample_rate, "target_sample_rate")
    x = _as_float32(wav)
    if orig_sample_rate == target_sample_rate or x.shape[-1:] == (0,):
        return x.copy()
    librosa = require("librosa", extra="core", purpose="resample audio")
    y = librosa.resample(
        np.ascontiguousarray(x),
        orig_sr=orig_sample_rate,
        target_sr=target_sample_rate,
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
