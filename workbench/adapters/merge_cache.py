"""One speaker's adapter merged into a cached copy of the adapted weights, for one-speaker batches.

When every example of a batch belongs to one speaker, the linear adapters (LoRA,
vector) cost nothing if their update is folded into the base weights: the
layers then run one plain matmul each, the speed of the base model. Merging in
place (:meth:`~workbench.adapters.Adapted.merge`) does this for a model that serves
one speaker only; this cache does it per batch, for a bank serving mixed and
one-speaker batches alike: ``Adapted.route`` swaps the cached tensors in (a
pointer swap) for the batch and back at its end.

The cache holds one row (one extra copy of every adapted linear's weight: for
Whisper tiny.en's default LoRA about 50 MB). It is keyed on the identity and
version counter of every adapter and base tensor, so any change of the weights
(an optimizer step, ``load_state_dict``, a move to another device) invalidates it.
A row is merged only when it is seen twice in a row with unchanged weights: a
training run, whose weights change between evaluations, and a stream of
alternating speakers never pay for merges they would not reuse.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from workbench.adapters.linear import LinearAdapter

__all__ = ["MergeCache"]


def _signature(adapters: dict[str, LinearAdapter], linears: dict[str, nn.Linear]) -> tuple:
    sig = []
    for key, adapter in adapters.items():
        for p in adapter.parameters():
            sig.append((p.data_ptr(), p._version, p.dtype))
        lin = linears[key]
        for p in (lin.weight, lin.bias):
            if p is not None:
                sig.append((p.data_ptr(), p._version))
    return tuple(sig)


class MergeCache:
    """Merged parameters of one speaker row for every adapted linear (see the module docstring)."""

    def __init__(self) -> None:
        self.row: int | None = None
        self.tensors: dict[str, dict[str, Tensor]] = {}
        self._key: tuple | None = None
        self._last_seen: tuple | None = None

    def get(self, adapters: dict[str, LinearAdapter], linears: dict[str, nn.Linear],
            row: int) -> dict[str, dict[str, Tensor]] | None:
        """``{adapter key: {"weight": ..., ["bias": ...]}}`` for ``row``, or None (serve unmerged)."""
        key = (row, _signature(adapters, linears))
        if key == self._key:
            return self.tensors
        if key != self._last_seen:  # first sighting since a change: do not pay for a merge yet
            self._last_seen = key
            return None
        self.clear()
        with torch.no_grad():
            tensors = {k: {n: v.to(getattr(linears[k], n).dtype).contiguous()
                           for n, v in a.merged(linears[k], row).items()} for k, a in adapters.items()}
        if not all(bool(torch.isfinite(v).all()) for d in tensors.values() for v in d.values()):
            return None  # a broken adapter: the unmerged path shows the same NaN, and merge() explains it
        self.row, self.tensors, self._key = row, tensors, key
        return tensors

    def clear(self) -> None:
        """Free the cached copy."""
        self.row, self.tensors, self._key = None, {}, None
