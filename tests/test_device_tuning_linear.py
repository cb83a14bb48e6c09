"""Linear compressors (transform coders) for the Whisper split at k = 0 (issue 28): what training
sees is what the server restores, the closed-form fit in Whisper's own metric, the 9- and 10-bit
symbols on the wire, the restored log-mel kept in Whisper's range, and every crafted file refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from workbench.device_tuning import Compressor, Message, split_for
from workbench.device_tuning.compressor import load_compressor, save_compressor
from workbench.device_tuning.entropy import count_tables, decode_symbols, encode_symbols, payload_bounds
from workbench.device_tuning.transform import fit_linear_compressor, token_fisher, whitened_components
from workbench.device_tuning.whisper_split import LOG_MEL_SPAN
from workbench.device_tuning.whisper_train import distill_items
from workbench.errors import WireFormatError, WorkbenchError

pytest.importorskip("constriction")


def test_a_linear_compressor_rounds_coefficients_to_centred_integer_symbols():
    c = Compressor(8, dims=3, bits=4, stride=2, hidden=0, linear=1).eval()
    with torch.no_grad():
        c.down.weight.zero_()
        c.down.weight[0, 0], c.down.bias[:] = 1.0, torch.tensor([0.0, 0.4, -100.0])
    h = torch.zeros(1, 4, 8)
    h[0, :, 0] = torch.tensor([2.6, 2.6, -3.4, -3.4])  # frames 0-1 and 2-3 stack into symbol frames 0 and 1
    sym = c.encode(h)
    assert sym[0, :, 0].tolist() == [8 + 3, 8 - 3]  # round(2.6 + 0) and round(-3.4): centred on 2**(bits-1)
    assert sym[0, :, 1].tolist() == [8, 8] and sym[0, :, 2].tolist() == [0, 0]  # 0.4 rounds to 0; -100 clips
    assert c.dequantize(sym)[0, :, 0].tolist() == [3.0, -3.0]
    with torch.no_grad():  # the training round trip is the server's
        assert torch.allclose(c(h), c.decode(sym, 4), atol=1e-6)


def test_linear_compressor_files_load_keep_their_id_and_crafted_ones_are_refused(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    c = Compressor(80, dims=4, bits=9, stride=4, hidden=0, linear=1)
    c.fit_tables([torch.randint(200, 300, (40, 4))])
    path = save_compressor(c, tmp_path / "c.safetensors", split_layer=0, base_fingerprint="ab" * 32)
    loaded, _ = load_compressor(path)
    assert loaded.config.linear == 1 and loaded.identity() == c.identity()
    assert c.identity() != Compressor(80, dims=4, bits=9, stride=4, hidden=1).identity()
    with safe_open(str(path), framework="pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    cases = [({"linear": 2}, "linear must be 0 or 1"),
             ({"hidden": 256}, "has no MLP"),
             ({"linear": 0}, "hidden must be 1"),
             ({"bits": 11}, "bits must be 1 to 10"),
             ({"linear": "1"}, "whole numbers")]
    for change, why in cases:
        cfg = {**json.loads(meta["config"]), **change}
        save_file(tensors, str(tmp_path / "bad.safetensors"), metadata={**meta, "config": json.dumps(cfg)})
        with pytest.raises(WireFormatError, match=why):
            load_compressor(tmp_path / "bad.safetensors")
    with pytest.raises(WorkbenchError, match="has no MLP"):
        Compressor(80, dims=4, bits=9, stride=4, hidden=0, context=3, linear=1)


def test_9_bit_symbols_code_losslessly_across_the_coders_chunks():
    rng = np.random.default_rng(0)
    sym = np.clip(np.rint(rng.laplace(256, 30, size=(150, 5))), 0, 511).astype(np.int64)  # > 64 frames: 3 chunks
    t = count_tables([sym[:100]], 5, 512)
    data = encode_symbols(sym, t)
    lo, hi = payload_bounds(t, 150)
    assert lo <= len(data) <= hi
    assert (decode_symbols(data, t, frames=150) == sym).all()
    msg = Message(b"\x01" * 8, b"\x02" * 8, split_layer=0, stride=4, bits=10, dims=5, speaker="",
                  frames=600, payload=data, samples=96_000)
    assert Message.from_bytes(msg.to_bytes()).bits == 10


def test_whitened_components_are_principal_components_in_the_metric():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2000, 6)) * [3.0, 2.0, 1.0, 1.0, 0.5, 0.5]
    a, s, mean = whitened_components(x, np.eye(6), dims=2, lam=0.0)
    assert np.allclose(a, s) and np.allclose(a @ a.T, np.eye(2), atol=1e-9)  # plain PCA: orthonormal
    assert np.allclose(np.abs(a[:, :2]), np.eye(2), atol=0.1)  # the two widest coordinates
    fisher = np.diag([1e-3, 1e-3, 1e-3, 1e-3, 1e-3, 100.0])  # only the last coordinate matters to the model
    errors = []
    for metric in (np.eye(6), fisher):
        a, s, mean = whitened_components(x, metric, dims=2, lam=0.01)
        e = x - ((x - mean) @ a.T @ s + mean)
        errors.append(np.einsum("ni,ij,nj->", e, fisher, e))  # both scored in the model's metric
    assert errors[1] < errors[0] / 10  # the metric's own components keep what it weighs
    with pytest.raises(WorkbenchError, match="dims must be 1 to 6"):
        whitened_components(x, np.eye(6), dims=7)


@pytest.fixture(scope="module")
def fitted(whisper_dir):
    """A tiny random Whisper's split at k=0 with a linear compressor fitted on four noise clips."""
    from _models import noise_waves
    from workbench.models import load_base_model

    backend = load_base_model(whisper_dir).freeze()
    split = split_for(backend, 0)
    clips = noise_waves(4, seed=5, lo=8000, hi=20000)
    items = distill_items(split, clips)
    fisher = token_fisher(split, items, stride=2, draws=1)
    comp, info = fit_linear_compressor(split, items, fisher, dims=12, bits=8, stride=2, step=0.2)
    split.compressor = comp
    return split, clips, fisher, info


