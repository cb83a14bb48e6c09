"""Device Tuning: the split model, the compressor, range coding and the wire format."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.device_tuning import Compressor, Message, SplitModel
from workbench.device_tuning.compressor import load_compressor, save_compressor
from workbench.device_tuning.entropy import decode_symbols, encode_symbols
from workbench.device_tuning.train import CompressorTraining, distill_loss, train_compressor
from workbench.device_tuning.wire import HEADER_BYTES
from workbench.errors import WireFormatError, WorkbenchError
from workbench.models import load_base_model
from workbench.models.base import CachedFeatures

pytest.importorskip("constriction")

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "sim-typical-espeak"


@pytest.fixture(scope="module")
def backend():
    return load_base_model("tiny").freeze()


def _takes(n: int = 6) -> list[tuple[np.ndarray, str]]:
    rows = [json.loads(line) for line in (SAMPLE / "manifest.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r["status"] == "ok"][:n]
    return [(sf.read(SAMPLE / r["audio_path"], dtype="float32")[0], r["transcript"]) for r in rows]


@pytest.fixture(scope="module")
def clips():
    return [w for w, _ in _takes()]


def _message(**kw) -> Message:
    base = dict(fingerprint=b"\x01" * 8, compressor=b"\x02" * 8, split_layer=4, stride=2, bits=3, dims=16,
                speaker="sim-als", frames=75, payload=b"\x00\x01\x02\x03" * 3)
    base.update(kw)
    return Message(**base)


# -- the split ---------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [1, 4, 8])
def test_identity_split_equals_unsplit(backend, clips, k):
    split = SplitModel(backend, k)
    full, lens = backend.log_probs(backend.featurize(clips))
    hidden = [it.features for it in split.device_hidden(clips)]
    batch = backend.collate([CachedFeatures(h, h.shape[0], h.shape[0], k) for h in hidden], [0] * len(hidden))
    lp, lens2 = backend.log_probs(batch)
    assert torch.equal(lens, lens2)
    for i, n in enumerate(lens.tolist()):
        assert torch.allclose(lp[i, :n], full[i, :n], atol=1e-4)
    assert split.transcribe(clips) == backend.transcribe(clips)


def test_bad_split_layer_names_the_range(backend):
    with pytest.raises(WorkbenchError, match="1 to 8"):
        SplitModel(backend, 9)
    with pytest.raises(WorkbenchError, match="width 100"):
        SplitModel(backend, 4, Compressor(100))


def test_round_trip_through_bytes_matches_in_process(backend, clips):
    split = SplitModel(backend, 4, Compressor(backend.hidden_size, dims=8, bits=2))
    msgs = split.encode(clips[:3], speaker="sim-x")
    restored = split.restore([Message.from_bytes(m.to_bytes()) for m in msgs])
    with torch.no_grad():
        for it, r in zip(split.device_hidden(clips[:3]), restored):
            want = split.compressor.decode(split.compressor.encode(it.features[None]), it.length)[0]
            assert r.shape == (it.length, backend.hidden_size)
            assert torch.allclose(r, want, atol=1e-6)


def test_server_refuses_another_model_or_compressor(backend, clips):
    split = SplitModel(backend, 4, Compressor(backend.hidden_size))
    msg = split.encode(clips[:1])[0]
    other = SplitModel(backend, 4, Compressor(backend.hidden_size))  # other random weights
    with pytest.raises(WireFormatError, match="compressor"):
        other.restore([msg])
    import dataclasses
    with pytest.raises(WireFormatError, match="base model"):
        split.restore([dataclasses.replace(msg, fingerprint=b"\x00" * 8)])


# -- compressor ----------------------------------------------------------------------------------
def test_compressor_symbols_in_range_and_ste_passes_gradients():
    c = Compressor(d_model=12, dims=5, bits=3, stride=3)
    h = torch.randn(2, 10, 12, requires_grad=True)
    sym = c.encode(h)
    assert sym.shape == (2, 4, 5) and sym.min() >= 0 and sym.max() <= 7
    out = c(h)
    assert out.shape == h.shape
    out.sum().backward()
    assert h.grad is not None and h.grad.abs().sum() > 0
    assert all(p.grad is not None for p in c.down.parameters())
    with torch.no_grad():  # without the rounding: the bottleneck alone, off the wire's states by at most half a level
        unrounded, wire = c.unrounded(h), c.decode(sym, 10)
    assert unrounded.shape == h.shape and torch.allclose(c(h), wire, atol=1e-6)
    assert not torch.equal(unrounded, wire)
    z = torch.tanh(c.down(c._stack(h)))
    assert torch.allclose(unrounded, c.expand(z, 10)) and (c.dequantize(sym) - z).abs().max() <= 1 / 7 + 1e-6


def test_fit_tables_counts_frequencies():
    c = Compressor(d_model=4, dims=2, bits=1, stride=1)
    c.fit_tables([torch.tensor([[0, 1], [0, 1], [0, 0]])], prior=0.0)
    assert torch.allclose(c.tables, torch.tensor([[1.0, 0.0], [1 / 3, 2 / 3]]))


def test_compressor_file_round_trip_and_crafted_files(tmp_path):
    c = Compressor(d_model=8, dims=4, bits=2, stride=2, hidden=16)
    c.fit_tables([torch.randint(0, 4, (20, 4))])
    p = save_compressor(c, tmp_path / "c.safetensors", split_layer=3, base_fingerprint="ab" * 32)
    c2, meta = load_compressor(p)
    assert c2.identity() == c.identity() and meta["split_layer"] == 3

    from safetensors.torch import save_file
    good = {k: v.contiguous() for k, v in c.state_dict().items()}
    cases = {
        "not_ours.safetensors": ({"config": "{}"}, good),
        "lies.safetensors": ({"format": "workbench-compressor", "split_layer": "3", "base_fingerprint": "x",
                              "config": json.dumps({"d_model": 8, "dims": 99, "bits": 2, "stride": 2,
                                                    "hidden": 16})}, good),
        "huge.safetensors": ({"format": "workbench-compressor", "split_layer": "3", "base_fingerprint": "x",
                              "config": json.dumps({"d_model": 10**9, "dims": 4, "bits": 2, "stride": 2,
                                                    "hidden": 16})}, good),
        "badjson.safetensors": ({"format": "workbench-compressor", "config": "{not json"}, good),
        "zero_table.safetensors": ({"format": "workbench-compressor", "split_layer": "3", "base_fingerprint": "x",
                                    "config": json.dumps({"d_model": 8, "dims": 4, "bits": 2, "stride": 2,
                                                          "hidden": 16})},
                                   {**good, "tables": torch.zeros(4, 4)}),
    }
    for name, (meta, tensors) in cases.items():
        save_file(tensors, str(tmp_path / name), metadata=meta)
        with pytest.raises(WireFormatError):
            load_compressor(tmp_path / name)
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 40)
    with pytest.raises(WireFormatError):
        load_compressor(tmp_path / "junk.safetensors")


# -- range coding --------------------------------------------------------------------------------
def test_range_coding_is_lossless_and_near_the_entropy():
    rng = np.random.default_rng(0)
    p = np.array([0.6, 0.2, 0.1, 0.05, 0.02, 0.01, 0.01, 0.01])
    tables = np.tile(p, (4, 1))
    sym = rng.choice(8, size=(2000, 4), p=p)
    data = encode_symbols(sym, tables)
    assert (decode_symbols(data, tables, frames=2000) == sym).all()
    entropy = -(p * np.log2(p)).sum() * sym.size
    assert len(data) * 8 < 1.03 * entropy + 64
    assert len(data) * 8 < 0.75 * 3 * sym.size  # well under the nominal 3 bits a symbol


def test_distill_loss_zero_for_equal_and_masks_padding():
    lp = torch.log_softmax(torch.randn(2, 5, 7), -1)
    assert distill_loss(lp, lp, torch.tensor([5, 3])).abs() < 1e-6
    other = lp.clone()
    other[1, 3:] = torch.log_softmax(torch.randn(2, 7), -1)  # only padding differs
    assert distill_loss(other, lp, torch.tensor([5, 3])).abs() < 1e-6


def test_a_few_training_steps_lower_the_loss(backend, clips):
    texts = [t for _, t in _takes()]
    split = SplitModel(backend, 4, Compressor(backend.hidden_size, dims=16, bits=3))
    hidden = split.device_hidden(clips)
    hist = train_compressor(split, hidden, texts, CompressorTraining(seconds=60, max_steps=30, batch_size=6, lr=3e-3))
    assert len(hist) == 30
    assert np.mean([h["loss"] for h in hist[-5:]]) < 0.7 * np.mean([h["loss"] for h in hist[:5]])
    assert not torch.allclose(split.compressor.tables, torch.full_like(split.compressor.tables, 1 / 8))


# -- wire format ---------------------------------------------------------------------------------
def test_wire_round_trip_and_header_size():
    m = _message()
    data = m.to_bytes()
    assert len(data) == HEADER_BYTES + len("sim-als") + 12
    assert Message.from_bytes(data) == m


def test_every_truncation_and_extension_is_refused():
    data = _message().to_bytes()
    for n in range(len(data)):
        with pytest.raises(WireFormatError):
            Message.from_bytes(data[:n])
    with pytest.raises(WireFormatError, match="longer"):
        Message.from_bytes(data + b"\x00")


def test_header_that_lies_about_sizes_is_refused():
    data = bytearray(_message().to_bytes())
    struct.pack_into("<I", data, 16, 10**6)  # payload length
    with pytest.raises(WireFormatError, match="header says"):
        Message.from_bytes(bytes(data))
    data = bytearray(_message().to_bytes())
    struct.pack_into("<H", data, 10, 200)  # speaker id length over the limit
    with pytest.raises(WireFormatError, match="speaker id"):
        Message.from_bytes(bytes(data))


@pytest.mark.parametrize("field,value,match", [
    ("bits", 11, "bits"), ("dims", 0, "symbols per frame"), ("stride", 0, "stride"),
    ("frames", 0, "encoder frames"), ("speaker", "../etc", "speaker id"), ("payload", b"\x00" * 5, "4-byte"),
])
def test_out_of_range_fields_are_refused(field, value, match):
    with pytest.raises(WireFormatError, match=match):
        _message(**{field: value}).to_bytes()


def test_any_flipped_bit_is_caught():
    data = _message().to_bytes()
    for i in range(len(data)):
        bad = bytearray(data)
        bad[i] ^= 0x10
        with pytest.raises(WireFormatError):
            Message.from_bytes(bytes(bad))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_random_bytes_parse_or_refuse(blob):
    try:
        m = Message.from_bytes(blob)
    except WireFormatError:
        return
    assert m.to_bytes() == blob


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=HEADER_BYTES, max_size=120), st.integers(0, 119))
def test_fuzz_valid_header_with_garbage(blob, cut):
    data = _message().to_bytes()
    mixed = data[:cut] + blob[cut:] if cut < len(blob) else data
    try:
        Message.from_bytes(mixed)
    except WireFormatError:
        pass


def test_rate_estimate_follows_how_predictable_the_symbols_are():
    torch.manual_seed(0)
    c = Compressor(d_model=6, dims=4, bits=3, stride=1, hidden=8)
    spread = torch.randn(4, 50, 6) * 5
    h = spread.clone().requires_grad_(True)
    r_spread = c.rate_bits(h)
    r_flat = c.rate_bits(torch.zeros(4, 50, 6))
    assert 0 <= r_flat < r_spread <= 3.0 + 1e-4
    r_spread.backward()
    assert all(p.grad is not None for p in c.down.parameters())
    # the estimate tracks the range coder's real cost on the same symbols, within half a bit
    with torch.no_grad():
        sym = c.encode(spread)
        c.fit_tables([s for s in sym])
        real = len(encode_symbols(sym.reshape(-1, 4).numpy(), c.tables.numpy())) * 8 / sym.numel()
    assert abs(real - float(r_spread)) < 0.5


# -- hostile input (issue 24 B3, B14) ------------------------------------------------------------
def _crafted(tmp_path, name: str, *, tensors: dict | None = None, card: str | None = None, **config) -> Path:
    """A compressor file written by hand: ``config`` overrides the sizes; ``tensors`` the weights."""
    from safetensors.torch import save_file

    cfg = {"d_model": 8, "dims": 4, "bits": 2, "stride": 2, "hidden": 16, **config}
    if tensors is None:
        c = Compressor(8, 4, 2, 2, 16)
        tensors = {k: v.contiguous() for k, v in c.state_dict().items()}
    meta = {"format": "workbench-compressor", "split_layer": "3", "base_fingerprint": "ab" * 32,
            "config": json.dumps(cfg), "card": card if card is not None else "{}"}
    save_file(tensors, str(tmp_path / name), metadata=meta)
    return tmp_path / name


def test_compressor_files_are_checked_like_submodels(tmp_path):
    """Probes of issue 24 B14: deep JSON, near-zero tables, NaN/Inf weights: a plain refusal each."""
    good = {k: v.contiguous() for k, v in Compressor(8, 4, 2, 2, 16).state_dict().items()}
    load_compressor(_crafted(tmp_path, "good.safetensors"))  # the control loads
    cases = {
        "deep.safetensors": ({"card": "[" * 50_000 + "]" * 50_000}, "metadata"),
        "long.safetensors": ({"card": json.dumps({"x": "y" * 100_000})}, "metadata"),
        "subnormal.safetensors": ({"tensors": {**good, "tables": torch.full((4, 4), 1e-40)}}, "tables"),
        "near_zero.safetensors": ({"tensors": {**good, "tables": torch.tensor([[1.0, 1e-30, 1e-30, 1e-30]] * 4)}},
                                  "tables"),
        "not_summing.safetensors": ({"tensors": {**good, "tables": torch.full((4, 4), 0.5)}}, "tables"),
        "nan.safetensors": ({"tensors": {**good, "up.0.weight": torch.full_like(good["up.0.weight"], float("nan"))}},
                            "NaN"),
        "inf.safetensors": ({"tensors": {**good, "down.1.bias": torch.full_like(good["down.1.bias"], float("inf"))}},
                            "NaN"),
        "ints.safetensors": ({"tensors": {**good, "up.2.bias": torch.zeros(16, dtype=torch.int32)}}, "integers"),
    }
    for name, (kw, match) in cases.items():
        with pytest.raises(WireFormatError, match=match):
            load_compressor(_crafted(tmp_path, name, **kw))


def test_largest_claimed_sizes_are_refused_before_allocating(tmp_path):
    """A small file claiming the largest sizes (2.4 GB of weights) is refused from its header alone."""
    import resource
    import time

    path = _crafted(tmp_path, "huge.safetensors", d_model=4096, hidden=8192, stride=8, dims=1024, bits=8)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    t0 = time.perf_counter()
    with pytest.raises(WireFormatError, match="do not match the sizes"):
        load_compressor(path)
    assert time.perf_counter() - t0 < 2.0
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak < 300_000  # under 300 MB more, not 2.4 GB


def test_fit_tables_keeps_every_probability_usable():
    from workbench.device_tuning.entropy import MIN_PROBABILITY, check_tables

    c = Compressor(d_model=4, dims=2, bits=2, stride=1)
    c.fit_tables([torch.zeros(3_000_000, 2, dtype=torch.long)])  # 0.5 / 3e6 would be under the floor
    assert float(c.tables.min()) >= MIN_PROBABILITY * 0.999 and check_tables(c.tables.numpy()) is None


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 12), st.integers(1, 8), st.integers(1, 300), st.floats(0.02, 5.0), st.integers(0, 2**31))
def test_payload_bounds_hold_for_every_symbol_sequence(dims, bits, frames, concentration, seed):
    """Whatever symbols a device sends (the likeliest, the rarest, random), the payload length
    is within :func:`payload_bounds`: the server's size check never refuses a real message."""
    from workbench.device_tuning.entropy import MIN_PROBABILITY, payload_bounds

    rng = np.random.default_rng(seed)
    t = np.maximum(rng.dirichlet(np.full(2**bits, concentration), size=dims), MIN_PROBABILITY)
    t = (t / t.sum(1, keepdims=True)).astype(np.float32)
    lo, hi = payload_bounds(t, frames)
    for sym in (np.tile(t.argmax(1), (frames, 1)), np.tile(t.argmin(1), (frames, 1)),
                np.stack([rng.choice(2**bits, size=frames, p=row / row.sum()) for row in t.astype(np.float64)], 1)):
        n = len(encode_symbols(sym, t))
        assert lo <= n <= hi


