"""The TODM section of docs/results.md: the gap to each twin, the goal line, the ablations, the size tables."""

import json

from bench.summarize_todm import collect, comparison_lines, results_md_todm, shipped_run, sizes_lines


def _metrics(wer: float, params: int = 1_000_000) -> dict:
    res = {"greedy": {"wer": wer + 0.1, "cer": wer / 2 + 0.05}, "lexicon_beam": {"wer": wer, "cer": wer / 2}}
    return {"params": params, "file_mb": params * 2e-6, "fingerprint": "f" * 64, "rtf_batch1": 0.01, "rtf_batched": 0.003,
            "threads": 1, "decoder": {}, "results": {"heldout_voices_heldout_texts": res,
                                                    "heldout_texts_training_voices": res,
                                                    "sample_data/a": {"greedy": {"wer": 0.9, "cer": 0.5}}}}


def _run(steps: int, minutes: float, dev=()) -> dict:
    return {"steps": steps, "step_budget": steps, "minutes": minutes, "threads": 1, "device": "cpu", "optimizer": "scaled_adam",
            "distill": "alpha", "adaptive_dropout": True, "dev": list(dev), "args": {"n_train": "1500"}}


def _comparison(supernet_wers=(0.50, 0.40, 0.30), ablations=("ablation-kl",)) -> dict:
    runs = {"supernet": {"run": _run(480, 24.0), "sizes": {s: _metrics(w) for s, w in
                                                            zip(("small", "medium", "large"), supernet_wers)}}}
    for s, w, mins in (("small", 0.49, 7.0), ("medium", 0.40, 11.0), ("large", 0.31, 17.0)):
        runs[f"single-{s}"] = {"run": _run(1000, mins), "sizes": {s: _metrics(w)}}
    for a in ablations:
        runs[a] = {"run": _run(480, 23.0), "sizes": {s: _metrics(0.6) for s in ("small", "medium", "large")}}
    return {"runs": runs}


def test_the_gap_to_each_twin_and_the_goal():
    text = "\n".join(comparison_lines(_comparison()))
    assert "| small | 1.00 M | 0.0100 | 50.0 % / 25.0 % | 49.0 % / 24.5 % | +2.0 % |" in text
    assert "| large |" in text and "-3.2 %" in text  # the supernet ahead: a negative gap
    assert "**Met.**" in text
    assert "**1.41x** the large size trained alone" in text
    missed = "\n".join(comparison_lines(_comparison(supernet_wers=(0.60, 0.40, 0.30))))
    assert "**Missed** for small" in missed


def test_the_ablations_against_the_supernet_and_those_not_run():
    text = "\n".join(comparison_lines(_comparison()))
    assert ("| KL instead of alpha-divergence (480 steps, 23.0 min) | 60.0 % | 60.0 % | 60.0 % | 60.0 % | +20.0 points "
            "| none |") in text
    assert "| supernet (every technique) (480 steps, 24.0 min) | 50.0 % | 40.0 % | 30.0 % | 40.0 % |  | small, medium, large |" in text
    assert "Not run yet: no adaptive dropout, AdamW instead of ScaledAdam, no distillation" in text


def test_the_per_size_and_sliced_tables():
    own = [{"size": s, "wer_before": 0.8, "wer_after": w, "steps": 40, "train_s": 30.0}
           for s, w in (("small", 0.5), ("medium", 0.4), ("large", 0.3))]
    sliced = [{"size": "small", "wer_before": 0.8, "wer_after": 0.6}, {"size": "medium", "wer_before": 0.8, "wer_after": 0.4}]
    res = {"sizes": ["small", "medium", "large"], "machine": {"cpu": "Xeon", "torch_threads": 1},
           "rows": [{"speaker": "sim-x", "own": own, "sliced": sliced}]}
    text = "\n".join(sizes_lines(res))
    assert "| sim-x | 80.0 → 50.0 % (40 steps, 30 s) | 80.0 → 40.0 % (40 steps, 30 s) | 80.0 → 30.0 % (40 steps, 30 s) |" in text
    assert "| sim-x | 60.0 % | 50.0 % | 40.0 % | 40.0 % |" in text
    assert "small: sliced 60.0 % against its own 50.0 % (mean, +10.0 points" in text
    assert "sandwich" not in text.split("Test WER.")[1]  # no sandwich rows: no sandwich columns
    res["rows"][0]["sandwich"] = {"size": "large", "wer_before": 0.8, "wer_after": 0.35, "steps": 60, "train_s": 75.0,
                                  "sliced": [{"size": "small", "wer_after": 0.55}, {"size": "medium", "wer_after": 0.42}]}
    text = "\n".join(sizes_lines(res))
    assert "| sim-x | 60.0 % | 55.0 % | 50.0 % | 40.0 % | 42.0 % | 40.0 % | 35.0 % | 30.0 % |" in text
    assert "the sandwich adapter cut for it 55.0 % (+5.0 points)" in text
    assert "Its training: 60 steps, 75 s (mean; a step runs the three sizes), against 40 steps, 30 s" in text


def test_collect_reads_every_finished_run_and_the_section_renders(tmp_path):
    for name, run in _comparison()["runs"].items():
        (tmp_path / name).mkdir()
        dev = [(100, 60.0, {s: 0.5 for s in run["sizes"]}), (200, 120.0, {s: 0.4 for s in run["sizes"]})]
        (tmp_path / name / "summary.json").write_text(json.dumps({"run": {**run["run"], "dev": dev}, "sizes": run["sizes"]}))
    (tmp_path / "unfinished").mkdir()  # no summary.json: left out
    out = tmp_path / "todm_comparison.json"
    result = collect(tmp_path, out, tmp_path / "curves.png")
    assert sorted(result["runs"]) == sorted(_comparison()["runs"])
    assert (tmp_path / "curves.png").stat().st_size > 0
    assert "args" not in result["runs"]["supernet"]["run"]
    saved = json.loads(out.read_text())
    section = results_md_todm(lambda name: saved if name == "todm_comparison" else None)
    assert "### The supernet against each size trained alone" in section and "**Met.**" in section
    assert "`python recipes/todm/comparison.py --steps 1000 --ratio 0.48 -- --threads 1 --n-train 1500`" in section
    assert "Personalizing each size" not in section  # no todm_sizes.json yet


def test_the_shipped_run_is_found_by_every_fingerprint():
    runs = _comparison()["runs"]
    runs["ablation-kl"]["sizes"]["small"] = {**runs["ablation-kl"]["sizes"]["small"], "fingerprint": "a" * 64}
    assert shipped_run(runs, {"small": "a" * 64, "medium": "f" * 64, "large": "f" * 64}) == "ablation-kl"
    assert shipped_run(runs, {"small": "b" * 64}) is None
    assert shipped_run(runs, {}) is None
