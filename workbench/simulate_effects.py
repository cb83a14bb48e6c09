"""The atypical-speech effects behind :mod:`workbench.simulate`, and measures that check them.

Four groups of pure functions (no engines, no files):

1. **Phoneme rules** on espeak-ng phoneme mnemonics (the output of
   ``espeak-ng -q -x``): speaker-consistent substitutions and deletions
   (articulation) and accent-like substitutions. A speaker's rule set is drawn
   once (:func:`draw_rules`) and every utterance is rewritten with it
   (:func:`apply_rules`). Whether a rule fires on a given word is decided by a
   stable hash of (speaker seed, rule, word, position), so the same speaker says
   the same word the same way every time, as real speakers with a motor speech
   disorder largely do, which is also what makes personalization learnable.
2. **Timing** (:func:`plan_segments`): slow pauses, rushes, and dysfluencies
   (part-word repetitions, prolongations, blocks) as segments with rates and pauses.
3. **DSP effects** on 16 kHz mono float32 waveforms, shape ``(samples,)``:
   breathiness, tremor, hypernasality, quiet voice, trimming, peak normalization.
4. **Measures** that tests and notebooks use to show each profile changes the
   audio: duration, cepstral peak prominence, spectral tilt, 4-7 Hz modulation,
   pitch variability, nasal band ratio, level, and phoneme edit counts.

Randomness only comes from a ``numpy.random.Generator`` passed in.

>>> toks = tokenize_phonemes("s'O2lt")
>>> toks
['s', "'", 'O2', 'l', 't']
>>> apply_rules(["s'O2lt"], ("lisp",), probability=1.0, speaker_seed=0)
["T'O2lt"]
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "ACCENT_RULES",
    "ARTICULATION_RULES",
    "Segment",
    "active_level_dbfs",
    "apply_rules",
    "breathiness",
    "cepstral_peak_prominence",
    "draw_rules",
    "duration_s",
    "hypernasality",
    "is_consonant",
    "is_vowel",
    "modulation_ratio",
    "nasal_ratio_db",
    "peak_normalize",
    "phoneme_edits",
    "pitch_variability",
    "plan_segments",
    "quiet_voice",
    "spectral_tilt",
    "tokenize_phonemes",
    "tremor",
    "trim",
]

SR = 16_000  # Hz, every waveform here

# ---------------------------------------------------------------------------
# 1. phoneme rules on espeak-ng mnemonics (English voices)
# ---------------------------------------------------------------------------

# Multi-character English mnemonics, matched longest first; anything else is one character.
_MULTI = sorted(
    [
        "aI@", "aI3", "aU@", "i@3", "oU#", "I2#", "aI", "aU", "eI", "OI", "oU", "@U", "i@", "e@", "U@",
        "O@", "o@", "A@", "aa", "A:", "O:", "3:", "i:", "u:", "@L", "@2", "@5", "@-", "I2", "I#", "a#",
        "E2", "E3", "0#", "O2", "t#", "d#", "t2", "d2", "tS", "dZ", "r-", "l/", "n-", "m-",
    ],
    key=len,
    reverse=True,
)
_STRESS = "',%="
_CONSONANT_BASES = set("pbtdkgfvTDszSZhmnNlrwjxRL")
_VOWEL_BASES = set("aeiouAEIOUV@03")


def tokenize_phonemes(word: str) -> list[str]:
    """Split one espeak-ng phoneme word into tokens: phonemes, stress marks and pauses.

    ``"".join(tokenize_phonemes(w)) == w`` always holds.
    """
    out: list[str] = []
    i = 0
    while i < len(word):
        c = word[i]
        if c in _STRESS:
            out.append(c)
            i += 1
            continue
        if c == "_":  # pause mnemonics: _ _: _!
            j = i + 1
            while j < len(word) and word[j] in ":!_":
                j += 1
            out.append(word[i:j])
            i = j
            continue
        tok = next((m for m in _MULTI if word.startswith(m, i)), c)
        i += len(tok)
        while i < len(word) and word[i] == ";":  # espeak's palatal/linking mark stays with its phoneme
            tok += ";"
            i += 1
        out.append(tok)
    return out


def _base(tok: str) -> str:
    return tok.rstrip(";")


def is_vowel(tok: str) -> bool:
    """True for a vowel token (``"i:"``, ``"@2"``, ``"aI"``...)."""
    return bool(tok) and tok[0] in _VOWEL_BASES


def is_consonant(tok: str) -> bool:
    """True for a consonant token (``"t#"``, ``"tS"``, ``"r-"``...)."""
    return bool(tok) and tok[0] in _CONSONANT_BASES and not is_vowel(tok)


def _phones(tokens: Sequence[str]) -> list[int]:
    """Indices of the phoneme tokens (not stress marks or pauses)."""
    return [i for i, t in enumerate(tokens) if is_vowel(t) or is_consonant(t)]


# name -> (description, kind, mapping). kind "sub": replace anywhere; "final": replace word-finally;
# "final_deletion" / "cluster": structural edits. A mapping value "" deletes the phoneme.
_Rule = tuple[str, str, dict[str, str]]

ARTICULATION_RULES: dict[str, _Rule] = {
    "stop_weakening": ("stops weakened to fricatives (p->f, b->v, t->s, d->z, k/g->x)", "sub",
                       {"p": "f", "b": "v", "t": "s", "t#": "s", "t2": "s", "d": "z", "k": "x", "g": "x"}),
    "final_consonant_deletion": ("the last consonant of a word is dropped (cat -> ca)", "final_deletion", {}),
    "cluster_reduction": ("initial consonant clusters lose a member (stop -> top, play -> pay)", "cluster", {}),
    "lisp": ("s->th, z->dh (interdental lisp)", "sub", {"s": "T", "z": "D"}),
    "gliding": ("r->w (gliding)", "sub", {"r": "w", "r-": "w"}),
    "devoicing": ("voiced consonants lose voicing (b->p, d->t, z->s...)", "sub",
                  {"b": "p", "d": "t", "g": "k", "v": "f", "z": "s", "D": "T", "dZ": "tS", "Z": "S"}),
    "velar_fronting": ("k->t, g->d, ng->n", "sub", {"k": "t", "g": "d", "N": "n"}),
    "stopping": ("fricatives become stops (f->p, s->t, sh->t...)", "sub",
                 {"f": "p", "v": "b", "s": "t", "z": "d", "S": "t", "T": "t", "D": "d"}),
    "vowel_centralization": ("short vowels drift to schwa (reduced vowel space)", "sub",
                             {"I": "@", "E": "@", "a": "@", "aa": "@", "V": "@", "0": "@", "U": "@", "O2": "@"}),
    "diphthong_reduction": ("diphthongs flatten to one vowel (eI->E, aI->a, oU->O:)", "sub",
                            {"aI": "a", "aU": "a", "eI": "E", "oU": "O:", "OI": "O:", "e@": "E", "i@": "I"}),
    "deaffrication": ("ch->sh, j->zh", "sub", {"tS": "S", "dZ": "Z"}),
    "h_deletion": ("h is dropped", "sub", {"h": ""}),
}

ACCENT_RULES: dict[str, _Rule] = {
    "th_stopping": ("th->t, dh->d", "sub", {"T": "t", "D": "d"}),
    "lax_vowel_merger": ("lax vowels merge with tense ones (ship -> sheep, full -> fool)", "sub",
                         {"I": "i:", "I2": "i:", "U": "u:"}),
    "final_devoicing": ("word-final voiced consonants devoice (bag -> back)", "final",
                        {"b": "p", "d": "t", "g": "k", "v": "f", "z": "s", "dZ": "tS"}),
    "w_to_v": ("w->v", "sub", {"w": "v"}),
    "full_vowels": ("unstressed schwa said as a full vowel", "sub", {"@": "a", "@2": "a", "3": "a"}),
    "h_dropping": ("h is dropped", "sub", {"h": ""}),
}

_ALL_RULES: dict[str, _Rule] = {**ARTICULATION_RULES, **ACCENT_RULES}
_EXCLUSIVE = [{"stop_weakening", "stopping"}, {"h_deletion", "h_dropping"}]


def _compatible(chosen: list[str], name: str) -> bool:
    return not any(name in group and group & set(chosen) for group in _EXCLUSIVE)


def draw_rules(articulation: float, accent: float, rng: np.random.Generator) -> tuple[str, ...]:
    """Draw a speaker's rule set once from its severities (both in [0, 1]).

    Articulation draws ``1 + round(4.5 * severity)`` rules from
    :data:`ARTICULATION_RULES`; accent always has ``th_stopping`` plus
    ``1 + round(3 * severity)`` rules from :data:`ACCENT_RULES`. Same generator
    state, same rules.
    """
    chosen: list[str] = []
    if accent > 0:
        chosen.append("th_stopping")
        others = [r for r in ACCENT_RULES if r != "th_stopping"]
        for i in rng.permutation(len(others)):
            if len(chosen) >= 2 + round(3 * accent):
                break
            chosen.append(others[i])
    if articulation > 0:
        names = list(ARTICULATION_RULES)
        want = len(chosen) + 1 + round(4.5 * articulation)
        for i in rng.permutation(len(names)):
            if len(chosen) >= want:
                break
            if _compatible(chosen, names[i]):
                chosen.append(names[i])
    return tuple(chosen)


def _fires(speaker_seed: int, rule: str, word: str, pos: int, probability: float) -> bool:
    key = f"{speaker_seed}|{rule}|{word}|{pos}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") / 2**64 < probability


def _apply_one(tokens: list[str], rule: str, decide) -> list[str]:
    _, kind, mapping = _ALL_RULES[rule]
    phones = _phones(tokens)
    if not phones:
        return tokens
    out = list(tokens)
    if kind in ("sub", "final"):
        where = phones if kind == "sub" else phones[-1:]
        for i in where:
            new = mapping.get(_base(out[i]))
            if new is not None and decide(i):
                out[i] = new
    elif kind == "final_deletion":
        last = phones[-1]
        if is_consonant(out[last]) and any(is_vowel(out[i]) for i in phones[:-1]) and decide(last):
            out[last] = ""
    elif kind == "cluster" and len(phones) >= 2:
        a, b = phones[0], phones[1]
        if is_consonant(out[a]) and is_consonant(out[b]) and decide(a):
            if _base(out[a]) == "s":
                out[a] = ""
            elif _base(out[b]) in ("r", "l", "w", "j", "r-"):
                out[b] = ""
    return [t for t in out if t != ""]


def apply_rules(words: Sequence[str], rules: Sequence[str], *, probability: float, speaker_seed: int) -> list[str]:
    """Rewrite espeak phoneme words with a speaker's rules.

    Args:
        words: phoneme words, e.g. ``["kUd", "ju:", "p'aas"]``.
        rules: rule names from :data:`ARTICULATION_RULES` / :data:`ACCENT_RULES`, applied in order.
        probability: chance in [0, 1] that a rule fires at a place where it applies.
        speaker_seed: the speaker's seed; with the word and position it decides, stably, where rules fire.

    Returns:
        list[str]: the rewritten words (a word never becomes empty; it keeps at least its first phoneme).
    """
    unknown = [r for r in rules if r not in _ALL_RULES]
    if unknown:
        raise ValueError(f"unknown phoneme rule(s) {unknown}; known rules: {sorted(_ALL_RULES)}")
    out = []
    for word in words:
        tokens = tokenize_phonemes(word)
        for rule in rules:

            def decide(pos: int, _rule: str = rule, _word: str = word) -> bool:
                return _fires(speaker_seed, _rule, _word, pos, probability)

            tokens = _apply_one(tokens, rule, decide)
        if not _phones(tokens):  # keep something pronounceable
            tokens = tokenize_phonemes(word)[:2]
        out.append("".join(tokens))
    return out


def phoneme_edits(before: Sequence[str], after: Sequence[str]) -> int:
    """Levenshtein distance between two phoneme word lists, counted in phonemes (stress marks ignored)."""
    a = [t for w in before for t in tokenize_phonemes(w) if is_vowel(t) or is_consonant(t)]
    b = [t for w in after for t in tokenize_phonemes(w) if is_vowel(t) or is_consonant(t)]
    prev = list(range(len(b) + 1))
    for i, ta in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, tb in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ta != tb))
        prev = cur
    return prev[-1]


# ---------------------------------------------------------------------------
# 2. timing: pauses, rushes and dysfluencies between the words
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
# 3. DSP effects, x: (samples,) float32 at 16 kHz
# ---------------------------------------------------------------------------


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0


def breathiness(x: np.ndarray, severity: float, rng: np.random.Generator, sr: int = SR) -> np.ndarray:
    """Breathy voice: a whispered copy of the speech mixed in, plus a steeper spectral tilt.

    The aspiration noise is shaped like the speech itself: random-phase noise
    whose short-time magnitude is the speech's spectral envelope (smoothed over
    about 250 Hz, so formants stay and harmonics do not), high-passed at 500 Hz.
    It therefore follows the amplitude envelope and the formants, as real
    aspiration does. It is mixed at ``-18 + 14 * severity`` dB relative to the
    speech; the voiced part is blended with a 1.5 kHz low-pass (weaker high
    harmonics, as in breathy phonation).

    Args:
        x: (samples,) float waveform at ``sr``.
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
    _, _, spec = stft(x, fs=sr, nperseg=512, noverlap=384)  # (bins, frames), 31.25 Hz bins
    envelope = uniform_filter1d(np.abs(spec), size=9, axis=0)  # ~280 Hz: formants stay, harmonics go
    whisper = envelope * np.exp(2j * np.pi * rng.random(spec.shape))
    _, noise = istft(whisper, fs=sr, nperseg=512, noverlap=384)
    noise = sosfilt(butter(1, 500, btype="high", fs=sr, output="sos"), noise[: x.size])
    noise = np.pad(noise, (0, x.size - noise.size))
    gain = _rms(x) * 10 ** ((-18 + 14 * severity) / 20) / max(_rms(noise), 1e-12)
    low = sosfilt(butter(1, 1500, btype="low", fs=sr, output="sos"), x)
    tilt = 0.6 * severity
    return ((1 - tilt) * x + tilt * low + gain * noise).astype(np.float32)


