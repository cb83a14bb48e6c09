"""``--format hf``: a transformers folder of the merged personal Whisper model.

The folder holds ``model.safetensors`` (float32, adapter merged), ``config.json``,
``generation_config.json`` (the base model's special and suppressed tokens), the processor
(``processor_config.json``, and ``preprocessor_config.json`` for older transformers and for
CTranslate2's converter) and the tokenizer (``tokenizer.json``, ``tokenizer_config.json``).
``WhisperForConditionalGeneration.from_pretrained(DIR)`` and
``pipeline("automatic-speech-recognition", model=DIR)`` load it with no network.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from workbench.export.merge import Verification, how_merged, merged_whisper

if TYPE_CHECKING:
    from torch import nn

    from workbench.adapters import Adapted

__all__ = ["write_hf", "write_hf_model"]


def write_hf_model(model: nn.Module, adapted: Adapted, folder: Path) -> dict[str, str]:
    """Write an already merged Whisper ``model`` with the base model's processor into ``folder``.

    Returns:
        file name -> what it holds.
    """
    model.save_pretrained(folder)
    processor = adapted.backend.processor
    processor.save_pretrained(folder)
    processor.feature_extractor.save_pretrained(folder)  # preprocessor_config.json
    return {"model.safetensors": "the weights, float32, personal adapter merged",
            "config.json": "the architecture", "generation_config.json": "special and suppressed tokens",
            "tokenizer.json": "the tokenizer (with tokenizer_config.json)",
            "preprocessor_config.json": "the log-mel settings (also in processor_config.json)"}


def write_hf(adapted: Adapted, folder: Path, quantization: str | None) -> tuple[dict[str, str], list[str], Verification]:
    """Merge, check and write the transformers folder. ``quantization``: only float32 (or None)."""
    model, verification = merged_whisper(adapted)
    files = write_hf_model(model, adapted, folder)
    return files, ["- format: transformers `WhisperForConditionalGeneration`, float32, adapter merged into the "
                   f"weights ({how_merged(adapted.config.family)})."], verification
