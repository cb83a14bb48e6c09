"""The live trainer view, driven headless: start, two steps, stop."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from workbench.adapters import ResidualConfig
from workbench.dataset import Example
from workbench.trainer import TrainConfig, Trainer
from workbench.ui.trainer import Throttle, TrainerSession

from _models import noise_waves, tiny_backend
from conftest import make_speechlike

pytestmark = pytest.mark.filterwarnings("ignore:the validation set has only")

TEXTS = ["turn on the light", "call my sister", "i am hungry", "good morning"]


def _trainer(**kw) -> Trainer:
    train = [Example(w, TEXTS[i % 4], 0, f"t{i}") for i, w in enumerate(noise_waves(8))]
    held = [Example(w, TEXTS[i % 4], 0, f"h{i}") for i, w in enumerate(noise_waves(3, seed=1))]
    cfg = TrainConfig(adapter=ResidualConfig(bottleneck=4), max_steps=10_000, time_limit_s=None, batch_size=4,
                      eval_every=1, min_utterances=4, patience=0, **kw)
    return Trainer(tiny_backend(), train, held, cfg)


def test_throttle_limits_calls() -> None:
    calls, now = [], [0.0]
    t = Throttle(lambda: calls.append(now[0]), 0.5, clock=lambda: now[0])
    for i in range(10):
        now[0] = i * 0.1
        t()
    assert calls == [0.0, 0.5]
    t.flush()
    assert len(calls) == 3


def test_start_two_steps_stop_keeps_best_and_ends_thread() -> None:
    trainer = _trainer()
    two = threading.Event()
    trainer.on("on_step", lambda e: two.set() if e["step"] >= 2 else None)
    session = TrainerSession(trainer, update_interval=0.0)
    session.start()
    assert two.wait(60)
    session.stop()
    assert session.join(60)
    assert session.error is None and session.result is not None
    assert session.result.stopped_reason == "stopped by user"
    kept = [e for e in session.result.history if e["kind"] == "eval" and e["step"] == session.result.best_step]
    assert kept and session.result.best_wer == kept[0]["wer"]  # the WER of the checkpoint kept
    assert kept[0]["loss"] == min(e["loss"] for e in session.result.history if e["kind"] == "eval")
    assert "finished" in session.snapshot()["status"]
    out = session.try_phrase(noise_waves(1, seed=3)[0])
    assert set(out) == {"base", "personal"}


def test_widget_updates_from_the_training_thread() -> None:
    pytest.importorskip("ipywidgets")
    trainer = _trainer()
    trainer.config.max_steps = 3
    session = TrainerSession(trainer, update_interval=0.0)
    view = session.widget(phrases={"call my sister": noise_waves(1, seed=4)[0]}, record=False)
    start = view.children[0].children[0]
    start.click()
    assert session.join(60)
    bar, image = view.children[0].children[2], view.children[2]
    assert bar.value == bar.max == 100 and len(image.value) > 1000  # the bar ends full
    try_button = view.children[3].children[1]
    assert not try_button.disabled
    try_button.click()
    answer = view.children[4].value
    assert "personal model" in answer and "<b>said</b></td><td>call my sister" in answer
    assert "wb-align" in answer  # word by word against what was said


def test_try_it_with_a_recording() -> None:
    pytest.importorskip("ipywidgets")
    pytest.importorskip("anywidget")
    from workbench.audio import Recording
    from workbench.ui.recorder import Recorder

    trainer = _trainer()
    trainer.config.max_steps = 2
    session = TrainerSession(trainer, update_interval=0.0)
    rec = Recorder(prefer="upload")
    view = session.widget(record=rec)
    answer = view.children[-1]
    assert len(view.children) == 6  # the recorder sits above the answer
    rec.deliver(Recording(make_speechlike(1.2)), "browser")
    assert "Train first" in answer.value  # not trained yet: nothing is transcribed
    hold = threading.Event()
    trainer.on("on_step", lambda e: hold.wait(30))
    session.start()
    rec.deliver(Recording(make_speechlike(1.2)), "browser")
    assert "still running" in answer.value
    hold.set()
    assert session.join(60)
    rec.deliver(Recording(make_speechlike(1.2)), "browser")
    assert "base model" in answer.value and "personal model" in answer.value and "said" not in answer.value
    rec.deliver(Recording(np.zeros(16_000, np.float32)), "browser")
    assert "Silent" in answer.value and "base model" not in answer.value  # the quality message instead


def test_errors_in_the_thread_are_kept_for_the_view() -> None:
    trainer = _trainer()
    trainer.adapted.loss = lambda b, t: (_ for _ in ()).throw(RuntimeError("boom"))
    session = TrainerSession(trainer)
    session.start()
    assert session.join(60)
    assert isinstance(session.error, RuntimeError) and "boom" in session.status


def test_progress_follows_the_budget_that_ends_the_run() -> None:
    """The notebook's run: at most 400 steps but 20 s; after 10 s the bar is at 50 %, not 6/400 = 1.5 %."""
    trainer = _trainer()
    trainer.config.max_steps, trainer.config.time_limit_s = 400, 20.0
    session = TrainerSession(trainer, update_interval=0.0)
    session._on_step({"step": 6, "loss": 1.0, "elapsed_s": 10.0})
    assert session.progress == pytest.approx(0.5)
    assert "10 of at most 20 s" in session.snapshot()["status"]
    session._on_step({"step": 300, "loss": 1.0, "elapsed_s": 11.0})  # steps can end it first, too
    assert session.progress == pytest.approx(0.75)
    trainer.config.time_limit_s = None
    steps_only = TrainerSession(trainer)
    steps_only._on_step({"step": 100, "loss": 1.0, "elapsed_s": 50.0})
    assert steps_only.progress == pytest.approx(0.25) and "step 100 of at most 400" in steps_only.status


