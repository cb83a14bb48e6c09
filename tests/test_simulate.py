"""Simulated speakers: voices, profiles, phoneme rules, DSP effects, determinism, CLI.

Tests that run a TTS engine are marked ``tts``. They skip with a reason when the
engine is missing, unless ``WORKBENCH_REQUIRE_TTS=1`` (CI), where a missing
engine is a failure.
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.errors import MissingDependencyError
from workbench.simulate import (
    PROFILES,
    Profile,
    ProfileError,
    Voice,
    available_engines,
    plan_utterance,
    random_voice,
    simulate_speaker,
    synthesize,
    voice_pool,
)
from workbench.simulate import effects as fx
from workbench.simulate import phonemes as ph
from workbench.simulate.plan import plan_segments

SR = 16_000
PHRASES = ["could you pass me the salt please", "turn off the kitchen light", "what's the weather like today"]
ESPEAK = "espeak:en-us+m3"


def _need(program: str, apt: str) -> None:
    if shutil.which(program) is None:
        if os.environ.get("WORKBENCH_REQUIRE_TTS") == "1":
            pytest.fail(f"{program} is required (WORKBENCH_REQUIRE_TTS=1) but missing: sudo apt-get install {apt}")
        pytest.skip(f"{program} is not installed (sudo apt-get install {apt}); WORKBENCH_REQUIRE_TTS=1 makes this fail")


@pytest.fixture
def espeak() -> None:
    """Skip (or fail under WORKBENCH_REQUIRE_TTS=1) without espeak-ng."""
    _need("espeak-ng", "espeak-ng")


@pytest.fixture
def flite() -> None:
    """Skip (or fail under WORKBENCH_REQUIRE_TTS=1) without flite."""
    _need("flite", "flite")


def _say(profile: str | Profile, voice: str = ESPEAK, phrases=PHRASES, seed: int = 0) -> list[np.ndarray]:
    prof = Profile.parse(profile, seed=1)
    return [synthesize(t, voice, prof, seed=seed + i) for i, t in enumerate(phrases)]


_cache: dict[str, list[np.ndarray]] = {}


def _said(profile: str) -> list[np.ndarray]:
    """Memoized :func:`_say` with the default voice (the typical reference is used by many tests)."""
    if profile not in _cache:
        _cache[profile] = _say(profile)
    return _cache[profile]


# --------------------------------------------------------------------------- voices


def test_voice_spec_round_trip_and_defaults():
    v = Voice.parse("espeak:en-us+m3")
    assert (v.engine, v.name, v.rate_wpm, v.pitch, v.word_gap_ms) == ("espeak", "en-us+m3", 175.0, 50.0, 0.0)
    assert v.spec() == "espeak:en-us+m3"
    assert Voice.parse("flite:slt").pitch == 0.0  # f0 shift in Hz for non-espeak engines
    assert Voice.parse("en-gb").engine == "espeak"
    specs = ["espeak:en-gb-scotland+f2,rate=140,pitch=30,gap=20", "flite:slt,pitch=-10", "festival:kal_diphone,gap=9"]
    for spec in specs:
        assert Voice.parse(spec).spec() == spec
        assert Voice.parse(Voice.parse(spec).spec()) == Voice.parse(spec)


@given(
    engine=st.sampled_from(["espeak", "flite", "festival"]),
    rate=st.integers(40, 450),
    pitch=st.integers(-80, 99),
    gap=st.integers(0, 2000),
)
def test_voice_spec_round_trip_property(engine, rate, pitch, gap):
    name = {"espeak": "en-us+f2", "flite": "awb", "festival": "kal_diphone"}[engine]
    try:
        v = Voice(engine, name, rate_wpm=rate, pitch=pitch, word_gap_ms=gap)
    except ProfileError:
        assert (engine == "espeak" and pitch < 0) or (engine != "espeak" and pitch > 80)
        return
    assert Voice.parse(v.spec()) == v


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("mbrola:us1", "Unknown TTS engine"),
        ("flite:nobody", "flite has no voice"),
        ("espeak:en-us,speed=3", "Unknown voice option"),
        ("espeak:en-us,rate=fast", "needs a number"),
        ("espeak:en-us,pitch=150", "0-99"),
        ("flite:slt,rate=1000", "40-450"),
    ],
)
def test_bad_voice_specs_say_what_to_do(spec, message):
    with pytest.raises(ProfileError, match=message):
        Voice.parse(spec)


def test_voice_pool_and_random_voice_are_deterministic():
    pool = voice_pool()
    assert len(pool) > 400 and len(set(pool)) == len(pool)
    assert {v.engine for v in pool} == {"espeak", "flite", "festival"}
    engines = ["espeak", "flite", "festival"]
    a = [random_voice(np.random.default_rng(7), engines=engines) for _ in range(3)]
    b = [random_voice(np.random.default_rng(7), engines=engines) for _ in range(3)]
    assert a == b
    many = {random_voice(np.random.default_rng(s), engines=engines) for s in range(60)}
    assert len(many) > 50 and {v.engine for v in many} == set(engines)


# --------------------------------------------------------------------------- profiles


def test_profile_parse_presets_dimensions_and_combinations():
    assert Profile.parse("typical").is_typical
    assert Profile.parse("slow:0.8+articulation:0.6") == Profile(slow=0.8, articulation=0.6)
    assert Profile.parse("slow").slow == 0.6  # bare dimension
    p = Profile.parse("dysarthria-severe+dysfluency:0.4", seed=5)
    assert (p.slow, p.dysfluency, p.seed) == (PROFILES["dysarthria-severe"].slow, 0.4, 5)
    # presets merge by max; explicit terms override regardless of order
    assert Profile.parse("slow:0.2+dysarthria-severe").slow == 0.2
    assert Profile.parse("stutter:0.5").dysfluency == pytest.approx(0.35)
    assert Profile.parse("voice:0.5+tremor:0").trait("tremor") == 0.0
    assert Profile.parse("voice:0.5").trait("breathy") == 0.5
    assert Profile.parse("breathy:0.7").trait("monopitch") == 0.0
    assert Profile.parse("rule:lisp+rule:gliding").speaker_rules() == ("lisp", "gliding")
    assert Profile.parse("accent+seed:3").seed == 3
    assert Profile.parse("accent+seed:3", seed=8).seed == 3  # the explicit term wins
    assert Profile.parse("accent", seed=8).seed == 8


def test_every_preset_round_trips_through_spec_and_dict():
    for name, prof in PROFILES.items():
        assert Profile.parse(name) == prof, name
        assert Profile.parse(prof.spec()) == prof, name
        d = prof.to_dict()
        assert json.loads(json.dumps(d)) == d
        assert Profile.from_dict(d) == prof


@given(
    st.dictionaries(
        st.sampled_from(["slow", "articulation", "voice", "dysfluency", "rush", "quiet", "accent", "breathy"]),
        st.floats(0, 1).map(lambda v: round(v, 3)),
    ),
    st.integers(0, 10_000),
)
@settings(max_examples=50)
def test_profile_spec_round_trip_property(severities, seed):
    prof = Profile(**severities, seed=seed)
    assert Profile.parse(prof.spec(), seed=seed) == prof


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("slw:0.5", "Unknown profile term 'slw'"),
        ("slow:1.5", "outside 0"),
        ("slow:fast", "must be a number"),
        ("", "Empty profile"),
        ("rule:mumbling", "Unknown phoneme rule"),
        ("seed:x", "whole number"),
    ],
)
def test_bad_profile_strings_give_clear_errors(spec, message):
    with pytest.raises(ProfileError, match=message):
        Profile.parse(spec)


def test_profile_constructor_validates():
    with pytest.raises(ProfileError, match="slow=-0.1"):
        Profile(slow=-0.1)
    with pytest.raises(ProfileError, match="seed"):
        Profile(seed=1.5)


# --------------------------------------------------------------------------- phoneme rules (pure)


@given(st.text(alphabet="pbtdkgfvTDszSZhmnNlrwjaeiouAEIOUV@03:#2-;',_!", max_size=20))
def test_tokenizer_round_trips(word):
    assert "".join(ph.tokenize_phonemes(word)) == word


def test_rules_are_speaker_consistent_and_seeded():
    words = ["kUd", "ju:", "p'aas", "m,i:", "D@2", "s'O2lt", "pl'i:z"]
    rules = ph.draw_rules(0.8, 0.0, np.random.default_rng(4))
    assert rules == ph.draw_rules(0.8, 0.0, np.random.default_rng(4))
    assert len(ph.draw_rules(0.2, 0.0, np.random.default_rng(4))) < len(rules)
    a = ph.apply_rules(words, rules, probability=0.9, speaker_seed=11)
    assert a == ph.apply_rules(words, rules, probability=0.9, speaker_seed=11)
    assert ph.apply_rules(words, rules, probability=0.0, speaker_seed=11) == words
    assert ph.phoneme_edits(words, ph.apply_rules(words, rules, probability=1.0, speaker_seed=11)) > 0
    # the same word comes out the same wherever it occurs (speaker-consistent)
    twice = ph.apply_rules(["s'O2lt", "kUd", "s'O2lt"], rules, probability=0.6, speaker_seed=11)
    assert twice[0] == twice[2]


@pytest.mark.parametrize(
    ("rule", "word", "expected"),
    [
        ("lisp", "s'O2lt", "T'O2lt"),
        ("gliding", "r'eIn", "w'eIn"),
        ("velar_fronting", "k'Vp", "t'Vp"),
        ("final_consonant_deletion", "k'at", "k'a"),
        ("cluster_reduction", "st'0p", "t'0p"),
        ("cluster_reduction", "pl'eI", "p'eI"),
        ("th_stopping", "T'INk", "t'INk"),
        ("final_devoicing", "b'ag", "b'ak"),
        ("h_deletion", "h'Elp", "'Elp"),
    ],
)
def test_each_rule_does_what_it_says(rule, word, expected):
    assert ph.apply_rules([word], [rule], probability=1.0, speaker_seed=0) == [expected]
    assert ph.phoneme_edits([word], [expected]) == 1


def test_plan_segments_timing_effects():
    units = ["w1", "w2", "w3", "w4", "w5", "w6", "w7", "w8"]
    plain, counts = plan_segments(units, phonemes=False, rng=np.random.default_rng(0))
    assert len(plain) == 1 and plain[0].rate == 1.0 and plain[0].pause_ms == 0 and sum(counts.values()) == 0
    slow, counts = plan_segments(units, phonemes=False, slow=1.0, rng=np.random.default_rng(0))
    assert counts["pauses"] >= 3 and all(s.rate == pytest.approx(0.45) for s in slow)
    rush, _ = plan_segments(units, phonemes=False, rush=1.0, rng=np.random.default_rng(0))
    assert len(rush) >= 2 and all(s.rate == pytest.approx(1.6) for s in rush)
    _, counts = plan_segments(units * 3, phonemes=False, dysfluency=1.0, rng=np.random.default_rng(0))
    assert counts["repetitions"] + counts["blocks"] >= 5 and counts["prolongations"] == 0  # words cannot prolong
    segs, counts = plan_segments(["s'Vn", "f'i:l", "m'i:"] * 6, phonemes=True, dysfluency=1.0,
                                 rng=np.random.default_rng(1))
    assert counts["prolongations"] >= 1 and any("sss" in u or "fff" in u or "mmm" in u for s in segs for u in s.units)


# --------------------------------------------------------------------------- DSP effects (pure)


def _voiced(seconds: float = 3.0, seed: int = 0) -> np.ndarray:
    """Syllable-like bursts of a harmonic-rich voice (f0 120-150 Hz, harmonics up to 7 kHz): (samples,) at 16 kHz."""
    t = np.arange(int(seconds * SR)) / SR
    phase = 2 * np.pi * np.cumsum(135 + 15 * np.sin(2 * np.pi * 0.7 * t)) / SR
    voice = sum(np.sin(k * phase) / k for k in range(1, 50))
    envelope = np.clip(np.sin(2 * np.pi * 3.0 * t), 0, None) ** 0.5
    noise = 1e-4 * np.random.default_rng(seed).standard_normal(t.size)
    return (0.3 * voice / np.abs(voice).max() * envelope + noise).astype(np.float32)


def test_dsp_effects_move_their_measures():
    x = _voiced(3.0)
    rng = np.random.default_rng(0)
    assert fx.cepstral_peak_prominence(fx.breathiness(x, 0.8, rng)) < fx.cepstral_peak_prominence(x) - 3
    assert fx.nasal_ratio_db(fx.hypernasality(x, 0.8, 250, 900)) > fx.nasal_ratio_db(x) + 5
    assert fx.active_level_dbfs(fx.quiet_voice(x, 1.0, rng)) < fx.active_level_dbfs(x) - 12
    shaken = fx.tremor(x, 0.8, 5.5, rng)
    assert shaken.shape == x.shape and shaken.dtype == np.float32
    assert fx.modulation_ratio(shaken, x) > 0.5  # what tremor adds sits in 4-7 Hz
    assert fx.modulation_ratio(fx.breathiness(x, 0.8, rng), x) < 0.3


def test_tremor_on_a_sustained_vowel(tone):
    x = tone(3.0, freq=150)
    assert fx.modulation_ratio(x) < 0.05
    assert fx.modulation_ratio(fx.tremor(x, 0.6, 5.0, np.random.default_rng(0))) > 0.8
    assert fx.pitch_variability(fx.tremor(x, 1.0, 5.0, np.random.default_rng(0))) > 0.3


def test_effects_at_zero_severity_are_identity():
    x = _voiced(1.0)
    rng = np.random.default_rng(0)
    for y in (fx.breathiness(x, 0, rng), fx.tremor(x, 0, 5, rng), fx.hypernasality(x, 0), fx.quiet_voice(x, 0, rng)):
        np.testing.assert_array_equal(y, x)


# --------------------------------------------------------------------------- engines


def test_missing_engine_raises_with_install_hint(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda *a, **k: None)
    with pytest.raises(MissingDependencyError, match="apt-get install espeak-ng"):
        synthesize("a phrase nobody has phonemized yet, zebra", "espeak:en-us")
    with pytest.raises(MissingDependencyError, match="flite"):
        synthesize("hello there", "flite:slt")
    assert available_engines() == []


def test_phoneme_profiles_need_espeak():
    with pytest.raises(ProfileError, match="espeak"):
        plan_utterance("hello there", "flite:slt", "articulation:0.5")
    with pytest.raises(ProfileError, match="monopitch"):
        synthesize("hello there", "flite:rms", "monopitch:0.5")


@pytest.mark.tts
def test_same_seed_is_bit_identical_and_seeds_differ(espeak):
    prof = Profile.parse("dysarthria-severe", seed=2)
    a = synthesize(PHRASES[0], ESPEAK, prof, seed=3)
    b = synthesize(PHRASES[0], ESPEAK, prof, seed=3)
    assert a.dtype == np.float32 and a.ndim == 1
    np.testing.assert_array_equal(a, b)
    c = synthesize(PHRASES[0], ESPEAK, prof, seed=4)
    assert a.shape != c.shape or not np.array_equal(a, c)
    other_speaker = synthesize(PHRASES[0], ESPEAK, Profile.parse("dysarthria-severe", seed=9), seed=3)
    assert a.shape != other_speaker.shape or not np.array_equal(a, other_speaker)


@pytest.mark.tts
def test_output_format(espeak):
    x = _said("typical")[0]
    assert x.dtype == np.float32 and x.ndim == 1
    assert np.max(np.abs(x)) == pytest.approx(10 ** (-3 / 20), rel=1e-3)  # -3 dBFS peak
    assert 0.5 < x.size / SR < 4
    assert np.all(x[: int(0.1 * SR)] == 0)  # trimmed, then padded with silence


def _total_duration(xs):
    return sum(fx.duration_s(x) for x in xs)


@pytest.mark.tts
def test_slow_is_longer(espeak):
    assert _total_duration(_said("slow:0.8")) > 2.0 * _total_duration(_said("typical"))


@pytest.mark.tts
def test_rush_is_shorter(espeak):
    assert _total_duration(_said("rush:0.8")) < 0.95 * _total_duration(_said("typical"))


@pytest.mark.tts
def test_articulation_edits_phonemes(espeak):
    prof = Profile.parse("articulation:0.8", seed=1)
    plans = [plan_utterance(t, ESPEAK, prof, seed=i) for i, t in enumerate(PHRASES)]
    assert sum(p.edits for p in plans) >= 3
    assert all(p.rules == prof.speaker_rules() for p in plans)
    light = Profile.parse("articulation:0.2", seed=1)
    assert sum(plan_utterance(t, ESPEAK, light, seed=0).edits for t in PHRASES) <= sum(p.edits for p in plans)


@pytest.mark.tts
def test_accent_stops_th(espeak):
    plan = plan_utterance("the weather is nice", "espeak:en-029", "accent", seed=0)
    assert "th_stopping" in plan.rules and plan.edits >= 1
    assert "D" not in "".join(plan.spoken)


@pytest.mark.tts
def test_breathy_is_noisier(espeak):
    cpp = [fx.cepstral_peak_prominence(x) for x in _said("breathy:0.8")]
    typical = [fx.cepstral_peak_prominence(x) for x in _said("typical")]
    assert np.mean(cpp) < np.mean(typical) - 3  # dB: aspiration noise hides the harmonics
    assert fx.spectral_tilt(np.concatenate(_said("breathy:0.8"))) < fx.spectral_tilt(np.concatenate(_said("typical")))


@pytest.mark.tts
def test_tremor_modulates_at_4_to_7_hz(espeak):
    # level changes that tremor adds sit in 4-7 Hz; breathiness changes levels too, but not rhythmically
    for shaken, breathy, plain in zip(_said("tremor:0.8"), _said("breathy:0.8"), _said("typical"), strict=True):
        assert fx.modulation_ratio(shaken, plain) > 0.6
        assert fx.modulation_ratio(shaken, plain) > fx.modulation_ratio(breathy, plain) + 0.2


@pytest.mark.tts
def test_monopitch_flattens_pitch(espeak):
    flat = np.mean([fx.pitch_variability(x) for x in _said("monopitch:0.9")])
    lively = np.mean([fx.pitch_variability(x) for x in _said("typical")])
    assert flat < 0.5 * lively


@pytest.mark.tts
def test_hypernasal_boosts_the_nasal_band(espeak):
    typical = np.concatenate(_said("typical"))
    assert fx.nasal_ratio_db(np.concatenate(_said("hypernasal:0.8"))) > fx.nasal_ratio_db(typical) + 5


@pytest.mark.tts
def test_quiet_is_quieter(espeak):
    typical = np.concatenate(_said("typical"))
    assert fx.active_level_dbfs(np.concatenate(_said("quiet:0.8"))) < fx.active_level_dbfs(typical) - 8


@pytest.mark.tts
def test_dysfluency_repeats_and_lengthens(espeak):
    prof = Profile.parse("dysfluency:0.8", seed=1)
    plans = [plan_utterance(t, ESPEAK, prof, seed=i) for i, t in enumerate(PHRASES)]
    assert sum(p.repetitions + p.prolongations + p.blocks for p in plans) >= 2
    assert _total_duration(_said("dysfluency:0.8")) > 1.3 * _total_duration(_said("typical"))


@pytest.mark.tts
def test_combined_profile_has_both_effects(espeak):
    both = _say("slow:0.8+breathy:0.8")
    assert _total_duration(both) > 2.0 * _total_duration(_said("typical"))
    assert np.mean([fx.cepstral_peak_prominence(x) for x in both]) < np.mean(
        [fx.cepstral_peak_prominence(x) for x in _said("typical")]
    ) - 3


@pytest.mark.tts
def test_every_preset_synthesizes_and_changes_the_audio(espeak):
    typical = synthesize(PHRASES[1], "espeak:en-gb+f3", "typical", seed=0)
    for name in PROFILES:
        x = synthesize(PHRASES[1], "espeak:en-gb+f3", name, seed=0)
        assert x.dtype == np.float32 and np.all(np.isfinite(x)) and x.size > SR // 2
        if name != "typical":
            assert x.shape != typical.shape or not np.array_equal(x, typical), name


@pytest.mark.tts
def test_flite_voice_with_voice_effects(flite):
    plain = synthesize(PHRASES[0], "flite:slt", None, seed=0)
    flat = synthesize(PHRASES[0], "flite:slt", "monopitch:0.9+slow:0.6", seed=0)
    assert fx.pitch_variability(flat) < 0.6 * fx.pitch_variability(plain)
    assert fx.duration_s(flat) > 1.5 * fx.duration_s(plain)
    np.testing.assert_array_equal(flat, synthesize(PHRASES[0], "flite:slt", "monopitch:0.9+slow:0.6", seed=0))


# --------------------------------------------------------------------------- speakers and CLI


@pytest.mark.tts
def test_simulate_speaker_writes_a_labelled_corpus(espeak, speaker_root):
    prompts = ["turn on the light", "good morning", "i need a drink"]
    corpus = simulate_speaker(speaker_root, speaker_id="sim-test", voice=ESPEAK, profile="stutter",
                              prompts=prompts, n=3, seed=4, progress=False)
    utts = corpus.utterances()
    assert sorted(u.prompt for u in utts) == sorted(prompts)  # no repeats while n <= len(prompts)
    assert all(u.status == "ok" and u.transcript == u.prompt and u.extra["simulated"] for u in utts)
    info = json.loads((corpus.root / "speaker.json").read_text())
    assert info["simulated"] is True
    assert info["profile"]["voice"] == ESPEAK and info["profile"]["profile"]["dysfluency"] == 0.7
    assert "not clinical data" in info["profile"]["note"]
    again = simulate_speaker(speaker_root, speaker_id="sim-test2", voice=ESPEAK, profile="stutter",
                             prompts=prompts, n=3, seed=4, progress=False)
    for u, v in zip(utts, again.utterances(), strict=True):
        np.testing.assert_array_equal(corpus.load_audio(u), again.load_audio(v))


@pytest.mark.tts
def test_prompts_repeat_only_when_n_exceeds_them(espeak, speaker_root):
    corpus = simulate_speaker(speaker_root, voice=ESPEAK, prompts=["yes please", "no thanks"], n=5, progress=False)
    said = [u.prompt for u in corpus.utterances()]
    assert len(said) == 5 and set(said) == {"yes please", "no thanks"}
    assert corpus.speaker_id == "sim-typical-s0"


@pytest.mark.tts
def test_cli_simulate_writes_three_ok_takes(espeak, tmp_path, capsys):
    from workbench.cli import main
    from workbench.corpus import SpeakerCorpus

    code = main(["simulate", "--n", "3", "--out", str(tmp_path), "--profile", "dysarthria-mild", "--seed", "2",
                 "--voice", "espeak:en-gb+m2", "--speaker-id", "cli-spk"])
    assert code == 0
    corpus = SpeakerCorpus.open(tmp_path / "cli-spk")
    assert len(corpus.utterances()) == 3 and corpus.info["simulated"] is True
    assert "not clinical data" in capsys.readouterr().out


def test_cli_list_and_errors(capsys, tmp_path):
    from workbench.cli import main

    assert main(["simulate", "--list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in PROFILES) and "espeak:" in out and "not clinical data" in out
    assert main(["simulate", "--profile", "wobbly", "--out", str(tmp_path)]) == 2
    assert "Unknown profile term" in capsys.readouterr().err


def test_missing_engine_skips_or_fails_by_env(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda *a, **k: None)
    monkeypatch.delenv("WORKBENCH_REQUIRE_TTS", raising=False)
    with pytest.raises(pytest.skip.Exception, match="WORKBENCH_REQUIRE_TTS=1"):
        _need("espeak-ng", "espeak-ng")
    monkeypatch.setenv("WORKBENCH_REQUIRE_TTS", "1")
    with pytest.raises(pytest.fail.Exception, match="apt-get install espeak-ng"):
        _need("espeak-ng", "espeak-ng")
