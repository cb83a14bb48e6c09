"""Personalization results on the sample speakers: families, baselines, time to target, data efficiency.

For every atypical sample speaker and every adapter family (plus full and
last-layers fine-tuning as references): train from at most 50 utterances for at
most 90 s with default settings on the frozen built-in model, then score the
held-out phrases (never trained on) with the base and the personal model, with
the same decoder. Reports WER before/after, the relative reduction, trainable
parameters per speaker, training time, and the time at which the held-out WER
first reached the target (a 40 % relative reduction). The validation recordings
(15 % of the training prompts) decide early stopping and the checkpoint; the
test phrases are scored once, at the end.

Data efficiency (one speaker): WER after personalization with 5/10/20/40/all
training utterances, for an HRA adapter from scratch vs a warm start inside a
speaker-embedding space learned on the *other* speakers (leave-one-out).

Run: ``python -m bench.bench_personalization [--quick] [--study] [--speaker ID] [--family hra]``.
Without ``--study`` (as in ``python -m bench``) only the default adapter family
runs, which fits the suite's 15-minute budget; ``--study`` adds every family,
full fine-tuning and the curve (``docs/bench/personalization_study.json``).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench._common import RESULTS_DIR, Partial, defaults_tag, machine, write_result

TARGET = 0.40  # relative WER reduction to reach


def _setup(speaker_dir: Path, max_train: int, seed: int = 0, *, backend=None):
    """(corpus, train, valid, test, decoder): the split of :func:`workbench.workflow.personalize_speaker`;
    ``backend``: the base model (a sequence-to-sequence one decodes with its own search: decoder None)."""
    from workbench.corpus import SpeakerCorpus
    from workbench.dataset import examples_from_corpus
    from workbench.workflow import build_decoder, three_way_split

    corpus = SpeakerCorpus.open(speaker_dir)
    parts = three_way_split(corpus, test_fraction=0.25, seed=seed, max_train=max_train)
    return (corpus, *(examples_from_corpus(corpus, p) for p in parts),
            build_decoder("lexicon", prompts=corpus.prompts(), backend=backend))


def _score(backend, adapted, held_out, decoder) -> tuple[float, float]:
    from workbench.evaluate import wer

    refs = [e.text for e in held_out]
    wavs = [e.wav for e in held_out]
    if adapted is None:
        return wer(refs, backend.transcribe(wavs, decoder=decoder)), float("nan")
    with adapted.disabled():
        before = wer(refs, adapted.transcribe(wavs, decoder=decoder))
    return before, wer(refs, adapted.transcribe(wavs, decoder=decoder))


def run_one(speaker_dir: Path, family: str | None, *, budget: float | None = None, max_train: int = 50, policy=None,
            seed: int = 0, model: str = "tiny", max_steps: int | None = None,
            min_utterances: int | None = None) -> dict:
    """Train one family (or 'full'/'last_layers'; None: the base model's default) on one speaker: the row.

    Step-based by default (``budget`` None): the run ends on early stopping or at the base
    model's step limit (:data:`workbench.defaults.RUN_DEFAULTS`), with the time limit only a
    ceiling, so the row does not depend on how busy the machine is; ``budget``: a time limit
    in seconds instead (the earlier tables). ``max_steps``: another step limit (``--quick``);
    ``min_utterances``: fewer training recordings accepted than a run needs by default
    (bench/bench_data_efficiency.py trains from as few as 10 recordings, validation included).
    ``model``: the base model (``tiny``: the built-in one; ``whisper-tiny.en``: with its own
    defaults when ``family`` is its default family: LoRA where and at the rate it trains).
    ``policy``: a SpecAugment policy instead of the default one (see :func:`choose_policy`);
    ``seed``: the training seed (initial weights, batch order); the split is always seed 0.
    """
    from workbench.adapters import REGISTRY
    from workbench.defaults import RUN_DEFAULTS
    from workbench.models import load_base_model
    from workbench.trainer import TrainConfig, Trainer
    from workbench.workflow import default_config

    backend = load_base_model(model)
    corpus, train, valid, held_out, decoder = _setup(speaker_dir, max_train, backend=backend)
    limits = {"time_limit_s": RUN_DEFAULTS.time_limit_s if budget is None else budget, "seed": seed,
              "max_steps": max_steps or RUN_DEFAULTS.max_steps_for(backend)}
    if min_utterances is not None:
        limits["min_utterances"] = min_utterances
    if family is None or family == default_config(backend).adapter.family:
        config = default_config(backend, **limits)
        family = config.adapter.family
    elif family in REGISTRY:
        config = default_config(backend, adapter=REGISTRY[family][0](), **limits)
    else:
        config = TrainConfig(mode=family, learning_rate=3e-4, **limits)
    if policy is not None:
        config.specaugment = None if policy.name == "none" else policy
    base_wer, _ = _score(backend, None, held_out, decoder) if config.mode != "adapter" else (None, None)
    trainer = Trainer(backend, train, valid, config, decoder=decoder)
    t_target = {}

    def on_eval(e: dict) -> None:
        if e["step"] == 0:
            t_target["base"] = e["wer"]
        elif "t" not in t_target and e["wer"] <= (1 - TARGET) * t_target["base"]:
            t_target["t"] = e["elapsed_s"]

    trainer.on("on_eval", on_eval)
    t0 = time.perf_counter()
    result = trainer.fit()
    wall = time.perf_counter() - t0
    if trainer.adapted is not None:
        before, after = _score(backend, trainer.adapted, held_out, decoder)
        per_speaker = result.parameter_report["per_speaker"]
        trainer.adapted.remove()
    else:
        before, after = base_wer, _score(backend, None, held_out, decoder)[0]
        per_speaker = sum(p.numel() for p in trainer.params)
    row = {"speaker": corpus.speaker_id, "model": backend.name, "family": family, "seed": seed,
           "train_utterances": len(train), "max_steps": config.max_steps, "cut_short": result.cut_short,
           "settings": config.to_dict(),
           "valid_utterances": len(valid), "held_out_utterances": len(held_out),
           "specaugment": "none" if config.specaugment is None else config.specaugment.name,
           "speed_perturb": list(config.speed_perturb),
           "valid_wer_before": result.wer_before, "valid_wer_best": result.best_wer, "params_per_speaker": per_speaker,
           "params_percent": 100 * per_speaker / backend.num_parameters(), "wer_before": before,
           "wer_after": after, "relative_reduction": (before - after) / before if before > 0 else 0.0,
           "train_s": result.seconds, "wall_s": wall, "steps": result.steps,
           "time_to_target_s": t_target.get("t"), "stopped": result.stopped_reason}
    print(f"{row['speaker']:24s} {family:11s} {result.steps} steps ({result.stopped_reason}), WER {100 * before:5.1f}% -> {100 * after:5.1f}% "
          f"({100 * row['relative_reduction']:+.0f}%), {per_speaker:,} params, {result.seconds:.0f} s, "
          f"target at {row['time_to_target_s'] if row['time_to_target_s'] is not None else '-'} s")
    return row


def data_efficiency(speaker_dir: Path, sample_dir: Path, *, budget: float | None, sizes: list[int],
                    space_budget: float) -> dict:
    """WER vs training utterances: HRA from scratch vs warm start in a leave-one-out embedding space."""
    from workbench.adapters import HRAConfig, warm_start
    from workbench.corpus import list_speakers
    from workbench.dataset import examples_from_corpus
    from workbench.models import load_base_model
    from workbench.trainer import TrainConfig, Trainer

    from workbench.text import normalize_text

    target, train_all, valid, held_out, decoder = _setup(speaker_dir, 10_000)
    others = [c for c in list_speakers(sample_dir) if c.speaker_id != target.speaker_id]
    # The space's shared weights must not hear the target's test phrases, even in other voices.
    test_texts = {normalize_text(e.text) for e in held_out}
    train_space, held_space = [], []
    for row, c in enumerate(others):
        tr, te = c.split(test_fraction=0.25, seed=0)
        tr = [u for u in tr if normalize_text(u.transcript or u.prompt) not in test_texts]
        train_space += examples_from_corpus(c, tr, speaker=row)
        held_space += examples_from_corpus(c, te[:3], speaker=row)
    backend = load_base_model("tiny")
    space_cfg = TrainConfig(adapter=HRAConfig(space="embedding"), time_limit_s=space_budget, max_steps=100_000,
                            patience=0, eval_every=100)
    space = Trainer(backend, train_space, held_space, space_cfg)
    space.fit()
    with tempfile.TemporaryDirectory() as tmp:
        bank_file = space.adapted.save(Path(tmp) / "space.safetensors", speaker_ids=[c.speaker_id for c in others])
        space.adapted.remove()
        curve: dict = {"speaker": target.speaker_id, "sizes": [], "scratch": [], "warm": [], "base": None}
        for n in sizes:
            n = min(n, len(train_all))
            subset = train_all[:n]
            rows = {}
            for kind in ("scratch", "warm"):
                if kind == "scratch":
                    cfg = TrainConfig(adapter=HRAConfig(), time_limit_s=budget, min_utterances=1)
                    trainer = Trainer(backend, subset, valid, cfg, decoder=decoder)
                else:
                    cfg = TrainConfig(adapter=HRAConfig(space="embedding"), time_limit_s=budget, min_utterances=1,
                                      learning_rate=3e-2)
                    trainer = Trainer(backend, subset, valid, cfg, decoder=decoder,
                                      adapted=warm_start(backend, bank_file))
                trainer.fit()
                before, after = _score(backend, trainer.adapted, held_out, decoder)
                trainer.adapted.remove()
                rows[kind] = after
                curve["base"] = before
            curve["sizes"].append(n)
            curve["scratch"].append(rows["scratch"])
            curve["warm"].append(rows["warm"])
            print(f"{target.speaker_id}: {n:3d} utterances: scratch {100 * rows['scratch']:.1f}%, "
                  f"warm start {100 * rows['warm']:.1f}% (base {100 * curve['base']:.1f}%)")
    return curve


def bank_job(speaker_dirs: list[Path], *, budget: float | None, max_train: int = 50) -> dict:
    """Every speaker in one bank job (default adapter, one row each, at most ``max_train`` takes
    each, a budget of ``budget`` seconds per speaker; None: step-based), scored on each speaker's test phrases."""
    from workbench.trainer import TrainConfig
    from workbench.workflow import train_bank

    t0 = time.perf_counter()
    config = TrainConfig(time_limit_s=None if budget is None else budget * len(speaker_dirs))
    with tempfile.TemporaryDirectory() as tmp:
        run = train_bank(speaker_dirs, Path(tmp) / "bank.safetensors", config=config, max_train=max_train,
                         progress=False)
    r = run.train_result
    rows = [{"speaker": sid, "wer_before": c.wer_before, "wer_after": c.wer_after,
             "relative_reduction": c.relative_reduction, "held_out": len(c.utterances)}
            for sid, c in run.comparisons.items()]
    for row in rows:
        print(f"{row['speaker']:24s} {100 * row['wer_before']:5.1f}% -> {100 * row['wer_after']:5.1f}% "
              f"({100 * row['relative_reduction']:+.0f}%, {row['held_out']} test phrases)")
    print(f"one bank job: {r.steps} steps in {r.seconds:.0f} s ({r.stopped_reason})")
    if r.speaker_steps:
        for row, step in zip(rows, r.speaker_steps, strict=True):
            row["kept_step"] = step
    return {"machine": machine(), "family": config.adapter.family, "budget_s": config.time_limit_s,
            "max_train": max_train, "steps": r.steps, "train_s": r.seconds, "stopped": r.stopped_reason,
            "per_speaker_selection": r.speaker_steps is not None, "rows": rows, "wall_s": time.perf_counter() - t0}


#: Candidate SpecAugment policies for personalization from <= 50 utterances.
SMALL_DATA_CANDIDATES = {
    "none": ("none", {}),
    "librispeech_adaptive": ("librispeech_adaptive", {}),
    "light_adaptive": ("librispeech_adaptive", {"freq_width": 15, "time_masks": 10, "adaptive_multiplicity": 0.02}),
    "strong_adaptive": ("librispeech_adaptive", {"adaptive_multiplicity": 0.08}),
}


def choose_policy(speakers: list[Path], *, budget: float | None) -> dict:
    """Train the default adapter on each speaker with each candidate policy.

    The choice is made on the *validation* recordings (mean relative reduction of the
    validation WER), never on the test phrases; the test figures are reported beside it.
    """
    from workbench.augment import POLICIES
    from workbench.trainer import TrainConfig

    family = TrainConfig().adapter.family
    rows = []
    for name, spec in SMALL_DATA_CANDIDATES.items():
        policy = POLICIES[spec[0]].replace(name=name, **spec[1])
        for speaker in speakers:
            row = run_one(speaker, family, budget=budget, policy=policy)
            row["policy"] = name
            row["policy_dict"] = policy.to_dict()
            rows.append(row)

    return {"family": family, "rows": rows, **policy_summary(rows)}


def policy_summary(rows: list[dict]) -> dict:
    """Mean validation and test relative reductions per policy, and the choice (best on validation)."""
    def relative(r: dict, on: str) -> float:
        if on == "valid":
            return (r["valid_wer_before"] - r["valid_wer_best"]) / max(r["valid_wer_before"], 1e-9)
        return r["relative_reduction"]

    names = list(dict.fromkeys(r["policy"] for r in rows))
    summary = {}
    for n in names:
        mine = [r for r in rows if r["policy"] == n]
        summary[n] = {on + "_relative": sum(relative(r, on) for r in mine) / len(mine) for on in ("valid", "test")}
        summary[n]["speakers"] = len(mine)
    chosen = max(summary, key=lambda n: summary[n]["valid_relative"])
    for n, v in summary.items():
        print(f"{n:22s} validation {100 * v['valid_relative']:+.0f}%  test {100 * v['test_relative']:+.0f}%"
              + ("  <- chosen" if n == chosen else ""))
    return {"summary": summary, "chosen": chosen}


def plot_curves(curves: list[dict], path: Path) -> None:
    """One panel per speaker: held-out WER vs training utterances, scratch vs warm start."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5 * len(curves), 3.6), layout="constrained")
    for i, curve in enumerate(curves):
        ax = fig.add_subplot(1, len(curves), i + 1)
        ax.plot(curve["sizes"], [100 * w for w in curve["scratch"]], "o-", label="HRA from scratch")
        ax.plot(curve["sizes"], [100 * w for w in curve["warm"]], "s-", label="warm start in the speaker space")
        ax.axhline(100 * curve["base"], color="grey", ls="--", label="base model")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("training utterances")
        ax.set_ylabel("test-phrase ASR word error rate (%)")
        ax.set_title(f"Data efficiency: {curve['speaker']}")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> None:
    from workbench.adapters import REGISTRY
    from workbench.corpus import list_speakers
    from workbench.demo import DEMO_SPEAKER, default_sample_dir
    from workbench.embeddings import speaker_profile
    from workbench.trainer import TrainConfig

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one speaker, 4 steps: checks that it runs")
    parser.add_argument("--study", action="store_true",
                        help="every family plus full fine-tuning, and the data-efficiency curve (about an hour "
                             "on 2 cores); without it: the default adapter only (the benchmark suite)")
    parser.add_argument("--speaker", action="append")
    parser.add_argument("--family", action="append", choices=[*sorted(REGISTRY), "full", "last_layers"])
    parser.add_argument("--budget", type=float, default=None,
                        help="training seconds per run instead of the step-based defaults (early stopping, the "
                             "base model's step limit, the time limit only a ceiling): the earlier tables")
    parser.add_argument("--model", default="tiny", help="the base model (tiny: the built-in one; whisper-tiny.en)")
    parser.add_argument("--fresh", action="store_true", help="forget the runs of an interrupted table")
    parser.add_argument("--no-curve", action="store_true")
    parser.add_argument("--seeds", type=int, default=1, help="training seeds per speaker and family")
    parser.add_argument("--curve-only", metavar="SPEAKER",
                        help="add a data-efficiency curve for SPEAKER to the existing study results")
    parser.add_argument("--policies", action="store_true",
                        help="choose the small-data SpecAugment policy (default adapter, every atypical speaker)")
    parser.add_argument("--bank", action="store_true",
                        help="one bank job for every atypical speaker (workbench train-bank) vs the separate runs")
    args = parser.parse_args(argv)
    sample = default_sample_dir()
    speakers = args.speaker or ([DEMO_SPEAKER] if args.quick else
                                [c.speaker_id for c in list_speakers(sample) if speaker_profile(c) != "typical"])
    default_family = TrainConfig().adapter.family
    if args.curve_only:
        import json

        path = RESULTS_DIR / "personalization_study.json"
        study = json.loads(path.read_text())
        curve = data_efficiency(sample / args.curve_only, sample, budget=args.budget, sizes=[5, 10, 20, 40, 60],
                                space_budget=300.0)
        study["curves"] = [c for c in study.get("curves", []) if c["speaker"] != curve["speaker"]] + [curve]
        write_result("personalization_study", study)
        plot_curves(study["curves"], path.with_suffix(".png"))
        print(f"wrote {path}")
        return
    if args.bank:
        result = bank_job([sample / s for s in speakers], budget=args.budget)
        print(f"wrote {write_result('personalization_bank' + ('_quick' if args.quick else ''), result)}")
        return
    if args.policies:
        t0 = time.perf_counter()
        result = choose_policy([sample / s for s in speakers], budget=args.budget)
        result.update(machine=machine(), budget_s=args.budget, wall_s=time.perf_counter() - t0)
        print(f"wrote {write_result('personalization_policies' + ('_quick' if args.quick else ''), result)}")
        return
    families = args.family or (["hra", "residual", "conv", "lora", "full"] if args.study else [default_family])
    budget, max_steps = args.budget, (4 if args.quick else None)
    name = ("personalization" + ("" if args.model == "tiny" else "_" + args.model.split("-")[0])
            + ("_study" if args.study else "") + ("_seeds" if args.seeds > 1 else "") + ("_quick" if args.quick else ""))
    # every finished run is kept at once; a rerun with the same settings goes on from there
    from workbench.models import load_base_model

    partial = Partial(name, {"model": args.model, "budget_s": budget, "max_steps": max_steps,
                             "defaults": defaults_tag(load_base_model(args.model))}, fresh=args.fresh)
    t0 = time.perf_counter()
    rows = [partial.run(f"{s}|{f}|seed {k}", lambda s=s, f=f, k=k: run_one(
                sample / s, f, budget=budget, seed=k, model=args.model, max_steps=max_steps))
            for s in speakers for f in families for k in range(args.seeds)]
    result: dict = {"machine": machine(), "budget_s": budget, "target_relative_reduction": TARGET, "rows": rows,
                    "model": args.model, "step_based": budget is None}
    if args.study and not args.no_curve:
        sizes = [5, 10] if args.quick else [5, 10, 20, 40, 60]
        curve_speaker = DEMO_SPEAKER if DEMO_SPEAKER in speakers else speakers[0]
        result["curves"] = [data_efficiency(sample / curve_speaker, sample, budget=budget, sizes=sizes,
                                          space_budget=20.0 if args.quick else 300.0)]
    result["wall_s"] = time.perf_counter() - t0
    path = write_result(name, result)
    partial.done()
    if result.get("curves"):
        plot_curves(result["curves"], path.with_suffix(".png"))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
