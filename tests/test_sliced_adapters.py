"""One personal adapter for every size: a LoRA of the supernet's largest size, cut like the weights it adapts."""

from __future__ import annotations

import json

import pytest
import torch

from workbench.adapters import LoRAConfig, ResidualConfig, inject
from workbench.adapters.io import read_submodel
from workbench.errors import AdapterError
from workbench.models.supernet.model import SearchSpace, SubnetChoice, Supernet, _FeatureForward
from workbench.models.supernet.adapters import (
    SandwichLoRA,
    SupernetLoRA,
    load_for_size,
    mark_supernet_adapter,
    size_fingerprints,
    slice_adapter,
    slice_submodel_file,
)
from workbench.models.tiny import TinyConfig, TinyConformerCTC

SMALL = SubnetChoice(2, 16, 1, 8)
MEDIUM = SubnetChoice(3, 32, 2, 16)
LARGE = SubnetChoice(3, 48, 3, 24)
SPACE = SearchSpace(depths=(2, 3), ffns=(16, 32, 48), heads=(1, 2, 3), convs=(8, 16, 24),
                    sizes=(("small", SMALL), ("medium", MEDIUM), ("large", LARGE)))


def _supernet(seed: int = 0) -> Supernet:
    torch.manual_seed(seed)
    cfg = TinyConfig(d_model=24, num_layers=3, num_heads=3, ff_mult=2, conv_kernel=5, subsample_channels=4,
                     dropout=0.1)
    return Supernet(TinyConformerCTC(cfg), SPACE).eval()


