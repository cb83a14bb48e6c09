"""The stages of ``recipes/pretrain_tiny.py`` (run that script; see its docstring and recipes/README.md).

- :mod:`.data`: texts, voices, synthesis and perturbation, the cached corpus (stages 1-3).
- :mod:`.training`: batching, mel warp, the time-budgeted training loop and checkpoints (stage 4).
- :mod:`.evaluation`: WER/CER on the held-out sets, decoder tuning, metrics and the model card (stage 5).
"""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]  # the repository root (sample_data/, workbench/)