def test_many_frames_with_a_tiny_payload_are_refused_at_once(backend):
    """Issue 24 B3: 15,000 frames claimed with an empty payload (40 bytes that cost 19 s of CPU)."""
    import time

    from workbench.device_tuning.wire import MAX_FRAMES

    c = Compressor(backend.hidden_size, dims=16, bits=3, stride=2)
    split = SplitModel(backend, 4, c)
    ids = dict(fingerprint=split.fingerprint, compressor=c.identity(), split_layer=4, stride=2, bits=3, dims=16)
    t0 = time.perf_counter()
    for frames, payload in ((MAX_FRAMES, b""), (MAX_FRAMES, b"\x00" * 64), (2, b"\x00" * 4000)):
        with pytest.raises(WireFormatError, match="take .* bytes|at most"):
            split.symbols(Message(**ids, speaker="", frames=frames, payload=payload))
    assert time.perf_counter() - t0 < 3.0
    # a real message that claims more than the longest take (30 s) is refused too, with its payload intact
    big = split.max_frames + 2
    sym = np.zeros((-(-big // 2), 16), dtype=np.int64)
    msg = Message(**ids, speaker="", frames=big, payload=encode_symbols(sym, c.tables.numpy()))
    with pytest.raises(WireFormatError, match="at most 30 s|at most .* per message"):
        split.symbols(msg)
    ok = Message(**ids, speaker="", frames=split.max_frames, payload=encode_symbols(sym[:-1], c.tables.numpy()))
    assert split.symbols(ok).shape == (-(-split.max_frames // 2), 16)


def test_a_payload_that_does_not_decode_is_refused_per_message(backend, clips):
    """Issue 24 B1 probe: every payload byte 0xff, the CRC made valid: a WireFormatError for it alone."""
    import dataclasses

    split = SplitModel(backend, 4, Compressor(backend.hidden_size, dims=16, bits=3))
    good = split.encode(clips[:1])[0]
    poisoned = Message.from_bytes(dataclasses.replace(good, payload=b"\xff" * len(good.payload)).to_bytes())
    with pytest.raises(WireFormatError, match="does not decode"):
        split.symbols(poisoned)
    assert split.symbols(good).shape == (good.symbol_frames, 16)


@pytest.mark.parametrize("merged", [False, True], ids=["live", "merged"])
def test_transcribe_hidden_without_adapted_is_the_base_model(clips, merged):
    """Issue 24 review: with ``adapted=None`` the server part ran with whatever adapters had been injected
    into the same backend (a Trainer's, a bank's). It must be the base model, and leave them as they were."""
    from workbench.adapters import LoRAConfig, inject

    backend = load_base_model("tiny").freeze()  # its own copy: adapters go into it
    split = SplitModel(backend, 4)
    hidden = [it.features for it in split.device_hidden(clips)]
    base = split.transcribe_hidden(hidden)
    adapted = inject(backend, LoRAConfig(rank=2, top_layers=backend.num_layers - 4))
    torch.manual_seed(0)
    with torch.no_grad():
        for p in adapted.trainable_parameters():
            p.add_(torch.randn_like(p) * 0.3)  # an adapter that changes what the server hears
    if merged:
        adapted.merge(0)
    personal = split.transcribe_hidden(hidden, adapted=adapted, rows=[0] * len(hidden))
    assert personal != base
    assert split.transcribe_hidden(hidden) == base  # adapted=None: the base model
    assert adapted.enabled and split.transcribe_hidden(hidden, adapted=adapted, rows=[0] * len(hidden)) == personal
    adapted.remove()
