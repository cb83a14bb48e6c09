"""ScaledAdam against a hand-written reference of icefall's published update rule (zipformer/optim.py)."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch

from workbench.optim import ScaledAdam

LR, B1, B2, SLS, EPS, MIN_RMS, MAX_RMS, PERIOD = 0.05, 0.9, 0.98, 0.1, 1e-8, 1e-5, 3.0, 4


def _toy(seed: int = 0):
    """W (3, 4), bias (4,), scalar s; loss = sum(A (W - T)^2) + sum((b - u)^2) + (s - 3)^2, times a factor."""
    rng = np.random.default_rng(seed)
    w0, t, a = rng.normal(size=(3, 4)), rng.normal(size=(3, 4)), rng.uniform(0.5, 2.0, size=(3, 4))
    b0, u = 0.3 * rng.normal(size=4), rng.normal(size=4)
    return w0, t, a, b0, u, 0.5


def _grads(w, b, s, t, a, u, factor):
    return factor * 2 * a * (w - t), factor * 2 * (b - u), factor * 2 * (s - 3.0)


def _rms(x):
    return math.sqrt(float(np.mean(np.square(x))))


def _reference(steps: int, factors: list[float], clipping_scale: float | None, clip_period: int = 100):
    """The rule step by step in float64, one tensor at a time (no batching)."""
    w0, t, a, b0, u, s0 = _toy()
    params = {"w": w0.copy(), "b": b0.copy(), "s": np.array(s0)}
    st = {k: {"v": np.zeros_like(p), "m": np.zeros_like(p), "rms": None, "sv": 0.0, "sg": [0.0] * PERIOD}
          for k, p in params.items()}
    norms, threshold = [0.0] * clip_period, None
    for n in range(steps):
        g = dict(zip(("w", "b", "s"), _grads(params["w"], params["b"], params["s"], t, a, u, factors[n]),
                     strict=True))
        scale = 1.0
        if clipping_scale is not None and n > 0:
            tot = sum(float(np.sum((g[k] * st[k]["rms"]) ** 2)) for k in ("w", "b")) + (g["s"] * SLS) ** 2
            norms[n % clip_period] = math.sqrt(tot)
            if n % clip_period == 0 or n in (10, 20, 40):
                recent = sorted(norms)[-n:] if n in (10, 20, 40) else sorted(norms)
                median = recent[min(len(recent) - 1, (len(recent) // 4) * 2)]
                threshold = clipping_scale * median * (2.0 if n in (10, 20, 40) else 1.0)
            if threshold is not None:
                scale = min(1.0, threshold / (math.sqrt(tot) + 1e-20))
        for k, p in params.items():
            grad, s_ = g[k] * scale, st[k]
            s_["v"] = B2 * s_["v"] + (1 - B2) * grad**2
            bc = 1 - B2 ** (n + 1)
            v = s_["v"] / bc if bc < 0.99 else s_["v"]
            scalar = p.size == 1
            delta = -(LR * (SLS if scalar else 1.0)) * grad / (np.sqrt(v) + EPS)
            if not scalar:
                if s_["rms"] is None:
                    s_["rms"] = _rms(p)
                s_["sg"][n % PERIOD] = float(np.sum(p * grad))
                if n % PERIOD == PERIOD - 1:
                    s_["rms"] = _rms(p)
                delta = delta * max(s_["rms"], MIN_RMS)
                if n % PERIOD == PERIOD - 1 and n > 0:
                    bc2 = B2**PERIOD
                    s_["sv"] = bc2 * s_["sv"] + (1 - bc2) * float(np.mean(np.square(s_["sg"])))
                    corr = 1 - bc2 ** ((n + 1) // PERIOD)
                    step = -LR * SLS * math.sqrt(corr) * sum(s_["sg"]) / (math.sqrt(s_["sv"]) + EPS)
                    step = 0.0 if s_["rms"] < MIN_RMS else step
                    step = min(max(step, -0.1), 0.1)
                    step = min(step, (MAX_RMS - s_["rms"]) / s_["rms"])
                    delta = delta + p * step
            s_["m"] = B1 * s_["m"] + (1 - B1) * delta
            params[k] = p + s_["m"]
            if scalar:
                params[k] = np.clip(params[k], -10.0, 10.0)
    return params


def _run(steps: int, factors: list[float], clipping_scale: float | None, clip_period: int = 100):
    w0, t, a, b0, u, s0 = _toy()
    w = torch.nn.Parameter(torch.tensor(w0, dtype=torch.float64))
    b = torch.nn.Parameter(torch.tensor(b0, dtype=torch.float64))
    s = torch.nn.Parameter(torch.tensor(s0, dtype=torch.float64))
    opt = ScaledAdam([w, b, s], lr=LR, clipping_scale=clipping_scale, betas=(B1, B2), scalar_lr_scale=SLS, eps=EPS,
                     param_min_rms=MIN_RMS, param_max_rms=MAX_RMS, size_update_period=PERIOD,
                     clipping_update_period=clip_period)
    tt, aa, uu = (torch.tensor(x, dtype=torch.float64) for x in (t, a, u))
    losses = []
    for n in range(steps):
        opt.zero_grad()
        loss = factors[n] * ((aa * (w - tt) ** 2).sum() + ((b - uu) ** 2).sum() + (s - 3.0) ** 2)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()) / factors[n])
    return {"w": w.detach().numpy(), "b": b.detach().numpy(), "s": s.detach().numpy()}, losses


def test_one_step_is_sign_times_rms():
    out, _ = _run(1, [1.0], None)
    w0, t, a, b0, u, s0 = _toy()
    gw, gb, gs = _grads(w0, b0, s0, t, a, u, 1.0)
    # step 0: Adam's direction is sign(g) (bias-corrected second moment; eps aside), scaled by rms(p),
    # momentum (1 - beta1)
    np.testing.assert_allclose(out["w"], w0 - LR * (1 - B1) * _rms(w0) * np.sign(gw), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(out["b"], b0 - LR * (1 - B1) * _rms(b0) * np.sign(gb), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(out["s"], s0 - LR * SLS * (1 - B1) * np.sign(gs), rtol=1e-7)
    ref = _reference(1, [1.0], None)
    for k in ref:
        np.testing.assert_allclose(out[k], ref[k], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("clipping_scale", [None, 2.0])
def test_steps_follow_the_rule_with_scale_updates_and_clipping(clipping_scale):
    steps = 14
    factors = [1.0] * steps
    factors[12] = 1000.0  # a gradient spike after the threshold is set (step 10): clipped
    out, losses = _run(steps, factors, clipping_scale)
    ref = _reference(steps, factors, clipping_scale)
    for k in ref:
        np.testing.assert_allclose(out[k], ref[k], rtol=1e-9, atol=1e-12)
    assert losses[-1] < losses[0]
    if clipping_scale is not None:  # clipping changed the result
        unclipped = _reference(steps, factors, None)
        assert not np.allclose(unclipped["w"], ref["w"])


def test_state_round_trip_and_float32():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    opt = ScaledAdam(model.parameters(), lr=0.02, clipping_scale=2.0)
    x = torch.randn(8, 4)
    for _ in range(5):
        opt.zero_grad()
        model(x).square().mean().backward()
        opt.step()
    clone = torch.nn.Linear(4, 3)
    clone.load_state_dict(model.state_dict())
    opt2 = ScaledAdam(clone.parameters(), lr=0.02, clipping_scale=2.0)
    buf = io.BytesIO()  # as a checkpoint on disk (a live state_dict shares the state tensors)
    torch.save(opt.state_dict(), buf)
    buf.seek(0)
    opt2.load_state_dict(torch.load(buf, weights_only=True))
    for m, o in ((model, opt), (clone, opt2)):
        o.zero_grad()
        m(x).square().mean().backward()
        o.step()
    for p, q in zip(model.parameters(), clone.parameters(), strict=True):
        assert torch.equal(p, q) and p.dtype == torch.float32
