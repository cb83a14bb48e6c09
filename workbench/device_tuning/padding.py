"""Padding frames that cost (nearly) nothing on the wire: an adaptive code for a window's silence.

A Whisper split sends its whole encoding window (:mod:`workbench.device_tuning.whisper_split`:
the encoder has no attention mask, so the silence frames after the audio are part of what the
server's layers read). On real prompts that window is about twice the audio, so with the
compressor's fixed tables about half of the bits went on the silence. The server knows which
symbol frames are padding (the audio length is in the header: frames ``>= ceil(true / stride)``),
so those frames are coded with a model both ends build as they go:

    p(symbol s at position j | the symbol c at j one frame earlier)
        = (ALPHA * tables[j, s] + count[j, c, s]) / (ALPHA + sum_s count[j, c, s])

counted over the padding frames coded so far in this message (floored at
:data:`~workbench.device_tuning.entropy.MIN_PROBABILITY`). Padding symbols repeat (log-mel of
silence is one constant frame; after ``k`` layers the frames move slowly with the positional
embedding), so after a few frames each one costs a small fraction of a bit. The code is lossless:
the server restores exactly what fixed tables would give (split == unsplit is untouched), only
fewer bytes travel. Wire format version 3 says a payload is coded this way.

>>> import numpy as np
>>> tables = np.full((2, 4), 0.25)
>>> sym = np.array([[1, 2], [3, 0]] + [[0, 0]] * 50)
>>> data = encode_padded(sym, tables, true_frames=2)
>>> bool((decode_padded(data, tables, frames=52, true_frames=2) == sym).all()), len(data) < 52 * 2 * 2 // 8
(True, True)
"""

from __future__ import annotations

import numpy as np

from workbench.device_tuning.entropy import MIN_PROBABILITY, _coder, _rows, payload_bounds
from workbench.errors import WireFormatError, WorkbenchError

__all__ = ["ALPHA", "decode_padded", "encode_padded"]

ALPHA = 1.0  # weight of the fixed tables against the counts of this message's padding symbols


class _Model:
    """The adaptive model's state: counts ``(dims, levels, levels)`` (position, context, symbol)."""

    def __init__(self, tables: np.ndarray) -> None:
        self.tables = np.asarray(tables, dtype=np.float64)
        if self.tables.ndim != 2:
            raise WorkbenchError("Symbol tables conditioned on the previous frame are not supported yet with the "
                                 "padding code (a Whisper split above layer 0): use a compressor with per-position "
                                 "tables (train it with --table-context 0).")
        dims, levels = self.tables.shape
        self.counts = np.zeros((dims, levels, levels))
        self.pos = np.arange(dims)

    def rows(self, context: np.ndarray) -> np.ndarray:
        """Probabilities ``(dims, levels)`` float32 of the next frame given the previous one's symbols."""
        c = self.counts[self.pos, context]  # (dims, levels)
        p = (ALPHA * self.tables + c) / (ALPHA + c.sum(1, keepdims=True))
        p = np.maximum(p, MIN_PROBABILITY)
        return (p / p.sum(1, keepdims=True)).astype(np.float32)

    def update(self, context: np.ndarray, symbols: np.ndarray) -> None:
        self.counts[self.pos, context, symbols] += 1


def _context(symbols: np.ndarray, f: int, dims: int) -> np.ndarray:
    return symbols[f - 1] if f > 0 else np.zeros(dims, dtype=np.int64)


def encode_padded(symbols: np.ndarray, tables: np.ndarray, true_frames: int) -> bytes:
    """Symbols ``(frames, dims)``: the first ``true_frames`` with the fixed ``tables``, the rest
    (padding) with the adaptive model -> range-coded bytes (whole 32-bit words)."""
    c = _coder()
    sym = np.asarray(symbols, dtype=np.int64)
    frames, dims = sym.shape
    true_frames = max(0, min(int(true_frames), frames))
    model = _Model(tables)
    rows = [_rows(tables, true_frames)] if true_frames else []
    for f in range(true_frames, frames):
        ctx = _context(sym, f, dims)
        rows.append(model.rows(ctx))
        model.update(ctx, sym[f])
    enc = c.stream.queue.RangeEncoder()
    if frames:
        enc.encode(np.ascontiguousarray(sym.reshape(-1).astype(np.int32)), c.stream.model.Categorical(perfect=False),
                   np.ascontiguousarray(np.concatenate(rows)))
    return enc.get_compressed().astype("<u4").tobytes()


def decode_padded(data: bytes, tables: np.ndarray, *, frames: int, true_frames: int) -> np.ndarray:
    """The inverse of :func:`encode_padded`: ``(frames, dims)`` int64 symbols.

    Raises:
        WireFormatError: the payload is not whole words, its size does not fit the frames
            (:func:`~workbench.device_tuning.entropy.payload_bounds`), or it does not decode.
    """
    c = _coder()
    if len(data) % 4:
        raise WireFormatError(f"The payload is {len(data)} bytes, not a whole number of 4-byte words.")
    dims, levels = np.asarray(tables).shape
    true_frames = max(0, min(int(true_frames), frames))
    lo, hi = payload_bounds(tables, true_frames, frames - true_frames)
    if not lo <= len(data) <= hi:
        raise WireFormatError(
            f"The payload is {len(data)} bytes, but {frames} frames of {dims} symbols take {lo} to {hi} bytes "
            "with this compressor: the message was damaged or made up. Send it again.")
    out = np.zeros((frames, dims), dtype=np.int64)
    model = _Model(tables)
    cat = c.stream.model.Categorical(perfect=False)
    try:
        dec = c.stream.queue.RangeDecoder(np.frombuffer(data, dtype="<u4").astype(np.uint32))
        if true_frames:
            out[:true_frames] = np.asarray(dec.decode(cat, _rows(tables, true_frames))).reshape(true_frames, dims)
        for f in range(true_frames, frames):
            ctx = _context(out, f, dims)
            out[f] = np.asarray(dec.decode(cat, model.rows(ctx)), dtype=np.int64)
            if out[f].min() < 0 or out[f].max() >= levels:
                break
            model.update(ctx, out[f])
    except (ValueError, RuntimeError, AssertionError) as err:  # constriction reports bad streams so
        raise WireFormatError(f"The payload does not decode: it was damaged ({err}). Send it again.") from None
    if out.min(initial=0) < 0 or out.max(initial=0) >= levels:
        raise WireFormatError("The payload decodes to symbols outside the compressor's range: it was damaged.")
    return out
