"""`evaluate`/`report` with another speaker's adapter say whose adapter it is (issue 16)."""

from __future__ import annotations

import warnings

import pytest

from workbench.adapters import ResidualConfig, inject
from workbench.corpus import SpeakerCorpus
from workbench.workflow import evaluate_speaker

from _models import noise_waves, tiny_backend

pytestmark = pytest.mark.filterwarnings("ignore:the (held-out|validation) set has only")

PROMPTS = ["turn on the light", "call my sister", "i am hungry", "good morning"]


def _speaker(root, speaker_id: str) -> SpeakerCorpus:
    corpus = SpeakerCorpus.create(root, speaker_id, prompts=PROMPTS, simulated=True)
    for i, w in enumerate(noise_waves(4, seed=3, lo=12000, hi=16000)):
        corpus.add_take(w * 3, prompt=PROMPTS[i])
    return corpus


def _adapter_file(backend, path, speaker_id: str):
    adapted = inject(backend, ResidualConfig(bottleneck=4))
    try:
        return adapted.save(path, speaker_ids=[speaker_id])
    finally:
        adapted.remove()


def test_another_speakers_adapter_is_named_in_the_warning_and_the_report(tmp_path) -> None:
    backend = tiny_backend()
    other = _speaker(tmp_path, "spk-b")
    path = _adapter_file(backend, tmp_path / "a.safetensors", "spk-a")
    with pytest.warns(UserWarning, match=r"a.safetensors is 'spk-a''s adapter, not 'spk-b''s"):
        evaluate_speaker(other.root, backend=backend, adapter=path, decoder="greedy")
    with pytest.warns(UserWarning, match="'spk-a''s adapter"):
        evaluate_speaker(other.root, backend=backend, adapter=path, decoder="greedy", write_report=True)
    page = next((other.root / "reports").glob("*.html")).read_text()
    assert "spk-a (another speaker: not spk-b)" in page


def test_the_speakers_own_adapter_gives_no_warning(tmp_path) -> None:
    backend = tiny_backend()
    own = _speaker(tmp_path, "spk-a")
    path = _adapter_file(backend, own.root / "submodels" / "a.safetensors", "spk-a")
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*adapter, not")
        evaluate_speaker(own.root, backend=backend, adapter=path, decoder="greedy", write_report=True)
    assert "spk-a" in next((own.root / "reports").glob("*.html")).read_text()
