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

**Whisper tiny.en** (``--model whisper-tiny.en``, issue 27 item 1; ``WHISPER_CANDIDATES``): which
layers get LoRA (the cached top half of the encoder and the decoder, every encoder layer, every
layer and the decoder), then the rank, the learning rate, speed perturbation and SpecAugment one
at a time around ``--around`` (a layer choice). Every run logs every ``--eval-every`` steps (5)
with its step and evaluation times (the study's own test transcriptions excluded), so the
evaluation interval and the patience are replayed on the same trajectories (``INTERVALS``,
``PATIENCES``) instead of trained again. A candidate is admissible only if its median step takes
at most ``STEP_LIMIT_S`` (2 s at batch 8 on ``--threads 2``) and its replayed run (steps and
evaluations) at most ``RUN_LIMIT_S`` (3 minutes) on the mean speaker; the admissible candidate with
the highest mean test reduction wins (``chosen`` in the file). Writes
``docs/bench/study_defaults_whisper.json``.

What is learned does not depend on the machine's speed, but the seconds do: the trajectories may
run on one thread beside other work, and ``--timing --threads 2`` then times ``TIMING_STEPS``
steps of every saved candidate on every speaker on a quiet machine
(``study_defaults_whisper_timing.partial.json``); where that pass has a run's candidate and speaker,
the limits are judged on its times (the table says which).

Every finished run is saved to ``docs/bench/study_defaults[_whisper].partial.json`` at once; a
rerun with the same settings skips what is there (``--fresh`` starts again), and the table covers
every run saved there, so the study can grow in stages: the three layer choices first
(``--candidates`` with their names), then the variants ``--around`` the winner.

Run: ``python -m bench.study_defaults [--model whisper-tiny.en] [--steps 120] [--seeds 0 1]
[--candidates none speed ...] [--out DIR] [--quick]``; ``--bank --seeds 0 1`` instead compares, for one bank job of all six, choosing
each speaker's rows on its own validation phrases against one joint choice (about 3 minutes per candidate and seed on 2 CPU cores; synthesis
needs espeak-ng and flite). Writes ``docs/bench/study_defaults.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

from bench._common import RESULTS_DIR, Partial, machine, write_result

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

WHISPER = "whisper-tiny.en"
# where LoRA goes on Whisper: LoRAConfig changes (top_layers 0 = every encoder layer)
LAYERS: dict[str, dict] = {
    "top half + decoder": {"top_layers": "half"},  # the bottom half of the encoder is computed once (cached)
    "every encoder layer": {"top_layers": 0, "decoder": False},
    "every layer + decoder": {"top_layers": 0, "decoder": True},
}
# one setting changed at a time around a layer choice: name suffix -> (LoRAConfig changes, TrainConfig changes)
VARIANTS: dict[str, tuple[dict, dict]] = {
    "rank 4": ({"rank": 4, "alpha": 8.0}, {}),
    "rank 16": ({"rank": 16, "alpha": 32.0}, {}),
    "lr 3e-4": ({}, {"learning_rate": 3e-4}),
    "lr 3e-3": ({}, {"learning_rate": 3e-3}),
    "no speed perturbation": ({}, {"speed_perturb": ()}),
    "SpecAugment": ({}, {"specaugment": "librispeech_adaptive"}),
}
# what every Whisper candidate starts from: the LoRA rank and scale, and the learning rate, of the default when
# the study began (2026-12-06). Pinned, so that adopting a winner (rank 4) does not change what the other
# names mean: "every layer + decoder" stays rank 8 in every seed (it had silently become rank 4).
STUDY_START: tuple[dict, dict] = ({"rank": 8, "alpha": 16.0}, {"learning_rate": 1e-3})
TIMING_STEPS = 12  # the quiet timing pass: training steps per candidate and speaker (an evaluation every 6)
INTERVALS, PATIENCES = (5, 10, 20), (3, 5, 8)  # evaluation interval (steps) and patience (evaluations) replayed
STEP_LIMIT_S, RUN_LIMIT_S = 2.0, 180.0  # a candidate's median step (batch 8, 2 threads) and replayed run


