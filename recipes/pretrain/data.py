"""Stages 1-3 of the recipe: texts, voices, synthesis (cached), and the optional real asterisk prompts.

Waveforms are ``(samples,)`` float32 at :data:`~workbench.constants.SAMPLE_RATE`;
training items are ``(log-mel (frames, 80) float16, text)``, evaluation items
``(waveform, text)``.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from pathlib import Path

import numpy as np

from workbench.constants import FRAMES_PER_SECOND, SAMPLE_RATE, cache_dir
from workbench.errors import WorkbenchError

# Whole base voices never used for training: these espeak variants in every accent, and flite's slt.
# (festival's cmu_us_slt_arctic_hts is the same recorded speaker as flite slt but a different
# synthesiser; it stays in training, as in the calibration probe of REFERENCE.md section 6.)
HELDOUT_ESPEAK_VARIANTS = ("m8", "f4", "klatt3", "Annie", "david")
HELDOUT_OTHER_VOICES = ("flite:slt",)
DEV_SIZE = 64


# ----------------------------------------------------------------------------- texts
def split_prompts(prompts: list[str], heldout_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    from workbench.text import normalize_text

    uniq = sorted({normalize_text(p) for p in prompts if normalize_text(p)})
    rng = random.Random(seed)
    rng.shuffle(uniq)
    n = max(1, int(round(len(uniq) * heldout_fraction)))
    return sorted(uniq[n:]), sorted(uniq[:n])


def make_text(rng: random.Random, train_phrases: list[str], words: list[str]) -> str:
    r = rng.random()
    if r < 0.55:
        return rng.choice(train_phrases)
    if r < 0.85:
        return " ".join(rng.choice(words) for _ in range(rng.randint(2, 8)))
    a, b = rng.choice(train_phrases).split(), rng.choice(train_phrases).split()
    return " ".join(a[: max(1, len(a) // 2)] + b[len(b) // 2 :])


# ----------------------------------------------------------------------------- voices
def voice_key(voice) -> str:
    """The voice's spec string, e.g. ``"espeak:en-us+m3,rate=150,pitch=40"``."""
    return voice.spec()


def is_heldout(voice) -> bool:
    """True for voices whose base voice (espeak variant, flite/festival voice) is held out."""
    if voice.engine == "espeak":
        variant = voice.name.partition("+")[2]
        return variant in HELDOUT_ESPEAK_VARIANTS
    return f"{voice.engine}:{voice.name}" in HELDOUT_OTHER_VOICES


def voice_pools(n_train: int, n_heldout: int, seed: int):
    """(training voices, held-out voices), drawn with ``simulate.random_voice``.

    Held-out voices are drawn from the held-out base voices with the same
    rate/pitch/gap ranges as ``random_voice``; the flite voice comes first so it
    is always among them.
    """
    from workbench import simulate

    rng = np.random.default_rng(seed)
    train, seen = [], set()
    while len(train) < n_train:
        v = simulate.random_voice(rng)
        if not is_heldout(v) and v.spec() not in seen:
            seen.add(v.spec())
            train.append(v)
    engines = simulate.available_engines()
    bases = [f"flite:{n.split(':')[1]}" for n in HELDOUT_OTHER_VOICES if n.startswith("flite") and "flite" in engines]
    bases += [f"espeak:{a}+{v}" for v in HELDOUT_ESPEAK_VARIANTS for a in ("en-us", "en-gb", "en-gb-x-rp", "en-us-nyc")]
    held = []
    for i in range(n_heldout):
        engine, name = bases[i % len(bases)].split(":")
        if engine == "espeak":
            held.append(simulate.Voice(engine, name, rate_wpm=float(rng.integers(140, 201)),
                                       pitch=float(rng.integers(25, 76))))
        else:
            held.append(simulate.Voice(engine, name, rate_wpm=float(rng.integers(150, 201)),
                                       pitch=float(rng.integers(-15, 16))))
    return train, held


# ----------------------------------------------------------------------------- synthesis
def _pink(n: int, rng: np.random.Generator) -> np.ndarray:
    white = rng.standard_normal(n)
    spec = np.fft.rfft(white)
    f = np.arange(spec.shape[0])
    spec = spec / np.sqrt(np.maximum(f, 1))
    x = np.fft.irfft(spec, n)
    return (x / (np.std(x) + 1e-9)).astype(np.float32)


