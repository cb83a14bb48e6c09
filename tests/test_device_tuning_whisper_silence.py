"""A Whisper split at k = 0 codes only the audio's log-mel and the server rebuilds the window's
silence from its floor, exactly (wire format version 4, issue 28)."""

from __future__ import annotations

import dataclasses
import struct

import pytest
import torch

from workbench.device_tuning import Compressor, Message
from workbench.device_tuning import split_for
from workbench.device_tuning.entropy import encode_symbols, payload_bounds
from workbench.device_tuning.whisper_split import coded_frames, silence_floor
from workbench.device_tuning.whisper_train import WhisperCompressorTrainer, WhisperDistillSettings, distill_items
from workbench.device_tuning.wire import FLOOR_BYTES
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
    return noise_waves(4, seed=3, lo=6000, hi=30000)  # two window sizes


@pytest.fixture(scope="module")
def split(backend, clips):
    split = split_for(backend, 0)
    torch.manual_seed(0)
    split.compressor = Compressor(split.width, dims=6, bits=3, stride=4, hidden=16).eval()
    split.compressor.fit_tables([split.coded_symbols(it.features, it.samples) for it in split.device_hidden(clips)])
    return split


def test_the_silence_after_the_audio_is_one_value_the_floor(backend, clips):
    for w, it in zip(clips, split_for(backend, 0).device_hidden(clips), strict=True):
        h, coded = it.features, coded_frames(len(w), it.features.shape[0])
        assert coded < h.shape[0] / 2 + 2  # these clips sit in windows about twice their length
        floor = silence_floor(h[None]).item()
        assert bool((h[coded:] == floor).all()) and bool((h >= floor).all())
        assert not bool((h[:coded - 3] == floor).all())  # the audio is not


