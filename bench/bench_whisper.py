"""Whisper tiny.en on a laptop CPU: the training step, what each speed trick costs, and personal results.

1. **Step time** (batch 8 of one sample speaker's recordings, LoRA, the Trainer's
   own step: forward, backward, clipping, AdamW), measured interleaved, medians:
   - ``full``: the 30 s window, LoRA on every encoder layer and the decoder (what a
     plain transformers fine-tuning does);
   - ``auto``: the encoding window cut to the batch's audio + 1 s (2 s buckets);
   - ``auto+prefix`` (the default): also LoRA only on the top half of the encoder,
     so the bottom half is computed once per recording and cached;
   - ``full+prefix``: the 30 s window with the cache.
2. **What a trick costs** in word errors, after the same number of training steps
   on two sample speakers (test phrases, never trained on): the variants above
   except ``full`` (too slow to train here; its WER before training is in the real-
   speech table). Before training, the window's cost on real speech is in
   ``bench_real_speech`` (auto vs full).
3. **The personal table** (``--table``): the six atypical sample speakers, at most 50
   recordings each, the default settings (``workbench personalize --model
   whisper-tiny.en``, at most 3 minutes of training), 3 seeds.

Run: ``python -m bench.bench_whisper [--quick] [--table] [--seeds 3]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from bench._common import RESULTS_DIR, compare_calls, machine, write_result
from workbench.constants import SAMPLE_RATE

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_data"
ATYPICAL = ["sim-accent", "sim-als-like", "sim-dysarthria-severe", "sim-parkinsonian", "sim-stutter",
            "sim-voice-tremor"]
TRICK_SPEAKERS = ["sim-dysarthria-severe", "sim-accent"]
MODEL = "whisper-tiny.en"
BUDGET_S = 180.0  # the "at most 3 minutes of training"


def _variant(name: str):
    """(backend, TrainConfig) of a speed variant."""
    from workbench.adapters import LoRAConfig
    from workbench.models import load_base_model
    from workbench.workflow import default_config

    backend = load_base_model(MODEL, window="full" if name.startswith("full") else "auto")
    config = default_config(backend)
    if not name.endswith("+prefix"):  # LoRA on every encoder layer: nothing to cache
        config = dataclasses.replace(config, adapter=LoRAConfig(top_layers=0, decoder=True))
    return backend, config


def _examples(speaker: str, max_train: int = 50, seed: int = 0):
    from workbench.corpus import SpeakerCorpus
    from workbench.dataset import examples_from_corpus
    from workbench.workflow import three_way_split

    corpus = SpeakerCorpus.open(SAMPLE / speaker)
    return [examples_from_corpus(corpus, p) for p in three_way_split(corpus, seed=seed, max_train=max_train)]


def step_times(quick: bool) -> dict:
    from workbench.trainer import Trainer

    train, valid, _ = _examples("sim-dysarthria-severe")
    names = ["auto+prefix", "auto", "full+prefix"] + ([] if quick else ["full"])
    trainers = {}
    for name in names:
        backend, config = _variant(name)
        config = dataclasses.replace(config, time_limit_s=None, max_steps=10_000, speed_perturb=())
        trainers[name] = Trainer(backend, train, valid, config)
    fns = {n: (lambda t=t: t._train_step()) for n, t in trainers.items()}
    times = compare_calls(fns, repeat=2 if quick else 5, warmup=1)
    return {"batch": 8, "seconds_per_step": times, "speaker": "sim-dysarthria-severe",
            "mean_utterance_s": statistics.mean(len(e.wav) / SAMPLE_RATE for e in train)}


def trick_costs(steps: int, speakers: list[str]) -> list[dict]:
    from workbench.evaluate import wer
    from workbench.trainer import Trainer

    rows = []
    for speaker in speakers:
        train, valid, test = _examples(speaker)
        refs = [e.text for e in test]
        for name in ["auto+prefix", "auto", "full+prefix"]:
            backend, config = _variant(name)
            config = dataclasses.replace(config, time_limit_s=None, max_steps=steps, patience=0)
            trainer = Trainer(backend, train, valid, config)
            t0 = time.perf_counter()
            result = trainer.fit()
            wavs = [e.wav for e in test]
            with trainer.adapted.disabled():
                before = wer(refs, trainer.adapted.transcribe(wavs))
            after = wer(refs, trainer.adapted.transcribe(wavs))
            rows.append({"speaker": speaker, "variant": name, "steps": result.steps, "train_s": result.seconds,
                         "wall_s": time.perf_counter() - t0, "wer_before": before, "wer_after": after})
            print(f"{speaker:22s} {name:12s} {steps} steps {result.seconds:5.0f} s  WER {100 * before:5.1f}% -> "
                  f"{100 * after:5.1f}%", flush=True)
            trainer.adapted.remove()
    return rows


def table(seeds: int, speakers: list[str], budget: float) -> list[dict]:
    from workbench.models import load_base_model
    from workbench.workflow import default_config, personalize_speaker

    backend = load_base_model(MODEL)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for speaker in speakers:
            folder = Path(tmp) / speaker
            shutil.copytree(SAMPLE / speaker, folder)  # the run writes its Submodel and report there
            for seed in range(seeds):
                config = default_config(backend, time_limit_s=budget, seed=seed)
                t0 = time.perf_counter()
                run = personalize_speaker(folder, backend=backend, config=config, max_train=50, progress=False)
                run.adapted.remove()
                c, r = run.comparison, run.train_result
                rows.append({"speaker": speaker, "seed": seed, "wer_before": c.wer_before, "wer_after": c.wer_after,
                             "relative_reduction": (c.wer_before - c.wer_after) / c.wer_before if c.wer_before else 0,
                             "steps": r.steps, "train_s": r.seconds, "wall_s": time.perf_counter() - t0,
                             "stopped": r.stopped_reason,
                             "params_per_speaker": r.parameter_report.get("per_speaker")})
                print(f"{speaker:22s} seed {seed}: WER {100 * c.wer_before:5.1f}% -> {100 * c.wer_after:5.1f}% "
                      f"({100 * rows[-1]['relative_reduction']:+.0f}%), {r.steps} steps, {r.seconds:.0f} s "
                      f"({r.stopped_reason})", flush=True)
    return rows


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--table", action="store_true", help="the 6-speaker x seeds table (about 40 min)")
    parser.add_argument("--tricks", action="store_true", help="the WER cost of each speed trick (about 15 min)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--speaker", action="append", help="only these speakers (table)")
    args = parser.parse_args(argv)
    out: dict = {"machine": machine(args.device), "model": MODEL}
    t0 = time.perf_counter()
    out["step"] = step_times(args.quick)
    print({k: round(v, 2) for k, v in out["step"]["seconds_per_step"].items()}, flush=True)
    suffix = "_quick" if args.quick else ""
    if args.tricks or args.quick:
        out["tricks"] = trick_costs(3 if args.quick else 30, TRICK_SPEAKERS[:1] if args.quick else TRICK_SPEAKERS)
    if args.table or args.quick:
        out["table"] = table(1 if args.quick else args.seeds, (args.speaker or ATYPICAL)[:1] if args.quick
                             else (args.speaker or ATYPICAL), 20.0 if args.quick else BUDGET_S)
    out["wall_s"] = time.perf_counter() - t0
    old = RESULTS_DIR / f"whisper_cpu{suffix}.json"
    if old.is_file() and not args.quick:  # keep the parts this run did not redo
        import json

        prev = json.loads(old.read_text())
        for key in ("tricks", "table"):
            if key not in out and key in prev:
                out[key] = prev[key]
    path = write_result(f"whisper_cpu{suffix}", out)
    print(f"wrote {path}")
    return out


if __name__ == "__main__":
    main()
