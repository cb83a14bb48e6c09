"""Adaptive-length SpecAugment on padded batches, in one vectorized pass.

Pure functions do the work; :class:`SpecAugment` only stores a policy. Every
function takes ``features (B, T, F)`` (frames x mel bins, 10 ms frames for the
built-in model) and ``lengths (B,)``: the TRUE number of frames of each
utterance. Nothing looks at padding: masks, widths, counts, fill statistics and
time warp all follow each utterance's own length ``tau_i``. Time masks and warp
never reach frames at or beyond ``tau_i``; with ``mask_value="zero"`` a frequency
band is zeroed across the padded frames as well (padding is conventionally 0 and
nothing may read it), with "mean"/"noise" padding is returned untouched.

The maths follows D. S. Park et al., "SpecAugment: A Simple Data Augmentation
Method for Automatic Speech Recognition" (Interspeech 2019, arXiv:1904.08779), for
the classic policies, and D. S. Park et al., "SpecAugment on Large Scale Datasets"
(ICASSP 2020, arXiv:1912.05533), for adaptive multiplicity and size:

- time masks: count ``m_i = min(M_max, floor(p_M * tau_i))`` when adaptive
  multiplicity is on (``p_M > 0``), else ``M_max``; maximum width
  ``W_i = min(T, floor(p * tau_i))`` for classic policies, or
  ``floor(p_S * tau_i)`` (also capped by ``T`` when given) for adaptive size;
  each width ``w ~ U{0..W_i}`` and start ``t0 ~ U{0..tau_i - w}``, so a mask
  never leaves ``[0, tau_i)``;
- frequency masks: ``m_F`` masks of width ``f ~ U{0..F}`` at ``f0 ~ U{0..n_mels - f}``;
- time warp: a piecewise-linear warp that moves a centre ``c ~ U[W_i, tau_i - W_i)``
  by ``d ~ U[-W_i, W_i]`` with ``W_i = min(W, ceil(tau_i / 2) - 1)``, computed by
  linear interpolation inside the true frames only.

Order (as in Lingvo): time warp, then time masks, then frequency masks.

Randomness: every random draw is a counter-based hash of a per-utterance 63-bit
seed, so **an utterance gets the same augmentation whether it is alone or in any
batch** (batch == items, exactly). Pass ``seeds (B,)`` to choose them, or a
``torch.Generator`` from which the seeds are drawn; with neither, torch's global
generator is used (still reproducible under ``torch.manual_seed``).

Example:
    >>> import torch
    >>> x = torch.randn(2, 300, 80)
    >>> y, masks = spec_augment(x, torch.tensor([300, 120]), POLICIES["librispeech_adaptive"],
    ...                         generator=torch.Generator().manual_seed(0), return_masks=True)
    >>> bool(masks.time[1, 120:].any())   # nothing masked in the padding
    False
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from workbench.constants import SAMPLE_RATE
from workbench.notices import notify

__all__ = [
    "POLICIES",
    "AugmentMasks",
    "SpecAugment",
    "SpecAugmentPolicy",
    "add_noise",
    "draw_seeds",
    "floor_ratio",
    "frequency_masks",
    "spec_augment",
    "speed_perturb",
    "time_masks",
    "time_warp",
]

_MASK_VALUES = ("zero", "mean", "noise")

# Independent random streams, one per kind of draw (the counter's high bits).
_STREAM_WARP, _STREAM_TIME, _STREAM_FREQ, _STREAM_NOISE, _STREAM_NOISE2, _STREAM_APPLY = range(6)
_MAX_DRAWS = 1 << 20  # draws per stream and utterance


@dataclass(frozen=True)
class SpecAugmentPolicy:
    """Hyperparameters of one SpecAugment policy. Validated on creation.

    Widths and counts are in frames (10 ms) and mel bins; ratios are fractions
    of the utterance's true length.
    """

    time_warp: int = 0  # W: maximum warp distance, frames; 0 = off
    freq_masks: int = 2  # m_F: number of frequency masks
    freq_width: int = 27  # F: maximum frequency-mask width, mel bins
    time_masks: int = 0  # m_T, or M_max when adaptive multiplicity is on
    time_width: int = 0  # T: maximum time-mask width, frames; 0 = no fixed cap (adaptive only)
    time_ratio: float = 1.0  # p: one mask covers at most this fraction of tau (classic policies)
    adaptive_multiplicity: float = 0.0  # p_M: count = min(time_masks, floor(p_M * tau)); 0 = fixed count
    adaptive_size: float = 0.0  # p_S: max width = floor(p_S * tau); 0 = fixed width T
    mask_value: str = "zero"  # "zero" | "mean" (per-utterance, per-bin mean over true frames) | "noise"
    p: float = 1.0  # probability that an utterance is augmented at all
    name: str = ""  # informational

    def __post_init__(self) -> None:
        ints = {"time_warp": self.time_warp, "freq_masks": self.freq_masks, "freq_width": self.freq_width,
                "time_masks": self.time_masks, "time_width": self.time_width}
        for key, val in ints.items():
            if not isinstance(val, (int, np.integer)) or isinstance(val, bool) or val < 0:
                raise ValueError(f"SpecAugmentPolicy.{key} must be a whole number >= 0, got {val!r}")
        for key in ("time_ratio", "adaptive_multiplicity", "adaptive_size", "p"):
            val = getattr(self, key)
            if not isinstance(val, (int, float)) or isinstance(val, bool) or not 0.0 <= float(val) <= 1.0:
                raise ValueError(f"SpecAugmentPolicy.{key} must be a number in [0, 1], got {val!r}")
        if self.mask_value not in _MASK_VALUES:
            raise ValueError(f"SpecAugmentPolicy.mask_value must be one of {_MASK_VALUES}, got {self.mask_value!r}")
        if self.time_masks > 0 and self.time_width == 0 and self.adaptive_size == 0:
            raise ValueError(
                "SpecAugmentPolicy has time masks but no width: set time_width (T, frames) "
                "or adaptive_size (p_S, a fraction of the utterance length)"
            )
        if self.adaptive_multiplicity > 0 and self.time_masks == 0:
            notify(
                "SpecAugmentPolicy: adaptive_multiplicity is set but time_masks (M_max) is 0, "
                "so no time masks will be drawn", stacklevel=3,
            )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict; ``SpecAugmentPolicy.from_dict(p.to_dict()) == p``."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SpecAugmentPolicy:
        """Build from :meth:`to_dict` output; unknown keys are an error (no silent fix-ups)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown SpecAugment policy fields {unknown}; known fields: {sorted(known)}")
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> SpecAugmentPolicy:
        return cls.from_dict(json.loads(text))

    def replace(self, **changes: Any) -> SpecAugmentPolicy:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def expected_time_masks(self, length: int) -> tuple[int, int]:
        """``(count, max_width)`` of time masks for an utterance of ``length`` true frames."""
        count, width = _time_mask_limits(self, np.array([int(length)], dtype=np.int64))
        return int(count[0]), int(width[0])


