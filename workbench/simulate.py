"""Simulated speakers: TTS voices plus atypicality profiles, for teaching and tests.

Everything made here is SYNTHETIC speech. It imitates some audible features of
dysarthria, ALS, Parkinson's disease, stuttering or an accent, so that the
workflow (record, adapt, evaluate) can be taught and tested without anyone's
recordings. It is not clinical data and says nothing about real patients.

Three pieces:

- :class:`Voice`: a typical TTS voice: engine (``espeak``, ``flite``,
  ``festival``), voice name, rate, pitch and word gap; written as a spec such
  as ``"espeak:en-us+m3"`` or ``"flite:slt,rate=150,pitch=-10"``.
- :class:`Profile`: severities in [0, 1] of ``slow``, ``articulation``,
  ``voice`` (breathy, tremor, monopitch, hypernasal), ``dysfluency``, plus
  ``rush``, ``quiet`` and ``accent``, and the speaker ``seed``. Presets are in
  :data:`PROFILES`; ``Profile.parse("slow:0.8+articulation:0.6")`` combines them.
- :func:`synthesize` (one phrase) and :func:`simulate_speaker` (a speaker folder).

How each effect is made (see :mod:`workbench.simulate_effects` for the DSP):

- **slow**: the rate drops to ``1 - 0.55 * severity`` of the voice's rate
  (espeak cannot go below 80 words per minute), espeak's word gap grows by up
  to 120 ms, and irregular pauses (up to ~0.9 s) appear between words.
- **articulation**: speaker-consistent phoneme substitutions/deletions on the
  espeak phoneme string (``espeak-ng -q -x``), spoken back with ``[[...]]``
  phoneme input. Which rules a speaker has is drawn once from the profile seed
  and severity; whether a rule fires on a word is a stable function of the
  speaker and the word. Needs an espeak voice.
- **voice**: breathiness, tremor (4-7 Hz amplitude and pitch modulation) and
  hypernasality are DSP on the waveform (any engine). Monopitch is made by the
  engine: espeak SSML ``<prosody range="5%">`` (the pitch range shrinks to
  ``1 - 0.95 * severity`` of normal), flite ``int_f0_target_stddev``, festival
  ``kal_diphone`` ``int_lr_params``. flite ``rms`` and festival HTS voices
  ignore these, so monopitch with them is an error.
- **dysfluency**: part-word repetitions ("b- b- but"), prolongations
  ("sssalt") and blocks (silent pauses) inserted into the phoneme string with
  pauses. Other engines take no phonemes, so there it is whole-word
  repetitions and blocks only.
- **rush**: short rushes of 2-5 words at up to 1.6x the rate, with pauses
  between them (as in Parkinson's disease). **quiet**: up to -15 dB over a
  fixed noise floor. **accent**: accent-like phoneme rules (th-stopping,
  vowel mergers...), usually with a non-default espeak accent voice.

Every call is deterministic: the same (text, voice, profile, seed) gives a
bit-identical waveform. Randomness is ``np.random.default_rng(seed)`` for the
utterance and the profile seed for the speaker's traits, never a global state.

>>> import numpy as np
>>> p = Profile.parse("slow:0.8+articulation:0.6", seed=3)
>>> (p.slow, p.articulation, p.seed)
(0.8, 0.6, 3)
>>> Voice.parse("espeak:en-us+m3,rate=140").spec()
'espeak:en-us+m3,rate=140'
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import os
import re
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from workbench import simulate_effects as fx
from workbench._optional import require_program
from workbench.errors import MissingDependencyError, WorkbenchError
from workbench.simulate_effects import Segment

if TYPE_CHECKING:  # pragma: no cover
    from workbench.corpus import SpeakerCorpus

__all__ = [
    "ENGINES",
    "ESPEAK_ACCENTS",
    "ESPEAK_VARIANTS",
    "FESTIVAL_VOICES",
    "FLITE_VOICES",
    "PROFILES",
    "PROFILE_NOTES",
    "Profile",
    "ProfileError",
    "Segment",
    "SynthesisError",
    "UtterancePlan",
    "VOICE_TRAITS",
    "Voice",
    "available_engines",
    "default_voice",
    "phonemize",
    "plan_utterance",
    "random_voice",
    "simulate_cli",
    "simulate_speaker",
    "synthesize",
    "voice_pool",
]

SR = 16_000  # Hz, every waveform returned here
ENGINES = ("espeak", "flite", "festival")
# engine -> (program, apt packages)
_PROGRAMS = {
    "espeak": ("espeak-ng", "espeak-ng"),
    "flite": ("flite", "flite"),
    "festival": ("text2wave", "festival festvox-kallpc16k festvox-us-slt-hts"),
}
_NOMINAL_WPM = 175.0  # espeak's default rate; flite/festival rates are stretches relative to it
_ESPEAK_MIN_WPM = 80.0  # espeak-ng ignores slower rates, SSML included
_TIMEOUT_S = 60

ESPEAK_ACCENTS = (
    "en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029", "en-us-nyc",
)
# espeak-ng 1.51 variants that sound like ordinary speakers (no whisper, croak or robots)
ESPEAK_VARIANTS = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5",
    "klatt", "klatt2", "klatt3", "klatt4", "adam", "Alex", "Alicia", "Andrea", "Andy", "Annie", "aunty",
    "belinda", "benjamin", "caleb", "david", "ed", "edward", "Gene", "grandma", "grandpa", "iven", "john",
    "Lee", "linda", "max", "Michael", "Mike", "norbert", "paul", "quincy", "rob", "robert", "sandro",
    "shelby", "steph", "travis", "victor", "zac",
)
FLITE_VOICES = {"awb": 136.0, "kal": 101.0, "kal16": 101.0, "rms": 103.0, "slt": 178.0}  # name -> median f0, Hz
FESTIVAL_VOICES = {"cmu_us_slt_arctic_hts": 183.0, "kal_diphone": 105.0}  # name -> median f0, Hz
_NO_F0_CONTROL = {("flite", "rms"), ("festival", "cmu_us_slt_arctic_hts")}  # engine ignores f0 settings
# Used when an accent profile gets no voice: espeak accents that differ from General American
_ACCENT_VOICES = ("en-029", "en-gb-scotland", "en-gb-x-gbcwmd", "en-us-nyc", "en-gb-x-gbclan")


class ProfileError(WorkbenchError, ValueError):
    """A profile or voice spec is invalid, or the voice cannot do what the profile asks."""


class SynthesisError(WorkbenchError, RuntimeError):
    """A TTS engine failed or timed out."""


# ---------------------------------------------------------------------------
# voices
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Voice:
    """A typical TTS voice. ``Voice.parse(spec)`` and ``voice.spec()`` round-trip.

    Attributes:
        engine: ``"espeak"`` (espeak-ng), ``"flite"`` or ``"festival"``.
        name: espeak ``accent[+variant]`` (``"en-us+m3"``), a flite voice
            (:data:`FLITE_VOICES`) or a festival voice (:data:`FESTIVAL_VOICES`).
        rate_wpm: speaking rate in words per minute (espeak ``-s``; flite and
            festival get a duration stretch of ``175 / rate_wpm``).
        pitch: espeak pitch 0-99 (default 50); flite/festival f0 shift in Hz (default 0).
        word_gap_ms: extra silence between words, ms.
    """

    engine: str = "espeak"
    name: str = "en-us"
    rate_wpm: float = _NOMINAL_WPM
    pitch: float | None = None
    word_gap_ms: float = 0.0

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ProfileError(f"Unknown TTS engine {self.engine!r}; use one of {', '.join(ENGINES)}.")
        if not self.name or not re.fullmatch(r"[A-Za-z0-9_+\-]+", self.name):
            raise ProfileError(f"Voice name {self.name!r} is not valid: use letters, digits, '_', '-', '+'.")
        if self.engine == "flite" and self.name not in FLITE_VOICES:
            raise ProfileError(f"flite has no voice {self.name!r}; choose one of {', '.join(FLITE_VOICES)}.")
        if self.engine == "festival" and self.name not in FESTIVAL_VOICES:
            raise ProfileError(f"No festival voice {self.name!r}; choose one of {', '.join(FESTIVAL_VOICES)}.")
        if self.pitch is None:
            object.__setattr__(self, "pitch", 50.0 if self.engine == "espeak" else 0.0)
        if not 40 <= self.rate_wpm <= 450:
            raise ProfileError(f"rate_wpm={self.rate_wpm} is outside 40-450 words per minute.")
        lo, hi = (0, 99) if self.engine == "espeak" else (-80, 80)
        if not lo <= self.pitch <= hi:
            unit = "espeak pitch (0-99)" if self.engine == "espeak" else "f0 shift in Hz (-80 to 80)"
            raise ProfileError(f"pitch={self.pitch} is outside the {unit}.")
        if not 0 <= self.word_gap_ms <= 2000:
            raise ProfileError(f"word_gap_ms={self.word_gap_ms} is outside 0-2000 ms.")

    def spec(self) -> str:
        """``"engine:name"`` plus any non-default ``,rate=..,pitch=..,gap=..``."""
        parts = [f"{self.engine}:{self.name}"]
        default_pitch = 50.0 if self.engine == "espeak" else 0.0
        if self.rate_wpm != _NOMINAL_WPM:
            parts.append(f"rate={self.rate_wpm:g}")
        if self.pitch != default_pitch:
            parts.append(f"pitch={self.pitch:g}")
        if self.word_gap_ms:
            parts.append(f"gap={self.word_gap_ms:g}")
        return ",".join(parts)

    @classmethod
    def parse(cls, spec: str | Voice) -> Voice:
        """Parse ``"espeak:en-us+m3"``, ``"flite:slt,rate=150,pitch=-10"``, ``"festival:kal_diphone,gap=50"``.

        A bare name without ``engine:`` is an espeak voice.
        """
        if isinstance(spec, Voice):
            return spec
        head, *options = [p.strip() for p in str(spec).split(",")]
        engine, _, name = head.rpartition(":")
        kwargs: dict[str, Any] = {"engine": engine or "espeak", "name": name}
        keys = {"rate": "rate_wpm", "pitch": "pitch", "gap": "word_gap_ms"}
        for opt in options:
            key, _, value = opt.partition("=")
            if key not in keys:
                raise ProfileError(
                    f"Unknown voice option {opt!r} in {spec!r}; use rate=WPM, pitch=N, gap=MS, "
                    "e.g. 'espeak:en-us+m3,rate=140,pitch=30'."
                )
            try:
                kwargs[keys[key]] = float(value)
            except ValueError:
                raise ProfileError(f"Voice option {opt!r} in {spec!r} needs a number, e.g. {key}=40.") from None
        return cls(**kwargs)

    @property
    def language(self) -> str:
        """espeak language/accent part of the name (``"en-us"`` for ``"en-us+m3"``)."""
        return self.name.split("+")[0]


def available_engines() -> list[str]:
    """Installed engines (programs ``espeak-ng``, ``flite``, ``text2wave`` on PATH), in :data:`ENGINES` order."""
    import shutil

    return [e for e in ENGINES if shutil.which(_PROGRAMS[e][0]) is not None]


def voice_pool(engines: Sequence[str] | None = None) -> list[Voice]:
    """Every base voice (engine defaults for rate and pitch) of ``engines`` (default: all three).

    espeak contributes :data:`ESPEAK_ACCENTS` x :data:`ESPEAK_VARIANTS` (plus
    each accent's default voice), flite :data:`FLITE_VOICES` and festival
    :data:`FESTIVAL_VOICES`. :func:`random_voice` varies rate/pitch/gap on top.
    """
    engines = ENGINES if engines is None else tuple(engines)
    pool: list[Voice] = []
    if "espeak" in engines:
        for accent in ESPEAK_ACCENTS:
            pool.append(Voice("espeak", accent))
            pool.extend(Voice("espeak", f"{accent}+{v}") for v in ESPEAK_VARIANTS)
    if "flite" in engines:
        pool.extend(Voice("flite", n) for n in FLITE_VOICES)
    if "festival" in engines:
        pool.extend(Voice("festival", n) for n in FESTIVAL_VOICES)
    return pool


def random_voice(
    rng: np.random.Generator, *, engines: Sequence[str] | None = None, accents: Sequence[str] | None = None
) -> Voice:
    """Draw a typical voice: engine (espeak 70 %, flite 20 %, festival 10 %), base voice, rate, pitch, gap.

    espeak: rate 140-200 wpm, pitch 25-75, word gap 0-20 ms. flite/festival:
    rate 150-200 wpm (a duration stretch), f0 shift -15 to +15 Hz.

    Args:
        rng: the only randomness.
        engines: allowed engines (default: :func:`available_engines`).
        accents: restrict espeak to these accents (default: all of :data:`ESPEAK_ACCENTS`).
    """
    engines = list(available_engines() if engines is None else engines)
    if not engines:
        raise MissingDependencyError(
            "No TTS engine is installed. Install one with: sudo apt-get install espeak-ng flite festival"
        )
    weights = np.array([{"espeak": 0.7, "flite": 0.2, "festival": 0.1}[e] for e in engines])
    engine = engines[int(rng.choice(len(engines), p=weights / weights.sum()))]
    if engine == "espeak":
        accent = list(accents or ESPEAK_ACCENTS)[int(rng.integers(len(accents or ESPEAK_ACCENTS)))]
        variant = ESPEAK_VARIANTS[int(rng.integers(len(ESPEAK_VARIANTS)))]
        return Voice(
            "espeak",
            f"{accent}+{variant}",
            rate_wpm=float(rng.integers(140, 201)),
            pitch=float(rng.integers(25, 76)),
            word_gap_ms=float(rng.choice([0, 0, 10, 20])),
        )
    names = sorted(FLITE_VOICES if engine == "flite" else FESTIVAL_VOICES)
    name = names[int(rng.integers(len(names)))]
    shift = 0.0 if (engine, name) in _NO_F0_CONTROL else float(rng.integers(-15, 16))
    return Voice(engine, name, rate_wpm=float(rng.integers(150, 201)), pitch=shift)


# ---------------------------------------------------------------------------
# profiles
# ---------------------------------------------------------------------------

_DIMENSIONS = ("slow", "articulation", "voice", "dysfluency", "rush", "quiet", "accent")
VOICE_TRAITS = ("breathy", "tremor", "monopitch", "hypernasal")
_BARE_SEVERITY = 0.6  # "slow" alone means "slow:0.6"
_ALL_RULES = {**fx.ARTICULATION_RULES, **fx.ACCENT_RULES}


@dataclass(frozen=True)
class Profile:
    """How a simulated speaker differs from the typical voice; every severity is in [0, 1].

    ``voice`` is the voice-quality severity for all of ``breathy``, ``tremor``,
    ``monopitch`` and ``hypernasal``; a trait set explicitly (not None)
    overrides it, so ``Profile(voice=0.5, tremor=0)`` has no tremor and
    ``Profile(breathy=0.6)`` is only breathy.
    """

    slow: float = 0.0  # low rate, long irregular pauses between words
    articulation: float = 0.0  # speaker-consistent phoneme substitutions/deletions (espeak only)
    voice: float = 0.0  # voice quality: default severity of the four traits below
    dysfluency: float = 0.0  # part-word repetitions, prolongations, blocks
    breathy: float | None = None  # aspiration noise + spectral tilt
    tremor: float | None = None  # 4-7 Hz amplitude and pitch modulation
    monopitch: float | None = None  # narrow pitch range
    hypernasal: float | None = None  # nasal resonance + antiresonance
    rush: float = 0.0  # short fast rushes separated by pauses
    quiet: float = 0.0  # reduced loudness, up to -15 dB
    accent: float = 0.0  # accent-like phoneme rules (th-stopping, vowel mergers...)
    rules: tuple[str, ...] | None = None  # explicit phoneme rules; None: drawn from seed and severities
    seed: int = 0  # the speaker: which rules, tremor rate, nasal resonance...

    def __post_init__(self) -> None:
        for name in (*_DIMENSIONS, *VOICE_TRAITS):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ProfileError(f"Severity {name}={value!r} must be a number from 0 (none) to 1 (most severe).")
            object.__setattr__(self, name, float(value))
        if self.rules is not None:
            object.__setattr__(self, "rules", tuple(self.rules))
            unknown = [r for r in self.rules if r not in _ALL_RULES]
            if unknown:
                raise ProfileError(
                    f"Unknown phoneme rule(s) {unknown}. Known: {', '.join(sorted(_ALL_RULES))}."
                )
        if not isinstance(self.seed, (int, np.integer)) or isinstance(self.seed, bool):
            raise ProfileError(f"seed must be an integer, got {self.seed!r}.")
        object.__setattr__(self, "seed", int(self.seed))

    def trait(self, name: str) -> float:
        """Effective severity of a voice trait (its own value, else ``voice``)."""
        value = getattr(self, name)
        return self.voice if value is None else value

    @property
    def is_typical(self) -> bool:
        """True when nothing is changed (all severities 0 and no explicit rules)."""
        return not self.rules and all(getattr(self, d) == 0 for d in _DIMENSIONS if d != "voice") and all(
            self.trait(t) == 0 for t in VOICE_TRAITS
        )

    def speaker_rules(self) -> tuple[str, ...]:
        """This speaker's phoneme rules: ``rules`` if given, else drawn once from ``seed`` and severities."""
        if self.rules is not None:
            return self.rules
        return fx.draw_rules(self.articulation, self.accent, np.random.default_rng([self.seed, 1]))

    @property
    def rule_probability(self) -> float:
        """Chance that a speaker's rule fires where it applies: ``0.3 + 0.7 * max(articulation, accent)``."""
        return min(1.0, 0.3 + 0.7 * max(self.articulation, self.accent, 0.5 if self.rules else 0.0))

    def spec(self) -> str:
        """A string that :meth:`parse` turns back into this profile (``"typical"`` when nothing is set)."""
        terms = [f"{d}:{getattr(self, d):g}" for d in _DIMENSIONS if getattr(self, d)]
        terms += [f"{t}:{getattr(self, t):g}" for t in VOICE_TRAITS if getattr(self, t) is not None]
        terms += [f"rule:{r}" for r in self.rules or ()]
        if self.rules == ():
            terms.append("rule:none")
        return "+".join(terms) or "typical"

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (``rules`` as a list), including the resolved ``speaker_rules``."""
        d = dataclasses.asdict(self)
        d["rules"] = None if self.rules is None else list(self.rules)
        d["spec"] = self.spec()
        d["speaker_rules"] = list(self.speaker_rules())
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Profile:
        """Inverse of :meth:`to_dict` (extra keys such as ``spec`` are ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    @classmethod
    def parse(cls, spec: str | Profile, *, seed: int | None = None) -> Profile:
        """Parse ``"preset[:scale]+dimension[:severity]+..."``.

        Terms: a preset from :data:`PROFILES` (``"als-like"``; ``"stutter:0.5"``
        scales its severities by 0.5), a dimension (``slow``, ``articulation``,
        ``voice``, ``dysfluency``, ``rush``, ``quiet``, ``accent``) or a voice
        trait (``breathy``, ``tremor``, ``monopitch``, ``hypernasal``) with a
        severity in [0, 1] (0.6 when left out), ``rule:NAME`` for an explicit
        phoneme rule, and ``seed:N`` (the speaker seed; otherwise ``seed``,
        default 0). Presets combine by taking the larger severity; explicit
        dimension terms then set their value, whatever the order.

        >>> Profile.parse("stutter+slow:0.3").spec()
        'slow:0.3+dysfluency:0.7'
        """
        if isinstance(spec, Profile):
            return spec if seed is None else dataclasses.replace(spec, seed=seed)
        text = str(spec).strip().lower()
        if not text:
            raise ProfileError("Empty profile. Use a preset such as 'typical' or 'dysarthria-mild', or 'slow:0.5'.")
        merged: dict[str, Any] = {}
        explicit: dict[str, Any] = {}
        term_seed: int | None = None
        rules: list[str] = []
        for term in text.replace(" ", "").split("+"):
            name, sep, value = term.partition(":")
            if name == "seed":  # an explicit seed:N term wins over the ``seed`` argument
                try:
                    term_seed = int(value)
                except ValueError:
                    raise ProfileError(f"'{term}' needs a whole number, e.g. seed:3.") from None
                continue
            if name == "rule":
                if value != "none":
                    rules.append(value)
                continue
            if name in _DIMENSIONS or name in VOICE_TRAITS:  # before presets: "accent" is both
                explicit[name] = _severity(term, value, default=_BARE_SEVERITY)
            elif name in PROFILES:
                scale = _severity(term, value, default=1.0)
                for key, v in _severities(PROFILES[name]).items():
                    merged[key] = max(merged.get(key, 0.0), v * scale)
                if PROFILES[name].rules:
                    rules.extend(r for r in PROFILES[name].rules if r not in rules)
            else:
                raise ProfileError(
                    f"Unknown profile term {name!r} in {spec!r}. Use presets ({', '.join(PROFILES)}), "
                    f"dimensions ({', '.join(_DIMENSIONS)}) or voice traits ({', '.join(VOICE_TRAITS)}), "
                    "joined with '+', each with an optional ':severity' from 0 to 1, e.g. 'slow:0.8+articulation:0.6'."
                )
        merged.update(explicit)
        rule_terms = "rule:" in text
        speaker_seed = term_seed if term_seed is not None else (seed or 0)
        return cls(**merged, rules=tuple(rules) if rules or rule_terms else None, seed=speaker_seed)


def _severity(term: str, value: str, *, default: float) -> float:
    if not value:
        return default
    try:
        v = float(value)
    except ValueError:
        raise ProfileError(f"'{term}': the severity must be a number from 0 to 1, e.g. 'slow:0.5'.") from None
    if not 0.0 <= v <= 1.0:
        raise ProfileError(f"'{term}': severity {v:g} is outside 0 (none) to 1 (most severe).")
    return v


def _severities(p: Profile) -> dict[str, float]:
    """The non-default severities of a profile, for merging presets."""
    out = {d: getattr(p, d) for d in _DIMENSIONS if getattr(p, d)}
    out.update({t: getattr(p, t) for t in VOICE_TRAITS if getattr(p, t) is not None})
    return out


PROFILES: dict[str, Profile] = {
    "typical": Profile(),
    "dysarthria-mild": Profile(slow=0.3, articulation=0.3, breathy=0.25, monopitch=0.3, hypernasal=0.2),
    "dysarthria-severe": Profile(slow=0.8, articulation=0.75, breathy=0.6, monopitch=0.6, hypernasal=0.5, tremor=0.3),
    "als-like": Profile(slow=0.7, articulation=0.6, hypernasal=0.8, breathy=0.4, tremor=0.25),
    "stutter": Profile(dysfluency=0.7),
    "parkinsonian": Profile(monopitch=0.85, breathy=0.5, tremor=0.3, quiet=0.6, rush=0.6, articulation=0.3),
    "accent": Profile(accent=0.6),
}
PROFILE_NOTES: dict[str, str] = {
    "typical": "the TTS voice unchanged (a control speaker)",
    "dysarthria-mild": "slightly slow, some imprecise consonants, a little breathy, narrow pitch, slightly nasal",
    "dysarthria-severe": "very slow with long pauses, many substituted/dropped sounds, breathy, flat, nasal, tremor",
    "als-like": "slow, strongly hypernasal, imprecise consonants, breathy, mild tremor (bulbar ALS-like)",
    "stutter": "part-word repetitions, prolongations and blocks",
    "parkinsonian": "monopitch, breathy, quiet, fast rushes between pauses, mild tremor (hypokinetic-like)",
    "accent": "accent-like sound changes (th-stopping, vowel mergers...) on a non-default English accent voice",
}


# ---------------------------------------------------------------------------
# planning: text -> phoneme words -> segments with rates and pauses
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class UtterancePlan:
    """What :func:`synthesize` will say, before any audio exists (pure and deterministic)."""

    text: str
    phonemes: tuple[str, ...]  # espeak phoneme words before the speaker's rules; () for other engines
    spoken: tuple[str, ...]  # after the rules (espeak) or the words (other engines)
    segments: tuple[fx.Segment, ...]
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


def _clean_text(text: str) -> str:
    words = re.sub(r"[^A-Za-z0-9' ]+", " ", text).split()
    if not words:
        raise ProfileError(f"Nothing to say in {text!r}: give some words (letters, digits, apostrophes).")
    return " ".join(words)


def _run(cmd: list[str], what: str, *, stdin: str | None = None) -> str:
    try:
        done = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise SynthesisError(
            f"{what} did not finish within {_TIMEOUT_S} s ({cmd[0]}). Try a shorter phrase."
        ) from None
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip()[-300:].rstrip(".")
        raise SynthesisError(
            f"{what} failed ({cmd[0]} exit {done.returncode}): {tail or 'no message'}. Check the voice name."
        )
    return done.stdout


def _program(engine: str) -> str:
    program, apt = _PROGRAMS[engine]
    return require_program(program, apt=apt, purpose=f"synthesize simulated speech with the {engine} engine")


@functools.lru_cache(maxsize=8192)
def phonemize(text: str, language: str = "en-us") -> tuple[str, ...]:
    """espeak-ng phoneme mnemonics of ``text``, one string per phoneme word (``espeak-ng -q -x``).

    >>> phonemize("could you pass me the salt")  # doctest: +SKIP
    ('kUd', 'ju:', "p'aas", 'm,i:', 'D@2', "s'O2lt")
    """
    exe = _program("espeak")
    out = _run([exe, "-q", "-x", "-v", language, "--stdin"], "espeak-ng phonemization", stdin=_clean_text(text))
    return tuple(out.split())


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
        spoken = fx.apply_rules(words, rules, probability=profile.rule_probability, speaker_seed=profile.seed)
    edits = fx.phoneme_edits(words, spoken) if rules else 0

    segments, counts = fx.plan_segments(
        spoken, phonemes=espeak, slow=profile.slow, dysfluency=profile.dysfluency, rush=profile.rush,
        word_gap_ms=0.0 if espeak else voice.word_gap_ms, rng=rng,  # espeak makes word gaps itself (-g)
    )
    return UtterancePlan(
        text=text, phonemes=tuple(phonemes), spoken=tuple(spoken), segments=tuple(segments), rules=rules,
        edits=edits, **counts,
    )


# ---------------------------------------------------------------------------
# rendering: plan -> waveform with each engine
# ---------------------------------------------------------------------------


def _read_wav(path: Path, what: str) -> np.ndarray:
    import soundfile as sf

    from workbench.audio import resample

    try:
        x, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, OSError) as err:  # soundfile raises LibsndfileError(RuntimeError)
        raise SynthesisError(f"{what} wrote no readable audio ({err}). Check that the voice is installed.") from None
    return resample(x.mean(axis=1), int(rate), SR)


def _check_voice_supports(voice: Voice, profile: Profile) -> None:
    if profile.trait("monopitch") > 0 and (voice.engine, voice.name) in _NO_F0_CONTROL:
        raise ProfileError(
            f"The voice {voice.spec()!r} ignores pitch settings, so it cannot simulate monopitch. "
            "Use an espeak voice, flite slt/awb/kal/kal16 or festival kal_diphone, or set monopitch:0."
        )


@functools.lru_cache(maxsize=1)
def _installed_espeak_variants() -> frozenset[str]:
    out = _run([_program("espeak"), "--voices=variant"], "listing espeak-ng variants")
    return frozenset(line.split()[-1].split("/")[-1] for line in out.splitlines()[1:] if "/" in line)


def _render_espeak(plan: UtterancePlan, voice: Voice, profile: Profile, tmp: Path) -> np.ndarray:
    _, _, variant = voice.name.partition("+")
    if variant and variant not in _installed_espeak_variants():  # espeak would silently use the default voice
        raise ProfileError(
            f"espeak-ng has no voice variant {variant!r} (in {voice.spec()!r}). "
            "See 'espeak-ng --voices=variant' or 'workbench simulate --list', e.g. 'espeak:en-us+m3'."
        )
    rate = min(max(voice.rate_wpm, _ESPEAK_MIN_WPM), 450.0)
    extra = voice.rate_wpm / rate
    parts = ["<speak>"]
    mono = profile.trait("monopitch")
    if mono > 0:
        parts.append(f'<prosody range="{100 * (1 - 0.95 * mono):.0f}%">')
    for seg in plan.segments:
        if seg.units:  # the spaces around [[...]] matter: espeak reads "]]</x>" as text
            parts.append(f'<prosody rate="{100 * seg.rate * extra:.0f}%"> [[{" ".join(seg.units)}]] </prosody>')
        if seg.pause_ms > 0:
            parts.append(f'<break time="{seg.pause_ms:.0f}ms"/>')
    parts.append("</prosody> </speak>" if mono > 0 else " </speak>")
    gap = round((voice.word_gap_ms + 120 * profile.slow) / 10)  # espeak -g is in 10 ms units
    out = tmp / "espeak.wav"
    cmd = [_program("espeak"), "-m", "-v", voice.name, "-s", str(round(rate)), "-p", str(round(voice.pitch)),
           "-g", str(gap), "-w", str(out), "--stdin"]
    _run(cmd, f"espeak-ng voice {voice.name!r}", stdin="".join(parts))
    return _read_wav(out, f"espeak-ng voice {voice.name!r}")


def _render_flite(words: str, rate: float, voice: Voice, profile: Profile, tmp: Path) -> np.ndarray:
    out = tmp / "flite.wav"
    stretch = _NOMINAL_WPM / (voice.rate_wpm * rate)
    cmd = [_program("flite"), "-voice", voice.name, "--setf", f"duration_stretch={stretch:.4f}"]
    if (voice.engine, voice.name) not in _NO_F0_CONTROL:
        f0 = FLITE_VOICES[voice.name]
        cmd += ["--setf", f"int_f0_target_mean={f0 + voice.pitch:.2f}"]
        if profile.trait("monopitch") > 0:
            cmd += ["--setf", f"int_f0_target_stddev={0.12 * f0 * (1 - 0.9 * profile.trait('monopitch')):.2f}"]
    _run(cmd + ["-t", words, "-o", str(out)], f"flite voice {voice.name!r}")
    return _read_wav(out, f"flite voice {voice.name!r}")


def _render_festival(words: str, rate: float, voice: Voice, profile: Profile, tmp: Path) -> np.ndarray:
    speed = voice.rate_wpm * rate / _NOMINAL_WPM
    lisp = [f"(voice_{voice.name})"]
    if voice.name == "kal_diphone":
        std = 14 * (1 - 0.9 * profile.trait("monopitch"))
        lisp += [
            f"(Parameter.set 'Duration_Stretch {1.1 / speed:.4f})",
            f"(set! int_lr_params '((target_f0_mean {105 + voice.pitch:.2f}) (target_f0_std {std:.2f}) "
            "(model_f0_mean 170) (model_f0_std 34)))",
        ]
    else:  # HTS: hts_engine's speech speed rate
        lisp.append(f'(set! hts_engine_params (append hts_engine_params (list (list "-r" {speed:.4f}))))')
    (tmp / "text.txt").write_text(words + "\n", encoding="utf-8")
    out = tmp / "festival.wav"
    cmd = [_program("festival"), "-o", str(out), "-eval", "(begin " + " ".join(lisp) + ")", str(tmp / "text.txt")]
    _run(cmd, f"festival voice {voice.name!r}")
    return _read_wav(out, f"festival voice {voice.name!r}")


def _render(plan: UtterancePlan, voice: Voice, profile: Profile) -> np.ndarray:
    """Waveform (samples,) float32 at 16 kHz of a plan, before the DSP effects."""
    with tempfile.TemporaryDirectory(prefix="workbench-tts-") as tmp_name:
        tmp = Path(tmp_name)
        if voice.engine == "espeak":
            return _render_espeak(plan, voice, profile, tmp)
        render = _render_flite if voice.engine == "flite" else _render_festival
        pieces: list[np.ndarray] = []
        many = len(plan.segments) > 1
        for seg in plan.segments:
            if seg.units:
                x = render(" ".join(seg.units), seg.rate, voice, profile, tmp)
                pieces.append(fx.trim(x, pad_s=0.03) if many else x)  # engine silence would blur the pauses
            pieces.append(np.zeros(int(round(seg.pause_ms / 1000 * SR)), dtype=np.float32))
        x = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)
    if voice.pitch and (voice.engine, voice.name) in _NO_F0_CONTROL:  # f0 shift the engine ignores
        import librosa

        f0 = {**FLITE_VOICES, **FESTIVAL_VOICES}[voice.name]
        steps = 12 * math.log2(max(f0 + voice.pitch, 40.0) / f0)
        x = librosa.effects.pitch_shift(x, sr=SR, n_steps=steps).astype(np.float32)
    return x


