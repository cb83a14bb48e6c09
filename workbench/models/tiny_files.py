"""A built-in-model folder, checked before anything is built: ``config.json`` against the weights' header.

A folder of the built-in model (``config.json`` + ``model.safetensors``, written by
:func:`workbench.models.tiny.save_tiny`) can come from anywhere: ``--model DIR``, a size
folder, a copied archive. Its ``config.json`` decides how big a model is built, so a
crafted one could make the loader allocate gigabytes (issue 24: 7.5 GB in 24 s) or fail
deep inside torch. :func:`checked_config` therefore reads only the safetensors *header*
(names, shapes, dtypes; no tensor data) and checks every field of the config, and every
tensor shape the config implies (:func:`state_shapes`), against it. A model is built only
when they agree, and then it is no larger than the weights file on disk.

:class:`TinyConfig` (what ``config.json`` holds) lives here, beside its checks, so that this module
needs nothing of :mod:`workbench.models.tiny` (which builds the model, and re-exports it).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path

from workbench.errors import ModelImportError
from workbench.text import VOCAB_SIZE

__all__ = ["ARCHITECTURE", "TinyConfig", "checked_config", "read_card", "state_shapes"]

ARCHITECTURE = "workbench-tiny"
_FBANK_KEY = "frontend.fbank"  # stored in model files (fp32) so loading needs no librosa


@dataclasses.dataclass
class TinyConfig:
    """The built-in model's sizes (``config.json``'s ``"config"``; built by :mod:`workbench.models.tiny`)."""

    n_mels: int = 80  # log-mel bins in
    d_model: int = 144  # encoder width D (adapter sites see (B, T', D))
    num_layers: int = 8  # conformer blocks
    num_heads: int = 4  # attention heads
    ff_mult: int = 4  # FFN hidden = ff_mult * D
    conv_kernel: int = 15  # depthwise conv kernel (encoder frames, 40 ms each)
    subsample_channels: int = 32  # channels of the 2-D subsampling convs
    dropout: float = 0.1
    vocab_size: int = VOCAB_SIZE  # CTC outputs incl. blank
    # A size of the supernet (workbench.models.supernet.model) is narrower inside a block than D.
    # None everywhere = the original built-in model (its files and fingerprint are unchanged).
    size: str | None = None  # size name, e.g. "small"; part of the backend's name
    ff_hidden: int | None = None  # FFN hidden units (None: ff_mult * d_model)
    head_dim: int | None = None  # attention head width (None: d_model // num_heads)
    conv_channels: int | None = None  # conv-module channels (None: d_model)

    def __post_init__(self) -> None:
        if self.head_dim is None and self.d_model % self.num_heads:
            raise ValueError(f"d_model={self.d_model} must be divisible by num_heads={self.num_heads}")
        if self.attn_head_dim % 2:
            raise ValueError("head dim must be even for rotary embeddings")
        if self.conv_kernel % 2 == 0:
            raise ValueError(f"conv_kernel={self.conv_kernel} must be odd (same-length convolution)")
        for name in ("ff_hidden", "head_dim", "conv_channels"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise ValueError(f"{name}={getattr(self, name)} must be positive")

    @property
    def ffn_dim(self) -> int:
        """FFN hidden units."""
        return self.ff_hidden if self.ff_hidden is not None else self.ff_mult * self.d_model

    @property
    def attn_head_dim(self) -> int:
        """Width of one attention head (rotary embeddings rotate pairs of it)."""
        return self.head_dim if self.head_dim is not None else self.d_model // self.num_heads

    @property
    def conv_dim(self) -> int:
        """Channels of the conv module (GLU output, depthwise conv)."""
        return self.conv_channels if self.conv_channels is not None else self.d_model


_FLOAT_DTYPES = frozenset({"F16", "BF16", "F32", "F64"})
_SIZE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
_INT_FIELDS = ("n_mels", "d_model", "num_layers", "num_heads", "ff_mult", "conv_kernel", "subsample_channels",
               "vocab_size")
_OPTIONAL_INT_FIELDS = ("ff_hidden", "head_dim", "conv_channels")
_BLOCK_KEY = re.compile(r"blocks\.(\d{1,9})\.")


def _damaged(folder: Path, what: str) -> ModelImportError:
    return ModelImportError(
        f"the built-in-model folder {folder} cannot be used: {what}. Its files are damaged or do not belong "
        "together; copy the folder again, or reinstall the workbench for the shipped model")


def state_shapes(cfg: TinyConfig) -> dict[str, tuple[int, ...]]:
    """The shape of every weight of ``TinyConformerCTC(cfg).state_dict()``, computed, nothing built.

    Mirrors :class:`~workbench.models.tiny.TinyConformerCTC` (a test checks both agree).
    """
    d, c, k = cfg.d_model, cfg.subsample_channels, cfg.conv_kernel
    f = (cfg.n_mels - 1) // 2 + 1
    f = (f - 1) // 2 + 1  # mel bins after two stride-2 convs
    hidden, inner, conv = cfg.ffn_dim, cfg.num_heads * cfg.attn_head_dim, cfg.conv_dim
    out: dict[str, tuple[int, ...]] = {
        "subsample.conv1.weight": (c, 1, 3, 3), "subsample.conv1.bias": (c,),
        "subsample.conv2.weight": (c, c, 3, 3), "subsample.conv2.bias": (c,),
        "subsample.out.weight": (d, c * f), "subsample.out.bias": (d,),
    }

    def linear(name: str, n_out: int, n_in: int) -> None:
        out[f"{name}.weight"], out[f"{name}.bias"] = (n_out, n_in), (n_out,)

    def norm(name: str, n: int) -> None:
        out[f"{name}.weight"] = out[f"{name}.bias"] = (n,)

    for i in range(cfg.num_layers):
        p = f"blocks.{i}"
        for ff in ("ff1", "ff2"):
            norm(f"{p}.{ff}.norm", d)
            linear(f"{p}.{ff}.fc1", hidden, d)
            linear(f"{p}.{ff}.fc2", d, hidden)
        norm(f"{p}.attn.norm", d)
        linear(f"{p}.attn.qkv", 3 * inner, d)
        linear(f"{p}.attn.proj", d, inner)
        norm(f"{p}.conv.norm", d)
        linear(f"{p}.conv.pw1", 2 * conv, d)
        out[f"{p}.conv.dw.weight"], out[f"{p}.conv.dw.bias"] = (conv, 1, k), (conv,)
        norm(f"{p}.conv.norm2", conv)
        linear(f"{p}.conv.pw2", d, conv)
        norm(f"{p}.norm", d)
    linear("head", cfg.vocab_size, d)
    return out


def read_card(folder: Path) -> dict:
    """``config.json`` of a built-in-model folder, as a dict with a ``"config"`` dict (checked JSON)."""
    try:
        card = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise _damaged(folder, f"its config.json cannot be read ({getattr(err, 'strerror', None) or err})") from None
    except (ValueError, RecursionError):
        raise _damaged(folder, "its config.json is not valid JSON") from None
    if not isinstance(card, dict) or not isinstance(card.get("config"), dict):
        raise _damaged(folder, "its config.json has no \"config\" section of named values")
    if card.get("architecture") != ARCHITECTURE:
        raise _damaged(folder, f"its config.json names the architecture {str(card.get('architecture'))[:40]!r}, "
                               f"not {ARCHITECTURE!r}")
    return card


def _field_problem(name: str, value: object) -> str | None:
    """Why ``value`` cannot be TinyConfig field ``name`` (None: it can)."""
    if name in _INT_FIELDS or name in _OPTIONAL_INT_FIELDS:
        if value is None and name in _OPTIONAL_INT_FIELDS:
            return None
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            return f"{name} is {str(value)[:40]!r}; it must be a whole number of at least 1"
        return None
    if name == "dropout":
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) \
                or not 0 <= value < 1:
            return f"dropout is {str(value)[:40]!r}; it must be a number from 0 up to (not including) 1"
        return None
    if name == "size":
        if value is not None and not (isinstance(value, str) and _SIZE_NAME.fullmatch(value)):
            return f"size is {str(value)[:40]!r}; it must be a short size name such as 'small'"
        return None
    return f"{name[:40]!r} is not a setting of the built-in model"


def checked_config(folder: str | Path) -> tuple[TinyConfig, dict]:
    """``(config, card)`` of a built-in-model folder, checked against its weights' header.

    Reads ``config.json`` and the header of ``model.safetensors`` (no tensor data). Checks
    every config field's type and range, then that the tensors the config implies are exactly
    the stored ones, with the same shapes, and stored as floating-point numbers.

    Raises:
        ModelImportError: a plain message naming the first field or tensor that is wrong.
    """
    from safetensors import SafetensorError, safe_open

    folder = Path(folder)
    card = read_card(folder)
    raw = card["config"]
    for name, value in raw.items():
        problem = _field_problem(str(name), value)
        if problem:
            raise _damaged(folder, f"in its config.json, {problem}")
    try:
        cfg = TinyConfig(**raw)
    except (TypeError, ValueError) as err:
        raise _damaged(folder, f"its config.json does not describe a model ({err})") from None
    try:
        with safe_open(str(folder / "model.safetensors"), framework="pt") as f:
            header = {k: (tuple(f.get_slice(k).get_shape()), f.get_slice(k).get_dtype()) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        raise _damaged(folder, f"its model.safetensors is not a readable weights file ({str(err)[:120]})") from None
    blocks = {int(m.group(1)) for k in header if (m := _BLOCK_KEY.match(k))}
    if cfg.num_layers != len(blocks) or blocks != set(range(len(blocks))):  # (no range of a crafted size)
        raise _damaged(folder, f"config.json says {cfg.num_layers} encoder blocks, but model.safetensors holds "
                               f"{len(blocks)}")
    want = state_shapes(cfg)
    for key, shape in want.items():
        if key not in header:
            raise _damaged(folder, f"model.safetensors has no {key!r}")
        if header[key][0] != shape:
            raise _damaged(folder, f"config.json implies {key} of shape {list(shape)}, but model.safetensors "
                                   f"stores {list(header[key][0])}")
    extra = sorted(set(header) - set(want) - {_FBANK_KEY})
    if extra:
        raise _damaged(folder, f"model.safetensors holds {len(extra)} weights the config does not describe, "
                               f"e.g. {extra[0][:60]!r}")
    if _FBANK_KEY in header:
        from workbench.features import N_FFT

        if header[_FBANK_KEY][0] != (N_FFT // 2 + 1, cfg.n_mels):
            raise _damaged(folder, f"its mel filterbank has shape {list(header[_FBANK_KEY][0])}, not "
                                   f"{[N_FFT // 2 + 1, cfg.n_mels]}")
    odd = [k for k, (_, dtype) in header.items() if dtype not in _FLOAT_DTYPES]
    if odd:
        raise _damaged(folder, f"weight {odd[0][:60]!r} is stored as {header[odd[0]][1]}, not as numbers with a "
                               "fraction")
    return cfg, card
