"""The thinner command line (issue 31 item 10): shared flag groups (``workbench/cli_args.py``), one
choice of the personal model (``workflow.evaluation.choose_models``), ``evaluate_speaker`` returning
one type and printing nothing, and :class:`UsageError` for a flag value no command can use."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from workbench.adapters import ResidualConfig, inject
from workbench.cli import build_parser, main
from workbench.corpus import SpeakerCorpus
from workbench.errors import UsageError
from workbench.workflow.evaluation import BaseScore, Evaluation, ModelsInUse, choose_models, evaluate_speaker

from _models import noise_waves

pytestmark = pytest.mark.filterwarnings("ignore:the (held-out|validation) set has only")

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"
PROMPTS = ["turn on the light", "call my sister", "i am hungry", "good morning"]
#: flag -> the commands that take it: each is added by one function of cli_args, so it must be one flag
SHARED = {"--model": ["personalize", "train-bank", "transcribe", "evaluate", "report", "listen"],
          "--size": ["personalize", "transcribe", "listen"],
          "--vocabulary": ["personalize", "transcribe", "evaluate", "report", "listen"],
          "--family": ["personalize", "train-bank"], "--minutes": ["personalize", "train-bank"],
          "--seed": ["personalize", "train-bank"], "--token": ["transcribe", "serve-asr"]}


def _flag(command: str, flag: str):
    parser = build_parser()
    (sub,) = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    (action,) = [a for a in sub.choices[command]._actions if flag in a.option_strings]
    return action


@pytest.mark.parametrize("flag", sorted(SHARED))
def test_a_shared_flag_is_one_flag_in_every_command_that_takes_it(flag) -> None:
    seen = {(a.dest, a.default, tuple(a.choices or ()), a.type, a.metavar)
            for a in (_flag(c, flag) for c in SHARED[flag])}
    assert len(seen) == 1, seen
    helps = {_flag(c, flag).help for c in SHARED[flag]} - {None}
    assert len(helps) <= 1 or flag == "--token", helps  # the token's help says who sends it


@pytest.mark.parametrize("argv", [["personalize", str(SAMPLE / "sim-accent")],
                                  ["train-bank", str(SAMPLE), "--out", "b.safetensors"]])
def test_an_unknown_family_is_a_usage_error_in_both_training_commands(captured, capsys, argv) -> None:
    args = build_parser().parse_args([*argv, "--family", "nope"])
    with pytest.MonkeyPatch.context() as mp:  # train-bank outside torchrun
        mp.setattr("workbench.distributed.init_from_env", lambda device: "cpu")
        mp.setattr("workbench.distributed.shutdown", lambda wait: None)
        with pytest.raises(UsageError, match=r"unknown adapter family 'nope'; choose one of \["):
            args.func(args)
    assert main([*argv, "--family", "nope"]) == 2  # exit code 2 and the same plain line, no traceback
    err = capsys.readouterr().err
    assert f"workbench {argv[0]}: unknown adapter family 'nope'" in err and "Traceback" not in err
    assert "config" not in captured  # refused before training


def _speaker_with_a_submodel(tmp_path: Path, backend) -> tuple[SpeakerCorpus, Path]:
    corpus = SpeakerCorpus.create(tmp_path, "spk-a", prompts=PROMPTS, simulated=True)
    for i, w in enumerate(noise_waves(4, seed=3, lo=12000, hi=16000)):
        corpus.add_take(w * 3, prompt=PROMPTS[i])
    adapted = inject(backend, ResidualConfig(bottleneck=4))
    try:
        path = adapted.save(tmp_path / "run.safetensors", speaker_ids=["spk-a"])
    finally:
        adapted.remove()
    return corpus, path


def test_evaluate_speaker_prints_nothing_and_returns_one_type_the_command_prints(tmp_path, capsys) -> None:
    from workbench.models import load_base_model

    backend = load_base_model("tiny")
    corpus, path = _speaker_with_a_submodel(tmp_path, backend)
    said: list[str] = []
    with_run = evaluate_speaker(corpus.root, backend=backend, adapter=path, decoder="greedy",
                                write_report=True, say=said.append)
    alone = evaluate_speaker(corpus.root, backend=backend, decoder="greedy")
    assert capsys.readouterr().out == ""  # the command line prints, the workflow does not
    assert isinstance(with_run, Evaluation) and isinstance(alone, Evaluation)
    assert with_run.report_html is not None and with_run.report_html.is_file()
    cmp_ = with_run.comparison
    assert isinstance(with_run.base, BaseScore) and cmp_ is not None
    assert (with_run.base.wer, with_run.base.n_utterances) == (cmp_.wer_before, len(cmp_.utterances))
    assert with_run.summary() == cmp_.summary()
    assert with_run.models.submodel == path and said == with_run.models.lines()
    assert said == [f"Personal model: {path.name} (given with --adapter)", f"Base model: {backend.name} (given)"]
    assert alone.comparison is None and alone.report_html is None and alone.summary() == alone.base.summary()
    assert alone.models.submodel is None and alone.models.submodel_reason.startswith("Personal model: none")

    # the command prints what the workflow returns: where the report is, then the result; the models on stderr
    assert main(["report", str(corpus.root), "--model", "tiny", "--adapter", str(path), "--decoder", "greedy"]) == 0
    out, err = capsys.readouterr()
    written = out.splitlines()[0].removeprefix("Report: ")
    assert Path(written).parent == corpus.root / "reports" and Path(written).is_file()
    assert out.splitlines() == [f"Report: {written}", cmp_.summary()]  # the same held-out takes, the same model
    assert f"Personal model: {path.name} (given with --adapter)\nBase model: tiny (chosen by you)" in err


def test_evaluate_chooses_the_personal_model_once(tmp_path, monkeypatch, capsys) -> None:
    """The command line and the workflow share one choice: the CLI no longer picks the model itself too."""
    import workbench.workflow as wf
    import workbench.workflow.personal as personal

    root = tmp_path / "sim-typical-espeak"
    shutil.copytree(SAMPLE / "sim-typical-espeak", root)
    calls: list[Path] = []
    real = personal.personal_submodel

    def counted(speaker_dir):
        calls.append(Path(speaker_dir))
        return real(speaker_dir)

    monkeypatch.setattr(personal, "personal_submodel", counted)
    monkeypatch.setattr(wf, "personal_submodel", counted)
    assert main(["evaluate", str(root), "--decoder", "greedy"]) == 0
    assert calls == [root]
    err = capsys.readouterr().err
    assert "Personal model: none (sim-typical-espeak has no run that beat the base model" in err
    assert "Base model: the built-in model (this is a simulated speaker" in err


def test_choose_models_without_a_speaker_or_submodel_asks_nothing_of_the_personal_model() -> None:
    models = choose_models(None, "tiny")
    assert isinstance(models, ModelsInUse) and models.submodel is None and models.submodel_reason is None
    assert models.lines() == ["Base model: tiny (chosen by you)"] and models.offline is False
    assert choose_models(None, "auto").offline is True


@pytest.mark.parametrize(("argv", "message"), [
    (["personalize", str(SAMPLE / "sim-accent"), "--minutes", "0"], "--minutes must be more than 0, got 0"),
    (["train-bank", str(SAMPLE), "--out", "b.safetensors", "--minutes", "-1"], "--minutes must be more than 0, got -1"),
    (["train-bank", str(SAMPLE), "--out", "b.safetensors", "--steps", "0"], "--steps must be at least 1, got 0"),
])
def test_a_time_or_step_limit_no_run_can_train_under_is_refused_before_a_model_loads(captured, capsys, monkeypatch,
                                                                                      argv, message) -> None:
    loaded: list = []
    monkeypatch.setattr("workbench.models.load_base_model", lambda *a, **k: loaded.append(a))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"workbench {argv[0]}: {message}") and "Traceback" not in err
    assert loaded == [] and "config" not in captured


def test_the_limits_reach_the_training_config(captured) -> None:
    assert main(["train-bank", str(SAMPLE), "--out", "b.safetensors", "--minutes", "2", "--steps", "7"]) == 2
    assert (captured["config"].time_limit_s, captured["config"].max_steps) == (120.0, 7)
