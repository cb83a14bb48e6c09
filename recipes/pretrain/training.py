"""Stage 4 of the recipe: length-bucketed batches, mel-axis warp, and the time-budgeted training loop.

Features are ``(B, T, F)`` log-mel with lengths in frames; the loop checkpoints
every ``--ckpt-minutes`` and keeps the best model by greedy CER on the dev set.
"""

from __future__ import annotations

import math
import os
import random
import time
from pathlib import Path

import numpy as np


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