def whisper_candidates(around: str = "every layer + decoder") -> dict[str, tuple[dict, dict]]:
    """Name -> (LoRAConfig changes, TrainConfig changes): the three layer choices, then each
    :data:`VARIANTS` entry on top of ``around``.

    >>> list(whisper_candidates("every encoder layer"))[3]
    'every encoder layer, rank 4'
    """
    if around not in LAYERS:
        raise SystemExit(f"--around must be one of {list(LAYERS)}, got {around!r}")
    out = {name: (dict(layers), {}) for name, layers in LAYERS.items()}
    for suffix, (adapter, train) in VARIANTS.items():
        out[f"{around}, {suffix}"] = ({**LAYERS[around], **adapter}, dict(train))
    return out


def make_speakers(out: Path, n: int = 80, only: list[str] | None = None) -> list[Path]:
    """Synthesize the development speakers (``only`` these ids) into ``out`` (kept if already there)."""
    from workbench.simulate import simulate_speaker

    unknown = set(only or ()) - {s[0] for s in DEV_SPEAKERS}
    if unknown:
        raise SystemExit(f"unknown development speakers {sorted(unknown)}; they are {[s[0] for s in DEV_SPEAKERS]}")
    dirs = []
    for speaker_id, profile, voice, seed in DEV_SPEAKERS:
        if only and speaker_id not in only:
            continue
        if not (out / speaker_id / "manifest.jsonl").exists():
            simulate_speaker(out, speaker_id=speaker_id, voice=voice, profile=profile, prompts="everyday", n=n,
                             seed=seed)
        dirs.append(out / speaker_id)
    return dirs


