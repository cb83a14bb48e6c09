"""Figures for SpecAugment: a spectrogram with its masks, and a grid of draws."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from workbench.augment import SpecAugmentPolicy, spec_augment
from workbench.constants import FRAMES_PER_SECOND
from workbench.plots._base import new_axes, new_figure

__all__ = ["plot_augment_grid", "plot_masks", "plot_spectrogram"]

_HOP_S = 1 / FRAMES_PER_SECOND  # seconds per frame of the built-in frontend


def _as_2d(features: Any) -> np.ndarray:
    arr = features.detach().cpu().numpy() if isinstance(features, torch.Tensor) else np.asarray(features)
    if arr.ndim != 2:
        raise ValueError(f"expected one utterance's features (frames, mel bins), got shape {arr.shape}")
    return arr


def plot_spectrogram(features: Any, *, ax: Any = None, title: str = "", length: int | None = None) -> Any:
    """Log-mel spectrogram of one utterance.

    Args:
        features: ``(T, F)`` frames x mel bins (tensor or array).
        length: true length in frames; frames beyond it are not drawn.
    """
    feats = _as_2d(features)
    if length is not None:
        feats = feats[: int(length)]
    fig, ax = new_axes(ax)
    t_max = feats.shape[0] * _HOP_S
    ax.imshow(feats.T, origin="lower", aspect="auto", cmap="magma", extent=(0.0, t_max, 0, feats.shape[1]),
              interpolation="nearest")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("mel bin")
    if title:
        ax.set_title(title)
    return fig


def plot_masks(features: Any, time_mask: Any, freq_mask: Any, *, ax: Any = None, title: str = "",
               length: int | None = None) -> Any:
    """The spectrogram with its time and frequency masks outlined in colour.

    Args:
        features: ``(T, F)`` the augmented (or original) features of one utterance.
        time_mask: ``(T,)`` bool, masked frames.
        freq_mask: ``(F,)`` bool, masked mel bins (over the true frames).
        length: true length in frames (default: all frames).
    """
    feats = _as_2d(features)
    n = int(length) if length is not None else feats.shape[0]
    tmask = np.asarray(torch.as_tensor(time_mask).cpu(), dtype=bool)[:n]
    fmask = np.asarray(torch.as_tensor(freq_mask).cpu(), dtype=bool)
    fig = plot_spectrogram(feats, ax=ax, title=title, length=n)
    ax = ax or fig.axes[0]
    for start, stop in _runs(tmask):
        ax.axvspan(start * _HOP_S, stop * _HOP_S, color="#00b4d8", alpha=0.35, lw=0)
    for start, stop in _runs(fmask):
        ax.axhspan(start, stop, xmax=1.0, color="#90be6d", alpha=0.35, lw=0)
    hidden = 1.0 - (1 - tmask.mean() if n else 1.0) * (1 - fmask.mean())
    ax.text(0.995, 0.98, f"{100 * hidden:.0f}% hidden", transform=ax.transAxes, ha="right", va="top",
            color="white", fontsize=9)
    return fig


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` of the True runs in a 1-D bool array."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[0::2].tolist(), edges[1::2].tolist(), strict=True))


def plot_augment_grid(features: Any, policy: SpecAugmentPolicy, *, n: int = 6, seed: int = 0,
                      length: int | None = None, ncols: int = 2) -> Any:
    """``n`` augmented draws of one utterance under ``policy``, masks outlined.

    Args:
        features: ``(T, F)`` one utterance's (normalized) log-mel features.
        policy: the SpecAugment policy to draw from.
        seed: draw ``i`` uses per-utterance seed ``seed + i`` (reproducible).
    """
    feats = torch.as_tensor(_as_2d(features), dtype=torch.float32)
    n_frames = int(length) if length is not None else feats.shape[0]
    batch = feats[None, :n_frames].expand(n, -1, -1).contiguous()
    lengths = torch.full((n,), n_frames, dtype=torch.long)
    out, masks = spec_augment(batch, lengths, policy, seeds=torch.arange(seed, seed + n), return_masks=True)
    nrows = (n + ncols - 1) // ncols
    fig = new_figure((4.2 * ncols, 2.0 * nrows))
    for i in range(n):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        plot_masks(out[i], masks.time[i], masks.freq[i], ax=ax, title=f"draw {i + 1} (seed {seed + i})")
    name = policy.name or "custom policy"
    fig.suptitle(f"SpecAugment '{name}' on a {n_frames * _HOP_S:.1f} s utterance")
    return fig
