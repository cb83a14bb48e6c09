"""A classical transform coder of Whisper's log-mel: the peer a signal-processing engineer would
build instead of a learned compressor (issue 28's bandwidth table).

Device: the audio's log-mel frames relative to the window's silence floor (the frames a split-0
message codes, :func:`~workbench.device_tuning.whisper_split.coded_frames`) are stacked 4 at a time
(40 ms, ``(T/4, 320)``), projected on the first ``dims`` principal components of the training
speech, divided by one step ``delta`` for every component and rounded (a uniform quantizer: the
small components round to 0 and cost almost nothing) and range-coded with tables conditioned on the
previous frame (:mod:`workbench.device_tuning.entropy`). Server: the inverse, and the silence
rebuilt from the floor, as a split-0 message does. A message costs the same 44-byte header and
4-byte floor as a split-0 message, so the bit rates compare as they are.

Fit on recordings that are not test material (the bench passes the real training prompts).

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> windows = [(rng.normal(size=(400, 80)).astype(np.float32) + 1, 40_000) for _ in range(3)]
>>> coder = TransformCoder.fit(windows, dims=16, delta=0.5)
>>> restored, n_bytes = coder.round_trip(*windows[0])
>>> restored.shape, n_bytes > 48
((400, 80), True)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

STACK = 4  # log-mel frames per coded frame (40 ms, as the k=0 compressors' stride)
HEADER_AND_FLOOR = 44 + 4  # a split-0 message's header (wire format version 2's) and its silence floor


def _stacked(window: np.ndarray, samples: int) -> tuple[np.ndarray, float, int]:
    """``(T/4, 320)`` log-mel minus the floor over the coded frames (the library's
    :func:`~workbench.device_tuning.transform.symbol_frames`), the floor, the coded frames."""
    import torch

    from workbench.device_tuning.transform import symbol_frames
    from workbench.device_tuning.whisper_split import coded_frames

    blocks = symbol_frames(torch.from_numpy(np.asarray(window)), samples, STACK)
    return blocks, float(window.min()), coded_frames(samples, window.shape[0])


@dataclasses.dataclass
class TransformCoder:
    """PCA ``(dims, 320)`` + uniform step ``delta`` + conditioned range-coder tables (see the module docstring)."""

    mean: np.ndarray
    basis: np.ndarray
    delta: float
    offset: int  # symbol = rounded coefficient + offset, in [0, levels)
    tables: np.ndarray  # (dims, levels + 1, levels)

    @classmethod
    def fit(cls, windows: Sequence[tuple[np.ndarray, int]], *, dims: int = 64, delta: float = 0.7,
            prior: float = 0.5) -> TransformCoder:
        """Fit on ``windows``: each a log-mel window ``(W, 80)`` and its recording's samples."""
        from workbench.device_tuning.entropy import count_tables

        x = np.concatenate([_stacked(w, s)[0] for w, s in windows])
        mean = x.mean(0)
        basis = np.linalg.svd(x - mean, full_matrices=False)[2][:dims]
        coeffs = [np.rint((_stacked(w, s)[0] - mean) @ basis.T / delta).astype(np.int64) for w, s in windows]
        offset = int(max(np.abs(c).max() for c in coeffs)) + 1  # room for a test value a little beyond training's
        tables = count_tables([c + offset for c in coeffs], dims, 2 * offset + 1, conditioned=True, prior=prior)
        return cls(mean, basis, float(delta), offset, tables)

    def round_trip(self, window: np.ndarray, samples: int) -> tuple[np.ndarray, int]:
        """What the server restores from ``window (W, 80)`` and the bytes that travel (header included)."""
        from workbench.device_tuning.entropy import decode_symbols, encode_symbols

        x, floor, n = _stacked(window, samples)
        symbols = np.clip(np.rint((x - self.mean) @ self.basis.T / self.delta), -self.offset, self.offset)
        data = encode_symbols(symbols.astype(np.int64) + self.offset, self.tables)
        decoded = decode_symbols(data, self.tables, frames=len(x)) - self.offset  # the server's side
        y = (decoded * self.delta) @ self.basis + self.mean
        out = np.full(window.shape, floor, dtype=np.float32)
        out[:n] = y.reshape(-1, window.shape[1])[:n] + floor
        return out, HEADER_AND_FLOOR + len(data)
