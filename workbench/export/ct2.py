"""``--format ct2``: a CTranslate2 folder that faster-whisper loads with ``WhisperModel(DIR)``.

The merged model is first written as a transformers folder (:mod:`workbench.export.hf`) in a
scratch folder beside the export, then converted by CTranslate2's own converter
(``ctranslate2.converters.TransformersConverter``) with ``tokenizer.json`` and
``preprocessor_config.json`` copied: without them faster-whisper would fetch a tokenizer
from the hub (faster-whisper #220). ``--quantization`` is the converter's: ``float32``
(default: the personal model's words), ``int8`` (a quarter of the size and about 1.4x faster
on a CPU, but on the benchmark speaker 3 of 20 test transcripts differed from the personal
model's; docs/benchmarks.md) or ``float16``.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from workbench.export.merge import Verification, how_merged, merged_whisper

if TYPE_CHECKING:
    from workbench.adapters import Adapted

__all__ = ["QUANTIZATIONS", "window_transcriber", "write_ct2"]

QUANTIZATIONS = ("int8", "float16", "float32")
_COPIED = ["tokenizer.json", "preprocessor_config.json"]


def write_ct2(adapted: Adapted, folder: Path, quantization: str | None) -> tuple[dict[str, str], list[str], Verification]:
    """Merge, check, write a transformers folder aside and convert it into ``folder``."""
    from workbench._optional import require
    from workbench.export.hf import write_hf_model

    ctranslate2 = require("ctranslate2", extra="export", purpose="export for faster-whisper / CTranslate2")
    quantization = quantization or "float32"
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
                   f"({how_merged(adapted.config.family)})."], verification


def window_transcriber(folder: str | Path, prompt: list[int], *, threads: int = 2,
                       window: str = "auto") -> Callable[[Any], str]:
    """Transcribe with a ct2 export in CTranslate2 directly, encoding the window the model was trained on.

    The model card's CTranslate2 snippet, as a function: log-mel of the recording and silence
    (faster-whisper's feature extractor), cut to :func:`workbench.export.card.window_s`,
    greedy, at most :func:`workbench.export.card.max_new_tokens` tokens, loops cut
    (:func:`workbench.export.card.cut_loops`).

    Args:
        folder: the ct2 export.
        prompt: the decoding prompt's token ids (``WhisperBackend.prompt_ids``).
        window: ``"auto"`` (the recording + 1 s) or ``"full"`` (30 s of the recording padded with
            silence before the log-mel, as the workbench and transformers do; faster-whisper's own
            ``transcribe`` pads the finished log-mel with zeros unless it is given the padded audio, as
            the model card shows).

    Returns:
        ``fn(audio (n,) float32 at 16 kHz) -> text``.
    """
    import numpy as np

    from workbench._optional import require
    from workbench.export.card import cut_loops, max_new_tokens, window_s

    ctranslate2 = require("ctranslate2", extra="export", purpose="run a ct2 export")
    require("faster_whisper", extra="export", purpose="compute Whisper's log-mel")
    import tokenizers
    from faster_whisper.feature_extractor import FeatureExtractor

    model = ctranslate2.models.Whisper(str(folder), device="cpu", intra_threads=threads)
    tokenizer = tokenizers.Tokenizer.from_file(str(Path(folder) / "tokenizer.json"))
    features = FeatureExtractor()

    def run(audio: Any) -> str:
        audio = np.asarray(audio, dtype=np.float32)
        seconds = len(audio) / 16000
        frames = 3000 if window == "full" else 100 * window_s(seconds)
        mel = features(np.pad(audio, (0, max(0, 480000 - len(audio)))))[:, :frames]
        result = model.generate(ctranslate2.StorageView.from_array(np.ascontiguousarray(mel[None])), [list(prompt)],
                                beam_size=1, suppress_blank=True, max_length=max_new_tokens(seconds))
        return tokenizer.decode(cut_loops(result[0].sequences_ids[0]))

    return run
