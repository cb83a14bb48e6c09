"""What every adapter family shares: the config base class and per-speaker routing.

Every adapter is **banked**: each per-speaker parameter has a leading speaker
dimension ``N`` (``N = 1`` for one speaker's Submodel). A forward pass takes a
speaker index ``(B,)`` and gathers each example's rows, so a batch in which
every example belongs to a different speaker costs one pass (the Lingvo/Praxis
multitask-adapter design). With ``N = 1`` the gather is skipped and plain
matmuls run. Shared parameters (HRA's controller, the embedding-space
generator) have no speaker dimension.

Gradients: a gather's backward scatters into the rows that were used, so a
speaker absent from a batch gets an exactly-zero gradient.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import typing
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from workbench.errors import AdapterError

__all__ = ["ACTIVATIONS", "MAX_SIZE", "MAX_SPEAKERS", "AdapterConfig", "SiteAdapter", "add_bias", "bmm_or_matmul",
           "gather_rows"]

MAX_SIZE = 1 << 16  # cap on every size-like config field (rank, widths, kernels): far above any real adapter
MAX_SPEAKERS = 100_000  # cap on the rows of a bank

ACTIVATIONS = {"relu": nn.functional.relu, "swish": nn.functional.silu, "gelu": nn.functional.gelu}


@dataclasses.dataclass
class AdapterConfig:
    """Fields common to every family. Subclasses add their own and set ``family``."""

    family: ClassVar[str] = ""
    learning_rate: ClassVar[float] = 3e-3  # the trainer's default peak LR for this family (chosen by experiment)
    num_speakers: int = 1  # N: rows in every per-speaker parameter
    top_layers: int = 0  # adapt only the last k encoder blocks (0 = all); backprop then stops below them

    def __post_init__(self) -> None:
        self._check_field_types()
        if not isinstance(self.num_speakers, int) or self.num_speakers < 1:
            raise AdapterError(f"num_speakers must be a whole number >= 1, got {self.num_speakers!r}")
        if not isinstance(self.top_layers, int) or self.top_layers < 0:
            raise AdapterError(f"top_layers must be a whole number >= 0 (0 = all layers), got {self.top_layers!r}")

    def _check_field_types(self) -> None:
        """Every field has its annotated type and a sane size, before anything is allocated.

        Whole numbers (``int`` fields) must be ints (numpy ints are converted; bools are not
        numbers here) in ``[0, MAX_SIZE]`` (``num_speakers``: ``[0, MAX_SPEAKERS]``); ``float``
        fields finite real numbers; ``bool`` fields bools; ``str``/``Literal`` fields strings.
        A config read from a file is untrusted: these caps keep a damaged or crafted file
        from asking for gigabytes (family checks then narrow the ranges further).
        """
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            val, hint, where = getattr(self, f.name), hints[f.name], f"{type(self).__name__}.{f.name}"
            if hint is bool:
                if not isinstance(val, bool):
                    raise AdapterError(f"{where} must be true or false, got {_short(val)}")
            elif hint is int:
                cap = MAX_SPEAKERS if f.name == "num_speakers" else MAX_SIZE
                if isinstance(val, bool) or not isinstance(val, numbers.Integral) or not 0 <= val <= cap:
                    raise AdapterError(f"{where} must be a whole number from 0 to {cap}, got {_short(val)}")
                setattr(self, f.name, int(val))
            elif hint is float:
                if isinstance(val, bool) or not isinstance(val, numbers.Real) or not math.isfinite(val):
                    raise AdapterError(f"{where} must be a finite number, got {_short(val)}")
                setattr(self, f.name, float(val))
            elif typing.get_origin(hint) is Literal or hint is str:
                allowed = typing.get_args(hint)
                if not isinstance(val, str) or (allowed and val not in allowed):
                    choice = f"one of {list(allowed)}" if allowed else "text"
                    raise AdapterError(f"{where} must be {choice}, got {_short(val)}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict including ``family``; inverse of :func:`workbench.adapters.config_from_dict`."""
        return {"family": self.family, **dataclasses.asdict(self)}

    def replace(self, **changes: Any) -> AdapterConfig:
        return dataclasses.replace(self, **changes)


def _short(val: Any, limit: int = 60) -> str:
    """``repr(val)`` cut to ``limit`` characters (values from a file can be huge)."""
    try:
        text = repr(val)
    except (ValueError, RecursionError):  # e.g. an int too long to print
        text = f"<{type(val).__name__}>"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def gather_rows(param: Tensor, index: Tensor | None, batch: int) -> Tensor:
    """Per-example rows of a banked parameter.

    Args:
        param: ``(N, *shape)``.
        index: ``(B,)`` long speaker indices, or None (only when ``N == 1``).
        batch: ``B``.
    Returns:
        ``(B, *shape)`` (an expanded view when ``N == 1``).
    """
    if index is None:
        if param.shape[0] != 1:
            raise AdapterError(
                f"this Submodel bank holds {param.shape[0]} speakers: pass a speaker index for every example"
            )
        return param.expand(batch, *param.shape[1:])
    return param.index_select(0, index)


class SiteAdapter(nn.Module):
    """Base class of a module applied to the output of one adapter site.

    ``forward(x (B, T, D), mask (B, T) bool or None, speaker_index (B,) or None,
    state: dict) -> (B, T, D)``. ``state`` is shared by all sites of one forward
    pass (HRA keeps its recurrent controller state there). ``mask`` is True on
    true frames; padded frames of the output are zeroed when it is given.
    """

    per_speaker_names: ClassVar[tuple[str, ...]] = ()  # parameters with a leading N dimension

    def forward(self, x: Tensor, mask: Tensor | None, speaker_index: Tensor | None,
                state: dict) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def num_speakers(self) -> int:
        for name in self.per_speaker_names:
            return int(getattr(self, name).shape[0])
        return 1

    def per_speaker_parameters(self) -> dict[str, nn.Parameter]:
        return {n: getattr(self, n) for n in self.per_speaker_names}

    def shared_parameters(self) -> dict[str, nn.Parameter]:
        per = set(self.per_speaker_names)
        return {n: p for n, p in self.named_parameters() if n not in per}

    @staticmethod
    def _masked(x: Tensor, mask: Tensor | None) -> Tensor:
        return x if mask is None else x * mask[:, :, None].to(x.dtype)


def bmm_or_matmul(x: Tensor, weight: Tensor, index: Tensor | None) -> Tensor:
    """``x (B, T, i) @ W[s] (i, o)`` for each example's speaker ``s``; ``weight (N, i, o)``."""
    if weight.shape[0] == 1:
        return torch.matmul(x, weight[0])
    return torch.bmm(x, gather_rows(weight, index, x.shape[0]))


def add_bias(x: Tensor, bias: Tensor, index: Tensor | None) -> Tensor:
    """``x (B, T, o) + b[s] (o,)`` for each example's speaker ``s``; ``bias (N, o)``."""
    if bias.shape[0] == 1:
        return x + bias[0]
    return x + gather_rows(bias, index, x.shape[0])[:, None, :]
