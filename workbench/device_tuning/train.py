"""Training a compressor with frozen device and server parts.

The device part's outputs are computed once per recording (they never change: the device part
is frozen), so a step costs the compressor plus the server part. The loss is

    KL(teacher || student) per true frame  +  ctc_weight * CTC(student, transcript)
                                            +  rate_weight * estimated bits per symbol

where the teacher is the unsplit model's CTC posterior on the same recording (distillation to
the uncompressed model) and the student is the server's posterior on the compressed hidden
states. Only the compressor's weights change. At the end each symbol position's frequencies
are counted on the training recordings (:meth:`Compressor.fit_tables`) for the range coder.
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
from collections.abc import Callable, Sequence

import torch

from workbench.device_tuning.heads import HeadTraining
from workbench.device_tuning.split import SplitModel
from workbench.models.base import CachedFeatures

__all__ = ["CompressorTraining", "distill_loss", "train_compressor"]


@dataclasses.dataclass
class CompressorTraining(HeadTraining):
    """Settings of :func:`train_compressor`: the heads' budget fields (seconds are wall-clock on
    this machine; whichever of ``seconds`` and ``max_steps`` runs out first ends it), plus the loss weights."""

    max_steps: int = 100_000
    seconds: float = 300.0
    batch_size: int = 16
    weight_decay: float = 1e-4
    ctc_weight: float = 0.2
    rate_weight: float = 0.0  # x bits per symbol (Compressor.rate_bits): trades WER for fewer bits sent


def distill_loss(student: torch.Tensor, teacher: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Mean over true frames of ``KL(teacher || student)``; both ``(B, T', V)`` log-probs."""
    mask = torch.arange(student.shape[1], device=student.device)[None] < lengths[:, None]
    kl = (teacher.exp() * (teacher - student)).sum(-1)
    return (kl * mask).sum() / mask.sum().clamp(min=1)


def train_compressor(split: SplitModel, hidden: Sequence[CachedFeatures], texts: Sequence[str],
                     settings: CompressorTraining = CompressorTraining(),
                     on_step: Callable[[dict], None] | None = None) -> list[dict]:
    """Train ``split.compressor`` in place on device outputs ``hidden`` (from
    :meth:`SplitModel.device_hidden`) and their transcripts; returns the per-step history."""
    backend, comp = split.backend, split.compressor
    if comp is None:
        raise ValueError("train_compressor needs a SplitModel with a compressor")
    backend.freeze()
    backend.module.eval()
    comp.train()
    rng = random.Random(settings.seed)
    torch.manual_seed(settings.seed)
    opt = torch.optim.AdamW(comp.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    order = sorted(range(len(hidden)), key=lambda i: hidden[i].length)  # length buckets: little padding
    chunks = [order[i:i + settings.batch_size] for i in range(0, len(order), settings.batch_size)]
    history: list[dict] = []
    start = time.perf_counter()
    step = 0
    while step < settings.max_steps:
        rng.shuffle(chunks)
        for idx in chunks:
            elapsed = time.perf_counter() - start
            if step >= settings.max_steps or elapsed >= settings.seconds:
                break
            for g in opt.param_groups:  # cosine over the time budget
                g["lr"] = settings.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, elapsed / settings.seconds)))
            batch = backend.collate([hidden[i] for i in idx], [0] * len(idx))
            with torch.no_grad():
                teacher, lens = backend.log_probs(batch)
            rate = comp.rate_bits(batch.features) if settings.rate_weight else torch.zeros(())
            batch.features = comp(batch.features)
            student, _ = backend.log_probs(batch)
            kd = distill_loss(student.float(), teacher.float(), lens)
            ctc = backend.loss_from_log_probs(student, lens, [texts[i] for i in idx])
            loss = kd + settings.ctc_weight * ctc + settings.rate_weight * rate
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(comp.parameters(), 5.0)
            opt.step()
            step += 1
            rec = {"step": step, "loss": loss.item(), "kd": kd.item(), "ctc": ctc.item(), "rate_bits": rate.item(),
                   "seconds": time.perf_counter() - start}
            history.append(rec)
            if on_step is not None:
                on_step(rec)
        else:
            continue
        break
    comp.eval()
    with torch.no_grad():
        comp.fit_tables([comp.encode(it.features[None].float())[0] for it in hidden])
    return history

