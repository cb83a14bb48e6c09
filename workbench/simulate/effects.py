"""The DSP behind :mod:`workbench.simulate`, and the measures that check it (no engines, no files).

- **Effects** on mono float32 waveforms at ``sample_rate`` Hz (default
  :data:`~workbench.constants.SAMPLE_RATE`), shape ``(samples,)``, same length
  out (except :func:`trim`): breathiness, tremor, hypernasality, quiet voice,
  trimming, peak normalization. Severity 0 returns the input unchanged.
- **Measures** that tests and notebooks use to show each profile changes the
  audio: duration, cepstral peak prominence, spectral tilt, 4-7 Hz modulation,
  pitch variability, nasal band ratio and level.

Randomness only comes from a ``numpy.random.Generator`` passed in.

>>> import numpy as np
>>> x = np.full(1600, 0.5, dtype=np.float32)
>>> float(peak_normalize(x, -6.0).max()) == float(np.float32(10 ** (-6 / 20)))
True
>>> tremor(x, 0.0, 5.0, np.random.default_rng(0)) is not x, tremor(x, 0.5, 5.0, np.random.default_rng(0)).shape
(True, (1600,))
"""

from __future__ import annotations

import numpy as np

from workbench._deprecated import renamed_keywords
from workbench.constants import FRAMES_PER_SECOND, SAMPLE_RATE

__all__ = [
    "active_level_dbfs",
    "breathiness",
    "cepstral_peak_prominence",
    "duration_s",
    "hypernasality",
    "modulation_ratio",
    "nasal_ratio_db",
    "peak_normalize",
    "pitch_variability",
    "quiet_voice",
    "spectral_tilt",
    "tremor",
    "trim",
]

# ---------------------------------------------------------------------------
# effects, x: (samples,) float32 at sample_rate Hz
# ---------------------------------------------------------------------------


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0