def test_the_fisher_information_is_symmetric_positive_and_split_0_only(fitted, whisper_dir):
    from workbench.models import load_base_model

    split, _clips, fisher, _info = fitted
    assert fisher.shape == (2 * split.width, 2 * split.width)
    assert np.allclose(fisher, fisher.T) and np.linalg.eigvalsh(fisher).min() > -1e-9 * np.trace(fisher)
    assert np.trace(fisher) > 0
    with pytest.raises(WorkbenchError, match="not supported yet at split 1"):
        token_fisher(split_for(load_base_model(whisper_dir).freeze(), 1), [], stride=2)


def test_a_fitted_linear_compressor_travels_through_the_wire_and_restores_whisper_log_mel(fitted):
    split, clips, _fisher, info = fitted
    assert 0.0 <= info["clipped"] < 0.01
    msgs = split.encode(clips)
    wire = [Message.from_bytes(m.to_bytes()) for m in msgs]
    assert all(m.bits == 8 and len(m.payload) > 4 for m in wire)
    items = split.device_hidden(clips)
    with torch.no_grad():
        for it, restored in zip(items, split.restore(wire), strict=True):
            h = it.features
            trained = split.round_trip(split.compressor, h[None], [it.samples])[0]
            assert torch.allclose(restored, trained, atol=1e-5)  # the server restores what training sees
            floor = float(h.min())
            assert float(restored.min()) >= floor - 1e-6 and float(restored.max()) <= floor + LOG_MEL_SPAN + 1e-5
            err = float(((restored - h) ** 2).mean())
            assert err < float(((h - h.mean()) ** 2).mean())  # closer than the window's mean


