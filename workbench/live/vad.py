"""Where the speech is in a live stream: webrtcvad per 30 ms frame, an adaptive noise floor, smoothing.

A frame (30 ms, 480 samples at 16 kHz) is *voiced* when WebRTC's voice-activity detector
(``webrtcvad``, aggressiveness ``mode`` 0-3) calls it speech **and** it is at least
``margin_db`` louder than the room's noise floor. The floor follows the quietest frames:
it drops at once to a quieter frame and rises by at most ``rise_db_per_s`` a second,
so a steady fan or hum sets the floor (its frames are never loud enough over it), while
speech, which comes and goes, does not. A *speech onset* needs ``onset_frames`` voiced
frames among the last ``onset_window`` (one loud click is not speech).

Only a bounded history of frame decisions is kept (``keep_s``), so memory stays flat on
an endless stream.

webrtcvad is an optional dependency (``pip install 'workbench[live]'``). Its C module
``_webrtcvad`` is used directly: the same module ships in both the ``webrtcvad`` and the
maintained ``webrtcvad-wheels`` distributions, and the former's Python wrapper imports
``pkg_resources``, which new setuptools no longer has.
"""

from __future__ import annotations

import collections
import math

import numpy as np

from workbench.constants import SAMPLE_RATE
from workbench.errors import MissingDependencyError

__all__ = ["FRAME", "FRAME_S", "VoiceActivity"]

FRAME = 480  # samples per VAD frame: 30 ms at 16 kHz (webrtcvad takes 10, 20 or 30 ms)
FRAME_S = FRAME / SAMPLE_RATE  # 0.03 s


def _webrtc(mode: int):
    """A webrtcvad detector handle set to ``mode``, or a plain error with the install hint."""
    try:
        import _webrtcvad
    except ImportError:
        raise MissingDependencyError(
            "Live captions need the voice-activity detector 'webrtcvad', which is not installed. "
            "Install it with: pip install 'workbench[live]'") from None
    handle = _webrtcvad.create()
    _webrtcvad.init(handle)
    _webrtcvad.set_mode(handle, int(mode))
    return _webrtcvad, handle


class VoiceActivity:
    """Frame-by-frame speech detection over a stream of 16 kHz float32 audio.

    Args:
        mode: webrtcvad aggressiveness, 0 (least) to 3 (most eager to call frames non-speech).
        margin_db: a voiced frame must be this much louder than the noise floor.
        min_db: frames quieter than this (dBFS) are never voiced (digital silence, a muted microphone).
        rise_db_per_s: how fast the noise floor may rise.
        onset_frames, onset_window: speech starts at ``onset_frames`` voiced frames among the last
            ``onset_window`` frames.
        keep_s: seconds of frame decisions kept.

    Attributes:
        frames: frames processed since the stream began (frame ``i`` covers
            ``[i * FRAME_S, (i + 1) * FRAME_S)`` seconds).
    """

    def __init__(self, *, mode: int = 3, margin_db: float = 9.0, min_db: float = -60.0,
                 rise_db_per_s: float = 3.0, onset_frames: int = 4, onset_window: int = 8,
                 keep_s: float = 120.0) -> None:
        if mode not in (0, 1, 2, 3):
            raise ValueError(f"mode must be 0, 1, 2 or 3, got {mode!r}")
        self._lib, self._handle = _webrtc(mode)
        self.margin_db, self.min_db = float(margin_db), float(min_db)
        self._rise = float(rise_db_per_s) * FRAME_S
        self.onset_frames, self.onset_window = int(onset_frames), int(onset_window)
        self._keep = max(self.onset_window, int(math.ceil(keep_s / FRAME_S)))
        self._voiced: collections.deque[bool] = collections.deque(maxlen=self._keep)
        self._level: collections.deque[float] = collections.deque(maxlen=self._keep)  # dBFS per frame
        self._rest = np.zeros(0, np.float32)  # samples of an unfinished frame
        self.frames = 0
        self.floor_db: float | None = None
        self.last_voiced = -1  # index of the last voiced frame (-1: none yet)

    def process(self, chunk: np.ndarray) -> int:
        """Classify the whole frames in ``chunk`` (float32 in [-1, 1]); returns how many frames were added."""
        x = np.concatenate([self._rest, np.asarray(chunk, np.float32).reshape(-1)])
        n = len(x) // FRAME
        self._rest = x[n * FRAME:].copy()
        if n == 0:
            return 0
        frames = x[: n * FRAME].reshape(n, FRAME)
        pcm = (np.clip(frames, -1.0, 1.0) * 32767.0).astype("<i2")
        db = 10.0 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12)
        for i in range(n):
            level = float(db[i])
            if self.floor_db is None or level < self.floor_db:
                self.floor_db = level
            else:
                self.floor_db = min(level, self.floor_db + self._rise)
            loud = level >= self.min_db and level >= self.floor_db + self.margin_db
            voiced = bool(loud and self._lib.process(self._handle, SAMPLE_RATE, pcm[i].tobytes(), FRAME))
            self._voiced.append(voiced)
            self._level.append(level)
            if voiced:
                self.last_voiced = self.frames
            self.frames += 1
        return n

    @property
    def oldest(self) -> int:
        """Index of the oldest frame whose decision is still kept."""
        return self.frames - len(self._voiced)

    def voiced(self, start_frame: int, end_frame: int) -> np.ndarray:
        """``(end - start,)`` bool decisions of frames ``[start, end)``; frames no longer kept, or not yet
        seen, count as unvoiced."""
        n = max(0, end_frame - start_frame)
        out = np.zeros(n, bool)
        lo, hi = max(start_frame, self.oldest), min(end_frame, self.frames)
        if hi > lo:
            kept = list(self._voiced)
            out[lo - start_frame: hi - start_frame] = kept[lo - self.oldest: hi - self.oldest]
        return out

    def onset(self) -> int | None:
        """The first voiced frame of a speech onset within the last ``onset_window`` frames, or None."""
        recent = self.voiced(self.frames - self.onset_window, self.frames)
        if int(recent.sum()) < self.onset_frames:
            return None
        return self.frames - self.onset_window + int(np.argmax(recent))

    def sound_start(self, frame: int, *, max_back_s: float = 1.0, above_db: float = 6.0,
                    max_gap_s: float = 0.2) -> int:
        """The first frame of the sound that ``frame`` belongs to: walking back (at most ``max_back_s``) over
        frames ``above_db`` over the noise floor, across quieter gaps shorter than ``max_gap_s`` (between
        syllables). The detector calls a word's soft start (an "f", an "h") non-speech; the recognizer needs it."""
        floor = self.floor_db if self.floor_db is not None else self.min_db
        lo = max(self.oldest, frame - int(round(max_back_s / FRAME_S)))
        max_gap = int(round(max_gap_s / FRAME_S))
        levels = list(self._level)
        first, gap, f = frame, 0, frame - 1
        while f >= lo and gap <= max_gap:
            if levels[f - self.oldest] >= floor + above_db:
                first, gap = f, 0
            else:
                gap += 1
            f -= 1
        return first

    def silent_for(self) -> float:
        """Seconds since the last voiced frame (``inf`` if none yet)."""
        if self.last_voiced < 0:
            return math.inf
        return (self.frames - 1 - self.last_voiced) * FRAME_S
