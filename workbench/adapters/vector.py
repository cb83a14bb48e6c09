"""Vector adapters: per-speaker element-wise scalings around the frozen linear layers.

The cheapest adapter to serve to many speakers at once: every per-speaker
parameter is a vector that multiplies an activation, so a mixed-speaker batch
costs one broadcast multiplication per adapted layer around the **shared** matrix
multiply, whatever the number of speakers. Two modes:

- ``mode="ia3"`` — (IA)^3 (Liu et al., "Few-Shot Parameter-Efficient Fine-Tuning
  is Better and Cheaper than In-Context Learning", NeurIPS 2022; PEFT's ``IA3``):
  the outputs of the attention **key and value** projections are scaled,
  ``k = l_k * (W_k x + b_k)``, ``v = l_v * (W_v x + b_v)``, and so is the input of
  each feed-forward block's **down projection**, ``y = W_2 (l_ff * h) + b_2``.
  A fused query/key/value projection (the built-in model's ``attn.qkv``) has its
  whole output scaled, queries included. Per speaker: ``2 D + D_ff`` numbers a
  block (Whisper's cross-attention keys and values too, with ``decoder=True``).
- ``mode="flora"`` — rank-1 FLoRA (Wen and Chaudhuri, "Batched Low-Rank Adaptation
  of Foundation Models", ICLR 2024): every adapted linear gets an input and an
  output scaling, ``y = b_s * (W (a_s * x)) + b_s * bias`` — the element-wise form
  of ``W o (b_s a_s^T)``, FLoRA's per-example adapter at rank 1. Per speaker:
  ``in + out`` numbers a layer.

Every vector starts at one, so a fresh adapter is the base model exactly. For one
speaker the scalings fold into the weights (``W' = diag(b_s) W diag(a_s)``,
``bias' = b_s * bias``), so the family merges like LoRA.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import torch
from torch import Tensor, nn

from workbench.adapters.base import AdapterConfig, gather_rows
from workbench.adapters.linear import LinearAdapter
from workbench.errors import AdapterError

__all__ = ["VectorAdapter", "VectorConfig", "vector_role"]

_MODES = ("ia3", "flora")
_KEY_VALUE = ("k_proj", "v_proj", "key", "value", "qkv")  # projections whose outputs IA3 scales
_ATTENTION_WORDS = ("attn", "attention", "q_proj", "k_proj", "v_proj", "out_proj", "qkv")


@dataclasses.dataclass
class VectorConfig(AdapterConfig):
    family = "vector"
    learning_rate = 3e-3  # IA3's own (Liu et al. 2022); the WER study (bench_personalization --vector-study) checks it
    mode: Literal["ia3", "flora"] = "ia3"  # which activations are scaled (see the module docstring)
    decoder: bool = False  # also the decoder's linears (sequence-to-sequence backends: Whisper); CTC models have none

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.mode not in _MODES:
            raise AdapterError(f"mode must be one of {_MODES}, got {self.mode!r}")


def vector_role(name: str, linear: nn.Linear, mode: str) -> str | None:
    """What a vector adapter scales on the linear layer ``name``: ``"out"``, ``"in"``, ``"both"`` or None.

    >>> lin = nn.Linear(64, 16)
    >>> vector_role("layers.0.fc2", lin, "ia3"), vector_role("layers.0.self_attn.k_proj", nn.Linear(8, 8), "ia3")
    ('in', 'out')
    >>> vector_role("layers.0.self_attn.q_proj", nn.Linear(8, 8), "ia3") is None
    True
    """
    if mode == "flora":
        return "both"
    leaf = name.rpartition(".")[2].lower()
    if leaf in _KEY_VALUE:
        return "out"
    attention = any(w in name.lower() for w in _ATTENTION_WORDS)
    if not attention and linear.in_features > linear.out_features:  # a feed-forward block's down projection
        return "in"
    return None


class VectorAdapter(LinearAdapter):
    """Banked scaling vectors for one ``nn.Linear``: ``in_scale (N, in)`` and/or ``out_scale (N, out)``."""

    def __init__(self, in_features: int, out_features: int, config: VectorConfig, role: str) -> None:
        super().__init__()
        if role not in ("in", "out", "both"):
            raise AdapterError(f"a vector adapter scales 'in', 'out' or 'both', got {role!r}")
        n = config.num_speakers
        self.config, self.role = config, role
        names = []
        if role in ("in", "both"):
            self.in_scale = nn.Parameter(torch.ones(n, in_features))  # (N, in): one = identity
            names.append("in_scale")
        if role in ("out", "both"):
            self.out_scale = nn.Parameter(torch.ones(n, out_features))  # (N, out)
            names.append("out_scale")
        self.per_speaker_names = tuple(names)
        self.scales_input = "in_scale" in names

    @staticmethod
    def _scaled(x: Tensor, scale: Tensor, speaker_index: Tensor | None, inplace: bool) -> Tensor:
        """``x (B, ..., D) * scale[s] (D,)`` for each example's speaker ``s``; ``scale (N, D)``."""
        if scale.shape[0] == 1:
            return x.mul_(scale[0]) if inplace else x * scale[0]
        b = x.shape[0]
        s = gather_rows(scale, speaker_index, b).reshape(b, *([1] * (x.dim() - 2)), scale.shape[1])  # (B, 1.., D)
        return x.mul_(s) if inplace else x * s

    def transform_input(self, x: Tensor, speaker_index: Tensor | None) -> Tensor:
        """``a_s * x``, out of place (the input may be read by other layers too)."""
        return self._scaled(x, self.in_scale, speaker_index, inplace=False)

    def transform_output(self, output: Tensor, x: Tensor, speaker_index: Tensor | None,
                         shrunk: Tensor | None = None) -> Tensor:
        """``b_s * output`` (in place under ``torch.no_grad()``: the output is the linear's fresh tensor)."""
        if "out_scale" not in self.per_speaker_names:
            return output
        return self._scaled(output, self.out_scale, speaker_index, inplace=not torch.is_grad_enabled())

    def merged(self, linear: nn.Linear, speaker: int) -> dict[str, Tensor]:
        """``diag(b_s) W diag(a_s)`` and ``b_s * bias``."""
        w = linear.weight.detach()
        out = {}
        if self.scales_input:
            w = w * self.in_scale[speaker].detach().to(w.dtype)[None, :]
        if "out_scale" in self.per_speaker_names:
            b = self.out_scale[speaker].detach().to(w.dtype)
            w = w * b[:, None]
            if linear.bias is not None:
                out["bias"] = linear.bias.detach() * b
        out["weight"] = w
        return out
