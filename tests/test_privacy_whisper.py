"""Privacy probes for the Whisper split (issue 28 item 4): the strongest probe per representation, and
what a Whisper split exposes over the audio's own frames."""

from __future__ import annotations

import pytest
import torch

from workbench.device_tuning import Compressor, split_for
from workbench.device_tuning.heads import HeadTraining
from workbench.device_tuning.privacy import split_representations, strongest_probes
from workbench.device_tuning.whisper_split import true_frames
from workbench.models import load_base_model

pytest.importorskip("transformers")

from _models import hf_whisper_dir, noise_waves  # noqa: E402


def _speaker_frames(n_speakers=4, per=6, signal=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(n_speakers, 5, generator=g) * 2
    feats, who = [], []
    for s in range(n_speakers):
        for _ in range(per):
            feats.append(torch.randn(9, 5, generator=g) + signal * centers[s])
            who.append(f"spk{s}")
    return feats, who


def test_the_strongest_probe_of_the_family_is_reported_with_every_probes_accuracy():
    feats, who = _speaker_frames()
    noise, _ = _speaker_frames(signal=0.0, seed=1)
    family = {"small": ("mean_std", 16, 1.0), "attentive": ("attentive", 16, 1.0)}
    out = strongest_probes({"identity": feats, "noise": noise}, who, test_per_speaker=2, family=family,
                           settings=HeadTraining(max_steps=60, batch_size=8))
    for rep in out.values():
        assert set(rep["accuracy_by_probe"]) == set(family)
        assert rep["best"]["accuracy"] == max(rep["accuracy_by_probe"].values())
        assert rep["accuracy_by_probe"][rep["probe"]] == rep["best"]["accuracy"]
        assert rep["best"]["chance"] == pytest.approx(0.25)
    assert out["identity"]["best"]["accuracy"] >= 0.75 > out["noise"]["best"]["accuracy"]


@pytest.mark.parametrize("k", [0, 1])
def test_a_whisper_split_exposes_the_audios_own_frames(tmp_path, k):
    backend = load_base_model(hf_whisper_dir(tmp_path / "whisper")).freeze()
    split = split_for(backend, k, None)
    split.compressor = Compressor(split.width, dims=4, bits=3, stride=2, hidden=16).eval()
    clips = noise_waves(2, seed=2, lo=6000, hi=20000)
    reps = split_representations(split, clips)
    for i, w in enumerate(clips):
        window, _ = split.geometry(len(w))
        n = true_frames(len(w), window, k)
        assert n < window and reps["restored states"][i].shape == (n, split.width)
        assert reps["wire symbols"][i].shape == (-(-n // 2), 4)
        mel = reps["raw log-mel"][i]
        assert mel.shape[1] == 80 and abs(mel.shape[0] - len(w) // 160) <= 1
