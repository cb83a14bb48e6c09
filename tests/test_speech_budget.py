"""The end-of-speech-aware cut: a short phrase said once is not transcribed twice ("yes yes")."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from workbench.speech_budget import band_power_db, repeat_cut, syllable_nuclei, syllables


def _bursts(n: int, *, gap_s: float = 0.25, burst_s: float = 0.22, tail_s: float = 0.6) -> np.ndarray:
    """``n`` vowel-like bursts (a 220 Hz tone with harmonics), ``gap_s`` of silence between: 16 kHz float32."""
    sample_rate = 16000
    t = np.arange(int(burst_s * sample_rate)) / sample_rate
    burst = sum(np.sin(2 * np.pi * 220 * k * t) / k for k in range(1, 6)) * np.hanning(t.size)
    gap = np.zeros(int(gap_s * sample_rate))
    parts = [gap]
    for _ in range(n):
        parts += [burst, gap]
    parts.append(np.zeros(int(tail_s * sample_rate)))
    return (0.3 * np.concatenate(parts) / np.abs(burst).max()).astype(np.float32)


def test_a_repeat_the_nuclei_cannot_hold_is_cut_and_nothing_else_is() -> None:
    assert repeat_cut(["yes", "yes"], 1) == 1
    assert repeat_cut(["wait", "wait", "wait"], 1) == 1  # again, while both hold
    assert repeat_cut(["hello", "hello"], 2) == 1  # four syllables, two nuclei
    assert repeat_cut(["yes", "please", "please"], 2) == 2
    assert repeat_cut(["yes", "yes"], 2) == 2  # two nuclei: it was said twice
    assert repeat_cut(["the", "last", "caller", "was"], 1) == 4  # no repeat: never cut (fast real speech)
    assert repeat_cut(["call", "the", "nurse", "nurse"], 1) == 4  # the copy kept would not fit either
    assert repeat_cut([], 0) == 0
    assert [syllables(w) for w in ("hello", "morning", "please", "nurse", "okay")] == [2, 2, 1, 1, 2]


def test_syllable_nuclei_count_the_loud_vowels_of_whisper_features() -> None:
    from transformers import WhisperFeatureExtractor

    fe = WhisperFeatureExtractor(feature_size=80)
    counts = []
    for n in (1, 2, 3):
        wav = _bursts(n)
        feats = fe([wav], sampling_rate=16000, return_tensors="np")["input_features"][0][:, : len(wav) // 160]
        counts.append(syllable_nuclei(band_power_db(feats.T)))
    assert counts == [1, 2, 3]
    assert syllable_nuclei(np.full(200, -40.0)) == 0  # a flat contour (silence, a steady hum) has none


@pytest.fixture(scope="module")
def whisper(tmp_path_factory):
    pytest.importorskip("transformers")
    from _models import hf_whisper_dir

    from workbench.models import load_base_model

    return load_base_model(hf_whisper_dir(tmp_path_factory.mktemp("hf") / "whisper"))


class _Scripted(torch.nn.Module):
    """Stands in for Whisper's output projection: the next scripted token at each call."""

    def __init__(self, tokens: list[int], vocab: int) -> None:
        super().__init__()
        self.tokens, self.vocab, self.calls = tokens, vocab, 0

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        row = torch.zeros(self.vocab)
        row[self.tokens[min(self.calls, len(self.tokens) - 1)]] = 9.0
        self.calls += 1
        return row.expand(hidden.shape[0], -1).clone()


@pytest.mark.parametrize(("said", "kept"), [(1, "yes"), (2, "yes yes")])
def test_whisper_keeps_one_yes_from_one_syllable_of_audio(whisper, monkeypatch, said, kept) -> None:
    first = list(whisper.tokenizer("yes", add_special_tokens=False).input_ids)  # the first word: no space
    again = list(whisper.tokenizer(" yes", add_special_tokens=False).input_ids)
    script = first + again + [whisper.eot]  # the model says "yes yes" whatever it hears
    monkeypatch.setattr(whisper, "no_speech_id", None)  # one projection call per step
    batch = whisper.featurize([_bursts(said)])
    monkeypatch.setattr(whisper.model, "proj_out", _Scripted(script, whisper.model.config.vocab_size))
    d = whisper.decode_details(batch)[0]
    assert d.text == kept and d.tokens == (first if said == 1 else first + again)
    monkeypatch.setattr(whisper.model, "proj_out", _Scripted(script, whisper.model.config.vocab_size))
    whisper.speech_cut = False
    try:
        assert whisper.decode_details(batch)[0].text == "yes yes"  # the cut off: as before
    finally:
        whisper.speech_cut = True
    # a forced prefix (live captions' committed words) is never cut
    monkeypatch.setattr(whisper.model, "proj_out", _Scripted(script, whisper.model.config.vocab_size))
    assert whisper.decode_details(batch, prefixes=[first + again])[0].text == "yes yes"
