"""Submodel files: safetensors weights plus JSON metadata. Never pickle.

A Submodel is one speaker's trained adapter weights; its file (or a bank's, one
row per speaker) says what it belongs to::

    workbench_submodel  "1" (format version)
    family, config       adapter family and its full config (JSON)
    base_model           base model name, e.g. "workbench-tiny"
    base_fingerprint     sha256 of the frozen base weights it was trained on
    speaker_ids          JSON list, one per bank row
    specaugment          the SpecAugment policy used in training (JSON) or "null"
    training             data summary: utterances, minutes, corpus ids (JSON); for Whisper its
                         "window", the encoding window it was trained on: "auto" (the audio
                         + a margin) or "full" (30 s); a file without it was trained on "auto"
    metrics              WER/CER before and after (JSON)
    supernet             optional, a LoRA of the built-in model's supernet (JSON):
                         {"made_for": size, "sizes": {size: fingerprint}}; it may be cut for any
                         listed size (workbench.models.supernet.adapters)
    created, package_version

Loading onto a different base model is refused with both fingerprints named.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from workbench._atomic import write_bytes_atomic
from workbench.adapters.base import MAX_SPEAKERS, _short
from workbench.errors import AdapterError

__all__ = ["FORMAT_VERSION", "WINDOWS", "check_base", "read_submodel", "write_submodel"]

FORMAT_VERSION = "1"
_JSON_KEYS = ("config", "speaker_ids", "specaugment", "training", "metrics")
_MAX_ID = 200  # characters in one speaker id
WINDOWS = ("auto", "full")  # the Whisper encoding windows a Submodel can be trained on (workbench.models.whisper.backend)


def write_submodel(path: str | Path, tensors: dict[str, Tensor], *, config: dict, base_model: str,
                   base_fingerprint: str, speaker_ids: list[str], specaugment: dict | None = None,
                   training: dict | None = None, metrics: dict | None = None,
                   supernet: dict | None = None) -> Path:
    """Write ``tensors`` and the metadata atomically (temp file, fsync, rename)."""
    from workbench import __version__

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "workbench_submodel": FORMAT_VERSION,
        "family": str(config["family"]),
        "config": json.dumps(config, sort_keys=True),
        "base_model": base_model,
        "base_fingerprint": base_fingerprint,
        "speaker_ids": json.dumps(list(speaker_ids)),
        "specaugment": json.dumps(specaugment, sort_keys=True),
        "training": json.dumps(training or {}, sort_keys=True, default=str),
        "metrics": json.dumps(metrics or {}, sort_keys=True, default=str),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "package_version": __version__,
    }
    if supernet is not None:
        meta["supernet"] = json.dumps(supernet, sort_keys=True)
    from safetensors.torch import save as to_bytes

    write_bytes_atomic(path, to_bytes({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, metadata=meta))
    return path


def read_submodel(path: str | Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """``(tensors, metadata)`` of a Submodel file; JSON fields are decoded and checked.

    The metadata is untrusted (anyone can edit it): its types, the speaker ids and their
    count are checked here, before the weights are read; that the config fits the stored
    tensors is checked by :func:`workbench.adapters.adapted.fitting_config`, before any adapter
    is built. Weights must be finite floating-point tensors.

    Raises:
        AdapterError: missing file, not a safetensors file, not a workbench Submodel, or
            metadata/weights that are damaged (the message names the field and what to do).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    path = Path(path)
    if not path.is_file():
        raise AdapterError(f"no Submodel file at {path}: check the path, or train one with 'workbench personalize'")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as err:
        raise AdapterError(f"{path.name} is not a readable Submodel file ({err}); it may be damaged — "
                           "export it again from the speaker folder") from None
    if raw.get("workbench_submodel") != FORMAT_VERSION:
        raise AdapterError(f"{path.name} is a safetensors file but not a workbench Submodel (format "
                           f"{_short(raw.get('workbench_submodel'))}); it cannot be loaded as an adapter")
    meta = _decode_metadata(raw, path.name)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise AdapterError(f"{path.name} is not a readable Submodel file ({err}); it may be damaged — "
                           "export it again from the speaker folder") from None
    for key, t in tensors.items():
        if not t.is_floating_point():
            raise AdapterError(f"{path.name}: adapter weight {key!r} is stored as {t.dtype}, not as numbers with "
                               f"a fraction; {_DAMAGED}")
        if not bool(torch.isfinite(t).all()):
            raise AdapterError(f"{path.name}: adapter weight {key!r} holds NaN or infinite values, so the adapter "
                               "would break every transcript; retrain it or use an earlier Submodel file")
    return tensors, meta


_DAMAGED = ("the file is damaged or was not written by the workbench — do not use it; export the adapter "
            "again from the speaker's folder or train a new one")


_MAX_SIZES = 16  # named sizes in one supernet marker
_SIZE_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
_FINGERPRINT_RE = re.compile(r"[0-9a-f]{64}")


