"""Choose the personalization defaults by experiment (adapter family, learning rate, SpecAugment policy).

For each candidate, train on at most 50 utterances of each chosen sample speaker
for a fixed time budget with the frozen base model, and score the held-out
phrases (never trained on) with the lexicon decoder. The candidate with the
lowest mean held-out WER across speakers wins; ties go to fewer parameters.
Results go to ``docs/bench/defaults.json`` and are quoted in ``docs/results.md``.

Run (about 2 minutes per candidate and speaker on a 2-core CPU)::

    python recipes/choose_defaults.py [--model DIR] [--speaker ID ...] [--budget 60] [--threads 1]

``--model`` may point at a built-in-style model folder (e.g. an intermediate
checkpoint exported by the pretraining recipe); the default is the shipped model.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent


def _candidates() -> dict[str, dict]:
    from workbench.adapters import ConvAdapterConfig, HRAConfig, LoRAConfig, ResidualConfig
    from workbench.augment import POLICIES, SpecAugmentPolicy

    small = SpecAugmentPolicy(freq_masks=2, freq_width=15, time_masks=10, adaptive_multiplicity=0.04,
                              adaptive_size=0.04, name="small_data")
    adaptive = POLICIES["librispeech_adaptive"]
    return {
        "hra lr3e-3 adaptive": {"adapter": HRAConfig(), "learning_rate": 3e-3, "specaugment": adaptive},
        "hra lr1e-2 adaptive": {"adapter": HRAConfig(), "learning_rate": 1e-2, "specaugment": adaptive},
        "hra lr3e-2 adaptive": {"adapter": HRAConfig(), "learning_rate": 3e-2, "specaugment": adaptive},
        "hra-top4 lr1e-2 adaptive": {"adapter": HRAConfig(top_layers=4), "learning_rate": 1e-2,
                                     "specaugment": adaptive},
        "hra-dc64 lr1e-2 adaptive": {"adapter": HRAConfig(controller_dim=64), "learning_rate": 1e-2,
                                     "specaugment": adaptive},
        "residual lr1e-2 adaptive": {"adapter": ResidualConfig(), "learning_rate": 1e-2, "specaugment": adaptive},
        "residual-top4 lr1e-2 adaptive": {"adapter": ResidualConfig(top_layers=4), "learning_rate": 1e-2,
                                          "specaugment": adaptive},
        "lora lr1e-2 adaptive": {"adapter": LoRAConfig(), "learning_rate": 1e-2, "specaugment": adaptive},
        "hra lr1e-2 small": {"adapter": HRAConfig(), "learning_rate": 1e-2, "specaugment": small},
        "hra lr1e-3 adaptive": {"adapter": HRAConfig(), "learning_rate": 1e-3, "specaugment": adaptive},
        "hra lr3e-3 none": {"adapter": HRAConfig(), "learning_rate": 3e-3, "specaugment": None},
        "hra lr3e-3 small": {"adapter": HRAConfig(), "learning_rate": 3e-3, "specaugment": small},
        "hra-ffn lr3e-3 adaptive": {"adapter": HRAConfig(head="ffn"), "learning_rate": 3e-3, "specaugment": adaptive},
        "residual lr3e-3 adaptive": {"adapter": ResidualConfig(), "learning_rate": 3e-3, "specaugment": adaptive},
        "lora lr3e-3 adaptive": {"adapter": LoRAConfig(), "learning_rate": 3e-3, "specaugment": adaptive},
        "conv lr3e-3 adaptive": {"adapter": ConvAdapterConfig(), "learning_rate": 3e-3, "specaugment": adaptive},
    }


def main() -> None:
    from workbench.corpus import SpeakerCorpus
    from workbench.dataset import examples_from_corpus
    from workbench.evaluate import wer
    from workbench.models import load_base_model
    from workbench.trainer import TrainConfig, Trainer
    from workbench.workflow import build_decoder

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="tiny")
    p.add_argument("--speaker", action="append")
    p.add_argument("--budget", type=float, default=60.0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    p.add_argument("--only", action="append", help="candidate names to run")
    p.add_argument("--out", default=str(ROOT / "docs" / "bench" / "defaults.json"))
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    speakers = args.speaker or ["sim-dysarthria-severe", "sim-accent"]
    cands = {k: v for k, v in _candidates().items() if not args.only or k in args.only}
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.is_file() else {"runs": []}
    results.update({"model": args.model, "budget_s": args.budget})
    for sid in speakers:
        corpus = SpeakerCorpus.open(ROOT / "sample_data" / sid)
        tr, te = corpus.split(test_fraction=0.25, seed=0)
        train, held = examples_from_corpus(corpus, tr[:50]), examples_from_corpus(corpus, te)
        decoder = build_decoder("lexicon", prompts=corpus.prompts())
        for name, kw in cands.items():
            backend = load_base_model(args.model)
            cfg = TrainConfig(time_limit_s=args.budget, **kw)
            trainer = Trainer(backend, train, held, cfg, decoder=decoder)
            t0 = time.perf_counter()
            res = trainer.fit()
            refs, wavs = [e.text for e in held], [e.wav for e in held]
            with trainer.adapted.disabled():
                before = wer(refs, trainer.adapted.transcribe(wavs, decoder=decoder))
            after = wer(refs, trainer.adapted.transcribe(wavs, decoder=decoder))
            row = {"speaker": sid, "candidate": name, "wer_before": before, "wer_after": after,
                   "steps": res.steps, "train_s": res.seconds, "wall_s": time.perf_counter() - t0,
                   "per_speaker": res.parameter_report["per_speaker"], "trainable": res.parameter_report["trainable"]}
            results["runs"] = [r for r in results["runs"] if (r["speaker"], r["candidate"]) != (sid, name)] + [row]
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(results, indent=2))
            print(f"{sid:22s} {name:26s} WER {100 * before:5.1f}% -> {100 * after:5.1f}%  ({res.steps} steps, "
                  f"{res.seconds:.0f} s, {row['trainable']:,} trainable)", flush=True)
            trainer.adapted.remove()
    by: dict[str, list[float]] = {}
    for r in results["runs"]:
        by.setdefault(r["candidate"], []).append(r["wer_after"])
    print("\nmean held-out WER after, per candidate:")
    for name, ws in sorted(by.items(), key=lambda kv: sum(kv[1]) / len(kv[1])):
        print(f"  {name:26s} {100 * sum(ws) / len(ws):5.1f}%  over {len(ws)} speaker(s)")


if __name__ == "__main__":
    main()
