"""The main job's steps one by one (prepare, train, finish), as notebook 03 and the app call them."""

from __future__ import annotations

import pytest

from workbench.adapters import ResidualConfig
from workbench.corpus import SpeakerCorpus
from workbench.errors import TrainingError
from workbench.trainer import TrainConfig
from workbench.workflow import finish, prepare, train

from _models import noise_waves, tiny_backend

pytestmark = pytest.mark.filterwarnings("ignore:the (held-out|validation) set has only")

PROMPTS = ["turn on the light", "call my sister", "i am hungry", "good morning", "open the door",
           "where is my phone", "thank you very much", "i need some help", "close the window",
           "what time is it", "please pass the salt", "see you tomorrow"]
CONFIG = TrainConfig(adapter=ResidualConfig(bottleneck=4), max_steps=3, time_limit_s=None, eval_every=2,
                     batch_size=4, min_utterances=4)


@pytest.fixture
def speaker(tmp_path):
    corpus = SpeakerCorpus.create(tmp_path / "data", "spk-steps", prompts=PROMPTS, simulated=True)
    for i, w in enumerate(noise_waves(24, seed=7, lo=12000, hi=20000)):
        corpus.add_take(w * 3, prompt=PROMPTS[i % len(PROMPTS)])
    return corpus


def test_the_steps_by_hand_save_where_they_are_told(speaker, tmp_path) -> None:
    out = tmp_path / "out"
    plan = prepare(speaker.root, backend=tiny_backend(), config=CONFIG, submodel_dir=out, report_dir=out)
    assert plan.result is None and plan.trainer.step == 0 and "given" in plan.base_model_reason
    prompts = [{e.text for e in part} for part in (plan.train, plan.valid, plan.held_out)]
    assert all(prompts) and not (prompts[0] & prompts[1] or prompts[0] & prompts[2] or prompts[1] & prompts[2])
    before = plan.base_transcripts()
    assert len(before) == len(plan.held_out) and plan.base_transcripts() is before  # computed once
    with pytest.raises(TrainingError, match="train first"):
        finish(plan)
    seen = []
    result = train(plan, progress=False, callbacks={"on_step": seen.append})
    assert plan.result is result and [e["step"] for e in seen] == [1, 2, 3]
    with pytest.raises(TrainingError, match="trained already"):
        train(plan, progress=False)
    run = finish(plan)
    assert [u.before for u in run.comparison.utterances] == before  # the "before" shown before training
    assert run.submodel_path.parent == out and run.report_html.parent == out and run.report_csv.is_file()
    assert "<img" not in run.report_html.read_text()  # no figures asked for
    assert not (speaker.root / "submodels").exists() and not (speaker.root / "reports").exists()
    run.adapted.remove()


def test_a_stop_before_the_first_check_saves_and_reports_nothing(speaker) -> None:
    """Issue 24 A5: an untrained adapter is not a personal model ("85.7 % before, 85.7 % after")."""
    from workbench.workflow import NothingLearnedError, personal_submodel

    plan = prepare(speaker.root, backend=tiny_backend(), config=CONFIG)
    plan.trainer.stop()  # a Stop button pressed while the features were being prepared
    assert train(plan, progress=False).stopped_reason == "stopped by user"
    with pytest.raises(NothingLearnedError, match="Stopped before the first check: nothing learned yet"):
        finish(plan, figures=lambda comparison, history: [b"\x89PNG made by the view"])
    assert not list((speaker.root / "submodels").glob("*")) and not list((speaker.root / "reports").glob("*"))
    assert personal_submodel(speaker.root) is None
    plan.adapted.remove()


def test_settings_go_over_the_models_defaults(speaker) -> None:
    plan = prepare(speaker.root, backend=tiny_backend(), settings={"max_steps": 7, "min_utterances": 4}, seed=3)
    assert (plan.config.max_steps, plan.config.seed) == (7, 3)
    plan.adapted.remove()


def test_the_report_and_the_submodel_say_why_training_stopped_in_the_apps_words(speaker, tmp_path) -> None:
    """Issue 24 review: the report printed the trainer's code ("max steps", "time budget") where the app
    said "step limit reached", "time limit reached" (trainer.STOP_REASONS)."""
    import html

    from workbench.adapters.io import read_submodel
    from workbench.trainer import STOP_REASONS

    plan = prepare(speaker.root, backend=tiny_backend(), config=CONFIG, submodel_dir=tmp_path, report_dir=tmp_path)
    assert train(plan, progress=False).stopped_reason == "max steps"
    run = finish(plan)
    page = html.unescape(run.report_html.read_text())
    assert "step limit reached" in page and "max steps" not in page
    training = read_submodel(run.submodel_path)[1]["training"]
    assert training["stopped"] == "max steps"  # the code, for programs (run_advice reads it)
    assert training["stopped_because"] == STOP_REASONS["max steps"] == "step limit reached"  # for people
    run.adapted.remove()