# Classic policies (Park et al. 2019) and adaptive ones (Park et al. 2020). The
# adaptive policies leave time warp off: it is the costliest step and the one
# that contributed least in the 2019 ablations; turn it on with .replace(time_warp=W).
POLICIES: dict[str, SpecAugmentPolicy] = {
    "none": SpecAugmentPolicy(freq_masks=0, name="none"),
    "LB": SpecAugmentPolicy(time_warp=80, freq_width=27, freq_masks=1, time_width=100, time_ratio=1.0,
                            time_masks=1, name="LB"),
    "LD": SpecAugmentPolicy(time_warp=80, freq_width=27, freq_masks=2, time_width=100, time_ratio=1.0,
                            time_masks=2, name="LD"),
    "SM": SpecAugmentPolicy(time_warp=40, freq_width=15, freq_masks=2, time_width=70, time_ratio=0.2,
                            time_masks=2, name="SM"),
    "SS": SpecAugmentPolicy(time_warp=40, freq_width=27, freq_masks=2, time_width=70, time_ratio=0.2,
                            time_masks=2, name="SS"),
    "librispeech_adaptive": SpecAugmentPolicy(freq_width=27, freq_masks=2, time_masks=20,
                                              adaptive_multiplicity=0.04, adaptive_size=0.04,
                                              name="librispeech_adaptive"),
    "conformer": SpecAugmentPolicy(freq_width=27, freq_masks=2, time_masks=10, adaptive_size=0.05,
                                   name="conformer"),
}


