"""Shared test helpers: synthetic audio and temporary speaker folders.

Audio is generated, never downloaded: every helper returns ``(n,)`` float32 at
``sr`` Hz (16 kHz by default) and is deterministic for a given seed.
"""

from __future__ import annotations

import os

# Nothing downloads at test time: transformers/huggingface_hub stay offline.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

SR = 16_000


def make_tone(
    seconds: float, sr: int = SR, amp: float = 0.3, freq: float = 220.0
) -> np.ndarray:
    """A steady sine: ``(round(seconds * sr),)`` float32, peak ``amp``."""
    t = np.arange(round(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def make_speechlike(
    seconds: float,
    sr: int = SR,
    *,
    amp: float = 0.4,
    lead_s: float = 0.2,
    tail_s: float = 0.2,
    noise_dbfs: float = -65.0,
    seed: int = 0,
) -> np.ndarray:
    """Syllable-like bursts of a harmonic voice with pauses, over a quiet noise floor.

    ``lead_s``/``tail_s`` of near-silence frame the "speech"; syllables are
    ~4 per second with short gaps, f0 130-170 Hz with 5 harmonics. A clean take
    that :func:`workbench.audio.check_quality` should find no problem with
    (for 0.5 <= seconds <= 30).
    """
    rng = np.random.default_rng(seed)
    n = round(seconds * sr)
    t = np.arange(n) / sr
    f0 = 150 + 20 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    voice = sum(np.sin(k * phase) / k for k in range(1, 6))
    envelope = np.clip(np.sin(2 * np.pi * 4.0 * t), 0, None) ** 0.5  # bursts with gaps
    inside = (t >= lead_s) & (t < seconds - tail_s)
    x = amp * voice / np.max(np.abs(voice)) * envelope * inside
    x = x + 10 ** (noise_dbfs / 20) * rng.standard_normal(n)
    return x.astype(np.float32)


@pytest.fixture
def tone() -> Callable[..., np.ndarray]:
    """:func:`make_tone`."""
    return make_tone


@pytest.fixture
def speechlike() -> Callable[..., np.ndarray]:
    """:func:`make_speechlike`."""
    return make_speechlike


@pytest.fixture
def speaker_root(tmp_path: Path) -> Path:
    """An empty folder to hold speaker folders."""
    root = tmp_path / "speakers"
    root.mkdir()
    return root