def _speaker_traits(profile: Profile) -> dict[str, float]:
    """Per-speaker DSP constants drawn once from the profile seed."""
    rng = np.random.default_rng([profile.seed, 2])
    return {"tremor_hz": float(rng.uniform(4.0, 7.0)), "nasal_hz": float(rng.uniform(220, 300)),
            "anti_hz": float(rng.uniform(700, 1100))}


def _synthesize(
    text: str, voice: Voice | str, profile: Profile | str | None, seed: int
) -> tuple[np.ndarray, UtterancePlan]:
    voice = Voice.parse(voice)
    profile = Profile() if profile is None else Profile.parse(profile)
    _check_voice_supports(voice, profile)
    rng = np.random.default_rng(seed)
    plan = _plan(text, voice, profile, rng)
    x = _render(plan, voice, profile)
    if x.size == 0 or not np.any(x):
        raise SynthesisError(f"The {voice.engine} voice {voice.name!r} produced no sound for {text!r}.")
    traits = _speaker_traits(profile)
    x = fx.hypernasality(x, profile.trait("hypernasal"), traits["nasal_hz"], traits["anti_hz"])
    x = fx.breathiness(x, profile.trait("breathy"), rng)
    x = fx.tremor(x, profile.trait("tremor"), traits["tremor_hz"], rng)
    x = fx.peak_normalize(fx.trim(x, pad_s=0.15), -3.0)
    x = fx.quiet_voice(x, profile.quiet, rng)
    return np.ascontiguousarray(x, dtype=np.float32), plan