def _feats(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([40, 31, 23])
    feats = torch.randn(3, 40, 80, generator=g)
    return feats * (torch.arange(40)[None, :, None] < lengths[:, None, None]), lengths


def _trained_lora(sn: Supernet, seed: int = 3):
    """A LoRA on the largest size with random (not zero) factors, as after training."""
    adapted = inject(sn.backend("large"), LoRAConfig(rank=4, alpha=8.0))
    g = torch.Generator().manual_seed(seed)
    adapted.load_state_dict({k: 0.3 * torch.randn(v.shape, generator=g) for k, v in adapted.state_dict().items()})
    return adapted


def _sized_run(adapted, feats, lengths):
    """The sized model's output with its adapter (the hooks' unmerged path, as in the supernet)."""
    with torch.enable_grad(), adapted.route(None):
        return _FeatureForward(adapted.backend.model)(feats, lengths)


def test_sliced_adapter_in_the_supernet_equals_the_sized_model(tmp_path):
    sn = _supernet()
    full = _trained_lora(sn)
    path = full.save(tmp_path / "large.safetensors", speaker_ids=["spk"])
    assert mark_supernet_adapter(path, full.backend, SPACE)
    meta = read_submodel(path)[1]
    assert meta["supernet"]["made_for"] == "large" and set(meta["supernet"]["sizes"]) == {"small", "medium", "large"}
    on_the_fly = SupernetLoRA(sn, full)
    feats, lengths = _feats()
    for choice in (SMALL, MEDIUM, LARGE, SubnetChoice(2, 48, 2, 8)):
        sized = sn.backend(choice)
        if choice in (SMALL, MEDIUM, LARGE):  # a named size: the file is cut when loaded
            adapted, info = load_for_size(sized, path)
            assert info.get("sliced_for") == (None if choice == LARGE else SPACE.name_of(choice))
        else:
            adapted = inject(sized, full.config)
            adapted.load_state_dict(slice_adapter(full.state_dict(), full.config, sized))
        a, la = on_the_fly.forward_features(feats, lengths, choice)
        b, lb = _sized_run(adapted, feats, lengths)
        assert torch.equal(la, lb)
        assert (a - b).abs().max().item() == 0.0, choice
        # and the adapter does something: the sized model without it differs
        with adapted.disabled():
            c, _ = _sized_run(adapted, feats, lengths)
        assert (b - c).abs().max() > 1e-3
        adapted.remove()
    # the sliced update is the slice of the full update, for every kind of slicing
    small = sn.backend("small")
    cut = slice_adapter(full.state_dict(), full.config, small)
    scale = full.config.scale
    sl = sn.sliced_parameters(SMALL)
    for name in ("blocks.1.attn.qkv", "blocks.1.attn.proj", "blocks.0.ff2.fc1", "blocks.0.ff2.fc2",
                 "blocks.1.conv.pw1", "blocks.1.conv.pw2"):
        key = name.replace(".", "_")
        big = full.adapters[key].update(0).detach()  # (out, in) of the largest size
        tmp = Supernet(TinyConformerCTC(sn.model.cfg), SPACE)
        with torch.no_grad():
            dict(tmp.model.named_parameters())[f"{name}.weight"].copy_(big)
        want = tmp.sliced_parameters(SMALL)[f"{name}.weight"]
        got = scale * cut[f"{key}.lora_b"][0] @ cut[f"{key}.lora_a"][0]
        assert got.shape == sl[f"{name}.weight"].shape
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    assert not any(k.startswith("blocks_2_") for k in cut)  # the small size has 2 blocks


def test_gradients_reach_the_full_adapter_only_in_the_slice():
    sn = _supernet()
    full = _trained_lora(sn)
    for p in full.trainable_parameters():
        p.requires_grad_(True)
    lp, lens = SupernetLoRA(sn, full).forward_features(*_feats(), SMALL)
    lp[:, :, 1].sum().backward()
    b = full.adapters["blocks_0_ff1_fc1"].lora_b.grad  # (1, 48, 4): the small size uses rows 0..15
    assert b[:, :16].abs().sum() > 0 and b[:, 16:].abs().sum() == 0
    assert full.adapters["blocks_2_attn_qkv"].lora_a.grad is None or \
        full.adapters["blocks_2_attn_qkv"].lora_a.grad.abs().sum() == 0


def test_the_sandwich_loss_is_the_mean_of_each_sized_model_with_its_cut_adapter():
    from workbench.models.base import Batch
    from workbench.models.tiny import ctc_loss

    sn = _supernet()
    full = _trained_lora(sn)
    for p in full.trainable_parameters():
        p.requires_grad_(True)
    feats, lengths = _feats()
    targets = ["a b", "ok", "yes"]
    batch = Batch(feats, lengths, lengths * 160)
    sandwich = SandwichLoRA(sn, full)
    assert sandwich.trainable_parameters() == full.trainable_parameters()  # the rest is the largest size's
    loss = sandwich.loss(batch, targets)
    want = []
    for choice in (SMALL, MEDIUM, LARGE):
        sized = inject(sn.backend(choice), full.config)
        sized.load_state_dict(slice_adapter(full.state_dict(), full.config, sized.backend))
        want.append(ctc_loss(*_sized_run(sized, feats, lengths), targets))
        sized.remove()
    torch.testing.assert_close(loss, torch.stack(want).mean(), rtol=1e-5, atol=1e-6)
    loss.backward()  # every size reaches the adapter: the largest's rows past the small slice too
    b = full.adapters["blocks_0_ff1_fc1"].lora_b.grad
    assert b[:, :16].abs().sum() > 0 and b[:, 16:].abs().sum() > 0
    with pytest.raises(AdapterError, match="log-mel"):
        sandwich.loss(Batch(torch.zeros(3, 10, 24), torch.tensor([10, 9, 8]), lengths * 160, start_layer=2), targets)


def test_an_adapter_is_refused_on_a_size_it_was_not_made_for(tmp_path):
    sn = _supernet()
    small, medium, large = (sn.backend(n) for n in ("small", "medium", "large"))
    # an adapter of the small size: refused on medium (not a supernet adapter)
    first = inject(small, LoRAConfig(rank=2))
    plain = first.save(tmp_path / "small.safetensors", speaker_ids=["spk"])
    first.remove()
    with pytest.raises(AdapterError) as err:
        load_for_size(medium, plain)
    assert "'small' size" in str(err.value) and "'medium' size" in str(err.value)
    assert "largest size" in str(err.value)
    # an unmarked adapter of the largest size: refused on small too
    full = _trained_lora(sn)
    unmarked = full.save(tmp_path / "large_plain.safetensors", speaker_ids=["spk"])
    with pytest.raises(AdapterError, match="'large' size"):
        load_for_size(small, unmarked)
    # the marked one is cut for small and medium, and refused on a model of another supernet
    marked = full.save(tmp_path / "large.safetensors", speaker_ids=["spk"])
    mark_supernet_adapter(marked, large, SPACE)
    load_for_size(small, marked)[0].remove()
    other = _supernet(seed=7).backend("small")
    with pytest.raises(AdapterError, match="fingerprint"):
        load_for_size(other, marked)
    # a smaller size's adapter cannot serve a larger size, even when marked by hand
    with pytest.raises(AdapterError):
        slice_adapter(read_submodel(plain)[0], LoRAConfig(rank=2), large)
    # residual adapters are not cut
    with pytest.raises(AdapterError, match="only a LoRA"):
        slice_adapter({}, ResidualConfig(), small)
    # a cut file is a plain Submodel of that size
    out = slice_submodel_file(marked, medium, tmp_path / "medium.safetensors")
    meta = read_submodel(out)[1]
    assert meta["base_model"] == "workbench-tiny-medium" and meta["base_fingerprint"] == medium.fingerprint()
    assert meta["supernet"]["made_for"] == "medium"


def _craft(path, out, **fields):
    """A copy of the Submodel ``path`` with metadata ``fields`` replaced (as an attacker would)."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(path), framework="pt") as f:
        raw = dict(f.metadata())
    raw.update(fields)
    save_file(load_file(str(path)), str(out), metadata=raw)
    return out


@pytest.mark.parametrize("marker", [
    "not json", json.dumps([1, 2]), json.dumps({"made_for": "large"}),
    json.dumps({"made_for": "huge", "sizes": {"large": "0" * 64}}),
    json.dumps({"made_for": "large", "sizes": {"large": "xyz"}}),
    json.dumps({"made_for": "large", "sizes": {f"s{i}": "0" * 64 for i in range(1000)}}),
    json.dumps({"made_for": "large", "sizes": {"../../x": "0" * 64}}),
    "[" * 100000,
], ids=["not-json", "list", "no-sizes", "unknown-made-for", "bad-fingerprint", "1000-sizes", "path-name",
        "deep-nesting"])
def test_a_crafted_supernet_marker_gets_a_plain_error(tmp_path, marker):
    sn = _supernet()
    path = _trained_lora(sn).save(tmp_path / "a.safetensors", speaker_ids=["spk"])
    bad = _craft(path, tmp_path / "bad.safetensors", supernet=marker)
    with pytest.raises(AdapterError, match="supernet marker .* is not valid; the file is damaged"):
        read_submodel(bad)


def test_a_marker_that_lies_about_its_own_base_is_refused(tmp_path):
    sn = _supernet()
    full = _trained_lora(sn)
    path = full.save(tmp_path / "a.safetensors", speaker_ids=["spk"])
    small = sn.backend("small")
    # lists the small size, but its "made_for" fingerprint is not the one the file was trained on
    lie = json.dumps({"made_for": "large", "sizes": {"large": "0" * 64, "small": small.fingerprint()}})
    with pytest.raises(AdapterError, match="marker does not name the base model"):
        load_for_size(small, _craft(path, tmp_path / "lie.safetensors", supernet=lie))


def test_size_fingerprints_match_the_exported_fp16_sizes(tmp_path):
    from workbench.models.tiny import load_tiny, save_tiny

    sn = _supernet()
    save_tiny(sn.model, tmp_path / "full", fp16=True)
    large = load_tiny(tmp_path / "full")  # the shipped way: fp16 on disk
    fps = size_fingerprints(large, SPACE)
    shipped = Supernet(large.model, SPACE)
    for name in ("small", "medium"):
        save_tiny(shipped.extract(name).eval(), tmp_path / name, fp16=True)
        assert load_tiny(tmp_path / name).fingerprint() == fps[name]
    assert fps["large"] == large.fingerprint()
