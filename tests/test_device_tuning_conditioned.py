"""Symbol tables conditioned on the previous frame (issue 28): the same symbols in fewer bits,
lossless, with the payload's size bounds and every refusal of per-position tables."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.device_tuning import Compressor, split_for
from workbench.device_tuning.compressor import load_compressor, save_compressor
from workbench.device_tuning.entropy import (MIN_PROBABILITY, check_tables, decode_symbols, encode_symbols,
                                             payload_bounds)
from workbench.device_tuning.padding import encode_padded
from workbench.errors import WireFormatError, WorkbenchError

pytest.importorskip("constriction")


def _tables(rng, dims: int, levels: int, concentration: float) -> np.ndarray:
    t = np.maximum(rng.dirichlet(np.full(levels, concentration), size=(dims, levels + 1)), MIN_PROBABILITY)
    return (t / t.sum(-1, keepdims=True)).astype(np.float32)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 10), st.integers(1, 4), st.integers(1, 120), st.floats(0.05, 5.0), st.integers(0, 2**31))
def test_conditioned_coding_is_lossless_and_within_its_bounds(dims, bits, frames, concentration, seed):
    rng = np.random.default_rng(seed)
    t = _tables(rng, dims, 2**bits, concentration)
    lo, hi = payload_bounds(t, frames)
    walk = np.zeros((frames, dims), dtype=np.int64)  # each frame drawn from its row after the previous symbol
    previous = np.full(dims, 2**bits)
    for f in range(frames):
        walk[f] = previous = [rng.choice(2**bits, p=t[j, c] / t[j, c].sum()) for j, c in enumerate(previous)]
    for sym in (walk, rng.integers(0, 2**bits, size=(frames, dims)), np.zeros((frames, dims), dtype=np.int64)):
        data = encode_symbols(sym, t)
        assert lo <= len(data) <= hi
        assert (decode_symbols(data, t, frames=frames) == sym).all()


def test_a_damaged_conditioned_payload_is_refused_or_decodes_to_valid_symbols():
    rng = np.random.default_rng(0)
    t = _tables(rng, 6, 8, 5.0)  # no row near-certain: a 40-frame payload has a least size
    sym = rng.integers(0, 8, size=(40, 6))
    data = encode_symbols(sym, t)
    with pytest.raises(WireFormatError, match="whole number"):
        decode_symbols(data[:-1], t, frames=40)
    with pytest.raises(WireFormatError, match="take"):
        decode_symbols(data[:4], t, frames=40)
    for i in range(0, len(data), 3):
        flipped = bytearray(data)
        flipped[i] ^= 0x5A
        try:
            out = decode_symbols(bytes(flipped), t, frames=40)
        except WireFormatError:
            continue
        assert out.shape == (40, 6) and out.min() >= 0 and out.max() < 8  # damaged, but never out of range


def test_fit_tables_counts_each_symbol_after_its_predecessor():
    c = Compressor(d_model=4, dims=2, bits=1, stride=1, table_context=1)
    assert tuple(c.tables.shape) == (2, 3, 2)  # (dims, levels + 1: after 0, after 1, first frame; levels)
    c.fit_tables([torch.tensor([[0, 1], [1, 1], [1, 1], [0, 1]])])  # + 0.5 to every count
    assert torch.allclose(c.tables[0], torch.tensor([[0.25, 0.75], [0.5, 0.5], [0.75, 0.25]]))
    assert torch.allclose(c.tables[1], torch.tensor([[0.5, 0.5], [0.125, 0.875], [0.25, 0.75]]))
    assert check_tables(c.tables.numpy()) is None
    assert "not (dims, levels)" in check_tables(np.full((2, 2, 2), 0.5))  # one row short


def test_conditioned_compressor_files_load_and_crafted_ones_are_refused(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    c = Compressor(80, dims=4, bits=2, stride=4, hidden=8, table_context=1)
    c.fit_tables([torch.randint(0, 4, (30, 4))])
    path = save_compressor(c, tmp_path / "c.safetensors", split_layer=0, base_fingerprint="ab" * 32)
    loaded, _ = load_compressor(path)
    assert loaded.config.table_context == 1 and torch.equal(loaded.tables, c.tables)
    assert loaded.identity() == c.identity() != Compressor(80, dims=4, bits=2, stride=4, hidden=8).identity()
    with safe_open(str(path), framework="pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    cases = [({"table_context": 2}, tensors, "table_context must be 0 or 1"),
             ({"table_context": 1}, {**tensors, "tables": torch.full((4, 4), 0.25)}, "do not match"),
             ({"table_context": 0}, tensors, "do not match"),
             ({"table_context": 1}, {**tensors, "tables": torch.full((4, 5, 4), 0.5)}, "not probabilities")]
    for change, weights, why in cases:
        cfg = {**json.loads(meta["config"]), **change}
        save_file(weights, str(tmp_path / "bad.safetensors"), metadata={**meta, "config": json.dumps(cfg)})
        with pytest.raises(WireFormatError, match=why):
            load_compressor(tmp_path / "bad.safetensors")


def test_the_padding_code_and_the_recipe_above_split_0_say_not_supported_yet():
    import sys
    from pathlib import Path

    t = np.full((2, 5, 4), 0.25, dtype=np.float32)
    with pytest.raises(WorkbenchError, match="not supported yet"):
        encode_padded(np.zeros((3, 2), dtype=np.int64), t, true_frames=1)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "recipes"))
    from train_whisper_compressor import main

    with pytest.raises(SystemExit, match="not supported yet above split 0"):
        main(["--split", "2", "--table-context", "1"])


def test_a_split_0_message_with_conditioned_tables_restores_the_same_states_in_fewer_bytes(whisper_dir):
    from _models import noise_waves
    from workbench.models import load_base_model

    pytest.importorskip("transformers")
    backend = load_base_model(whisper_dir).freeze()
    rng = np.random.default_rng(2)  # a slowly moving signal: neighbouring frames alike, as in speech
    clips = [np.sin(np.cumsum(rng.uniform(0.01, 0.2, n))).astype(np.float32) * 0.3 + w
             for n, w in ((len(w), w) for w in noise_waves(3, seed=9, lo=8000, hi=20000))]
    plain, cond = split_for(backend, 0), split_for(backend, 0)
    torch.manual_seed(0)
    plain.compressor = Compressor(plain.width, dims=6, bits=3, stride=4, hidden=16).eval()
    cond.compressor = Compressor(plain.width, dims=6, bits=3, stride=4, hidden=16, table_context=1).eval()
    cond.compressor.load_state_dict({k: v for k, v in plain.compressor.state_dict().items() if k != "tables"},
                                    strict=False)
    for split in (plain, cond):
        split.compressor.fit_tables([split.coded_symbols(it.features, it.samples)
                                     for it in split.device_hidden(clips)])
    a, b = plain.encode(clips), cond.encode(clips)
    for ra, rb in zip(plain.restore(a), cond.restore(b), strict=True):
        assert torch.equal(ra, rb)  # the same symbols: only their code differs


def test_symbols_that_repeat_their_predecessor_cost_less_with_conditioned_tables():
    rng = np.random.default_rng(4)

    def chain(frames: int) -> torch.Tensor:  # each position keeps its symbol 90 % of the time
        out = np.zeros((frames, 5), dtype=np.int64)
        out[0] = rng.integers(0, 8, 5)
        for f in range(1, frames):
            out[f] = np.where(rng.random(5) < 0.9, out[f - 1], rng.integers(0, 8, 5))
        return torch.from_numpy(out)

    plain = Compressor(4, dims=5, bits=3, stride=1)
    cond = Compressor(4, dims=5, bits=3, stride=1, table_context=1)
    train = [chain(400) for _ in range(10)]
    plain.fit_tables(train)
    cond.fit_tables(train)
    test = chain(300).numpy()
    assert len(encode_symbols(test, cond.tables.numpy())) < 0.5 * len(encode_symbols(test, plain.tables.numpy()))
