"""Frame levels and where the speech is: 25 ms frames every 10 ms, in dBFS, and ``trim_silence``.

Levels are mean-square power in dBFS (0 dBFS: a full-scale sine peak; digital
silence is reported as -120 dBFS). The quality report and the trimming share
these frames and the rule "more than 35 dB below the loudest frame is silence".

>>> levels, frame_len, hop = _frame_levels_db(np.zeros(16_000, np.float32), 16_000)  # 1 s of digital silence
>>> levels.shape, frame_len, hop, float(levels[0])
((98,), 400, 160, -120.0)
"""

from __future__ import annotations

import numpy as np

from workbench._deprecated import renamed_keywords
from workbench.audio.samples import _check_rate, to_mono
from workbench.constants import FRAMES_PER_SECOND, SAMPLE_RATE
from workbench.errors import AudioError

__all__ = ["trim_silence"]

_FLOOR_DBFS = -120.0  # level reported for digital silence
_EPS_POWER = 10.0 ** (_FLOOR_DBFS / 10.0)  # mean-square power at the floor
_FRAME_S = 0.025  # analysis frame, seconds
_TRIM_TOP_DB = 35.0  # frames this far below the loudest frame count as silence


def _frame_levels_db(x: np.ndarray, sample_rate: int) -> tuple[np.ndarray, int, int]:
    """RMS level of 25 ms frames every 10 ms, in dBFS.

    Args:
        x: ``(n,)`` finite float samples, n >= 1.

    Returns:
        ``(levels_db (n_frames,), frame_len, hop)``, frame i covering samples
        ``[i * hop, i * hop + frame_len)``. Shorter input is one frame.
    """
    frame_len = max(1, round(_FRAME_S * sample_rate))
    hop = max(1, round(sample_rate / FRAMES_PER_SECOND))  # 10 ms
    if x.size <= frame_len:
        frame_len = x.size
        starts = np.zeros(1, dtype=np.int64)
    else:
        starts = np.arange(0, x.size - frame_len + 1, hop, dtype=np.int64)
    # Running sum of squares: O(n) for any frame overlap, no (frames, frame_len) copy.
    cs = np.concatenate([[0.0], np.cumsum(np.square(x, dtype=np.float64))])
    power = np.maximum((cs[starts + frame_len] - cs[starts]) / frame_len, 0.0)
    return 10.0 * np.log10(np.maximum(power, _EPS_POWER)), frame_len, hop


def _speech_bounds(levels_db: np.ndarray, top_db: float) -> tuple[int, int, int]:
    """``(first, last, count)`` of frames within ``top_db`` of the loudest frame."""
    loud = np.flatnonzero(levels_db > levels_db.max() - top_db)
    return int(loud[0]), int(loud[-1]), int(loud.size)


@renamed_keywords(pad_seconds="pad_s")
def trim_silence(
    wav: np.ndarray,
    *,
    top_db: float = _TRIM_TOP_DB,
    pad_s: float = 0.1,
    sample_rate: int = SAMPLE_RATE,
) -> np.ndarray:
    """Cut leading and trailing silence, keeping a little padding.

    The rule of ``librosa.effects.trim``: frames more than ``top_db`` below the
    loudest frame are silence. It is computed here with numpy on 25 ms frames
    every 10 ms, because importing ``librosa.effects`` also imports
    scikit-learn and numba (over a second) just for this.

    Args:
        wav: ``(n,)`` samples at ``sample_rate`` (``(n, channels)`` is mixed to mono).
        top_db: silence threshold below the loudest frame, in dB.
        pad_s: silence kept on each side of the speech, in seconds.
        sample_rate: rate of ``wav`` in Hz (default 16000).

    Returns:
        ``(m,)`` float32 with ``m <= n``, a contiguous slice of ``wav``. Empty
        only for empty input; all-silent input is returned unchanged.

    >>> x = np.zeros(48_000, dtype=np.float32); x[16_000:32_000] = 0.5
    >>> trim_silence(x).shape  # 1 s of sound + 0.1 s each side (+ frame rounding)
    (19760,)
    """
    x = to_mono(wav)
    sample_rate = _check_rate(sample_rate)
    if x.size == 0:
        return x
    if not np.all(np.isfinite(x)):
        raise AudioError(
            "Cannot trim audio with NaN or infinite samples: the recording is damaged. Record again."
        )
    if top_db <= 0 or pad_s < 0:
        raise AudioError(
            f"top_db must be > 0 and pad_s >= 0; got top_db={top_db}, pad_s={pad_s}."
        )
    levels, frame_len, hop = _frame_levels_db(x, sample_rate)
    first, last, _ = _speech_bounds(levels, top_db)
    pad = round(pad_s * sample_rate)
    start = max(0, first * hop - pad)
    end = min(x.size, last * hop + frame_len + pad)
    return x[start:end].copy()
