"""Atypical-speech personalization workbench.

Record a speaker, augment with adaptive-length SpecAugment, fine-tune a small
personal adapter on a frozen base ASR model, and compare WER before and after.

The core (this package minus ``workbench.ui``, ``workbench.app`` and
``workbench.plots``) imports with only the core dependencies installed.
Audio inside the package is always 16 kHz mono float32 in [-1, 1].
"""

from workbench import _threads
from workbench.constants import SAMPLE_RATE
from workbench.errors import WorkbenchError

_threads.apply_env()  # before torch loads libgomp: OpenMP threads sleep instead of spinning (issue 16)

__version__ = "0.1.0"

__all__ = ["SAMPLE_RATE", "WorkbenchError", "__version__"]
