"""What the adapters placed on a frozen ``nn.Linear`` share (LoRA, the vector family).

A linear adapter changes one linear layer's input before it runs
(:meth:`LinearAdapter.transform_input`) and/or its output after it
(:meth:`LinearAdapter.transform_output`), per example, from banked per-speaker
parameters. Its update is linear in the base weights for one speaker, so it can
be **merged**: :meth:`LinearAdapter.merged` gives the linear's parameters with
speaker ``s``'s update folded in. Merging keeps the original tensors, so
unmerging and :meth:`LinearAdapter.show_base` restore the base model bit for
bit (subtracting would be off by rounding).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from workbench.adapters.base import SiteAdapter
from workbench.errors import AdapterError

__all__ = ["LinearAdapter", "swap_params"]


def swap_params(linear: nn.Linear, values: dict[str, Tensor]) -> dict[str, Tensor]:
    """Put ``values`` (``"weight"``, maybe ``"bias"``) into ``linear`` by pointer swap; returns the old tensors.

    No arithmetic, so swapping back is exact and O(1).
    """
    old = {}
    with torch.no_grad():
        for name, value in values.items():
            param = getattr(linear, name)
            old[name] = param.data
            param.data = value
    return old


class LinearAdapter(SiteAdapter):
    """Base class of the banked adapters on one ``nn.Linear`` (see the module docstring).

    Subclasses set ``scales_input`` when :meth:`transform_input` does anything (the
    injection then adds a forward pre-hook) and implement :meth:`transform_output`
    and :meth:`merged`.
    """

    scales_input: ClassVar[bool] = False

    def __init__(self) -> None:
        super().__init__()
        self.merged_speaker: int | None = None
        self._other: dict[str, Tensor] | None = None  # while merged: the tensors not in the linear now
        self._base_shown = False  # while merged: the linear holds the base tensors (adapters disabled)

    def transform_input(self, x: Tensor, speaker_index: Tensor | None) -> Tensor:
        """The linear's input ``(B, ..., in)`` as the adapter changes it (default: unchanged)."""
        return x

    def transform_output(self, output: Tensor, x: Tensor, speaker_index: Tensor | None,
                         shrunk: Tensor | None = None) -> Tensor:  # pragma: no cover - abstract
        """The linear's output ``(B, ..., out)`` as the adapter changes it; ``x`` is its input.

        Under ``torch.no_grad()`` it may work in place on ``output`` (a fresh tensor the
        linear just made). ``shrunk``: LoRA's ``A_s x``, when computed for several linears at once.
        """
        raise NotImplementedError

    def merged(self, linear: nn.Linear, speaker: int) -> dict[str, Tensor]:  # pragma: no cover - abstract
        """``linear``'s parameters (``"weight"``, and ``"bias"`` if it changes) with row ``speaker`` folded in."""
        raise NotImplementedError

    def forward(self, x: Tensor, mask: Tensor | None, speaker_index: Tensor | None,
                state: dict) -> Tensor:  # pragma: no cover - applied through the linear's hooks
        raise AdapterError(f"{type(self).__name__} is applied around a linear layer through its hooks")

    # ------------------------------------------------------------------ merging
    def merge_into(self, linear: nn.Linear, speaker: int = 0, *, safe: bool = True) -> None:
        """Fold row ``speaker`` into ``linear`` (refusing NaN/inf); the originals are kept."""
        if self.merged_speaker is not None:
            raise AdapterError(f"this {type(self).__name__} layer is already merged; unmerge it first")
        with torch.no_grad():
            new = {k: v.to(getattr(linear, k).dtype) for k, v in self.merged(linear, speaker).items()}
            if safe and not all(bool(torch.isfinite(v).all()) for v in new.values()):
                raise AdapterError("merging would put NaN/inf into the base weights; the adapter is broken — "
                                   "retrain it or load a good checkpoint")
        self._other = swap_params(linear, new)  # the base tensors while the merged ones are live
        self._base_shown = False
        self.merged_speaker = speaker

    def show_base(self, linear: nn.Linear, base: bool) -> None:
        """While merged: put the exact base tensors (``base=True``) or the merged ones back into ``linear``."""
        if self.merged_speaker is None or base == self._base_shown or self._other is None:
            return
        self._other = swap_params(linear, self._other)
        self._base_shown = base

    def unmerge_from(self, linear: nn.Linear) -> None:
        """Restore the exact base tensors (kept at merge time)."""
        if self.merged_speaker is None:
            return
        self.show_base(linear, True)
        self._other = None
        self.merged_speaker = None
