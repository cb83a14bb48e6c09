"""A linear compressor (a transform coder) for a Whisper split at ``k = 0``, fitted in closed form.

At ``k = 0`` the device codes the audio's log-mel minus its window's floor, ``stride`` frames at a
time: symbol frames ``x`` of ``stride * 80`` values (:class:`~workbench.device_tuning.compressor.Compressor`
with ``linear = 1``). Which errors cost words is Whisper's business, so the metric is its own:

- :func:`token_fisher`: the Fisher information of Whisper's token distributions (teacher-forced on
  its own transcripts) with respect to one symbol frame's log-mel, ``F (s*80, s*80)``, averaged
  over the training frames and estimated by Monte Carlo (tokens drawn from the model's own
  distributions, one gradient per draw). A small error ``e`` in a symbol frame then costs about
  ``e^T F e / 2`` nats of the teacher-forced KL that the MLP compressors are trained on.
- :func:`fit_linear_compressor`: in that metric (``F`` regularized: ``+ lam * mean eigenvalue``
  on the diagonal, so no direction is free) the best linear transform for a bit budget is the
  principal components of the whitened frames ``F^(1/2) x``. The coder keeps the first ``dims``,
  divides them by one ``step`` and rounds (an entropy-coded uniform quantizer spends the same
  distortion on each kept component: reverse water-filling); the server maps back through
  ``F^(-1/2)``. The symbol tables are counted on the same recordings' wire symbols.

The bit rate follows ``step`` (about 1.6 kbit/s at 0.7 on the real prompts); ``dims`` only needs
to be large enough that the dropped components would have rounded to 0 anyway.

>>> import numpy as np
>>> frames = [np.random.default_rng(0).normal(size=(30, 16)) for _ in range(2)]
>>> whitened_components(np.concatenate(frames), np.eye(16), dims=3, lam=0.1)[0].shape
(3, 16)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from workbench.device_tuning.compressor import Compressor
from workbench.errors import WorkbenchError

__all__ = ["fit_linear_compressor", "symbol_frames", "token_fisher", "whitened_components"]


def symbol_frames(hidden: torch.Tensor, samples: int, stride: int) -> np.ndarray:
    """One recording's coded log-mel frames minus the floor, ``stride`` at a time:
    ``(ceil(coded / stride), stride * 80)`` float64, zero-padded (the floor) at the end, as
    :meth:`Compressor._stack` sees them on the wire."""
    h = hidden.detach().cpu().double().numpy()
    return _coded_blocks(h - h.min(), samples, stride)


def _coded_blocks(v: np.ndarray, samples: int, stride: int) -> np.ndarray:
    """The coded frames of ``v (W, 80)``, ``stride`` at a time, zero-padded: ``(ceil(coded / stride), stride * 80)``."""
    from workbench.device_tuning.whisper_split import coded_frames

    n = coded_frames(samples, v.shape[0])
    x = np.zeros((-(-n // stride) * stride, v.shape[1]))
    x[:n] = v[:n]
    return x.reshape(-1, stride * v.shape[1])


def token_fisher(split, items: Sequence, *, stride: int, draws: int = 2, seed: int = 0,
                 on_progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Whisper's Fisher information per symbol frame of log-mel, ``(stride*80, stride*80)``.

    ``items``: :class:`~workbench.device_tuning.whisper_train.DistillItem` of a split at ``k = 0``
    (each its log-mel window ``(W, 80)`` and the unsplit model's transcript). For each recording
    and each of ``draws`` draws: one token per transcript position is drawn from the model's
    distribution there (teacher-forced on the transcript), and the gradient ``g (W, 80)`` of their
    log-probability with respect to the log-mel is cut into symbol frames; the result is the mean
    of ``g_f g_f^T`` over every coded symbol frame ``f`` (its expectation is the Fisher
    information of the token distributions, summed over positions).
    """
    from workbench.models.base import CachedFeatures

    if split.split_layer != 0:
        raise WorkbenchError("A linear compressor is fitted on log-mel (split 0) only; it is not supported yet "
                             f"at split {split.split_layer}.")
    b = split.backend
    gen = torch.Generator().manual_seed(seed)
    total, count = np.zeros((stride * 80, stride * 80)), 0
    for i, it in enumerate(items):
        batch = b.collate([CachedFeatures(it.hidden, it.frames, it.samples, 0)], [0])
        batch.features = batch.features.detach().clone().requires_grad_()
        dec_in, labels = (t.to(b.device) for t in b.decoder_io([it.text]))
        real = labels >= 0
        for _ in range(draws):
            enc, _ = b.encode(batch)
            logp = torch.log_softmax(b.forced_logits(enc, dec_in).float(), dim=-1)[real]
            drawn = torch.multinomial(logp.detach().exp().cpu(), 1, generator=gen).to(logp.device)
            (grad,) = torch.autograd.grad(logp.gather(-1, drawn).sum(), batch.features)
            g = _coded_blocks(grad[0].double().cpu().numpy(), it.samples, stride)
            total += g.T @ g
            count += len(g)
        if on_progress is not None:
            on_progress(i + 1)
    return total / max(1, count)