def test_time_budget_run_ends_at_100_percent_and_start_is_disabled_while_training() -> None:
    pytest.importorskip("ipywidgets")
    trainer = _trainer()
    trainer.config.time_limit_s = 1.0  # the time budget ends it, far below max_steps
    session = TrainerSession(trainer, update_interval=0.0)
    view = session.widget(record=False)
    start, stop, bar = view.children[0].children
    assert not start.disabled and stop.disabled
    hold = threading.Event()
    trainer.on("on_step", lambda e: hold.wait(30))
    assert session.start()  # from code, as the notebook does under Run All
    assert start.disabled and not stop.disabled
    start.click()  # a second click while training does nothing
    assert session.start() is False  # nor does the notebook's cell after a click on Start
    hold.set()
    assert session.join(60)
    assert session.result.stopped_reason == "time budget" and session.result.steps < trainer.config.max_steps
    assert bar.value == 100 and bar.bar_style == "success"
    assert start.disabled and stop.disabled  # one run per session


def test_wait_lets_the_event_loop_handle_stop() -> None:
    """``await session.wait()`` keeps the loop running, so a Stop click (a comm message handled on the
    kernel's loop) gets through while a cell waits; ``join()`` would block the loop until the end."""
    trainer = _trainer()  # 10 000 steps, no time budget: only Stop ends it
    session = TrainerSession(trainer, update_interval=0.0)
    stepped = threading.Event()
    trainer.on("on_step", lambda e: stepped.set())

    async def cell() -> object:
        session.start()
        loop = asyncio.get_running_loop()

        async def click_stop_later() -> None:  # what the kernel does with the Stop button's comm message
            await loop.run_in_executor(None, stepped.wait, 60)
            session.stop()

        clicker = asyncio.ensure_future(click_stop_later())
        result = await asyncio.wait_for(session.wait(poll=0.05), 120)
        await clicker
        return result

    result = asyncio.run(cell())
    assert result is session.result and result.stopped_reason == "stopped by user"
    assert not session.running and "stopped by user" in session.status


def test_wait_says_how_to_stop_on_a_kernel_that_queues_widget_messages(monkeypatch) -> None:
    import workbench.ui.trainer as mod

    monkeypatch.setattr(mod, "_kernel_handles_comms_while_waiting", lambda: False)
    trainer = _trainer()
    session = TrainerSession(trainer, update_interval=0.0)
    stepped = threading.Event()
    trainer.on("on_step", lambda e: stepped.set())
    session.start()

    async def cell() -> None:
        waiting = asyncio.ensure_future(session.wait(poll=0.05))
        await asyncio.get_running_loop().run_in_executor(None, stepped.wait, 60)
        assert "interrupt the kernel" in session.status
        waiting.cancel()  # what interrupting the kernel does to an awaiting cell
        with pytest.raises(asyncio.CancelledError):
            await waiting

    asyncio.run(cell())
    assert session.join(60) and session.result.stopped_reason == "stopped by user"  # the interrupt stopped it


def test_the_session_runs_the_workflows_train_step_then_finish_follows(tmp_path) -> None:
    """Notebook 03: prepare, a live session over the train step (Stop works), then finish."""
    from workbench.corpus import SpeakerCorpus
    from workbench.workflow import finish, prepare, train

    corpus = SpeakerCorpus.create(tmp_path, "spk-live", prompts=TEXTS + ["open the door", "see you soon"])
    for i, w in enumerate(noise_waves(18, seed=4, lo=12000, hi=20000)):
        corpus.add_take(w * 3, prompt=(TEXTS + ["open the door", "see you soon"])[i % 6])
    plan = prepare(corpus.root, backend=tiny_backend(), config=TrainConfig(
        adapter=ResidualConfig(bottleneck=4), max_steps=10_000, time_limit_s=None, batch_size=4, eval_every=1,
        min_utterances=4, patience=0), submodel_dir=tmp_path / "out", report_dir=tmp_path / "out")
    two = threading.Event()
    plan.trainer.on("on_step", lambda e: two.set() if e["step"] >= 2 else None)
    session = TrainerSession(plan.trainer, fit=lambda: train(plan, progress=False), update_interval=0.0)
    session.start()
    assert two.wait(60)
    session.stop()
    assert session.join(60) and session.error is None
    assert plan.result is session.result and session.result.stopped_reason == "stopped by user"
    assert len(session.losses) == session.result.steps  # the live curve followed the run
    run = finish(plan)
    assert run.submodel_path.is_file() and run.report_html.is_file() and run.train_result is session.result
    run.adapted.remove()
