"""In-place distillation losses on CTC frame posteriors (TODM; AlphaNet's adaptive alpha-divergence).

The teacher is the largest subnetwork in the same training step; its posteriors are detached.
Both losses compare, frame by frame, the student's posterior ``q`` with the teacher's ``p``
(``(B, T', V)`` log-probabilities over the CTC vocabulary, the same frame rate because every
size shares the subsampling) and average over the TRUE frames only (``lengths``, encoder frames).

* :func:`alpha_divergence`: AlphaNet's ``AdaptiveLossSoft`` (Wang et al. ICML 2021,
  facebookresearch/AlphaNet ``loss_ops.py``): per frame, the larger of the alpha-divergences
  ``D_alpha(p || q) = sum_v q f(p/q)`` with ``f(t) = (t^alpha - 1) / (alpha (alpha - 1))`` at
  ``alpha_min = -1`` and ``alpha_max = 1`` (the KL limit), with the importance weights ``(p/q)^alpha``
  clipped at ``iw_clip = 5``. AlphaNet returns only a surrogate whose *gradient* is the divergence's;
  here the returned tensor's *value* is the divergence and its gradient is AlphaNet's surrogate's,
  so the loss can be logged and is 0 for equal posteriors.
* :func:`kl_divergence`: plain ``KL(p || q)`` per frame, for the ablation.

Computed in fp32 in the log domain (``p/q`` of peaky CTC posteriors overflows otherwise).
"""

from __future__ import annotations

import math

import torch

__all__ = ["DISTILL_KINDS", "alpha_divergence", "distill_loss", "f_divergence", "kl_divergence"]

DISTILL_KINDS = ("alpha", "kl", "none")


def _frame_mean(per_frame: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Mean of ``per_frame (B, T')`` over true frames (``lengths (B,)``); padding never counts."""
    mask = torch.arange(per_frame.shape[1], device=per_frame.device)[None, :] < lengths.to(per_frame.device)[:, None]
    return (per_frame * mask).sum() / mask.sum().clamp(min=1)


def f_divergence(student_log_probs: torch.Tensor, teacher_log_probs: torch.Tensor, alpha: float,
                 iw_clip: float = 1e3) -> tuple[torch.Tensor, torch.Tensor]:
    """AlphaNet's ``f_divergence`` per frame: ``(divergence, surrogate)``, both ``(..., )`` over the last axis.

    ``divergence`` carries no gradient; ``surrogate = -sum_v q rho_f(p/q) log q`` (``q`` and ``rho_f``
    detached) has the divergence's gradient with respect to the student.
    """
    log_q = student_log_probs.float()
    log_p = teacher_log_probs.detach().float()
    lq = log_q.detach()
    q = lq.exp()
    log_r = log_p - lq  # log importance ratio p/q
    if abs(alpha) < 1e-3:  # KL(q || p): f = -log r, ratio clipped at iw_clip
        log_r = log_r.clamp(max=math.log(iw_clip))
        f = -log_r
        rho_f = log_r - 1.0
        f_base = 0.0
    elif abs(alpha - 1.0) < 1e-3:  # KL(p || q): q f(r) = p log r; q rho_f = p (no clipping, as AlphaNet)
        p = log_p.exp()
        value = (p * log_r).sum(-1)
        return value, -(p * log_q).sum(-1)
    else:
        iw_alpha = (alpha * log_r).clamp(max=math.log(iw_clip)).exp()  # (p/q)^alpha clipped to [0, iw_clip]
        f = iw_alpha / alpha / (alpha - 1.0)
        f_base = 1.0 / alpha / (alpha - 1.0)
        rho_f = iw_alpha / alpha + f_base
    value = (q * (f - f_base)).sum(-1)
    surrogate = -(q * rho_f * log_q).sum(-1)
    return value, surrogate


def alpha_divergence(student_log_probs: torch.Tensor, teacher_log_probs: torch.Tensor, lengths: torch.Tensor, *,
                     alpha_min: float = -1.0, alpha_max: float = 1.0, iw_clip: float = 5.0) -> torch.Tensor:
    """AlphaNet's adaptive alpha-divergence, per frame, mean over true frames (a scalar).

    Args:
        student_log_probs: ``(B, T', V)`` log-posteriors of the subnetwork being taught.
        teacher_log_probs: ``(B, T', V)`` of the largest subnetwork (detached here).
        lengths: ``(B,)`` true encoder frames.
    """
    left, g_left = f_divergence(student_log_probs, teacher_log_probs, alpha_min, iw_clip=iw_clip)
    right, g_right = f_divergence(student_log_probs, teacher_log_probs, alpha_max, iw_clip=iw_clip)
    pick_left = left > right
    value = torch.where(pick_left, left, right)
    surrogate = torch.where(pick_left, g_left, g_right)
    per_frame = value.detach() + surrogate - surrogate.detach()
    return _frame_mean(per_frame, lengths)


def kl_divergence(student_log_probs: torch.Tensor, teacher_log_probs: torch.Tensor,
                  lengths: torch.Tensor) -> torch.Tensor:
    """``KL(teacher || student)`` per frame, mean over true frames (a scalar); shapes as :func:`alpha_divergence`."""
    log_q = student_log_probs.float()
    log_p = teacher_log_probs.detach().float()
    return _frame_mean((log_p.exp() * (log_p - log_q)).sum(-1), lengths)


def distill_loss(kind: str, student_log_probs: torch.Tensor, teacher_log_probs: torch.Tensor,
                 lengths: torch.Tensor, **alpha_options: float) -> torch.Tensor:
    """``"alpha"`` (:func:`alpha_divergence`, with ``alpha_options``) or ``"kl"`` (:func:`kl_divergence`)."""
    if kind == "alpha":
        return alpha_divergence(student_log_probs, teacher_log_probs, lengths, **alpha_options)
    if kind == "kl":
        return kl_divergence(student_log_probs, teacher_log_probs, lengths)
    raise ValueError(f"distillation must be one of {DISTILL_KINDS[:2]}, got {kind!r}")
