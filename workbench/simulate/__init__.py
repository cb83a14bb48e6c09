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

How each effect is made (the DSP is in :mod:`workbench.simulate.effects`):

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

Where each part lives: :mod:`.voices` (engines and voices), :mod:`.profiles`
(profiles and presets), :mod:`.phonemes` (phoneme rules), :mod:`.plan` (timing
and the utterance plan), :mod:`.engines` (running the TTS programs),
:mod:`.effects` (the DSP and its measures), :mod:`.speakers` (synthesis end to
end, speaker folders and the ``workbench simulate`` command).
"""

from __future__ import annotations

from workbench.errors import ProfileError, SynthesisError
from workbench.simulate.engines import phonemize
from workbench.simulate.plan import Segment, UtterancePlan, plan_utterance
from workbench.simulate.profiles import PROFILE_NOTES, PROFILES, VOICE_TRAITS, Profile
from workbench.simulate.speakers import default_voice, simulate_cli, simulate_speaker, synthesize
from workbench.simulate.voices import (
    ENGINES,
    ESPEAK_ACCENTS,
    ESPEAK_VARIANTS,
    FESTIVAL_VOICES,
    FLITE_VOICES,
    Voice,
    available_engines,
    random_voice,
    voice_pool,
)

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
