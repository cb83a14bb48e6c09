"""Small random base models for tests (no shipped weights needed)."""

from __future__ import annotations

import numpy as np
import torch

from workbench.models.tiny import TinyBackend, TinyConfig, TinyConformerCTC


def tiny_backend(seed: int = 0) -> TinyBackend:
    """A 3-block, 32-wide built-in-architecture model with random weights, frozen, eval mode."""
    torch.manual_seed(seed)
    cfg = TinyConfig(d_model=32, num_layers=3, num_heads=2, ff_mult=2, conv_kernel=5, subsample_channels=8,
                     dropout=0.0)
    backend = TinyBackend(TinyConformerCTC(cfg).eval(), name="test-tiny")
    return backend.freeze()


def noise_waves(n: int, seed: int = 0, lo: int = 6000, hi: int = 20000) -> list[np.ndarray]:
    """``n`` noise waveforms of random lengths (samples at 16 kHz)."""
    rng = np.random.default_rng(seed)
    return [(0.1 * rng.standard_normal(int(rng.integers(lo, hi)))).astype(np.float32) for _ in range(n)]
