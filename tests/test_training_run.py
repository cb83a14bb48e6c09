"""The headless training run both views wrap (workbench.training_run): Stop, the progress record,
the time left, and the time ceiling, which is the trainer's own (the run never checks it)."""

from __future__ import annotations

import dataclasses
import threading

import pytest

from workbench.adapters import ResidualConfig
from workbench.dataset import Example
from workbench.errors import TrainingError
from workbench.progress import ceiling_note
from workbench.trainer import TrainConfig, Trainer
from workbench.trainer_events import StartEvent, StepEvent, StopEvent
from workbench.training_run import TrainingProgress, TrainingRun

from _models import noise_waves, tiny_backend
from test_load_independence import _on_clock

pytestmark = pytest.mark.filterwarnings("ignore:the validation set has only")

TEXTS = ["turn on the light", "call my sister", "i am hungry", "good morning"]


def _trainer(**kw) -> Trainer:
    train = [Example(w, TEXTS[i % 4], 0, f"t{i}") for i, w in enumerate(noise_waves(8))]
    valid = [Example(w, TEXTS[i % 4], 0, f"v{i}") for i, w in enumerate(noise_waves(3, seed=1))]
    settings = {"adapter": ResidualConfig(bottleneck=4), "max_steps": 10_000, "time_limit_s": None, "batch_size": 4,
                "eval_every": 1, "min_utterances": 4, "patience": 0, "speed_perturb": (), **kw}
    return Trainer(tiny_backend(), train, valid, TrainConfig(**settings))


def test_a_run_follows_its_trainer_to_the_end_in_one_frozen_record() -> None:
    trainer = _trainer(max_steps=3)
    phases: list[str] = []
    run = TrainingRun(trainer.fit, trainer=trainer, on_update=lambda: phases.append(run.phase))
    first = run.progress()
    assert isinstance(first, TrainingProgress) and first.phase == "waiting" and first.fraction == 0.0
    assert first.max_steps == 3 and first.time_limit_s is None and first.status == "ready"
    assert run.start() and not run.start()  # one run per TrainingRun
    assert run.join(120)
    p = run.progress()
    assert p.finished and p.phase == "finished" and p.fraction == 1.0 and p.error is None
    assert [s for s, _ in p.losses] == [1, 2, 3] and [s for s, _ in p.wers] == [0, 1, 2, 3]  # step 0: the base model
    assert p.stop_reason == "step limit reached" and not p.stop_requested and p.cut_short == ""
    assert p.status == f"finished (step limit reached) after 3 steps in {p.elapsed_s:.0f} s"
    assert p.loss_name == "CTC" and p.time_left_s is None and p.version > first.version
    assert run.result.steps == 3 and run.result.seconds == pytest.approx(p.elapsed_s)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.step = 4  # type: ignore[misc]
    assert phases[-1] == "finished"  # the view's last redraw comes after the end
    run.detach()
    assert run.trainer is None and not any(cb.__self__ is run for cbs in trainer.events.values() for cb in cbs
                                           if hasattr(cb, "__self__"))


def test_stop_ends_the_run_after_the_current_step_and_one_last_check() -> None:
    trainer = _trainer()  # 10 000 steps, no time limit: only Stop ends it
    at_two, go = threading.Event(), threading.Event()

    def hold(e: StepEvent) -> None:
        if e.step == 2:
            at_two.set()
            go.wait(60)

    run = TrainingRun(trainer.fit, trainer=trainer)
    trainer.on("on_step", hold)  # after the run's own subscription: its record already says step 2
    run.start()
    assert at_two.wait(120)
    run.stop()
    p = run.progress()
    assert p.stop_requested and not p.finished and p.step == 2 and p.status.startswith("stopping after this step")
    go.set()
    assert run.join(120)
    result, p = run.result, run.progress()
    assert result.stopped_reason == "stopped by user" and result.steps == 2
    assert [h["step"] for h in result.history if h["kind"] == "eval"][-1] == 2  # the last check ran
    assert p.stop_reason == "stopped by user" and p.fraction == 1.0 and "finished (stopped by user)" in p.status
    run.stop()  # after the end: nothing happens
    assert run.progress().version == p.version


