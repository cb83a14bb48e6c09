"""ScaledAdam: the optimizer of k2-fsa/icefall's Zipformer recipes (``egs/librispeech/ASR/zipformer/optim.py``).

The published rule, per parameter tensor ``p`` with gradient ``g`` at step ``n`` (from 0), as in
icefall's ``basic_step`` / ``scaling_step`` / ``momentum_step``:

1. Adam's second moment only: ``v = beta2 v + (1 - beta2) g^2``; while ``1 - beta2^(n+1) < 0.99``,
   ``v`` is divided by that bias correction; ``delta = -lr g / (sqrt(v) + eps)``.
   Scalars (one element) use ``lr * scalar_lr_scale`` and stop here.
2. Tensors: ``delta *= max(rms(p), param_min_rms)`` where ``rms(p)`` is re-measured every
   ``size_update_period`` steps (at ``n % period == period - 1``) and at the first step.
   The gradient of the tensor's scale, ``sum(p * g)``, is stored every step; every ``period``
   steps (``n > 0``) the scale learns in log space with its own Adam-like rule::

       s = beta2^period s + (1 - beta2^period) mean(scale_grads^2)
       step = -lr scalar_lr_scale sqrt(1 - (beta2^period)^((n+1)//period)) sum(scale_grads) / (sqrt(s) + eps)
       step = 0 if rms(p) < param_min_rms;  clamp to [-0.1, 0.1];  min(step, (param_max_rms - rms) / rms)
       delta += p * step

   (so ``param_max_rms`` caps the learned size, and ``param_min_rms`` floors the update scale).
3. Momentum without bias correction: ``m = beta1 m + (1 - beta1) delta``; ``p += m``; scalars are
   clamped to ``[-scalar_max, scalar_max]``.

``clipping_scale`` (e.g. 2.0): gradients are scaled by ``min(1, threshold / norm)`` where ``norm`` is the
group's gradient norm with each tensor's gradient times its ``rms(p)`` (scalars times ``scalar_lr_scale``)
and ``threshold = clipping_scale * median`` of the last ``clipping_update_period`` norms, re-estimated
every ``clipping_update_period`` steps and at steps 10, 20, 40 (then with 2x the threshold).

Left out on purpose: icefall stacks same-shape tensors into batches (``BatchedOptimizer``) to launch
fewer GPU kernels; here each tensor is updated on its own, with the same arithmetic. The diagnostics
that name the parameters dominating the gradient are left out too.
"""

from __future__ import annotations

import logging
import math

import torch
from torch.optim import Optimizer

__all__ = ["ScaledAdam"]

_LOG = logging.getLogger(__name__)


def _work_dtype(p: torch.Tensor) -> torch.dtype:
    """fp32 state and arithmetic for fp32/fp16/bf16 parameters (as icefall), fp64 for fp64 ones."""
    return torch.float64 if p.dtype == torch.float64 else torch.float32


