"""LoRA on the encoder's linear layers (Hu et al. 2021; PEFT is the reference).

For a frozen ``nn.Linear`` ``W (out, in)``::

    y = W x + b + (alpha / r) * B_s A_s x

with ``A_s (r, in)`` Kaiming-uniform and ``B_s (out, r)`` zero, per speaker ``s``.
Because the update is linear it can be **merged** into ``W`` for one speaker
(``W += alpha/r * B_s A_s``) and unmerged again; merging refuses non-finite
results. Mixed-speaker batches gather each example's ``A_s``/``B_s`` (once per
utterance, never per frame) and use batched matmuls: no loop over the distinct
speakers in a batch (contrast PEFT's mixed-adapter inference, which groups rows
per adapter and loops). The "expand" ``B_s h`` is added into the linear's output
by the matmul itself (``baddbmm``), and linears that read the same input share one
"shrink" matmul (:mod:`workbench.adapters.fused`). The sums run in PEFT's order (the
frozen linear's output first, then the scaled delta added), so a routed batch gives
PEFT's outputs to within float32 rounding of the same operations.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import torch
from torch import Tensor, nn

from workbench.adapters.base import AdapterConfig, bmm_or_matmul, gather_rows
from workbench.adapters.linear import LinearAdapter
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


class LoRAAdapter(LinearAdapter):
    """Banked LoRA factors for one ``nn.Linear``; its output gains ``(alpha/r) B_s A_s x``."""

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
        self._rows: dict[str, tuple[Tensor, tuple, Tensor]] = {}  # gathered factors, kept while a route lasts

    def gathered(self, name: str, weight: Tensor, speaker_index: Tensor | None, batch: int) -> Tensor:
        """``gather_rows(weight, speaker_index, batch)`` for the parameter ``name``, gathered once per
        routed batch under ``torch.no_grad()`` and reused by every decoding step (never per token):
        kept for this very routing tensor (same object, same version) and parameter version."""
        param = getattr(self, name)
        if speaker_index is None or (torch.is_grad_enabled() and param.requires_grad):
            return gather_rows(weight, speaker_index, batch)
        key = (speaker_index._version, batch, param.data_ptr(), param._version)
        hit = self._rows.get(name)
        if hit is not None and hit[0] is speaker_index and hit[1] == key:
            return hit[2]
        rows = gather_rows(weight, speaker_index, batch)
        self._rows[name] = (speaker_index, key, rows)
        return rows

    def forget(self) -> None:
        """Drop the gathered factors (at the end of a routed batch)."""
        self._rows = {}

    @property
    def fusable(self) -> bool:
        """Whether this layer's shrink may be computed together with other layers on the same input
        (not while LoRA dropout is live: each layer draws its own dropout mask, as in PEFT)."""
        return not (self.dropout.training and self.config.dropout > 0)

    def shrink(self, x3: Tensor, speaker_index: Tensor | None) -> Tensor:
        """``A_s x`` for ``x3 (B, T, in)`` -> ``(B, T, r)`` (unscaled: the scale is applied in the expand)."""
        a = self.lora_a.transpose(1, 2)  # (N, in, r)
        if a.shape[0] == 1:
            return torch.matmul(self.dropout(x3), a[0])
        return torch.bmm(self.dropout(x3), self.gathered("lora_a", a, speaker_index, x3.shape[0]))

    def transform_output(self, output: Tensor, x: Tensor, speaker_index: Tensor | None,
                         shrunk: Tensor | None = None) -> Tensor:
        """``output + (alpha/r) B_s (A_s x)``, the add fused into the expand's matmul
        (``baddbmm``: no ``(B, T, out)`` temporary; in place under ``torch.no_grad()``)."""
        b, out_f = output.shape[0], output.shape[-1]
        h = shrunk if shrunk is not None else self.shrink(x.reshape(b, -1, x.shape[-1]), speaker_index)
        out3 = output.reshape(b, -1, out_f)  # (B, T, out)
        bt = self.lora_b.transpose(1, 2)  # (N, r, out)
        scale, inplace = self.config.scale, not torch.is_grad_enabled()
        if bt.shape[0] == 1:
            flat, h2 = out3.reshape(-1, out_f), h.reshape(-1, h.shape[-1])
            flat = flat.addmm_(h2, bt[0], alpha=scale) if inplace else torch.addmm(flat, h2, bt[0], alpha=scale)
            return flat.reshape(output.shape)
        w = self.gathered("lora_b", bt, speaker_index, b)  # (B, r, out): per utterance, never per frame or step
        out3 = out3.baddbmm_(h, w, alpha=scale) if inplace else torch.baddbmm(out3, h, w, alpha=scale)
        return out3.reshape(output.shape)

    def delta(self, x: Tensor, speaker_index: Tensor | None) -> Tensor:
        """``(alpha/r) B_s A_s x`` for ``x (B, ..., in)`` -> ``(B, ..., out)``."""
        shape = x.shape
        h = self.shrink(x.reshape(shape[0], -1, shape[-1]), speaker_index) * self.config.scale  # (B, T, r)
        out = bmm_or_matmul(h, self.lora_b.transpose(1, 2), speaker_index)  # (B, T, out)
        return out.reshape(*shape[:-1], out.shape[-1])

    def update(self, speaker: int = 0) -> Tensor:
        """The dense weight update ``(alpha/r) B_s A_s`` of shape ``(out, in)``."""
        return (self.lora_b[speaker] @ self.lora_a[speaker]) * self.config.scale

    def merged(self, linear: nn.Linear, speaker: int) -> dict[str, Tensor]:
        """``W + (alpha/r) B_s A_s`` (the bias is unchanged)."""
        return {"weight": linear.weight.detach() + self.update(speaker).detach().to(linear.weight.dtype)}
