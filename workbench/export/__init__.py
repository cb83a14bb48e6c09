"""Take a personal model anywhere: export it for faster-whisper, whisper.cpp, transformers or ONNX Runtime.

``workbench export SOURCE --format hf|ct2|ggml|onnx --out DIR`` (:func:`export_model`):

1. :mod:`~workbench.export.source` finds the Submodel (a speaker folder's personal model, a
   Submodel file, or one speaker of a bank), reads it as untrusted and loads it onto its own
   base model, one speaker row;
2. :mod:`~workbench.export.merge` folds the adapter into the base weights through the
   adapters' own ``merge`` (LoRA and vector; the other families are not linear in the weights) and
   checks that the merged model's outputs equal the adapted model's to float32 rounding;
3. one module per format writes the folder: :mod:`~workbench.export.hf` (transformers),
   :mod:`~workbench.export.ct2` (CTranslate2 / faster-whisper), :mod:`~workbench.export.ggml`
   (whisper.cpp), :mod:`~workbench.export.onnx` (the built-in CTC model, ONNX Runtime);
4. :mod:`~workbench.export.card` writes the model card (``README.md``), and
   :mod:`~workbench.export.output` makes the folder appear complete or not at all.

This package imports nothing heavy until an export runs; the engines are the ``export``
extra (``pip install 'workbench[export]'``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from workbench.errors import ExportError
from workbench.export.formats import EXPORT_EXTRA, FORMATS

if TYPE_CHECKING:
    from workbench.export.pipeline import ExportResult

__all__ = ["EXPORT_EXTRA", "FORMATS", "ExportError", "export_model"]


def export_model(source: Any, fmt: str, out: Any, **options: Any) -> ExportResult:
    """Export a personal model; see :func:`workbench.export.pipeline.export_model`."""
    from workbench.export.pipeline import export_model as run

    return run(source, fmt, out, **options)
