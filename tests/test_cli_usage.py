"""The command line's words (issue 31): ``--family`` is the adapter family (``personalize``, ``train-bank``),
``--adapter`` a Submodel file everywhere else; flags that do not go together are a :class:`UsageError`
(exit code 2, the plain message, no traceback)."""

from __future__ import annotations

from pathlib import Path

import pytest

from workbench.adapters import HRAConfig, LoRAConfig, ResidualConfig
from workbench.cli import build_parser, main
from workbench.errors import UsageError, WorkbenchError
from workbench.notices import Notice

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"
SPEAKER = str(SAMPLE / "sim-accent")
TRAIN = {"personalize": ["personalize", SPEAKER], "train-bank": ["train-bank", str(SAMPLE), "--out", "b.safetensors"]}




@pytest.mark.parametrize("command", sorted(TRAIN))
def test_family_names_the_adapter_family(captured, command) -> None:
    assert main([*TRAIN[command], "--family", "residual"]) == 2  # the "captured" stop
    assert isinstance(captured["config"].adapter, ResidualConfig)


@pytest.mark.parametrize("command", sorted(TRAIN))
def test_adapter_still_names_the_family_there_with_a_note_to_use_family(captured, command) -> None:
    with pytest.warns(Notice, match=f"use --family hra: for {command}, --adapter still names the adapter family"):
        assert main([*TRAIN[command], "--adapter", "hra"]) == 2
    assert isinstance(captured["config"].adapter, HRAConfig)


@pytest.mark.parametrize("command", sorted(TRAIN))
def test_family_and_its_former_name_together_are_refused_before_anything_runs(captured, command, capsys) -> None:
    assert main([*TRAIN[command], "--family", "lora", "--adapter", "hra"]) == 2
    err = capsys.readouterr().err
    assert f"workbench {command}: --adapter is the former name of --family here" in err
    assert "--family lora" in err and "Traceback" not in err and "config" not in captured


def test_no_family_keeps_the_base_models_default(captured, recwarn) -> None:
    assert main(TRAIN["personalize"]) == 2
    assert captured["config"].adapter == LoRAConfig()  # the table's default for the built-in model
    assert not [w for w in recwarn if issubclass(w.category, Notice) and "--family" in str(w.message)]


@pytest.mark.parametrize("command", ["transcribe", "evaluate", "report"])
def test_adapter_is_a_submodel_file_everywhere_else(command) -> None:
    parser = build_parser()
    target = "a.wav" if command == "transcribe" else "spk"
    assert parser.parse_args([command, target, "--adapter", "run.safetensors"]).adapter == "run.safetensors"
    with pytest.raises(SystemExit) as stop:  # no --family there: a Submodel file brings its own family
        parser.parse_args([command, target, "--family", "lora"])
    assert stop.value.code == 2


def test_a_usage_error_is_a_plain_workbench_error() -> None:
    err = UsageError("--speaker-space must be at least 1 number per speaker, got 0 (16 is a good start)")
    assert isinstance(err, WorkbenchError) and isinstance(err, ValueError)


@pytest.mark.parametrize(("argv", "message"), [
    (["--speaker-space", "0"], "--speaker-space must be at least 1 number per speaker, got 0"),
    (["--speaker-space", "8", "--family", "lora"], "--speaker-space learns HRA heads from a vector per speaker; "
                                                   "leave out --family lora or use --family hra"),
])
def test_flags_that_do_not_go_together_exit_2_with_the_plain_message(captured, capsys, argv, message) -> None:
    assert main([*TRAIN["train-bank"], *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"workbench train-bank: {message}") and "Traceback" not in err
    assert "config" not in captured  # refused before training


def test_the_speaker_space_check_raises_usage_error(monkeypatch) -> None:
    """What main() turns into exit code 2 is a UsageError, not a TrainingError."""
    import workbench.cli as cli

    args = build_parser().parse_args([*TRAIN["train-bank"], "--speaker-space", "0"])
    monkeypatch.setattr("workbench.distributed.init_from_env", lambda device: "cpu")
    monkeypatch.setattr("workbench.distributed.shutdown", lambda wait: None)
    with pytest.raises(UsageError, match="at least 1"):
        cli._cmd_train_bank(args)