def synthesize(
    text: str, voice: Voice | str = "espeak:en-us", profile: Profile | str | None = None, *, seed: int = 0
) -> np.ndarray:
    """Say ``text`` with a TTS voice and an atypicality profile.

    Args:
        text: the phrase.
        voice (Voice | str, default ``"espeak:en-us"``): a :class:`Voice` or spec.
        profile (Profile | str | None): a :class:`Profile`, a spec such as
            ``"dysarthria-mild"`` or ``"slow:0.8+tremor:0.5"``, or None (typical).
        seed (int, default 0): utterance randomness (pauses, noise, dysfluency
            places). The speaker's own traits come from ``profile.seed``.

    Returns:
        (samples,) float32 at 16 kHz, peak at -3 dBFS (lower for ``quiet``),
        trimmed with 0.15 s of padding. Same arguments, bit-identical output.

    Raises:
        MissingDependencyError: the engine is not installed (with the apt-get line).
        ProfileError: bad profile/voice, or the voice cannot do what the profile asks.
        SynthesisError: the engine failed or timed out.

    >>> wav = synthesize("turn off the kitchen light", "espeak:en-us+m3", "slow:0.5")  # doctest: +SKIP
    >>> wav.dtype, wav.ndim  # doctest: +SKIP
    (dtype('float32'), 1)
    """
    return _synthesize(text, voice, profile, seed)[0]


