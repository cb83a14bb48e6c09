"""Device Tuning's server-side task heads and the privacy measurements (issue 19)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from workbench.device_tuning import Compressor
from workbench.device_tuning.heads import (
    PROFILE_CLASSES,
    RESEARCH_LABEL,
    AttentivePool,
    AtypicalityHead,
    HeadTraining,
    SpeakerHead,
    atypicality_loss,
    atypicality_metrics,
    equal_error_rate,
    head_outputs,
    masked_mean_std,
    pad_items,
    profile_label,
    restored,
    speaker_loss,
    speaker_metrics,
    train_head,
)
from workbench.device_tuning.privacy import (
    InverseModel,
    MelStats,
    inverse_loss,
    mel_to_audio,
    reconstruct,
    speaker_probe,
    split_utterances,
    train_inverse,
    wire_levels,
)
from workbench.errors import WorkbenchError

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"


def _frames(n: int, d: int = 12, seed: int = 0, lo: int = 6, hi: int = 20) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(int(torch.randint(lo, hi, (1,), generator=g)), d, generator=g) for _ in range(n)]


# -- shapes and padding ------------------------------------------------------------------------
def test_pooling_and_heads_ignore_padding():
    torch.manual_seed(0)
    items = _frames(3, d=8)
    x, lens = pad_items(items)
    garbage = x.clone()
    for i, n in enumerate(lens.tolist()):
        garbage[i, n:] = torch.nan if i == 0 else 1e6  # padding may hold anything
    pool, spk, aty = AttentivePool(8), SpeakerHead(8, hidden=16), AtypicalityHead(8, hidden=16, pooling="mean_std")
    for mod in (pool, spk, aty):
        mod.eval()
        batched = mod(garbage, lens)
        alone = [mod(it[None], torch.tensor([it.shape[0]])) for it in items]
        if isinstance(batched, tuple):
            for part, parts in zip(batched, zip(*alone)):
                assert torch.allclose(part, torch.cat(parts), atol=1e-5)
        else:
            assert torch.isfinite(batched).all()
            assert torch.allclose(batched, torch.cat(alone), atol=1e-5)
    assert masked_mean_std(x, lens).shape == (3, 16)
    emb = spk(x, lens)
    assert emb.shape == (3, 256) and torch.allclose(emb.norm(dim=-1), torch.ones(3), atol=1e-5)
    logits, sev = aty(x, lens)
    assert logits.shape == (3, len(PROFILE_CLASSES)) and sev.shape == (3,) and ((sev >= 0) & (sev <= 1)).all()
    out = aty.describe(x, lens)
    assert out[0]["label"] == RESEARCH_LABEL and out[0]["profile"] in PROFILE_CLASSES
    assert "never a clinical score" in (AtypicalityHead.__doc__ or "")


def test_sample_speakers_map_to_every_profile_class():
    got = {}
    for f in sorted(SAMPLE.glob("sim-*/speaker.json")):
        info = json.loads(f.read_text())
        got[info["speaker_id"]] = profile_label(info["profile"]["profile_spec"])
    assert {c for c, _ in got.values()} == set(PROFILE_CLASSES)
    assert got["sim-voice-tremor"] == ("tremor", 0.9) and got["sim-typical-flite"] == ("typical", 0.0)


# -- training lowers each loss ----------------------------------------------------------------
def _eval_loss(head, feats, targets, loss_fn) -> float:
    with torch.no_grad():
        return float(loss_fn(head_outputs(head, feats), targets))


def test_a_few_steps_lower_each_heads_loss():
    torch.manual_seed(0)
    feats = _frames(24, d=12)
    # speaker targets: a fixed map of each utterance's mean frame (learnable from the frames)
    proj = torch.randn(12, 256)
    dvec = torch.nn.functional.normalize(torch.stack([f.mean(0) for f in feats]) @ proj, dim=-1)
    cls = torch.arange(24) % 3
    sev = cls.float() / 3
    feats_a = [f + 2.0 * torch.nn.functional.one_hot(c, 12).float() for f, c in zip(feats, cls)]
    settings = HeadTraining(max_steps=25, batch_size=8, lr=3e-3)
    for head, fs, targets, loss_fn in (
            (SpeakerHead(12, hidden=32), feats, dvec, speaker_loss),
            (AtypicalityHead(12, hidden=32), feats_a, (cls, sev), atypicality_loss)):
        before = _eval_loss(head, fs, targets, loss_fn)
        hist = train_head(head, fs, targets, loss_fn, settings)
        assert len(hist) == 25 and not head.training
        assert _eval_loss(head, fs, targets, loss_fn) < 0.8 * before
    m = atypicality_metrics(head_outputs(head, feats_a), cls, sev)
    assert m["label"] == RESEARCH_LABEL and 0 <= m["profile_accuracy"] <= 1


def test_speaker_metrics_and_eer():
    assert equal_error_rate(np.array([0.9, 0.1, 0.8, 0.2]), np.array([True, False, False, True])) == 0.5
    x = np.repeat(np.eye(3), 3, axis=0) + 0.01 * np.random.default_rng(0).standard_normal((9, 3))
    m = speaker_metrics(x, [s for s in "abc" for _ in range(3)])
    assert m["eer"] == 0.0 and m["nearest_speaker_accuracy"] == 1.0 and m["speakers"] == 3


def test_restored_is_what_the_server_restores_from_the_wire():
    pytest.importorskip("constriction")
    from workbench.device_tuning import Message, SplitModel
    from workbench.models import load_base_model

    backend = load_base_model("tiny").freeze()
    split = SplitModel(backend, 4, Compressor(backend.hidden_size, dims=6, bits=3, stride=2))
    wav = [np.sin(np.linspace(0, 900, 16000)).astype(np.float32) * 0.3]
    hidden = [it.features for it in split.device_hidden(wav)]
    server = split.restore([Message.from_bytes(m.to_bytes()) for m in split.encode(wav)])
    assert torch.allclose(restored(split.compressor, hidden)[0], server[0], atol=1e-5)
    assert torch.equal(restored(None, hidden)[0], hidden[0])
    levels = wire_levels(split.compressor, hidden)[0]
    assert levels.shape == (-(-hidden[0].shape[0] // 2), 6) and levels.abs().max() <= 1


# -- privacy ----------------------------------------------------------------------------------
def test_probe_accuracy_is_on_held_out_utterances_only():
    speakers = [s for s in "abcd" for _ in range(6)]
    train, test = split_utterances(speakers, test_per_speaker=2)
    assert not set(train) & set(test) and sorted(train + test) == list(range(24))
    assert {speakers[i] for i in test} == set("abcd") and len(test) == 8
    with pytest.raises(WorkbenchError, match="must not be among"):
        speaker_probe(_frames(24), speakers, train, test + train[:1])
    with pytest.raises(WorkbenchError, match="at least 2"):
        split_utterances(["a", "a", "b"])
    settings = HeadTraining(max_steps=60, batch_size=8, lr=5e-3)
    # pure noise: the probe can memorize its training utterances but cannot name held-out ones
    noise = speaker_probe(_frames(24, d=16, seed=1), speakers, train, test, settings)
    assert noise.n_test == 8 and noise.n_train == 16 and noise.n_speakers == 4 and noise.chance == 0.25
    assert noise.train_accuracy >= 0.9 and noise.accuracy < noise.train_accuracy
    # a speaker-dependent offset: the held-out utterances are named
    offset = [f + 3.0 * torch.nn.functional.one_hot(torch.tensor("abcd".index(s)), 16).float()
              for f, s in zip(_frames(24, d=16, seed=2), speakers)]
    assert speaker_probe(offset, speakers, train, test, settings).accuracy >= 0.75


def test_inverse_model_shapes_training_and_griffin_lim():
    torch.manual_seed(0)
    inputs = _frames(6, d=5, lo=4, hi=9)
    mels = [torch.randn(x.shape[0] * 8 - 3, 80) * 0.1 + torch.linspace(-1, 1, 80) for x in inputs]
    inv = InverseModel(5, upsample=8, hidden=16)
    x, lens = pad_items(inputs)
    out = inv(x, lens)
    assert out.shape == (6, x.shape[1] * 8, 80)
    for i, n in enumerate(lens.tolist()):
        assert (out[i, n * 8:] == 0).all()
    target = pad_items(mels)
    before = float(inverse_loss(out, target).detach())
    hist = train_inverse(inv, inputs, mels, HeadTraining(max_steps=30, batch_size=6, lr=5e-3))
    with torch.no_grad():
        assert len(hist) == 30 and float(inverse_loss(inv(x, lens), target)) < before
    pred = reconstruct(inv, inputs, [m.shape[0] for m in mels])
    assert [p.shape for p in pred] == [m.shape for m in mels]
    stats = MelStats(torch.full((80,), -6.0), torch.full((80,), 2.0))
    wav = mel_to_audio(pred[0], stats, n_iter=2)
    assert wav.dtype == np.float32 and wav.shape == ((mels[0].shape[0] - 1) * 160,) and np.isfinite(wav).all()


# -- the bench's quick mode -------------------------------------------------------------------
@pytest.mark.slow
def test_quick_bench_reports_every_head_on_both_representations(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_BENCH_DIR", str(tmp_path))
    from bench import bench_device_tuning_tasks as bench

    res = bench.run("cpu", quick=True)
    assert "UNTRAINED" in res["compressors_note"] and res["atypicality_label"] == RESEARCH_LABEL
    assert set(res["tasks"]) == {"uncompressed k=4", "compressed k=4 untrained-k4-8x3s2"}
    for row in res["tasks"].values():
        assert {"asr", "speaker", "atypicality"} <= set(row)
        assert row["atypicality"]["held-out voices"]["label"] == RESEARCH_LABEL
    probes = res["privacy"]["speaker_probe"]
    assert "raw log-mel" in probes and all(p["n_test"] == 8 and p["n_speakers"] == 8 for p in probes.values())
    assert any("never a clinical score" in line for line in res["table"])
    assert res["privacy"]["reconstruction"]["compressed k=4 untrained-k4-8x3s2 (from wire symbols)"]["utterances"] == 3
