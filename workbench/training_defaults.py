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
    """LoRA on every encoder layer and on the decoder, at :data:`WHISPER_LORA_LR` (LoRA's 3e-3 overshot
    on Whisper; no script in ``bench/`` records that comparison yet). Chosen on the development
    speakers (``bench/study_defaults.py --model whisper-tiny.en``, docs/results.md): a mean test WER
    reduction of 71 % against 61 % for the top half of the encoder and the decoder, whose frozen bottom
    half is computed once per recording (0.45 s a step instead of 1.06 s at batch 8 on 2 threads);
    both fit the 2 s step and 3 minute run limits."""
    return {"adapter": LoRAConfig(top_layers=0, decoder=True), "learning_rate": WHISPER_LORA_LR}


#: ``ASRBackend.model_type`` -> the ``TrainConfig`` settings for a backend of that type (a function of
#: the backend: Whisper's LoRA covers half of its encoder layers). A type not listed gets ``"ctc"``'s.
TRAIN_SETTINGS: dict[str, Callable[[Any], dict[str, Any]]] = {"ctc": _ctc, "whisper": _whisper}


def train_settings_for(backend: Any) -> dict[str, Any]:
    """``TrainConfig`` settings a personalization uses on ``backend`` (an
    :class:`~workbench.models.base.ASRBackend`, or anything with its ``model_type`` and
    ``num_layers``) when the user gives none: the adapter and, where it differs, the learning rate."""
    return TRAIN_SETTINGS.get(backend.model_type, _ctc)(backend)