def test_split_0_restores_no_log_mel_outside_whispers_range(whisper_dir):
    from _models import noise_waves
    from workbench.models import load_base_model

    split = split_for(load_base_model(whisper_dir).freeze(), 0)
    split.compressor = Compressor(split.width, dims=2, bits=2, stride=4, hidden=4)
    (it,) = split.device_hidden(noise_waves(1, seed=3, lo=8000, hi=9000))
    h = it.features[None]
    floor = float(h.min())
    for wild, coded in ((5.0, floor + LOG_MEL_SPAN), (-5.0, floor)):
        out = split.round_trip(lambda x, valid, wild=wild: torch.full_like(x, wild), h, [it.samples])
        assert torch.allclose(out.amax(), torch.tensor(coded)) and torch.allclose(out.amin(), torch.tensor(floor))


def test_the_recipe_refuses_linear_above_split_0():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "recipes"))
    from train_whisper_compressor import main

    with pytest.raises(SystemExit, match="--linear is supported at --split 0"):
        main(["--split", "2", "--linear"])


def _with_restoration(comp: Compressor, hidden: int = 6, context: int = 3, seed: int = 0) -> Compressor:
    """``comp`` (linear) with a restoration network: random weights when ``seed`` (else it starts at zero)."""
    c = comp.config
    out = Compressor(c.d_model, c.dims, c.bits, c.stride, hidden=hidden, context=context, linear=1)
    out.load_state_dict(comp.state_dict(), strict=False)
    if seed:
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in out.restoration.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
    return out.eval()


def test_a_restoration_network_starts_as_the_linear_compressor_and_keeps_its_symbols(tmp_path):
    plain = Compressor(80, dims=4, bits=9, stride=4, hidden=0, linear=1).eval()
    plain.fit_tables([torch.randint(200, 300, (40, 4))])
    h = torch.randn(2, 10, 80)
    fresh, trained = _with_restoration(plain), _with_restoration(plain, seed=3)
    with torch.no_grad():
        assert torch.equal(fresh.encode(h), plain.encode(h)) and torch.equal(trained.encode(h), plain.encode(h))
        assert torch.allclose(fresh(h), plain(h), atol=1e-6)  # starts as the linear one
        assert not torch.allclose(trained(h), plain(h), atol=1e-3)  # and learns a correction
    assert len({plain.identity(), fresh.identity(), trained.identity()}) == 3
    path = save_compressor(trained, tmp_path / "r.safetensors", split_layer=0, base_fingerprint="ab" * 32)
    loaded, _ = load_compressor(path)
    with torch.no_grad():
        assert loaded.identity() == trained.identity() and torch.allclose(loaded(h), trained(h), atol=1e-6)
    with pytest.raises(WorkbenchError, match="needs both a width"):
        Compressor(80, dims=4, bits=9, stride=4, hidden=8, context=0, linear=1)


