"""The speaker-ID probe reads raw log-mel and is calibrated on d-vectors (issue 24 item 3).

Before the fix notebook 08 gave the probe per-utterance normalized log-mel; its pooled mean and
std are 0 and 1 for every recording, so it reported chance (12 %) and the stream looked more
revealing than the audio.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from workbench.device_tuning.heads import HeadTraining
from workbench.device_tuning.privacy import log_mels, speaker_probe, speaker_probes, split_utterances
from workbench.errors import WorkbenchError

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"


def _speaker_frames(n_per: int = 6, d: int = 10, seed: int = 0) -> tuple[list[torch.Tensor], list[str]]:
    """Frames whose per-dimension level depends on the speaker (as a voice's spectrum does)."""
    g = torch.Generator().manual_seed(seed)
    feats, who = [], []
    for s in range(4):
        level = torch.randn(d, generator=g) * 2
        for _ in range(n_per):
            feats.append(level + torch.randn(int(torch.randint(8, 20, (1,), generator=g)), d, generator=g))
            who.append(f"s{s}")
    return feats, who


def _normalized(x: torch.Tensor) -> torch.Tensor:
    return (x - x.mean(0)) / x.std(0, unbiased=False)


def test_probe_refuses_per_utterance_normalized_features():
    feats, who = _speaker_frames()
    tr, te = split_utterances(who)
    with pytest.raises(WorkbenchError, match="normalized per utterance.*raw log-mel"):
        speaker_probe([_normalized(f) for f in feats], who, tr, te, HeadTraining(max_steps=2))
    # the same frames, raw: accepted, and the speaker-dependent level is found
    res = speaker_probe(feats, who, tr, te, HeadTraining(max_steps=60, batch_size=8, lr=5e-3))
    assert res.accuracy >= 0.75 > res.chance


def test_probe_results_do_not_depend_on_what_ran_before():
    feats, who = _speaker_frames(seed=3)
    settings = HeadTraining(max_steps=15, batch_size=8)
    torch.manual_seed(1)
    a = speaker_probes({"x": feats}, who, settings=settings)["x"]
    torch.randn(1000)
    torch.manual_seed(7)
    b = speaker_probes({"x": feats}, who, settings=settings)["x"]
    assert a == b


def test_speaker_probes_shares_one_split_and_checks_lengths():
    feats, who = _speaker_frames()
    res = speaker_probes({"a": feats, "b": [f * 2 for f in feats]}, who, settings=HeadTraining(max_steps=3))
    assert list(res) == ["a", "b"] and res["a"].n_test == res["b"].n_test == 8
    with pytest.raises(WorkbenchError, match="b: 23 utterances for 24"):
        speaker_probes({"a": feats, "b": feats[:-1]}, who, settings=HeadTraining(max_steps=1))


def test_log_mel_probe_on_the_sample_speakers_is_well_above_chance():
    """Notebook 08's fast settings on the shipped speakers: raw log-mel names most of them,
    d-vectors (the calibration) nearly all."""
    from workbench.corpus import SpeakerCorpus
    from workbench.dataset import examples_from_corpus
    from workbench.device_tuning import SplitModel
    from workbench.device_tuning.compressor import default_compressor, load_compressor
    from workbench.device_tuning.privacy import probe_split
    from workbench.models import load_base_model

    backend = load_base_model("tiny").freeze()
    compressor, meta = load_compressor(default_compressor())
    split = SplitModel(backend, meta["split_layer"], compressor)
    utts, who = [], []
    for f in sorted(p for p in SAMPLE.glob("sim-*") if (p / "manifest.jsonl").exists()):
        exs = examples_from_corpus(SpeakerCorpus.open(f))[:6]
        utts += [e.wav for e in exs]
        who += [f.name] * len(exs)
    res = probe_split(split, utts, who, settings=HeadTraining(max_steps=40))
    assert list(res) == ["wire symbols", "restored states", "raw log-mel", "d-vectors (calibration)"]
    chance = res["raw log-mel"].chance
    assert chance == pytest.approx(1 / 8)
    assert res["raw log-mel"].accuracy >= 4 * chance  # 75 % measured; 12 % (chance) before the fix
    assert res["d-vectors (calibration)"].accuracy >= 0.8
    assert res["wire symbols"].accuracy > chance
    with pytest.raises(WorkbenchError, match="normalized per utterance"):
        speaker_probes({"normalized log-mel": log_mels(utts)[0]}, who, settings=HeadTraining(max_steps=1))


def test_probe_bench_and_its_results_section(tmp_path, monkeypatch):
    """``bench_device_tuning_tasks --probes --quick`` and the docs/results.md section it feeds."""
    monkeypatch.setenv("WORKBENCH_BENCH_DIR", str(tmp_path))
    from bench import bench_device_tuning_tasks as bench
    from bench.summarize_device_tuning import probe_lines

    res = bench.run_probes("cpu", quick=True)
    assert list(res["runs"]) == ["fast"] and res["runs"]["fast"]["settings"] == bench.NOTEBOOK_PROBES["fast"]
    assert res["representations"] == ["wire symbols", "restored states", "raw log-mel", "d-vectors (calibration)"]
    lines = probe_lines(res)
    assert ("| notebook settings | test recordings | chance | wire symbols | restored states | raw log-mel | "
            "d-vectors (calibration) |") in lines
    row = next(line for line in lines if line.startswith("| fast"))
    probes = res["runs"]["fast"]["probes"]
    assert f"{100 * probes['raw log-mel']['accuracy']:.0f} %" in row and "| 12 % |" in row
