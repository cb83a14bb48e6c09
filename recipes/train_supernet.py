#!/usr/bin/env python
"""TODM, "Train Once Deploy Many" (issue 18): the built-in model as a supernet whose sizes each fit a device.

``--mode supernet`` trains one set of shared weights with the sandwich rule: at every step the
largest, the smallest and ``--n-random`` random subnetworks (depth 4/6/8, FFN 288/432/576,
heads 2/3/4, conv channels 72/108/144; ``workbench.models.supernet.model``) run on the same batch;
the largest learns from the transcripts (CTC), the others from its detached frame posteriors
(in-place alpha-divergence distillation, AlphaNet), with adaptive dropout and ScaledAdam.
``--mode single --size NAME`` trains that size alone (its slice of the starting weights,
fine-tuned with CTC) with the same time budget: the individually trained twin.

Ablations, one switch each (``--ablation``, or the flags it stands for): ``no_adaptive_dropout``
(``--no-adaptive-dropout``), ``kl`` (``--distill kl``: KL instead of the alpha-divergence), ``adamw``
(``--optimizer adam``: AdamW instead of ScaledAdam) and ``no_distill`` (``--distill none``: every
size learns from the transcripts alone). Data: the pretraining recipe's synthetic corpus
(``recipes/pretrain``, the same cache, held-out voices and held-out phrases never trained on).

Budgets: ``--minutes`` (wall clock) and/or ``--steps`` (optimizer steps; the learning-rate schedule
then runs over steps, so a run is the same on any machine); training stops at the first one reached.
Checkpoints are step-based: the resumable one every ``--ckpt-every`` steps (weights, optimizer,
random generators, the place in the epoch; cheap), the dev evaluation (and the best checkpoint)
every ``--eval-every`` steps. ``--resume`` continues exactly where a run stopped (Ctrl-C and
SIGTERM save first). ``--quick``: a tiny corpus and a few steps, to check that a switch runs.

    # the supernet (warm start from the shipped model), then its three twins, same budget each
    python recipes/train_supernet.py --mode supernet --minutes 18 --n-train 1500 --threads 2 --resume
    python recipes/train_supernet.py --mode single --size small --minutes 12 --n-train 1500 --resume
    python recipes/train_supernet.py --ablation kl --minutes 18 --n-train 1500 --resume
    python recipes/train_supernet.py --compare RUN_DIR ...  # the comparison table
    python recipes/todm/comparison.py --minutes 12          # all eight runs, resumable (recipes/todm/README.md)

A run writes ``<out>/<run-name>/<size>/`` (fp16 model folders with metrics and a model card)
and ``<out>/<run-name>/model_card.md``; checkpoints go to ``<out>/<run-name>/ckpt.pt``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import os
import random
import signal
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pretrain.data import add_corpus_arguments, build_data
from pretrain.training import collate, make_batches, mel_warp
from todm.export import compare, evaluate_size, export_sizes, write_run_card

from workbench.augment import POLICIES, spec_augment
from workbench.constants import cache_dir
from workbench.decode import greedy_decode
from workbench.models.supernet.sandwich import SandwichConfig, sandwich_step
from workbench.models.supernet.model import DEFAULT_SPACE, SearchSpace, Supernet
from workbench.models.tiny import TinyConfig, TinyConformerCTC
from workbench.optim import ScaledAdam

#: --ablation NAME -> the switch it turns (each ablation turns off one technique of the supernet run)
ABLATIONS = {"none": {}, "no_adaptive_dropout": {"adaptive_dropout": False}, "kl": {"distill": "kl"},
             "adamw": {"optimizer": "adam"}, "no_distill": {"distill": "none"}}
#: --quick: a corpus and budget small enough to check in a minute or two that a run works end to end
QUICK = {"n_train": 24, "variants": 1, "n_eval": 6, "train_voices": 12, "heldout_voices": 4, "steps": 3,
         "ckpt_every": 1, "eval_every": 2, "dev_items": 6, "log_every": 1, "beam": False, "sample_data": False,
         "max_frames": 3000, "warmup": 2}

DEFAULT_LR = {("scaled_adam", "shipped"): 0.015, ("scaled_adam", "scratch"): 0.04,
              ("adam", "shipped"): 1e-3, ("adam", "scratch"): 2e-3}


def default_out() -> Path:
    return cache_dir() / "supernet"


def run_name(args) -> str:
    """``supernet`` / ``single-small``, plus a tag per switched-off technique."""
    name = "supernet" if args.mode == "supernet" else f"single-{args.size}"
    tags = ([f"distill_{args.distill}"] if args.mode == "supernet" and args.distill != "alpha" else []) + \
        (["no_adaptive_dropout"] if not args.adaptive_dropout else []) + \
        (["adam"] if args.optimizer == "adam" else []) + (["scratch"] if args.init == "scratch" else [])
    return "-".join([name, *tags])


# ----------------------------------------------------------------------------- model and optimizer
def build_model(args) -> tuple[Supernet, list[str]]:
    """The network to train and the size names to export.

    ``supernet``: every size of :data:`DEFAULT_SPACE` shares the weights. ``single``: the plain
    model of one size, whose dropout follows the same rule as in the supernet.
    """
    torch.manual_seed(args.seed)
    opts = {"adaptive_dropout": args.adaptive_dropout}
    if args.init == "shipped":
        full = Supernet.from_tiny(**opts)
    else:
        full = Supernet(TinyConformerCTC(TinyConfig()), **opts)
    if args.mode == "supernet":
        return full, list(args.export or DEFAULT_SPACE.size_names)
    name = DEFAULT_SPACE.name_of(DEFAULT_SPACE.parse(args.size))
    model = full.extract(name)  # the slice of the starting weights (scratch: a random model of that size)
    if args.init == "scratch":
        torch.manual_seed(args.seed)
        model = TinyConformerCTC(model.cfg)
    single = Supernet(model.train(), SearchSpace.single(model.cfg, name), adaptive_dropout=False)
    return single, [name]


def build_optimizer(args, net: Supernet) -> torch.optim.Optimizer:
    params = [p for p in net.parameters() if p.requires_grad]
    if args.optimizer == "scaled_adam":
        return ScaledAdam(params, lr=args.lr, clipping_scale=args.clipping_scale)
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=args.lr, betas=(0.9, 0.98))


def lr_at(args, step: int, elapsed: float) -> float:
    """Linear warm-up over steps, then cosine decay down to ``final_lr_ratio`` over the STEP budget
    (``--steps``) or, without one, over the TIME budget."""
    warm = min(1.0, (step + 1) / args.warmup)
    frac = min(1.0, step / args.steps) if args.steps else min(1.0, elapsed / (args.minutes * 60.0))
    return args.lr * warm * (args.final_lr_ratio + (1 - args.final_lr_ratio) * 0.5 * (1 + math.cos(math.pi * frac)))


# ----------------------------------------------------------------------------- dev evaluation
def dev_cer(net: Supernet, items: list, names: list[str], device: str, batch_size: int = 32) -> dict[str, float]:
    """Greedy CER of each size on the dev set (held-out voices reading held-out phrases)."""
    import jiwer

    from workbench.features import pad_waveforms

    net.eval()
    out = {}
    with torch.no_grad():
        for name in names:
            hyps, refs = [], []
            for s in range(0, len(items), batch_size):
                chunk = items[s:s + batch_size]
                w, lens = pad_waveforms([x for x, _ in chunk])
                lp, olens = net(w.to(device), lens.to(device), name)
                lp = lp.float().cpu()
                hyps += [greedy_decode(lp[j, :olens[j]].numpy()) for j in range(len(chunk))]
                refs += [t for _, t in chunk]
            out[name] = jiwer.cer(refs, hyps)
    net.train()
    return out


# ----------------------------------------------------------------------------- checkpoints
def save_checkpoint(path: Path, payload: dict) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def resumable(run_dir: Path, net, opt, state, gen, args) -> None:
    """The resumable checkpoint: weights, optimizer, generators, the place in the epoch (no evaluation)."""
    save_checkpoint(run_dir / "ckpt.pt", {"net": net.state_dict(), "opt": opt.state_dict(), "state": state,
                                          "gen": gen.get_state(), "torch_rng": torch.get_rng_state(),
                                          "run": run_name(args)})


def checkpoint(run_dir: Path, net, opt, state, gen, args, data, names) -> None:
    """Dev CER of the sizes; the resumable checkpoint; the best one by mean dev CER."""
    cers = dev_cer(net, data["dev"][: args.dev_items], names, args.device)
    mean = sum(cers.values()) / len(cers)
    state["dev"].append((state["step"], round(state["elapsed"], 1), cers))
    print(f"  dev CER (held-out voices + phrases): {', '.join(f'{k} {v:.3f}' for k, v in cers.items())}", flush=True)
    if mean <= state["best_cer"]:
        state["best_cer"], state["best_step"] = mean, state["step"]
        save_checkpoint(run_dir / "best.pt", {"net": net.state_dict(), "step": state["step"]})
    state["last_eval"] = state["step"]
    resumable(run_dir, net, opt, state, gen, args)


# ----------------------------------------------------------------------------- training
def train(args, data, run_dir: Path) -> tuple[Supernet, list[str], dict]:
    run_dir.mkdir(parents=True, exist_ok=True)
    net, names = build_model(args)
    net.to(args.device).train()
    for p in net.parameters():
        p.requires_grad_(True)
    opt = build_optimizer(args, net)
    scfg = SandwichConfig(n_random=args.n_random if args.mode == "supernet" else 0,
                          distill=args.distill if args.mode == "supernet" else "none",
                          ctc_weight=args.ctc_weight, clip_norm=args.clip)
    print(f"{run_name(args)}: {net.num_parameters() / 1e6:.2f} M parameters (largest), sizes {names} "
          f"({', '.join(f'{n} {net.num_parameters(n) / 1e6:.2f} M, dropout {net.dropout_for(n):.3f}' for n in names)}), "
          f"{type(opt).__name__} lr {args.lr:g}, {scfg}", flush=True)
    gen = torch.Generator().manual_seed(args.seed)
    state = {"step": 0, "elapsed": 0.0, "epoch": 0, "batch_in_epoch": 0, "best_cer": float("inf"),
             "best_step": 0, "dev": [], "log": [], "skipped": 0}
    ckpt = run_dir / "ckpt.pt"
    if args.resume and ckpt.exists():
        ck = torch.load(ckpt, weights_only=False, map_location=args.device)
        if ck["run"] != run_name(args):
            raise SystemExit(f"{ckpt} belongs to run {ck['run']!r}, not {run_name(args)!r}: give the same flags")
        net.load_state_dict(ck["net"])
        opt.load_state_dict(ck["opt"])
        state = ck["state"]
        gen.set_state(ck["gen"])
        if "torch_rng" in ck:  # dropout draws continue as if never stopped
            torch.set_rng_state(ck["torch_rng"])
        print(f"resumed at step {state['step']}, {state['elapsed'] / 60:.1f} min", flush=True)
    policy = POLICIES[args.policy]
    items = data["train"]
    lengths = [x.shape[0] for x, _ in items]
    dev_type = "cuda" if args.device.startswith("cuda") else "cpu"

    def autocast():  # bf16: ~20 % faster on the 2-core AVX-512-BF16 CPU (recipes/README.md), and on GPUs
        return torch.autocast(dev_type, dtype=torch.bfloat16) if args.bf16 else contextlib.nullcontext()

    t_start = time.time() - state["elapsed"]
    last_ckpt, run_loss = time.time(), []
    budget = args.minutes * 60.0 if args.minutes else float("inf")
    max_steps = args.steps or float("inf")
    stop = _stop_signals()

    def done() -> bool:
        return time.time() - t_start >= budget or state["step"] >= max_steps or stop["now"]

    while not done():
        batches = make_batches(lengths, args.max_frames, args.max_batch, random.Random(args.seed + state["epoch"]))
        for bi in range(state["batch_in_epoch"], len(batches)):
            elapsed = time.time() - t_start
            if done():
                break
            for g in opt.param_groups:
                g["lr"] = lr_at(args, state["step"], elapsed)
            feats, flens, texts = collate([items[i] for i in batches[bi]])
            feats = spec_augment(mel_warp(feats, flens, gen), flens, policy, generator=gen)
            out = sandwich_step(net, feats.to(args.device), flens.to(args.device), texts, opt, scfg,
                                generator=gen, autocast=autocast)
            state["batch_in_epoch"] = bi + 1
            if out["skipped"]:
                state["skipped"] += 1
                continue
            state["step"] += 1
            run_loss.append(out["losses"][:2])  # (name, loss) of the largest and the smallest
            if state["step"] % args.log_every == 0:
                cols = list(zip(*run_loss, strict=True))
                means = ", ".join(f"{c[0][0]} {sum(v for _, v in c) / len(c):.3f}" for c in cols)
                print(f"step {state['step']} ep {state['epoch']} {elapsed / 60:.1f} min "
                      f"lr {lr_at(args, state['step'], elapsed):.2e} loss {means}", flush=True)
                state["log"].append((state["step"], round(elapsed, 1), means))
                run_loss = []
            state["elapsed"] = time.time() - t_start
            if state["step"] % args.eval_every == 0:
                checkpoint(run_dir, net, opt, state, gen, args, data, names)
                last_ckpt = time.time()
            elif state["step"] % args.ckpt_every == 0 or time.time() - last_ckpt > args.ckpt_minutes * 60:
                resumable(run_dir, net, opt, state, gen, args)
                last_ckpt = time.time()
        else:
            state["epoch"] += 1
            state["batch_in_epoch"] = 0
    state["elapsed"] = time.time() - t_start
    if stop["now"]:  # Ctrl-C or SIGTERM: keep the place, end without exporting
        resumable(run_dir, net, opt, state, gen, args)
        raise SystemExit(f"stopped at step {state['step']} ({state['elapsed'] / 60:.1f} min); the checkpoint is "
                         f"saved: run the same command with --resume to continue")
    if state.get("last_eval") != state["step"] or not (run_dir / "best.pt").exists():
        checkpoint(run_dir, net, opt, state, gen, args, data, names)
    best = torch.load(run_dir / "best.pt", weights_only=False, map_location=args.device)
    net.load_state_dict(best["net"])
    print(f"training done: {state['step']} steps, {state['elapsed'] / 60:.1f} min; best mean dev CER "
          f"{state['best_cer']:.3f} at step {state['best_step']}", flush=True)
    return net, names, state


def _stop_signals() -> dict:
    """``{"now": bool}`` set by Ctrl-C or SIGTERM: the training loop then saves and stops."""
    flag = {"now": False}

    def handler(signum, frame):
        if flag["now"]:  # a second Ctrl-C: stop at once
            raise KeyboardInterrupt
        flag["now"] = True
        print("stopping after this step (the checkpoint is saved first)...", flush=True)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)
    return flag


def run_info(args, state: dict, data: dict) -> dict:
    return {"mode": args.mode, "size": args.size, "init": args.init, "distill": args.distill if args.mode == "supernet"
            else "none (single size)", "adaptive_dropout": args.adaptive_dropout, "optimizer": args.optimizer,
            "lr": args.lr, "steps": state["step"], "step_budget": args.steps, "minute_budget": args.minutes, "minutes": state["elapsed"] / 60, "device": args.device,
            "threads": torch.get_num_threads(), "best_step": state["best_step"], "n_train_utterances": len(data["train"]),
            "dev": state["dev"], "skipped": state["skipped"], "args": {k: str(v) for k, v in vars(args).items()}}


def _resolve(args, parser) -> None:
    """Apply ``--ablation`` and ``--quick``, and the default budget, to ``args``."""
    for key, value in ABLATIONS[args.ablation].items():
        if args.mode != "supernet":
            parser.error(f"--ablation {args.ablation} is an ablation of the supernet run (--mode supernet)")
        default = parser.get_default(key)
        if getattr(args, key) not in (default, value):
            parser.error(f"--ablation {args.ablation} sets --{key.replace('_', '-')} to {value!r}; "
                         f"it cannot also be {getattr(args, key)!r}")
        setattr(args, key, value)
    if args.quick:
        for key, value in QUICK.items():
            if getattr(args, key) == parser.get_default(key):
                setattr(args, key, value)
        if args.cache == parser.get_default("cache"):
            args.cache = args.cache.parent / "pretrain-quick"
        if args.out == parser.get_default("out"):
            args.out = args.out.parent / "supernet-quick"
    if args.minutes is None and not args.steps:
        args.minutes = 10.0
    args.lr = args.lr if args.lr is not None else DEFAULT_LR[(args.optimizer, args.init)]
    if (args.steps is not None and args.steps < 1) or min(args.ckpt_every, args.eval_every, args.dev_items) < 1:
        parser.error("--steps, --ckpt-every, --eval-every and --dev-items must be at least 1")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", choices=("supernet", "single"), default="supernet")
    p.add_argument("--size", default="large", help="with --mode single: the size trained alone (small/medium/large)")
    p.add_argument("--export", nargs="*", help="sizes to export (supernet default: small medium large)")
    p.add_argument("--init", choices=("shipped", "scratch"), default="shipped", help="start from the shipped model")
    p.add_argument("--ablation", choices=tuple(ABLATIONS), default="none",
                   help="turn off one technique of the supernet run (sets the switch it names)")
    p.add_argument("--distill", choices=("alpha", "kl", "none"), default="alpha")
    p.add_argument("--no-adaptive-dropout", dest="adaptive_dropout", action="store_false")
    p.add_argument("--optimizer", choices=("scaled_adam", "adam"), default="scaled_adam")
    p.add_argument("--n-random", type=int, default=2, help="random sizes per step besides largest and smallest")
    p.add_argument("--ctc-weight", type=float, default=0.0, help="CTC weight added for the distilled sizes")
    p.add_argument("--minutes", type=float, default=None,
                   help="training time budget, wall clock (default 10 without --steps; with --steps, none)")
    p.add_argument("--steps", type=int, default=None, help="optimizer-step budget (the LR schedule follows it)")
    p.add_argument("--ckpt-every", type=int, default=25, help="steps between resumable checkpoints")
    p.add_argument("--eval-every", type=int, default=100, help="steps between dev evaluations (and best.pt)")
    p.add_argument("--ckpt-minutes", type=float, default=3.0, help="a resumable checkpoint at least this often")
    p.add_argument("--dev-items", type=int, default=64, help="dev utterances evaluated at each --eval-every")
    p.add_argument("--quick", action="store_true", help="a tiny corpus and 3 steps: check that a run works")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--lr", type=float, default=None, help="peak LR (default by optimizer and init)")
    p.add_argument("--final-lr-ratio", type=float, default=0.05)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--weight-decay", type=float, default=1e-3, help="AdamW only")
    p.add_argument("--clip", type=float, default=5.0, help="gradient-norm clipping for AdamW")
    p.add_argument("--clipping-scale", type=float, default=2.0, help="ScaledAdam's clipping (x median norm)")
    p.add_argument("--max-frames", type=int, default=12000, help="padded frames per batch")
    p.add_argument("--max-batch", type=int, default=64)
    p.add_argument("--policy", default="librispeech_adaptive")
    p.add_argument("--no-bf16", dest="bf16", action="store_false")
    p.add_argument("--log-every", type=int, default=25)
    p.add_argument("--no-beam", dest="beam", action="store_false", help="evaluate with greedy decoding only")
    p.add_argument("--no-sample-data", dest="sample_data", action="store_false",
                   help="skip the sample_data/ speakers in the evaluation (smoke runs)")
    p.add_argument("--eval-only", action="store_true", help="evaluate the exported folders of the run again")
    p.add_argument("--compare", nargs="+", type=Path, help="run folders to put side by side (no training)")
    p.add_argument("--out", type=Path, default=default_out())
    p.add_argument("--run-name", default=None, help="default: from the mode and the switches")
    add_corpus_arguments(p, n_train=1500)  # the pretraining recipe's corpus and its cache
    return p


def parse_args(argv=None) -> argparse.Namespace:
    """The run's settings, ``--ablation`` and ``--quick`` applied (:func:`_resolve`)."""
    p = build_parser()
    args = p.parse_args(argv)
    _resolve(args, p)
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.compare:
        compare(args.compare, args.out / "comparison.md")
        return
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available here; use --device cpu")
    torch.set_num_threads(args.threads)
    run_dir = args.out / (args.run_name or run_name(args))
    run_dir.mkdir(parents=True, exist_ok=True)
    data = build_data(args, args.cache)
    if args.eval_only:
        import json

        summary = json.loads((run_dir / "summary.json").read_text())
        metrics = {n: evaluate_size(run_dir / n, data, beam=args.beam, sample_data=args.sample_data)
                   for n in summary["sizes"]}
        write_run_card(run_dir, summary["run"], metrics)
        return
    net, names, state = train(args, data, run_dir)
    info = run_info(args, state, data)
    export = {k: info[k] for k in ("mode", "distill", "adaptive_dropout", "optimizer", "device", "best_step")}
    export.update(steps=state["step"], minutes=state["elapsed"] / 60, ablation=args.ablation)
    meta = data["meta"]
    folders = export_sizes(net.cpu(), names, run_dir, {
        "training": export,
        "eval": {k: meta[k] for k in ("heldout_phrases", "train_phrases", "heldout_voices", "heldout_voice_rule")},
        "search_space": dataclasses.asdict(DEFAULT_SPACE) if args.mode == "supernet" else None})
    metrics = {n: evaluate_size(f, data, beam=args.beam, sample_data=args.sample_data) for n, f in folders.items()}
    write_run_card(run_dir, info, metrics)


if __name__ == "__main__":
    main()