def test_messages_carry_the_floor_and_the_audio_frames_only_and_the_server_rebuilds_the_rest(split, clips):
    c = split.compressor
    tables = c.tables.numpy()
    items = split.device_hidden(clips)
    msgs = [Message.from_bytes(m.to_bytes()) for m in split.encode(clips)]
    for m, it in zip(msgs, items, strict=True):
        assert m.version == 4 and m.silence_rebuilt and m.frames == it.features.shape[0]
        sym = split.coded_symbols(it.features, it.samples)
        assert len(sym) == -(-coded_frames(it.samples, m.frames) // 4) < m.symbol_frames / 2 + 1
        assert m.payload == struct.pack("<f", silence_floor(it.features[None]).item()) + encode_symbols(
            sym.numpy(), tables)
        assert (split.symbols(m) == sym.numpy()).all()
    restored = split.restore(msgs)
    with torch.no_grad():
        for r, it in zip(restored, items, strict=True):
            coded = coded_frames(it.samples, it.features.shape[0])
            assert torch.equal(r[coded:], it.features[coded:])  # the silence, exactly
            assert torch.allclose(r, split.round_trip(c, it.features[None], [it.samples])[0], atol=1e-6)
    assert split.transcribe(clips) == split.transcribe_hidden(restored, samples=[len(w) for w in clips])


def test_a_damaged_floor_another_version_or_a_short_payload_is_refused(split, clips):
    m = split.encode(clips[:1])[0]
    for floor in (float("nan"), float("inf"), 7.0, -3.0):
        bad = dataclasses.replace(m, payload=struct.pack("<f", floor) + m.payload[FLOOR_BYTES:])
        with pytest.raises(WireFormatError, match="silence floor"):
            split.symbols(Message.from_bytes(bad.to_bytes()))
    with pytest.raises(WireFormatError, match="reads version 4"):  # a version-3 message to a split-0 server
        split.symbols(dataclasses.replace(m, silence_rebuilt=False, padding_coded=True))
    with pytest.raises(WireFormatError, match="split layer 0"):
        dataclasses.replace(m, split_layer=1).to_bytes()
    with pytest.raises(WireFormatError, match="start with the floor"):
        dataclasses.replace(m, payload=b"").to_bytes()
    with pytest.raises(WireFormatError, match="take"):  # the floor, but no symbols after it
        split.symbols(dataclasses.replace(m, payload=m.payload[:FLOOR_BYTES]))
    data = m.to_bytes()
    for n in range(len(data)):
        with pytest.raises(WireFormatError):
            Message.from_bytes(data[:n])
    for i in range(len(data)):
        flipped = bytearray(data)
        flipped[i] ^= 0x10
        with pytest.raises(WireFormatError):
            Message.from_bytes(bytes(flipped))


def test_the_server_core_serves_split_0_messages_like_the_split_and_sizes_its_limit_for_them(
        whisper_dir, split, clips, tmp_path):
    from workbench.device_tuning.compressor import save_compressor
    from workbench.device_tuning.server import ServerCore
    from workbench.device_tuning.wire import HEADER_BYTES_V2, MAX_SPEAKER_BYTES

    path = save_compressor(split.compressor, tmp_path / "whisper-k0.safetensors", split_layer=0,
                           base_fingerprint=split.backend.fingerprint())
    core = ServerCore(str(path), model=whisper_dir)
    assert core.info()["split_layer"] == 0
    items = [core.parse(m.to_bytes()) for m in split.encode(clips, speaker="spk-a")]
    assert [a["text"] for a in core.transcribe(items)] == split.transcribe(clips)
    longest = core.split.max_payload_bytes(-(-core.max_frames // 4))
    assert core.max_body_bytes == HEADER_BYTES_V2 + MAX_SPEAKER_BYTES + longest
    fixed = payload_bounds(split.compressor.tables.numpy(), -(-core.max_frames // 4))[1]
    assert longest == FLOOR_BYTES + fixed  # the floor, then fixed tables: no adaptive code's worst case


def test_server_side_training_features_are_the_wire_round_trip(split, clips):
    items = split.server_backend().cache_features(clips, frozen_layers=0)
    assert len({it.features.shape for it in items}) == 1  # one shared window, so a Trainer's batches stack
    plain = split.backend.cache_features(clips, frozen_layers=0)
    for it, p in zip(items, plain, strict=True):
        coded = coded_frames(p.samples, p.features.shape[0])
        assert torch.equal(it.features[coded:], p.features[coded:])
        assert not torch.equal(it.features[:coded], p.features[:coded])


def test_a_short_run_at_split_0_lowers_the_loss_and_keeps_the_silence_exact(backend):
    split = split_for(backend, 0)
    items = distill_items(split, noise_waves(6, seed=5, lo=6000, hi=30000))
    torch.manual_seed(0)
    split.compressor = Compressor(split.width, dims=8, bits=3, stride=4, hidden=32)
    trainer = WhisperCompressorTrainer(split, items, WhisperDistillSettings(max_steps=30, batch_size=3, lr=3e-3,
                                                                            warmup_steps=2))
    before = trainer.evaluate()
    trainer.train(30)
    after = trainer.evaluate()
    assert after["loss"] < 0.7 * before["loss"], (before, after)
    _, restored, _ = trainer._distill([0])
    h = items[0].hidden
    coded = coded_frames(items[0].samples, h.shape[0])
    assert torch.equal(restored[0, coded:].detach(), h[coded:])
    trainer.fit_tables()  # counted on the coded frames only: the silence never reaches the tables
    assert torch.allclose(split.compressor.tables.sum(1), torch.ones(8))


def test_the_rate_term_at_split_0_counts_the_symbol_frames_sent_only(backend):
    split = split_for(backend, 0)
    items = distill_items(split, noise_waves(3, seed=6, lo=6000, hi=30000))
    torch.manual_seed(0)
    split.compressor = comp = Compressor(split.width, dims=8, bits=3, stride=4, hidden=32)
    h = torch.stack([it.hidden for it in items]).float()
    samples = [it.samples for it in items]
    x, valid = split.compressor_input(h, samples)
    assert valid.tolist() == [-(-coded_frames(s, h.shape[1]) // 4) for s in samples]
    noisy = h.clone()
    for row, v in zip(noisy, valid.tolist(), strict=True):  # loud noise after the symbol frames sent
        row[v * 4:-1] += 1.5 * torch.rand_like(row[v * 4:-1])  # (the last frame keeps the floor)
    assert torch.equal(silence_floor(noisy), silence_floor(h))
    sent = comp.rate_bits(x, valid)
    assert torch.allclose(comp.rate_bits(*split.compressor_input(noisy, samples)), sent)
    assert not torch.allclose(comp.rate_bits(split.compressor_input(noisy, samples)[0]), sent)
    trainer = WhisperCompressorTrainer(split, items, WhisperDistillSettings(rate_weight=0.1, batch_size=3))
    assert torch.allclose(trainer.losses([0, 1, 2])["rate"], sent)
