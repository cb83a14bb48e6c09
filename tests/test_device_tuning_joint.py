"""Joint multi-task training of the Whisper compressor (issue 28 item 3): every task's loss falls."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from workbench.device_tuning import Compressor, split_for
from workbench.device_tuning.heads import PROFILE_CLASSES
from workbench.device_tuning.whisper_joint import WhisperJointSettings, WhisperJointTrainer, joint_items
from workbench.device_tuning.whisper_train import distill_items
from workbench.errors import WorkbenchError
from workbench.models import load_base_model

pytest.importorskip("transformers")

from _models import hf_whisper_dir, noise_waves  # noqa: E402


@pytest.fixture(scope="module")
def split_items(tmp_path_factory):
    backend = load_base_model(hf_whisper_dir(tmp_path_factory.mktemp("hf") / "whisper")).freeze()
    split = split_for(backend, 1)
    items = distill_items(split, noise_waves(6, seed=7, lo=6000, hi=30000))
    rng = np.random.default_rng(0)
    dvecs = [v / np.linalg.norm(v) for v in rng.normal(size=(6, 256))]
    dvecs[5] = None  # a recording without a d-vector (a real one) counts for the other terms
    profiles = [("typical", 0.0), ("als-like", 0.8), ("tremor", 0.5), ("stutter", 0.4), None, ("accent", 0.6)]
    return split, joint_items(items, dvecs, profiles)


def _trainer(split, items, seed=0, **kw) -> WhisperJointTrainer:
    torch.manual_seed(seed)
    split.compressor = Compressor(split.width, dims=8, bits=3, stride=2, hidden=32)
    settings = WhisperJointSettings(max_steps=40, batch_size=3, lr=3e-3, warmup_steps=2, seed=seed, head_hidden=32,
                                    **kw)
    return WhisperJointTrainer(split, items, settings)


def test_a_short_joint_run_lowers_every_tasks_loss(split_items):
    split, items = split_items
    trainer = _trainer(split, items)
    before = trainer.evaluate()
    trainer.train(30)
    after = trainer.evaluate()
    for task in ("kl", "state", "speaker", "profile", "loss"):
        assert after[task] < before[task], (task, before, after)
    assert before["speaker"] > 0 and before["profile"] > 0


def test_labels_are_checked_and_a_joint_checkpoint_resumes_exactly(split_items, tmp_path):
    split, items = split_items
    with pytest.raises(WorkbenchError, match="profile class"):
        joint_items(items[:1], None, [("sad", 0.5)])
    with pytest.raises(WorkbenchError, match="d-vectors"):
        _trainer(split, joint_items(items, None, [("typical", 0.0)] * len(items)))
    whole = _trainer(split, items)
    whole.train(6)
    want = {k: v.clone() for k, v in whole.speaker.state_dict().items()}
    first = _trainer(split, items)
    first.train(4)
    path = first.save(tmp_path / "joint.ckpt.safetensors")
    second = _trainer(split, items)
    second.load(path)
    second.train(2)
    for k, v in second.speaker.state_dict().items():
        assert torch.allclose(v, want[k], atol=1e-6), k
    assert second.profile.classes == PROFILE_CLASSES