# ---------------------------------------------------------------------------
# speakers
# ---------------------------------------------------------------------------


def default_voice(profile: Profile | str | None = None, seed: int = 0) -> Voice:
    """A voice that can render ``profile``, drawn from ``seed`` among the installed engines.

    Phoneme rules need espeak; accent profiles get a non-General-American
    espeak accent; monopitch avoids the voices that ignore pitch settings.
    """
    profile = Profile() if profile is None else Profile.parse(profile)
    rng = np.random.default_rng([seed, 3])
    engines = available_engines()
    if profile.speaker_rules() or profile.dysfluency > 0:
        engines = [e for e in engines if e == "espeak"]
    if not engines:
        _program("espeak")  # raises the install hint
    accents = _ACCENT_VOICES if profile.accent > 0 else None
    for _ in range(100):
        voice = random_voice(rng, engines=engines, accents=accents)
        if not (profile.trait("monopitch") > 0 and (voice.engine, voice.name) in _NO_F0_CONTROL):
            return voice
    return Voice("espeak", "en-us")  # pragma: no cover


def _default_speaker_id(profile_spec: str, seed: int) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", profile_spec.lower()).strip("-")[:40] or "typical"
    return f"sim-{slug}-s{seed}"


def simulate_speaker(
    parent: str | os.PathLike,
    *,
    speaker_id: str | None = None,
    voice: Voice | str | None = None,
    profile: Profile | str = "typical",
    prompts: Sequence[str] | str = "everyday",
    n: int = 80,
    seed: int = 0,
    display_name: str = "",
    progress: bool = True,
    exist_ok: bool = False,
) -> SpeakerCorpus:
    """Synthesize a simulated speaker into ``<parent>/<speaker_id>/`` (a :class:`~workbench.corpus.SpeakerCorpus`).

    Args:
        parent: folder that will hold the speaker folder.
        speaker_id (str | None): default ``"sim-<profile>-s<seed>"``.
        voice: :class:`Voice` or spec; None picks one from ``seed`` (:func:`default_voice`).
        profile: :class:`Profile` or spec; a spec takes ``seed`` as its speaker seed.
        prompts: a list of prompts, or a prompt list name/path (:func:`workbench.prompts.load_prompts`).
        n (int, default 80): utterances. Prompts repeat only when ``n`` exceeds their number.
        seed (int, default 0): chooses prompts and per-utterance seeds (and voice/speaker seed, see above).
        progress (bool, default True): show a tqdm bar.
        exist_ok: add to an existing folder of that id instead of failing.

    Returns:
        The corpus; ``speaker.json`` has ``simulated: true`` and a ``profile`` dict
        with the profile, voice spec, seed and a "not clinical data" note. Each
        take's ``extra`` has its seed and phoneme plan (rules, edits, repetitions...).
    """
    from workbench.corpus import SpeakerCorpus
    from workbench.prompts import load_prompts

    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ProfileError(f"n={n!r}: the number of utterances must be a whole number of at least 1.")
    prof = Profile.parse(profile, seed=seed) if isinstance(profile, str) else Profile.parse(profile)
    voice = default_voice(prof, seed) if voice is None else Voice.parse(voice)
    _check_voice_supports(voice, prof)
    if prof.speaker_rules() and voice.engine != "espeak":
        plan_utterance("hello", voice, prof)  # raises the explanation
    prompt_list = load_prompts(prompts) if isinstance(prompts, (str, os.PathLike)) else [str(p) for p in prompts]
    if not prompt_list:
        raise ProfileError("The prompt list is empty; give at least one prompt.")
    rng = np.random.default_rng(seed)
    order: list[int] = []
    while len(order) < n:  # a fresh permutation each round: no repeats until all prompts are used
        order.extend(int(i) for i in rng.permutation(len(prompt_list)))
    chosen = [prompt_list[i] for i in order[:n]]
    utt_seeds = [int(s) for s in rng.integers(0, 2**31 - 1, size=n)]
    spec = profile if isinstance(profile, str) else prof.spec()
    speaker_id = speaker_id or _default_speaker_id(spec, seed)
    info = {
        "note": "SIMULATED speaker: synthetic TTS speech with an atypicality profile, not clinical data.",
        "profile_spec": spec,
        "profile": prof.to_dict(),
        "voice": voice.spec(),
        "voice_params": dataclasses.asdict(voice),
        "seed": seed,
        "prompts": prompts if isinstance(prompts, str) else "custom",
        "generator": "workbench.simulate",
    }
    corpus = SpeakerCorpus.create(
        parent, speaker_id, display_name=display_name or f"Simulated: {spec} ({voice.spec()})",
        notes=f"SIMULATED speaker, not clinical data. Profile {spec!r}, voice {voice.spec()!r}, seed {seed}.",
        prompts=list(dict.fromkeys(chosen)), simulated=True, profile=info, exist_ok=exist_ok,
    )
    from tqdm.auto import tqdm

    fresh = not corpus.utterances(status=None)  # a new folder gets reproducible utterance ids
    jobs = list(enumerate(zip(chosen, utt_seeds, strict=True), start=1))
    for i, (text, utt_seed) in tqdm(jobs, desc=f"simulating {speaker_id}", disable=not progress, unit="utt"):
        wav, plan = _synthesize(text, voice, prof, utt_seed)
        corpus.add_take(wav, prompt=text, transcript=text, sample_rate=SR,
                        utt_id=f"{i:05d}-{utt_seed % 16**6:06x}" if fresh else None,
                        extra={"simulated": True, "seed": utt_seed, **plan.summary()})
    return corpus


