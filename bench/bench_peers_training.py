"""Personalizing Whisper tiny.en: the workbench's Trainer against a PEFT + transformers ``Seq2SeqTrainer`` script.

The same speaker (an atypical sample speaker, copied to a temporary folder), the same
split (``workflow.three_way_split``: at most 50 recordings for training and validation,
the test phrases apart and never chosen on), the same weights, one after the other in
this process (the order alternates from seed to seed):

- **ours**: ``Trainer`` with ``default_config`` for Whisper tiny.en (what ``workbench
  personalize --model whisper-tiny.en`` does, without its 3-minute budget);
- **PEFT**: ``bench/peft_whisper_baseline.py``, the script a competent user would write
  from the Hugging Face blog, with the same LoRA rank, targets, learning rate, schedule,
  batch, evaluation interval and early stopping (:func:`peft_whisper_baseline.matched_settings`),
  bounded at ``--bound-s`` seconds of wall time.

Wall time counts from the first feature computation (model loading excluded on both sides) and
includes every validation evaluation (both evaluate at the start and every 10 steps). Each side
scores its own validation phrases with its own decoding (ours: the auto window; the script:
``generate`` on the 30 s window), both with the workbench's text normalization. Reported: the
wall time at which each first reaches the target validation WER, the lowest validation WER that
*both* runs reach (and the time to 40 % below ours' starting WER, when both get there), the ratio
ours / PEFT (goal <= 0.5), and each side's test WER before and after.

Acceptance (issue 27 item 4), over ``SPEAKERS`` (3) x ``--seeds`` (2) by default: the mean final test
WER of ours at or below the script's, and the median ratio of the wall times to the lowest validation
WER both reach at most ``GOAL`` (``summary`` in the file). Each finished (speaker, seed) pair is saved
to ``docs/bench/peers_training_cpu.partial.json`` at once; a rerun with the same settings goes on from
there (``--fresh`` starts again).

Run: ``python -m bench.bench_peers_training [--quick] [--speaker sim-dysarthria-severe ...] [--seeds 2]``
(opt-in: ``python -m bench --only peers_training``; about 15 minutes per speaker and seed).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._common import Partial, defaults_tag, machine, write_result

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_data"
MODEL = "whisper-tiny.en"
SPEAKER = "sim-dysarthria-severe"
# the default speakers: the two that reached the 50 % target last (docs/results.md) and the severe one
SPEAKERS = [SPEAKER, "sim-accent", "sim-parkinsonian"]
GOAL = 0.5  # ours at most half the PEFT script's wall time to the same validation WER

__all__ = ["GOAL", "SPEAKERS", "run", "summary", "time_to"]


def _splits(speaker: str, tmp: Path, quick: bool) -> tuple[list, list, list]:
    """Examples ``(train, valid, test)`` of a copy of the sample speaker."""
    from workbench.corpus import SpeakerCorpus
    from workbench.dataset import examples_from_corpus
    from workbench.workflow import three_way_split

    folder = tmp / speaker
    shutil.copytree(SAMPLE / speaker, folder)  # never write into sample_data/
    corpus = SpeakerCorpus.open(folder)
    train, valid, test = (examples_from_corpus(corpus, part) for part in three_way_split(corpus, max_train=50))
    if quick:
        train, valid, test = train[:10], valid[:2], test[:2]
    return train, valid, test


def _ours(train: list, valid: list, test: list, seed: int, quick: bool) -> dict[str, Any]:
    from workbench.evaluate import wer
    from workbench.models import load_base_model
    from workbench.trainer import Trainer
    from workbench.workflow import default_config

    backend = load_base_model(MODEL)
    settings: dict[str, Any] = {"seed": seed, "time_limit_s": None}
    if quick:
        settings.update(max_steps=2, eval_every=2, batch_size=2, speed_perturb=())
    config = default_config(backend, **settings)
    evals: list[dict] = []
    t0 = time.perf_counter()
    trainer = Trainer(backend, train, valid, config)
    trainer.on("on_eval", lambda e: evals.append({"step": e["step"], "wer": e["wer"], "loss": e["loss"],
                                                  "wall_s": time.perf_counter() - t0}))
    result = trainer.fit()
    wall = time.perf_counter() - t0
    refs, wavs = [e.text for e in test], [e.wav for e in test]
    after = wer(refs, trainer.adapted.transcribe(wavs))
    with trainer.adapted.disabled():
        before = wer(refs, trainer.adapted.transcribe(wavs))
    trainer.adapted.remove()
    return {"evals": evals, "steps": result.steps, "wall_s": wall, "best_step": result.best_step,
            "stopped": result.stopped_reason, "test_wer_before": before, "test_wer": after,
            "settings": config.to_dict()}


def _peft(train: list, valid: list, test: list, seed: int, quick: bool, bound_s: float, tmp: Path) -> dict[str, Any]:
    from bench.peft_whisper_baseline import load_whisper, matched_settings, train_and_evaluate

    model, processor = load_whisper()
    settings = {**matched_settings(), "seed": seed}
    if quick:
        settings.update(max_steps=2, eval_every=2, batch_size=2)
    t0 = time.perf_counter()
    out = train_and_evaluate(model, processor, [(e.wav, e.text) for e in train], [(e.wav, e.text) for e in valid],
                             [(e.wav, e.text) for e in test], tmp / f"peft-{seed}", settings, t0=t0,
                             time_limit_s=bound_s, test_before=True)
    return {**out, "settings": settings}


def time_to(evals: list[dict], target: float) -> float | None:
    """Wall seconds of the first evaluation at or below ``target`` validation WER (None: never).

    >>> time_to([{"wer": 0.5, "wall_s": 3.0}, {"wer": 0.2, "wall_s": 9.0}], 0.3)
    9.0
    """
    return next((e["wall_s"] for e in evals if e["wer"] <= target + 1e-9), None)


def compare(ours: dict, peft: dict) -> dict[str, Any]:
    """Targets and times to them; the ratio ours / PEFT (a bound when PEFT never got there)."""
    best_o, best_p = min(e["wer"] for e in ours["evals"]), min(e["wer"] for e in peft["evals"])
    out: dict[str, Any] = {"best_valid_wer": {"ours": best_o, "peft": best_p}}
    targets = {"lowest both reach": max(best_o, best_p)}
    start = ours["evals"][0]["wer"]
    if start > 0 and max(best_o, best_p) <= 0.6 * start:
        targets["40 % below ours' starting WER"] = 0.6 * start
    out["targets"] = []
    for name, target in targets.items():
        t_o, t_p = time_to(ours["evals"], target), time_to(peft["evals"], target)
        out["targets"].append({"target": name, "wer": target, "ours_s": t_o, "peft_s": t_p,
                               "ratio": t_o / t_p if t_o and t_p else None})
    # ours' time to its own best WER against the script's whole run, if the script never got as low
    if best_p > best_o:
        t_o = time_to(ours["evals"], best_o)
        out["ours_best_vs_peft_whole_run"] = {"wer": best_o, "ours_s": t_o, "peft_wall_s": peft["wall_s"],
                                              "ratio_bound": t_o / peft["wall_s"] if t_o else None}
    main = out["targets"][0]["ratio"]
    out["ratio"] = main
    out["met"] = None if main is None else main <= GOAL
    return out


def _pair(speaker: str, seed: int, splits: tuple[list, list, list], quick: bool, bound_s: float,
          tmp: Path) -> dict[str, Any]:
    """Both sides on one speaker and seed (the order alternates with the seed), compared."""
    train, valid, test = splits
    order = ["ours", "peft"] if seed % 2 == 0 else ["peft", "ours"]
    got: dict[str, dict] = {}
    for side in order:
        got[side] = _ours(train, valid, test, seed, quick) if side == "ours" else \
            _peft(train, valid, test, seed, quick, bound_s, tmp)
        r = got[side]
        curve = " ".join(f"{100 * e['wer']:.0f}" for e in r["evals"])
        print(f"{speaker} seed {seed} {side:4s}: {r['steps']} steps, {r['wall_s']:.0f} s ({r['stopped']}); "
              f"validation WER % {curve}; test WER "
              f"{100 * r['test_wer_before']:.1f}% -> {100 * r['test_wer']:.1f}%", flush=True)
    row = {"speaker": speaker, "seed": seed, "order": order, "ours": got["ours"], "peft": got["peft"],
           "sizes": [len(train), len(valid), len(test)], **compare(got["ours"], got["peft"])}
    for t in row["targets"]:
        show = lambda v: "not reached" if v is None else f"{v:.0f} s"  # noqa: E731
        ratio = "—" if t["ratio"] is None else f"{t['ratio']:.2f}x"
        print(f"   to validation WER {100 * t['wer']:.1f}% ({t['target']}): ours {show(t['ours_s'])}, "
              f"PEFT {show(t['peft_s'])} ({ratio})", flush=True)
    return row


def run(quick: bool, speakers: list[str], seeds: int, bound_s: float, *, fresh: bool = False) -> dict[str, Any]:
    """Every (speaker, seed) pair, resumable (see the module docstring); the table and :func:`summary`."""
    from workbench.models import load_base_model

    partial = Partial("peers_training_cpu" + ("_quick" if quick else ""),
                      {"model": MODEL, "bound_s": bound_s, "quick": quick,
                       "defaults": defaults_tag(load_base_model(MODEL))}, fresh=fresh)
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for speaker in speakers:
            splits = None
            for seed in range(seeds):
                key = f"{speaker}|seed {seed}"
                if key not in partial and splits is None:
                    splits = _splits(speaker, tmp, quick)
                rows.append(partial.run(key, lambda s=speaker, k=seed: _pair(s, k, splits, quick, bound_s, tmp)))
    out = {"model": MODEL, "goal": GOAL, "bound_s": bound_s, "sizes": rows[0]["sizes"] if rows else None,
           "rows": rows, "ratio": _median([r["ratio"] for r in rows if r["ratio"] is not None]),
           "summary": summary(rows)}
    partial.done()
    return out


def summary(rows: list[dict]) -> dict[str, Any]:
    """The acceptance figures over every (speaker, seed) pair: mean test WER of each side, the
    median time ratio to the lowest validation WER both reach, and whether each goal is met.

    >>> r = [{"ours": {"test_wer": .2}, "peft": {"test_wer": .3}, "ratio": .4},
    ...      {"ours": {"test_wer": .3}, "peft": {"test_wer": .3}, "ratio": .6}]
    >>> s = summary(r)
    >>> round(s["test_wer"]["ours"], 3), s["ratio_median"], s["test_met"], s["time_met"]
    (0.25, 0.5, True, True)
    """
    if not rows:
        return {}
    mean = {side: sum(r[side]["test_wer"] for r in rows) / len(rows) for side in ("ours", "peft")}
    ratios = [r["ratio"] for r in rows if r["ratio"] is not None]
    ratio = _median(ratios)
    return {"pairs": len(rows), "speakers": len({r.get("speaker") for r in rows}), "test_wer": mean,
            "test_met": mean["ours"] <= mean["peft"] + 1e-12, "ratio_median": ratio,
            "ratios_compared": len(ratios), "time_met": None if ratio is None else ratio <= GOAL}


def _median(values: list[float]) -> float | None:
    if not values:
        return None
    v = sorted(values)
    mid = len(v) // 2
    return v[mid] if len(v) % 2 else 0.5 * (v[mid - 1] + v[mid])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--device", default="cpu", help="cpu only: the script's Seq2SeqTrainer runs with use_cpu")
    parser.add_argument("--speaker", action="append", help=f"sample speakers (default {SPEAKERS})")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--fresh", action="store_true", help="forget the pairs of an interrupted run")
    parser.add_argument("--bound-s", type=float, default=1200.0, help="wall-time bound of the PEFT script's run")
    args = parser.parse_args(argv)
    from bench.peers import missing

    reason = missing("peft", "transformers", "jiwer")
    if reason:
        print(f"personalization against PEFT: {reason}")
        result: dict[str, Any] = {"missing": reason}
    else:
        t0 = time.perf_counter()
        result = run(args.quick, args.speaker or ([SPEAKER] if args.quick else SPEAKERS),
                     1 if args.quick else args.seeds, 60.0 if args.quick else args.bound_s, fresh=args.fresh)
        s = result["summary"]
        print(f"{s['pairs']} pairs: mean test WER ours {100 * s['test_wer']['ours']:.1f}%, PEFT script "
              f"{100 * s['test_wer']['peft']:.1f}% ({'met' if s['test_met'] else 'not met'}); median time ratio "
              f"to the lowest validation WER both reach: "
              + ("—" if s["ratio_median"] is None else f"{s['ratio_median']:.2f}x"))
        result["wall_s"] = time.perf_counter() - t0
    result["machine"] = machine("cpu")
    path = write_result("peers_training_cpu" + ("_quick" if args.quick else ""), result)
    print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main()
