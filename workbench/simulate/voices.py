"""Typical TTS voices: the engines (espeak-ng, flite, festival), their voices, and :class:`Voice` specs.

A voice is written as a spec such as ``"espeak:en-us+m3"`` or
``"flite:slt,rate=150,pitch=-10"``; :func:`random_voice` draws one from a
generator, :func:`voice_pool` lists every base voice.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from workbench.errors import MissingDependencyError, ProfileError

__all__ = [
    "ENGINES",
    "ESPEAK_ACCENTS",
    "ESPEAK_VARIANTS",
    "FESTIVAL_VOICES",
    "FLITE_VOICES",
    "Voice",
    "available_engines",
    "random_voice",
    "voice_pool",
]

ENGINES = ("espeak", "flite", "festival")
# engine -> (program, apt packages)
_PROGRAMS = {
    "espeak": ("espeak-ng", "espeak-ng"),
    "flite": ("flite", "flite"),
    "festival": ("text2wave", "festival festvox-kallpc16k festvox-us-slt-hts"),
}

_NOMINAL_WPM = 175.0  # espeak's default rate; flite/festival rates are stretches relative to it

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
