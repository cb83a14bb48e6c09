"""The ``workbench`` command line: its parser, ``--help`` of every subcommand, plain errors and
exit codes, and ``transcribe``/``evaluate`` with the built-in model on a copy of ``sample_data/``.

Files on disk (``import``, ``record``, damaged or long audio) are in ``test_cli_files.py``; the
demo in ``test_demo.py``; adapter choices and banks in ``test_distributed.py``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from workbench.cli import build_parser, main
from workbench.evaluate import wer

SAMPLE = Path(__file__).resolve().parent.parent / "sample_data"
SPEAKER = "sim-typical-espeak"  # the clearest simulated voice: the built-in model hears it well
SUBCOMMANDS = {"bench", "demo", "evaluate", "import", "personalize", "record", "report", "serve", "simulate",
               "train-bank", "transcribe"}
NO_FOLDER = "No speaker folder at"


def _subcommands() -> dict[str, object]:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    return dict(sub.choices)


@pytest.fixture
def speaker_copy(tmp_path: Path) -> Path:
    """A copy of one shipped speaker folder (commands may write; sample_data/ stays untouched)."""
    dst = tmp_path / SPEAKER
    shutil.copytree(SAMPLE / SPEAKER, dst)
    return dst


def test_the_parser_has_every_documented_subcommand() -> None:
    assert set(_subcommands()) >= SUBCOMMANDS


@pytest.mark.parametrize("name", sorted(_subcommands()))
def test_help_of_each_subcommand_exits_0_and_shows_its_usage(name: str, capsys) -> None:
    with pytest.raises(SystemExit) as done:
        main([name, "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: workbench {name}")
    assert "-h, --help" in out


def test_defaults_and_choices_are_parsed_as_documented() -> None:
    parser = build_parser()
    args = parser.parse_args(["personalize", "spk"])
    assert (args.speaker_dir, args.model, args.family, args.minutes, args.decoder, args.seed) == (
        "spk", "auto", None, 15.0, "lexicon", 0)  # a ceiling: training ends on convergence first
    args = parser.parse_args(["transcribe", "a.wav", "b.flac", "--model", "tiny", "--speaker", "sim-x"])
    assert (args.files, args.model, args.decoder, args.adapter, args.speaker) == (
        ["a.wav", "b.flac"], "tiny", "greedy", None, "sim-x")
    args = parser.parse_args(["train-bank", "s1", "s2", "--out", "b.safetensors", "--steps", "7"])
    assert (args.speakers, args.out, args.steps, args.minutes, args.device, args.per_speaker_selection) == (
        ["s1", "s2"], "b.safetensors", 7, 15.0, "auto", False)  # one ceiling everywhere (RUN_DEFAULTS)
    evaluate, report = parser.parse_args(["evaluate", "spk"]), parser.parse_args(["report", "spk"])
    assert evaluate.report is False and report.report is False  # report sets it when it runs
    assert evaluate.func is not report.func
    assert parser.parse_args(["record", "spk", "--consent", "c1"]).create is False


@pytest.mark.parametrize(("argv", "words"), [
    (["train-bank", "s1"], "the following arguments are required: --out"),
    (["transcribe", "a.wav", "--decoder", "beam"], "invalid choice: 'beam'"),
    (["personalize", "spk", "--minutes", "soon"], "invalid float value: 'soon'"),
    (["record", "spk"], "the following arguments are required: --consent"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
])
def test_a_bad_command_line_is_a_usage_error_with_exit_2(argv: list[str], words: str, capsys) -> None:
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: workbench") and words in err


@pytest.mark.parametrize(("argv", "words"), [
    (["personalize", "nowhere"], NO_FOLDER),
    (["evaluate", "nowhere", "--model", "tiny"], NO_FOLDER),
    (["report", "nowhere"], NO_FOLDER),
    (["import", "nowhere", "t.txt", "spk"], "'nowhere' is not a folder"),
    (["train-bank", "nowhere", "--out", "b.safetensors", "--model", "tiny"], "'nowhere' is not a folder"),
    (["transcribe", "nowhere.wav", "--model", "tiny"], "'nowhere.wav' was not found"),
])
def test_a_missing_folder_or_file_is_one_plain_line_and_exit_2(argv, words, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"workbench {argv[0]}: ") and words in last
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing was created


def test_python_dash_m_workbench_runs_the_same_entry_point(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "workbench", "evaluate", str(tmp_path / "nowhere")],
                          check=False, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stdout == "" and NO_FOLDER in proc.stderr and "Traceback" not in proc.stderr


def test_transcribe_with_the_built_in_model_prints_file_tab_text(speaker_copy: Path, capsys) -> None:
    rows = [json.loads(line) for line in (speaker_copy / "manifest.jsonl").read_text().splitlines()[:4]]
    files = [str(speaker_copy / r["audio_path"]) for r in rows]
    assert main(["transcribe", *files, "--model", "tiny"]) == 0
    out, err = capsys.readouterr()
    assert "base model: tiny (chosen by you)" in err.lower()
    lines = out.splitlines()
    assert [ln.split("\t")[0] for ln in lines] == files
    heard = [ln.split("\t", 1)[1] for ln in lines]
    assert all(heard)
    assert wer([r["transcript"] for r in rows], heard) < 0.5  # it was trained on voices like this one


def test_evaluate_picks_the_built_in_model_for_a_simulated_speaker_and_writes_nothing(speaker_copy, capsys):
    before = sorted(p.relative_to(speaker_copy) for p in speaker_copy.rglob("*"))
    assert main(["evaluate", str(speaker_copy), "--decoder", "greedy"]) == 0
    out, err = capsys.readouterr()
    assert "the built-in model (this is a simulated speaker" in err
    assert f"{SPEAKER}: ASR word error rate" in out and "held-out recordings, base model" in out
    assert sorted(p.relative_to(speaker_copy) for p in speaker_copy.rglob("*")) == before
