"""Base ASR models behind one interface: the built-in ``tiny`` model and transformers backends."""

from workbench.models.base import ASRBackend, Batch
from workbench.models.loading import load_base_model

__all__ = ["ASRBackend", "Batch", "load_base_model"]
