"""The DSP of simulated speakers (workbench.simulate.effects): each effect does what its docstring promises.

Synthetic inputs only (tones, harmonic series, noise; no TTS engine): shapes,
dtypes and lengths, the sample rate, determinism under a seed, and each effect
moving the signal the documented way and by the documented amount.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import butter, hilbert, sosfilt

from workbench.constants import SAMPLE_RATE
from workbench.simulate import effects as fx

SR = SAMPLE_RATE


def _tone(seconds: float = 2.0, freq: float = 150.0, amp: float = 0.5, sample_rate: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _harmonics(seconds: float = 2.0, f0: float = 200.0, n: int = 39) -> np.ndarray:
    """A 1/k harmonic series on ``f0`` (harmonics up to 7.8 kHz), peak 0.3: (samples,) at 16 kHz."""
    t = np.arange(int(seconds * SR)) / SR
    x = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, n + 1))
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def _db(ratio: float) -> float:
    return float(20 * np.log10(ratio + 1e-300))


def _power_at(x: np.ndarray, freq: float, half_width: float = 3.0, sample_rate: int = SR) -> float:
    spec = np.abs(np.fft.rfft(x.astype(np.float64))) ** 2
    f = np.fft.rfftfreq(x.size, 1 / sample_rate)
    return float(spec[(f > freq - half_width) & (f < freq + half_width)].sum())


def _envelope_and_frequency(x: np.ndarray, sample_rate: int = SR) -> tuple[np.ndarray, np.ndarray]:
    """Hilbert amplitude envelope and instantaneous frequency (Hz) of a narrow-band signal, edges cut."""
    analytic = hilbert(x.astype(np.float64))
    freq = np.diff(np.unwrap(np.angle(analytic))) * sample_rate / (2 * np.pi)
    cut = sample_rate // 2
    return np.abs(analytic)[cut:-cut], freq[cut:-cut]


RNG_EFFECTS = {
    "breathiness": lambda x, rng, sample_rate=SR: fx.breathiness(x, 0.7, rng, sample_rate=sample_rate),
    "tremor": lambda x, rng, sample_rate=SR: fx.tremor(x, 0.7, 5.0, rng, sample_rate=sample_rate),
    "quiet_voice": lambda x, rng, sample_rate=SR: fx.quiet_voice(x, 0.7, rng, sample_rate=sample_rate),
}


# --------------------------------------------------------------------------- shapes, seeds, rates


@pytest.mark.parametrize("name", sorted(RNG_EFFECTS))
def test_seeded_effects_keep_length_and_dtype_and_repeat_under_a_seed(name):
    effect = RNG_EFFECTS[name]
    x = _harmonics(1.3)
    a = effect(x, np.random.default_rng(5))
    assert a.shape == x.shape and a.dtype == np.float32 and np.all(np.isfinite(a))
    np.testing.assert_array_equal(a, effect(x, np.random.default_rng(5)))
    assert not np.array_equal(a, effect(x, np.random.default_rng(6)))  # the seed is the only randomness
    assert not np.array_equal(a, x)


def test_hypernasality_is_deterministic_and_keeps_the_length():
    x = _harmonics(1.1)
    y = fx.hypernasality(x, 0.6, 250, 900)
    assert y.shape == x.shape and y.dtype == np.float32
    np.testing.assert_array_equal(y, fx.hypernasality(x, 0.6, 250, 900))


def test_empty_input_stays_empty():
    empty = np.zeros(0, dtype=np.float32)
    rng = np.random.default_rng(0)
    for y in (fx.breathiness(empty, 1, rng), fx.tremor(empty, 1, 5, rng), fx.hypernasality(empty, 1),
              fx.quiet_voice(empty, 1, rng), fx.trim(empty), fx.peak_normalize(empty)):
        assert y.shape == (0,) and y.dtype == np.float32


def test_the_default_rate_is_the_package_rate():
    x = _tone(1.0)
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(fx.tremor(x, 0.5, 5.0, np.random.default_rng(0)),
                                  fx.tremor(x, 0.5, 5.0, rng, sample_rate=SAMPLE_RATE))
    assert fx.duration_s(x) == pytest.approx(fx.duration_s(x, sample_rate=SAMPLE_RATE))


def test_effects_follow_the_sample_rate_they_are_given():
    sample_rate = 8_000
    # tremor at 5 Hz stays 5 Hz at 8 kHz
    env, _ = _envelope_and_frequency(fx.tremor(_tone(3.0, sample_rate=sample_rate), 0.8, 5.0, np.random.default_rng(0), sample_rate=sample_rate), sample_rate)
    e = env - env.mean()
    f = np.fft.rfftfreq(e.size, 1 / sample_rate)
    power = np.abs(np.fft.rfft(e)) ** 2
    band = (f > 0.5) & (f < 30)
    assert f[band][np.argmax(power[band])] == pytest.approx(5.0, abs=0.3)
    # the nasal resonance stays at 250 Hz
    y = fx.hypernasality(_tone(1.0, freq=250, sample_rate=sample_rate), 1.0, 250, 900, sample_rate=sample_rate)
    assert _db(_rms(y[sample_rate // 2:]) / _rms(_tone(1.0, freq=250, sample_rate=sample_rate)[sample_rate // 2:])) > 9
    # trimming pads pad_s seconds at this rate
    x = np.concatenate([np.zeros(sample_rate), _tone(1.0, sample_rate=sample_rate), np.zeros(sample_rate)]).astype(np.float32)
    out = fx.trim(x, pad_s=0.15, sample_rate=sample_rate)
    assert np.all(out[:1200] == 0) and np.all(out[-1200:] == 0)  # 0.15 s at 8 kHz
    assert out.size == pytest.approx(sample_rate + 2 * 1200, abs=0.05 * sample_rate)  # 1 s of sound between the pads


# --------------------------------------------------------------------------- tremor


@pytest.mark.parametrize("severity", [0.3, 0.6, 1.0])
def test_tremor_modulates_amplitude_and_pitch_at_its_rate_by_the_documented_depth(severity):
    rate = 5.5
    y = fx.tremor(_tone(3.0, freq=150), severity, rate, np.random.default_rng(1))
    env, freq = _envelope_and_frequency(y)
    # amplitude: gain 1 + 0.6 * severity * sin(...), at rate_hz (which wanders by at most 5 %)
    depth = (env.max() - env.min()) / (env.max() + env.min())
    assert depth == pytest.approx(0.6 * severity, abs=0.08)
    e = env - env.mean()
    f = np.fft.rfftfreq(e.size, 1 / SR)
    power = np.abs(np.fft.rfft(e)) ** 2
    band = (f > 0.5) & (f < 30)
    assert abs(f[band][np.argmax(power[band])] - rate) <= 0.05 * rate + 0.35
    # pitch: up to +-4 % * severity frequency deviation at the same rate
    deviation = np.percentile(np.abs(freq / 150 - 1), 99)
    assert deviation == pytest.approx(0.04 * severity, rel=0.2)


def test_tremor_start_phase_comes_from_the_generator():
    x = _tone(2.0)
    a = fx.tremor(x, 0.8, 5.0, np.random.default_rng(0))
    b = fx.tremor(x, 0.8, 5.0, np.random.default_rng(1))
    env_a, _ = _envelope_and_frequency(a)
    env_b, _ = _envelope_and_frequency(b)
    assert np.abs(env_a - env_b).max() > 0.05  # same modulation, shifted in time


# --------------------------------------------------------------------------- breathiness


@pytest.mark.parametrize("severity", [0.25, 0.5, 1.0])
def test_breathiness_mixes_aspiration_at_the_documented_level(severity):
    x = _harmonics(1.5)
    y = fx.breathiness(x, severity, np.random.default_rng(2))
    tilt = 0.6 * severity  # the voiced part: (1 - tilt) * x + tilt * (x low-passed at 1.5 kHz)
    low = sosfilt(butter(1, 1500, btype="low", fs=SR, output="sos"), x.astype(np.float64))
    noise = y.astype(np.float64) - ((1 - tilt) * x + tilt * low)
    assert _db(_rms(noise) / _rms(x)) == pytest.approx(-18 + 14 * severity, abs=0.05)


def test_breathiness_weakens_high_harmonics_and_fills_the_gaps_between_them():
    x = _harmonics(2.0)
    y = fx.breathiness(x, 1.0, np.random.default_rng(0))
    # the 1.5 kHz low-pass blend: the 5 kHz harmonic loses several dB against the 200 Hz one
    before = _db(np.sqrt(_power_at(x, 5000) / _power_at(x, 200)))
    after = _db(np.sqrt(_power_at(y, 5000) / _power_at(y, 200)))
    assert after < before - 4
    # between two harmonics (2.3 kHz) there was nothing; now there is aspiration noise
    assert _power_at(y, 2300, half_width=40) > 1e6 * _power_at(x, 2300, half_width=40)
    assert fx.cepstral_peak_prominence(y) < fx.cepstral_peak_prominence(x) - 3


def test_breathiness_noise_follows_the_speech_envelope():
    """Aspiration is shaped like the speech: where the input is silent, so is the added noise."""
    burst = _harmonics(0.6)
    gap = np.zeros(int(0.6 * SR), dtype=np.float32)
    x = np.concatenate([burst, gap, burst])
    y = fx.breathiness(x, 1.0, np.random.default_rng(0))
    middle = slice(burst.size + 2400, burst.size + gap.size - 2400)  # the gap, 150 ms away from the bursts
    assert _rms(y[middle]) < 1e-3 * _rms(y[: burst.size])


# --------------------------------------------------------------------------- hypernasality


@pytest.mark.parametrize("severity", [0.5, 1.0])
def test_hypernasality_boosts_the_nasal_resonance_and_notches_the_antiresonance(severity):
    def gain_db(freq: float) -> float:
        x = _tone(1.5, freq=freq)
        y = fx.hypernasality(x, severity, nasal_hz=250, anti_hz=900)
        return _db(_rms(y[SR // 2:]) / _rms(x[SR // 2:]))  # after the filters' transient

    assert gain_db(250) == pytest.approx(_db(1 + 3 * severity), abs=0.5)  # +12 dB at full severity
    if severity == 1.0:
        assert gain_db(900) < -40  # the antiresonance removes its frequency
    else:
        assert gain_db(900) == pytest.approx(_db(1 - severity), abs=0.5)
    assert abs(gain_db(4000)) < 0.3  # far from both: unchanged


def test_hypernasality_follows_its_resonance_frequencies():
    x = _tone(1.5, freq=300)
    near = fx.hypernasality(x, 1.0, nasal_hz=300, anti_hz=1000)
    far = fx.hypernasality(x, 1.0, nasal_hz=220, anti_hz=1000)
    assert _rms(near[SR // 2:]) > 1.5 * _rms(far[SR // 2:])
    assert fx.nasal_ratio_db(fx.hypernasality(_harmonics(), 0.8)) > fx.nasal_ratio_db(_harmonics()) + 5


# --------------------------------------------------------------------------- quiet voice, trim, peak


@pytest.mark.parametrize("severity", [0.2, 0.5, 1.0])
def test_quiet_voice_lowers_the_level_by_15_db_times_severity(severity):
    x = _tone(1.0, amp=0.7)
    y = fx.quiet_voice(x, severity, np.random.default_rng(0))
    assert _db(_rms(y) / _rms(x)) == pytest.approx(-15 * severity, abs=0.05)


def test_quiet_voice_adds_a_fixed_low_passed_noise_floor():
    silence = np.zeros(SR, dtype=np.float32)
    floor = fx.quiet_voice(silence, 1.0, np.random.default_rng(0))
    assert _db(_rms(floor)) == pytest.approx(-66.0, abs=0.01)  # dBFS, whatever the severity
    assert _db(_rms(fx.quiet_voice(silence, 0.3, np.random.default_rng(0)))) == pytest.approx(-66.0, abs=0.01)
    spec = np.abs(np.fft.rfft(floor.astype(np.float64))) ** 2
    f = np.fft.rfftfreq(floor.size, 1 / SR)
    assert 10 * np.log10(spec[f > 6000].mean() / spec[f < 3000].mean()) < -15  # low-passed at 4 kHz


def test_trim_cuts_silence_and_pads_exactly():
    speech = _tone(1.0)
    x = np.concatenate([np.zeros(SR // 2), speech, np.zeros(int(0.7 * SR))]).astype(np.float32)
    out = fx.trim(x, pad_s=0.15)
    pad = int(0.15 * SR)
    assert out.dtype == np.float32
    assert out.size == pytest.approx(speech.size + 2 * pad, abs=0.05 * SR)
    assert np.all(out[:pad] == 0) and np.all(out[-pad:] == 0)
    assert fx.trim(x, pad_s=0.0).size == pytest.approx(speech.size, abs=0.05 * SR)
    zeros = np.zeros(1000, dtype=np.float32)
    np.testing.assert_array_equal(fx.trim(zeros), zeros)  # all silence: unchanged


def test_peak_normalize_sets_the_peak_and_keeps_silence():
    x = _harmonics(0.5) * 0.1
    for dbfs in (-3.0, -12.0):
        y = fx.peak_normalize(x, dbfs)
        assert float(np.max(np.abs(y))) == pytest.approx(10 ** (dbfs / 20), rel=1e-6)
        np.testing.assert_allclose(y / np.max(np.abs(y)), x / np.max(np.abs(x)), rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(fx.peak_normalize(np.zeros(10, dtype=np.float32)), np.zeros(10))


# --------------------------------------------------------------------------- measures


def test_level_and_duration_measures_ignore_pauses():
    speech = _tone(1.0, amp=0.5)
    x = np.concatenate([np.zeros(SR // 2), speech, np.zeros(SR // 3), speech, np.zeros(SR // 2)]).astype(np.float32)
    assert fx.active_level_dbfs(speech) == pytest.approx(_db(0.5 / np.sqrt(2)), abs=0.1)
    assert fx.active_level_dbfs(x) == pytest.approx(fx.active_level_dbfs(speech), abs=0.2)
    assert fx.duration_s(x) == pytest.approx(2 + 1 / 3, abs=0.05)  # pauses inside count, outside do not
    assert fx.duration_s(np.zeros(SR, dtype=np.float32)) == 0.0
    assert fx.active_level_dbfs(np.zeros(10, dtype=np.float32)) == -120.0


def test_spectral_measures_tell_spectra_apart():
    rng = np.random.default_rng(0)
    white = (0.1 * rng.standard_normal(2 * SR)).astype(np.float32)
    low = sosfilt(butter(2, 800, btype="low", fs=SR, output="sos"), white).astype(np.float32)
    assert abs(fx.spectral_tilt(white)) < 1.0  # dB per octave: flat
    assert fx.spectral_tilt(low) < fx.spectral_tilt(white) - 5
    assert fx.nasal_ratio_db(_tone(freq=250)) > 30 > -30 > fx.nasal_ratio_db(_tone(freq=900))
    assert fx.cepstral_peak_prominence(_harmonics()) > fx.cepstral_peak_prominence(white) + 5


def test_pitch_variability_is_in_semitones():
    t = np.arange(3 * SR) / SR
    steady = _tone(3.0, freq=150)
    f0 = 150 * 2 ** (3 * np.sin(2 * np.pi * 0.5 * t) / 12)  # +-3 semitones, std about 2.1
    gliding = (0.5 * np.sin(2 * np.pi * np.cumsum(f0) / SR)).astype(np.float32)
    assert fx.pitch_variability(steady) < 0.2
    assert fx.pitch_variability(gliding) == pytest.approx(3 / np.sqrt(2), rel=0.25)


def test_modulation_ratio_finds_the_tremor_band():
    t = np.arange(3 * SR) / SR
    carrier = np.sin(2 * np.pi * 150 * t)
    at_5hz = (0.5 * (1 + 0.5 * np.sin(2 * np.pi * 5 * t)) * carrier).astype(np.float32)
    at_12hz = (0.5 * (1 + 0.5 * np.sin(2 * np.pi * 12 * t)) * carrier).astype(np.float32)
    assert fx.modulation_ratio(at_5hz) > 0.8
    assert fx.modulation_ratio(at_12hz) < 0.1
    assert fx.modulation_ratio(_tone(0.1)) == 0.0  # too short to measure
