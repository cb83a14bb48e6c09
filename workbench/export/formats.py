"""The export formats and the install hint, read by every step of :mod:`workbench.export`.

A leaf module (nothing of the package imported), so that the format writers and the pipeline need
not import the package's ``__init__`` (whose :func:`~workbench.export.export_model` imports the
pipeline): no import circle (``tests/test_import_cycles.py``).

>>> sorted(FORMATS)
['ct2', 'ggml', 'hf', 'onnx']
"""

from __future__ import annotations

__all__ = ["EXPORT_EXTRA", "FORMATS"]

#: format -> what runs it (for messages and the model card)
FORMATS: dict[str, str] = {
    "ct2": "faster-whisper / CTranslate2",
    "ggml": "whisper.cpp",
    "hf": "transformers",
    "onnx": "ONNX Runtime",
}
EXPORT_EXTRA = "pip install 'workbench[export]'"