class AugmentMasks(NamedTuple):
    """What was hidden. ``time (B, T)`` and ``freq (B, F)`` are boolean; the
    frequency mask applies to true frames only. ``warp (B, 2)`` holds each
    utterance's warp centre and displacement in frames (0, 0 when not warped)."""

    time: Tensor
    freq: Tensor
    warp: Tensor


# --------------------------------------------------------------------------- randomness
#
# Drawing the masks is O(B * M) numbers; applying them is O(B * T * F). On CPU the
# drawing used to cost more than the applying, because ~100 small torch ops cost
# 2-5 us each. The draws and the mask geometry are therefore computed with numpy
# on the host (~1 us per op; the same is done on GPU, like NeMo's host-side mask
# parameters), and only the application touches the device: a boolean time mask
# built with one ``index_put_``, and two broadcast multiplications.


_M32 = 0xFFFFFFFF


def _hash32(x: np.ndarray) -> np.ndarray:
    """A 32-bit integer mix (xorshift-multiply, in the style of Wellons' lowbias32) on
    int64 arrays holding uint32 values. Both multipliers are odd and below 2**31, so
    every product stays below 2**63: exact in int64, no overflow."""
    x = x & _M32
    x = ((x ^ (x >> 16)) * 0x7FEB352D) & _M32
    x = ((x ^ (x >> 15)) * 0x2C1B3C6D) & _M32
    return x ^ (x >> 16)


_COUNTER_CACHE: dict[tuple, np.ndarray] = {}


def _hashed_counters(sizes: tuple[tuple[int, int], ...]) -> np.ndarray:
    """``hash32(stream * 2**20 + index)`` for every draw of every stream (cached: it never changes)."""
    out = _COUNTER_CACHE.get(sizes)
    if out is None:
        counter = np.concatenate([np.arange(n, dtype=np.int64) + stream * _MAX_DRAWS for stream, n in sizes])
        out = _hash32(counter)
        if len(_COUNTER_CACHE) > 256:
            _COUNTER_CACHE.clear()
        _COUNTER_CACHE[sizes] = out
    return out


def _uniform_streams(seeds: np.ndarray, sizes: list[tuple[int, int]]) -> list[np.ndarray]:
    """Counter-based uniform draws in [0, 1), one ``(B, n)`` float64 array per
    ``(stream, n)`` in ``sizes``, for int64 ``seeds (B,)``. Each draw is a function
    of (seed, stream, index) only, so batch composition never changes it."""
    seeds = np.asarray(seeds, dtype=np.int64)
    key = _hash32(_hash32(seeds & _M32) ^ ((seeds >> 32) & _M32))  # (B,)
    bits = _hash32(key[:, None] ^ _hashed_counters(tuple(sizes))[None, :])
    u = (bits >> 8) * (1.0 / (1 << 24))
    return np.split(u, np.cumsum([n for _, n in sizes])[:-1], axis=1)


def _uniform(seeds: np.ndarray, stream: int, n: int) -> np.ndarray:
    """``(B, n)`` draws of one stream (see :func:`_uniform_streams`)."""
    return _uniform_streams(seeds, [(stream, n)])[0]


def draw_seeds(batch: int, generator: torch.Generator | None = None) -> Tensor:
    """``(batch,)`` int64 per-utterance seeds drawn from ``generator`` (CPU)."""
    return torch.randint(0, 2**62, (batch,), generator=generator, dtype=torch.int64)


