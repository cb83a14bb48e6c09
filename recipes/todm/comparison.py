#!/usr/bin/env python
"""The TODM comparison (issue 29): the supernet, its three single-size twins and the four ablations, resumable.

Runs ``recipes/train_supernet.py`` once per run, one after the other, each with ``--resume``: run
this command again after any stop (Ctrl-C, a reboot, a killed job) and every run continues at its
last checkpoint; a finished run (its ``summary.json`` exists) is skipped. Then the table of every
size of every run goes to ``<out>/comparison.md`` (:func:`todm.export.compare`).

Budgets: each single size trains for ``--minutes`` (or ``--steps``); the supernet and each ablation
get ``--ratio`` times that (1.5 by default: the issue's "supernet's whole job costing <= 1.5x the
largest size trained alone"). Arguments after ``--`` go to every run (``--device cuda``,
``--threads 2``, ``--n-train 1500`` ...). See ``recipes/todm/README.md`` for the commands and the
compute they take.

    python recipes/todm/comparison.py --minutes 12 -- --threads 2 --n-train 1500
    python recipes/todm/comparison.py --steps 2000 -- --device cuda --threads 8 --n-train 6000
    python recipes/todm/comparison.py --quick          # every run, a few steps each: check the recipe
    python recipes/todm/comparison.py --dry-run ...    # print the commands only
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
TRAIN = HERE.parent / "train_supernet.py"

#: (run name, flags of train_supernet.py, whether it is a supernet run: budget x --ratio)
RUNS = (
    ("supernet", ["--mode", "supernet"], True),
    ("single-small", ["--mode", "single", "--size", "small"], False),
    ("single-medium", ["--mode", "single", "--size", "medium"], False),
    ("single-large", ["--mode", "single", "--size", "large"], False),
    ("ablation-no_adaptive_dropout", ["--mode", "supernet", "--ablation", "no_adaptive_dropout"], True),
    ("ablation-kl", ["--mode", "supernet", "--ablation", "kl"], True),
    ("ablation-adamw", ["--mode", "supernet", "--ablation", "adamw"], True),
    ("ablation-no_distill", ["--mode", "supernet", "--ablation", "no_distill"], True),
)


def default_out(quick: bool) -> Path:
    sys.path.insert(0, str(HERE.parent))
    from train_supernet import default_out as train_out

    out = train_out()
    return out.parent / "supernet-quick" if quick else out


def commands(args, extra: list[str]) -> list[tuple[str, list[str]]]:
    """``[(run name, argv)]`` of the runs asked for, in order."""
    out = []
    for name, flags, is_supernet in RUNS:
        if args.only and name not in args.only:
            continue
        scale = args.ratio if is_supernet else 1.0
        budget = []
        if args.minutes:
            budget += ["--minutes", f"{args.minutes * scale:g}"]
        if args.steps:
            budget += ["--steps", str(math.ceil(args.steps * scale))]
        cmd = [sys.executable, str(TRAIN), *flags, *budget, "--run-name", name, "--out", str(args.out), "--resume",
               *(["--quick"] if args.quick else []), *extra]
        out.append((name, cmd))
    return out


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=None, help="each single size's time budget (wall clock)")
    p.add_argument("--steps", type=int, default=None, help="each single size's step budget")
    p.add_argument("--ratio", type=float, default=1.5, help="the supernet's (and each ablation's) budget / a "
                   "single size's (default 1.5)")
    p.add_argument("--only", nargs="+", choices=[n for n, _, _ in RUNS], help="run only these")
    p.add_argument("--quick", action="store_true", help="a tiny corpus and a few steps per run (a smoke test)")
    p.add_argument("--out", type=Path, default=None, help="where the runs go (default: the recipe's)")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    args = p.parse_args(argv)
    if not args.quick and not (args.minutes or args.steps):
        p.error("give a budget: --minutes (at least 10 on a quiet CPU, see recipes/todm/README.md) or --steps")
    args.out = args.out or default_out(args.quick)
    runs = commands(args, extra)
    for name, cmd in runs:
        if (args.out / name / "summary.json").exists():
            print(f"{name}: done already ({args.out / name / 'summary.json'})", flush=True)
            continue
        print(f"{name}: {' '.join(cmd)}", flush=True)
        if not args.dry_run:
            rc = subprocess.call(cmd)
            if rc:
                print(f"{name} stopped (exit {rc}); run this command again to continue where it stopped",
                      file=sys.stderr)
                return rc
    if args.dry_run:
        return 0
    sys.path.insert(0, str(HERE.parent))
    from todm.export import compare

    done = [args.out / n for n, _ in runs if (args.out / n / "summary.json").exists()]
    if done:
        compare(done, args.out / "comparison.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
