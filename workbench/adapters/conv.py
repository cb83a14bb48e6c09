"""ConvAdapter (SURE benchmark, Li et al. 2023), padding-aware and zero-initialized.

At each adapter site ``x (B, T, D)``::

    h = LN_s(x)                                    (padding frames zeroed)
    h = ReLU(GConv_s(h, D -> D/2, kernel 3))       grouped 1-D conv
    h = DWConv_s(h, kernel 5)                      depthwise 1-D conv
    c = GConv_s(h, D/2 -> D, kernel 3)             zero-initialized
    g = sigmoid(W2_s ReLU(W1_s mean_t(c)))         squeeze-excitation over TRUE frames
    y = x + g * c

Two defects of the open-source version are fixed: the output conv is
zero-initialized (a fresh adapter is the identity), and the squeeze-excitation
pool averages only the true frames. Padding is re-zeroed before every
convolution, so a frame's output never depends on padding: a batch gives the
same result as its items one by one.

Per-example weights for a mixed-speaker batch use the grouped-convolution trick:
the batch is folded into channels (``(1, B*C, T)``) and each example's kernels
become their own groups, so B speakers still cost one convolution call.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from workbench.adapters.base import AdapterConfig, SiteAdapter, gather_rows
from workbench.errors import AdapterError

__all__ = ["ConvAdapter", "ConvAdapterConfig"]


@dataclasses.dataclass
class ConvAdapterConfig(AdapterConfig):
    family = "conv"
    learning_rate = 3e-3  # default peak LR: recipes/choose_defaults.py, docs/results.md
    reduction: int = 2  # hidden channels = D / reduction
    groups: int = 4  # groups of the two pointwise-like convs
    kernel: int = 3  # kernel of the grouped convs (frames)
    depthwise_kernel: int = 5  # kernel of the depthwise conv (frames)
    se_reduction: int = 16  # squeeze-excitation hidden = D / se_reduction

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("kernel", "depthwise_kernel"):
            k = getattr(self, name)
            if k < 1 or k % 2 == 0:
                raise AdapterError(f"{name} must be an odd number >= 1 (same-length convolution), got {k}")
        if self.reduction < 1 or self.groups < 1 or self.se_reduction < 1:
            raise AdapterError("reduction, groups and se_reduction must be >= 1")

    def check_dim(self, dim: int) -> None:
        hidden = dim // self.reduction
        if dim % self.reduction or hidden % self.groups or dim % self.groups:
            raise AdapterError(
                f"ConvAdapter: width {dim} with reduction {self.reduction} and groups {self.groups} does not "
                "divide evenly; choose groups that divide both the width and width/reduction")


def _init_conv(n: int, out_ch: int, in_per_group: int, k: int) -> Tensor:
    w = torch.empty(n, out_ch, in_per_group, k)
    for i in range(n):
        nn.init.kaiming_uniform_(w[i], a=math.sqrt(5))
    return w


class ConvAdapter(SiteAdapter):
    """One site's banked ConvAdapter; see the module docstring."""

    per_speaker_names = ("ln_weight", "ln_bias", "conv1", "conv1_bias", "dw", "dw_bias", "conv2", "conv2_bias",
                         "se1", "se1_bias", "se2", "se2_bias")

    def __init__(self, dim: int, config: ConvAdapterConfig, *, site: int = 0, num_sites: int = 1) -> None:
        super().__init__()
        config.check_dim(dim)
        n, c = config.num_speakers, config
        hidden, g = dim // c.reduction, c.groups
        se = max(1, dim // c.se_reduction)
        self.dim, self.hidden, self.config = dim, hidden, config
        self.ln_weight = nn.Parameter(torch.ones(n, dim))
        self.ln_bias = nn.Parameter(torch.zeros(n, dim))
        self.conv1 = nn.Parameter(_init_conv(n, hidden, dim // g, c.kernel))
        self.conv1_bias = nn.Parameter(torch.zeros(n, hidden))
        self.dw = nn.Parameter(_init_conv(n, hidden, 1, c.depthwise_kernel))
        self.dw_bias = nn.Parameter(torch.zeros(n, hidden))
        self.conv2 = nn.Parameter(torch.zeros(n, dim, hidden // g, c.kernel))  # zero: identity at start
        self.conv2_bias = nn.Parameter(torch.zeros(n, dim))
        self.se1 = nn.Parameter(_init_conv(n, se, dim, 1)[..., 0])  # (N, se, D)
        self.se1_bias = nn.Parameter(torch.zeros(n, se))
        self.se2 = nn.Parameter(_init_conv(n, dim, se, 1)[..., 0])  # (N, D, se)
        self.se2_bias = nn.Parameter(torch.zeros(n, dim))

    def _conv(self, h: Tensor, weight: Tensor, bias: Tensor, groups: int, idx: Tensor | None) -> Tensor:
        """``h (B, C, T)`` through each example's conv ``weight (N, O, C/groups, k)``."""
        b, ch, t = h.shape
        pad = weight.shape[-1] // 2
        if weight.shape[0] == 1:
            return F.conv1d(h, weight[0], bias[0], padding=pad, groups=groups)
        w = gather_rows(weight, idx, b)  # (B, O, C/g, k)
        out = F.conv1d(h.reshape(1, b * ch, t), w.reshape(-1, *w.shape[2:]),
                       gather_rows(bias, idx, b).reshape(-1), padding=pad, groups=b * groups)
        return out.view(b, -1, t)

    def forward(self, x: Tensor, mask: Tensor | None, speaker_index: Tensor | None, state: dict) -> Tensor:
        b, t, d = x.shape
        m = torch.ones(b, t, dtype=torch.bool, device=x.device) if mask is None else mask
        mf = m[:, None, :].to(x.dtype)  # (B, 1, T)
        idx = speaker_index
        h = F.layer_norm(x, (d,))
        h = h * gather_rows(self.ln_weight, idx, b)[:, None] + gather_rows(self.ln_bias, idx, b)[:, None]
        h = h.transpose(1, 2) * mf  # (B, D, T), padding exactly zero
        h = F.relu(self._conv(h, self.conv1, self.conv1_bias, self.config.groups, idx)) * mf
        h = self._conv(h, self.dw, self.dw_bias, self.hidden, idx) * mf
        c = self._conv(h, self.conv2, self.conv2_bias, self.config.groups, idx) * mf  # (B, D, T)
        pooled = c.sum(2) / m.sum(1, keepdim=True).clamp(min=1).to(x.dtype)  # (B, D) over true frames
        s = F.relu(torch.einsum("bd,bsd->bs", pooled, gather_rows(self.se1, idx, b)) + gather_rows(self.se1_bias, idx, b))
        gate = torch.sigmoid(torch.einsum("bs,bds->bd", s, gather_rows(self.se2, idx, b)) + gather_rows(self.se2_bias, idx, b))
        return x + (c * gate[:, :, None]).transpose(1, 2)
