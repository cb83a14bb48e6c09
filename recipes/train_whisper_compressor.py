"""Train a Device Tuning compressor for Whisper (issue 28) by distillation from the unsplit model.

The device runs Whisper's log-mel and the first ``--split`` encoder layers; the compressor
between them and the server (the rest of the encoder and the decoder) is trained on:

- the pretraining recipe's synthetic voices and phrases (``recipes/pretrain``: its training
  voices and training phrases; the held-out voices and phrases are never used), synthesized
  here as waveforms (cached), and
- the real recordings that are not test material: Debian's Asterisk prompts minus the 150
  that ``bench/bench_real_speech.py`` tests on (``sample_data/real`` and the atypical sample
  speakers are never read).

The teacher's targets are the unsplit model's own transcripts (computed once, cached). The loss
is :mod:`workbench.device_tuning.whisper_train`'s: token KL under teacher forcing + top encoder
states + an optional rate term. Step-based and resumable: a checkpoint every
``--checkpoint-every`` steps; ``--resume`` continues from it and takes the same steps an
unbroken run would.

    # check that it runs (a minute or two)
    python recipes/train_whisper_compressor.py --quick
    # one operating point (the lead's long run; hours on 2 CPU cores)
    python recipes/train_whisper_compressor.py --split 2 --point 16x3s2 --steps 6000 --n-synthetic 1500
    python recipes/train_whisper_compressor.py --split 2 --point 16x3s2 --steps 6000 --n-synthetic 1500 --resume

``--tasks joint`` trains the compressor together with the server's task heads
(:mod:`workbench.device_tuning.whisper_joint`: + the speaker-embedding head against d-vectors and the
simulated atypicality-profile head), on the same data plus simulated speakers
(:func:`workbench.device_tuning.simulated.simulated_speakers`: ``--sim-per-class`` espeak voices per
profile class x ``--sim-utts`` phrases; the last ``--sim-heldout`` speakers of each class are
never trained on: the multi-task table scores them). Its files end in ``-joint`` and it also
writes ``<name>.heads.safetensors`` (the jointly trained heads)::

    python recipes/train_whisper_compressor.py --tasks joint --split 2 --point 16x3s2 --steps 6000 --n-synthetic 1500

``--init FILE`` starts from a trained compressor's weights (same split layer, dims, stride and width;
the bits may differ; ``--context`` and more dims may be added, starting at zero): another
operating point in a fraction of the steps, e.g. 2 or 4 bits a symbol from the 3-bit run::

    python recipes/train_whisper_compressor.py --split 2 --point 16x2s2 --steps 1500 --lr 1e-3 \
        --init ~/.cache/workbench/compressors/whisper-tiny.en-k2-16x3s2.safetensors

``--linear`` fits a linear compressor (a transform coder: :mod:`workbench.device_tuning.transform`)
in closed form at split 0: Whisper's Fisher information per symbol frame, then the principal
components of the log-mel in that metric, one quantizer step ``--step``; ``--steps N`` then trains
it by distillation as the MLP ones are (0: the closed form as it is; ``--linear --init FILE``:
from a fitted one). The bench's ``-lin0.6`` (fitted on the real training prompts only)::

    python recipes/train_whisper_compressor.py --split 0 --linear --point 64x9s4 --step 0.6 \
        --n-synthetic 0 --steps 0

``--validate N`` then measures the result on N recordings of the pretraining corpus's held-out voices
reading its held-out phrases (kbit/s on the wire, WER, and WER against the unsplit model's
transcripts; written into the card): the place to choose a step or a weight, never the bench's
test sets. ``--rate-weight W`` adds the estimated bits of the symbols sent to the loss (at split 0,
only the audio's symbol frames): fine-tuning then holds or lowers the bit rate::

    python recipes/train_whisper_compressor.py --split 0 --linear --point 64x9s4 --step 1.2 --steps 600 \
        --lr 3e-4 --warmup 50 --bf16 --rate-weight 2 --tag ftr2 --validate 160 \
        --init ~/.cache/workbench/compressors/whisper-tiny.en-k0-64x9s4-lin1.2-mixed.safetensors

``--restore W --server-only`` adds a restoration network on the server to a linear compressor given with
``--init`` (three convolutions, ``W`` wide, ``--restore-kernel`` frames each, over the restored log-mel;
it starts at zero) and trains only the server's side: the symbols, their tables and the bit rate stay
the ``--init`` compressor's, and the network learns what the rounding lost from the neighbouring frames::

    python recipes/train_whisper_compressor.py --split 0 --linear --point 64x9s4 --step 1.2 --steps 1500 \
        --lr 1e-3 --warmup 100 --bf16 --restore 256 --server-only --validate 160 --tag mixed \
        --init ~/.cache/workbench/compressors/whisper-tiny.en-k0-64x9s4-lin1.2-mixed.safetensors

It writes ``<out>/whisper-tiny.en-k<split>-<point>[-<tag>].safetensors`` (the compressor, with a
card: data, steps, losses) and ``<out>/<same name>.ckpt.safetensors`` (the run's checkpoint).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "recipes"))
sys.path.insert(0, str(ROOT))

from pretrain.data import (add_corpus_arguments, make_text, split_prompts,  # noqa: E402
                           synthesize_set, voice_pools)
from train_compressor import parse_point  # noqa: E402

from workbench._atomic import write_bytes_atomic  # noqa: E402
from workbench.constants import cache_dir  # noqa: E402
from workbench.device_tuning import Compressor  # noqa: E402
from workbench.device_tuning.compressor import save_compressor  # noqa: E402
from workbench.device_tuning import split_for  # noqa: E402
from workbench.device_tuning.whisper_joint import WhisperJointSettings, WhisperJointTrainer  # noqa: E402
from workbench.device_tuning.whisper_train import (DistillItem, WhisperCompressorTrainer,  # noqa: E402
                                                   WhisperDistillSettings)
from workbench.models import load_base_model  # noqa: E402


def default_out() -> Path:
    return cache_dir() / "compressors"


def synthetic_waves(args, *, heldout: bool = False, n: int | None = None) -> list[tuple[np.ndarray, str]]:
    """``n`` (default ``--n-synthetic``) phrases of the pretraining corpus's training voices and
    phrases, as 16 kHz waveforms (perturbed as the pretraining corpus is), cached as int16 in
    ``--cache``. ``heldout``: its held-out voices reading its held-out phrases instead (never
    trained on: :func:`validate`'s set), each voice in turn."""
    from workbench.prompts import load_prompts

    n = args.n_synthetic if n is None else n
    if n == 0:
        return []
    key = hashlib.sha256(json.dumps([args.seed, n, args.heldout_texts, args.train_voices, args.heldout_voices,
                                     "whisper-waves-v1", *(["heldout"] if heldout else [])]).encode()).hexdigest()[:12]
    path = args.cache / f"whisper-waves-{key}.npz"
    if path.exists():
        z = np.load(path)
        texts = json.loads(str(z["texts"]))
        bounds = z["bounds"]
        return [(z["pcm"][a:b].astype(np.float32) / 32767.0, t) for (a, b), t in zip(bounds, texts, strict=True)]
    prompts = load_prompts("everyday")
    train_phrases, held_phrases = split_prompts(prompts, args.heldout_texts, args.seed)
    words = sorted({w for p in train_phrases for w in p.split()})
    train_voices, held_voices = voice_pools(args.train_voices, args.heldout_voices, args.seed)
    rng = random.Random(args.seed + (2828 if heldout else 28))
    seeds = np.random.SeedSequence(args.seed + (2828 if heldout else 28)).generate_state(n, dtype=np.uint64)
    if heldout:
        jobs = [(i, int(seeds[i]), held_phrases[i % len(held_phrases)], held_voices[i % len(held_voices)], 1.0, True, 1)
                for i in range(n)]
    else:
        jobs = [(i, int(seeds[i]), make_text(rng, train_phrases, words), rng.choice(train_voices), 1.0, True, 1)
                for i in range(n)]
    kept = synthesize_set(jobs, args.workers, "held-out voices" if heldout else "synthetic training voices")
    pcm = np.concatenate([np.clip(w * 32767, -32767, 32767).astype(np.int16) for w, _ in kept])
    ends = np.cumsum([len(w) for w, _ in kept])
    bounds = np.stack([ends - [len(w) for w, _ in kept], ends], axis=1)
    args.cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, pcm=pcm, bounds=bounds, texts=json.dumps([t for _, t in kept]))
    os.replace(tmp, path)
    return [(pcm[a:b].astype(np.float32) / 32767.0, t) for (a, b), (_, t) in zip(bounds, kept, strict=True)]


