"""The live trainer view, driven headless: start, two steps, stop."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from workbench.adapters import ResidualConfig
from workbench.dataset import Example
from workbench.personalize import TrainConfig, Trainer
from workbench.ui.trainer import Throttle, TrainerSession

from _models import noise_waves, tiny_backend
from conftest import make_speechlike

pytestmark = pytest.mark.filterwarnings("ignore:the validation set has only")

TEXTS = ["turn on the light", "call my sister", "i am hungry", "good morning"]


def _trainer(**kw) -> Trainer:
    train = [Example(w, TEXTS[i % 4], 0, f"t{i}") for i, w in enumerate(noise_waves(8))]
    held = [Example(w, TEXTS[i % 4], 0, f"h{i}") for i, w in enumerate(noise_waves(3, seed=1))]
    cfg = TrainConfig(adapter=ResidualConfig(bottleneck=4), max_steps=10_000, max_seconds=None, batch_size=4,
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
    assert bar.value == 3 and len(image.value) > 1000
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
