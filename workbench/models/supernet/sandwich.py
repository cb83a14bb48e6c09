"""The sandwich training step of the supernet (BigNAS's rule, TODM's losses), each technique switchable.

Each step samples the LARGEST, the SMALLEST and ``n_random`` random subnetworks of a
:class:`~workbench.models.supernet.model.Supernet` and runs them on the same (augmented) batch:

* the largest learns from the transcripts (CTC) at the full dropout ``p_max``;
* every other size learns from the largest's detached frame posteriors (``distill="alpha"``:
  AlphaNet's adaptive alpha-divergence, ``"kl"``: KL) plus ``ctc_weight`` x CTC, or from CTC
  alone (``distill="none"``), at its own dropout (adaptive dropout lives in the supernet).

The gradients of all sizes add up on the shared weights; then one optimizer step. Plain
Adam(W) gets gradient-norm clipping here; :class:`~workbench.optim.ScaledAdam` clips inside.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable

import torch

from workbench.models.supernet.distill import DISTILL_KINDS, distill_loss
from workbench.models.supernet.model import SubnetChoice, Supernet
from workbench.models.tiny import ctc_loss
from workbench.optim import ScaledAdam

__all__ = ["SandwichConfig", "sample_choices", "sandwich_step"]


@dataclasses.dataclass
class SandwichConfig:
    """Switches of one sandwich step (the ablations turn them off one by one)."""

    n_random: int = 2  # random subnetworks besides the largest and the smallest
    distill: str = "alpha"  # "alpha" | "kl" | "none"
    ctc_weight: float = 0.0  # CTC weight added for the distilled sizes
    alpha_min: float = -1.0
    alpha_max: float = 1.0
    iw_clip: float = 5.0
    clip_norm: float | None = 5.0  # gradient-norm clipping for optimizers other than ScaledAdam

    def __post_init__(self) -> None:
        if self.distill not in DISTILL_KINDS:
            raise ValueError(f"distill must be one of {DISTILL_KINDS}, got {self.distill!r}")
        if self.n_random < 0:
            raise ValueError(f"n_random must be >= 0, got {self.n_random}")


def sample_choices(supernet: Supernet, n_random: int, generator: torch.Generator) -> list[SubnetChoice]:
    """``[largest, smallest, n_random random choices]`` (the smallest is left out when it is the largest)."""
    space = supernet.space
    out = [space.largest] + ([space.smallest] if space.smallest != space.largest else [])
    return out + [space.sample(generator) for _ in range(n_random if len(out) > 1 else 0)]


def sandwich_step(supernet: Supernet, feats: torch.Tensor, lengths: torch.Tensor, texts: list[str],
                  optimizer: torch.optim.Optimizer, cfg: SandwichConfig | None = None, *,
                  generator: torch.Generator, choices: list[SubnetChoice] | None = None,
                  autocast: Callable[[], contextlib.AbstractContextManager] | None = None) -> dict:
    """One optimizer step over the sandwich of subnetworks on ``feats (B, T, 80)``, ``lengths (B,)``.

    Args:
        texts: the B normalised transcripts.
        generator: draws the random subnetworks (ignored when ``choices`` is given).
        choices: the subnetworks to run, the first being the teacher (default :func:`sample_choices`).
        autocast: a factory of the autocast context for the forward passes (e.g. bf16), or None.

    Returns:
        ``{"losses": [(size name, loss), ...] in run order, "ctc": the largest's CTC loss, "skipped": bool,
        "grad_norm": float | None, "choices": specs}``; a batch with a non-finite loss is skipped (no update).
    """
    cfg = cfg or SandwichConfig()
    choices = choices if choices is not None else sample_choices(supernet, cfg.n_random, generator)
    ctx = autocast or contextlib.nullcontext
    supernet.train()
    optimizer.zero_grad(set_to_none=True)
    losses: list[tuple[str, float]] = []
    teacher = None
    ctc_largest = float("nan")
    for i, choice in enumerate(choices):
        with ctx():
            log_probs, lens = supernet.forward_features(feats, lengths, choice)
        log_probs = log_probs.float()
        if i == 0 or cfg.distill == "none":
            loss = ctc_loss(log_probs, lens, texts)
            if i == 0:
                ctc_largest = float(loss.detach())
                teacher = log_probs.detach()
        else:
            loss = distill_loss(cfg.distill, log_probs, teacher, lens, alpha_min=cfg.alpha_min,
                                alpha_max=cfg.alpha_max, iw_clip=cfg.iw_clip)
            if cfg.ctc_weight:
                loss = loss + cfg.ctc_weight * ctc_loss(log_probs, lens, texts)
        if not torch.isfinite(loss):
            optimizer.zero_grad(set_to_none=True)
            return {"losses": losses, "ctc": ctc_largest, "skipped": True, "grad_norm": None,
                    "choices": [c.spec() for c in choices]}
        loss.backward()
        losses.append((supernet.space.name_of(choice), float(loss.detach())))
    grad_norm = None
    if cfg.clip_norm and not isinstance(optimizer, ScaledAdam):
        grad_norm = float(torch.nn.utils.clip_grad_norm_(supernet.parameters(), cfg.clip_norm))
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return {"losses": losses, "ctc": ctc_largest, "skipped": False, "grad_norm": grad_norm,
            "choices": [c.spec() for c in choices]}
