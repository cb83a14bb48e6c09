"""Choosing the training defaults on development speakers: augmentation, learning rate, checkpoint rule.

Chosen on DEVELOPMENT speakers, never on the sample speakers that docs/results.md
reports: six new simulated speakers with the same six atypical profiles as the
sample speakers but other voices, seeds and prompts (``DEV_SPEAKERS``). Each is
split as ``workflow.three_way_split`` splits (test 25 %, validation 15 % of the
rest, at most 50 training + validation takes) and trained with the default
adapter for ``--steps`` steps without early stopping, once per candidate setting
(``CANDIDATES``) and seed. At every evaluation (every 10 steps) the validation WER
and loss are logged and, for this study only, the WER on the development
speaker's test phrases. Runs are step-bound, not time-bound, so the figures do
not depend on the machine's speed (120 steps took 10-60 s on 2 CPU cores).

The checkpoint rules are replayed on each trajectory:

- ``lowest_wer``: the earlier rule (lowest validation WER, ties broken by the loss);
- ``lowest_loss``: the lowest validation loss;
- ``oracle``: the lowest *test* WER (not a rule: what a perfect choice would give).

Both real rules stop where the trainer's early stopping would (5 evaluations
without a lower validation WER).

Run: ``python -m bench.study_defaults [--steps 120] [--seeds 0 1] [--candidates none speed ...]
[--out DIR]``; ``--bank --seeds 0 1`` instead compares, for one bank job of all six, choosing
each speaker's rows on its own validation phrases against one joint choice (about 3 minutes per candidate and seed on 2 CPU cores; synthesis
needs espeak-ng and flite). Writes ``docs/bench/study_defaults.json``.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

from bench._common import RESULTS_DIR, machine, write_result

# speaker id, profile, voice, seed: the sample speakers' profiles with other voices
DEV_SPEAKERS = [
    ("dev-dysarthria-severe", "dysarthria-severe", "espeak:en-us+m4,rate=160,pitch=50", 301),
    ("dev-als-like", "als-like", "espeak:en-gb+f3,rate=150", 302),
    ("dev-parkinsonian", "parkinsonian:1.0+articulation:0.5", "espeak:en-us+m1,rate=170,pitch=40", 303),
    ("dev-stutter", "dysfluency:0.85", "espeak:en-us+f1,rate=170", 304),
    ("dev-accent", "accent:0.9+articulation:0.3", "espeak:en-029+m3", 305),
    ("dev-voice-tremor", "slow:0.6+tremor:0.9+breathy:0.7+monopitch:0.7+rush:0.3", "flite:kal16,pitch=-10", 306),
]
# name -> TrainConfig changes (on top of the defaults; "specaugment" names a policy)
CANDIDATES: dict[str, dict] = {
    "none": {"speed_perturb": ()},
    "speed 0.9/1.1": {"speed_perturb": (0.9, 1.1)},
    "speed 0.8-1.2": {"speed_perturb": (0.8, 0.9, 1.1, 1.2)},
    "SpecAugment": {"speed_perturb": (), "specaugment": "librispeech_adaptive"},
    "speed 0.9/1.1 + SpecAugment": {"speed_perturb": (0.9, 1.1), "specaugment": "librispeech_adaptive"},
    "lr 1e-3": {"speed_perturb": (), "learning_rate": 1e-3},
}
EVAL_EVERY, PATIENCE = 10, 5


def make_speakers(out: Path, n: int = 80) -> list[Path]:
    """Synthesize the development speakers into ``out`` (kept if already there)."""
    from workbench.simulate import simulate_speaker

    dirs = []
    for speaker_id, profile, voice, seed in DEV_SPEAKERS:
        if not (out / speaker_id / "manifest.jsonl").exists():
            simulate_speaker(out, speaker_id=speaker_id, voice=voice, profile=profile, prompts="everyday", n=n,
                             seed=seed)
        dirs.append(out / speaker_id)
    return dirs


def trajectory(speaker_dir: Path, candidate: str, *, steps: int, seed: int = 0) -> dict:
    """Train ``candidate`` for ``steps`` steps (no early stopping); log every evaluation."""
    from bench.bench_personalization import _setup
    from workbench.augment import POLICIES
    from workbench.evaluate import wer
    from workbench.models import load_base_model
    from workbench.trainer import TrainConfig, Trainer

    changes = dict(CANDIDATES[candidate])
    if "specaugment" in changes:
        changes["specaugment"] = POLICIES[changes["specaugment"]]
    corpus, train, valid, test, decoder = _setup(speaker_dir, 50)
    config = TrainConfig(max_seconds=None, max_steps=steps, patience=0, eval_every=EVAL_EVERY, seed=seed, **changes)
    trainer = Trainer(load_base_model("tiny"), train, valid, config, decoder=decoder)
    refs, wavs = [e.text for e in test], [e.wav for e in test]
    rows: list[dict] = []
    spent = [0.0]  # time spent on the study's own test transcriptions, not training

    def on_eval(e: dict) -> None:
        t0 = time.perf_counter()
        rows.append({"step": e["step"], "valid_wer": e["wer"], "valid_loss": e["loss"],
                     "test_wer": wer(refs, trainer.adapted.transcribe(wavs, decoder=decoder)),
                     "train_s": e["elapsed_s"] - spent[0]})
        spent[0] += time.perf_counter() - t0

    trainer.on("on_eval", on_eval)
    trainer.fit()
    return {"speaker": corpus.speaker_id, "candidate": candidate, "seed": seed, "rows": rows}


def replay(rows: list[dict]) -> dict[str, dict]:
    """The evaluation each rule keeps (see the module docstring)."""
    best, lowest, bad, seen = None, math.inf, 0, []
    for r in rows:
        seen.append(r)
        if best is None or r["valid_wer"] < best["valid_wer"] - 1e-9 or (
                abs(r["valid_wer"] - best["valid_wer"]) <= 1e-9 and r["valid_loss"] < best["valid_loss"]):
            best = r
        if r["valid_wer"] < lowest - 1e-9:
            lowest, bad = r["valid_wer"], 0
        else:
            bad += 1
            if bad >= PATIENCE:
                break
    return {"lowest_wer": best, "lowest_loss": min(seen, key=lambda r: r["valid_loss"]),
            "oracle": min(rows, key=lambda r: r["test_wer"])}


def summarize(trajectories: list[dict]) -> list[dict]:
    """One row per candidate and rule: mean test relative reduction, and per speaker (mean over seeds)."""
    cells: dict[tuple[str, str], dict[str, list[float]]] = {}
    for t in trajectories:
        base = t["rows"][0]["test_wer"]
        for rule, r in replay(t["rows"]).items():
            reduction = (base - r["test_wer"]) / base if base > 0 else 0.0
            cells.setdefault((t["candidate"], rule), {}).setdefault(t["speaker"], []).append(reduction)
    out = []
    for (candidate, rule), per in cells.items():
        speakers = {s: sum(v) / len(v) for s, v in sorted(per.items())}
        runs = sum(len(v) for v in per.values())
        out.append({"candidate": candidate, "rule": rule, "runs": runs,
                    "mean_relative_reduction": sum(sum(v) for v in per.values()) / runs, "speakers": speakers})
    return sorted(out, key=lambda r: (r["rule"], -r["mean_relative_reduction"]))


def bank_selection(dirs: list[Path], seeds: list[int], *, budget_per_speaker: float = 90.0) -> dict:
    """One bank job for all development speakers (default adapter, at most 50 takes each), once
    with each speaker's rows chosen on its own validation phrases and once with one joint choice;
    the test-phrase relative reduction per speaker. Writes ``docs/bench/study_bank_selection.json``."""
    from workbench.trainer import TrainConfig
    from workbench.workflow import train_bank

    t0, runs = time.perf_counter(), []
    for seed in seeds:
        for per_speaker in (True, False):
            config = TrainConfig(max_seconds=budget_per_speaker * len(dirs), per_speaker_selection=per_speaker,
                                 seed=seed)
            with tempfile.TemporaryDirectory() as tmp:
                run = train_bank(dirs, Path(tmp) / "bank.safetensors", config=config, max_train=50, progress=False)
            reductions = {sid: c.relative_reduction for sid, c in run.comparisons.items()}
            runs.append({"seed": seed, "per_speaker_selection": per_speaker, "steps": run.train_result.steps,
                         "train_s": run.train_result.seconds, "speakers": reductions,
                         "mean_relative_reduction": sum(reductions.values()) / len(reductions)})
            print(f"seed {seed}, {'per-speaker' if per_speaker else 'joint'} choice: "
                  f"{100 * runs[-1]['mean_relative_reduction']:+.1f}% "
                  + " ".join(f"{k}:{100 * v:+.0f}%" for k, v in reductions.items()), flush=True)
    result = {"machine": machine("cpu"), "budget_s": budget_per_speaker * len(dirs), "seeds": seeds, "runs": runs,
              "wall_s": time.perf_counter() - t0}
    print(f"wrote {write_result('study_bank_selection', result, out_dir=RESULTS_DIR)}")
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bank", action="store_true",
                        help="instead: a bank job for all development speakers, per-speaker vs joint choice")
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--candidates", nargs="+", default=list(CANDIDATES), choices=list(CANDIDATES))
    parser.add_argument("--out", default=None, help="where the development speakers are synthesized (default: temp)")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        dirs = make_speakers(Path(args.out or tmp))
        if args.bank:
            bank_selection(dirs, args.seeds)
            return
        trajectories = []
        for seed in args.seeds:
            for candidate in args.candidates:
                for d in dirs:
                    trajectories.append(trajectory(d, candidate, steps=args.steps, seed=seed))
                    print(f"{candidate} / {d.name} / seed {seed}: done", flush=True)
    write(trajectories, steps=args.steps, wall_s=time.perf_counter() - t0)


def write(trajectories: list[dict], *, steps: int, wall_s: float | None) -> Path:
    """Summarize, print and write ``docs/bench/study_defaults.json``."""
    table = summarize(trajectories)
    for row in table:
        print(f"{row['rule']:12s} {row['candidate']:30s} {100 * row['mean_relative_reduction']:+5.1f}% "
              f"({row['runs']} runs)  " + " ".join(f"{s}:{100 * v:+.0f}%" for s, v in row["speakers"].items()))
    result = {"machine": machine("cpu"), "steps": steps, "eval_every": EVAL_EVERY, "patience": PATIENCE,
              "dev_speakers": [dict(zip(("id", "profile", "voice", "seed"), s, strict=True)) for s in DEV_SPEAKERS],
              "candidates": {k: {n: list(v) if isinstance(v, tuple) else v for n, v in c.items()}
                             for k, c in CANDIDATES.items()},
              "summary": table, "trajectories": trajectories, "wall_s": wall_s}
    path = write_result("study_defaults", result, out_dir=RESULTS_DIR)
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