def validate(args, split) -> dict:
    """The trained compressor on ``--validate`` recordings of the pretraining corpus's held-out voices
    reading its held-out phrases (never trained on, and not the bench's test sets: choose steps and
    weights here). ``{"recordings", "kbit_s", "wer", "unsplit_wer", "disagreement"}``: the wire's
    bit rate (headers included), WER of the split and of the unsplit model against the phrases,
    and WER of the split against the unsplit model's transcripts (what the compressor changes)."""
    from workbench.device_tuning import split_for
    from workbench.evaluate import wer

    rows = synthetic_waves(args, heldout=True, n=args.validate)
    waves, refs = [w for w, _ in rows], [t for _, t in rows]
    unsplit = split_for(split.backend, split.split_layer)  # the identity split: the unsplit model's transcripts
    sent, hyps, plain = 0, [], []
    for i in range(0, len(waves), 16):
        msgs = split.encode(waves[i:i + 16])
        sent += sum(len(m.to_bytes()) for m in msgs)
        hyps += split.transcribe_hidden(split.restore(msgs), samples=[m.samples for m in msgs])
        plain += unsplit.transcribe(waves[i:i + 16])
    seconds = sum(len(w) for w in waves) / 16000
    return {"recordings": len(waves), "kbit_s": round(8 * sent / seconds / 1000, 3),
            "wer": round(wer(refs, hyps), 4), "unsplit_wer": round(wer(refs, plain), 4),
            "disagreement": round(wer(plain, hyps), 4)}