def test_a_crafted_restoration_network_file_is_refused(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    c = _with_restoration(Compressor(80, dims=4, bits=9, stride=4, hidden=0, linear=1), seed=1)
    c.fit_tables([torch.randint(200, 300, (40, 4))])
    path = save_compressor(c, tmp_path / "c.safetensors", split_layer=0, base_fingerprint="ab" * 32)
    with safe_open(str(path), framework="pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    cases = [(tensors, {"context": 0}, "needs both a width"),
             (tensors, {"context": 4}, "context must be 0 or an odd"),
             (tensors, {"hidden": 7}, "do not match the sizes"),
             ({k: v for k, v in tensors.items() if not k.startswith("restoration.4")}, {}, "do not match the sizes"),
             ({**tensors, "restoration.2.weight": tensors["restoration.2.weight"] * float("nan")}, {}, "not finite")]
    for weights, change, why in cases:
        cfg = {**json.loads(meta["config"]), **change}
        save_file(weights, str(tmp_path / "bad.safetensors"), metadata={**meta, "config": json.dumps(cfg)})
        with pytest.raises(WireFormatError, match=why):
            load_compressor(tmp_path / "bad.safetensors")


def test_the_server_restores_what_training_sees_through_a_restoration_network(fitted):
    split, clips, _fisher, _info = fitted
    plain = split.compressor
    split.compressor = comp = _with_restoration(plain, hidden=8, context=5, seed=7)
    try:
        wire = [Message.from_bytes(m.to_bytes()) for m in split.encode(clips)]
        with torch.no_grad():
            for it, restored in zip(split.device_hidden(clips), split.restore(wire), strict=True):
                trained = split.round_trip(comp, it.features[None], [it.samples])[0]
                assert torch.allclose(restored, trained, atol=1e-5)  # the edge of the coded frames included
                x, valid = split.compressor_input(it.features[None].float(), [it.samples])
                z = comp._bounded(x)
                unmasked = comp._restored(comp.up(z).reshape(1, -1, 80), None)[:, : x.shape[1]]
                assert not torch.allclose(unmasked, comp.expand(z, x.shape[1], valid), atol=1e-4)  # the mask matters
    finally:
        split.compressor = plain


def test_server_only_training_keeps_the_symbols_tables_and_bit_rate(fitted, tmp_path):
    import sys
    from pathlib import Path

    from workbench.device_tuning.whisper_train import WhisperCompressorTrainer, WhisperDistillSettings

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "recipes"))
    from train_whisper_compressor import keep_device_side

    split, clips, _fisher, _info = fitted
    plain = split.compressor
    path = save_compressor(plain, tmp_path / "c.safetensors", split_layer=0, base_fingerprint="ab" * 32)
    comp = Compressor(**{**vars(plain.config), "hidden": 8, "context": 3})  # as the recipe builds it: fresh tables
    comp.load_state_dict({k: v for k, v in plain.state_dict().items() if k != "tables"}, strict=False)
    with pytest.raises(SystemExit, match="--step 0.2"):
        keep_device_side(comp, path, {"file": "c.safetensors", "step": 0.2}, {"step": 0.3})
    assert not torch.equal(comp.tables, plain.tables)
    assert keep_device_side(comp, path, {"file": "c.safetensors", "step": 0.2}, {"step": 0.2})["server_only"]
    assert torch.equal(comp.tables, plain.tables)  # the --init compressor's: the same bit rate
    split.compressor = comp
    try:
        before = {k: v.clone() for k, v in comp.state_dict().items()}
        bytes_before = sum(len(m.to_bytes()) for m in split.encode(clips))
        symbols = [split.coded_symbols(it.features, it.samples) for it in split.device_hidden(clips)]
        trainer = WhisperCompressorTrainer(split, distill_items(split, clips),
                                           WhisperDistillSettings(max_steps=3, batch_size=2, lr=1e-2, warmup_steps=1))
        trainer.train()
        after = comp.state_dict()
        assert all(torch.equal(after[k], before[k]) for k in ("down.weight", "down.bias", "tables"))
        assert not torch.equal(after["restoration.4.weight"], before["restoration.4.weight"])
        with torch.no_grad():
            again = [split.coded_symbols(it.features, it.samples) for it in split.device_hidden(clips)]
        assert all(torch.equal(a, b) for a, b in zip(symbols, again, strict=True))
        assert sum(len(m.to_bytes()) for m in split.encode(clips)) == bytes_before
    finally:
        split.compressor = plain


@pytest.mark.parametrize("argv, why", [
    (["--split", "0", "--restore", "8"], "for linear compressors"),
    (["--split", "0", "--linear", "--restore", "8"], "give it with --init"),
    (["--split", "0", "--linear", "--server-only"], "give it with --init"),
    (["--split", "0", "--linear", "--server-only", "--init", "x.safetensors", "--rate-weight", "1"], "leave out"),
])
def test_the_recipe_refuses_restoration_options_it_cannot_honour(argv, why):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "recipes"))
    from train_whisper_compressor import main

    with pytest.raises(SystemExit, match=why):
        main(argv)
