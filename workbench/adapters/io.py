"""Submodel files: safetensors weights plus JSON metadata. Never pickle.

A file holds one speaker's adapter (or a whole bank) and says what it belongs to::

    workbench_submodel  "1" (format version)
    family, config       adapter family and its full config (JSON)
    base_model           base model name, e.g. "workbench-tiny"
    base_fingerprint     sha256 of the frozen base weights it was trained on
    speaker_ids          JSON list, one per bank row
    specaugment          the SpecAugment policy used in training (JSON) or "null"
    training             data summary: utterances, minutes, corpus ids (JSON)
    metrics              WER/CER before and after (JSON)
    created, package_version

Loading onto a different base model is refused with both fingerprints named.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any

from torch import Tensor

from workbench._atomic import write_bytes_atomic
from workbench.errors import AdapterError

__all__ = ["FORMAT_VERSION", "check_base", "read_submodel", "write_submodel"]

FORMAT_VERSION = "1"
_JSON_KEYS = ("config", "speaker_ids", "specaugment", "training", "metrics")


def write_submodel(path: str | Path, tensors: dict[str, Tensor], *, config: dict, base_model: str,
                   base_fingerprint: str, speaker_ids: list[str], specaugment: dict | None = None,
                   training: dict | None = None, metrics: dict | None = None) -> Path:
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
    from safetensors.torch import save as to_bytes

    write_bytes_atomic(path, to_bytes({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, metadata=meta))
    return path


def read_submodel(path: str | Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """``(tensors, metadata)`` of a Submodel file; JSON fields are decoded.

    Raises:
        AdapterError: missing file, not a safetensors file, or not a workbench Submodel.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    path = Path(path)
    if not path.is_file():
        raise AdapterError(f"no Submodel file at {path}: check the path, or train one with 'workbench personalize'")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = dict(f.metadata() or {})
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise AdapterError(f"{path.name} is not a readable Submodel file ({err}); it may be damaged — "
                           "export it again from the speaker folder") from None
    if raw.get("workbench_submodel") != FORMAT_VERSION:
        raise AdapterError(f"{path.name} is a safetensors file but not a workbench Submodel (format "
                           f"{raw.get('workbench_submodel')!r}); it cannot be loaded as an adapter")
    meta: dict[str, Any] = dict(raw)
    for key in _JSON_KEYS:
        try:
            meta[key] = json.loads(raw.get(key, "null"))
        except json.JSONDecodeError:
            raise AdapterError(f"{path.name}: metadata field {key!r} is corrupt; export the Submodel again") from None
    return tensors, meta


def check_base(meta: dict[str, Any], *, base_model: str, base_fingerprint: str, what: str = "this Submodel") -> None:
    """Refuse a Submodel trained on another base model, naming both fingerprints."""
    if meta.get("base_fingerprint") != base_fingerprint:
        raise AdapterError(
            f"{what} was trained on base model {meta.get('base_model')!r} (fingerprint "
            f"{str(meta.get('base_fingerprint'))[:12]}…) but the loaded base model is {base_model!r} "
            f"(fingerprint {base_fingerprint[:12]}…). Load the base model it was trained on, or train a new "
            "adapter for this one.")