@renamed_keywords(sr="sample_rate")
def breathiness(x: np.ndarray, severity: float, rng: np.random.Generator, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Breathy voice: a whispered copy of the speech mixed in, plus a steeper spectral tilt.

    The aspiration noise is shaped like the speech itself: random-phase noise
    whose short-time magnitude is the speech's spectral envelope (smoothed over
    about 250 Hz, so formants stay and harmonics do not), high-passed at 500 Hz.
    It therefore follows the amplitude envelope and the formants, as real
    aspiration does. It is mixed at ``-18 + 14 * severity`` dB relative to the
    speech; the voiced part is blended with a 1.5 kHz low-pass (weaker high
    harmonics, as in breathy phonation).

    Args:
        x: (samples,) float waveform at ``sample_rate``.
        severity: 0 (none) to 1 (very breathy).
        rng: the only source of randomness (the noise phases).
    Returns:
        (samples,) float32, same length as ``x``.
    """
    from scipy.ndimage import uniform_filter1d
    from scipy.signal import butter, istft, sosfilt, stft

    if severity <= 0 or x.size == 0:
        return x.astype(np.float32)
    x = x.astype(np.float64)
    _, _, spec = stft(x, fs=sample_rate, nperseg=512, noverlap=384)  # (bins, frames), 31.25 Hz bins
    envelope = uniform_filter1d(np.abs(spec), size=9, axis=0)  # ~280 Hz: formants stay, harmonics go
    whisper = envelope * np.exp(2j * np.pi * rng.random(spec.shape))
    _, noise = istft(whisper, fs=sample_rate, nperseg=512, noverlap=384)
    noise = sosfilt(butter(1, 500, btype="high", fs=sample_rate, output="sos"), noise[: x.size])
    noise = np.pad(noise, (0, x.size - noise.size))
    gain = _rms(x) * 10 ** ((-18 + 14 * severity) / 20) / max(_rms(noise), 1e-12)
    low = sosfilt(butter(1, 1500, btype="low", fs=sample_rate, output="sos"), x)
    tilt = 0.6 * severity
    return ((1 - tilt) * x + tilt * low + gain * noise).astype(np.float32)


@renamed_keywords(sr="sample_rate")
def tremor(
    x: np.ndarray, severity: float, rate_hz: float, rng: np.random.Generator, sample_rate: int = SAMPLE_RATE
) -> np.ndarray:
    """Vocal tremor: ``rate_hz`` (4-7 Hz) amplitude modulation and pitch modulation (vibrato).

    Amplitude: gain ``1 + 0.6 * severity * sin(...)``. Pitch: a delay line whose
    delay swings sinusoidally, giving up to ``±4 % * severity`` frequency
    deviation (about ±0.7 semitone at full severity) at the same rate. The
    rate wanders ±5 % slowly; the start phase comes from ``rng``.

    Returns:
        (samples,) float32, same length as ``x``.
    """
    if severity <= 0 or x.size == 0:
        return x.astype(np.float32)
    t = np.arange(x.size) / sample_rate
    wobble = 1 + 0.05 * np.sin(2 * np.pi * 0.3 * t + rng.uniform(0, 2 * np.pi))
    phase = 2 * np.pi * np.cumsum(rate_hz * wobble) / sample_rate + rng.uniform(0, 2 * np.pi)
    depth = min(0.6 * severity, 0.9)
    deviation = 0.04 * severity  # relative frequency deviation
    delay = deviation / (np.pi * rate_hz) * (1 + np.sin(phase)) / 2 * sample_rate  # in samples
    idx = np.arange(x.size) - delay
    y = np.interp(idx, np.arange(x.size), x.astype(np.float64), left=0.0)
    return (y * (1 + depth * np.sin(phase))).astype(np.float32)


@renamed_keywords(sr="sample_rate")
def hypernasality(
    x: np.ndarray, severity: float, nasal_hz: float = 250.0, anti_hz: float = 900.0, sample_rate: int = SAMPLE_RATE
) -> np.ndarray:
    """Hypernasal resonance: a nasal resonance near ``nasal_hz`` and an antiresonance (notch) at ``anti_hz``.

    The resonance is an IIR peak filter (Q 3) added with gain ``3 * severity``
    (about +12 dB at full severity); the antiresonance is an IIR notch (Q 2)
    blended in by ``severity``.

    Returns:
        (samples,) float32.
    """
    from scipy.signal import iirnotch, iirpeak, lfilter

    if severity <= 0 or x.size == 0:
        return x.astype(np.float32)
    x = x.astype(np.float64)
    b, a = iirpeak(nasal_hz, 3.0, fs=sample_rate)
    y = x + 3.0 * severity * lfilter(b, a, x)
    b, a = iirnotch(anti_hz, 2.0, fs=sample_rate)
    y = y - severity * (y - lfilter(b, a, y))
    return y.astype(np.float32)


@renamed_keywords(sr="sample_rate")
def quiet_voice(x: np.ndarray, severity: float, rng: np.random.Generator, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Reduced loudness (hypophonia): ``-15 * severity`` dB, over a fixed room-noise floor (-66 dBFS rms).

    Apply after :func:`peak_normalize`, so that the lower level (and lower
    signal-to-noise ratio) survives. Returns (samples,) float32.
    """
    from scipy.signal import butter, sosfilt

    if severity <= 0 or x.size == 0:
        return x.astype(np.float32)
    floor = sosfilt(butter(2, 4000, btype="low", fs=sample_rate, output="sos"), rng.standard_normal(x.size))
    floor *= 10 ** (-66 / 20) / max(_rms(floor), 1e-12)
    return (x * 10 ** (-15 * severity / 20) + floor).astype(np.float32)


