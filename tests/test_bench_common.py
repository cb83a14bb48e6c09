"""``bench/_common.py``: the shared command line of a benchmark (``bench_main``) and ``run_and_write``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(not (ROOT / "bench" / "_common.py").is_file(), reason="bench/ is only in the source checkout")


def _runs(calls: list[str]):
    def main_run(device: str, quick: bool) -> dict:
        calls.append(f"main {device} {quick}")
        return {"which": "main"}

    def probe_run(device: str, quick: bool) -> dict:
        calls.append(f"probes {device} {quick}")
        return {"which": "probes"}

    return main_run, probe_run


def test_bench_main_runs_the_default_or_the_mode_its_flag_names(tmp_path, monkeypatch, capsys) -> None:
    from bench import _common

    monkeypatch.setattr(_common, "RESULTS_DIR", tmp_path)
    calls: list[str] = []
    main_run, probe_run = _runs(calls)
    modes = {"--probes": (probe_run, "demo_probes")}
    plain = _common.bench_main("Demo bench.\n", main_run, "demo", ["--quick"], modes=modes)
    probes = _common.bench_main("Demo bench.\n", main_run, "demo", ["--probes", "--device", "cuda:0"], modes=modes)
    assert calls == ["main cpu True", "probes cuda:0 False"]
    assert plain["path"] == str(tmp_path / "demo_cpu_quick.json") and probes["path"] == str(tmp_path / "demo_probes_cuda.json")
    written = json.loads((tmp_path / "demo_probes_cuda.json").read_text())
    assert written["which"] == "probes" and written["wall_s"] >= 0
    assert f"wrote {tmp_path / 'demo_probes_cuda.json'}" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        _common.bench_main("Demo bench.\n", main_run, "demo", ["--privacy"], modes=modes)  # not a flag of this bench


def test_run_and_write_times_the_run_and_writes_it(tmp_path, monkeypatch) -> None:
    from bench import _common

    monkeypatch.setattr(_common, "RESULTS_DIR", tmp_path)
    result, path = _common.run_and_write("demo_study", lambda: {"rows": [1, 2]})
    assert path == tmp_path / "demo_study.json" and json.loads(path.read_text()) == result
    assert result["rows"] == [1, 2] and result["wall_s"] >= 0


def test_defaults_tag_changes_with_the_training_defaults(monkeypatch):
    """A personal model cached under the tag is trained again once the defaults change, and reused
    while they do not."""
    from types import SimpleNamespace

    import workbench.training_defaults as td
    from bench._common import defaults_tag
    from workbench.adapters import LoRAConfig

    backend = SimpleNamespace(model_type="whisper", num_layers=4, name="w", is_seq2seq=True)
    now = defaults_tag(backend)
    assert now == defaults_tag(backend) and len(now) == 8
    monkeypatch.setitem(td.TRAIN_SETTINGS, "whisper",
                        lambda b: {"adapter": LoRAConfig(rank=8, alpha=16.0, top_layers=0, decoder=True)})
    assert defaults_tag(backend) != now


def test_run_and_write_removes_a_finished_studys_partial_file_only_after_writing(tmp_path, monkeypatch):
    """A study returns its Partial under "_partial": the result is written without it, then its
    partial file goes; a study that fails keeps every finished run for the rerun."""
    from bench import _common

    monkeypatch.setattr(_common, "RESULTS_DIR", tmp_path)
    partial = _common.Partial("demo", {"steps": 3})
    partial.run("a", lambda: {"wer": 0.5})
    assert _common.Partial.saved("demo") == {"a": {"wer": 0.5}}

    def failing() -> dict:
        raise RuntimeError("stopped")

    with pytest.raises(RuntimeError):
        _common.run_and_write("demo", failing)
    assert partial.path.is_file()
    result, path = _common.run_and_write("demo", lambda: {"rows": dict(partial.runs), "_partial": partial})
    assert json.loads(path.read_text())["rows"] == {"a": {"wer": 0.5}} and "_partial" not in result
    assert not partial.path.is_file() and _common.Partial.saved("demo") == {}
