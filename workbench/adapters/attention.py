"""A leaner forward for transformers' Whisper attention, used while adapters are on.

transformers' ``WhisperAttention`` (with ``attn_implementation="sdpa"``) copies the
query, key and value into ``(B, H, T, head_dim)`` memory order (``.contiguous()``
after the transpose) and multiplies the query by ``head_dim ** -0.5`` in a pass of
its own before calling ``scaled_dot_product_attention`` with scale 1. PyTorch's
kernel reads strided inputs (last dimension contiguous) and applies the scale
itself, so those four passes over ``(B, T, D)`` tensors are avoidable: on Whisper
tiny.en's encoder (batch 64, 200 frames) they are several percent of a forward pass,
as much as the LoRA bank costs. :func:`lean_attention` replaces an attention
module's ``forward`` (on the instance: the model's code, weights and
``state_dict`` are untouched) by one that skips them; the projections are still the
module's own ``q_proj``/``k_proj``/``v_proj``/``out_proj``, so every adapter hook on
them runs as before.

The lean forward covers the calls without a key/value cache (the encoder, teacher-
forced scoring and training with ``use_cache=False``); a call with a cache, with
``output_attentions``, another attention implementation or arguments it does not
know runs the module's own forward. With a head size whose ``** -0.5`` is a power of
two (64 in every Whisper size) the scale is exact either way, so the result is the
same; otherwise it differs by float32 rounding.

Fusing the three projections into one matmul (one ``(D, 3D)`` weight) was measured
and not kept: on a 2-core AVX-512 CPU, one ``12800 x 384 x 1152`` matmul took
88-110 ms against 77 ms for three ``12800 x 384 x 384`` ones (single thread, the
minimum of 25 rounds).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ForwardHandle", "lean_attention", "lean_attention_modules", "lean_forward"]

_KNOWN_KWARGS = frozenset({"position_ids", "cache_position", "use_cache"})  # harmless to the attention itself


def lean_attention_modules(model: nn.Module) -> list[nn.Module]:
    """The modules of ``model`` that :func:`lean_attention` can serve: transformers' ``WhisperAttention``
    (matched by class, so another model's attention is left alone)."""
    whisper = sys.modules.get("transformers.models.whisper.modeling_whisper")  # a Whisper model has loaded it
    if whisper is None:  # no import here: the built-in model does not pay for transformers
        return []
    return [m for m in model.modules() if type(m) is whisper.WhisperAttention]


class ForwardHandle:
    """What :func:`lean_attention` (and the expand-first LoRA linears, :mod:`workbench.adapters.adapted`)
    return for a module whose ``forward`` they replaced on the instance: ``remove()`` gives the module its
    own forward back (like the handle of a PyTorch hook)."""

    def __init__(self, module: nn.Module) -> None:
        self._module = module

    def remove(self) -> None:
        if "forward" in self._module.__dict__:
            del self._module.forward


def lean_attention(module: nn.Module, active: Callable[[], bool]) -> ForwardHandle:
    """Serve ``module``'s calls with the lean forward while ``active()`` is true.

    Args:
        module: a transformers ``WhisperAttention``.
        active: asked on every call (the adapters' on/off switch: off, the module computes exactly
            transformers' own forward).
    """
    module.forward = functools.partial(_forward, module, active)  # a partial, so a deepcopy follows the module
    return ForwardHandle(module)


def _forward(module: nn.Module, active: Callable[[], bool], hidden_states: Tensor, *args, **kwargs):
    own = functools.partial(type(module).forward, module)
    if args or not active() or getattr(module.config, "_attn_implementation", None) != "sdpa":
        return own(hidden_states, *args, **kwargs)
    key_value_states = kwargs.get("key_value_states")
    attention_mask = kwargs.get("attention_mask")
    rest = set(kwargs) - {"key_value_states", "attention_mask", "cache", "past_key_values", "output_attentions"}
    if (kwargs.get("cache") is not None or kwargs.get("past_key_values") is not None
            or kwargs.get("output_attentions") or not rest <= _KNOWN_KWARGS):
        return own(hidden_states, *args, **kwargs)
    return lean_forward(module, hidden_states, key_value_states, attention_mask), None


def lean_forward(module: nn.Module, hidden_states: Tensor, key_value_states: Tensor | None = None,
                 attention_mask: Tensor | None = None) -> Tensor:
    """``WhisperAttention.forward`` without a cache, minus the copies and the separate query scaling.

    Args:
        hidden_states: ``(B, L, D)`` the queries' input.
        key_value_states: ``(B, S, D)`` the encoder output for cross-attention, else None (self-attention).
        attention_mask: as transformers passes it to ``scaled_dot_product_attention``, or None.

    Returns:
        ``(B, L, D)`` the attention block's output (after ``out_proj``).
    """
    input_shape = hidden_states.shape[:-1]
    head = module.head_dim
    q = module.q_proj(hidden_states).reshape(*input_shape, -1, head).transpose(1, 2)  # (B, H, L, hd) strided
    current = key_value_states if key_value_states is not None else hidden_states
    kv_shape = (input_shape[0], -1, module.num_heads, head)
    k = module.k_proj(current).reshape(kv_shape).transpose(1, 2)  # (B, H, S, hd)
    v = module.v_proj(current).reshape(kv_shape).transpose(1, 2)
    is_causal = bool(q.shape[2] > 1 and attention_mask is None and getattr(module, "is_causal", True))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=attention_mask,
                                         dropout_p=module.dropout if module.training else 0.0,
                                         scale=module.scaling, is_causal=is_causal)  # (B, H, L, hd)
    return module.out_proj(out.transpose(1, 2).reshape(*input_shape, -1))
