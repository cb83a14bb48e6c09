"""The short-phrase test set (one to three words) and the benchmark's inputs and scores."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from workbench.prompts import list_prompt_sets, load_prompts
from workbench.text import normalize_text


def test_the_short_phrase_set_has_at_least_40_phrases_of_one_to_three_words() -> None:
    assert "short_phrases" in list_prompt_sets()
    phrases = load_prompts("short_phrases")
    assert len(phrases) >= 40 and len(set(phrases)) == len(phrases)
    assert all(1 <= len(p.split()) <= 3 for p in phrases)
    assert all(normalize_text(p) == p for p in phrases)  # the built-in model's alphabet, numbers as words
    assert {"yes", "no", "help", "stop"} <= set(phrases)


@pytest.mark.skipif(shutil.which("espeak-ng") is None and shutil.which("espeak") is None, reason="needs espeak-ng")
def test_short_phrases_are_synthesized_in_a_sample_speakers_own_voice() -> None:
    from bench.bench_short_phrases import _scores, short_set, speaker_synthesizer

    assert speaker_synthesizer("real/real-allison") is None  # a real voice is never synthesized
    wavs, refs, how = short_set("sim-accent", 2)
    assert refs == load_prompts("short_phrases")[:2] and "synthesized" in how
    assert all(w.dtype == np.float32 and 0.2 < len(w) / 16000 < 5 for w in wavs)
    again, _, _ = short_set("sim-accent", 2)
    assert all(np.array_equal(a, b) for a, b in zip(wavs, again, strict=True))  # fixed seeds
    s = _scores(["yes", "help me"], ["", "help me"])
    assert s["wer"] == pytest.approx(1 / 3) and s["empty"] == 1


def test_real_voice_short_phrases_are_its_own_short_test_phrases() -> None:
    from bench.bench_short_phrases import short_set

    wavs, refs, how = short_set("real/real-allison", None)
    assert refs and all(len(r.split()) <= 3 for r in refs) and len(wavs) == len(refs) and "test phrases" in how