def whitened_components(x: np.ndarray, fisher: np.ndarray, *, dims: int,
                        lam: float = 0.1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(analysis (dims, n), synthesis (dims, n), mean (n,))`` of symbol frames ``x (N, n)`` in
    the metric ``fisher (n, n)``: coefficients ``(x - mean) @ analysis.T``, restored
    ``coefficients @ synthesis + mean``; the first ``dims`` principal components of
    ``F^(1/2) (x - mean)``, ``F`` regularized by ``lam`` times its mean eigenvalue."""
    if not 1 <= dims <= x.shape[1]:
        raise WorkbenchError(f"dims must be 1 to {x.shape[1]}, got {dims}")
    f = fisher / max(np.trace(fisher) / len(fisher), 1e-30) + lam * np.eye(len(fisher))
    eig, u = np.linalg.eigh((f + f.T) / 2)
    half, inv_half = (u * eig**0.5) @ u.T, (u * eig**-0.5) @ u.T
    mean = x.mean(0)
    v = np.linalg.svd((x - mean) @ half, full_matrices=False)[2][:dims]
    return v @ half, v @ inv_half, mean


def fit_linear_compressor(split, items: Sequence, fisher: np.ndarray, *, dims: int, bits: int, stride: int,
                          step: float, lam: float = 0.1, table_context: int = 0) -> tuple[Compressor, dict]:
    """A linear compressor for ``split`` (``k = 0``) fitted on ``items`` (see the module docstring),
    its tables counted on their wire symbols; and ``{"clipped"}``: the share of coefficients
    beyond the ``2**bits`` symbols (more bits, or a larger ``step``, if it is not ~0)."""
    x = np.concatenate([symbol_frames(it.hidden, it.samples, stride) for it in items])
    analysis, synthesis, mean = whitened_components(x, fisher, dims=dims, lam=lam)
    comp = Compressor(split.width, dims, bits, stride, hidden=0, table_context=table_context, linear=1)
    with torch.no_grad():
        comp.down.weight.copy_(torch.from_numpy(analysis / step))
        comp.down.bias.copy_(torch.from_numpy(-(mean @ analysis.T) / step))
        comp.up.weight.copy_(torch.from_numpy(synthesis.T * step))
        comp.up.bias.copy_(torch.from_numpy(mean))
    coeffs = (x - mean) @ analysis.T / step
    clipped = float((np.abs(np.rint(coeffs)) > comp.levels // 2 - 1).mean())
    saved, split.compressor = split.compressor, comp.to(split.backend.device).eval()
    try:
        comp.fit_tables([split.coded_symbols(it.hidden, it.samples) for it in items])
    finally:
        split.compressor = saved
    return comp, {"clipped": clipped}
