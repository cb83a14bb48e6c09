"""The lean Whisper attention (workbench.adapters.attention) computes what transformers' own forward computes.

On a tiny random Whisper: each kind of attention module (encoder self-attention, causal decoder
self-attention, cross-attention) with and without a mask, a head size whose scale is not a power
of two, gradients, the on/off switch, calls with a cache, and inject/remove.
"""

from __future__ import annotations

import functools

import pytest
import torch

from workbench.adapters import LoRAConfig, inject
from workbench.adapters.attention import lean_attention, lean_attention_modules, lean_forward

from _models import noise_waves

pytestmark = pytest.mark.filterwarnings("ignore")


def _own(module):
    return functools.partial(type(module).forward, module)


def _kinds(model):
    dec = model.model.decoder.layers[0]
    return {"encoder": model.model.encoder.layers[0].self_attn, "decoder": dec.self_attn, "cross": dec.encoder_attn}


@pytest.mark.parametrize("kind", ["encoder", "decoder", "cross"])
@pytest.mark.parametrize("masked", [False, True])
def test_lean_forward_equals_transformers_forward(whisper, kind, masked) -> None:
    module = _kinds(whisper.model)[kind]
    g = torch.Generator().manual_seed(3)
    d = module.embed_dim
    x, enc = torch.randn(3, 5, d, generator=g), torch.randn(3, 7, d, generator=g)
    kv = enc if kind == "cross" else None
    mask = None
    if masked:  # an additive mask as transformers builds one: -inf-like where a key may not be seen
        keys = (kv if kv is not None else x).shape[1]
        mask = torch.zeros(3, 1, 5, keys)
        mask[1, :, :, -2:] = torch.finfo(torch.float32).min
    with torch.no_grad():
        want, _ = _own(module)(x, key_value_states=kv, attention_mask=mask)
        got = lean_forward(module, x, kv, mask)
    # the head size is 16, so the scale 1/4 is exact: the same numbers, not just close ones
    assert module.scaling == 0.25 and torch.equal(got, want)


def test_lean_forward_with_an_inexact_scale_and_gradients(whisper) -> None:
    module = _kinds(whisper.model)["encoder"]
    module.scaling = 0.3  # a head size whose scale is not a power of two: float32 rounding apart
    x = torch.randn(2, 6, module.embed_dim, requires_grad=True)
    want, _ = _own(module)(x)
    (g_want,) = torch.autograd.grad(want.square().sum(), x)
    got = lean_forward(module, x)
    (g_got,) = torch.autograd.grad(got.square().sum(), x)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(g_got, g_want, atol=1e-5, rtol=1e-5)


def test_the_switch_and_a_cache_use_the_modules_own_forward(whisper, monkeypatch) -> None:
    import workbench.adapters.attention as attention

    module = _kinds(whisper.model)["decoder"]
    calls = []
    on = {"value": True}
    handle = lean_attention(module, lambda: on["value"])
    monkeypatch.setattr(attention, "lean_forward", lambda *a, **k: (calls.append(1), lean_forward(*a, **k))[1])
    try:
        x = torch.randn(2, 4, module.embed_dim)
        with torch.no_grad():
            module(x)
            assert calls == [1]
            on["value"] = False
            module(x)
            on["value"] = True
            from transformers.cache_utils import DynamicCache

            module(x, cache=DynamicCache())  # a key/value cache: transformers' own code keeps it
            module(x, output_attentions=True)
            assert calls == [1]
    finally:
        handle.remove()
    assert "forward" not in module.__dict__


def test_inject_serves_whisper_attention_leanly_while_on_and_remove_restores(whisper) -> None:
    batch = whisper.featurize(noise_waves(3, seed=4))
    dec_in, _ = whisper.decoder_io(["good morning"] * 3)

    def scores() -> torch.Tensor:
        with torch.no_grad():
            enc, _ = whisper.encode(batch)
            hidden = whisper.model.model.decoder(input_ids=dec_in, encoder_hidden_states=enc,
                                                 use_cache=False).last_hidden_state
            return whisper.model.proj_out(hidden)

    base = scores()
    modules = lean_attention_modules(whisper.model)
    assert len(modules) == whisper.num_layers + 2 * len(whisper.model.model.decoder.layers)
    bank = inject(whisper, LoRAConfig(rank=4, decoder=True, num_speakers=2))
    assert all("forward" in m.__dict__ for m in modules)
    with bank.route([0, 1, 1]):
        assert torch.equal(scores(), base)  # a fresh LoRA (B = 0) through the lean attention: the base, exactly
    with bank.disabled():
        assert torch.equal(scores(), base)
    bank.remove()
    assert not any("forward" in m.__dict__ for m in modules)
    assert torch.equal(scores(), base)


def test_the_training_loss_builds_no_cache_so_every_attention_is_lean(whisper, monkeypatch) -> None:
    """``WhisperBackend.loss`` runs the decoder with ``use_cache=False`` (teacher forcing never reads a key/value
    cache): adapted, every attention module (the decoder's too) takes the lean forward, and the loss and its
    gradients are what transformers' own attention gives."""
    import workbench.adapters.attention as attention

    batch = whisper.featurize(noise_waves(2, seed=5))
    texts = ["good morning", "yes"]
    bank = inject(whisper, LoRAConfig(rank=4, decoder=True, num_speakers=2))
    batch.speaker_index = torch.tensor([1, 0])
    with torch.no_grad():
        for a in bank.adapters.values():
            a.lora_b.normal_(0.0, 0.1)
    try:
        calls = []
        monkeypatch.setattr(attention, "lean_forward", lambda *a, **k: (calls.append(1), lean_forward(*a, **k))[1])
        lean = bank.loss(batch, texts)
        lean.backward()
        g_lean = [a.lora_b.grad.clone() for a in bank.adapters.values()]
        assert len(calls) == len(lean_attention_modules(whisper.model))  # encoder, decoder self and cross
        bank.adapters.zero_grad()
        saved = [(m, m.__dict__.pop("forward")) for m in lean_attention_modules(whisper.model)]
        try:
            own = bank.loss(batch, texts)  # transformers' own attention throughout
            own.backward()
        finally:
            for m, f in saved:
                m.forward = f
        torch.testing.assert_close(lean, own, atol=1e-6, rtol=1e-5)
        for g, a in zip(g_lean, bank.adapters.values(), strict=True):
            torch.testing.assert_close(g, a.lora_b.grad, atol=1e-6, rtol=1e-4)
    finally:
        bank.remove()
