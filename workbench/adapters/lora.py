"""LoRA on the encoder's linear layers (Hu et al. 2021; PEFT is the reference).

For a frozen ``nn.Linear`` ``W (out, in)``::

    y = W x + b + (alpha / r) * B_s A_s x

with ``A_s (r, in)`` Kaiming-uniform and ``B_s (out, r)`` zero, per speaker ``s``.
Because the update is linear it can be **merged** into ``W`` for one speaker
(``W += alpha/r * B_s A_s``) and unmerged again; merging refuses non-finite
results. Mixed-speaker batches gather each example's ``A_s``/``B_s`` and use
batched matmuls: no loop over the distinct speakers in a batch (contrast PEFT's
mixed-adapter inference, which groups rows per adapter and loops).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import torch
from torch import Tensor, nn

from workbench.adapters.base import AdapterConfig, SiteAdapter, bmm_or_matmul
from workbench.errors import AdapterError

__all__ = ["LoRAAdapter", "LoRAConfig"]

_TARGET_SETS = ("attention", "ffn", "all")


@dataclasses.dataclass
class LoRAConfig(AdapterConfig):
    family = "lora"
    learning_rate = 3e-3  # default peak LR: recipes/choose_defaults.py, docs/results.md
    rank: int = 8  # r
    alpha: float = 16.0  # scale = alpha / r
    targets: Literal["attention", "ffn", "all"] = "all"  # which encoder linears get LoRA
    decoder: bool = False  # also the decoder's linears (sequence-to-sequence backends: Whisper); CTC models have none
    dropout: float = 0.0  # on the LoRA input, training only

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.rank < 1:
            raise AdapterError(f"rank must be >= 1, got {self.rank}")
        if self.alpha <= 0:
            raise AdapterError(f"alpha must be > 0, got {self.alpha}")
        if self.targets not in _TARGET_SETS:
            raise AdapterError(f"targets must be one of {_TARGET_SETS}, got {self.targets!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise AdapterError(f"dropout must be in [0, 1), got {self.dropout}")

    @property
    def scale(self) -> float:
        return self.alpha / self.rank


class LoRAAdapter(SiteAdapter):
    """Banked LoRA factors for one ``nn.Linear``; :meth:`delta` is added to its output."""

    per_speaker_names = ("lora_a", "lora_b")

    def __init__(self, in_features: int, out_features: int, config: LoRAConfig) -> None:
        super().__init__()
        n, r = config.num_speakers, config.rank
        self.config = config
        a = torch.empty(n, r, in_features)
        for i in range(n):
            nn.init.kaiming_uniform_(a[i], a=math.sqrt(5))
        self.lora_a = nn.Parameter(a)  # (N, r, in)
        self.lora_b = nn.Parameter(torch.zeros(n, out_features, r))  # (N, out, r): zero = identity
        self.dropout = nn.Dropout(config.dropout)
        self.merged_speaker: int | None = None
        self._other: Tensor | None = None  # while merged: the weight not in the linear now (base or merged)
        self._base_shown = False  # while merged: the linear holds the base weight (adapters disabled)

    def delta(self, x: Tensor, speaker_index: Tensor | None) -> Tensor:
        """``(alpha/r) B_s A_s x`` for ``x (B, ..., in)`` -> ``(B, ..., out)``."""
        shape = x.shape
        x3 = self.dropout(x).reshape(shape[0], -1, shape[-1])  # (B, T, in)
        h = bmm_or_matmul(x3, self.lora_a.transpose(1, 2), speaker_index)  # (B, T, r)
        h = h * self.config.scale  # on the rank-r activations: r multiplications a frame, not `out`
        out = bmm_or_matmul(h, self.lora_b.transpose(1, 2), speaker_index)  # (B, T, out)
        return out.reshape(*shape[:-1], out.shape[-1])

    def update(self, speaker: int = 0) -> Tensor:
        """The dense weight update ``(alpha/r) B_s A_s`` of shape ``(out, in)``."""
        return (self.lora_b[speaker] @ self.lora_a[speaker]) * self.config.scale

    def merge_into(self, linear: nn.Linear, speaker: int = 0, *, safe: bool = True) -> None:
        """``W += (alpha/r) B_s A_s``; the original ``W`` is kept (one copy of this layer's weight) so that
        unmerging and :meth:`show_base` restore the base model bit for bit (subtracting would be off
        by rounding)."""
        if self.merged_speaker is not None:
            raise AdapterError("this LoRA layer is already merged; unmerge it first")
        with torch.no_grad():
            new = linear.weight + self.update(speaker).to(linear.weight.dtype)
            if safe and not torch.isfinite(new).all():
                raise AdapterError("merging would put NaN/inf into the base weights; the adapter is broken — "
                                   "retrain it or load a good checkpoint")
            self._other = linear.weight.detach().clone()  # the base weight while the merged one is live
            self._base_shown = False
            linear.weight.copy_(new)
        self.merged_speaker = speaker

    def show_base(self, linear: nn.Linear, base: bool) -> None:
        """While merged: put the exact base weight (``base=True``) or the merged one back into ``linear``.

        A pointer swap, no arithmetic, so both directions are exact and O(1).
        """
        if self.merged_speaker is None or base == self._base_shown:
            return
        with torch.no_grad():
            linear.weight.data, self._other = self._other, linear.weight.data
        self._base_shown = base

    def unmerge_from(self, linear: nn.Linear) -> None:
        """Restore the exact base weight (kept at merge time)."""
        if self.merged_speaker is None:
            return
        self.show_base(linear, True)
        self._other = None
        self.merged_speaker = None

    def forward(self, x: Tensor, mask: Tensor | None, speaker_index: Tensor | None,
                state: dict) -> Tensor:  # pragma: no cover - LoRA is applied through delta()
        raise AdapterError("LoRAAdapter is applied to a linear layer's input through delta()")