def perturb(wav: np.ndarray, rng: np.random.Generator, *, strength: float = 1.0) -> np.ndarray:
    from workbench.augment import speed_perturb

    if strength > 0:
        wav = speed_perturb(wav, float(rng.uniform(0.85, 1.15)), SAMPLE_RATE)
        if rng.random() < 0.1:  # telephone band
            import librosa

            wav = librosa.resample(librosa.resample(wav, orig_sr=SAMPLE_RATE, target_sr=8000), orig_sr=8000, target_sr=SAMPLE_RATE)
        if rng.random() < 0.6:
            snr = rng.uniform(5, 40)
            noise = rng.standard_normal(len(wav)).astype(np.float32) if rng.random() < 0.5 else _pink(len(wav), rng)
            p_sig = float(np.mean(wav**2)) + 1e-10
            wav = wav + noise * np.sqrt(p_sig / 10 ** (snr / 10))
        wav = wav * float(10 ** (rng.uniform(-20, 6) / 20))
    peak = float(np.abs(wav).max()) + 1e-9
    if peak > 0.99:
        wav = wav * (0.99 / peak)
    return wav.astype(np.float32)


_FRONTEND = None


def features(wav: np.ndarray) -> np.ndarray:
    global _FRONTEND
    import torch

    from workbench.features import LogMel, pad_waveforms

    if _FRONTEND is None:
        _FRONTEND = LogMel()
    w, l = pad_waveforms([wav])
    with torch.no_grad():
        f, _ = _FRONTEND(w, l)
    return f[0].numpy().astype(np.float16)


def _synth_job(args):
    idx, seed, text, voice, strength, keep_wav, variants = args
    import torch

    torch.set_num_threads(1)
    from workbench import simulate

    rng = np.random.default_rng(seed)
    try:
        wav = simulate.synthesize(text, voice, seed=int(seed % 2**31))
    except (WorkbenchError, OSError) as exc:  # one bad voice (engine error, missing variant) must not kill the corpus
        return idx, None, text, f"{type(exc).__name__}: {exc}"
    wav = np.asarray(wav, dtype=np.float32)
    if wav.size < SAMPLE_RATE // 10 or wav.size > 12 * SAMPLE_RATE:
        return idx, None, text, f"bad length {wav.size}"
    if keep_wav:
        return idx, [perturb(wav, rng, strength=strength)], text, None
    # TTS is the slow part (~0.1 s a phrase): make several perturbed copies of each synthesis
    return idx, [features(perturb(wav, rng, strength=strength)) for _ in range(variants)], text, None


def synthesize_set(jobs, workers: int, desc: str):
    from multiprocessing import get_context

    from tqdm import tqdm

    out = [None] * len(jobs)
    errors = 0
    with get_context("fork").Pool(workers) as pool:
        for idx, x, text, err in tqdm(pool.imap_unordered(_synth_job, jobs, chunksize=16), total=len(jobs), desc=desc,
                                      mininterval=30):
            if err is None:
                out[idx] = [(v, text) for v in x]
            else:
                errors += 1
                if errors <= 5:
                    print(f"  synthesis failed ({err}) for {text!r}", flush=True)
    kept = [item for o in out if o is not None for item in o]
    print(f"{desc}: {len(kept)} utterances ({errors} failed)", flush=True)
    return kept


def add_corpus_arguments(parser, *, n_train: int) -> None:
    """The flags :func:`build_data` reads (``--cache``, ``--n-train`` ... ``--seed``), for recipes that
    train on this corpus; the same values find the same cached corpus."""
    cache = cache_dir() / "pretrain"
    parser.add_argument("--cache", type=Path, default=cache, help="where the synthesised corpus is cached")
    parser.add_argument("--n-train", type=int, default=n_train, help="training phrases to synthesize")
    parser.add_argument("--variants", type=int, default=2, help="perturbed copies of each synthesized phrase")
    parser.add_argument("--n-eval", type=int, default=150, help="utterances per evaluation set")
    parser.add_argument("--train-voices", type=int, default=800)
    parser.add_argument("--heldout-voices", type=int, default=24)
    parser.add_argument("--heldout-texts", type=float, default=0.15, help="fraction of prompts held out")
    parser.add_argument("--workers", type=int, default=2, help="synthesis processes")
    parser.add_argument("--seed", type=int, default=0)


