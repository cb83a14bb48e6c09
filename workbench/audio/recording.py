"""One take in memory (:class:`Recording`) and notebook playback (:func:`play`).

>>> Recording(np.zeros(16_000, dtype=np.float32), text="hello").duration_s
1.0
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from workbench._deprecated import renamed_keywords
from workbench._optional import require
from workbench.audio.quality import QualityReport, check_quality
from workbench.audio.samples import _check_rate, resample, to_mono
from workbench.constants import SAMPLE_RATE

__all__ = ["Recording", "play"]


@dataclass(eq=False)
class Recording:
    """One take in memory.

    Attributes:
        audio: ``(n,)`` float32 samples at ``sample_rate`` (16 kHz inside the
            package). Given ``(n, channels)`` or int16, it is mixed to mono and
            scaled on construction.
        sample_rate: Hz.
        text: what was said (the prompt or a transcript), may be empty.

    >>> Recording(np.zeros(8000, dtype=np.float32)).duration_s
    0.5
    """

    audio: np.ndarray
    sample_rate: int = SAMPLE_RATE
    text: str = ""

    def __post_init__(self) -> None:
        self.audio = to_mono(self.audio)
        self.sample_rate = _check_rate(self.sample_rate)

    @property
    def duration_s(self) -> float:
        """Length in seconds."""
        return self.audio.size / self.sample_rate

    @renamed_keywords(min_seconds="min_s", max_seconds="max_s")
    def quality(
        self, *, min_s: float = 0.5, max_s: float = 30.0
    ) -> QualityReport:
        """:func:`check_quality` of this take."""
        return check_quality(
            self.audio,
            self.sample_rate,
            min_s=min_s,
            max_s=max_s,
        )

    @renamed_keywords(target_sr="target_sample_rate")
    def resampled(self, target_sample_rate: int = SAMPLE_RATE) -> Recording:
        """A copy at ``target_sample_rate`` Hz (default 16000)."""
        return Recording(
            resample(self.audio, self.sample_rate, target_sample_rate), target_sample_rate, self.text
        )


def play(wav: np.ndarray | Recording, sample_rate: int = SAMPLE_RATE) -> Any:
    """An ``IPython.display.Audio`` player for a notebook (needs ``workbench[ui]``).

    Args:
        wav: ``(n,)`` samples in [-1, 1] at ``sample_rate``, or a :class:`Recording`.
            Played at its true loudness (not normalized); values beyond ±1 are clipped.
    """
    if isinstance(wav, Recording):
        wav, sample_rate = wav.audio, wav.sample_rate
    display = require("IPython.display", extra="ui", purpose="play audio in a notebook")
    x = to_mono(wav)
    x = np.clip(np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0), -1.0, 1.0)
    return display.Audio(data=x, rate=_check_rate(sample_rate), normalize=False)
