"""Issue 27's studies (bench/): resumable runs, the Whisper defaults study's candidates, replay and choice.

No training here: the runs are replaced by fakes, so these check the bookkeeping (what is saved,
what a rerun skips, what is admissible) in a second.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(not (ROOT / "bench" / "_common.py").is_file(),
                                reason="bench/ is only in the source checkout")


@pytest.fixture
def results(tmp_path, monkeypatch) -> Path:
    import bench._common

    monkeypatch.setattr(bench._common, "RESULTS_DIR", tmp_path)
    return tmp_path


def test_a_partial_study_keeps_each_run_and_refuses_other_settings(results) -> None:
    from bench._common import Partial

    calls = []
    p = Partial("s", {"steps": 120})
    assert p.run("a", lambda: calls.append("a") or {"wer": 0.5}) == {"wer": 0.5}
    assert json.loads((results / "s.partial.json").read_text())["runs"] == {"a": {"wer": 0.5}}
    again = Partial("s", {"steps": 120})
    assert again.run("a", lambda: calls.append("a again") or {"wer": 9.0}) == {"wer": 0.5}
    assert calls == ["a"]
    with pytest.raises(SystemExit, match="other settings.*--fresh"):
        Partial("s", {"steps": 60})
    assert Partial("s", {"steps": 60}, fresh=True).runs == {}
    (results / "s.partial.json").write_text("{not json")
    with pytest.raises(SystemExit, match="not a study's partial file"):
        Partial("s", {"steps": 120})
    again.done()
    assert not (results / "s.partial.json").exists()


def test_the_data_efficiency_study_resumes_after_an_interruption(results, tmp_path, monkeypatch) -> None:
    import bench.bench_data_efficiency as de
    from workbench import recording_hint

    monkeypatch.setattr(recording_hint, "HINT_FILE", tmp_path / "recording_hint.json")
    done: list[tuple] = []

    def fake(speaker_dir, model, size, seed, quick):
        if len(done) == 2 and not getattr(fake, "resumed", False):
            raise KeyboardInterrupt  # the machine was needed for something else
        done.append((model, size, seed))
        return {"model": model, "size": size, "seed": seed, "speaker": speaker_dir.name, "wer_before": 0.5,
                "wer_after": 0.5 - size / 200, "relative_reduction": size / 100, "train_utterances": size - 2}

    monkeypatch.setattr(de, "_run", fake)
    argv = ["--speaker", "sim-accent", "--models", "tiny", "--seeds", "1"]
    with pytest.raises(KeyboardInterrupt):
        de.main(argv)
    assert done == [("tiny", 10, 0), ("tiny", 25, 0)]
    assert len(json.loads((results / "data_efficiency_cpu.partial.json").read_text())["runs"]) == 2
    fake.resumed = True
    result = de.main(argv)
    assert done == [("tiny", 10, 0), ("tiny", 25, 0), ("tiny", 50, 0)]  # only the missing run
    assert [e["recordings"] for e in result["summary"]["tiny"]] == [10, 25, 50]
    assert not (results / "data_efficiency_cpu.partial.json").exists()
    table = recording_hint.load_table()  # the shipped table, with its provenance
    assert table.source.endswith("data_efficiency_cpu.json") and table.speakers == ("sim-accent",)
    assert table.models["tiny"][2].relative_reduction == pytest.approx(0.5)


def test_a_quick_data_efficiency_run_never_writes_the_shipped_table(results, tmp_path, monkeypatch) -> None:
    import bench.bench_data_efficiency as de
    from workbench import recording_hint

    monkeypatch.setattr(recording_hint, "HINT_FILE", tmp_path / "recording_hint.json")
    monkeypatch.setattr(de, "_run", lambda d, m, n, k, q: {"model": m, "size": n, "seed": k, "speaker": d.name,
                                                         "wer_before": 0.5, "wer_after": 0.4,
                                                         "relative_reduction": 0.2})
    de.main(["--quick", "--models", "tiny"])
    assert (results / "data_efficiency_cpu_quick.json").is_file()
    assert not (tmp_path / "recording_hint.json").exists()


def test_whisper_candidates_change_one_thing_each(tmp_path) -> None:
    pytest.importorskip("transformers")
    from _models import hf_whisper_dir

    from bench.study_defaults import _config, whisper_candidates
    from workbench.models import load_base_model
    from workbench.workflow import default_config

    backend = load_base_model(hf_whisper_dir(tmp_path / "whisper"))
    default = default_config(backend)
    names = list(whisper_candidates("every layer + decoder"))
    assert names[:3] == ["top half + decoder", "every encoder layer", "every layer + decoder"]
    configs = {n: _config("whisper-tiny.en", n, backend, steps=120, eval_every=5, seed=1) for n in names}
    for c in configs.values():  # step-bound, no early stopping (replayed later), the backend's limit ignored
        assert (c.max_steps, c.eval_every, c.patience, c.time_limit_s, c.seed) == (120, 5, 0, None, 1)
    top = configs["top half + decoder"]
    assert (top.adapter.top_layers, top.adapter.decoder) == (backend.num_layers // 2, True)
    assert top.learning_rate == 1e-3 and top.adapter.rank == 8
    every = configs["every layer + decoder"]  # the study's starting point, whatever the default is now
    assert (every.adapter.rank, every.adapter.alpha, every.adapter.top_layers, every.adapter.decoder) == \
        (8, 16.0, 0, True)
    assert every.learning_rate == 1e-3  # giving an adapter must not drop Whisper's rate
    assert configs["every layer + decoder, rank 4"].adapter == default.adapter  # the variant the study adopted
    assert (configs["every encoder layer"].adapter.top_layers, configs["every encoder layer"].adapter.decoder) == \
        (0, False)
    r16 = configs["every layer + decoder, rank 16"].adapter
    assert (r16.rank, r16.alpha, r16.top_layers) == (16, 32.0, 0)
    assert configs["every layer + decoder, lr 3e-4"].learning_rate == 3e-4
    assert configs["every layer + decoder, no speed perturbation"].speed_perturb == ()
    assert every.speed_perturb == default.speed_perturb
    assert configs["every layer + decoder, SpecAugment"].specaugment is not None
    with pytest.raises(SystemExit, match="unknown Whisper candidate"):
        _config("whisper-tiny.en", "every layer, rank 99", backend, steps=1, eval_every=1, seed=0)
    # a saved run is checked against what its candidate means now: a run saved as rank 8 that trained rank 4 is stale
    from bench.study_defaults import stale

    saved = {"config": json.loads(json.dumps(every.to_dict()))}
    assert stale(saved, every) is None
    drifted = {"config": json.loads(json.dumps(configs["every layer + decoder, rank 4"].to_dict()))}
    assert "adapter" in stale(drifted, every) and "'rank': 4" in stale(drifted, every)


def _trajectory(candidate: str, speaker: str, step_s: float, test_wers: list[float]) -> dict:
    """Logged every 5 steps; the validation WER and loss fall to step 30, then rise."""
    rows = []
    for i, t in enumerate(test_wers):
        v = abs(i - 6) / 10 + 0.1
        rows.append({"step": 5 * i, "valid_wer": v, "valid_loss": v, "test_wer": t})
    return {"candidate": candidate, "speaker": speaker, "seed": 0, "rows": rows, "step_s": step_s, "eval_s": 2.0}


def test_the_whisper_study_chooses_the_best_candidate_within_the_limits() -> None:
    from bench.study_defaults import whisper_summary

    falling = [0.5, 0.45, 0.4, 0.35, 0.3, 0.25, 0.2, 0.2, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3]
    better = [0.5, 0.4, 0.3, 0.2, 0.15, 0.1, 0.05, 0.05, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]
    ts = [_trajectory("cheap", s, 1.0, falling) for s in ("a", "b")]
    ts += [_trajectory("slow step", s, 2.5, better) for s in ("a", "b")]  # better, but over 2 s a step
    out = whisper_summary(ts, logged_every=5)
    rows = {r["candidate"]: r for r in out["candidates"]}
    assert not rows["slow step"]["admissible"] and rows["cheap"]["admissible"]
    assert rows["slow step"]["mean_relative_reduction"] > rows["cheap"]["mean_relative_reduction"]
    assert out["chosen"] == "cheap"
    # every 10 steps, patience 5: lowest validation WER at step 30, stop at step 80 (5 evaluations later)
    assert rows["cheap"]["mean_relative_reduction"] == pytest.approx(0.6)
    assert rows["cheap"]["run_s_mean"] == pytest.approx(80 * 1.0 + 9 * 2.0)
    grid = {(r["eval_every"], r["patience"]): r for r in out["schedules"]}
    assert set(grid) == {(k, p) for k in (5, 10, 20) for p in (3, 5, 8)}
    assert grid[(5, 3)]["run_s_mean"] < grid[(5, 8)]["run_s_mean"]  # less patience: a shorter run
    assert whisper_summary(ts[2:], logged_every=5)["chosen"] is None  # nothing admissible: nothing chosen


def test_candidates_are_ranked_on_the_seeds_every_one_ran() -> None:
    """A study grown in stages: one candidate got a second seed. Its mean over both seeds is not
    compared with the others' single seed; the ranking uses the seed they share."""
    from bench.study_defaults import whisper_summary

    good = [0.5, 0.4, 0.3, 0.2, 0.15, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]
    fair = [0.5, 0.45, 0.4, 0.3, 0.25, 0.2, 0.15, 0.15, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2]
    poor = [0.5] * 18
    ts = [_trajectory("two seeds", s, 1.0, good) for s in ("a", "b")]
    ts += [{**_trajectory("two seeds", s, 1.0, poor), "seed": 1} for s in ("a", "b")]  # its bad second seed
    ts += [_trajectory("one seed", s, 1.0, fair) for s in ("a", "b")]
    out = whisper_summary(ts, logged_every=5)
    rows = {r["candidate"]: r for r in out["candidates"]}
    assert out["common_seeds"] == [0]
    assert rows["two seeds"]["mean_relative_reduction"] < rows["one seed"]["mean_relative_reduction"]  # all runs
    assert rows["two seeds"]["common_mean"] > rows["one seed"]["common_mean"]  # seed 0, which both ran
    assert out["chosen"] == "two seeds" and out["candidates"][0]["candidate"] == "two seeds"


