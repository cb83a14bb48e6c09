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
"shrink" matmul (:mod:`workbench.adapters.fused`). Serving a mixed batch, the order
is turned round (:meth:`LoRAAdapter.linear_forward`): the expand, with the bias
folded in, writes the output and the base matmul accumulates into it, so the LoRA
costs no pass of its own over the ``(B, T, out)`` output.
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

    def linear_forward(self, linear: nn.Linear, x: Tensor, speaker_index: Tensor,
                       shrunk: Tensor | None = None) -> Tensor:
        """``linear(x) + (alpha/r) B_s A_s x`` for a mixed batch, inference only, expand first.

        ``transform_output`` after the linear costs a copy of the bias into the output, the base
        matmul, then a read and a write of the whole output for the rank-r expand. Here the expand
        writes the output first, the bias entering it as one more row of each example's gathered
        ``B_s`` (against a column of ones appended to ``A_s x``), and the base matmul adds into it
        (``addmm_``): the same sum in another order (float32 rounding apart).

        Args:
            linear: the frozen layer (``weight (out, in)``, ``bias (out,)`` or None).
            x: ``(B, ..., in)`` its input; ``speaker_index``: ``(B,)`` rows.
            shrunk: ``A_s x`` ``(B, T, r)`` when computed with other layers (:mod:`workbench.adapters.fused`).

        Returns:
            ``(B, ..., out)``.
        """
        b, in_f, out_f = x.shape[0], x.shape[-1], linear.out_features
        x3 = x.reshape(b, -1, in_f)
        h = shrunk if shrunk is not None else self.shrink(x3, speaker_index)  # (B, T, r)
        w = self._expand_rows(linear.bias, speaker_index, b)  # (B, r [+ 1], out)
        if w.shape[1] > h.shape[-1]:  # the bias row: a column of ones
            h = torch.cat([h, h.new_ones(*h.shape[:-1], 1)], dim=-1)
        out3 = torch.bmm(h, w)  # (B, T, out): the delta and the bias, written once
        out3.view(-1, out_f).addmm_(x3.reshape(-1, in_f), linear.weight.t())  # += W x
        return out3.reshape(*x.shape[:-1], out_f)

    def _expand_rows(self, bias: Tensor | None, speaker_index: Tensor, batch: int) -> Tensor:
        """``(B, r [+ 1], out)``: each example's ``(alpha/r) B_s^T``, then the bias as a last row; gathered
        once per routed batch (every decoding step reuses it), for this routing, ``B`` and bias."""
        key = (speaker_index._version, batch, self.lora_b.data_ptr(), self.lora_b._version,
               None if bias is None else (bias.data_ptr(), bias._version))
        hit = self._rows.get("expand")
        if hit is not None and hit[0] is speaker_index and hit[1] == key:
            return hit[2]
        with torch.no_grad():
            w = gather_rows(self.lora_b.transpose(1, 2), speaker_index, batch) * self.config.scale  # (B, r, out)
            if bias is not None:
                w = torch.cat([w, bias.to(w.dtype).expand(batch, 1, -1)], dim=1)
        self._rows["expand"] = (speaker_index, key, w)
        return w

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
