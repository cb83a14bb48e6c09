"""Training a Whisper split's compressor by distillation (issue 28): it learns, and it resumes exactly."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from workbench.device_tuning import Compressor
from workbench.device_tuning import split_for
from workbench.device_tuning.whisper_train import (WhisperCompressorTrainer, WhisperDistillSettings, distill_items,
                                                   state_loss, token_kl)
from workbench.errors import WorkbenchError
from workbench.models import load_base_model

pytest.importorskip("transformers")

from _models import hf_whisper_dir, noise_waves  # noqa: E402


@pytest.fixture(scope="module")
def split_items(tmp_path_factory):
    backend = load_base_model(hf_whisper_dir(tmp_path_factory.mktemp("hf") / "whisper")).freeze()
    split = split_for(backend, 1)
    return split, distill_items(split, noise_waves(6, seed=5, lo=6000, hi=30000))


def _trainer(split, items, seed=0, **kw) -> WhisperCompressorTrainer:
    torch.manual_seed(seed)
    split.compressor = Compressor(split.width, dims=8, bits=3, stride=2, hidden=32)
    settings = WhisperDistillSettings(max_steps=40, batch_size=3, lr=3e-3, warmup_steps=2, seed=seed, **kw)
    return WhisperCompressorTrainer(split, items, settings)


def test_items_hold_the_window_and_the_unsplit_transcript(split_items):
    split, items = split_items
    assert len({it.hidden.shape[0] for it in items}) == 2  # two window sizes: batches keep them apart
    assert [it.text for it in items] == [split.backend.transcribe([w])[0]
                                         for w in noise_waves(6, seed=5, lo=6000, hi=30000)]


def test_losses_are_zero_for_the_teacher_and_mask_padding():
    logits = torch.randn(2, 5, 11)
    labels = torch.tensor([[-100, 1, 2, 3, -100], [-100, 4, -100, -100, -100]])
    assert float(token_kl(logits, logits, labels)) == pytest.approx(0.0, abs=1e-6)
    other = logits.clone()
    other[:, 4] += torch.randn(2, 11) * 5  # only ignored positions differ
    other[1, 2:] += 3.0
    assert float(token_kl(other, logits, labels)) == pytest.approx(0.0, abs=1e-6)
    h = torch.randn(2, 6, 4)
    lens = torch.tensor([6, 3])
    assert float(state_loss(h, h, lens)) == 0.0
    noisy = h.clone()
    noisy[1, 3:] += 10  # padding frames
    assert float(state_loss(noisy, h, lens)) == 0.0
    assert float(state_loss(h + 0.1, h, lens)) > 0


def test_a_short_run_lowers_every_term_of_the_loss(split_items):
    split, items = split_items
    trainer = _trainer(split, items)
    before = trainer.evaluate()
    history = trainer.train(30)
    after = trainer.evaluate()
    assert len(history) == 30 and trainer.step == 30
    assert after["loss"] < 0.7 * before["loss"], (before, after)
    assert after["kl"] < before["kl"] and after["state"] < before["state"]
    trainer.fit_tables()
    assert torch.allclose(split.compressor.tables.sum(1), torch.ones(8))


def test_a_resumed_run_takes_the_same_steps_as_an_unbroken_one(split_items, tmp_path):
    split, items = split_items
    whole = _trainer(split, items, rate_weight=0.01)
    whole.train(8)
    want = {k: v.clone() for k, v in whole.comp.state_dict().items()}

    first = _trainer(split, items, rate_weight=0.01)
    first.train(5)
    path = first.save(tmp_path / "ckpt.safetensors", extra={"note": "half"})
    second = _trainer(split, items, seed=0, rate_weight=0.01)  # a new process: fresh weights, then the checkpoint
    assert second.load(path) == {"note": "half"} and second.step == 5
    second.train(3)
    for k, v in second.comp.state_dict().items():
        assert torch.allclose(v, want[k], atol=1e-6), k


def test_a_checkpoint_of_other_settings_is_refused(split_items, tmp_path):
    split, items = split_items
    path = _trainer(split, items).save(tmp_path / "ckpt.safetensors")
    other = _trainer(split, items, state_weight=0.5)
    with pytest.raises(WorkbenchError, match="other settings"):
        other.load(path)
    assert dataclasses.asdict(other.settings)["state_weight"] == 0.5


def test_init_starts_another_operating_point_from_trained_weights(split_items, tmp_path):
    """``recipes/train_whisper_compressor.py --init``: the weights carry over when only the bits
    differ; another split layer, base or size is refused with a plain message."""
    import sys
    from pathlib import Path

    from workbench.device_tuning.compressor import save_compressor

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "recipes"))
    from train_whisper_compressor import init_from

    split, _ = split_items
    torch.manual_seed(3)
    trained = Compressor(split.width, dims=8, bits=3, stride=2, hidden=32)
    path = save_compressor(trained, tmp_path / "c.safetensors", split_layer=1,
                           base_fingerprint=split.backend.fingerprint(), card={"steps": 40})
    fewer_bits = Compressor(split.width, dims=8, bits=2, stride=2, hidden=32)
    assert init_from(fewer_bits, path, 1, split.backend.fingerprint()) == {"file": "c.safetensors", "steps": 40, "step": None}
    for key, value in trained.state_dict().items():
        if key != "tables":
            assert torch.equal(fewer_bits.state_dict()[key], value), key
    assert fewer_bits.tables.shape == (8, 4)  # its own bits: tables are counted again after training
    with pytest.raises(SystemExit, match="another split layer"):
        init_from(fewer_bits, path, 2, split.backend.fingerprint())
    with pytest.raises(SystemExit, match="another split layer or base"):
        init_from(fewer_bits, path, 1, "0" * 64)
    with pytest.raises(SystemExit, match="only the bits may"):
        init_from(Compressor(split.width, dims=4, bits=3, stride=2, hidden=32), path, 1, split.backend.fingerprint())


def test_the_recipes_validation_measures_the_wire_and_both_models_on_held_out_voices(split_items, monkeypatch):
    """``recipes/train_whisper_compressor.py --validate``: bit rate from the wire bytes, the split's and
    the unsplit model's WER against the phrases, and the split's against the unsplit transcripts."""
    import argparse
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "recipes"))
    import train_whisper_compressor as recipe

    from workbench.evaluate import wer

    split, _ = split_items
    torch.manual_seed(1)
    split.compressor = Compressor(split.width, dims=4, bits=2, stride=2, hidden=16).eval()
    waves = noise_waves(3, seed=8, lo=6000, hi=20000)
    refs = ["one two three", "four five", "six"]
    asked = {}

    def held_out(args, *, heldout=False, n=None):
        asked.update(heldout=heldout, n=n)
        return list(zip(waves, refs, strict=True))

    monkeypatch.setattr(recipe, "synthetic_waves", held_out)
    got = recipe.validate(argparse.Namespace(validate=3), split)
    assert asked == {"heldout": True, "n": 3}
    msgs = split.encode(waves)
    hyps = split.transcribe_hidden(split.restore(msgs), samples=[m.samples for m in msgs])
    plain = split.backend.transcribe(waves)
    seconds = sum(len(w) for w in waves) / 16000
    assert got == {"recordings": 3, "kbit_s": round(8 * sum(len(m.to_bytes()) for m in msgs) / seconds / 1000, 3),
                   "wer": round(wer(refs, hyps), 4), "unsplit_wer": round(wer(refs, plain), 4),
                   "disagreement": round(wer(plain, hyps), 4)}
    assert got["kbit_s"] > 0 and got["wer"] > 0