def _host_int64(x: Tensor | np.ndarray | list[int]) -> np.ndarray:
    """``x`` as a host int64 array (a tensor is copied off its device)."""
    if isinstance(x, Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x).astype(np.int64, copy=False)


def _resolve_seeds(batch: int, seeds: Tensor | np.ndarray | None, generator: torch.Generator | None) -> np.ndarray:
    """Per-utterance seeds as a host ``(batch,)`` int64 array."""
    seeds = _host_int64(draw_seeds(batch, generator) if seeds is None else seeds)
    if seeds.shape != (batch,):
        raise ValueError(f"seeds must have shape ({batch},), got {tuple(seeds.shape)}")
    return seeds


def _host_lengths(lengths: Tensor | np.ndarray | list[int], batch: int, frames: int) -> np.ndarray:
    """True lengths as a host ``(batch,)`` int64 array, checked against ``frames``."""
    lengths = _host_int64(lengths)
    if lengths.shape != (batch,):
        raise ValueError(f"lengths must have shape ({batch},), got {tuple(lengths.shape)}")
    if lengths.size and (lengths.min() < 0 or lengths.max() > frames):
        raise ValueError(f"lengths must lie in [0, {frames}] frames, got {lengths.tolist()}")
    return lengths


# --------------------------------------------------------------------------- time masks


