"""The events of :class:`~workbench.trainer.Trainer`: one frozen record per kind, typed at the boundary.

A subscriber reads fields by name (``e.step``, ``e.loss``). Each record is also a read-only
:class:`~collections.abc.Mapping` of the same fields, so code written for the dicts these records
replaced (``e["step"]``, ``e.get("note")``, ``{**e}``) reads them unchanged; an optional field that
is None (``speakers`` outside per-speaker selection) is left out of that view, as it was of the dicts.

>>> e = StepEvent(step=3, loss=1.5, loss_name="CTC", lr=1e-3, grad_norm=0.8, steps_per_s=2.0, elapsed_s=1.5)
>>> e.step, e["loss"], {"kind": "step", **e}["elapsed_s"]
(3, 1.5, 1.5)
>>> "speakers" in EvalEvent(step=0, wer=0.5, cer=0.3, loss=2.0, elapsed_s=0.1)
False
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from workbench._deprecated import renamed_fields, warn_renamed

if TYPE_CHECKING:  # annotations only: the trainer imports this module
    from workbench.trainer import TrainResult

__all__ = ["BestEvent", "EndEvent", "EvalEvent", "StartEvent", "StepEvent", "StopEvent", "TrainerEvent"]


class TrainerEvent(Mapping):
    """What every event record shares: its fields by name, and the same as a read-only mapping."""

    _optional: tuple[str, ...] = ()  # fields left out of the mapping view while None
    _renamed: dict[str, str] = {}  # old key -> field: still read, with a DeprecationWarning, until the next release

    def _keys(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self)
                if not (f.name in self._optional and getattr(self, f.name) is None)]

    def __getitem__(self, key: str) -> Any:
        if key in self._renamed:
            warn_renamed(type(self).__name__, key, self._renamed[key])
            key = self._renamed[key]
        if key not in self._keys():
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys())

    def __len__(self) -> int:
        return len(self._keys())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.items())})"


# eq=False: equality is the Mapping's (the same fields and values), so a record equals the dict it replaced
@renamed_fields(max_seconds="time_limit_s")
@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class StartEvent(TrainerEvent):
    """``on_start``: what the run is about to do."""

    _renamed = {"max_seconds": "time_limit_s"}

    max_steps: int  # the step limit (TrainConfig.max_steps)
    time_limit_s: float | None  # the time ceiling in seconds, evaluations included; None: steps only
    train_utterances: int  # training examples, speed-perturbed copies included
    valid_utterances: int
    parameters: dict  # Adapted.parameter_report(), or {"family": mode, "trainable": n} for a baseline
    left_out: str  # the takes the base model refused (too long...), named, with what to do; "" when none


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class StepEvent(TrainerEvent):
    """``on_step``: one training step done."""

    step: int  # steps done so far (1 after the first)
    loss: float  # the batch's mean training loss
    loss_name: str  # its kind: "CTC", or "cross-entropy" (Whisper)
    lr: float  # the learning rate of this step
    grad_norm: float  # the global gradient norm before clipping
    steps_per_s: float  # steps a second in this call of fit()
    elapsed_s: float  # seconds since the run started, evaluations included (the trainer's clock)


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class EvalEvent(TrainerEvent):
    """``on_eval``: the validation recordings scored (step 0: the base model)."""

    _optional = ("speakers",)

    step: int
    wer: float  # corpus-level word error rate, 0..1 (and more when the model inserts words)
    cer: float
    loss: float  # mean validation loss per recording
    elapsed_s: float  # this evaluation included
    speakers: dict | None = None  # per-speaker selection: row -> {"wer", "errors", "words", "loss", "n"}


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class BestEvent(TrainerEvent):
    """``on_best``: a new lowest validation loss, the checkpoint kept."""

    _optional = ("speakers",)

    step: int
    wer: float
    loss: float
    speakers: list | None = None  # per-speaker selection: the bank rows that improved


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class StopEvent(TrainerEvent):
    """``on_stop``: training has ended (the steps since the last evaluation evaluated)."""

    reason: str  # "max steps", "time budget", "early stop" or "stopped by user"
    text: str  # the same in words for people (workbench.trainer.STOP_REASONS)
    step: int
    elapsed_s: float
    note: str  # TrainResult.cut_short: the time ceiling ended the run before it converged; else ""


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class EndEvent(TrainerEvent):
    """``on_end``: the run's :class:`~workbench.trainer.TrainResult` (the best weights are in place)."""

    result: TrainResult
