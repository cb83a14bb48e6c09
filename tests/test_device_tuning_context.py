"""A compressor with temporal context (residual convolutions over symbol frames, issue 28): it
starts as the compressor without context, the server's restore equals the training round trip at
the boundary of the coded frames, its files are checked, and training may run in bfloat16."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from workbench.device_tuning import Compressor, split_for
from workbench.device_tuning.compressor import load_compressor, save_compressor
from workbench.device_tuning.whisper_split import coded_frames
from workbench.device_tuning.whisper_train import WhisperCompressorTrainer, WhisperDistillSettings, distill_items
from workbench.errors import WireFormatError, WorkbenchError
from workbench.models import load_base_model

pytest.importorskip("transformers")
pytest.importorskip("constriction")

from _models import noise_waves  # noqa: E402


def _with_random_context(comp: Compressor, seed: int = 0) -> Compressor:
    torch.manual_seed(seed)
    with torch.no_grad():
        for conv in (comp.down_context, comp.up_context):
            conv.weight.normal_(std=0.2)
            conv.bias.normal_(std=0.1)
    return comp


def test_context_starts_as_the_compressor_without_it():
    torch.manual_seed(1)
    plain = Compressor(80, dims=6, bits=3, stride=4, hidden=16).eval()
    ctx = Compressor(80, dims=6, bits=3, stride=4, hidden=16, context=5).eval()
    missing = ctx.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert sorted(missing) == ["down_context.bias", "down_context.weight", "up_context.bias", "up_context.weight"]
    h = torch.randn(2, 37, 80)
    assert torch.equal(ctx.encode(h), plain.encode(h))
    assert torch.allclose(ctx(h, torch.tensor([3, 10])), plain(h), atol=1e-6)
    _with_random_context(ctx)
    assert not torch.equal(ctx.encode(h), plain.encode(h))  # the convolutions do reach the symbols


def test_the_server_expands_only_what_it_received_as_training_does():
    """Training masks the symbol frames after ``valid``; a server that expands only those agrees."""
    c = _with_random_context(Compressor(80, dims=6, bits=3, stride=4, hidden=16, context=3).eval())
    h = torch.randn(2, 60, 80)
    valid = torch.tensor([7, 12])
    symbols = c.encode(h)
    with torch.no_grad():
        trained = c.decode(symbols, 60, valid)
        unmasked = c.decode(symbols, 60)
        for row, n in enumerate(valid.tolist()):
            served = c.decode(symbols[row:row + 1, :n], 4 * n)[0]
            assert torch.allclose(trained[row, :4 * n], served, atol=1e-5)
            assert not torch.allclose(unmasked[row, :4 * n], served, atol=1e-5)  # the mask matters


@pytest.fixture(scope="module")
def backend(whisper_dir):
    return load_base_model(whisper_dir).freeze()


def test_a_split_0_server_restores_what_training_saw(backend):
    clips = noise_waves(3, seed=7, lo=6000, hi=30000)
    split = split_for(backend, 0)
    split.compressor = _with_random_context(Compressor(split.width, dims=6, bits=3, stride=4, hidden=16,
                                                       context=3).eval())
    items = split.device_hidden(clips)
    split.compressor.fit_tables([split.coded_symbols(it.features, it.samples) for it in items])
    restored = split.restore(split.encode(clips))
    served = split.server_backend().cache_features(clips, frozen_layers=0)
    with torch.no_grad():
        for r, it in zip(restored, items, strict=True):
            assert torch.allclose(r, split.round_trip(split.compressor, it.features[None], [it.samples])[0],
                                  atol=1e-5)
            coded = coded_frames(it.samples, it.features.shape[0])
            assert torch.equal(r[coded:], it.features[coded:])
    shared = served[0].features.shape[0]  # server-side training features: one shared window
    for r, s in zip(restored, served, strict=True):
        n = min(r.shape[0], shared)
        assert torch.allclose(s.features[:n], r[:n], atol=1e-5)


def test_context_files_load_and_bad_context_is_refused(tmp_path):
    c = _with_random_context(Compressor(80, dims=6, bits=3, stride=4, hidden=16, context=5).eval())
    path = save_compressor(c, tmp_path / "ctx.safetensors", split_layer=0, base_fingerprint="ab" * 32)
    loaded, _ = load_compressor(path)
    assert loaded.config.context == 5 and loaded.identity() == c.identity()
    plain = Compressor(80, dims=6, bits=3, stride=4, hidden=16)
    assert plain.identity() != Compressor(80, dims=6, bits=3, stride=4, hidden=16, context=3).identity()

    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), framework="pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    for context, why in ((4, "odd kernel size"), (17, "odd kernel size"), (-1, "odd kernel size"), (0, "do not match")):
        cfg = {**json.loads(meta["config"]), "context": context}
        save_file(tensors, str(tmp_path / "bad.safetensors"), metadata={**meta, "config": json.dumps(cfg)})
        with pytest.raises(WireFormatError, match=why):
            load_compressor(tmp_path / "bad.safetensors")
    old = {**meta, "config": json.dumps({k: v for k, v in json.loads(meta["config"]).items() if k != "context"})}
    plain_tensors = {k: v for k, v in tensors.items() if "context" not in k}
    save_file(plain_tensors, str(tmp_path / "old.safetensors"), metadata=old)  # written before context existed
    assert load_compressor(tmp_path / "old.safetensors")[0].config.context == 0
    with pytest.raises(WorkbenchError, match="odd kernel size"):
        Compressor(80, context=2)


def test_init_may_add_context_but_not_drop_or_change_it(backend, tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "recipes"))
    from train_whisper_compressor import init_from

    fp = backend.fingerprint()
    plain = save_compressor(Compressor(80, dims=6, bits=3, stride=4, hidden=16), tmp_path / "p.safetensors",
                            split_layer=0, base_fingerprint=fp)
    ctx = save_compressor(Compressor(80, dims=6, bits=3, stride=4, hidden=16, context=3), tmp_path / "c.safetensors",
                          split_layer=0, base_fingerprint=fp)
    init_from(Compressor(80, dims=6, bits=3, stride=4, hidden=16, context=3), plain, 0, fp)
    init_from(Compressor(80, dims=6, bits=3, stride=4, hidden=16, context=3), ctx, 0, fp)
    for target in (Compressor(80, dims=6, bits=3, stride=4, hidden=16),
                   Compressor(80, dims=6, bits=3, stride=4, hidden=16, context=5)):
        with pytest.raises(SystemExit, match="context may be added"):
            init_from(target, ctx, 0, fp)


def test_a_short_bf16_run_with_context_lowers_the_loss(backend, tmp_path):
    split = split_for(backend, 0)
    items = distill_items(split, noise_waves(6, seed=5, lo=6000, hi=30000))
    torch.manual_seed(0)
    split.compressor = Compressor(split.width, dims=8, bits=3, stride=4, hidden=32, context=3)
    settings = WhisperDistillSettings(max_steps=30, batch_size=3, lr=3e-3, warmup_steps=2, bf16=True)
    trainer = WhisperCompressorTrainer(split, items, settings)
    before = trainer.evaluate()
    trainer.train(30)
    after = trainer.evaluate()
    assert after["loss"] < 0.7 * before["loss"], (before, after)
    assert float(split.compressor.up_context.weight.abs().sum()) > 0  # the context learned
    trainer.save(tmp_path / "ckpt.safetensors")
    again = WhisperCompressorTrainer(split, items, settings)
    again.load(tmp_path / "ckpt.safetensors")
    assert again.step == 30
    with pytest.raises(WorkbenchError, match="other settings"):
        WhisperCompressorTrainer(split, items, WhisperDistillSettings(max_steps=30, batch_size=3, lr=3e-3,
                                                                      warmup_steps=2)).load(tmp_path / "ckpt.safetensors")
