"""Personalization at every size of the built-in model, and one personal adapter for every size (issue 29).

For every atypical sample speaker, a personal LoRA (the built-in model's default adapter and
settings: early stopping on the validation recordings, the step limit, the time limit only a
ceiling) is trained on each installed size (``workbench/data/models/tiny-<size>``, the supernet's
sizes) and scored on the speaker's test phrases, which no run trains or chooses on. That is the
**per-size personalization table**: WER before and after, steps and training time, per size.

Then the **sliced-adapter table**: the adapter trained on the largest size, marked as a supernet
adapter (:func:`workbench.models.supernet.adapters.mark_supernet_adapter`), is cut for each smaller
size (:func:`~workbench.models.supernet.adapters.load_for_size`: the same rule that cut the
weights) and scored on the same test phrases, against the adapter trained on that size directly
with the same data and settings. Nothing is trained for the sliced rows. The same for an adapter
trained with the **sandwich rule** (every step's loss averaged over every size, the adapter cut for
each: :class:`~workbench.models.supernet.adapters.SandwichLoRA`), scored on the largest size as it
is and on each smaller size cut.

Run (about 25 minutes on one thread; each speaker is saved as it finishes, a rerun goes on):
``python -m bench.bench_todm_sizes [--quick] [--speaker ID] [--seeds N] [--fresh]``;
writes ``docs/bench/todm_sizes.json`` (``_quick``: one speaker, 4 steps a run).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench._common import Partial, defaults_tag, machine, write_result
from bench.bench_personalization import _score, _setup


def _train(speaker_dir: Path, size: str, *, seed: int, max_steps: int | None, out: Path,
           sandwich: bool = False) -> tuple[dict, Path]:
    """One personal adapter on size ``size``: ``(row, Submodel file)``. ``sandwich``: trained on the
    largest size with the sandwich rule (every step's loss is the mean over every size, the adapter
    cut for each: :func:`workbench.models.supernet.adapters.sandwich_adapter`, what ``workbench
    personalize --size large`` trains); else the trainer's own LoRA."""
    from workbench.models import load_base_model
    from workbench.models.supernet.adapters import sandwich_adapter
    from workbench.trainer import Trainer
    from workbench.workflow import default_config

    backend = load_base_model(f"tiny-{size}")
    corpus, train, valid, held_out, decoder = _setup(speaker_dir, 50, backend=backend)
    config = default_config(backend, seed=seed, **({"max_steps": max_steps} if max_steps else {}))
    adapted = sandwich_adapter(backend, config) if sandwich else None  # None: the trainer's own (same seed)
    if sandwich and adapted is None:
        raise SystemExit(f"tiny-{size} is not the supernet's largest size: no sandwich rule there")
    trainer = Trainer(backend, train, valid, config, decoder=decoder, adapted=adapted)
    t0 = time.perf_counter()
    result = trainer.fit()
    wall = time.perf_counter() - t0
    before, after = _score(backend, trainer.adapted, held_out, decoder)
    path = trainer.adapted.save(out / f"{corpus.speaker_id}-{size}{'-sandwich' if sandwich else ''}.safetensors",
                                speaker_ids=[corpus.speaker_id])
    trainer.adapted.remove()
    row = {"size": size, "base_model": backend.name, "params": backend.num_parameters(),
           "adapter_params": result.parameter_report["per_speaker"], "train_utterances": len(train),
           "valid_utterances": len(valid), "test_utterances": len(held_out), "wer_before": before,
           "wer_after": after, "steps": result.steps, "train_s": result.seconds, "wall_s": wall,
           "stopped": result.stopped_reason, "cut_short": result.cut_short}
    print(f"{corpus.speaker_id:24s} {size:6s} {'sandwich ' if sandwich else ''}{result.steps:4d} steps ({result.stopped_reason}), WER "
          f"{100 * before:5.1f}% -> {100 * after:5.1f}%, {result.seconds:.0f} s", flush=True)
    return row, path


