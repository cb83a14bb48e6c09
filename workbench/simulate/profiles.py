"""Atypicality profiles: how a simulated speaker differs from a typical voice (:class:`Profile`, :data:`PROFILES`).

A profile holds severities in [0, 1] of ``slow``, ``articulation``, ``voice``
(breathy, tremor, monopitch, hypernasal), ``dysfluency``, plus ``rush``,
``quiet`` and ``accent``, and the speaker ``seed``. Presets are in
:data:`PROFILES`; ``Profile.parse("slow:0.8+articulation:0.6")`` combines them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from workbench.errors import ProfileError
from workbench.simulate.phonemes import _ALL_RULES, draw_rules

__all__ = ["PROFILES", "PROFILE_NOTES", "Profile", "VOICE_TRAITS"]

_DIMENSIONS = ("slow", "articulation", "voice", "dysfluency", "rush", "quiet", "accent")
VOICE_TRAITS = ("breathy", "tremor", "monopitch", "hypernasal")
_BARE_SEVERITY = 0.6  # "slow" alone means "slow:0.6"


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
        return draw_rules(self.articulation, self.accent, np.random.default_rng([self.seed, 1]))

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
