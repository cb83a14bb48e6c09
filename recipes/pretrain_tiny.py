#!/usr/bin/env python
"""Reproducible recipe for the built-in base model "workbench-tiny".

Stages (each cached, so the script can be stopped and run again):

1. **texts**: the everyday prompt list is split (seeded) into training phrases
   and HELD-OUT phrases never synthesised for training. Training texts mix the
   training phrases (55 %), random strings of training-phrase words (30 %) and
   splices of two training phrases (15 %), so the model learns spelling rather
   than whole phrases.
2. **voices**: a pool of typical voices from ``workbench.simulate.random_voice``;
   whole voices are HELD OUT (``HELDOUT_ESPEAK_VARIANTS`` in every accent, and a
   flite voice never appear in training).
3. **synthesis** (multiprocessing, cached under ``--cache``): each utterance is a
   random training voice reading a random training text, then speed perturbation
   (resampling, x0.85-1.15), random gain, additive white/pink noise at a random
   SNR (5-40 dB, p=0.6) and band-limiting to 8 kHz telephone-like audio (p=0.1).
   Log-mel features are stored in fp16.
4. **training**: adaptive SpecAugment (``workbench.augment``, policy
   ``librispeech_adaptive``) plus a per-utterance mel-axis warp (VTLP-like,
   alpha in [0.9, 1.1]), AdamW, linear warm-up then cosine decay over the time
   budget (``--minutes``), bf16 autocast on CPU, gradient clipping, a resumable
   checkpoint every ``--ckpt-minutes`` and the best model kept by dev CER
   (dev = held-out voices on held-out texts, a small subset).
5. **evaluation + model card**: WER/CER with greedy and lexicon-beam decoding on
   (a) held-out texts read by training voices, (b) held-out voices reading
   held-out texts, (c) each ``sample_data`` speaker if present; RTF and load time.

Example::

    python recipes/pretrain_tiny.py --minutes 90 --out workbench/data/models/tiny
    python recipes/pretrain_tiny.py --eval-only --out workbench/data/models/tiny
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SR = 16_000
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
        wav = speed_perturb(wav, float(rng.uniform(0.85, 1.15)), SR)
        if rng.random() < 0.1:  # telephone band
            import librosa

            wav = librosa.resample(librosa.resample(wav, orig_sr=SR, target_sr=8000), orig_sr=8000, target_sr=SR)
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
    except Exception as exc:  # one bad voice must not kill the whole corpus
        return idx, None, text, f"{type(exc).__name__}: {exc}"
    wav = np.asarray(wav, dtype=np.float32)
    if wav.size < SR // 10 or wav.size > 12 * SR:
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
        "synth_seconds": time.time() - t0,
        "train_hours": sum(x.shape[0] for x, _ in train) / 100 / 3600,
    }
    cache.mkdir(parents=True, exist_ok=True)
    torch.save(data, path)
    data["meta"] = meta
    print(f"synthesized in {data['synth_seconds']:.0f} s: {data['train_hours']:.1f} h of training audio -> {path}")
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
    data["asterisk"] = {"utterances": len(items), "hours": sum(len(w) for w, _ in items) / SR / 3600, "repeat": repeat}
    print(f"asterisk: {len(items)} real prompts ({data['asterisk']['hours']:.2f} h) x{repeat} added", flush=True)


# ----------------------------------------------------------------------------- training
def mel_warp(feats, lengths, gen, max_warp: float = 0.1):
    """Per-utterance VTLP-like warp of the mel axis by alpha ~ U[1-max_warp, 1+max_warp]. (B, T, F)."""
    import torch

    b, _, f = feats.shape
    alpha = 1 + (torch.rand(b, generator=gen) * 2 - 1) * max_warp
    pos = (torch.arange(f, dtype=torch.float32)[None, :] / alpha[:, None]).clamp(0, f - 1)  # (B, F)
    lo = pos.floor().long()
    hi = (lo + 1).clamp(max=f - 1)
    w = (pos - lo).unsqueeze(1)
    idx_lo = lo.unsqueeze(1).expand(-1, feats.shape[1], -1)
    idx_hi = hi.unsqueeze(1).expand(-1, feats.shape[1], -1)
    return feats.gather(2, idx_lo) * (1 - w) + feats.gather(2, idx_hi) * w


def make_batches(lengths: list[int], max_frames: int, max_batch: int, rng: random.Random) -> list[list[int]]:
    order = sorted(range(len(lengths)), key=lambda i: lengths[i] * rng.uniform(0.9, 1.1))
    batches, cur, cur_max = [], [], 0
    for i in order:
        m = max(cur_max, lengths[i])
        if cur and (m * (len(cur) + 1) > max_frames or len(cur) >= max_batch):
            batches.append(cur)
            cur, m = [], lengths[i]
        cur.append(i)
        cur_max = m
    if cur:
        batches.append(cur)
    rng.shuffle(batches)
    return batches


def collate(items):
    import torch

    lens = torch.tensor([x.shape[0] for x, _ in items])
    feats = torch.zeros(len(items), int(lens.max()), items[0][0].shape[1])
    for i, (x, _) in enumerate(items):
        feats[i, : x.shape[0]] = torch.from_numpy(x.astype(np.float32))
    return feats, lens, [t for _, t in items]


def evaluate_cer(model, items, batch_size: int = 32) -> dict:
    """Greedy CER/WER of a TinyConformerCTC on items of (wav, text)."""
    import jiwer
    import torch

    from workbench.decode import greedy_decode
    from workbench.features import pad_waveforms

    model.eval()
    hyps, refs = [], []
    with torch.no_grad():
        for s in range(0, len(items), batch_size):
            chunk = items[s : s + batch_size]
            w, l = pad_waveforms([x for x, _ in chunk])
            lp, lens = model(w, l)
            for j in range(len(chunk)):
                hyps.append(greedy_decode(lp[j, : lens[j]].numpy()))
                refs.append(chunk[j][1])
    model.train()
    return {"cer": jiwer.cer(refs, hyps), "wer": jiwer.wer(refs, hyps), "example": (refs[0], hyps[0])}


def train(args, data, cache: Path):
    import torch

    from workbench.augment import POLICIES, spec_augment
    from workbench.models.tiny import TinyConfig, TinyConformerCTC, ctc_loss

    torch.manual_seed(args.seed)
    cfg = TinyConfig(d_model=args.d_model, num_layers=args.layers, conv_kernel=args.kernel, num_heads=args.heads)
    model = TinyConformerCTC(cfg)
    nparams = sum(p.numel() for p in model.parameters())
    print(f"model: {nparams / 1e6:.2f} M parameters, {cfg}", flush=True)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=args.lr, betas=(0.9, 0.98))
    policy = POLICIES[args.policy]
    gen = torch.Generator().manual_seed(args.seed)
    train_items = data["train"]
    lengths = [x.shape[0] for x, _ in train_items]
    ckpt_path = cache / f"ckpt-{args.run_name}.pt"
    best_path = cache / f"best-{args.run_name}.pt"
    state = {"step": 0, "elapsed": 0.0, "epoch": 0, "best_cer": float("inf"), "log": []}
    if args.resume and ckpt_path.exists():
        ck = torch.load(ckpt_path, weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        state = ck["state"]
        gen.set_state(ck["gen"])
        print(f"resumed from {ckpt_path} at step {state['step']}, {state['elapsed'] / 60:.1f} min", flush=True)
    budget = args.minutes * 60.0
    rng = random.Random(args.seed + state["epoch"])
    model.train()
    t_start = time.time() - state["elapsed"]
    last_ckpt = time.time()
    run_loss, run_n = 0.0, 0
    done = False
    while not done:
        batches = make_batches(lengths, args.max_frames, args.max_batch, rng)
        skip = state.get("batch_in_epoch", 0)
        for bi, idx in enumerate(batches):
            if bi < skip:
                continue
            elapsed = time.time() - t_start
            if elapsed >= budget:
                done = True
                break
            step = state["step"]
            warm = min(1.0, (step + 1) / args.warmup)
            frac = min(1.0, elapsed / budget)
            lr = args.lr * warm * (args.final_lr_ratio + (1 - args.final_lr_ratio) * 0.5 * (1 + math.cos(math.pi * frac)))
            for g in opt.param_groups:
                g["lr"] = lr
            feats, flens, texts = collate([train_items[i] for i in idx])
            feats = mel_warp(feats, flens, gen)
            feats = spec_augment(feats, flens, policy, generator=gen)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
                enc, elens = model.encode_features(feats, flens)
                logits = model.head(enc)
            lp = torch.log_softmax(logits.float(), dim=-1)
            loss = ctc_loss(lp, elens, texts)
            if not torch.isfinite(loss):
                print(f"step {step}: non-finite loss, batch skipped", flush=True)
                opt.zero_grad(set_to_none=True)
                continue
            opt.zero_grad(set_to_none=True)
            loss.backward()
            gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
            opt.step()
            state["step"] += 1
            state["batch_in_epoch"] = bi + 1
            run_loss += loss.item()
            run_n += 1
            if state["step"] % 50 == 0:
                print(f"step {state['step']} ep {state['epoch']} {elapsed / 60:.1f} min lr {lr:.2e} "
                      f"loss {run_loss / run_n:.3f} gnorm {float(gnorm):.2f} bsz {len(idx)}", flush=True)
                state["log"].append((state["step"], elapsed, run_loss / run_n))
                run_loss, run_n = 0.0, 0
            if time.time() - last_ckpt > args.ckpt_minutes * 60:
                state["elapsed"] = time.time() - t_start
                _checkpoint(model, opt, state, gen, data, ckpt_path, best_path)
                last_ckpt = time.time()
        else:
            state["epoch"] += 1
            state["batch_in_epoch"] = 0
            rng = random.Random(args.seed + state["epoch"])
    state["elapsed"] = time.time() - t_start
    _checkpoint(model, opt, state, gen, data, ckpt_path, best_path)
    best = torch.load(best_path, weights_only=False)
    model.load_state_dict(best["model"])
    print(f"training done: {state['step']} steps, {state['elapsed'] / 60:.1f} min; best dev CER {best['dev']['cer']:.3f} "
          f"at step {best['step']}", flush=True)
    return model, {**state, "best_step": best["step"], "best_dev": best["dev"], "params": nparams}


def _checkpoint(model, opt, state, gen, data, ckpt_path, best_path):
    import torch

    dev = evaluate_cer(model, data["dev"])
    print(f"  dev (held-out voices+texts, {len(data['dev'])} utts): CER {dev['cer']:.3f} WER {dev['wer']:.3f}  "
          f"e.g. {dev['example'][0]!r} -> {dev['example'][1]!r}", flush=True)
    tmp = ckpt_path.with_suffix(".tmp")
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "state": state, "gen": gen.get_state()}, tmp)
    os.replace(tmp, ckpt_path)
    if dev["cer"] <= state["best_cer"]:
        state["best_cer"] = dev["cer"]
        torch.save({"model": model.state_dict(), "step": state["step"], "dev": dev}, best_path)


# ----------------------------------------------------------------------------- evaluation
def evaluate_backend(backend, items, decoders: dict, batch_size: int = 16) -> dict:
    import jiwer
    import torch

    refs = [t for _, t in items]
    wavs = [w for w, _ in items]
    out = {}
    # log-probs once, decoders many times
    pieces = []
    with torch.no_grad():
        t0 = time.time()
        for s in range(0, len(wavs), batch_size):
            lp, lens = backend.log_probs(backend.featurize(wavs[s : s + batch_size]))
            pieces += [lp[j, : lens[j]].numpy() for j in range(lp.shape[0])]
        t_enc = time.time() - t0
    audio_s = sum(len(w) for w in wavs) / SR
    for name, dec in decoders.items():
        t0 = time.time()
        hyps = [dec(p) for p in pieces]
        t_dec = time.time() - t0
        out[name] = {"wer": jiwer.wer(refs, hyps), "cer": jiwer.cer(refs, hyps),
                     "rtf": (t_enc + t_dec) / audio_s, "examples": list(zip(refs[:3], hyps[:3]))}
    out["n"] = len(items)
    out["audio_s"] = audio_s
    out["rtf_encoder"] = t_enc / audio_s
    return out


def sample_data_sets(root: Path) -> dict:
    try:
        from workbench.audio import load_audio  # noqa: F401
        from workbench.corpus import SpeakerCorpus
    except ImportError:
        return {}
    sets = {}
    if not root.is_dir():
        return sets
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        try:
            c = SpeakerCorpus.open(d)
            utts = list(c.utterances())
            sets[d.name] = [(np.asarray(c.load_audio(u), dtype=np.float32), u.transcript) for u in utts]
        except Exception as exc:  # noqa: BLE001 - report and go on
            print(f"  skipping sample_data/{d.name}: {exc}")
    return sets


def make_decoders(meta: dict, prompts_all: list[str], params: dict | None = None):
    from workbench.decode import BeamSearchDecoder, Lexicon, WordLM, greedy_decode

    lm = WordLM.from_sentences(meta["train_phrases"])
    lex_all = Lexicon.from_sentences(prompts_all)  # the product's domain lexicon: every everyday word
    return {
        "greedy": greedy_decode,
        "lexicon_beam": BeamSearchDecoder(lex_all, lm, **{"beam": 12, **(params or {})}),
    }


def tune_decoder(backend, dev_items, meta: dict, prompts_all: list[str]) -> dict:
    """Grid-search lm_weight / word_bonus of the lexicon beam on the DEV set (not the eval sets)."""
    import jiwer
    import torch

    from workbench.decode import BeamSearchDecoder, Lexicon, WordLM

    with torch.no_grad():
        lp, lens = backend.log_probs(backend.featurize([w for w, _ in dev_items]))
    pieces = [lp[j, : lens[j]].numpy() for j in range(lp.shape[0])]
    refs = [t for _, t in dev_items]
    lm = WordLM.from_sentences(meta["train_phrases"])
    lex = Lexicon.from_sentences(prompts_all)
    best = None
    for lm_weight in (0.3, 0.5, 0.8, 1.2):
        for word_bonus in (0.0, 1.0, 2.0, 3.0):
            dec = BeamSearchDecoder(lex, lm, beam=12, lm_weight=lm_weight, word_bonus=word_bonus)
            wer = jiwer.wer(refs, [dec(p) for p in pieces])
            if best is None or wer < best[0] - 1e-9:
                best = (wer, {"lm_weight": lm_weight, "word_bonus": word_bonus})
    print(f"decoder tuned on dev: {best[1]} (dev WER {best[0]:.3f})", flush=True)
    return {**best[1], "dev_wer": best[0]}


def run_eval(args, data, out_dir: Path, train_info: dict | None):
    import torch

    from workbench.models.tiny import load_tiny
    from workbench.prompts import load_prompts

    torch.set_num_threads(args.threads)
    t0 = time.time()
    backend = load_tiny(out_dir)
    load_s = time.time() - t0
    tuned = tune_decoder(backend, data["dev"], data["meta"], load_prompts("everyday"))
    decoders = make_decoders(data["meta"], load_prompts("everyday"),
                             {k: v for k, v in tuned.items() if k in ("lm_weight", "word_bonus")})
    cfg_path = out_dir / "config.json"
    cfg_json = json.loads(cfg_path.read_text())
    cfg_json["decoder"] = {"beam": 12, **tuned}  # defaults for lexicon-beam decoding with this model
    cfg_path.write_text(json.dumps(cfg_json, indent=2) + "\n")
    results = {
        "heldout_texts_training_voices": evaluate_backend(backend, data["eval_train_voices"], decoders),
        "heldout_voices_heldout_texts": evaluate_backend(backend, data["eval_heldout_voices"], decoders),
    }
    for name, items in sample_data_sets(REPO / "sample_data").items():
        results[f"sample_data/{name}"] = evaluate_backend(backend, items, decoders)
    # batched RTF over the held-out-voice set (transcribe path, greedy)
    wavs = [w for w, _ in data["eval_heldout_voices"]]
    t0 = time.time()
    backend.transcribe(wavs, batch_size=32)
    rtf = (time.time() - t0) / (sum(len(w) for w in wavs) / SR)
    for k, v in results.items():
        print(f"{k:45s} n={v['n']:4d}  greedy WER {v['greedy']['wer']:.3f} CER {v['greedy']['cer']:.3f}  "
              f"lexicon-beam WER {v['lexicon_beam']['wer']:.3f} CER {v['lexicon_beam']['cer']:.3f}", flush=True)
    print(f"load {load_s:.2f} s, batched RTF (greedy, batch 32) {rtf:.4f}")
    metrics = {"results": results, "load_seconds": load_s, "decoder": tuned, "rtf_batched_greedy": rtf,
               "threads": torch.get_num_threads(), "fingerprint": backend.fingerprint()}
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str) + "\n")
    write_card(out_dir, backend, data, metrics, train_info, args)
    return metrics


def _set_note(key: str) -> str:
    """Profile and voice of a sample_data speaker, and whether its base voice was held out."""
    if key == "heldout_texts_training_voices":
        return "training voices, unseen phrases"
    if key == "heldout_voices_heldout_texts":
        return "unseen voices, unseen phrases"
    try:
        from workbench import simulate

        info = json.loads((REPO / key / "speaker.json").read_text())["profile"]
        voice = simulate.Voice.parse(info["voice"])
        held = "held-out voice" if is_heldout(voice) else "training base voice"
        return f"{info.get('profile_spec', '?')}, {voice.spec()} ({held})"
    except Exception:  # noqa: BLE001 - a note only
        return ""


def write_card(out_dir: Path, backend, data, metrics, train_info, args):
    meta = data["meta"]
    res = metrics["results"]
    rows = "\n".join(
        f"| {k} | {_set_note(k)} | {v['n']} | {v['greedy']['wer']:.3f} | {v['greedy']['cer']:.3f} | "
        f"{v['lexicon_beam']['wer']:.3f} | {v['lexicon_beam']['cer']:.3f} |" for k, v in res.items())
    ti = train_info or json.loads((out_dir / "config.json").read_text()).get("training", {})
    cfg = dataclasses.asdict(backend.config)
    card = f"""# workbench-tiny