def test_the_results_sections_name_the_choice_and_both_models() -> None:
    from bench.study_defaults import whisper_summary
    from bench.summarize_studies import data_efficiency_section, whisper_defaults_section

    falling = [0.5, 0.4, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3]
    ts = [_trajectory("every layer + decoder", s, 1.5, falling) for s in ("dev-a", "dev-b")]
    machine = {"cpu": "test CPU", "cores": 2, "torch_threads": 2, "torch": "2"}
    study = {"machine": machine, "steps": 60, "logged_every": 5, "limits": {"step_s": 2.0, "run_s": 180.0},
             "trajectories": ts, **whisper_summary(ts, logged_every=5)}
    text = "\n".join(whisper_defaults_section(study))
    assert "| **every layer + decoder** (chosen) | **+40.0%** | +40.0% (2 runs) | +40% | +40% |" in text
    assert "| candidate | mean, seed 0 | mean, all its runs |" in text
    assert "| 20 steps | 8 |" in text  # the chosen one's interval x patience
    assert whisper_defaults_section(None) == []
    rows = [{"model": m, "size": n, "speaker": "sim-a", "seed": 0, "wer_before": 0.5, "wer_after": 0.3,
             "relative_reduction": 0.4} for m in ("tiny", "whisper-tiny.en") for n in (10, 25)]
    from bench.bench_data_efficiency import summarize

    result = {"machine": machine, "speakers": ["sim-a"], "seeds": 1, "summary": summarize(rows)}
    lines = data_efficiency_section(lambda name: result if name == "data_efficiency_cpu" else None)
    assert "| recordings | Whisper tiny.en | built-in model |" in lines
    assert "| 25 | 30.0% (+40%; +40..+40%) | 30.0% (+40%; +40..+40%) |" in lines