def _time_mask_limits(policy: SpecAugmentPolicy, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-utterance ``(count (B,), max_width (B,))`` from the policy and true lengths."""
    tau = lengths.astype(np.int64)
    if policy.adaptive_multiplicity > 0:
        count = np.minimum(floor_ratio(policy.adaptive_multiplicity, tau), policy.time_masks)
    else:
        count = np.full_like(tau, policy.time_masks)
    if policy.adaptive_size > 0:
        width = floor_ratio(policy.adaptive_size, tau)
        if policy.time_width > 0:
            width = np.minimum(width, policy.time_width)
    else:
        width = np.minimum(floor_ratio(policy.time_ratio, tau), policy.time_width)
    count = np.where(lengths > 0, count, 0)
    return count.astype(np.int64), width.astype(np.int64)


def floor_ratio(ratio: float, tau: np.ndarray) -> np.ndarray:
    """``floor(ratio * tau)`` as the decimal ``ratio`` means it, for whole ``tau (B,)`` (frames).

    In floating point ``0.29 * 100`` is ``28.999999999999996``, so a bare ``floor`` gives 28
    where the policy means 29. A product within 4 ulps of a whole number is that number.
    This is exact for every ratio with at most 9 decimal places and ``tau`` below 10**6
    frames (2.8 hours): the true product is then whole or at least 1e-9 away from a
    whole number, while the rounding error and the tolerance stay below 5e-10
    (``tests/test_augment.py`` checks sweeps against exact fractions).

    Returns:
        ``(B,)`` int64.
    """
    x = float(ratio) * np.asarray(tau, dtype=np.float64)
    nearest = np.rint(x)
    close = np.abs(x - nearest) <= 4 * np.spacing(np.maximum(np.abs(nearest), 1.0))
    return np.where(close, nearest, np.floor(x)).astype(np.int64)


def time_masks(lengths: Tensor, max_frames: int, policy: SpecAugmentPolicy, seeds: Tensor) -> Tensor:
    """Boolean time masks ``(B, max_frames)`` for per-utterance ``seeds (B,)``; see :func:`_masked_frames`."""
    batch = len(lengths)
    frames = _masked_frames(_host_lengths(lengths, batch, max_frames), max_frames, policy,
                            _uniform(_resolve_seeds(batch, seeds, None), _STREAM_TIME, 2 * policy.time_masks))
    device = lengths.device if isinstance(lengths, Tensor) else None
    return _frame_mask(frames, batch, max_frames, device)


def _masked_frames(lengths: np.ndarray, max_frames: int, policy: SpecAugmentPolicy, u: np.ndarray) -> np.ndarray:
    """Flat indices ``b * max_frames + t`` (int64) of every time-masked frame.

    All ``M_max`` masks of all utterances are drawn at once from ``u (B, 2 M_max)``
    (widths, then starts); masks beyond an utterance's adaptive count get width 0.
    A mask of width ``w`` starts at ``t0 ~ U{0..tau - w}``, so it lies in
    ``[0, tau)``. The frames of all masks are enumerated with one ``repeat`` and
    one ``arange``; overlapping masks repeat a frame, which is harmless.
    """
    batch, m_max = lengths.shape[0], policy.time_masks
    if m_max == 0 or batch == 0:
        return np.zeros(0, dtype=np.int64)
    count, max_width = _time_mask_limits(policy, lengths)
    width = np.minimum(np.floor(u[:, :m_max] * (max_width[:, None] + 1)).astype(np.int64), max_width[:, None])
    room = np.maximum(lengths[:, None] - width, 0)  # start in [0, tau - w]
    start = np.minimum(np.floor(u[:, m_max:] * (room + 1)).astype(np.int64), room)
    width = np.where(np.arange(m_max)[None, :] < count[:, None], width, 0).ravel()
    first = (start + np.arange(batch)[:, None] * max_frames).ravel()
    ends = np.cumsum(width)
    return np.repeat(first - (ends - width), width) + np.arange(int(ends[-1]))


def _frame_mask(frames: np.ndarray, batch: int, max_frames: int, device: torch.device | None) -> Tensor:
    """``(B, max_frames)`` boolean mask from flat frame indices."""
    mask = torch.zeros(batch * max_frames, dtype=torch.bool, device=device)
    mask[torch.from_numpy(frames).to(mask.device)] = True
    return mask.view(batch, max_frames)


# --------------------------------------------------------------------------- frequency masks


def frequency_masks(batch: int, n_bins: int, policy: SpecAugmentPolicy, seeds: Tensor) -> Tensor:
    """Boolean frequency masks ``(B, n_bins)``: ``m_F`` bands of width ``U{0..F}``."""
    u = _uniform(_resolve_seeds(batch, seeds, None), _STREAM_FREQ, 2 * policy.freq_masks)
    device = seeds.device if isinstance(seeds, Tensor) else None
    return torch.from_numpy(_frequency_masks(batch, n_bins, policy, u)).to(device)


def _frequency_masks(batch: int, n_bins: int, policy: SpecAugmentPolicy, u: np.ndarray) -> np.ndarray:
    """``(B, n_bins)`` boolean bands from ``u (B, 2 m_F)`` (widths, then starts)."""
    m_f = policy.freq_masks
    if m_f == 0 or batch == 0 or n_bins == 0:
        return np.zeros((batch, n_bins), dtype=bool)
    f_max = min(policy.freq_width, n_bins)
    width = np.minimum(np.floor(u[:, :m_f] * (f_max + 1)), f_max).astype(np.int64)
    room = n_bins - width
    start = np.minimum(np.floor(u[:, m_f:] * (room + 1)).astype(np.int64), room)
    f = np.arange(n_bins)[None, None, :]
    return ((f >= start[:, :, None]) & (f < (start + width)[:, :, None])).any(1)


# --------------------------------------------------------------------------- time warp


def time_warp(features: Tensor, lengths: Tensor, max_warp: int, seeds: Tensor) -> tuple[Tensor, Tensor]:
    """Warp ``features (B, T, F)`` with per-utterance ``seeds (B,)``; see :func:`_time_warp`."""
    batch, frames, _ = features.shape
    return _time_warp(features, _host_lengths(lengths, batch, frames), max_warp,
                      _uniform(_resolve_seeds(batch, seeds, None), _STREAM_WARP, 2))


def _time_warp(features: Tensor, lengths: np.ndarray, max_warp: int, u: np.ndarray) -> tuple[Tensor, Tensor]:
    """Piecewise-linear time warp inside each true length, vectorized over the batch.

    Frame ``c`` moves to ``c + d``; ``[0, c)`` is stretched onto ``[0, c + d)`` and
    ``[c, tau)`` onto ``[c + d, tau)`` by linear interpolation between frames.
    Frames at or beyond ``tau`` are copied unchanged. The source position of every
    output frame is computed on the host (``(B, T)`` numbers); the device does two
    row gathers and one interpolation.

    Returns:
        ``(warped (B, T, F), warp (B, 2))`` with each utterance's ``(c, d)`` in frames.
    """
    batch, frames, n_bins = features.shape
    w = np.clip((lengths + 1) // 2 - 1, 0, max_warp)  # (B,)
    if max_warp <= 0 or batch == 0 or frames == 0 or not w.any():
        return features, torch.zeros(batch, 2, dtype=torch.int64, device=features.device)
    span = np.maximum(lengths - 2 * w, 0)  # centre in [w, tau - w)
    centre = w + np.minimum(np.floor(u[:, 0] * span).astype(np.int64), np.maximum(span - 1, 0))
    disp = np.where(w > 0, np.floor(u[:, 1] * (2 * w + 1)).astype(np.int64) - w, 0)
    centre = np.where(w > 0, centre, 0)
    new_c = centre + disp  # where the centre lands, in (0, tau)
    t = np.arange(frames, dtype=np.float64)[None, :]
    c, nc, tt = centre[:, None].astype(np.float64), new_c[:, None].astype(np.float64), lengths[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        left = t * c / np.maximum(nc, 1.0)
        right = c + (t - nc) * (tt - c) / np.maximum(tt - nc, 1.0)
    src = np.where(t < nc, left, right)
    inside = (t < tt) & (w[:, None] > 0)
    src = np.where(inside, np.minimum(src, np.maximum(tt - 1, 0)), t)  # identity outside the true frames
    lo = np.floor(src).astype(np.int64)
    hi = np.where(inside, np.minimum(lo + 1, np.maximum(tt - 1, lo)), lo)
    device = features.device
    frac = torch.from_numpy(src - lo).to(device=device, dtype=features.dtype)[:, :, None]
    base = np.arange(batch)[:, None] * frames
    # Gather whole frames (rows of F values) from a (B*T, F) view with an expanded row
    # index (faster than index_select on CPU), then a += (b - a) * frac in place on
    # the fresh gathers (torch.lerp with a broadcast weight was 20x slower).
    flat = features.reshape(batch * frames, n_bins)
    a, b = (torch.gather(flat, 0, torch.from_numpy((base + idx).reshape(-1, 1)).to(device).expand(-1, n_bins))
            .view_as(features) for idx in (lo, hi))
    warped = a.addcmul_(b.sub_(a), frac)
    return warped, torch.from_numpy(np.stack([centre, disp], axis=1)).to(device)


# --------------------------------------------------------------------------- composition


def _valid_frames(lengths: np.ndarray, frames: int, device: torch.device) -> Tensor:
    """``(B, frames)`` boolean: True on each utterance's true frames."""
    return torch.arange(frames, device=device)[None, :] < torch.from_numpy(lengths).to(device)[:, None]


def _fill_values(features: Tensor, lengths: np.ndarray, mode: str, seeds: np.ndarray) -> Tensor | float:
    """What masked cells become: 0, the per-bin mean over true frames, or Gaussian noise
    with the utterance's own per-bin mean and std (statistics ignore padding)."""
    if mode == "zero":
        return 0.0
    valid = _valid_frames(lengths, features.shape[1], features.device)[:, :, None].to(features.dtype)
    n = valid.sum(1).clamp(min=1.0)  # (B, 1)
    mean = (features * valid).sum(1, keepdim=True) / n[:, :, None]  # (B, 1, F)
    if mode == "mean":
        return mean.expand_as(features)
    var = (((features - mean) ** 2) * valid).sum(1, keepdim=True) / n[:, :, None]
    b, t, f = features.shape
    # Box-Muller on counter-based uniforms keeps noise batch-invariant too.
    # Draw index t * F + f: the same cell gets the same draw whatever the padding.
    u1, u2 = (torch.from_numpy(_uniform(seeds, stream, t * f)).to(features.device).view(b, t, f)
              for stream in (_STREAM_NOISE, _STREAM_NOISE2))
    z = torch.sqrt(-2.0 * torch.log1p(-u1)) * torch.cos(2 * math.pi * u2)
    return mean + var.sqrt() * z.to(features.dtype)


def spec_augment(
    features: Tensor,
    lengths: Tensor,
    policy: SpecAugmentPolicy,
    *,
    generator: torch.Generator | None = None,
    seeds: Tensor | None = None,
    return_masks: bool = False,
    inplace: bool = False,
) -> Tensor | tuple[Tensor, AugmentMasks]:
    """Apply ``policy`` to a padded batch in one pass.

    Args:
        features: ``(B, T, F)`` log-mel frames (any float dtype, any device).
        lengths: ``(B,)`` true lengths in frames; rows of length 0 are left alone.
        policy: a :class:`SpecAugmentPolicy` (see :data:`POLICIES`).
        generator: CPU ``torch.Generator`` to draw per-utterance seeds from.
        seeds: ``(B,)`` int64 per-utterance seeds (overrides ``generator``); the
            same seed gives the same augmentation in any batch.
        return_masks: also return the :class:`AugmentMasks` that were applied.
        inplace: write into ``features`` instead of a new tensor. On CPU a fresh
            batch-sized allocation costs more than the masking itself, so the
            training module uses this on freshly computed features.

    Returns:
        The augmented ``(B, T, F)`` tensor (``features`` itself when ``inplace``),
        and the masks when ``return_masks``.
    """
    if features.dim() != 3:
        raise ValueError(f"features must be (batch, frames, mel bins), got shape {tuple(features.shape)}")
    batch, frames, n_bins = features.shape
    device = features.device
    lengths = _host_lengths(lengths, batch, frames)
    seeds = _resolve_seeds(batch, seeds, generator)
    u_apply, u_warp, u_time, u_freq = _uniform_streams(seeds, [
        (_STREAM_APPLY, 1), (_STREAM_WARP, 2), (_STREAM_TIME, 2 * policy.time_masks),
        (_STREAM_FREQ, 2 * policy.freq_masks)])
    lengths_eff = np.where(u_apply[:, 0] < policy.p, lengths, 0) if policy.p < 1.0 else lengths
    out, warp = _time_warp(features, lengths_eff, policy.time_warp, u_warp)
    warped = out is not features
    tmask = _frame_mask(_masked_frames(lengths_eff, frames, policy, u_time), batch, frames, device)  # (B, T)
    fmask_host = _frequency_masks(batch, n_bins, policy, u_freq) & (lengths_eff > 0)[:, None]
    fmask = torch.from_numpy(fmask_host).to(device)  # (B, F)
    if policy.mask_value == "zero":
        out = _zero_fill(out, tmask, fmask if fmask_host.any() else None, inplace=inplace or warped)
    else:
        fill = _fill_values(out, lengths, policy.mask_value, seeds)
        valid = _valid_frames(lengths_eff, frames, device)
        cells = tmask[:, :, None] | (fmask[:, None, :] & valid[:, :, None])  # (B, T, F)
        if inplace or warped:
            out = out.copy_(torch.where(cells, fill, out))
        else:
            out = torch.where(cells, fill, out)
    if inplace and warped:
        out = features.copy_(out)
    if return_masks:
        return out, AugmentMasks(time=tmask, freq=fmask, warp=warp)
    return out


def _zero_fill(out: Tensor, tmask: Tensor, fmask: Tensor | None, *, inplace: bool) -> Tensor:
    """Zero the masked cells with two broadcast multiplications, ``(B, T, 1)`` then
    ``(B, 1, F)``: the fastest form measured on CPU (no ``(B, T, F)`` mask is built;
    ``index_fill_`` of the masked rows and ``masked_fill_`` were both slower).

    The frequency product runs over the padded frames too, so padding cells inside a
    masked band become 0 (padding is conventionally 0 already, and nothing may read
    it). Time masks never reach padding. Non-finite inputs stay non-finite
    (``nan * 0 = nan``); features are finite by construction.
    """
    keep_t = (~tmask).to(out.dtype)[:, :, None]
    out = out.mul_(keep_t) if inplace else out * keep_t
    if fmask is not None:
        out.mul_((~fmask).to(out.dtype)[:, None, :])
    return out


class SpecAugment(nn.Module):
    """Thin module over :func:`spec_augment`: active in ``train()`` mode only.

    >>> aug = SpecAugment("conformer")
    >>> _ = aug.train()
    >>> y = aug(torch.zeros(1, 50, 80), torch.tensor([50]))
    """

    def __init__(self, policy: SpecAugmentPolicy | str = "librispeech_adaptive") -> None:
        super().__init__()
        if isinstance(policy, str):
            if policy not in POLICIES:
                raise ValueError(f"unknown SpecAugment policy {policy!r}; choose one of {sorted(POLICIES)}")
            policy = POLICIES[policy]
        self.policy = policy

    def forward(self, features: Tensor, lengths: Tensor, *, generator: torch.Generator | None = None,
                seeds: Tensor | None = None) -> Tensor:
        if not self.training:
            return features
        # Features are recomputed every step, so masking them in place is safe and
        # saves a batch-sized allocation.
        return spec_augment(features, lengths, self.policy, generator=generator, seeds=seeds, inplace=True)

    def extra_repr(self) -> str:
        return self.policy.to_json()


# --------------------------------------------------------------------------- waveform perturbations


def speed_perturb(wav: np.ndarray, factor: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Change speed and pitch together by ``factor`` (1.1 = 10 % faster), as in Kaldi's
    speed perturbation: resample to ``sample_rate / factor`` and play at ``sample_rate``.

    Args:
        wav: ``(S,)`` float32 samples at ``sample_rate`` Hz.
    Returns:
        ``(round(S / factor),)`` float32 samples at ``sample_rate`` Hz.
    """
    import librosa

    if not 0.5 <= factor <= 2.0:
        raise ValueError(f"speed factor must be in [0.5, 2.0], got {factor}")
    if factor == 1.0:
        return np.asarray(wav, dtype=np.float32)
    out = librosa.resample(np.asarray(wav, dtype=np.float32), orig_sr=sample_rate,
                           target_sr=int(round(sample_rate / factor)), res_type="soxr_hq")
    return out.astype(np.float32)


def add_noise(wav: np.ndarray, snr_db: float, *, rng: np.random.Generator,
              noise: np.ndarray | None = None) -> np.ndarray:
    """Add noise at a signal-to-noise ratio of ``snr_db`` (dB, over the whole clip).

    Args:
        wav: ``(S,)`` float32 samples.
        rng: numpy generator (randomness is always injected).
        noise: optional ``(N,)`` noise recording, looped/cropped to ``S``; white noise if None.
    """
    wav = np.asarray(wav, dtype=np.float32)
    if wav.size == 0:
        return wav
    if noise is None:
        n = rng.standard_normal(wav.size).astype(np.float32)
    else:
        noise = np.asarray(noise, dtype=np.float32)
        if noise.size == 0:
            raise ValueError("noise recording is empty")
        start = int(rng.integers(0, noise.size))
        n = np.resize(np.roll(noise, -start), wav.size)
    p_sig = float(np.mean(wav.astype(np.float64) ** 2))
    p_noise = float(np.mean(n.astype(np.float64) ** 2)) or 1.0
    scale = math.sqrt(p_sig / (p_noise * 10 ** (snr_db / 10))) if p_sig > 0 else 0.0
    return (wav + scale * n).astype(np.float32)