def tremor(
    x: np.ndarray, severity: float, rate_hz: float, rng: np.random.Generator, sr: int = SR
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
    t = np.arange(x.size) / sr
    wobble = 1 + 0.05 * np.sin(2 * np.pi * 0.3 * t + rng.uniform(0, 2 * np.pi))
    phase = 2 * np.pi * np.cumsum(rate_hz * wobble) / sr + rng.uniform(0, 2 * np.pi)
    depth = min(0.6 * severity, 0.9)
    deviation = 0.04 * severity  # relative frequency deviation
    delay = deviation / (np.pi * rate_hz) * (1 + np.sin(phase)) / 2 * sr  # in samples
    idx = np.arange(x.size) - delay
    y = np.interp(idx, np.arange(x.size), x.astype(np.float64), left=0.0)
    return (y * (1 + depth * np.sin(phase))).astype(np.float32)


def hypernasality(
    x: np.ndarray, severity: float, nasal_hz: float = 250.0, anti_hz: float = 900.0, sr: int = SR
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
    b, a = iirpeak(nasal_hz, 3.0, fs=sr)
    y = x + 3.0 * severity * lfilter(b, a, x)
    b, a = iirnotch(anti_hz, 2.0, fs=sr)
    y = y - severity * (y - lfilter(b, a, y))
    return y.astype(np.float32)


def quiet_voice(x: np.ndarray, severity: float, rng: np.random.Generator, sr: int = SR) -> np.ndarray:
    """Reduced loudness (hypophonia): ``-15 * severity`` dB, over a fixed room-noise floor (-66 dBFS rms).

    Apply after :func:`peak_normalize`, so that the lower level (and lower
    signal-to-noise ratio) survives. Returns (samples,) float32.
    """
    from scipy.signal import butter, sosfilt

    if severity <= 0 or x.size == 0:
        return x.astype(np.float32)
    floor = sosfilt(butter(2, 4000, btype="low", fs=sr, output="sos"), rng.standard_normal(x.size))
    floor *= 10 ** (-66 / 20) / max(_rms(floor), 1e-12)
    return (x * 10 ** (-15 * severity / 20) + floor).astype(np.float32)


def trim(x: np.ndarray, *, top_db: float = 40.0, pad_s: float = 0.15, sr: int = SR) -> np.ndarray:
    """Cut leading/trailing silence (``top_db`` below the loudest frame), keeping ``pad_s`` s each side.

    Thin wrapper over :func:`workbench.audio.trim_silence`, zero-padding when the
    engine left less silence than ``pad_s``.
    """
    from workbench.audio import trim_silence

    if x.size == 0 or not np.any(x):
        return x.astype(np.float32)
    core = trim_silence(x.astype(np.float32), top_db=top_db, pad_seconds=0.0, sample_rate=sr)
    pad = np.zeros(int(round(pad_s * sr)), dtype=np.float32)
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


def duration_s(x: np.ndarray, *, top_db: float = 40.0, sr: int = SR) -> float:
    """Seconds from the first to the last sound within ``top_db`` of the loudest frame (pauses inside count)."""
    from workbench.audio import trim_silence

    if x.size == 0 or not np.any(x):
        return 0.0
    return trim_silence(x.astype(np.float32), top_db=top_db, pad_seconds=0.0, sample_rate=sr).size / sr


def _frames_power(x: np.ndarray, sr: int = SR) -> tuple[np.ndarray, np.ndarray]:
    """Power spectra of active frames (within 35 dB of the loudest): (frames, bins) and bin frequencies in Hz."""
    from scipy.signal import stft

    freqs, _, z = stft(x.astype(np.float64), fs=sr, nperseg=512, noverlap=384, boundary=None)
    power = np.abs(z).T ** 2  # (frames, bins)
    energy = power.sum(axis=1)
    active = energy > energy.max() * 10 ** (-35 / 10) if energy.size else energy.astype(bool)
    return power[active], freqs


def cepstral_peak_prominence(x: np.ndarray, sr: int = SR) -> float:
    """Mean cepstral peak prominence (CPP, dB) over active frames: how clearly periodic the voice is.

    Per 40 ms frame: the cepstrum of the dB spectrum, in dB; its peak in the
    60-400 Hz pitch range minus a straight line fitted to it over 1-20 ms
    quefrency. CPP is the usual acoustic correlate of breathiness: aspiration
    noise lowers it.
    """
    from scipy.signal import stft

    _, _, z = stft(x.astype(np.float64), fs=sr, nperseg=640, noverlap=480, nfft=1024, boundary=None)
    power = np.abs(z).T ** 2  # (frames, bins)
    energy = power.sum(axis=1)
    if not energy.size or energy.max() <= 0:
        return 0.0
    active = energy > energy.max() * 10 ** (-25 / 10)
    ceps = np.fft.irfft(10 * np.log10(power[active] + 1e-12), axis=1)
    ceps_db = 20 * np.log10(np.abs(ceps) + 1e-9)
    quef = np.arange(ceps.shape[1]) / sr
    pitch = (quef >= 1 / 400) & (quef <= 1 / 60)
    fit = (quef >= 0.001) & (quef <= 0.02)
    values = []
    for row in ceps_db:
        slope, icpt = np.polyfit(quef[fit], row[fit], 1)
        i = np.argmax(row[pitch])
        values.append(row[pitch][i] - (slope * quef[pitch][i] + icpt))
    return float(np.mean(values))


def spectral_tilt(x: np.ndarray, sr: int = SR) -> float:
    """Slope of the long-term average spectrum, in dB per octave, fitted over 100-5000 Hz (more negative = steeper)."""
    power, freqs = _frames_power(x, sr)
    sel = (freqs >= 100) & (freqs <= 5000)
    ltas = 10 * np.log10(power[:, sel].mean(axis=0) + 1e-20)
    slope, _ = np.polyfit(np.log2(freqs[sel]), ltas, 1)
    return float(slope)


def nasal_ratio_db(x: np.ndarray, sr: int = SR) -> float:
    """Energy of the nasal-resonance band (180-320 Hz) over the first-formant band (600-1200 Hz), in dB."""
    power, freqs = _frames_power(x, sr)
    lo = power[:, (freqs >= 180) & (freqs <= 320)].sum()
    hi = power[:, (freqs >= 600) & (freqs <= 1200)].sum()
    return float(10 * np.log10((lo + 1e-20) / (hi + 1e-20)))


def _log_envelope(x: np.ndarray, sr: int = SR) -> np.ndarray:
    """Frame level in dB (25 ms frames, 10 ms hop), floored 30 dB below the loudest frame: (frames,)."""
    hop, win = sr // 100, sr // 40
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


def modulation_ratio(
    x: np.ndarray, reference: np.ndarray | None = None, *, lo_hz: float = 4.0, hi_hz: float = 7.0, sr: int = SR
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

    env = _log_envelope(x, sr)
    if reference is not None:
        env, ref = _align(env, _log_envelope(reference, sr))
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


def pitch_variability(x: np.ndarray, sr: int = SR) -> float:
    """Standard deviation of the voice pitch in semitones (librosa pyin, 60-400 Hz, voiced frames only).

    Monopitch speech gives small values (< 1); lively speech 2-4.
    """
    import librosa

    f0, voiced, _ = librosa.pyin(x.astype(np.float32), fmin=60, fmax=400, sr=sr, frame_length=1024)
    f0 = f0[voiced & np.isfinite(f0)]
    if f0.size < 5:
        return 0.0
    semitones = 12 * np.log2(f0 / np.median(f0))
    lo, hi = np.percentile(semitones, [5, 95])  # pyin octave errors are outliers, not intonation
    return float(np.std(semitones[(semitones >= lo) & (semitones <= hi)]))


def active_level_dbfs(x: np.ndarray, sr: int = SR) -> float:
    """RMS level in dBFS of the frames within 30 dB of the loudest frame (speech, not pauses)."""
    win = sr // 50  # 20 ms frames
    if x.size < win:
        return -120.0
    frames = x[: x.size // win * win].astype(np.float64).reshape(-1, win)
    rms = np.sqrt(np.mean(frames**2, axis=1))
    active = rms[rms > rms.max() * 10 ** (-30 / 20)]
    return float(20 * np.log10(np.sqrt(np.mean(active**2)) + 1e-12))