def test_the_quiet_timing_pass_decides_the_limits_where_it_has_the_run(results, monkeypatch) -> None:
    import bench.study_defaults as sd
    from bench.summarize_studies import whisper_defaults_section

    better = [0.5, 0.4, 0.3, 0.2, 0.15, 0.1, 0.05, 0.05, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]
    # timed during the study's runs while the CPU was shared: 2.5 s a step, over the limit
    ts = [_trajectory("busy", s, 2.5, better) for s in ("a", "b")]
    assert sd.whisper_summary(ts, logged_every=5)["chosen"] is None
    timed = []

    def fake_timing(speaker_dir, candidate, *, model, steps):
        timed.append((candidate, speaker_dir.name, steps))
        return {"steps": steps, "speaker": speaker_dir.name, "candidate": candidate, "step_s": 0.8, "eval_s": 1.0,
                "threads": 2}

    monkeypatch.setattr(sd, "RESULTS_DIR", results)
    monkeypatch.setattr(sd, "step_timing", fake_timing)
    monkeypatch.setattr(sd, "make_speakers", lambda out, n, only: [Path(out) / "a", Path(out) / "b"])
    from bench._common import Partial

    saved = Partial("study_defaults_whisper", {"model": sd.WHISPER, "steps": 120, "eval_every": 5})
    for t in ts:
        saved.run(f"{t['candidate']}|{t['speaker']}|seed 0", lambda t=t: t)
    sd.main(["--model", sd.WHISPER, "--timing", "--threads", "2"])
    assert timed == [("busy", "a", sd.TIMING_STEPS), ("busy", "b", sd.TIMING_STEPS)]  # the saved candidate, no training
    study = json.loads((results / "study_defaults_whisper.json").read_text())
    row = study["candidates"][0]
    assert row["timed"] == "quiet timing pass" and row["step_s"] == pytest.approx(0.8)
    assert study["chosen"] == "busy"  # within the limits on the quiet machine's times
    text = "\n".join(whisper_defaults_section(study))
    assert "separate timing pass on a quiet machine (12 steps of each candidate on each speaker, 2 threads)" in text
    sd.main(["--model", sd.WHISPER, "--timing", "--threads", "2"])  # a rerun times nothing again
    assert len(timed) == 2
