"""The Whisper split's window silence costs almost nothing on the wire (format version 3), and the
device encodes the window of the speaker's Submodel (issue 28)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from workbench.device_tuning import Compressor, Message
from workbench.device_tuning.compressor import save_compressor
from workbench.device_tuning.entropy import decode_symbols, encode_symbols
from workbench.device_tuning.padding import decode_padded, encode_padded
from workbench.device_tuning import SplitModel, split_for
from workbench.device_tuning.whisper_split import true_frames
from workbench.errors import WireFormatError
from workbench.models import load_base_model

pytest.importorskip("transformers")
pytest.importorskip("constriction")

from _models import noise_waves  # noqa: E402


@pytest.fixture(scope="module")
def backend(whisper_dir):
    return load_base_model(whisper_dir).freeze()


@pytest.fixture(scope="module")
def clips():
    return noise_waves(3, seed=5, lo=6000, hi=20000)


def _split(backend, clips, k: int):
    split = split_for(backend, k)
    torch.manual_seed(0)
    comp = Compressor(split.width, dims=6, bits=3, stride=2, hidden=16).eval()
    comp.fit_tables([comp.encode(it.features[None])[0] for it in split.device_hidden(clips)])
    split.compressor = comp
    return split


def test_the_adaptive_code_is_lossless_and_refuses_a_short_or_damaged_payload():
    rng = np.random.default_rng(0)
    tables = rng.dirichlet(np.ones(8), size=5).clip(1e-3)
    tables /= tables.sum(1, keepdims=True)
    sym = np.concatenate([rng.integers(0, 8, (7, 5)), np.tile(rng.integers(0, 8, (1, 5)), (40, 1)),
                          rng.integers(0, 8, (3, 5))])  # padding that mostly repeats, then changes
    data = encode_padded(sym, tables, true_frames=7)
    assert (decode_padded(data, tables, frames=len(sym), true_frames=7) == sym).all()
    assert len(data) < len(encode_symbols(sym, tables)) / 2
    with pytest.raises(WireFormatError, match="take 0 to"):  # more bytes than any coding of these frames
        decode_padded(b"\0" * 4 * 2000, tables, frames=len(sym), true_frames=7)
    with pytest.raises(WireFormatError, match="whole number"):
        decode_padded(data + b"\0", tables, frames=len(sym), true_frames=7)
    assert (decode_padded(encode_padded(sym[:7], tables, 7), tables, frames=7, true_frames=7) == sym[:7]).all()


def test_padding_frames_cost_no_more_than_fixed_tables_and_restore_the_same_states(backend, clips):
    """Above k = 0 (at k = 0 the silence is rebuilt from its floor: test_device_tuning_whisper_silence.py)."""
    split = _split(backend, clips, 1)
    c = split.compressor
    tables = c.tables.numpy()
    for m, h in zip(split.encode(clips), [it.features for it in split.device_hidden(clips)], strict=True):
        assert m.version == 3 and m.padding_coded
        m = Message.from_bytes(m.to_bytes())
        sym = c.encode(h[None])[0].numpy()
        assert (split.symbols(m) == sym).all()  # lossless: the server restores what fixed tables would
        true_sym = -(-true_frames(m.samples, m.frames, 1) // c.config.stride)
        assert true_sym < len(sym) / 2  # these clips sit in windows over twice their length
        # after k layers the padding states carry the audio and the position (an untrained
        # compressor here): never much worse than fixed tables
        assert len(m.payload) <= len(encode_symbols(sym, tables)) + 8


def test_version_2_messages_still_decode_and_the_built_in_split_refuses_version_3(backend, clips):
    split = _split(backend, clips, 1)
    m = split.encode(clips[:1])[0]
    tables = split.compressor.tables.numpy()
    sym = decode_symbols(encode_symbols(split.symbols(m), tables), tables, frames=m.symbol_frames)
    v2 = Message.from_bytes(dataclasses.replace(m, padding_coded=False, payload=encode_symbols(sym, tables)).to_bytes())
    assert v2.version == 2 and (split.symbols(v2) == sym).all()
    assert split.transcribe_hidden(split.restore([v2]), samples=[v2.samples]) == split.transcribe(clips[:1])
    tiny = load_base_model("tiny").freeze()
    built_in = SplitModel(tiny, 4, Compressor(tiny.hidden_size, dims=m.dims, bits=m.bits, stride=m.stride))
    made_there = dataclasses.replace(m, fingerprint=built_in.fingerprint, compressor=built_in.compressor.identity(),
                                     split_layer=4)
    with pytest.raises(WireFormatError, match="format version 3"):
        built_in.symbols(made_there)


# -- the window of the speaker's Submodel ------------------------------------------------------------------
def test_the_device_encodes_a_full_window_and_equals_the_unsplit_full_window_model(backend, clips):
    split = split_for(backend, 1)
    full = split.device_hidden(clips, window="full")
    assert {it.features.shape[0] for it in full} == {1500}
    got = split.transcribe_hidden([it.features for it in full], samples=[len(w) for w in clips])
    saved, backend.window = backend.window, "full"
    try:
        want = [backend.transcribe([w])[0] for w in clips]
    finally:
        backend.window = saved
    assert got == want


def test_a_full_window_submodel_is_served_in_its_window_and_the_client_asks_for_it(whisper_dir, tmp_path, clips):
    """A Submodel trained on Whisper's 30 s window: the server says so (GET), decodes that speaker's
    messages in it, and refuses the other window with a message that names both."""
    from test_device_tuning_whisper_cli import _serve

    from workbench.adapters import LoRAConfig, SubmodelBank
    from workbench.device_tuning.client import DeviceClient
    from workbench.device_tuning.server import ServerCore

    backend = load_base_model(whisper_dir).freeze()
    split = _split(backend, clips, 1)
    cpath = save_compressor(split.compressor, tmp_path / "c.safetensors", split_layer=1,
                            base_fingerprint=backend.fingerprint())
    bank = SubmodelBank(backend, LoRAConfig(rank=2, top_layers=1, decoder=True), ["spk-full", "spk-auto"])
    full_file = bank.export_speaker("spk-full", tmp_path / "full.safetensors", training={"window": "full"})
    auto_file = bank.export_speaker("spk-auto", tmp_path / "auto.safetensors", training={"window": "auto"})
    bank.adapted.remove()
    core = ServerCore(str(cpath), [str(full_file), str(auto_file)], model=whisper_dir)
    info = core.info()
    assert info["window"] == "auto" and info["windows"] == {"spk-full": "full"}
    auto_msg = split.encode(clips[:1], speaker="spk-full")[0]
    with pytest.raises(WireFormatError, match=r"encoded in the audio plus a margin.*Submodel was trained on Whisper's 30 s"):
        core.parse(auto_msg.to_bytes())
    full_msg = split.encode(clips[:1], speaker="spk-full", window="full")[0]
    assert full_msg.frames == 1500
    answers = core.transcribe([core.parse(full_msg.to_bytes()), core.parse(
        split.encode(clips[1:2], speaker="spk-auto")[0].to_bytes())])  # two windows in one call
    assert [a["submodel"] for a in answers] == [True, True]
    with pytest.raises(WireFormatError, match="Whisper's 30 s window.*decodes on the audio plus a margin"):
        core.parse(split.encode(clips[:1], speaker="spk-auto", window="full")[0].to_bytes())
    httpd, url = _serve(core)
    try:
        client = DeviceClient(url, cpath, model=whisper_dir)
        assert client.window_for("spk-full") == "full" and client.window_for("spk-auto") == "auto"
        assert client.transcribe(clips[0], speaker="spk-full")["text"] == answers[0]["text"]
    finally:
        httpd.shutdown()