def test_a_stop_asked_before_the_trainer_exists_stops_it_once_attached() -> None:
    """The app's run: Stop pressed while the base model loads."""
    loaded = threading.Event()

    def work():
        assert loaded.wait(60)
        trainer = _trainer()
        run.attach(trainer)
        return trainer.fit()

    run = TrainingRun(work)
    run.start()
    run.stop()
    assert run.progress().stop_requested and not run.finished
    loaded.set()
    assert run.join(120)
    assert run.result.stopped_reason == "stopped by user" and run.result.steps == 0


def test_the_time_ceiling_is_the_trainers_and_the_run_only_reports_it() -> None:
    """On a clock where a step takes 2 s and a check 1 s, a 10 s ceiling (checks included) ends the
    run after 3 steps at exactly 10 s: the trainer decides, the run says so and never stops it itself."""
    trainer = _on_clock(_trainer(time_limit_s=10.0), step_s=2.0, eval_s=1.0)
    run = TrainingRun(trainer.fit, trainer=trainer)
    assert run.progress().time_limit_s == 10.0
    run.start()
    assert run.join(120)
    result, p = run.result, run.progress()
    assert result.stopped_reason == "time budget" and result.steps == 3 and result.seconds == 10.0
    assert [h["step"] for h in result.history if h["kind"] == "eval"] == [0, 1, 2, 3]
    assert not p.stop_requested and not trainer._stop.is_set()  # nobody but the trainer ended it
    assert p.stop_reason == "time limit reached" and p.elapsed_s == 10.0
    assert p.cut_short == ceiling_note(3, 10_000) and p.status.endswith(f": {p.cut_short}")


def test_the_time_left_comes_from_the_measured_pace_and_the_ceiling() -> None:
    now = [100.0]
    run = TrainingRun(lambda: None, clock=lambda: now[0])
    run._on_start(StartEvent(max_steps=100, time_limit_s=900.0, train_utterances=8, valid_utterances=3,
                             parameters={}, left_out="1 recording was left out"))
    assert run.time_left() is None and run.progress().left_out == "1 recording was left out"  # no step yet
    now[0] += 20.0
    run._on_step(StepEvent(step=10, loss=1.0, loss_name="CTC", lr=1e-3, grad_norm=1.0, steps_per_s=0.5,
                           elapsed_s=20.0))  # 2 s a step so far, checks included
    p = run.progress()
    assert p.time_left_s == pytest.approx(180.0)  # 90 steps to the step limit
    assert p.status == "training: 20 of at most 900 s, step 10 (at most 100 steps), at most about 3 minutes left"
    now[0] += 5.0
    p = run.progress()
    assert p.time_left_s == pytest.approx(175.0) and p.training_s == pytest.approx(25.0)  # live between steps
    assert p.fraction == pytest.approx(0.1)  # steps are further along than seconds (25 of 900)
    run.update(time_limit_s=60.0)  # a low ceiling bounds the estimate, and the bar follows it
    assert run.time_left() == pytest.approx(35.0) and run.fraction == pytest.approx(25 / 60)
    note = ceiling_note(10, 100)
    run._on_stop(StopEvent(reason="time budget", text="time limit reached", step=10, elapsed_s=60.0, note=note))
    p = run.progress()
    assert p.phase == "measuring" and p.time_left_s is None and p.training_s == 60.0 and p.cut_short == note
    assert p.status == f"finished (time limit reached) after 10 steps in 60 s: {note}"


def test_a_failure_is_kept_in_words_and_the_run_ends() -> None:
    def work():
        raise TrainingError("the training loss became nan")

    run = TrainingRun(work, explain=lambda err: f"explained: {err}", keep_error=False)
    run.start()
    assert run.join(60)
    p = run.progress()
    assert p.phase == "failed" and p.finished and p.fraction == 1.0 and run.finished_at is not None
    assert p.error == "explained: the training loss became nan" and p.status == f"stopped with an error: {p.error}"
    assert run.error is None  # keep_error=False: only the words (the traceback would hold the work's objects)
    kept = TrainingRun(work)
    kept.start()
    assert kept.join(60) and isinstance(kept.error, TrainingError)


def test_an_outcome_the_work_names_is_final_and_fields_are_checked() -> None:
    run = TrainingRun(lambda: run.set_phase("nothing learned"), done="done", outcomes=("nothing learned",))
    run.start()
    assert run.join(60) and run.phase == "nothing learned" and run.finished and run.finished_at is not None
    done = TrainingRun(lambda: 42, done="done")
    done.start()
    assert done.join(60) and done.phase == "done" and done.result == 42
    with pytest.raises(AttributeError, match="no settable field"):
        done.update(step=3)