def build_data(args, cache: Path):
    """Synthesize (or load from cache) train / dev / eval sets. Returns a dict of lists."""
    import torch

    from workbench.prompts import load_prompts

    prompts = load_prompts("everyday")
    train_phrases, held_phrases = split_prompts(prompts, args.heldout_texts, args.seed)
    words = sorted({w for p in train_phrases for w in p.split()})
    train_voices, held_voices = voice_pools(args.train_voices, args.heldout_voices, args.seed)
    print(f"texts: {len(train_phrases)} training phrases, {len(held_phrases)} held out, {len(words)} training words")
    print(f"voices: {len(train_voices)} training, {len(held_voices)} held out")
    for v in held_voices[:8]:
        print("  held-out voice:", voice_key(v)[:160])

    key = hashlib.sha256(
        json.dumps([args.seed, args.n_train, args.variants, args.heldout_texts, args.train_voices, args.heldout_voices,
                    len(prompts), HELDOUT_ESPEAK_VARIANTS, HELDOUT_OTHER_VOICES, "v2"]).encode()
    ).hexdigest()[:12]
    path = cache / f"data-{key}.pt"
    meta = {"train_phrases": train_phrases, "heldout_phrases": held_phrases, "train_words": words,
            "n_train_voices": len(train_voices), "n_heldout_voices": len(held_voices),
            "heldout_voice_rule": [*(f"espeak:*+{v}" for v in HELDOUT_ESPEAK_VARIANTS), *HELDOUT_OTHER_VOICES],
            "heldout_voices": [v.spec() for v in held_voices]}
    if path.exists():
        print(f"loading cached corpus {path}")
        data = torch.load(path, weights_only=False)
        data["meta"] = meta
        return data

    rng = random.Random(args.seed)
    seeds = np.random.SeedSequence(args.seed).generate_state(args.n_train + 3000, dtype=np.uint64)
    jobs = []
    for i in range(args.n_train):
        jobs.append((i, int(seeds[i]), make_text(rng, train_phrases, words), rng.choice(train_voices), 1.0, False, args.variants))
    t0 = time.time()
    train = synthesize_set(jobs, args.workers, "train")
    # evaluation sets: clean audio (light perturbation), waveforms kept for transcribe()
    n_eval = args.n_eval
    ev_a = [(i, int(seeds[args.n_train + i]), held_phrases[i % len(held_phrases)], rng.choice(train_voices), 0.0, True, 1)
            for i in range(n_eval)]
    ev_b = [(i, int(seeds[args.n_train + 1000 + i]), held_phrases[(i * 7) % len(held_phrases)], held_voices[i % len(held_voices)],
             0.0, True, 1) for i in range(n_eval)]
    dev = [(i, int(seeds[args.n_train + 2000 + i]), held_phrases[(i * 3 + 1) % len(held_phrases)],
            held_voices[(i + 1) % len(held_voices)], 0.0, True, 1) for i in range(DEV_SIZE)]
    data = {
        "train": train,
        "eval_train_voices": synthesize_set(ev_a, args.workers, "eval: training voices, held-out texts"),
        "eval_heldout_voices": synthesize_set(ev_b, args.workers, "eval: held-out voices, held-out texts"),
        "dev": synthesize_set(dev, args.workers, "dev"),
        "synth_s": time.time() - t0,
        "train_hours": sum(x.shape[0] for x, _ in train) / FRAMES_PER_SECOND / 3600,
    }
    cache.mkdir(parents=True, exist_ok=True)
    torch.save(data, path)
    data["meta"] = meta
    print(f"synthesized in {data['synth_s']:.0f} s: {data['train_hours']:.1f} h of training audio -> {path}")
    return data


# ----------------------------------------------------------------------------- real speech (optional)
def load_asterisk() -> list[tuple[np.ndarray, str]]:
    """Real speech (``workbench.real_speech.load_asterisk``): (16 kHz waveform, normalised transcript)."""
    from workbench.real_speech import load_asterisk as _load
    from workbench.text import normalize_text

    return [(u.wav, normalize_text(u.text)) for u in _load()]


def add_asterisk(data: dict, repeat: int) -> None:
    """Mix the asterisk prompts into the training set ``repeat`` times (features cached per call)."""
    items = load_asterisk()
    feats = [(features(w), t) for w, t in items]
    data["train"] = data["train"] + feats * repeat
    data["asterisk"] = {"utterances": len(items), "hours": sum(len(w) for w, _ in items) / SAMPLE_RATE / 3600, "repeat": repeat}
    print(f"asterisk: {len(items)} real prompts ({data['asterisk']['hours']:.2f} h) x{repeat} added", flush=True)