def _sliced(speaker_dir: Path, size: str, large_file: Path) -> dict:
    """The largest size's adapter cut for ``size``, scored on the speaker's test phrases."""
    from workbench.models import load_base_model
    from workbench.models.supernet.adapters import load_for_size

    backend = load_base_model(f"tiny-{size}")
    corpus, _, _, held_out, decoder = _setup(speaker_dir, 50, backend=backend)
    adapted, meta = load_for_size(backend, large_file)
    try:
        before, after = _score(backend, adapted, held_out, decoder)
    finally:
        adapted.remove()
    print(f"{corpus.speaker_id:24s} {size:6s} sliced from {meta['supernet']['made_for']}: WER "
          f"{100 * before:5.1f}% -> {100 * after:5.1f}%", flush=True)
    return {"size": size, "sliced_for": meta["sliced_for"], "wer_before": before, "wer_after": after}


def run_speaker(speaker_dir: Path, sizes: list[str], *, seed: int = 0, max_steps: int | None = None) -> dict:
    """Every size's own adapter, then the largest size's adapter sliced for each smaller size."""
    from workbench.models import load_base_model
    from workbench.models.supernet.adapters import mark_supernet_adapter

    largest = sizes[-1]
    with tempfile.TemporaryDirectory() as tmp:
        trained = {s: _train(speaker_dir, s, seed=seed, max_steps=max_steps, out=Path(tmp)) for s in sizes}
        sandwich, sandwich_file = _train(speaker_dir, largest, seed=seed, max_steps=max_steps, out=Path(tmp), sandwich=True)
        if not mark_supernet_adapter(trained[largest][1], load_base_model(f"tiny-{largest}")):  # (the sandwich one marked itself)
            raise SystemExit(f"tiny-{largest} is not the supernet's largest size: its adapter cannot be sliced")
        sliced = [_sliced(speaker_dir, s, trained[largest][1]) for s in sizes[:-1]]
        sandwich["sliced"] = [_sliced(speaker_dir, s, sandwich_file) for s in sizes[:-1]]
    return {"speaker": speaker_dir.name, "seed": seed, "own": [row for row, _ in trained.values()], "sliced": sliced,
            "sandwich": sandwich}


def main(argv: list[str] | None = None) -> None:
    from workbench.corpus import list_speakers
    from workbench.demo import DEMO_SPEAKER, default_sample_dir
    from workbench.embeddings import speaker_profile
    from workbench.models import load_base_model
    from workbench.models.supernet.model import installed_sizes

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="one speaker, 4 steps a run: checks that it runs")
    p.add_argument("--speaker", action="append", help="a sample speaker (default: every atypical one)")
    p.add_argument("--seeds", type=int, default=1, help="training seeds per speaker")
    p.add_argument("--fresh", action="store_true", help="forget the speakers of an interrupted run")
    args = p.parse_args(argv)
    sizes = installed_sizes()
    if len(sizes) < 2:
        raise SystemExit("fewer than two sizes of the built-in model are installed (workbench/data/models/"
                         "tiny-<size>): train them first (recipes/todm/README.md)")
    sample = default_sample_dir()
    speakers = args.speaker or ([DEMO_SPEAKER] if args.quick else
                                [c.speaker_id for c in list_speakers(sample) if speaker_profile(c) != "typical"])
    max_steps = 4 if args.quick else None
    name = "todm_sizes" + ("_quick" if args.quick else "")
    fingerprints = {s: load_base_model(f"tiny-{s}").fingerprint()[:12] for s in sizes}
    partial = Partial(name, {"sizes": fingerprints, "max_steps": max_steps,
                             "defaults": defaults_tag(load_base_model(f"tiny-{sizes[-1]}"))}, fresh=args.fresh)
    t0 = time.perf_counter()
    rows = [partial.run(f"{s}|seed {k}", lambda s=s, k=k: run_speaker(sample / s, sizes, seed=k, max_steps=max_steps))
            for s in speakers for k in range(args.seeds)]
    result = {"machine": machine(), "sizes": sizes, "fingerprints": fingerprints, "rows": rows,
              "wall_s": time.perf_counter() - t0,
              "command": "python -m bench.bench_todm_sizes" + (" --quick" if args.quick else "")}
    print(f"wrote {write_result(name, result)}")
    partial.done()


if __name__ == "__main__":
    main()