@renamed_keywords(sr="sample_rate")
def trim(x: np.ndarray, *, top_db: float = 40.0, pad_s: float = 0.15, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Cut leading/trailing silence (``top_db`` below the loudest frame), keeping ``pad_s`` s each side.

    Thin wrapper over :func:`workbench.audio.trim_silence`, zero-padding when the
    engine left less silence than ``pad_s``.
    """
    from workbench.audio import trim_silence

    if x.size == 0 or not np.any(x):
        return x.astype(np.float32)
    core = trim_silence(x.astype(np.float32), top_db=top_db, pad_s=0.0, sample_rate=sample_rate)
    pad = np.zeros(int(round(pad_s * sample_rate)), dtype=np.float32)
    return np.concatenate([pad, core, pad])


def peak_normalize(x: np.ndarray, peak_dbfs: float = -3.0) -> np.ndarray:
    """Scale so that the absolute peak is ``peak_dbfs`` dB full scale (silence stays silence)."""
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak <= 0:
        return x.astype(np.float32)
    return (x * (10 ** (peak_dbfs / 20) / peak)).astype(np.float32)


# ---------------------------------------------------------------------------
# 4. measures, x: (samples,) at 16 kHz
# ---------------------------------------------------------------------------


@renamed_keywords(sr="sample_rate")
def duration_s(x: np.ndarray, *, top_db: float = 40.0, sample_rate: int = SAMPLE_RATE) -> float:
    """Seconds from the first to the last sound within ``top_db`` of the loudest frame (pauses inside count)."""
    from workbench.audio import trim_silence

    if x.size == 0 or not np.any(x):
        return 0.0
    return trim_silence(x.astype(np.float32), top_db=top_db, pad_s=0.0, sample_rate=sample_rate).size / sample_rate


def _frames_power(x: np.ndarray, sample_rate: int = SAMPLE_RATE) -> tuple[np.ndarray, np.ndarray]:
    """Power spectra of active frames (within 35 dB of the loudest): (frames, bins) and bin frequencies in Hz."""
    from scipy.signal import stft

    freqs, _, z = stft(x.astype(np.float64), fs=sample_rate, nperseg=512, noverlap=384, boundary=None)
    power = np.abs(z).T ** 2  # (frames, bins)
    energy = power.sum(axis=1)
    active = energy > energy.max() * 10 ** (-35 / 10) if energy.size else energy.astype(bool)
    return power[active], freqs


@renamed_keywords(sr="sample_rate")
def cepstral_peak_prominence(x: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float:
    """Mean cepstral peak prominence (CPP, dB) over active frames: how clearly periodic the voice is.

    Per 40 ms frame: the cepstrum of the dB spectrum, in dB; its peak in the
    60-400 Hz pitch range minus a straight line fitted to it over 1-20 ms
    quefrency. CPP is the usual acoustic correlate of breathiness: aspiration
    noise lowers it.
    """
    from scipy.signal import stft

    _, _, z = stft(x.astype(np.float64), fs=sample_rate, nperseg=640, noverlap=480, nfft=1024, boundary=None)
    power = np.abs(z).T ** 2  # (frames, bins)
    energy = power.sum(axis=1)
    if not energy.size or energy.max() <= 0:
        return 0.0
    active = energy > energy.max() * 10 ** (-25 / 10)
    ceps = np.fft.irfft(10 * np.log10(power[active] + 1e-12), axis=1)
    ceps_db = 20 * np.log10(np.abs(ceps) + 1e-9)
    quef = np.arange(ceps.shape[1]) / sample_rate
    pitch = (quef >= 1 / 400) & (quef <= 1 / 60)
    fit = (quef >= 0.001) & (quef <= 0.02)
    values = []
    for row in ceps_db:
        slope, icpt = np.polyfit(quef[fit], row[fit], 1)
        i = np.argmax(row[pitch])
        values.append(row[pitch][i] - (slope * quef[pitch][i] + icpt))
    return float(np.mean(values))


@renamed_keywords(sr="sample_rate")
def spectral_tilt(x: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float:
    """Slope of the long-term average spectrum, in dB per octave, fitted over 100-5000 Hz (more negative = steeper)."""
    power, freqs = _frames_power(x, sample_rate)
    sel = (freqs >= 100) & (freqs <= 5000)
    ltas = 10 * np.log10(power[:, sel].mean(axis=0) + 1e-20)
    slope, _ = np.polyfit(np.log2(freqs[sel]), ltas, 1)
    return float(slope)


@renamed_keywords(sr="sample_rate")
def nasal_ratio_db(x: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float:
    """Energy of the nasal-resonance band (180-320 Hz) over the first-formant band (600-1200 Hz), in dB."""
    power, freqs = _frames_power(x, sample_rate)
    lo = power[:, (freqs >= 180) & (freqs <= 320)].sum()
    hi = power[:, (freqs >= 600) & (freqs <= 1200)].sum()
    return float(10 * np.log10((lo + 1e-20) / (hi + 1e-20)))


def _log_envelope(x: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Frame level in dB (25 ms frames, 10 ms hop), floored 30 dB below the loudest frame: (frames,)."""
    hop, win = sample_rate // FRAMES_PER_SECOND, sample_rate // 40  # 10 ms hop, 25 ms window
    if x.size < win:
        return np.zeros(0)
    frames = np.lib.stride_tricks.sliding_window_view(x.astype(np.float64), win)[::hop]
    level = 20 * np.log10(np.sqrt(np.mean(frames**2, axis=1)) + 1e-12)
    return np.maximum(level, level.max() - 30)


def _align(a: np.ndarray, b: np.ndarray, max_lag: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """Overlapping parts of two level contours at the lag (frames) that matches them best (trimming shifts)."""
    best, best_lag = np.inf, 0
    for lag in range(-max_lag, max_lag + 1):
        a_part, b_part = (a[lag:], b) if lag >= 0 else (a, b[-lag:])
        n = min(a_part.size, b_part.size)
        if n < 32:
            continue
        cost = float(np.mean(np.abs(a_part[:n] - b_part[:n])))
        if cost < best:
            best, best_lag = cost, lag
    a_part, b_part = (a[best_lag:], b) if best_lag >= 0 else (a, b[-best_lag:])
    n = min(a_part.size, b_part.size)
    return a_part[:n], b_part[:n]


@renamed_keywords(sr="sample_rate")
def modulation_ratio(
    x: np.ndarray, reference: np.ndarray | None = None, *, lo_hz: float = 4.0, hi_hz: float = 7.0, sample_rate: int = SAMPLE_RATE
) -> float:
    """Share in [0, 1] of amplitude-modulation power in ``lo_hz``-``hi_hz`` (the tremor band) among 1-20 Hz.

    Without ``reference`` this is the modulation spectrum of ``x``'s own level
    contour (dB, 10 ms frames, over the span of the speech). Syllables modulate
    speech at 3-8 Hz too, so on running speech this is only meaningful for
    sustained sounds. With ``reference`` (the same utterance without the
    effect; contours are aligned first) it is the spectrum of the level *difference*
    ``x - reference``, which isolates what an effect added: tremor puts most of
    it in 4-7 Hz, broadband effects do not.
    """
    from scipy.signal import periodogram

    env = _log_envelope(x, sample_rate)
    if reference is not None:
        env, ref = _align(env, _log_envelope(reference, sample_rate))
        keep = ref > ref.max() - 25 if ref.size else ref.astype(bool)  # where the reference has speech
        env = (env - ref)[keep]
    else:
        active = np.flatnonzero(env > env.max() - 25) if env.size else env
        env = env[active[0]: active[-1] + 1] if active.size else env
    if env.size < 32:
        return 0.0
    freqs, p = periodogram(env, fs=100.0, window="hann", detrend="constant")
    band = p[(freqs >= lo_hz) & (freqs <= hi_hz)].sum()
    total = p[(freqs >= 1.0) & (freqs <= 20.0)].sum()
    return float(band / total) if total > 1e-20 else 0.0


@renamed_keywords(sr="sample_rate")
def pitch_variability(x: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float:
    """Standard deviation of the voice pitch in semitones (librosa pyin, 60-400 Hz, voiced frames only).

    Monopitch speech gives small values (< 1); lively speech 2-4.
    """
    import librosa

    f0, voiced, _ = librosa.pyin(x.astype(np.float32), fmin=60, fmax=400, sr=sample_rate, frame_length=1024)
    f0 = f0[voiced & np.isfinite(f0)]
    if f0.size < 5:
        return 0.0
    semitones = 12 * np.log2(f0 / np.median(f0))
    lo, hi = np.percentile(semitones, [5, 95])  # pyin octave errors are outliers, not intonation
    return float(np.std(semitones[(semitones >= lo) & (semitones <= hi)]))


@renamed_keywords(sr="sample_rate")
def active_level_dbfs(x: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float:
    """RMS level in dBFS of the frames within 30 dB of the loudest frame (speech, not pauses)."""
    win = sample_rate // 50  # 20 ms frames
    if x.size < win:
        return -120.0
    frames = x[: x.size // win * win].astype(np.float64).reshape(-1, win)
    rms = np.sqrt(np.mean(frames**2, axis=1))
    active = rms[rms > rms.max() * 10 ** (-30 / 20)]
    return float(20 * np.log10(np.sqrt(np.mean(active**2)) + 1e-12))
