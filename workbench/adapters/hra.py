"""HRA: the Hierarchical Recurrent Adapter (Munkhdalai et al. 2024).

One **controller** is shared by every encoder layer and every speaker; its
recurrence runs over the layer index ``l``, frame by frame (an IndRNN: the
recurrent weight is a vector ``u``). Each speaker owns only a small **head**::

    h_0 = 0
    h_l = ReLU(W_c LN(x_l) + u * h_{l-1} + b)         # (B, T, d_c), shared
    o_l = W_s h_l + c_s                  (linear head)
        | W2_s ReLU(W1_s h_l + c1_s) + c2_s  (FFN head)  # per speaker s, same at every layer
    y_l = x_l + o_l

The head's output projection is zero-initialized, so a fresh HRA is the
identity. A linear head costs ``d_c * D + D`` parameters per speaker.

Reconstructed from the abstract of T. Munkhdalai, Y. Chen, K. C. Sim, F. Biadsy,
T. Sainath and P. Moreno Mengibar, "Hierarchical Recurrent Adapters for Efficient
Multi-Task Adaptation of Large Speech Models" (arXiv:2403.19709, 2024) and from
secondary summaries, not from released code. The LayerNorm on the controller
input is our addition, for stable training across layers whose activations
differ in scale.

**Embedding space** (``space="embedding"``): the learned speaker space of
F. Biadsy et al., "A Scalable Model Specialization Framework for Training and
Inference using Submodels and its Application to Speech Model Personalization"
(Interspeech 2022, arXiv:2203.12559). Speaker ``s`` owns only a vector ``z_s``
(``embed_dim`` numbers); a shared generator maps it to the linear head,
``[W_s, c_s] = G z_s + g``. Many
speakers train ``G``, the controller and all ``z_s`` jointly; a new speaker can
start from the mean ``z`` or its nearest speakers' ``z`` and fit ``z_s`` alone
with very few utterances. The generator's output layer starts at zero, so a
fresh HRA is still the identity.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from workbench.adapters.base import AdapterConfig, SiteAdapter, add_bias, bmm_or_matmul, gather_rows
from workbench.errors import AdapterError

__all__ = ["HRAConfig", "HierarchicalRecurrentAdapter"]


@dataclasses.dataclass
class HRAConfig(AdapterConfig):
    family = "hra"
    learning_rate = 3e-2  # default peak LR: recipes/choose_defaults.py, docs/results.md
    controller_dim: int = 32  # d_c: width of the shared recurrent controller
    head: Literal["linear", "ffn"] = "linear"  # per-speaker head
    ffn_hidden: int = 64  # hidden width of an FFN head
    space: Literal["direct", "embedding"] = "direct"  # per-speaker heads, or z_s -> generator -> head
    embed_dim: int = 16  # size of z_s in the embedding space
    train_controller: bool = True  # False: only per-speaker parameters train (controller and generator frozen)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.controller_dim < 1 or self.ffn_hidden < 1 or self.embed_dim < 1:
            raise AdapterError("controller_dim, ffn_hidden and embed_dim must be >= 1")
        if self.head not in ("linear", "ffn"):
            raise AdapterError(f"head must be 'linear' or 'ffn', got {self.head!r}")
        if self.space not in ("direct", "embedding"):
            raise AdapterError(f"space must be 'direct' or 'embedding', got {self.space!r}")
        if self.space == "embedding" and self.head != "linear":
            raise AdapterError("the embedding space generates linear heads only: use head='linear'")


class HierarchicalRecurrentAdapter(SiteAdapter):
    """One module shared by all adapter sites; ``state`` carries ``h_{l-1}`` between them."""

    def __init__(self, dim: int, config: HRAConfig, *, site: int = 0, num_sites: int = 1) -> None:
        super().__init__()
        n, dc = config.num_speakers, config.controller_dim
        self.dim, self.config = dim, config
        # shared controller (IndRNN over layers)
        self.ctrl_in = nn.Linear(dim, dc)
        self.ctrl_u = nn.Parameter(torch.rand(dc) * 0.5)  # recurrent gain in [0, 0.5): stable over depth
        for p in (self.ctrl_in.weight, self.ctrl_in.bias, self.ctrl_u):
            p.requires_grad_(config.train_controller)
        if config.space == "embedding":
            self.per_speaker_names = ("z",)
            self.z = nn.Parameter(torch.randn(n, config.embed_dim) / math.sqrt(config.embed_dim))
            self.generator = nn.Linear(config.embed_dim, dc * dim + dim)
            nn.init.zeros_(self.generator.weight)  # identity at start (see module docstring)
            nn.init.zeros_(self.generator.bias)
            for p in self.generator.parameters():  # shared like the controller
                p.requires_grad_(config.train_controller)
        elif config.head == "linear":
            self.per_speaker_names = ("head_w", "head_b")
            self.head_w = nn.Parameter(torch.zeros(n, dc, dim))
            self.head_b = nn.Parameter(torch.zeros(n, dim))
        else:
            self.per_speaker_names = ("head_w1", "head_b1", "head_w2", "head_b2")
            w1 = torch.empty(n, dc, config.ffn_hidden)
            for i in range(n):
                nn.init.kaiming_uniform_(w1[i].T, a=math.sqrt(5))
            self.head_w1 = nn.Parameter(w1)
            self.head_b1 = nn.Parameter(torch.zeros(n, config.ffn_hidden))
            self.head_w2 = nn.Parameter(torch.zeros(n, config.ffn_hidden, dim))
            self.head_b2 = nn.Parameter(torch.zeros(n, dim))

    def shared_parameters(self) -> dict[str, nn.Parameter]:
        return {n: p for n, p in self.named_parameters() if n not in self.per_speaker_names}

    def _generated_head(self, idx: Tensor | None, batch: int) -> tuple[Tensor, Tensor]:
        z = gather_rows(self.z, idx, batch) if self.z.shape[0] > 1 else self.z.expand(batch, -1)
        flat = self.generator(z)  # (B, dc*D + D)
        dc, d = self.config.controller_dim, self.dim
        return flat[:, : dc * d].view(batch, dc, d), flat[:, dc * d:]

    def forward(self, x: Tensor, mask: Tensor | None, speaker_index: Tensor | None, state: dict) -> Tensor:
        b = x.shape[0]
        h_prev = state.get("hra_h")
        pre = self.ctrl_in(F.layer_norm(x, (self.dim,)))
        h = F.relu(pre if h_prev is None else pre + self.ctrl_u * h_prev)  # (B, T, dc)
        state["hra_h"] = h
        idx = speaker_index
        if self.config.space == "embedding":
            if "hra_head" not in state:  # generate each example's head once per forward pass
                state["hra_head"] = self._generated_head(idx, b)
            w, c = state["hra_head"]
            out = torch.bmm(h, w) + c[:, None, :]
        elif self.config.head == "linear":
            out = add_bias(bmm_or_matmul(h, self.head_w, idx), self.head_b, idx)
        else:
            z = F.relu(add_bias(bmm_or_matmul(h, self.head_w1, idx), self.head_b1, idx))
            out = add_bias(bmm_or_matmul(z, self.head_w2, idx), self.head_b2, idx)
        return x + self._masked(out, mask)