def _print_list() -> None:
    print("Simulated speakers are SYNTHETIC speech, not clinical data.\n")
    print("Profiles (combine with '+', set severity with ':', e.g. 'slow:0.8+articulation:0.6'):")
    for name, prof in PROFILES.items():
        print(f"  {name:18s} {PROFILE_NOTES[name]}\n  {'':18s} = {prof.spec()}")
    print(f"  dimensions: {', '.join(_DIMENSIONS)}; voice traits: {', '.join(VOICE_TRAITS)}")
    print(f"  phoneme rules (rule:NAME): {', '.join(sorted(_ALL_RULES))}")
    engines = available_engines()
    print(f"\nEngines installed: {', '.join(engines) or 'none (sudo apt-get install espeak-ng flite festival)'}")
    print(f"Voices (spec 'engine:name[,rate=WPM][,pitch=N][,gap=MS]'), {len(voice_pool())} base voices:")
    print(f"  espeak:ACCENT[+VARIANT]  accents: {', '.join(ESPEAK_ACCENTS)}")
    print(f"                           variants: {', '.join(ESPEAK_VARIANTS)}")
    print(f"  flite:NAME               {', '.join(FLITE_VOICES)}")
    print(f"  festival:NAME            {', '.join(FESTIVAL_VOICES)}")
    print("  e.g. espeak:en-us+m3  espeak:en-gb-scotland+f2,rate=140,pitch=30  flite:slt,pitch=-20")


def simulate_cli(args: argparse.Namespace) -> int:
    """``workbench simulate``: list profiles/voices, or write one simulated speaker folder. Returns the exit code."""
    if args.list:
        _print_list()
        return 0
    out = Path(args.out or "simulated")
    corpus = simulate_speaker(
        out, speaker_id=args.speaker_id, voice=args.voice, profile=args.profile, prompts=args.prompts,
        n=args.n, seed=args.seed,
    )
    ok = corpus.utterances()
    total = sum(u.duration_s for u in ok)
    info = corpus.info.get("profile", {})
    print(f"Simulated speaker (synthetic, not clinical data) written to {corpus.root}")
    print(f"  profile {info.get('profile_spec')}, voice {info.get('voice')}: {len(ok)} ok takes, {total:.1f} s audio")
    return 0
