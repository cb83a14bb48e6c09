"""Data efficiency: test WER after personalizing from 10, 25 and 50 recordings (issue 27 item 5).

For every atypical sample speaker and each base model (Whisper tiny.en and the built-in model),
the test phrases are those of ``workflow.three_way_split`` (seed 0), the same for every size and
model; the personal model learns from the first N of the speaker's other prompted recordings
(``three_way_split(max_train=N)``: training and validation together, as the six-speaker table's
50), step-based with the base model's defaults (early stopping; the time limit only a ceiling),
once per seed. With N = 10 about 8 recordings are left for training, fewer than a run needs by
default (``RUN_DEFAULTS.min_utterances``), so this benchmark lets it train on them to measure
what 10 buy.

Reported per model and size: the mean test WER before and after, the mean relative reduction,
its range over speakers. ``docs/bench/data_efficiency_cpu.json`` holds every run; each finished
run is saved to ``docs/bench/data_efficiency_cpu.partial.json`` at once and a rerun with the same
settings goes on from there (``--fresh`` starts again). A full run (not ``--quick``) also writes
the means, with their provenance, to ``workbench/data/recording_hint.json``, which the app's
Record page reads (:mod:`workbench.recording_hint`) to say how many more recordings are worth
making; the file is checked by the same parser the app uses before it is written.

Run: ``python -m bench.bench_data_efficiency [--quick] [--seeds 2] [--models whisper-tiny.en tiny]
[--speaker ID ...] [--no-hint]``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import time
from pathlib import Path
from typing import Any

from bench._common import Partial, defaults_tag, machine, write_result

SIZES = (10, 25, 50)
MODELS = ("whisper-tiny.en", "tiny")
ROOT = Path(__file__).resolve().parent.parent
COMMAND = "python -m bench.bench_data_efficiency"

__all__ = ["MODELS", "SIZES", "hint_table", "main", "summarize"]


def summarize(rows: list[dict]) -> dict[str, list[dict]]:
    """Model -> one entry per size: means over speakers and seeds, the range over speakers.

    >>> rows = [{"model": "m", "size": 10, "speaker": s, "seed": 0, "wer_before": .5, "wer_after": a,
    ...          "relative_reduction": 1 - a / .5} for s, a in (("x", .4), ("y", .3))]
    >>> e = summarize(rows)["m"][0]
    >>> e["recordings"], round(e["relative_reduction"], 2), e["runs"], [round(v, 2) for v in e["speaker_range"]]
    (10, 0.3, 2, [0.2, 0.4])
    """
    cells: dict[str, dict[int, list[dict]]] = {}
    for r in rows:
        cells.setdefault(r["model"], {}).setdefault(r["size"], []).append(r)
    out: dict[str, list[dict]] = {}
    for model, sizes in cells.items():
        out[model] = []
        for size, rs in sorted(sizes.items()):
            per: dict[str, list[float]] = {}
            for r in rs:
                per.setdefault(r["speaker"], []).append(r["relative_reduction"])
            speaker_means = [sum(v) / len(v) for v in per.values()]
            out[model].append({
                "recordings": size, "runs": len(rs), "speakers": len(per),
                "wer_before": sum(r["wer_before"] for r in rs) / len(rs),
                "wer_after": sum(r["wer_after"] for r in rs) / len(rs),
                "relative_reduction": sum(r["relative_reduction"] for r in rs) / len(rs),
                "speaker_range": [min(speaker_means), max(speaker_means)],
                "train_utterances": sum(r["train_utterances"] for r in rs) / len(rs) if "train_utterances" in rs[0]
                else None})
    return out


def hint_table(result: dict[str, Any], *, source: str) -> dict[str, Any]:
    """The Record page's table (``workbench/data/recording_hint.json``) from a full result."""
    from workbench.defaults import RUN_DEFAULTS

    m = result["machine"]
    keep = ("recordings", "relative_reduction", "wer_before", "wer_after", "runs")
    return {"format": 1, "source": source, "command": result["command"],
            "measured": result["measured"], "machine": f"{m['cpu']}, {m['cores']} cores, torch {m['torch']}",
            "speakers": result["speakers"], "seeds": result["seeds"], "test_fraction": RUN_DEFAULTS.test_fraction,
            "note": "written by bench/bench_data_efficiency.py from the result named in 'source'; do not edit",
            "models": {model: [{k: e[k] for k in keep} for e in entries]
                       for model, entries in result["summary"].items()}}


