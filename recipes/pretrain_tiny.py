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
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
for _path in (REPO, REPO / "recipes"):  # the workbench package, and this recipe's stages (recipes/pretrain/)
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from pretrain.data import add_asterisk, add_corpus_arguments, build_data  # noqa: E402
from pretrain.evaluation import run_eval  # noqa: E402
from pretrain.training import train  # noqa: E402


# ----------------------------------------------------------------------------- main
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=REPO / "workbench" / "data" / "models" / "tiny")
    p.add_argument("--minutes", type=float, default=90.0, help="training time budget (wall clock)")
    p.add_argument("--threads", type=int, default=2)
    add_corpus_arguments(p, n_train=12000)  # --cache, --n-train ... --seed (recipes/pretrain/data.py)
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
