"""The installed sizes of the built-in model: a table, and the largest size that runs in real time here.

A size is a folder ``workbench/data/models/tiny-<size>`` written by ``recipes/train_supernet.py``
(see :mod:`workbench.models.supernet.model`); the original built-in model (``tiny``) is listed too.
The real-time factor (seconds of compute per second of audio, greedy decoding, one utterance at
a time, torch's current threads) is MEASURED on this machine, in about ``seconds`` per model.

A size folder can come from anywhere (a copied archive), so :func:`load_size` believes none of
it: ``config.json`` is checked against the weights' header before anything is built
(:func:`workbench.models.tiny_files.checked_config`: a config claiming huge dimensions allocates
nothing), it must name the size of its folder, and the model card (``metrics.json``, at most
:data:`MAX_CARD_BYTES`) must name the fingerprint of the weights it sits beside.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np

from workbench.constants import SAMPLE_RATE
from workbench.errors import ModelSizeError
from workbench.models.supernet.model import SIZE_NAMES, SIZES_HOWTO, installed_sizes, size_dir
from workbench.models.tiny import TinyBackend, default_model_dir, load_tiny

__all__ = ["DEFAULT_RTF_BUDGET", "MAX_CARD_BYTES", "SizeInfo", "accuracy_note", "load_size", "measure_rtf", "pick_size", "size_table",
           "sized_model"]

MAX_CARD_BYTES = 1_000_000  # a size's metrics.json (its model card) is a few kB


@dataclasses.dataclass
class SizeInfo:
    """One row of :func:`size_table`."""

    model: str  # what load_base_model takes: "tiny" or "tiny-small"
    name: str  # the base model's name, e.g. "workbench-tiny-small"
    params: int
    file_mb: float
    heldout_wer: float | None  # held-out voices reading held-out phrases (its model card), None if unknown
    rtf: float | None  # measured here; None when not measured


def measure_rtf(backend: TinyBackend, *, seconds: float = 2.0, utterance_s: float = 3.0, seed: int = 0) -> float:
    """Real-time factor of greedy transcription of one ``utterance_s`` utterance at a time, for ~``seconds``."""
    wav = (0.05 * np.random.default_rng(seed).standard_normal(int(utterance_s * SAMPLE_RATE))).astype(np.float32)
    backend.transcribe([wav], batch_size=1)  # warm-up
    runs, t0 = 0, time.perf_counter()
    while runs < 2 or time.perf_counter() - t0 < seconds:
        backend.transcribe([wav], batch_size=1)
        runs += 1
    return (time.perf_counter() - t0) / (runs * utterance_s)


def _card(folder: Path) -> dict | None:
    """The size's ``metrics.json`` (its model card) as a dict, None when there is none.

    Raises:
        ModelSizeError: larger than :data:`MAX_CARD_BYTES` (nothing is read), or not a JSON object.
    """
    path = folder / "metrics.json"
    try:
        n = path.stat().st_size
    except OSError:
        return None
    if n > MAX_CARD_BYTES:
        raise ModelSizeError(f"the model card {path} is {n / 1e6:.0f} MB, not a model card (a few kB); the size "
                             f"folder is damaged or not the workbench's. Delete the folder and {SIZES_HOWTO}")
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        card = None
    if not isinstance(card, dict):
        raise ModelSizeError(f"the model card {path} cannot be read as a model card (damaged JSON). Delete the "
                             f"folder and {SIZES_HOWTO}")
    return card


def load_size(size: str, *, device: str = "cpu") -> TinyBackend:
    """The installed size ``size`` (``"small"`` ...) as a frozen backend, every file of its folder checked.

    Raises:
        ModelSizeError: not a size, not installed (the message says how to make it), a config naming
            another size, or a model card naming other weights (wrong fingerprint) or too large.
        ModelImportError: ``config.json`` and the weights disagree (huge claimed dimensions included).
    """
    from workbench.models.tiny_files import checked_config

    folder = size_dir(size)
    name = folder.name.removeprefix("tiny-")
    cfg, _ = checked_config(folder)  # the weights' header only: nothing is built yet
    if cfg.size != name:  # the backend's name (what adapters bind to) comes from it
        raise ModelSizeError(f"the folder {folder} should hold the {name!r} size of the built-in model, but its "
                             f"config.json says {str(cfg.size)[:40]!r}: it was copied to the wrong place. Delete it "
                             f"and {SIZES_HOWTO}")
    card = _card(folder)
    backend = load_tiny(folder, device=device)
    claimed = card.get("fingerprint") if card else None
    if claimed is not None and claimed != backend.fingerprint():
        raise ModelSizeError(f"the model card of {folder} describes other weights (fingerprint "
                             f"{str(claimed)[:12]}…, the weights are {backend.fingerprint()[:12]}…): its figures are "
                             f"not this model's. Copy the size's folder again, whole, or {SIZES_HOWTO}")
    return backend


def _heldout_wer(folder: Path) -> float | None:
    """The held-out WER in the size's ``metrics.json`` (its model card), or None when it is missing or is
    not a number from 0 up: the file is read, not trusted (a size folder can come from anywhere)."""
    try:
        res = _card(folder)
    except ModelSizeError:
        return None
    for key in ("results", "heldout_voices_heldout_texts"):
        res = res.get(key) if isinstance(res, dict) else None
    if not isinstance(res, dict):
        return None
    decoded = res.get("lexicon_beam") or res.get("greedy")
    wer = decoded.get("wer") if isinstance(decoded, dict) else None
    if isinstance(wer, bool) or not isinstance(wer, (int, float)) or not math.isfinite(wer) or wer < 0:
        return None
    return float(wer)


def size_table(*, measure: bool = True, seconds: float = 2.0) -> list[SizeInfo]:
    """The original built-in model and every installed size, smallest size first, the original last."""
    rows = []
    for model, folder in [*((f"tiny-{n}", size_dir(n)) for n in installed_sizes()), ("tiny", default_model_dir())]:
        backend = load_size(model.removeprefix("tiny-")) if model != "tiny" else load_tiny(folder)
        rows.append(SizeInfo(model, backend.name, backend.num_parameters(),
                             (folder / "model.safetensors").stat().st_size / 1e6, _heldout_wer(folder),
                             measure_rtf(backend, seconds=seconds) if measure else None))
    return rows


DEFAULT_RTF_BUDGET = 0.5  # seconds of compute per second of audio: room for decoding and the rest of the work


def pick_size(rtf_budget: float = DEFAULT_RTF_BUDGET, *, seconds: float = 2.0) -> tuple[str, str]:
    """``(model, reason)``: the largest installed size whose measured RTF is within ``rtf_budget``.

    Without installed sizes the original built-in model is the answer, and the reason says how to
    make the sizes. When no size is fast enough, the fastest one is picked and the reason says so.
    """
    sizes = [r for r in size_table(measure=False) if r.model != "tiny"]
    if not sizes:
        return "tiny", f"base model: the built-in model (no sizes of it are installed to choose from; {SIZES_HOWTO})"
    for row in sorted(sizes, key=lambda r: r.params, reverse=True):
        row.rtf = measure_rtf(load_size(row.model.removeprefix("tiny-")), seconds=seconds)
        if row.rtf <= rtf_budget:
            return row.model, (f"base model: {row.name} ({row.params / 1e6:.1f} M parameters), the largest size "
                               f"that runs in real time here (measured {row.rtf:.3f} s per second of audio, "
                               f"budget {rtf_budget:g}){accuracy_note(row.model.removeprefix('tiny-'))}")
    fastest = min(sizes, key=lambda r: r.rtf)
    return fastest.model, (f"base model: {fastest.name}, the fastest size; no size meets the budget of {rtf_budget:g} "
                           f"s per second of audio on this machine (it measured {fastest.rtf:.3f})"
                           f"{accuracy_note(fastest.model.removeprefix('tiny-'))}")


def accuracy_note(size: str) -> str:
    """``"; held-out WER 41.7 %, the built-in model without --size 33.9 %"`` from the model cards of the
    size and of the original built-in model: what a size gives up, said where it is chosen ('' unknown)."""
    wer, base = _heldout_wer(size_dir(size)), _heldout_wer(default_model_dir())
    if wer is None:
        return ""
    return f"; held-out WER {100 * wer:.1f} %" + ("" if base is None else
                                                  f", the built-in model without --size {100 * base:.1f} %")


def sized_model(size: str, requested_model: str = "auto", *, rtf_budget: float = DEFAULT_RTF_BUDGET,
                seconds: float = 2.0) -> tuple[str, str]:
    """``(base model name, reason)`` for ``--size small|medium|large|auto`` (the command line, the app).

    ``auto`` is :func:`pick_size` (measured here, about ``seconds`` per size); a named size is used as
    given (loading it says how to make it when it is not installed).

    Raises:
        ModelSizeError: not a size, or ``requested_model`` names a model other than the built-in one.
    """
    if str(requested_model).strip().lower() not in ("auto", "tiny", "workbench-tiny"):
        raise ModelSizeError(f"--size chooses a size of the built-in model, but the base model asked for is "
                             f"{str(requested_model)[:60]!r}; leave out --size or --model")
    text = str(size).strip().lower()
    if text == "auto":
        return pick_size(rtf_budget, seconds=seconds)
    if text not in SIZE_NAMES:
        raise ModelSizeError(f"{str(size)[:40]!r} is not a size of the built-in model; choose one of "
                             f"{', '.join(SIZE_NAMES)} or auto (the largest that runs in real time here)")
    note = accuracy_note(text) if text in installed_sizes() else ""  # not installed: loading it says how to make it
    return f"tiny-{text}", f"base model: workbench-tiny-{text} (the {text} size of the built-in model, chosen by you{note})"
