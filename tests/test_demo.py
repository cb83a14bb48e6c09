"""`workbench demo` end to end on the shipped sample data with the shipped model."""

from __future__ import annotations

import os

import pytest

from workbench.cli import main
from workbench.models.tiny import default_model_dir

HAS_WEIGHTS = (default_model_dir() / "model.safetensors").is_file()
needs_weights = pytest.mark.skipif(
    not HAS_WEIGHTS and os.environ.get("WORKBENCH_REQUIRE_MODEL") != "1",
    reason="the built-in model weights are not installed (train them with recipes/pretrain_tiny.py)")


@needs_weights
def test_demo_improves_wer_and_writes_the_report(tmp_path, capsys) -> None:
    code = main(["demo", "--quick", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, f"the personal model did not improve WER:\n{out}"
    assert "Report:" in out and "Not a medical device" in out
    reports = list(tmp_path.glob("report-*.html"))
    assert reports and "ASR word error rate" in reports[0].read_text()


def test_demo_with_missing_data_says_what_to_do(tmp_path, capsys) -> None:
    code = main(["demo", "--data", str(tmp_path / "nowhere")])
    assert code == 2
    assert "sample data not found" in capsys.readouterr().err


def test_cli_help_and_not_yet_commands(capsys) -> None:
    assert main([]) == 0
    assert "personalize" in capsys.readouterr().out
    assert main(["--version"]) == 0


@needs_weights
def test_demo_says_what_to_do_after_no_improvement(tmp_path, capsys, monkeypatch) -> None:
    """Issue 24 A6 (review): after "No improvement" the demo printed the figures but not the advice."""
    import dataclasses

    import workbench.demo
    import workbench.workflow

    real = workbench.workflow.personalize_speaker

    def learns_nothing(*args, config, **kwargs):  # the demo's run with a learning rate too small to change a word
        config = dataclasses.replace(config, learning_rate=1e-12, max_steps=4, eval_every=2, time_limit_s=None)
        return real(*args, config=config, **kwargs)

    monkeypatch.setattr(workbench.workflow, "personalize_speaker", learns_nothing)
    monkeypatch.setattr(workbench.demo, "_real_voice", lambda data, n: None)
    code = main(["demo", "--quick", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 1 and "(no improvement)" in out, out
    assert "No improvement: the personal model made" in out and "Do not use this run" in out, out