Built-in base ASR model of the workbench: a compact Conformer-CTC over 80-dim log-mel
(4x conv subsampling, rotary self-attention, {cfg['num_layers']} blocks of width {cfg['d_model']},
{cfg['num_heads']} heads, conv kernel {cfg['conv_kernel']}), character CTC (blank, space, a-z, ').
{backend.num_parameters() / 1e6:.2f} M parameters, safetensors.

**Purpose.** A frozen, offline base model to personalise with small adapters for people with
atypical speech. It is trained on SYNTHETIC typical speech only (espeak-ng / flite / festival
voices) and is NOT a general-purpose recogniser: expect poor accuracy on real microphones
and out-of-domain text. WER here is ASR accuracy, not a clinical intelligibility score.

## Training data
- Text: the everyday prompt list (`workbench/data/prompts/everyday.txt`), split with seed {args.seed}:
  {len(meta['train_phrases'])} training phrases, {len(meta['heldout_phrases'])} held-out phrases never synthesised for
  training. Training texts: training phrases (55 %), random strings of the {len(meta['train_words'])} training words (30 %),
  splices of two training phrases (15 %).
- Voices: {meta['n_train_voices']} typical voices from `workbench.simulate.random_voice`; voices matching
  {meta['heldout_voice_rule']} are held out entirely ({meta['n_heldout_voices']} held-out voices).
- {len(data['train'])} utterances, {data['train_hours']:.1f} h; speed perturbation x0.85-1.15, gain, white/pink noise at
  5-40 dB SNR (p=0.6), 8 kHz band-limiting (p=0.1); SpecAugment `{args.policy}` + mel-axis warp (VTLP-like) on the fly.
- No real speech was used (see recipes/README.md on the asterisk prompts option).

## Training
`python recipes/pretrain_tiny.py --minutes {args.minutes:g}` on a 2-core CPU (bf16 autocast), AdamW
(lr {args.lr:g}, warm-up {args.warmup} steps, cosine over the time budget), grad clip {args.clip}.
Steps: {ti.get('step', '?')}, wall time {ti.get('elapsed', 0) / 60:.1f} min, best checkpoint at step {ti.get('best_step', '?')}
(by greedy CER on a {DEV_SIZE}-utterance dev set of held-out voices).

## Evaluation (seed {args.seed})
Decoders: `greedy` = best path; `lexicon_beam` = CTC prefix beam search (beam 12) restricted to the
everyday-phrase vocabulary with a word bigram LM built from the TRAINING phrases only (held-out phrases
are not in the LM); LM weight and word bonus tuned on the dev set ({metrics.get('decoder', {})}).

| set | what | utts | greedy WER | greedy CER | lexicon-beam WER | lexicon-beam CER |
|---|---|---|---|---|---|---|
{rows}

Load time {metrics['load_seconds']:.2f} s; batched real-time factor (greedy, batch 32, {metrics['threads']} threads)
{metrics['rtf_batched_greedy']:.4f}. Fingerprint `{metrics['fingerprint'][:16]}`.

## Limitations
Synthetic voices only; unseen TTS voices are much harder than seen ones; vocabulary outside the
everyday list is spelled character by character (use `unknown="penalize"` or boost words).
"""
    (out_dir / "model_card.md").write_text(card)


# ----------------------------------------------------------------------------- main
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=REPO / "workbench" / "data" / "models" / "tiny")
    p.add_argument("--cache", type=Path, default=Path(os.environ.get("WORKBENCH_CACHE", Path.home() / ".cache" / "workbench")) / "pretrain")
    p.add_argument("--minutes", type=float, default=90.0, help="training time budget (wall clock)")
    p.add_argument("--n-train", type=int, default=12000, help="training phrases to synthesize")
    p.add_argument("--variants", type=int, default=2, help="perturbed copies of each synthesized training phrase")
    p.add_argument("--n-eval", type=int, default=150, help="utterances per evaluation set")
    p.add_argument("--train-voices", type=int, default=800)
    p.add_argument("--heldout-voices", type=int, default=24)
    p.add_argument("--heldout-texts", type=float, default=0.15, help="fraction of prompts held out")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--d-model", type=int, default=144)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--kernel", type=int, default=15)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--final-lr-ratio", type=float, default=0.02)
    p.add_argument("--warmup", type=int, default=500)
    p.add_argument("--weight-decay", type=float, default=1e-3)
    p.add_argument("--clip", type=float, default=5.0)
    p.add_argument("--max-frames", type=int, default=12000, help="padded frames per batch")
    p.add_argument("--max-batch", type=int, default=64)
    p.add_argument("--policy", default="librispeech_adaptive")
    p.add_argument("--no-bf16", dest="bf16", action="store_false")
    p.add_argument("--ckpt-minutes", type=float, default=5.0)
    p.add_argument("--run-name", default="tiny")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--asterisk", action="store_true",
                   help="mix in Debian's asterisk-core-sounds-en(-wav) real prompts (8 kHz, one speaker, CC-BY-SA-3.0)")
    p.add_argument("--asterisk-repeat", type=int, default=4, help="times each asterisk prompt appears per epoch")
    p.add_argument("--synth-only", action="store_true")
    p.add_argument("--eval-only", action="store_true")
    p.add_argument("--export-best", action="store_true", help="export the best checkpoint of --run-name, then evaluate")
    p.add_argument("--fp16", action="store_true", help="store weights in fp16 (half the size; default fp32)")
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    data = build_data(args, args.cache)
    if args.asterisk:
        add_asterisk(data, args.asterisk_repeat)
    if args.synth_only:
        return
    train_info = None
    if args.export_best or not args.eval_only:
        from workbench.models.tiny import TinyConfig, TinyConformerCTC, save_tiny

        if args.export_best:  # re-export the best checkpoint of an earlier (possibly interrupted) run
            ck = torch.load(args.cache / f"ckpt-{args.run_name}.pt", weights_only=False)
            best = torch.load(args.cache / f"best-{args.run_name}.pt", weights_only=False)
            model = TinyConformerCTC(TinyConfig(d_model=args.d_model, num_layers=args.layers,
                                                conv_kernel=args.kernel, num_heads=args.heads))
            model.load_state_dict(best["model"])
            nparams = sum(p.numel() for p in model.parameters())
            train_info = {**ck["state"], "best_step": best["step"], "best_dev": best["dev"], "params": nparams}
        else:
            model, train_info = train(args, data, args.cache)
        info = {k: v for k, v in train_info.items() if k != "log"}
        meta = data["meta"]
        evalinfo = {k: meta[k] for k in ("heldout_phrases", "train_phrases", "heldout_voices", "heldout_voice_rule")}
        save_tiny(model, args.out, fp16=args.fp16, extra={
            "training": {**info, "args": {k: str(v) for k, v in vars(args).items()}},
            "eval": evalinfo,  # lets tests re-create held-out utterances without the cache
        })
        (args.cache / f"trainlog-{args.run_name}.json").write_text(json.dumps(train_info["log"]))
    run_eval(args, data, args.out, train_info)


if __name__ == "__main__":
    main()