def _config(model: str, candidate: str, backend, *, steps: int, eval_every: int, seed: int, quick: bool = False):
    """The :class:`TrainConfig` of ``candidate`` (``CANDIDATES`` for the built-in model,
    :func:`whisper_candidates` names for Whisper), step-bound, without early stopping."""
    import dataclasses

    from workbench.augment import POLICIES
    from workbench.trainer import TrainConfig
    from workbench.workflow import default_config

    bound = {"time_limit_s": None, "max_steps": steps, "patience": 0, "eval_every": eval_every, "seed": seed}
    if quick:
        bound["batch_size"] = 2
    if model != WHISPER:
        changes = dict(CANDIDATES[candidate])
        if "specaugment" in changes:
            changes["specaugment"] = POLICIES[changes["specaugment"]]
        return TrainConfig(**bound, **changes)
    adapter_changes, changes = _whisper_lookup(candidate)
    base = default_config(backend)  # the backend's own adapter family and settings, at STUDY_START's rank and rate
    adapter_changes = {**STUDY_START[0], **adapter_changes}
    changes = {**STUDY_START[1], **changes}  # giving an adapter would otherwise drop Whisper's rate
    if "specaugment" in changes:
        changes["specaugment"] = POLICIES[changes["specaugment"]]
    if adapter_changes.get("top_layers") == "half":
        adapter_changes = {**adapter_changes, "top_layers": max(1, backend.num_layers // 2)}
    adapter = dataclasses.replace(base.adapter, **adapter_changes)
    return default_config(backend, adapter=adapter, **bound, **changes)


def stale(saved: dict, expected) -> str | None:
    """Why a saved run no longer matches what its candidate means now (``expected``: its
    :class:`TrainConfig`): the adapter or the learning rate differ; None when they match."""
    now = json.loads(json.dumps(expected.to_dict()))
    for field in ("adapter", "learning_rate"):
        if saved["config"].get(field) != now.get(field):
            return f"{field} {saved['config'].get(field)} when it ran, {now.get(field)} now"
    return None


def _whisper_lookup(candidate: str) -> tuple[dict, dict]:
    for around in LAYERS:
        found = whisper_candidates(around).get(candidate)
        if found is not None:
            return found
    raise SystemExit(f"unknown Whisper candidate {candidate!r}; the candidates are {list(whisper_candidates())}")


def trajectory(speaker_dir: Path, candidate: str, *, steps: int, seed: int = 0, model: str = "tiny",
               eval_every: int = EVAL_EVERY, quick: bool = False, score_test: bool = True) -> dict:
    """Train ``candidate`` for ``steps`` steps (no early stopping); log every evaluation.

    Each row: ``step``, ``valid_wer``, ``valid_loss``, ``test_wer`` (this study only; not with
    ``score_test=False``), ``train_s`` (seconds so far without the test transcriptions).
    ``step_s``/``eval_s``: the median training step and validation evaluation, seconds (what a run
    of any interval and patience costs)."""
    import statistics

    import torch

    from bench.bench_personalization import _setup
    from workbench.evaluate import wer
    from workbench.models import load_base_model
    from workbench.trainer import Trainer

    backend = load_base_model(model)
    config = _config(model, candidate, backend, steps=steps, eval_every=eval_every, seed=seed, quick=quick)
    corpus, train, valid, test, decoder = _setup(speaker_dir, 50, backend=backend)
    if quick:
        test = test[:3]
    trainer = Trainer(backend, train, valid, config, decoder=decoder)
    refs, wavs = [e.text for e in test], [e.wav for e in test]
    rows: list[dict] = []
    spent = [0.0]  # time spent on the study's own test transcriptions, not training
    mark, step_times, eval_times = [0.0], [], []

    def on_start(e: dict) -> None:
        mark[0] = time.perf_counter()

    def on_step(e: dict) -> None:
        now = time.perf_counter()
        step_times.append(now - mark[0])
        mark[0] = now

    def on_eval(e: dict) -> None:
        t0 = time.perf_counter()
        eval_times.append(t0 - mark[0])
        row = {"step": e["step"], "valid_wer": e["wer"], "valid_loss": e["loss"]}
        if score_test:
            row["test_wer"] = wer(refs, trainer.adapted.transcribe(wavs, decoder=decoder))
        rows.append({**row, "train_s": e["elapsed_s"] - spent[0]})
        spent[0] += time.perf_counter() - t0
        mark[0] = time.perf_counter()

    trainer.on("on_start", on_start).on("on_step", on_step).on("on_eval", on_eval)
    trainer.fit()
    trainer.adapted.remove()
    return {"speaker": corpus.speaker_id, "candidate": candidate, "seed": seed, "rows": rows,
            "threads": torch.get_num_threads(),
            "step_s": statistics.median(step_times) if step_times else None,
            "eval_s": statistics.median(eval_times) if eval_times else None,
            "config": config.to_dict()}


def step_timing(speaker_dir: Path, candidate: str, *, model: str = WHISPER, steps: int = TIMING_STEPS) -> dict:
    """``candidate``'s median training step and validation evaluation (seconds) on this speaker, from
    ``steps`` steps and three evaluations, without the study's test transcriptions: the quiet
    timing pass (``--timing``) that the time limits are judged on."""
    t = trajectory(speaker_dir, candidate, steps=steps, model=model, eval_every=steps // 2, score_test=False)
    return {"steps": steps, **{key: t[key] for key in ("speaker", "candidate", "step_s", "eval_s", "threads")}}


def timing_key(candidate: str, speaker: str) -> str:
    """The timing pass's key of a (candidate, speaker): ``"candidate|speaker"``."""
    return f"{candidate}|{speaker}"


def load_timing(name: str) -> dict[str, dict]:
    """The quiet timing pass saved for study ``name`` (``{"candidate|speaker": row}``), or ``{}``."""
    return Partial.saved(f"{name}_timing", out_dir=RESULTS_DIR)


def replay(rows: list[dict], *, interval: int | None = None, patience: int = PATIENCE) -> dict[str, dict]:
    """The evaluation each rule keeps (see the module docstring); ``interval``: replay an
    evaluation every ``interval`` steps (a multiple of the logged one; None: every logged row).
    ``"stop"`` is the last evaluation the run would make (its step and how many evaluations).

    >>> rows = [{"step": s, "valid_wer": w, "valid_loss": w, "test_wer": w}
    ...         for s, w in [(0, .9), (5, .5), (10, .6), (15, .4), (20, .7), (25, .8)]]
    >>> r = replay(rows, interval=10, patience=1)
    >>> r["lowest_loss"]["step"], r["stop"]
    (10, {'step': 20, 'evaluations': 3})
    """
    if interval is not None:
        rows = [r for r in rows if r["step"] % interval == 0 or r is rows[-1]]
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
            if bad >= patience:
                break
    return {"lowest_wer": best, "lowest_loss": min(seen, key=lambda r: r["valid_loss"]),
            "oracle": min(rows, key=lambda r: r["test_wer"]),
            "stop": {"step": seen[-1]["step"], "evaluations": len(seen)}}


def summarize(trajectories: list[dict]) -> list[dict]:
    """One row per candidate and rule: mean test relative reduction, and per speaker (mean over seeds)."""
    cells: dict[tuple[str, str], dict[str, list[float]]] = {}
    for t in trajectories:
        base = t["rows"][0]["test_wer"]
        kept = replay(t["rows"])
        kept.pop("stop")
        for rule, r in kept.items():
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
            config = TrainConfig(time_limit_s=budget_per_speaker * len(dirs), per_speaker_selection=per_speaker,
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


def whisper_summary(trajectories: list[dict], *, logged_every: int, timing: dict[str, dict] | None = None) -> dict:
    """The Whisper study's tables from its trajectories.

    ``candidates``: per candidate, the mean test relative reduction of the checkpoint the trainer
    keeps (lowest validation loss; early stopping after ``PATIENCE`` evaluations without a lower
    validation WER, an evaluation every ``EVAL_EVERY`` steps), per speaker (mean over seeds), the
    oracle, the median step (s), the replayed run's mean and longest seconds, and whether it is
    admissible (``STEP_LIMIT_S``, ``RUN_LIMIT_S``); ``common_seeds``: the seeds every candidate ran, and
    each row's ``common_mean`` over those runs only (a study grown in stages gives some candidates
    more seeds: means over different seeds are not compared); ``chosen``: the admissible candidate
    with the highest ``common_mean``; ``schedules``: the chosen candidate under every replayed
    interval and patience.
    The seconds come from ``timing`` (the quiet timing pass, ``"candidate|speaker"`` keys) where it
    has the run's candidate and speaker, else from the run itself (``timed`` says which)."""
    import statistics

    def interval_ok(k: int) -> bool:
        return k % logged_every == 0

    timing = timing or {}

    def timed(t: dict) -> dict:
        return timing.get(timing_key(t["candidate"], t["speaker"]), t)

    def cell(ts: list[dict], interval: int, patience: int) -> dict:
        per: dict[str, list[float]] = {}
        oracle, seconds = [], []
        for t in ts:
            base = t["rows"][0]["test_wer"]
            kept = replay(t["rows"], interval=interval, patience=patience)
            rel = (lambda r: (base - r["test_wer"]) / base if base > 0 else 0.0)  # noqa: E731
            per.setdefault(t["speaker"], []).append(rel(kept["lowest_loss"]))
            oracle.append(rel(kept["oracle"]))
            cost = timed(t)
            seconds.append(kept["stop"]["step"] * cost["step_s"] + kept["stop"]["evaluations"] * cost["eval_s"])
        values = [v for vs in per.values() for v in vs]
        return {"mean_relative_reduction": sum(values) / len(values), "runs": len(values),
                "speakers": {k: sum(v) / len(v) for k, v in sorted(per.items())},
                "oracle_relative_reduction": sum(oracle) / len(oracle),
                "run_s_mean": sum(seconds) / len(seconds), "run_s_max": max(seconds)}

    interval = EVAL_EVERY if interval_ok(EVAL_EVERY) else logged_every
    by_candidate: dict[str, list[dict]] = {}
    for t in trajectories:
        by_candidate.setdefault(t["candidate"], []).append(t)
    seed_sets = [{t.get("seed", 0) for t in ts} for ts in by_candidate.values()]
    common = sorted(set.intersection(*seed_sets)) if seed_sets else []
    rows = []
    for name, ts in by_candidate.items():
        quiet = all(timing_key(t["candidate"], t["speaker"]) in timing for t in ts)
        shared = [t for t in ts if t.get("seed", 0) in common] or ts  # no seed in common: all its runs
        row = {"candidate": name, **cell(ts, interval, PATIENCE),
               "common_mean": cell(shared, interval, PATIENCE)["mean_relative_reduction"],
               "step_s": statistics.median(timed(t)["step_s"] for t in ts),
               "timed": "quiet timing pass" if quiet else "during the study's runs"}
        row["admissible"] = row["step_s"] <= STEP_LIMIT_S and row["run_s_mean"] <= RUN_LIMIT_S
        rows.append(row)
    rows.sort(key=lambda r: (-r["common_mean"], -r["mean_relative_reduction"]))
    admissible = [r for r in rows if r["admissible"]]
    chosen = admissible[0]["candidate"] if admissible else None
    schedules = []
    if chosen is not None:
        for k in (k for k in INTERVALS if interval_ok(k)):
            for patience in PATIENCES:
                schedules.append({"eval_every": k, "patience": patience, **cell(by_candidate[chosen], k, patience)})
    return {"candidates": rows, "chosen": chosen, "interval": interval, "patience": PATIENCE,
            "common_seeds": common, "schedules": schedules}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bank", action="store_true",
                        help="instead: a bank job for all development speakers, per-speaker vs joint choice")
    parser.add_argument("--model", default="tiny", choices=["tiny", WHISPER],
                        help="the base model (tiny = the built-in one)")
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--candidates", nargs="+", default=None,
                        help=f"default: all; the built-in model's: {list(CANDIDATES)}; Whisper's: "
                             f"{list(whisper_candidates())} (or around another layer choice, --around)")
    parser.add_argument("--around", default="every layer + decoder", choices=list(LAYERS),
                        help="Whisper: the layer choice the rank, rate and augmentation variants change")
    parser.add_argument("--eval-every", type=int, default=None,
                        help=f"steps between logged evaluations (default: {EVAL_EVERY}; Whisper {INTERVALS[0]}, "
                             "so that every replayed interval is a multiple)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the 2 s step limit is at 2)")
    parser.add_argument("--speakers", nargs="+", default=None, help="development speaker ids (default: all six)")
    parser.add_argument("--fresh", action="store_true", help="forget the runs of an interrupted study")
    parser.add_argument("--timing", action="store_true",
                        help=f"Whisper, on a quiet machine: instead of training, time {TIMING_STEPS} steps of each "
                             "candidate (default: every candidate saved) on each speaker at --threads; the time "
                             "limits are then judged on these times")
    parser.add_argument("--quick", action="store_true",
                        help="checks that it runs: one speaker of 24 takes, 4 steps, batch 2, two candidates")
    parser.add_argument("--out", default=None, help="where the development speakers are synthesized (default: temp)")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    whisper = args.model == WHISPER
    catalogue = list(whisper_candidates(args.around)) if whisper else list(CANDIDATES)
    candidates = args.candidates or (catalogue[:2] if args.quick else catalogue)
    for c in candidates:
        if whisper:
            _whisper_lookup(c)
        elif c not in CANDIDATES:
            parser.error(f"unknown candidate {c!r}; the built-in model's are {list(CANDIDATES)}")
    eval_every = args.eval_every or (2 if args.quick else INTERVALS[0] if whisper else EVAL_EVERY)
    steps = 4 if args.quick else args.steps
    name = "study_defaults" + ("_whisper" if whisper else "") + ("_quick" if args.quick else "")
    # the thread count changes only the speed, not what is learned: it is recorded per run, and the
    # time limits are judged on the quiet timing pass (--timing) where there is one
    partial = Partial(name, {"model": args.model, "steps": steps, "eval_every": eval_every},
                      fresh=args.fresh and not args.timing)
    if args.timing and not whisper:
        parser.error("--timing is for the Whisper study (--model whisper-tiny.en)")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        if args.bank:
            bank_selection(make_speakers(Path(args.out or tmp)), args.seeds)
            return
        dirs = make_speakers(Path(args.out or tmp), n=24 if args.quick else 80,
                             only=args.speakers or ([DEV_SPEAKERS[0][0]] if args.quick else None))
        if args.timing:
            timing_steps = 4 if args.quick else TIMING_STEPS
            timing = Partial(f"{name}_timing", {"model": args.model, "steps": timing_steps, "threads": args.threads},
                             fresh=args.fresh)
            saved = list(dict.fromkeys(t["candidate"] for t in partial.runs.values()))
            for candidate in args.candidates or saved or candidates:
                for d in dirs:
                    timing.run(timing_key(candidate, d.name), lambda d=d, candidate=candidate: step_timing(
                        d, candidate, model=args.model, steps=timing_steps))
                    print(f"timed {candidate} / {d.name}", flush=True)
            seeds = []
        else:
            seeds = args.seeds
        trajectories = []
        check = None  # a base model to check saved runs against what their candidate means now
        for seed in seeds:
            for candidate in candidates:
                for d in dirs:
                    key = f"{candidate}|{d.name}|seed {seed}"
                    done = key in partial
                    if done and "config" in partial.runs[key]:
                        if check is None:
                            from workbench.models import load_base_model

                            check = load_base_model(args.model)
                        why = stale(partial.runs[key], _config(args.model, candidate, check, steps=steps, seed=seed,
                                                               eval_every=eval_every, quick=args.quick))
                        if why:
                            raise SystemExit(f"the saved run {key!r} was trained with other settings ({why}); "
                                             f"remove it from {partial.path}, or start again with --fresh")
                    trajectories.append(partial.run(key, lambda d=d, candidate=candidate, seed=seed: trajectory(
                        d, candidate, steps=steps, seed=seed, model=args.model, eval_every=eval_every,
                        quick=args.quick)))
                    print(f"{candidate} / {d.name} / seed {seed}: {'saved earlier' if done else 'done'}", flush=True)
    # the table covers every run saved with these settings, so a study can grow in stages (the layer
    # choices first, then --around the winner): the partial file stays as the study's store
    trajectories = list(partial.runs.values())
    print(f"summarizing all {len(trajectories)} runs saved in {partial.path}", flush=True)
    if whisper:
        write_whisper(trajectories, name=name, steps=steps, eval_every=eval_every, wall_s=time.perf_counter() - t0,
                      timing=load_timing(name))
    else:
        write(trajectories, steps=steps, wall_s=time.perf_counter() - t0, name=name)


def write_whisper(trajectories: list[dict], *, name: str, steps: int, eval_every: int, wall_s: float | None,
                  timing: dict[str, dict] | None = None) -> Path:
    """Summarize, print and write ``docs/bench/study_defaults_whisper.json``."""
    summary = whisper_summary(trajectories, logged_every=eval_every, timing=timing)
    for r in summary["candidates"]:
        print(f"{r['candidate']:40s} {100 * r['common_mean']:+5.1f}% on seeds {summary['common_seeds']}, "
              f"{100 * r['mean_relative_reduction']:+5.1f}% on its {r['runs']} runs  "
              f"{r['step_s']:.2f} s/step, {r['run_s_mean']:.0f} s a run"
              + ("" if r["admissible"] else "  (over the limits)")
              + ("  <- chosen" if r["candidate"] == summary["chosen"] else ""))
    for r in summary["schedules"]:
        print(f"  every {r['eval_every']:2d} steps, patience {r['patience']}: "
              f"{100 * r['mean_relative_reduction']:+5.1f}%, {r['run_s_mean']:.0f} s a run")
    result = {"machine": machine("cpu"), "model": WHISPER, "steps": steps, "logged_every": eval_every,
              "limits": {"step_s": STEP_LIMIT_S, "run_s": RUN_LIMIT_S}, "timing": timing or {},
              "dev_speakers": [dict(zip(("id", "profile", "voice", "seed"), s, strict=True)) for s in DEV_SPEAKERS],
              **summary, "trajectories": trajectories, "wall_s": wall_s}
    path = write_result(name, result, out_dir=RESULTS_DIR)
    print(f"wrote {path}")
    return path


def write(trajectories: list[dict], *, steps: int, wall_s: float | None, name: str = "study_defaults") -> Path:
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
    path = write_result(name, result, out_dir=RESULTS_DIR)
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
