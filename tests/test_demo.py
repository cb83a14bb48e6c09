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
