"""The installed sizes of the built-in model: a table, and the largest size that runs in real time here.

A size is a folder ``workbench/data/models/tiny-<size>`` written by ``recipes/train_supernet.py``
(see :mod:`workbench.models.supernet`); the original built-in model (``tiny``) is listed too.
The real-time factor (seconds of compute per second of audio, greedy decoding, one utterance at
a time, torch's current threads) is MEASURED on this machine, in about ``seconds`` per model.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np

from workbench.constants import SAMPLE_RATE
from workbench.models.supernet import installed_sizes, size_dir
from workbench.models.tiny import TinyBackend, default_model_dir, load_tiny

__all__ = ["SizeInfo", "measure_rtf", "pick_size", "size_table"]


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


def _heldout_wer(folder: Path) -> float | None:
    """The held-out WER in the size's ``metrics.json`` (its model card), or None when it is missing or is
    not a number from 0 up: the file is read, not trusted (a size folder can come from anywhere)."""
    try:
        res = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
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
        backend = load_tiny(folder)
        rows.append(SizeInfo(model, backend.name, backend.num_parameters(),
                             (folder / "model.safetensors").stat().st_size / 1e6, _heldout_wer(folder),
                             measure_rtf(backend, seconds=seconds) if measure else None))
    return rows


def pick_size(rtf_budget: float = 0.5, *, seconds: float = 2.0) -> tuple[str, str]:
    """``(model, reason)``: the largest installed size whose measured RTF is within ``rtf_budget``.

    Without installed sizes the original built-in model is the answer. When no size is fast
    enough, the fastest one is picked and the reason says so.
    """
    sizes = [r for r in size_table(measure=False) if r.model != "tiny"]
    if not sizes:
        return "tiny", "base model: the built-in model (no smaller sizes are installed)"
    for row in sorted(sizes, key=lambda r: r.params, reverse=True):
        row.rtf = measure_rtf(load_tiny(size_dir(row.model.removeprefix("tiny-"))), seconds=seconds)
        if row.rtf <= rtf_budget:
            return row.model, (f"base model: {row.name} ({row.params / 1e6:.1f} M parameters), the largest size "
                               f"that runs in real time here (measured {row.rtf:.3f} s per second of audio, "
                               f"budget {rtf_budget:g})")
    fastest = min(sizes, key=lambda r: r.rtf)
    return fastest.model, (f"base model: {fastest.name}, the fastest size; no size meets the budget of {rtf_budget:g} "
                           f"s per second of audio on this machine (it measured {fastest.rtf:.3f})")
