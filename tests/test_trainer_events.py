"""The Trainer's events are typed records (workbench.trainer_events), still readable as the dicts they replaced."""

from __future__ import annotations

import dataclasses

import pytest

from workbench.adapters import ResidualConfig
from workbench.dataset import Example
from workbench.trainer import TrainConfig, Trainer
from workbench.trainer_events import BestEvent, EndEvent, EvalEvent, StartEvent, StepEvent, StopEvent

from _models import noise_waves, tiny_backend

pytestmark = pytest.mark.filterwarnings("ignore:the validation set has only")

TEXTS = ["turn on the light", "call my sister", "i am hungry", "good morning"]


def test_the_trainer_emits_one_record_type_per_event() -> None:
    train = [Example(w, TEXTS[i % 4], 0, f"t{i}") for i, w in enumerate(noise_waves(8))]
    valid = [Example(w, TEXTS[i % 4], 0, f"v{i}") for i, w in enumerate(noise_waves(3, seed=1))]
    trainer = Trainer(tiny_backend(), train, valid, TrainConfig(
        adapter=ResidualConfig(bottleneck=4), max_steps=2, time_limit_s=None, batch_size=4, eval_every=1,
        min_utterances=4, speed_perturb=()))
    seen: dict[str, list] = {}
    for name in ("on_start", "on_step", "on_eval", "on_best", "on_stop", "on_end"):
        trainer.on(name, seen.setdefault(name, []).append)
    result = trainer.fit()
    kinds = {"on_start": StartEvent, "on_step": StepEvent, "on_eval": EvalEvent, "on_best": BestEvent,
             "on_stop": StopEvent, "on_end": EndEvent}
    for name, kind in kinds.items():
        assert seen[name] and all(type(e) is kind for e in seen[name]), name
    step = seen["on_step"][0]
    assert step.step == step["step"] == 1 and step.loss_name == "CTC" and step.elapsed_s > 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        step.step = 5  # type: ignore[misc]
    assert seen["on_end"][0].result is result and seen["on_stop"][0].text == "step limit reached"
    assert seen["on_start"][0].max_steps == 2 and seen["on_start"][0]["left_out"] == ""
    # the history keeps plain dicts (JSON in checkpoints), the same fields as the events
    assert result.history[0] == {"kind": "eval", **seen["on_eval"][0]}
    assert result.history[1] == {"kind": "step", **seen["on_step"][0]}


def test_a_record_reads_as_the_dict_it_replaced() -> None:
    e = EvalEvent(step=4, wer=0.5, cer=0.25, loss=1.5, elapsed_s=2.0)
    assert dict(e) == {"step": 4, "wer": 0.5, "cer": 0.25, "loss": 1.5, "elapsed_s": 2.0}  # speakers: None, left out
    assert e == {"step": 4, "wer": 0.5, "cer": 0.25, "loss": 1.5, "elapsed_s": 2.0}
    assert "speakers" not in e and e.get("speakers") is None and e.speakers is None
    with pytest.raises(KeyError):
        e["speakers"]
    per = BestEvent(step=4, wer=0.5, loss=1.5, speakers=[0, 2])
    assert per["speakers"] == [0, 2] and set(per) == {"step", "wer", "loss", "speakers"}
    assert "StepEvent(step=1" in repr(StepEvent(step=1, loss=2.0, loss_name="CTC", lr=1e-3, grad_norm=0.5,
                                                steps_per_s=3.0, elapsed_s=0.4))
