"""Units shared by every module (a leaf: imports nothing from the package).

Each constant is derived once, with its unit, as in openai/whisper's ``audio.py``.

>>> SAMPLE_RATE, HOP_LENGTH, FRAMES_PER_SECOND
(16000, 160, 100)
>>> cache_dir().name
'workbench'
"""

from __future__ import annotations

import os
from pathlib import Path

SAMPLE_RATE = 16_000  # Hz, every waveform inside the package (mono float32 in [-1, 1])
FRAMES_PER_SECOND = 100  # feature frames per second: one frame every 10 ms (log-mel, levels, envelopes)
HOP_LENGTH = SAMPLE_RATE // FRAMES_PER_SECOND  # 160 samples between frames at SAMPLE_RATE (10 ms)
assert HOP_LENGTH * FRAMES_PER_SECOND == SAMPLE_RATE  # a whole number of samples per frame

__all__ = ["FRAMES_PER_SECOND", "HOP_LENGTH", "SAMPLE_RATE", "cache_dir"]


def cache_dir() -> Path:
    """Where the workbench keeps what it can rebuild (imported models, exports, recipe corpora).

    ``$WORKBENCH_CACHE`` when set, else ``$XDG_CACHE_HOME/workbench``, else
    ``~/.cache/workbench``. Read on every call, so a changed variable takes effect.
    """
    env = os.environ.get("WORKBENCH_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "workbench"