def _supernet_marker(text: str | None, name: str) -> dict[str, Any] | None:
    """The checked ``supernet`` field: None when absent, else ``{"made_for": size, "sizes": {size: sha256}}``."""
    if text is None:
        return None
    bad = (f"{name}: its supernet marker (which sizes of the built-in model it may be cut for) is not valid; "
           f"{_DAMAGED}")
    if not isinstance(text, str) or len(text) > 200 * _MAX_SIZES:
        raise AdapterError(bad)
    try:
        marker = json.loads(text)
    except (ValueError, RecursionError):
        raise AdapterError(bad) from None
    if not isinstance(marker, dict) or set(marker) != {"made_for", "sizes"}:
        raise AdapterError(bad)
    sizes = marker["sizes"]
    if not isinstance(sizes, dict) or not 0 < len(sizes) <= _MAX_SIZES or not all(
            isinstance(k, str) and _SIZE_RE.fullmatch(k) and isinstance(v, str) and _FINGERPRINT_RE.fullmatch(v)
            for k, v in sizes.items()):
        raise AdapterError(bad)
    if not isinstance(marker["made_for"], str) or marker["made_for"] not in sizes:
        raise AdapterError(bad)
    return {"made_for": marker["made_for"], "sizes": dict(sizes)}


def _decode_metadata(raw: dict[str, str], name: str) -> dict[str, Any]:
    """Decode the JSON fields of ``raw`` and check their types (see the module docstring)."""
    meta: dict[str, Any] = dict(raw)
    for key in _JSON_KEYS:
        try:
            meta[key] = json.loads(raw.get(key, "null"))
        except (ValueError, RecursionError):  # bad JSON, an int of > 4300 digits, deep nesting
            raise AdapterError(f"{name}: metadata field {key!r} is corrupt; {_DAMAGED}") from None
    meta["supernet"] = _supernet_marker(raw.get("supernet"), name)
    for key in ("family", "base_model", "base_fingerprint"):
        if not isinstance(meta.get(key), str):
            raise AdapterError(f"{name}: metadata field {key!r} is {_short(meta.get(key))}, not text; {_DAMAGED}")
    config = meta["config"]
    if not isinstance(config, dict):
        raise AdapterError(f"{name}: the adapter settings are {_short(config)}, not a set of named values; {_DAMAGED}")
    if config.get("family") != meta["family"]:
        raise AdapterError(f"{name}: the file says it is a {_short(meta['family'])} adapter but its settings say "
                           f"{_short(config.get('family'))}; {_DAMAGED}")
    for key, want in (("specaugment", (dict, type(None))), ("training", dict), ("metrics", dict)):
        if not isinstance(meta[key], want):
            raise AdapterError(f"{name}: metadata field {key!r} is {_short(meta[key])}, not a set of named "
                               f"values; {_DAMAGED}")
    ids = meta["speaker_ids"]
    if not isinstance(ids, list) or not ids or not all(isinstance(s, str) and 0 < len(s) <= _MAX_ID for s in ids):
        raise AdapterError(f"{name}: the speaker ids are {_short(ids)}; a Submodel names its speakers as a list "
                           f"of 1 to {MAX_SPEAKERS} short texts; {_DAMAGED}")
    if len(ids) > MAX_SPEAKERS:
        raise AdapterError(f"{name} names {len(ids)} speakers, more than a bank can hold ({MAX_SPEAKERS}); {_DAMAGED}")
    if len(set(ids)) != len(ids):
        raise AdapterError(f"{name}: speaker ids repeat ({sorted({s for s in ids if ids.count(s) > 1})[:3]}); "
                           f"{_DAMAGED}")
    n = config.get("num_speakers", 1)
    if isinstance(n, int) and not isinstance(n, bool) and n != len(ids):
        raise AdapterError(f"{name}: the settings say {_short(n)} speakers but the file names {len(ids)}; {_DAMAGED}")
    window = meta["training"].get("window", "auto")  # files from before the field: the default window
    if not isinstance(window, str) or window not in WINDOWS:
        raise AdapterError(f"{name}: the encoding window it was trained on is {_short(window)}, not 'auto' or "
                           f"'full'; {_DAMAGED}")
    meta["window"] = window  # the checked value, for the readers (load_submodel, export)
    return meta


def check_base(meta: dict[str, Any], *, base_model: str, base_fingerprint: str, what: str = "this Submodel") -> None:
    """Refuse a Submodel trained on another base model, naming both fingerprints (and both sizes
    of the built-in model, ``workbench-tiny-<size>``, when that is the difference)."""
    if meta.get("base_fingerprint") != base_fingerprint:
        trained, loaded = _tiny_size(meta.get("base_model")), _tiny_size(base_model)
        sizes = (f" It was made for the {trained} size of the built-in model, and the loaded one is the {loaded} "
                 f"size." if trained and loaded and trained != loaded else "")
        marker = meta.get("supernet") or {}
        if base_fingerprint in marker.get("sizes", {}).values():
            sizes += (" It is a supernet adapter that can be cut for this size: load it with "
                      "workbench.models.supernet.adapters.load_for_size (the command line's --size does).")
        elif sizes:
            sizes += " Only a personal adapter trained on the largest size (--size large) serves the other sizes."
        raise AdapterError(
            f"{what} was trained on base model {meta.get('base_model')!r} (fingerprint "
            f"{str(meta.get('base_fingerprint'))[:12]}…) but the loaded base model is {base_model!r} "
            f"(fingerprint {base_fingerprint[:12]}…).{sizes} Load the base model it was trained on, or train a new "
            "adapter for this one.")


def _tiny_size(name: Any) -> str | None:
    """``"'small'"`` for ``workbench-tiny-small``, ``"original"`` for ``workbench-tiny``, else None."""
    if name == "workbench-tiny":
        return "original"
    if isinstance(name, str) and name.startswith("workbench-tiny-"):
        return repr(name.removeprefix("workbench-tiny-"))
    return None
