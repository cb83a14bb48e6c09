"""One LoRA "shrink" for the linear layers that read the same input.

An attention block's query, key and value projections read the same hidden
states, and a decoder's cross-attention key and value projections, in every
decoder layer, read the same encoder output. Their LoRA shrinks ``A_s x`` are
therefore one batched matmul against the concatenated ``A`` (``(in, sum of
ranks)``): the input is read once instead of once per layer, and the matmul is
wider (a rank-8 matmul uses a CPU's vector units poorly). Each layer then takes
its slice of the result for its own expand.

Grouping is decided from the layer names (:func:`shrink_groups`), but a group's
result is only *used* for an input that is the very tensor it was computed from
(same object, not modified since, same speaker routing): a layer called with any
other input computes the group again on that input. A wrong grouping therefore
costs time, never correctness.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence

import torch
from torch import Tensor

from workbench.adapters.base import gather_rows
from workbench.adapters.lora import LoRAAdapter

__all__ = ["FusedShrink", "shrink_groups"]

_QKV = ("q_proj", "k_proj", "v_proj", "query", "key", "value")
_CROSS = ("encoder_attn", "crossattention", "cross_attn")  # cross-attention modules (keys/values read the encoder)


def shrink_groups(names: Sequence[str]) -> list[list[str]]:
    """Groups (two or more) of linear-layer names that read the same input.

    - the query/key/value projections of one attention module (``...attn.q_proj``, ``.k_proj``, ``.v_proj``);
      for a cross-attention module only the query stays apart (it reads the decoder);
    - the key/value projections of every cross-attention module (they all read the encoder output).

    >>> shrink_groups(["l0.self_attn.q_proj", "l0.self_attn.k_proj", "l0.self_attn.v_proj", "l0.fc1"])
    [['l0.self_attn.q_proj', 'l0.self_attn.k_proj', 'l0.self_attn.v_proj']]
    >>> shrink_groups(["d0.encoder_attn.q_proj", "d0.encoder_attn.k_proj", "d1.encoder_attn.k_proj"])
    [['d0.encoder_attn.k_proj', 'd1.encoder_attn.k_proj']]
    """
    by_parent: dict[str, list[str]] = {}
    cross: list[str] = []
    for name in names:
        parent, _, leaf = name.rpartition(".")
        if leaf not in _QKV:
            continue
        if any(word in parent.lower() for word in _CROSS):
            if leaf not in ("q_proj", "query"):
                cross.append(name)
        else:
            by_parent.setdefault(parent, []).append(name)
    return [g for g in [*by_parent.values(), cross] if len(g) > 1]


class FusedShrink:
    """The shared shrink of one group of LoRA layers (see the module docstring).

    Args:
        adapters: the group's layers, in a fixed order; same input width.
    """

    def __init__(self, adapters: Sequence[LoRAAdapter]) -> None:
        self.adapters = list(adapters)
        self.offsets: dict[int, tuple[int, int]] = {}
        start = 0
        for a in self.adapters:
            r = a.lora_a.shape[1]
            self.offsets[id(a)] = (start, start + r)
            start += r
        self._stack: Tensor | None = None
        self._stack_key: tuple = ()
        self._input: weakref.ref | None = None
        self._key: tuple = ()
        self._result: Tensor | None = None
        self._rows: tuple[Tensor, tuple, Tensor] | None = None  # (routing, key, each example's rows of A)

    def _stacked(self) -> Tensor:
        """``(N, in, sum r)``: the group's ``A`` concatenated (kept between calls while no weight changes
        and no gradient is needed; built afresh under autograd so that gradients reach every ``A``)."""
        if torch.is_grad_enabled() and any(a.lora_a.requires_grad for a in self.adapters):
            return torch.cat([a.lora_a for a in self.adapters], dim=1).transpose(1, 2)
        key = tuple((a.lora_a.data_ptr(), a.lora_a._version, a.lora_a.dtype) for a in self.adapters)
        if self._stack is None or key != self._stack_key:
            with torch.no_grad():
                self._stack = torch.cat([a.lora_a for a in self.adapters], dim=1).transpose(1, 2).contiguous()
            self._stack_key = key
        return self._stack

    def shrunk(self, adapter: LoRAAdapter, x: Tensor, speaker_index: Tensor | None, epoch: int = 0) -> Tensor:
        """``A_s x`` of ``adapter`` (a member) for its input ``x (B, ..., in)``: ``(B, T, r)``.

        ``epoch``: the caller's count of routed forward passes; a result is never reused in another
        (under autograd its graph belongs to one pass)."""
        key = (epoch, x._version, tuple(x.shape), torch.is_grad_enabled(),
               None if speaker_index is None else (id(speaker_index), speaker_index._version))
        if self._input is None or self._input() is not x or key != self._key or self._result is None:
            x3 = x.reshape(x.shape[0], -1, x.shape[-1])
            stacked = self._stacked()  # (N, in, sum r)
            if stacked.shape[0] == 1:
                self._result = torch.matmul(x3, stacked[0])
            else:
                self._result = torch.bmm(x3, self._gathered(stacked, speaker_index, x3.shape[0]))  # (B, T, sum r)
            self._input, self._key = weakref.ref(x), key
        lo, hi = self.offsets[id(adapter)]
        return self._result[..., lo:hi]

    def _gathered(self, stacked: Tensor, speaker_index: Tensor | None, batch: int) -> Tensor:
        """Each example's rows of ``stacked``: gathered once per routed batch when no gradient is needed
        (every decoding step reuses them; kept for this very routing tensor), afresh under autograd."""
        if speaker_index is None or stacked.requires_grad:
            return gather_rows(stacked, speaker_index, batch)
        key = (speaker_index._version, batch, self._stack_key)
        if self._rows is None or self._rows[0] is not speaker_index or self._rows[1] != key:
            self._rows = (speaker_index, key, gather_rows(stacked, speaker_index, batch))
        return self._rows[2]

    def forget(self) -> None:
        """Drop the last result (and its autograd graph) and the gathered rows; the stacked weights stay."""
        self._input, self._result, self._key, self._rows = None, None, (), None