def _run(speaker_dir: Path, model: str, size: int, seed: int, quick: bool) -> dict:
    from bench.bench_personalization import run_one

    row = run_one(speaker_dir, None, max_train=size, seed=seed, model=model, min_utterances=1,
                  max_steps=4 if quick else None)
    return {**row, "model": model, "size": size}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from workbench.corpus import list_speakers
    from workbench.demo import DEMO_SPEAKER, default_sample_dir
    from workbench.embeddings import speaker_profile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="checks that it runs: one speaker, 4 steps, sizes 10 and 25 (never writes the hint)")
    parser.add_argument("--seeds", type=int, default=2, help="training seeds per speaker, model and size")
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--speaker", action="append", help="sample speakers (default: every atypical one)")
    parser.add_argument("--no-hint", action="store_true", help="do not write workbench/data/recording_hint.json")
    parser.add_argument("--fresh", action="store_true", help="forget the runs of an interrupted study")
    args = parser.parse_args(argv)
    sample = default_sample_dir()
    speakers = args.speaker or ([DEMO_SPEAKER] if args.quick else
                                [c.speaker_id for c in list_speakers(sample) if speaker_profile(c) != "typical"])
    sizes, seeds = (SIZES[:2] if args.quick else SIZES), (1 if args.quick else args.seeds)
    name = "data_efficiency_cpu" + ("_quick" if args.quick else "")
    from workbench.models import load_base_model

    defaults = {m: defaults_tag(load_base_model(m)) for m in args.models}  # runs of other defaults are not reused
    partial = Partial(name, {"sizes": list(sizes), "quick": args.quick, "defaults": defaults}, fresh=args.fresh)
    t0, rows = time.perf_counter(), []
    for model in args.models:
        for speaker in speakers:
            for size in sizes:
                for seed in range(seeds):
                    rows.append(partial.run(f"{model}|{speaker}|{size}|seed {seed}",
                                            lambda m=model, s=speaker, n=size, k=seed: _run(sample / s, m, n, k,
                                                                                          args.quick)))
    summary = summarize(rows)
    for model, entries in summary.items():
        for e in entries:
            print(f"{model:16s} {e['recordings']:3d} recordings: WER {100 * e['wer_before']:.1f}% -> "
                  f"{100 * e['wer_after']:.1f}% ({100 * e['relative_reduction']:+.0f}%; speakers "
                  f"{100 * e['speaker_range'][0]:+.0f}..{100 * e['speaker_range'][1]:+.0f}%)", flush=True)
    result = {"machine": machine("cpu"), "sizes": list(sizes), "seeds": seeds, "models": args.models,
              "speakers": speakers, "step_based": True, "summary": summary, "rows": rows,
              "measured": datetime.date.today().isoformat(),
              "command": COMMAND + (f" --seeds {seeds}" if seeds != 2 else ""), "wall_s": time.perf_counter() - t0}
    path = write_result(name, result)
    partial.done()
    print(f"wrote {path}")
    if not args.quick and not args.no_hint:
        from workbench.recording_hint import HINT_FILE, parse_table

        try:
            source = str(path.resolve().relative_to(ROOT))
        except ValueError:
            source = str(path)
        table = hint_table(result, source=source)
        parse_table(table)  # what the app accepts, or a plain error here rather than on the page
        HINT_FILE.write_text(json.dumps(table, indent=1) + "\n")
        print(f"wrote {HINT_FILE} (the Record page's estimate)")
    return result


if __name__ == "__main__":
    main()
