"""Lossless coding of the compressor's symbols with a range coder (the ``constriction`` library).

Each symbol position ``j`` of a frame has its own categorical distribution ``tables[j]``
(see :meth:`Compressor.fit_tables`); the coded size is then close to the symbols' cross-entropy
under those tables, i.e. below ``bits`` per symbol whenever the symbols are predictable.

Tables conditioned on the previous frame, ``(dims, levels + 1, levels)``, code symbol ``s`` at
position ``j`` of frame ``t`` with ``tables[j, c]``, ``c`` the symbol at ``j`` in frame ``t - 1``
(row ``levels`` for the first frame): neighbouring frames of speech are alike, so this spends
fewer bits than per-position tables on the same symbols (lossless either way). The decoder reads
them frame by frame, as it needs the previous frame's symbols.

``constriction`` is optional (``pip install 'workbench[split]'``); the core imports without it.

>>> import numpy as np
>>> tables = np.array([[0.7, 0.1, 0.1, 0.1], [0.25, 0.25, 0.25, 0.25]])
>>> sym = np.array([[0, 3], [0, 1], [1, 2]])
>>> data = encode_symbols(sym, tables)
>>> bool((decode_symbols(data, tables, frames=3) == sym).all())
True
>>> conditioned = np.stack([np.vstack([tables[j]] * 5) for j in range(2)])  # (2, 5, 4): one row per previous symbol
>>> bool((decode_symbols(encode_symbols(sym, conditioned), conditioned, frames=3) == sym).all())
True
"""

from __future__ import annotations

import math

import numpy as np

from workbench._optional import require
from workbench.errors import WireFormatError

__all__ = ["MIN_PROBABILITY", "check_tables", "conditioned", "count_tables", "decode_symbols", "encode_symbols",
           "payload_bounds"]

# Padding frames (a Whisper window's silence after the audio) are coded by an adaptive model: see
# workbench.device_tuning.padding, which builds on the helpers here.

MIN_PROBABILITY = 2.0**-20  # the least a table may give a symbol (the coder's own floor is 2**-24)
_PRECISION = 2.0**-24  # constriction's leaky quantization: each probability moves by up to ~this
_WORD = 32  # bits in one range-coder word
_CHUNK = 64  # symbol frames whose probability rows are built at once (memory: levels * dims floats a frame)


def conditioned(tables: np.ndarray) -> bool:
    """Whether ``tables`` are conditioned on the previous frame (``(dims, levels + 1, levels)``)."""
    return np.ndim(tables) == 3


def count_tables(symbols, dims: int, levels: int, *, conditioned: bool = False, prior: float = 0.5) -> np.ndarray:
    """Probability tables counted over ``symbols`` (each recording's ``(frames, dims)`` ints in
    ``[0, levels)``): ``(dims, levels)``, or ``(dims, levels + 1, levels)`` per previous symbol at
    each position (the first frame under row ``levels``). ``prior`` is added to every count so that
    no symbol has probability 0; with a prior, none is below :data:`MIN_PROBABILITY` either."""
    counts = np.full((dims, levels + 1, levels) if conditioned else (dims, levels), float(prior))
    pos = np.arange(dims)[None]
    for s in symbols:
        s = np.asarray(s, dtype=np.int64).reshape(-1, dims)
        index = (pos, np.vstack([np.full((1, dims), levels), s[:-1]]), s) if conditioned else (pos, s)
        flat = np.ravel_multi_index(np.broadcast_arrays(*index), counts.shape).ravel()
        counts += np.bincount(flat, minlength=counts.size).reshape(counts.shape)
    probs = counts / counts.sum(-1, keepdims=True)
    if prior > 0:  # counts over millions of symbols go below the floor the loader checks
        probs = np.maximum(probs, MIN_PROBABILITY)
        probs /= probs.sum(-1, keepdims=True)
    return probs


