"""The vector adapter family against LoRA: word errors on the six atypical sample speakers, 3 seeds (opt-in).

For each atypical sample speaker and seed, one personalization with the base model's
default LoRA and one with the vector family ((IA)^3 by default) on the same layers
(``top_layers`` and ``decoder`` copied from the default LoRA), each with its family's
own learning rate and otherwise the workbench's defaults (:func:`workbench.workflow.prepare`:
the same three-way split per seed, early stopping on the validation recordings, the test
phrases scored once). Reported per family: parameters per speaker, test WER before and
after (mean and spread over speakers and seeds), training seconds; and every run.
The mixed-batch cost of each family is ``bench_peers`` / ``bench_peers_whisper``.

Not part of ``python -m bench`` (about 36 personalizations: roughly an hour on 2 CPU cores
with Whisper tiny.en). Run:
``python -m bench.bench_vector_study [--model whisper-tiny.en] [--seeds 0 1 2] [--mode ia3] [--learning-rate 1e-2]``;
writes ``docs/bench/vector_study_cpu.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

from bench._common import Partial, machine, run_and_write

__all__ = ["ATYPICAL", "main", "run"]

SAMPLE = Path(__file__).resolve().parent.parent / "sample_data"
NAME = "vector_study_cpu"  # the result, and its partial file while it runs: docs/bench/vector_study_cpu(.partial).json
ATYPICAL = ["sim-accent", "sim-als-like", "sim-dysarthria-severe", "sim-parkinsonian", "sim-stutter",
            "sim-voice-tremor"]  # the six atypical sample speakers (not the two typical voices)


def _configs(backend, mode: str) -> dict:
    """family -> adapter config: the backend's default LoRA, and the vector family on the same layers."""
    from workbench.adapters import VectorConfig
    from workbench.workflow import default_config

    lora = default_config(backend).adapter
    vector = VectorConfig(mode=mode, top_layers=lora.top_layers, decoder=bool(getattr(lora, "decoder", False)))
    return {"lora": lora, f"vector-{mode}": vector}


def run_one(speaker: str, family: str, adapter, backend, seed: int, out: Path, learning_rate: float | None = None) -> dict:
    from workbench.workflow import default_config, finish, prepare, train

    config = default_config(backend) if family == "lora" else default_config(backend, adapter=adapter)
    if learning_rate is not None and family != "lora":
        config = dataclasses.replace(config, learning_rate=learning_rate)
    t0 = time.perf_counter()
    plan = prepare(SAMPLE / speaker, backend=backend, config=dataclasses.replace(config, seed=seed), seed=seed,
                   report_dir=out / "reports", submodel_dir=out / "submodels")
    train(plan, progress=False)
    run = finish(plan)
    row = {"speaker": speaker, "family": family, "seed": seed, "learning_rate": config.learning_rate if config.learning_rate is not None
           else type(config.adapter).learning_rate,
           "wer_before": run.comparison.wer_before,
           "wer_after": run.comparison.wer_after, "per_speaker_parameters": run.train_result.parameter_report["per_speaker"],
           "train_s": run.train_result.seconds, "steps": run.train_result.steps, "wall_s": time.perf_counter() - t0}
    if run.adapted is not None:
        run.adapted.remove()
    print(f"{speaker:24s} {family:14s} seed {seed}: WER {100 * row['wer_before']:5.1f}% -> "
          f"{100 * row['wer_after']:5.1f}% ({row['per_speaker_parameters']:,} parameters, {row['train_s']:.0f} s)",
          flush=True)
    return row


def summary(rows: list[dict]) -> dict:
    """Per family: parameters per speaker, mean/min/max test WER after, mean before, mean training seconds."""
    out = {}
    for family in sorted({r["family"] for r in rows}):
        mine = [r for r in rows if r["family"] == family]
        after = [r["wer_after"] for r in mine]
        out[family] = {"runs": len(mine), "per_speaker_parameters": mine[0]["per_speaker_parameters"],
                       "wer_before": statistics.mean(r["wer_before"] for r in mine),
                       "wer_after": statistics.mean(after), "wer_after_sd": statistics.pstdev(after),
                       "wer_after_min": min(after), "wer_after_max": max(after),
                       "train_s": statistics.mean(r["train_s"] for r in mine)}
    return out


def run(model: str, seeds: list[int], mode: str, speakers: list[str], learning_rate: float | None = None, *,
        fresh: bool = False) -> dict:
    from workbench.models import load_base_model

    backend = load_base_model(model)
    configs = _configs(backend, mode)
    # Resumable: every finished run is kept in the partial file (rerun the same command after a stop).
    # The runs are step-based (early stopping, the step limit; the clock is only a ceiling), so
    # runs made in different sessions compare.
    partial = Partial(NAME, {"model": model, "mode": mode, "learning_rate": learning_rate}, fresh=fresh)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for speaker in speakers:
            for seed in seeds:
                for family, adapter in configs.items():  # the families alternate, so a slow spell hits both
                    rows.append(partial.run(f"{speaker}|{family}|seed {seed}", lambda s=speaker, f=family, a=adapter,
                                            k=seed: run_one(s, f, a, backend, k, Path(tmp) / f / s, learning_rate)))
    result = {"machine": machine("cpu"), "model": model, "seeds": seeds, "speakers": speakers,
              "configs": {k: v.to_dict() for k, v in configs.items()}, "rows": rows, "summary": summary(rows),
              "_partial": partial}
    for family, s in result["summary"].items():
        print(f"{family:14s} {s['per_speaker_parameters']:>9,} parameters/speaker: WER {100 * s['wer_before']:.1f}% -> "
              f"{100 * s['wer_after']:.1f}% (sd {100 * s['wer_after_sd']:.1f}) over {s['runs']} runs", flush=True)
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="whisper-tiny.en", help="base model (default whisper-tiny.en)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--mode", default="ia3", choices=["ia3", "flora"])
    parser.add_argument("--speaker", action="append", choices=ATYPICAL, help="only these speakers (repeatable)")
    parser.add_argument("--learning-rate", type=float, default=None,
                        help="the vector family's peak learning rate (default: VectorConfig.learning_rate)")
    parser.add_argument("--fresh", action="store_true", help="forget the runs of an interrupted study")
    args = parser.parse_args(argv)
    result, _ = run_and_write(NAME, lambda: run(args.model, args.seeds, args.mode, args.speaker or ATYPICAL,
                                                args.learning_rate, fresh=args.fresh))
    return result


if __name__ == "__main__":
    main()
