"""Running the TTS engines: espeak-ng phonemization and rendering a plan to a waveform with each engine.

Every program runs with a timeout (:data:`_TIMEOUT_S`) in a temporary folder;
a failure is a :class:`~workbench.errors.SynthesisError` that names the engine,
a missing program a :class:`~workbench.errors.MissingDependencyError` with the
``apt-get`` line. Waveforms come back as ``(samples,)`` float32 at
:data:`~workbench.constants.SAMPLE_RATE`, before the DSP effects.
"""

from __future__ import annotations

import functools
import math
import re
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from workbench._optional import require_program
from workbench.constants import SAMPLE_RATE
from workbench.errors import ProfileError, SynthesisError
from workbench.simulate.effects import trim
from workbench.simulate.voices import _NO_F0_CONTROL, _NOMINAL_WPM, _PROGRAMS, FESTIVAL_VOICES, FLITE_VOICES, Voice

if TYPE_CHECKING:  # pragma: no cover
    from workbench.simulate.plan import UtterancePlan
    from workbench.simulate.profiles import Profile

__all__ = ["phonemize"]

_ESPEAK_MIN_WPM = 80.0  # espeak-ng ignores slower rates, SSML included
_TIMEOUT_S = 60


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



def _read_wav(path: Path, what: str) -> np.ndarray:
    import soundfile as sf

    from workbench.audio import resample

    try:
        x, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, OSError) as err:  # soundfile raises LibsndfileError(RuntimeError)
        raise SynthesisError(f"{what} wrote no readable audio ({err}). Check that the voice is installed.") from None
    return resample(x.mean(axis=1), int(rate), SAMPLE_RATE)


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
                pieces.append(trim(x, pad_s=0.03) if many else x)  # engine silence would blur the pauses
            pieces.append(np.zeros(int(round(seg.pause_ms / 1000 * SAMPLE_RATE)), dtype=np.float32))
        x = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)
    if voice.pitch and (voice.engine, voice.name) in _NO_F0_CONTROL:  # f0 shift the engine ignores
        import librosa

        f0 = {**FLITE_VOICES, **FESTIVAL_VOICES}[voice.name]
        steps = 12 * math.log2(max(f0 + voice.pitch, 40.0) / f0)
        x = librosa.effects.pitch_shift(x, sr=SAMPLE_RATE, n_steps=steps).astype(np.float32)
    return x
