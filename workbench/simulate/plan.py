"""Planning an utterance before any audio exists: text -> phoneme words -> segments with rates and pauses.

:func:`plan_segments` is the timing (slow pauses, rushes, and dysfluencies:
part-word repetitions, prolongations, blocks), a pure function of the words and
a generator. :func:`plan_utterance` adds the speaker's phoneme rules on top and
returns an :class:`UtterancePlan`, what :func:`~workbench.simulate.synthesize` will say.

>>> import numpy as np
>>> segs, counts = plan_segments(["one", "two", "three"], phonemes=False, slow=1.0, rng=np.random.default_rng(0))
>>> [round(s.rate, 2) for s in segs][:1], sorted(counts)
([0.45], ['blocks', 'pauses', 'prolongations', 'repetitions'])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from workbench.errors import ProfileError
from workbench.simulate.engines import _clean_text, phonemize
from workbench.simulate.phonemes import _base, apply_rules, is_consonant, is_vowel, phoneme_edits, tokenize_phonemes
from workbench.simulate.profiles import Profile
from workbench.simulate.voices import Voice

__all__ = ["Segment", "UtterancePlan", "plan_segments", "plan_utterance"]

# ---------------------------------------------------------------------------
# timing: pauses, rushes and dysfluencies between the words
# ---------------------------------------------------------------------------

_CONTINUANTS = set("szfvSZTDmnlrwjh")  # consonants that can be prolonged


@dataclass(frozen=True)
class Segment:
    """A stretch spoken in one go: phoneme words (espeak) or words (flite/festival)."""

    units: tuple[str, ...]
    rate: float = 1.0  # speaking-rate factor relative to the voice
    pause_ms: float = 0.0  # silence after the segment, ms


def _part_word(word: str) -> str:
    """Onset and first vowel of a phoneme word, without stress: ``"b'Vt#3" -> "bV"``."""
    out = []
    for tok in tokenize_phonemes(word):
        if is_consonant(tok) or is_vowel(tok):
            out.append(_base(tok))
            if is_vowel(tok):
                break
    return "".join(out)


def plan_segments(
    units: Sequence[str],
    *,
    phonemes: bool,
    slow: float = 0.0,
    dysfluency: float = 0.0,
    rush: float = 0.0,
    word_gap_ms: float = 0.0,
    rng: np.random.Generator,
) -> tuple[list[Segment], dict[str, int]]:
    """Split words into segments with rates and pauses: slow pauses, rushes and dysfluencies.

    Args:
        units: phoneme words (``phonemes=True``, espeak) or plain words.
        phonemes: True when ``units`` are espeak phoneme words. Plain words get
            whole-word repetitions and blocks only (no part-words, no prolongations).
        slow: severity; rate ``1 - 0.55 * slow`` and, with chance
            ``0.15 + 0.55 * slow`` after each word, a pause of about ``80 + 520 * slow`` ms (x0.5-1.5).
        dysfluency: severity; each word is dysfluent with chance ``0.1 + 0.4 * d``:
            a part-word repetition (50 %: onset + first vowel, 1 to ``1 + round(2 d)``
            extra times, 60-200 ms apart), a prolongation (30 %: the first
            continuant repeated ``2 + round(4 d)`` times; stops and vowels block
            instead) or a block (20 %: a silent 0.3-1 s pause before the word).
        rush: severity; rushes of 2-5 words at ``1 + 0.6 * rush`` times the rate, 120-350 ms apart.
        word_gap_ms: silence added after every word but the last (for engines without a word-gap option).
        rng: the only randomness.

    Returns:
        (segments, counts) with counts of ``repetitions``, ``prolongations``, ``blocks``, ``pauses``.
    """
    counts = {"repetitions": 0, "prolongations": 0, "blocks": 0, "pauses": 0}
    pieces: list[list] = []  # [unit, pause after (ms), rate factor]
    for i, unit in enumerate(units):
        if dysfluency > 0 and rng.random() < 0.1 + 0.4 * dysfluency:
            kind = str(rng.choice(["repetition", "prolongation", "block"], p=[0.5, 0.3, 0.2]))
            first = next((t for t in tokenize_phonemes(unit) if is_consonant(t) or is_vowel(t)), "") if phonemes else ""
            if kind == "prolongation" and _base(first) not in _CONTINUANTS:
                kind = "block"  # stops and vowels block instead; plain words cannot be prolonged
            if kind == "block" and not pieces:
                kind = "repetition"  # a block before the first word would be trimmed away as silence
            if kind == "repetition":
                part = _part_word(unit) if phonemes else unit
                for _ in range(1 + int(rng.integers(0, 1 + round(2 * dysfluency)))):
                    pieces.append([part, float(rng.uniform(60, 200)), 1.0])
                counts["repetitions"] += 1
            elif kind == "prolongation":
                k = unit.index(first)
                unit = unit[:k] + first * (2 + round(4 * dysfluency)) + unit[k + len(first):]
                counts["prolongations"] += 1
            else:  # block: a silent, tense pause before the word
                pieces[-1][1] += float(rng.uniform(300, 300 + 700 * dysfluency))
                counts["blocks"] += 1
        pieces.append([unit, 0.0, 1.0])
        if i < len(units) - 1:
            if slow > 0 and rng.random() < 0.15 + 0.55 * slow:
                pieces[-1][1] += float((80 + 520 * slow) * rng.uniform(0.5, 1.5))
                counts["pauses"] += 1
            pieces[-1][1] += word_gap_ms
    if rush > 0:
        j = 0
        while j < len(pieces):
            n = int(rng.integers(2, 6))
            for piece in pieces[j:j + n]:
                piece[2] = 1 + 0.6 * rush
            if j + n < len(pieces):
                pieces[j + n - 1][1] += float(rng.uniform(120, 350))
                counts["pauses"] += 1
            j += n
    base_rate = 1 - 0.55 * slow
    segments: list[Segment] = []
    current: list[str] = []
    for k, (unit, pause, rate) in enumerate(pieces):
        current.append(unit)
        next_rate = pieces[k + 1][2] if k + 1 < len(pieces) else None
        if pause > 0 or next_rate != rate:
            segments.append(Segment(tuple(current), base_rate * rate, round(pause, 1)))
            current = []
    return segments, counts


# ---------------------------------------------------------------------------
# the plan of one utterance
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class UtterancePlan:
    """What :func:`synthesize` will say, before any audio exists (pure and deterministic)."""

    text: str
    phonemes: tuple[str, ...]  # espeak phoneme words before the speaker's rules; () for other engines
    spoken: tuple[str, ...]  # after the rules (espeak) or the words (other engines)
    segments: tuple[Segment, ...]
    rules: tuple[str, ...] = ()
    edits: int = 0  # phoneme edits by the rules (Levenshtein, in phonemes)
    repetitions: int = 0
    prolongations: int = 0
    blocks: int = 0
    pauses: int = 0  # inserted pauses (slow, rush, dysfluency)

    def summary(self) -> dict[str, Any]:
        """JSON-safe summary stored with each simulated take."""
        return {
            "phonemes": " ".join(self.phonemes),
            "spoken": " ".join(self.spoken),
            "rules": list(self.rules),
            "edits": self.edits,
            "repetitions": self.repetitions,
            "prolongations": self.prolongations,
            "blocks": self.blocks,
            "pauses": self.pauses,
        }



def plan_utterance(
    text: str, voice: Voice | str, profile: Profile | str | None = None, *, seed: int = 0
) -> UtterancePlan:
    """Decide what to say: phonemes, rule edits, dysfluencies, rates and pauses. No audio.

    Args:
        text: the phrase (letters, digits, apostrophes; other characters are spaces).
        voice: a :class:`Voice` or spec.
        profile: a :class:`Profile`, spec or None (typical).
        seed: utterance seed (pauses, dysfluency places); the speaker's traits come from ``profile.seed``.

    Raises:
        ProfileError: the profile needs phoneme input (articulation, accent,
            explicit rules) but the voice is not espeak.
    """
    voice = Voice.parse(voice)
    profile = Profile() if profile is None else Profile.parse(profile)
    return _plan(text, voice, profile, np.random.default_rng(seed))


def _plan(text: str, voice: Voice, profile: Profile, rng: np.random.Generator) -> UtterancePlan:
    text = _clean_text(text)
    espeak = voice.engine == "espeak"
    rules = profile.speaker_rules()
    if rules and not espeak:
        raise ProfileError(
            f"The profile changes phonemes (rules {', '.join(rules)}), which needs phoneme input, and only "
            f"espeak-ng accepts it; the voice is {voice.spec()!r}. Use an espeak voice, e.g. 'espeak:en-us+m3', "
            "or drop articulation/accent from the profile."
        )
    phonemes = phonemize(text, voice.language) if espeak else ()
    words = list(phonemes) if espeak else text.split()
    spoken = words
    if rules:
        spoken = apply_rules(words, rules, probability=profile.rule_probability, speaker_seed=profile.seed)
    edits = phoneme_edits(words, spoken) if rules else 0

    segments, counts = plan_segments(
        spoken, phonemes=espeak, slow=profile.slow, dysfluency=profile.dysfluency, rush=profile.rush,
        word_gap_ms=0.0 if espeak else voice.word_gap_ms, rng=rng,  # espeak makes word gaps itself (-g)
    )
    return UtterancePlan(
        text=text, phonemes=tuple(phonemes), spoken=tuple(spoken), segments=tuple(segments), rules=rules,
        edits=edits, **counts,
    )
