"""Getting audio in and out safely, and judging whether a take is usable.

Every waveform inside the package is a 1-D ``float32`` array of samples at
16 kHz (:data:`workbench.SAMPLE_RATE`), mono, nominally in [-1, 1]. Durations
are in seconds, lengths in samples at 16 kHz, levels in dBFS (0 dBFS is a full
scale sine peak; digital silence is reported as -120 dBFS).

>>> import numpy as np
>>> t = np.arange(16_000) / 16_000
>>> wav = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
>>> report = check_quality(wav)
>>> report.duration_s
1.0
>>> [p.code for p in report.problems]  # a steady tone has no pauses: noise cannot be told apart
['noisy']

The modules, from the bottom up:

* :mod:`~workbench.audio.samples`: arrays in memory: mono mix-down, resampling, 16-bit PCM;
* :mod:`~workbench.audio.files`: the formats read, loading and (atomic) saving;
* :mod:`~workbench.audio.levels`: 25 ms frame levels, where the speech is, :func:`trim_silence`;
* :mod:`~workbench.audio.quality`: :func:`check_quality` and its :class:`QualityReport`;
* :mod:`~workbench.audio.recording`: one take in memory (:class:`Recording`) and playback.

Heavy imports (librosa for resampling, IPython for playback) happen inside the
functions that need them, so ``import workbench.audio`` stays fast and works
without any UI package.
"""

from __future__ import annotations

from workbench.audio.files import (
    AUDIO_SUFFIXES,
    UNSUPPORTED_AUDIO_SUFFIXES,
    encode_audio,
    load_audio,
    read_audio,
    save_audio,
)
from workbench.audio.levels import trim_silence
from workbench.audio.quality import PROBLEM_CODES, Problem, QualityReport, check_quality
from workbench.audio.recording import Recording, play
from workbench.audio.samples import float_to_pcm16, pcm16_to_float, resample, to_mono

__all__ = [
    "AUDIO_SUFFIXES",
    "PROBLEM_CODES",
    "UNSUPPORTED_AUDIO_SUFFIXES",
    "Problem",
    "QualityReport",
    "Recording",
    "check_quality",
    "encode_audio",
    "float_to_pcm16",
    "load_audio",
    "pcm16_to_float",
    "play",
    "read_audio",
    "resample",
    "save_audio",
    "to_mono",
    "trim_silence",
]
