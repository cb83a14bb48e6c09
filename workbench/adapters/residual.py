"""Bottleneck residual adapter (Tomanek et al. 2021; NeMo ``LinearAdapter``).

At each adapter site (the output ``x (B, T, D)`` of an encoder block)::

    y = x + W_up[s] act(W_down[s] LN_s(x) + b_down[s]) + b_up[s]

with the up projection zero-initialized, so a fresh adapter leaves the model
unchanged. Per speaker and site: ``2 D r + r + 3 D`` parameters (LayerNorm
affine included).
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import Tensor, nn

from workbench.adapters.base import ACTIVATIONS, AdapterConfig, SiteAdapter, add_bias, bmm_or_matmul
from workbench.errors import AdapterError

__all__ = ["ResidualAdapter", "ResidualConfig"]


@dataclasses.dataclass
class ResidualConfig(AdapterConfig):
    family = "residual"
    learning_rate = 1e-2  # default peak LR: recipes/choose_defaults.py, docs/results.md
    bottleneck: int = 32  # r: hidden width of the bottleneck (NeMo default 32)
    activation: str = "relu"  # "relu" | "swish" | "gelu"
    dropout: float = 0.0  # on the bottleneck activations, training only

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.bottleneck < 1:
            raise AdapterError(f"bottleneck must be >= 1, got {self.bottleneck}")
        if self.activation not in ACTIVATIONS:
            raise AdapterError(f"activation must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise AdapterError(f"dropout must be in [0, 1), got {self.dropout}")


class ResidualAdapter(SiteAdapter):
    """One site's banked residual adapter; see the module docstring."""

    per_speaker_names = ("ln_weight", "ln_bias", "down", "down_bias", "up", "up_bias")

    def __init__(self, dim: int, config: ResidualConfig, *, site: int = 0, num_sites: int = 1) -> None:
        super().__init__()
        n, r = config.num_speakers, config.bottleneck
        self.dim, self.config = dim, config
        self.ln_weight = nn.Parameter(torch.ones(n, dim))
        self.ln_bias = nn.Parameter(torch.zeros(n, dim))
        down = torch.empty(n, dim, r)
        for i in range(n):  # Kaiming-uniform like nn.Linear, per speaker
            nn.init.kaiming_uniform_(down[i].T, a=math.sqrt(5))
        self.down = nn.Parameter(down)
        self.down_bias = nn.Parameter(torch.zeros(n, r))
        self.up = nn.Parameter(torch.zeros(n, r, dim))  # zero: a fresh adapter is the identity
        self.up_bias = nn.Parameter(torch.zeros(n, dim))
        self.act = ACTIVATIONS[config.activation]
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor, mask: Tensor | None, speaker_index: Tensor | None, state: dict) -> Tensor:
        h = nn.functional.layer_norm(x, (self.dim,))
        if self.ln_weight.shape[0] == 1:
            h = h * self.ln_weight[0] + self.ln_bias[0]
        else:
            h = h * self.ln_weight.index_select(0, speaker_index)[:, None] + \
                self.ln_bias.index_select(0, speaker_index)[:, None]
        z = self.dropout(self.act(add_bias(bmm_or_matmul(h, self.down, speaker_index), self.down_bias, speaker_index)))
        delta = add_bias(bmm_or_matmul(z, self.up, speaker_index), self.up_bias, speaker_index)
        return x + self._masked(delta, mask)
