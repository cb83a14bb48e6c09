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

import numpy as np

from workbench._optional import require
from workbench.errors import WireFormatError

__all__ = ["decode_symbols", "encode_symbols"]


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
        WireFormatError: the payload is not whole words or does not decode to valid symbols.
    """
    c = _coder()
    if len(data) % 4:
        raise WireFormatError(f"The payload is {len(data)} bytes, not a whole number of 4-byte words.")
    words = np.frombuffer(data, dtype="<u4").astype(np.uint32)
    dims, levels = np.asarray(tables).shape
    try:
        dec = c.stream.queue.RangeDecoder(words)
        out = dec.decode(c.stream.model.Categorical(perfect=False), _rows(tables, frames))
    except (ValueError, RuntimeError, AssertionError) as err:  # constriction reports bad streams so
        raise WireFormatError(f"The payload does not decode: it was damaged ({err}). Send it again.") from None
    out = np.asarray(out, dtype=np.int64)
    if out.size != frames * dims or out.min(initial=0) < 0 or out.max(initial=0) >= levels:
        raise WireFormatError("The payload decodes to symbols outside the compressor's range: it was damaged.")
    return out.reshape(frames, dims)
