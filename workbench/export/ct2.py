"""``--format ct2``: a CTranslate2 folder that faster-whisper loads with ``WhisperModel(DIR)``.

The merged model is first written as a transformers folder (:mod:`workbench.export.hf`) in a
scratch folder beside the export, then converted by CTranslate2's own converter
(``ctranslate2.converters.TransformersConverter``) with ``tokenizer.json`` and
``preprocessor_config.json`` copied: without them faster-whisper would fetch a tokenizer
from the hub (faster-whisper #220). ``--quantization`` is the converter's: ``int8``
(default: a quarter of the size, the usual choice on a CPU), ``float16`` or ``float32``.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from workbench.export.merge import Verification, merged_whisper

if TYPE_CHECKING:
    from workbench.adapters import Adapted

__all__ = ["QUANTIZATIONS", "write_ct2"]

QUANTIZATIONS = ("int8", "float16", "float32")
_COPIED = ["tokenizer.json", "preprocessor_config.json"]


def write_ct2(adapted: Adapted, folder: Path, quantization: str | None) -> tuple[dict[str, str], list[str], Verification]:
    """Merge, check, write a transformers folder aside and convert it into ``folder``."""
    from workbench._optional import require
    from workbench.export.hf import write_hf_model

    ctranslate2 = require("ctranslate2", extra="export", purpose="export for faster-whisper / CTranslate2")
    quantization = quantization or "int8"
    model, verification = merged_whisper(adapted)
    scratch = Path(tempfile.mkdtemp(prefix=f".{folder.name}.hf.", suffix=".tmp", dir=folder.parent))
    try:
        write_hf_model(model, adapted, scratch)
        del model
        converter = ctranslate2.converters.TransformersConverter(str(scratch), copy_files=_COPIED)
        converter.convert(str(folder), quantization=quantization, force=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    files = {"model.bin": f"the weights, {quantization}, personal adapter merged",
             "config.json": "CTranslate2's settings (suppressed tokens, alignment heads)",
             "vocabulary.json": "the token list", "tokenizer.json": "the tokenizer",
             "preprocessor_config.json": "the log-mel settings"}
    return files, [f"- format: CTranslate2 (faster-whisper), weights {quantization}, converted by ctranslate2 "
                   f"{ctranslate2.__version__}'s TransformersConverter from the merged float32 model "
                   "(LoRA merged: W + alpha/r · B A)."], verification