class ScaledAdam(Optimizer):
    """Adam whose update is proportional to each parameter tensor's RMS, with a learned tensor scale.

    Args (icefall's defaults):
        params: parameters or parameter groups.
        lr: learning rate (icefall's Zipformer uses ~0.045 with its Eden schedule; the update is
            relative to the parameter's RMS, so it is much larger than Adam's).
        clipping_scale: gradient clipping at this multiple of the recent median norm (None: off).
        betas: ``(beta1, beta2)``: momentum of the update and of the squared gradient.
        scalar_lr_scale: learning-rate factor for scalars and for the learned tensor scales.
        eps: added to the denominators.
        param_min_rms, param_max_rms: limits of a tensor's RMS for scaling and for the learned scale.
        scalar_max: clamp for one-element parameters.
        size_update_period: steps between re-measurements and updates of a tensor's scale.
        clipping_update_period: steps between re-estimates of the clipping threshold.
    """

    def __init__(self, params, lr: float = 3e-2, clipping_scale: float | None = None,
                 betas: tuple[float, float] = (0.9, 0.98), scalar_lr_scale: float = 0.1, eps: float = 1e-8,
                 param_min_rms: float = 1e-5, param_max_rms: float = 3.0, scalar_max: float = 10.0,
                 size_update_period: int = 4, clipping_update_period: int = 100) -> None:
        if not 0 < betas[0] <= betas[1] < 1:
            raise ValueError(f"betas must satisfy 0 < beta1 <= beta2 < 1, got {betas}")
        defaults = {"lr": lr, "clipping_scale": clipping_scale, "betas": betas, "scalar_lr_scale": scalar_lr_scale,
                    "eps": eps, "param_min_rms": param_min_rms, "param_max_rms": param_max_rms,
                    "scalar_max": scalar_max, "size_update_period": size_update_period,
                    "clipping_update_period": clipping_update_period}
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = group["params"]
            if not params:
                continue
            first = self.state[params[0]]
            scale = 1.0 if len(first) == 0 else self._clipping_scale(group)
            for p in params:
                grad = torch.zeros_like(p) if p.grad is None else p.grad
                if grad.is_sparse:
                    raise RuntimeError("ScaledAdam does not support sparse gradients")
                grad = grad.to(_work_dtype(p)) if scale == 1.0 else grad.to(_work_dtype(p)) * scale
                state = self.state[p]
                state.setdefault("step", 0)
                p.add_(self._momentum_step(group, p.detach(), state, grad).to(p.dtype))
                if p.numel() == 1:
                    p.clamp_(min=-group["scalar_max"], max=group["scalar_max"])
                state["step"] += 1
        return loss

    # ------------------------------------------------------------------ the rule
    @staticmethod
    def _basic_step(group: dict, p: torch.Tensor, state: dict, grad: torch.Tensor) -> torch.Tensor:
        lr = group["lr"] * (group["scalar_lr_scale"] if p.numel() == 1 else 1.0)
        beta2 = group["betas"][1]
        if "exp_avg_sq" not in state:
            state["exp_avg_sq"] = torch.zeros(p.shape, device=p.device, dtype=_work_dtype(p))
        exp_avg_sq = state["exp_avg_sq"]
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        bias_correction2 = 1 - beta2 ** (state["step"] + 1)
        if bias_correction2 < 0.99:
            exp_avg_sq = exp_avg_sq * (1.0 / bias_correction2)
        return -lr * grad / (exp_avg_sq.sqrt() + group["eps"])

    @classmethod
    def _scaling_step(cls, group: dict, p: torch.Tensor, state: dict, grad: torch.Tensor) -> torch.Tensor:
        delta = cls._basic_step(group, p, state, grad)
        if p.numel() == 1:
            return delta  # no scaling for scalars
        step = state["step"]
        period = group["size_update_period"]
        pf = p.to(_work_dtype(p))
        if "param_rms" not in state:
            state["param_rms"] = pf.square().mean().sqrt()
            state["scale_exp_avg_sq"] = torch.zeros_like(state["param_rms"])
            state["scale_grads"] = torch.zeros(period, dtype=pf.dtype, device=p.device)
        param_rms, scale_grads = state["param_rms"], state["scale_grads"]
        scale_grads[step % period] = (pf * grad).sum()
        if step % period == period - 1:
            param_rms.copy_(pf.square().mean().sqrt())
        param_min_rms = group["param_min_rms"]
        delta = delta * param_rms.clamp(min=param_min_rms)
        if step % period == period - 1 and step > 0:
            beta2_corr = group["betas"][1] ** period
            scale_exp_avg_sq = state["scale_exp_avg_sq"]
            scale_exp_avg_sq.mul_(beta2_corr).add_(scale_grads.square().mean(), alpha=1 - beta2_corr)
            size_step = (step + 1) // period
            bias_correction2 = 1 - beta2_corr**size_step
            size_lr = group["lr"] * group["scalar_lr_scale"]
            scale_step = -size_lr * bias_correction2**0.5 * scale_grads.sum() / (scale_exp_avg_sq.sqrt() + group["eps"])
            scale_step = torch.where(param_rms < param_min_rms, torch.zeros_like(scale_step), scale_step)
            scale_step = scale_step.clamp(min=-0.1, max=0.1)
            scale_step = torch.minimum(scale_step, (group["param_max_rms"] - param_rms) / param_rms)
            delta = delta + pf * scale_step
        return delta

    @classmethod
    def _momentum_step(cls, group: dict, p: torch.Tensor, state: dict, grad: torch.Tensor) -> torch.Tensor:
        delta = cls._scaling_step(group, p, state, grad)
        beta1 = group["betas"][0]
        if "delta" not in state:
            state["delta"] = torch.zeros(p.shape, device=p.device, dtype=_work_dtype(p))
        stored = state["delta"]
        stored.mul_(beta1).add_(delta, alpha=1 - beta1)
        return stored

    # ------------------------------------------------------------------ clipping
    def _clipping_scale(self, group: dict) -> float:
        """Factor <= 1 for this step's gradients (icefall's ``_get_clipping_scale``)."""
        clipping_scale = group["clipping_scale"]
        params = group["params"]
        first = self.state[params[0]]
        step = first["step"]
        if clipping_scale is None or step == 0:
            return 1.0
        period = group["clipping_update_period"]
        tot_sumsq = torch.zeros((), device=params[0].device, dtype=torch.float64)  # a few scalar ops
        for p in params:
            if p.grad is None:
                continue
            g = p.grad.to(_work_dtype(p))
            if p.numel() == 1:
                tot_sumsq += g.square().sum() * group["scalar_lr_scale"] ** 2
            else:
                rms = self.state[p].get("param_rms")
                rms = p.detach().to(g.dtype).square().mean().sqrt() if rms is None else rms
                tot_sumsq += (g * rms).square().sum()
        tot_norm = tot_sumsq.sqrt()
        if "model_norms" not in first:
            first["model_norms"] = torch.zeros(period, device=tot_norm.device, dtype=tot_norm.dtype)
        first["model_norms"][step % period] = tot_norm
        irregular = [i for i in (10, 20, 40) if i < period]
        if step % period == 0 or step in irregular:
            norms = first["model_norms"].sort()[0].cpu()
            if step in irregular:
                norms = norms[-step:]
            n = norms.numel()
            quartiles = [float(norms[min(n - 1, (n // 4) * i)]) for i in range(5)]
            median = quartiles[2]
            if math.isnan(median):
                raise RuntimeError("too many gradients were not finite")
            threshold = clipping_scale * median * (2.0 if step in irregular else 1.0)
            first["model_norm_threshold"] = threshold
            clipped = first.get("num_clipped", 0) * 100.0 / n
            first["num_clipped"] = 0
            _LOG.info("clipping_scale=%s, grad-norm quartiles %s, threshold=%.3e, percent-clipped=%.1f",
                      clipping_scale, " ".join(f"{q:.3e}" for q in quartiles), threshold, clipped)
        if "model_norm_threshold" not in first:
            return 1.0
        ans = min(1.0, float(first["model_norm_threshold"] / (tot_norm + 1e-20)))
        if math.isnan(ans):
            ans = 0.0
        if ans < 1.0:
            first["num_clipped"] = first.get("num_clipped", 0) + 1
        if ans < 0.5:
            _LOG.info("scaling gradients by %.3g, model_norm_threshold=%.3e", ans, first["model_norm_threshold"])
        if ans == 0.0:
            for p in params:
                if p.grad is not None:
                    p.grad.zero_()
        return ans
