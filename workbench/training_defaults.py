"""Each kind of base model's training defaults, in one table outside the models.

The models never import the adapters (PEFT keeps its model-specific defaults in a mapping in
``peft.utils`` for the same reason): a backend only says what it is
(:attr:`ASRBackend.model_type <workbench.models.base.ASRBackend.model_type>`), and
:data:`TRAIN_SETTINGS` gives the adapter and, where it differs from the family's own, the learning
rate that a personalization uses on it when the user names none
(:func:`workbench.workflow.default_config`). The step limit is not here: it follows what a step of
the model costs (:meth:`RunDefaults.max_steps_for <workbench.defaults.RunDefaults.max_steps_for>`).

>>> from types import SimpleNamespace
>>> train_settings_for(SimpleNamespace(model_type="whisper", num_layers=4))["adapter"].top_layers  # every layer
0
>>> train_settings_for(SimpleNamespace(model_type="ctc", num_layers=4)) == {"adapter": LoRAConfig()}
True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from workbench.adapters import LoRAConfig

__all__ = ["TRAIN_SETTINGS", "WHISPER_LORA_LR", "train_settings_for"]

WHISPER_LORA_LR = 1e-3  # peak learning rate of the default LoRA on Whisper (LoRA's 3e-3 overshoots there)


def _ctc(backend: Any) -> dict[str, Any]:
    """LoRA on the encoder, at the family's own learning rate."""
    return {"adapter": LoRAConfig()}


def _whisper(backend: Any) -> dict[str, Any]:
    """LoRA of rank 4 (alpha 8: LoRA's own scale of 2) on every encoder layer and on the decoder, at
    :data:`WHISPER_LORA_LR`. Chosen on the six development speakers (``bench/study_defaults.py --model
    whisper-tiny.en``, 120 steps; docs/results.md, "Choosing Whisper tiny.en's defaults"), mean test
    WER reduction of the checkpoint the trainer keeps, seed 0:

    - where: every layer and the decoder 71 %, every encoder layer 68 %, the top half of the encoder
      and the decoder 61 % (its frozen bottom half computed once per recording: a cheaper step);
    - around every layer and the decoder: rank 4 **73 %**, rank 8 71 %, rank 16 67 %; learning rate
      3e-4 69 %, 1e-3 71 %, 3e-3 62 % (it overshoots); without speed perturbation 71.5 %; with
      SpecAugment 46 %.

    Rank 4 against rank 8 was run again on a second seed: 69.4 % against 70.7 %, so 71.3 % against
    71.0 % over both: a tie, and rank 4 halves the Submodel and trains a shorter run (101 s against
    121 s on the mean speaker). The step and run limits (2 s a step at batch 8 on 2 threads, 3
    minutes a run) were judged on a quiet timing pass."""
    return {"adapter": LoRAConfig(rank=4, alpha=8.0, top_layers=0, decoder=True), "learning_rate": WHISPER_LORA_LR}


#: ``ASRBackend.model_type`` -> the ``TrainConfig`` settings for a backend of that type (a function of
#: the backend, so that a setting may follow its size). A type not listed gets ``"ctc"``'s.
TRAIN_SETTINGS: dict[str, Callable[[Any], dict[str, Any]]] = {"ctc": _ctc, "whisper": _whisper}


def train_settings_for(backend: Any) -> dict[str, Any]:
    """``TrainConfig`` settings a personalization uses on ``backend`` (an
    :class:`~workbench.models.base.ASRBackend`, or anything with its ``model_type`` and
    ``num_layers``) when the user gives none: the adapter and, where it differs, the learning rate."""
    return TRAIN_SETTINGS.get(backend.model_type, _ctc)(backend)