def check_tables(tables: np.ndarray) -> str | None:
    """What is wrong with probability tables ``(dims, levels)`` or ``(dims, levels + 1, levels)``
    (conditioned on the previous frame), or None when they are usable.

    Usable means finite, every entry at least :data:`MIN_PROBABILITY`, every row summing to 1
    (within float32 rounding): the range coder then codes any symbol, and a payload's size has
    the bounds :func:`payload_bounds` gives.
    """
    t = np.asarray(tables, dtype=np.float64)
    if t.ndim not in (2, 3) or 0 in t.shape or (t.ndim == 3 and t.shape[1] != t.shape[2] + 1):
        return f"they have shape {t.shape}, not (dims, levels) or (dims, levels + 1, levels)"
    if not np.isfinite(t).all():
        return "they hold NaN or infinite values"
    if t.min() < MIN_PROBABILITY * (1 - 1e-3):
        return f"a symbol has probability {t.min():.3g}, below the least usable {MIN_PROBABILITY:.3g}"
    worst = float(np.abs(t.sum(axis=-1) - 1).max())
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
    t = t.reshape(t.shape[0], -1)  # conditioned tables: the extremes over every previous symbol
    least = float(-np.log2(np.minimum(1.0, t.max(axis=1) + 4 * _PRECISION)).sum()) * frames
    most = float(-np.log2(t.min(axis=1) * 15 / 16).sum()) * frames  # 15/16: p >= 2**-20 moves by <= 2**-24
    most += -math.log2(MIN_PROBABILITY * 15 / 16) * t.shape[0] * int(adaptive_frames)
    return 4 * max(0, math.floor((least - _WORD) / _WORD)), 4 * math.ceil((most + 2 * _WORD) / _WORD)


def _coder():
    return require("constriction", extra="split", purpose="code the device representation")


def _rows(tables: np.ndarray, frames: int) -> np.ndarray:
    """The probability row of every symbol in frame-major order: ``(frames * dims, levels)`` float32
    (per-position tables ``(dims, levels)`` only)."""
    t = np.asarray(tables, dtype=np.float32)
    return np.ascontiguousarray(np.tile(t, (frames, 1)))


def _conditioned_rows(tables: np.ndarray, previous: np.ndarray) -> np.ndarray:
    """``(..., dims, levels)`` float32: position ``j``'s row after symbol ``previous[..., j]``
    (``levels``: the first frame)."""
    t = np.asarray(tables, dtype=np.float32)
    return np.ascontiguousarray(t[np.arange(t.shape[0]), previous])


def encode_symbols(symbols: np.ndarray, tables: np.ndarray) -> bytes:
    """Symbols ``(frames, dims)`` ints in ``[0, levels)`` -> the range-coded bytes (whole 32-bit words)."""
    c = _coder()
    frames = np.asarray(symbols, dtype=np.int32).reshape(len(symbols), -1)
    levels = np.shape(tables)[-1]
    previous = np.concatenate([np.full((1, frames.shape[1]), levels, dtype=np.int32), frames[:-1]])
    enc, cat = c.stream.queue.RangeEncoder(), c.stream.model.Categorical(perfect=False)
    for s in range(0, len(frames), _CHUNK):  # the rows of a chunk at a time: levels * dims floats per frame
        chunk = frames[s:s + _CHUNK]
        rows = (_conditioned_rows(tables, previous[s:s + _CHUNK]) if conditioned(tables)
                else _rows(tables, len(chunk))).reshape(-1, levels)
        enc.encode(np.ascontiguousarray(chunk.reshape(-1)), cat, np.ascontiguousarray(rows))
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
    dims, levels = np.shape(tables)[0], np.shape(tables)[-1]
    lo, hi = payload_bounds(tables, frames)
    if not lo <= len(data) <= hi:
        raise WireFormatError(
            f"The payload is {len(data)} bytes, but {frames} frames of {dims} symbols take {lo} to {hi} bytes "
            "with this compressor: the message was damaged or made up. Send it again.")
    words = np.frombuffer(data, dtype="<u4").astype(np.uint32)
    try:
        dec = c.stream.queue.RangeDecoder(words)
        cat = c.stream.model.Categorical(perfect=False)
        if conditioned(tables):
            out, previous = np.empty((frames, dims), dtype=np.int64), np.full(dims, levels)
            for t in range(frames):
                out[t] = previous = np.clip(np.asarray(dec.decode(cat, _conditioned_rows(tables, previous))), 0, levels)
        else:
            out = np.concatenate([np.asarray(dec.decode(cat, _rows(tables, min(_CHUNK, frames - s))))
                                  for s in range(0, frames, _CHUNK)] or [np.zeros(0, dtype=np.int64)])
    except (ValueError, RuntimeError, AssertionError) as err:  # constriction reports bad streams so
        raise WireFormatError(f"The payload does not decode: it was damaged ({err}). Send it again.") from None
    out = np.asarray(out, dtype=np.int64)
    if out.size != frames * dims or out.min(initial=0) < 0 or out.max(initial=0) >= levels:
        raise WireFormatError("The payload decodes to symbols outside the compressor's range: it was damaged.")
    return out.reshape(frames, dims)
