"""Lossless coding of the compressor's symbols with a range coder (the ``constriction`` library).

Each symbol position ``j`` of a frame has its own categorical distribution ``tables[j]``
(see :meth:`Compressor.fit_tables`); the coded size is then close to the symbols' cross-entropy
under those tables, i.e. below ``bits`` per symbol whenever the symbols are predictable.

``constriction`` is optional (``pip install 'workbench[split]'``); the core imports without it.

>>> import numpy as np
>>> tables = np.array([[0.7, 0.1, 0.1, 0.1], [0.25, 0.25, 0.25, 0.25]])
>>> sym = np.array([[0, 3], [0, 1], [1, 2]])
>>> data = encode_symbols(sym, tables)
>>> bool((decode_symbols(data, tables, frames=3) == sym).all())
True
"""

from __future__ import annotations

import math

import numpy as np

from workbench._optional import require
from workbench.errors import WireFormatError

__all__ = ["MIN_PROBABILITY", "check_tables", "decode_symbols", "encode_symbols", "payload_bounds"]

# Padding frames (a Whisper window's silence after the audio) are coded by an adaptive model: see
# workbench.device_tuning.padding, which builds on the helpers here.

MIN_PROBABILITY = 2.0**-20  # the least a table may give a symbol (the coder's own floor is 2**-24)
_PRECISION = 2.0**-24  # constriction's leaky quantization: each probability moves by up to ~this
_WORD = 32  # bits in one range-coder word


def check_tables(tables: np.ndarray) -> str | None:
    """What is wrong with probability tables ``(dims, levels)``, or None when they are usable.

    Usable means finite, every entry at least :data:`MIN_PROBABILITY`, every row summing to 1
    (within float32 rounding): the range coder then codes any symbol, and a payload's size has
    the bounds :func:`payload_bounds` gives.
    """
    t = np.asarray(tables, dtype=np.float64)
    if t.ndim != 2 or 0 in t.shape:
        return f"they have shape {t.shape}, not (dims, levels)"
    if not np.isfinite(t).all():
        return "they hold NaN or infinite values"
    if t.min() < MIN_PROBABILITY * (1 - 1e-3):
        return f"a symbol has probability {t.min():.3g}, below the least usable {MIN_PROBABILITY:.3g}"
    worst = float(np.abs(t.sum(axis=1) - 1).max())
    if worst > 1e-3:
        return f"a row sums to {1 + worst:.4g} or {1 - worst:.4g}, not 1"
    return None


def payload_bounds(tables: np.ndarray, frames: int, adaptive_frames: int = 0) -> tuple[int, int]:
    """The fewest and most bytes :func:`encode_symbols` can give for ``frames`` symbol frames.

    Each symbol costs at least ``-log2`` of its position's largest probability and at most
    ``-log2`` of its smallest (both widened by the coder's quantization), plus up to two words
    of coder state; the server refuses a payload outside these bounds before decoding it, so a
    message cannot claim many frames with a few bytes. Tables must pass :func:`check_tables`.

    ``adaptive_frames`` more frames coded by an adaptive model
    (:func:`workbench.device_tuning.padding.encode_padded`) cost from nothing to ``-log2`` of
    :data:`MIN_PROBABILITY` per symbol.
    """
    t = np.asarray(tables, dtype=np.float64)
    least = float(-np.log2(np.minimum(1.0, t.max(axis=1) + 4 * _PRECISION)).sum()) * frames
    most = float(-np.log2(t.min(axis=1) * 15 / 16).sum()) * frames  # 15/16: p >= 2**-20 moves by <= 2**-24
    most += -math.log2(MIN_PROBABILITY * 15 / 16) * t.shape[0] * int(adaptive_frames)
    return 4 * max(0, math.floor((least - _WORD) / _WORD)), 4 * math.ceil((most + 2 * _WORD) / _WORD)


def _coder():
    return require("constriction", extra="split", purpose="code the device representation")


def _rows(tables: np.ndarray, frames: int) -> np.ndarray:
    """The probability row of every symbol in frame-major order: ``(frames * dims, levels)`` float32."""
    t = np.asarray(tables, dtype=np.float32)
    return np.ascontiguousarray(np.tile(t, (frames, 1)))


def encode_symbols(symbols: np.ndarray, tables: np.ndarray) -> bytes:
    """Symbols ``(frames, dims)`` ints in ``[0, levels)`` -> the range-coded bytes (whole 32-bit words)."""
    c = _coder()
    sym = np.ascontiguousarray(np.asarray(symbols, dtype=np.int32).reshape(-1))
    enc = c.stream.queue.RangeEncoder()
    enc.encode(sym, c.stream.model.Categorical(perfect=False), _rows(tables, len(symbols)))
    return enc.get_compressed().astype("<u4").tobytes()


def decode_symbols(data: bytes, tables: np.ndarray, *, frames: int) -> np.ndarray:
    """The inverse of :func:`encode_symbols`: ``(frames, dims)`` int64 symbols.

    Raises:
        WireFormatError: the payload is not whole words, its size does not fit ``frames``
            (:func:`payload_bounds`), or it does not decode to valid symbols.
    """
    c = _coder()
    if len(data) % 4:
        raise WireFormatError(f"The payload is {len(data)} bytes, not a whole number of 4-byte words.")
    dims, levels = np.asarray(tables).shape
    lo, hi = payload_bounds(tables, frames)
    if not lo <= len(data) <= hi:
        raise WireFormatError(
            f"The payload is {len(data)} bytes, but {frames} frames of {dims} symbols take {lo} to {hi} bytes "
            "with this compressor: the message was damaged or made up. Send it again.")
    words = np.frombuffer(data, dtype="<u4").astype(np.uint32)
    try:
        dec = c.stream.queue.RangeDecoder(words)
        out = dec.decode(c.stream.model.Categorical(perfect=False), _rows(tables, frames))
    except (ValueError, RuntimeError, AssertionError) as err:  # constriction reports bad streams so
        raise WireFormatError(f"The payload does not decode: it was damaged ({err}). Send it again.") from None
    out = np.asarray(out, dtype=np.int64)
    if out.size != frames * dims or out.min(initial=0) < 0 or out.max(initial=0) >= levels:
        raise WireFormatError("The payload decodes to symbols outside the compressor's range: it was damaged.")
    return out.reshape(frames, dims)