def real_training_waves() -> list[tuple[np.ndarray, str]]:
    """The Asterisk prompts that are not in bench_real_speech's 150-prompt test set."""
    from bench.bench_real_speech import SUBSET, _subset
    from workbench.real_speech import load_asterisk

    test = {u.name for u in _subset(SUBSET)}
    return [(u.wav, u.text) for u in load_asterisk() if u.name not in test]


def teacher_items(split, waves: list[np.ndarray], cache: Path, tag: str) -> list[DistillItem]:
    """Device states of every recording (recomputed: cheap) and the unsplit model's transcripts
    (cached in ``cache``: they do not depend on the split layer)."""
    fp = split.backend.fingerprint()[:12]
    key = hashlib.sha256(json.dumps([fp, tag, [len(w) for w in waves]]).encode()).hexdigest()[:12]
    path = cache / f"whisper-teacher-{key}.json"
    texts = json.loads(path.read_text()) if path.exists() else None
    items, t0 = [], time.time()
    saved, split.compressor = split.compressor, None
    try:
        for s in range(0, len(waves), 8):
            chunk = split.device_hidden(waves[s:s + 8])
            if texts is None or len(texts) != len(waves):
                got = split.transcribe_hidden([it.features for it in chunk], samples=[it.samples for it in chunk])
            else:
                got = texts[s:s + 8]
            items += [DistillItem(it.features, it.length, it.samples, t) for it, t in zip(chunk, got, strict=True)]
            if (s // 8) % 25 == 0:
                print(f"  teacher: {len(items)}/{len(waves)} recordings ({time.time() - t0:.0f} s)", flush=True)
    finally:
        split.compressor = saved
    if texts is None:
        cache.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(path, json.dumps([it.text for it in items]).encode())
    return items


def joint_training_items(args, split, items: list[DistillItem]) -> tuple[list, dict]:
    """The distillation items (no task labels) plus the simulated speakers' training recordings with
    their d-vectors and profile labels (the held-out speakers left out)."""
    from workbench.device_tuning.simulated import heldout_speakers, simulated_speakers
    from workbench.device_tuning.whisper_joint import joint_items

    sim, info = simulated_speakers(args.sim_per_class, args.sim_utts, args.seed,
                                   log=lambda m: print(m, flush=True))
    held = heldout_speakers(sim, args.sim_heldout)
    train = [it for it in sim if it["speaker"] not in held]
    sim_items = teacher_items(split, [it["wav"] for it in train], args.cache,
                              f"sim-{args.seed}-{args.sim_per_class}-{args.sim_utts}-{args.sim_heldout}")
    labelled = joint_items(sim_items, [it["dvector"] for it in train],
                           [(it["profile"], float(it["severity"])) for it in train])
    print(f"joint: + {len(labelled)} recordings of {len({it['speaker'] for it in train})} simulated speakers "
          f"({len(held)} held out)", flush=True)
    info = {**info, "trained_on": len(labelled), "heldout_speakers": sorted(held)}
    return joint_items(items) + labelled, info


def init_from(comp: Compressor, path: Path, split_layer: int, fingerprint: str) -> dict:
    """Copy a trained compressor's weights into ``comp`` (not its symbol tables: they are counted
    again after training); ``{"file", "steps"}`` for the card. ``comp`` may have other bits, may
    add context (its convolutions start at zero) and may have more dims: the new dims' expander
    weights start at zero, so ``comp`` starts as the trained compressor and learns what the new
    symbols should carry. Exits with a plain message when the file was made for another split,
    base or shape."""
    from workbench.device_tuning.compressor import load_compressor

    src, meta = load_compressor(path)
    a, b = src.config, comp.config
    if meta["split_layer"] != split_layer or meta["base_fingerprint"] != fingerprint:
        raise SystemExit(f"--init {path.name}: it was trained for another split layer or base model "
                         f"(k={meta['split_layer']}); pick one trained with --split {split_layer} on this model.")
    hidden = a.hidden if not b.linear or a.hidden else b.hidden  # a linear one may gain a restoration network
    if (a.d_model, a.stride, hidden, a.linear) != (b.d_model, b.stride, b.hidden, b.linear) or a.dims > b.dims or (
            a.context not in (0, b.context) or (b.linear and a.dims != b.dims)):
        raise SystemExit(f"--init {path.name}: its sizes ({a.dims} dims, stride {a.stride}, width {a.hidden}, context "
                         f"{a.context}) differ from this point's ({b.dims} dims, stride {b.stride}, width {b.hidden}, "
                         f"context {b.context}); only the bits may, and dims and context may be added.")
    weights = {k: v for k, v in src.state_dict().items() if k != "tables"}
    if b.dims > a.dims:  # the squeeze's new rows keep their fresh init; the expander's new columns start at 0
        mine = comp.state_dict()
        for key in ("down.3.weight", "down.3.bias"):
            weights[key] = torch.cat([weights[key], mine[key][a.dims:]])
        weights["up.0.weight"] = torch.cat([weights["up.0.weight"], torch.zeros(b.hidden, b.dims - a.dims)], dim=1)
    comp.load_state_dict(weights, strict=False)
    return {"file": path.name, "steps": (meta["card"] or {}).get("steps"),
            "step": ((meta["card"] or {}).get("linear") or {}).get("step")}


def requantize(comp: Compressor, init: dict, step: float) -> dict:
    """A linear compressor read with ``--init`` moved to quantizer step ``step`` (its coefficients
    divided by ``step / its step``, the inverse multiplied): the same transform at another bit rate,
    without computing the Fisher information again. The card entry of ``--linear``."""
    if not init.get("step"):
        raise SystemExit(f"--init {init['file']}: its card does not say its quantizer step; fit one with --linear.")
    ratio = step / float(init["step"])
    with torch.no_grad():
        for t in (comp.down.weight, comp.down.bias):
            t.div_(ratio)
        comp.up.weight.mul_(ratio)
    return {"step": step, "requantized_from": init["file"]}


def keep_device_side(comp: Compressor, path: Path, init: dict, linear: dict) -> dict:
    """``--server-only``: ``comp``'s device side as the ``--init`` compressor at ``path`` has it, frozen,
    and its symbol tables (the same symbols, tables and bit rate; only the server's inverse and
    restoration network train); the card entry of ``--linear``. Exits with a plain message when
    ``--step`` would change the symbols."""
    from workbench.device_tuning.compressor import load_compressor

    if float(linear["step"]) != float(init["step"]):
        raise SystemExit(f"--server-only keeps {init['file']}'s symbols: give its quantizer step "
                         f"(--step {init['step']:g}), not {linear['step']:g}.")
    src, _ = load_compressor(path)
    with torch.no_grad():
        comp.tables.copy_(src.tables)
    comp.down.requires_grad_(False)
    return {**linear, "server_only": True}


def fit_linear(args, split, items: list[DistillItem], dims: int, bits: int, stride: int) -> tuple[Compressor, dict]:
    """The closed-form linear compressor (``--linear``) and its card entry."""
    from workbench.device_tuning.transform import fit_linear_compressor, token_fisher

    t0 = time.time()

    def progress(n: int) -> None:
        if n % 50 == 0 or n == len(items):
            print(f"  Whisper's Fisher information: {n}/{len(items)} recordings ({time.time() - t0:.0f} s)", flush=True)

    fisher = token_fisher(split, items, stride=stride, draws=args.fisher_draws, seed=args.seed, on_progress=progress)
    comp, info = fit_linear_compressor(split, items, fisher, dims=dims, bits=bits, stride=stride, step=args.step,
                                       lam=args.lam, table_context=args.table_context)
    print(f"  linear compressor fitted: {100 * info['clipped']:.3f} % of coefficients clipped", flush=True)
    return comp, {"step": args.step, "lam": args.lam, "fisher_draws": args.fisher_draws, **info,
                  "fit_s": round(time.time() - t0, 1)}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="whisper-tiny.en")
    p.add_argument("--split", type=int, default=2, help="encoder layers on the device (0: log-mel only)")
    p.add_argument("--point", default="16x3s2", help="operating point DIMSxBITSsSTRIDE")
    p.add_argument("--hidden", type=int, default=256, help="the compressor's MLP width")
    p.add_argument("--table-context", type=int, choices=[0, 1], default=0, help="1: the range coder's tables "
                   "conditioned on the previous frame's symbols (fewer bits, same symbols; split 0 only). With "
                   "--init FILE --steps 0 it refits a trained compressor's tables only")
    p.add_argument("--context", type=int, default=0, help="kernel size (symbol frames, odd) of the compressor's "
                   "residual temporal convolutions; 0: none")
    p.add_argument("--linear", action="store_true", help="a linear compressor (transform coder) fitted in closed "
                   "form in Whisper's own metric (split 0 only); --steps then trains it further")
    p.add_argument("--step", type=float, default=0.6, help="--linear: the quantizer step (larger: fewer bits)")
    p.add_argument("--lam", type=float, default=0.1, help="--linear: the metric's regularization (x its mean "
                   "eigenvalue on the diagonal)")
    p.add_argument("--fisher-draws", type=int, default=2, help="--linear: token draws per recording")
    p.add_argument("--steps", type=int, default=6000)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--state-weight", type=float, default=1.0, help="weight of the top encoder states' error")
    p.add_argument("--rate-weight", type=float, default=0.0, help="weight of the estimated bits per symbol")
    p.add_argument("--n-synthetic", type=int, default=1500, help="synthetic training phrases")
    p.add_argument("--no-real", action="store_true", help="leave out the real (Asterisk) training recordings")
    p.add_argument("--checkpoint-every", type=int, default=200)
    p.add_argument("--tag", default="", help="suffix of the output names")
    p.add_argument("--out", type=Path, default=default_out())
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", help="cpu, or cuda for a GPU")
    p.add_argument("--bf16", action="store_true", help="the frozen model in bfloat16 while training (faster on GPUs "
                   "and on CPUs with AVX512-BF16 or AMX; much slower on other CPUs)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    p.add_argument("--init", type=Path, help="start from this trained compressor's weights (same split layer, dims, "
                   "stride and width; the bits may differ)")
    p.add_argument("--restore", type=int, default=0, help="--linear: the width of a restoration network on the "
                   "server (convolutions over the restored log-mel; starts at zero); 0: none")
    p.add_argument("--restore-kernel", type=int, default=5, help="--restore: its kernel size (frames, odd)")
    p.add_argument("--server-only", action="store_true", help="train the server's side only: the symbols, their "
                   "tables and the bit rate stay the --init compressor's (with --linear --restore)")
    p.add_argument("--validate", type=int, default=0, help="then measure it on this many recordings of held-out "
                   "voices and phrases (kbit/s, WER; in the card): choose steps and weights there, not on test sets")
    p.add_argument("--quick", action="store_true", help="a few recordings and steps: check that it runs")
    p.add_argument("--tasks", choices=["asr", "joint"], default="asr",
                   help="asr: distillation only; joint: with the speaker and atypicality heads")
    p.add_argument("--sim-per-class", type=int, default=12, help="joint: simulated speakers per profile class")
    p.add_argument("--sim-utts", type=int, default=7, help="joint: phrases per simulated speaker")
    p.add_argument("--sim-heldout", type=int, default=3, help="joint: speakers per class never trained on")
    p.add_argument("--speaker-weight", type=float, default=1.0, help="joint: weight of the speaker head's loss")
    p.add_argument("--profile-weight", type=float, default=1.0, help="joint: weight of the profile head's loss")
    add_corpus_arguments(p, n_train=0)  # the pretraining corpus's voice and phrase pools (same seed, same split)
    args = p.parse_args(argv)
    if args.table_context and args.split > 0:
        raise SystemExit("--table-context 1 is not supported yet above split 0 (the window's padding is coded "
                         "adaptively there); use --table-context 0.")
    if args.linear and (args.split > 0 or args.context or args.tasks != "asr"):
        raise SystemExit("--linear is supported at --split 0 without --context and --tasks joint only (a linear "
                         "compressor codes log-mel); not supported yet elsewhere.")
    if (args.restore or args.server_only) and not args.linear:
        raise SystemExit("--restore and --server-only are for linear compressors (--linear); not supported yet "
                         "for the MLP ones.")
    if args.restore and not args.init:
        raise SystemExit("--restore adds a restoration network to a fitted linear compressor: fit one first "
                         "(--linear --steps 0), then give it with --init.")
    if args.server_only and (not args.init or args.rate_weight):
        raise SystemExit("--server-only keeps a trained compressor's symbols: give it with --init, and leave out "
                         "--rate-weight (the bit rate cannot change).")
    if args.quick:
        args.n_synthetic, args.steps, args.checkpoint_every, args.no_real = 12, 6, 3, True
        args.train_voices, args.out = 40, args.out / "quick"
        args.sim_per_class, args.sim_utts, args.sim_heldout = 2, 2, 1
        args.validate = min(args.validate, 4)
    torch.set_num_threads(args.threads)
    dims, bits, stride = parse_point(args.point)

    backend = load_base_model(args.model, device=args.device).freeze()
    name = (f"{backend.name}-k{args.split}-{args.point}{f'c{args.context}' if args.context else ''}"
            f"{f'-lin{args.step:g}' if args.linear else ''}{f'r{args.restore}' if args.restore else ''}"
            f"{'-cond' if args.table_context else ''}"
            f"{'-joint' if args.tasks == 'joint' else ''}"
            f"{'-' + args.tag if args.tag else ''}")
    final, ckpt = args.out / f"{name}.safetensors", args.out / f"{name}.ckpt.safetensors"
    if final.exists() and args.resume:
        print(f"{name}: done already ({final})")
        return
    data = synthetic_waves(args)
    n_syn = len(data)
    if not args.no_real:
        data += real_training_waves()
    print(f"training recordings: {n_syn} synthetic + {len(data) - n_syn} real "
          f"({sum(len(w) for w, _ in data) / 16000 / 3600:.2f} h)", flush=True)
    split = split_for(backend, args.split)
    items = teacher_items(split, [w for w, _ in data], args.cache, f"{args.seed}-{args.n_synthetic}-{args.no_real}")
    torch.manual_seed(args.seed)
    linear = None
    if args.linear and not args.init:
        split.compressor, linear = fit_linear(args, split, items, dims, bits, stride)
    else:  # a linear one with --init: its fitted weights are read below
        split.compressor = Compressor(split.width, dims, bits, stride, hidden=args.restore if args.linear else args.hidden,
                                      context=args.restore_kernel if args.restore else args.context,
                                      table_context=args.table_context, linear=int(args.linear)).to(backend.device)
    init = init_from(split.compressor, args.init, args.split, backend.fingerprint()) if args.init else None
    if args.linear and init:
        linear = requantize(split.compressor, init, args.step)
    if args.server_only:
        linear = keep_device_side(split.compressor, args.init, init, linear)
    common = dict(max_steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                  warmup_steps=min(args.warmup, max(1, args.steps // 10)), state_weight=args.state_weight,
                  rate_weight=args.rate_weight, seed=args.seed, bf16=args.bf16)
    sim_info = {}
    if args.tasks == "joint":
        items, sim_info = joint_training_items(args, split, items)
        settings = WhisperJointSettings(**common, speaker_weight=args.speaker_weight,
                                        profile_weight=args.profile_weight)
        trainer = WhisperJointTrainer(split, items, settings)
    else:
        settings = WhisperDistillSettings(**common)
        trainer = WhisperCompressorTrainer(split, items, settings)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.resume and ckpt.exists():
        trainer.load(ckpt)
        print(f"resumed at step {trainer.step} from {ckpt}", flush=True)
    t0, last = time.time(), {}

    def on_step(rec: dict) -> None:
        last.update(rec)
        if rec["step"] % 20 == 0 or rec["step"] == settings.max_steps:
            heads = (f", speaker {rec['speaker']:.4f}, profile {rec['profile']:.4f}" if "speaker" in rec else "")
            print(f"  step {rec['step']}/{settings.max_steps} loss {rec['loss']:.4f} (kl {rec['kl']:.4f}, "
                  f"states {rec['state']:.4f}, rate {rec['rate']:.3f} bits{heads}) lr {rec['lr']:.2e} "
                  f"{time.time() - t0:.0f} s", flush=True)

    while trainer.step < settings.max_steps:
        trainer.train(min(args.checkpoint_every, settings.max_steps - trainer.step), on_step=on_step)
        trainer.save(ckpt, extra={"last": last})
    if not args.server_only:  # server-only: the --init compressor's symbols and tables (keep_device_side)
        trainer.fit_tables()
    card = {"point": args.point, "dims": dims, "bits": bits, "stride": stride,
            "hidden": split.compressor.config.hidden, **({"linear": linear} if linear else {}),
            "context": split.compressor.config.context, "table_context": args.table_context,
            "split_layer": args.split, "model": backend.name, "steps_this_run": trainer.step,
            "steps": trainer.step + int((init or {}).get("steps") or 0), "last_step": last,
            "train_s_this_process": round(time.time() - t0, 1), "n_synthetic": n_syn,
            "n_real": len(data) - n_syn, "settings": {k: getattr(settings, k) for k in (
                "batch_size", "lr", "warmup_steps", "state_weight", "rate_weight", "seed", "bf16")},
            "corpus": "recipes/pretrain training voices and phrases (held-out ones excluded) + Asterisk prompts "
                      "outside bench_real_speech's 150-prompt test set", "threads": args.threads,
            "tasks": args.tasks, **({"initialized_from": init} if init else {}), **({"simulated_speakers": sim_info, "head_hidden": settings.head_hidden, "weights": {
                "speaker": args.speaker_weight, "profile": args.profile_weight}} if sim_info else {})}
    if args.validate:
        card["validation"] = validate(args, split)
        print(f"  held-out voices: {json.dumps(card['validation'])}", flush=True)
    save_compressor(split.compressor, final, split_layer=args.split, base_fingerprint=backend.fingerprint(), card=card)
    if args.tasks == "joint":
        from safetensors.torch import save_file

        save_file({f"{part}.{k}": v.detach().cpu().contiguous() for part in ("speaker", "profile")
                   for k, v in getattr(trainer, part).state_dict().items()},
                  str(final.with_suffix(".heads.safetensors")), metadata={"card": json.dumps(card)})
    print(f"{name}: {trainer.step} steps -> {final}", json.dumps(card), flush=True)


if __name__ == "__main__":
    main()
