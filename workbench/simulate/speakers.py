"""Simulated speech end to end: :func:`synthesize` (one phrase) and :func:`simulate_speaker` (a speaker folder).

:func:`synthesize` plans the utterance, renders it with the engine, then adds
the profile's voice effects (hypernasality, breathiness, tremor), trims,
normalizes the peak to -3 dBFS and applies ``quiet``. Also the
``workbench simulate`` command (:func:`simulate_cli`).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from workbench.constants import SAMPLE_RATE
from workbench.errors import ProfileError, SynthesisError
from workbench.simulate import effects as fx
from workbench.simulate.engines import _check_voice_supports, _program, _render
from workbench.simulate.phonemes import _ALL_RULES
from workbench.simulate.plan import UtterancePlan, _plan, plan_utterance
from workbench.simulate.profiles import _DIMENSIONS, PROFILE_NOTES, PROFILES, VOICE_TRAITS, Profile
from workbench.simulate.voices import (
    _ACCENT_VOICES,
    _NO_F0_CONTROL,
    ESPEAK_ACCENTS,
    ESPEAK_VARIANTS,
    FESTIVAL_VOICES,
    FLITE_VOICES,
    Voice,
    available_engines,
    random_voice,
    voice_pool,
)

if TYPE_CHECKING:  # pragma: no cover
    from workbench.corpus import SpeakerCorpus

__all__ = ["default_voice", "simulate_cli", "simulate_speaker", "synthesize"]


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
        corpus.add_take(wav, prompt=text, transcript=text, sample_rate=SAMPLE_RATE,
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
