"""workbench.dataset: examples from a speaker folder, the feature cache, the speaker-mixing sampler.

The sampler's "every batch holds every speaker" on equal counts is also checked in
``test_personalize.py``; here: what an Example is, what is loaded (trimmed, transcripts,
usable takes only), that cached features equal features computed alone, and the sampler on
uneven counts, one speaker and a fixed seed.
"""

from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np
import pytest
import torch
from _models import noise_waves, tiny_backend

from conftest import SR, make_speechlike, make_tone
from workbench.corpus import SpeakerCorpus
from workbench.dataset import (
    Example,
    FeatureCache,
    examples_from_corpus,
    speaker_mixed_batches,
)
from workbench.errors import CorpusError

PROMPTS = ["turn on the light", "good morning", "call my sister", "close the door"]


def test_an_example_is_a_frozen_record_with_its_length_in_seconds() -> None:
    ex = Example(np.zeros(SR // 2, np.float32), "hello")
    assert (ex.seconds, ex.speaker, ex.utt_id) == (0.5, 0, "")
    with pytest.raises(dataclasses.FrozenInstanceError):
        ex.text = "goodbye"  # type: ignore[misc]


def _corpus(tmp_path) -> SpeakerCorpus:
    corpus = SpeakerCorpus.create(tmp_path, "spk-001", prompts=PROMPTS)
    corpus.add_take(make_speechlike(3.0, lead_s=1.0, tail_s=1.0, seed=1), prompt=PROMPTS[0])  # 1 s of pause each side
    corpus.add_take(make_speechlike(1.2, seed=2), prompt=PROMPTS[1], transcript="good morning to you")
    corpus.add_take(make_tone(0.1), prompt=PROMPTS[2])  # too short: rejected
    return corpus


def test_examples_from_a_speaker_folder_are_its_usable_takes_trimmed(tmp_path) -> None:
    corpus = _corpus(tmp_path)
    ok = corpus.utterances()
    assert len(ok) == 2 and len(corpus.utterances("rejected")) == 1
    examples = examples_from_corpus(corpus, speaker=3)
    assert [e.utt_id for e in examples] == [u.utt_id for u in ok]
    assert [e.text for e in examples] == ["turn on the light", "good morning to you"]  # the transcript wins
    assert {e.speaker for e in examples} == {3}
    stored = corpus.load_audio(ok[0])
    assert stored.size == 3 * SR
    assert examples[0].wav.dtype == np.float32
    assert 0.9 * SR < examples[0].wav.size < 1.5 * SR  # the 2 s of silence are cut, a little padding kept
    assert examples[0].wav.size < stored.size


def test_examples_of_chosen_takes_and_a_missing_file_named(tmp_path) -> None:
    corpus = _corpus(tmp_path)
    rejected = corpus.utterances("rejected")
    (only,) = examples_from_corpus(corpus, rejected)
    assert only.utt_id == rejected[0].utt_id and only.text == PROMPTS[2]
    listed = corpus.utterances()
    victim = listed[1]
    (corpus.root / victim.audio_path).unlink()  # gone after it was listed (a copy, a sync)
    with pytest.raises(CorpusError, match=rf"recording {victim.utt_id} of speaker spk-001 cannot be read") as err:
        examples_from_corpus(corpus, listed)
    assert "record it again" in str(err.value)
    assert [e.utt_id for e in examples_from_corpus(corpus)] == [listed[0].utt_id]  # listed afresh: left out


def test_cached_features_equal_features_computed_alone_and_batches_keep_rows() -> None:
    backend = tiny_backend()
    waves = noise_waves(5)
    examples = [Example(w, f"text {i}", speaker=i % 2, utt_id=f"u{i}") for i, w in enumerate(waves)]
    cache = FeatureCache(backend, examples)
    assert len(cache) == 5
    alone = [backend.featurize([w]) for w in waves]
    assert cache.lengths == [int(b.lengths[0]) for b in alone]
    batch, texts = cache.batch([3, 0, 4])
    assert texts == ["text 3", "text 0", "text 4"]
    assert batch.speaker_index.tolist() == [1, 0, 0]
    assert batch.lengths.tolist() == [cache.lengths[i] for i in (3, 0, 4)]
    assert batch.waveform_lengths.tolist() == [len(waves[i]) for i in (3, 0, 4)]
    for row, i in enumerate((3, 0, 4)):
        n = cache.lengths[i]
        torch.testing.assert_close(batch.features[row, :n], alone[i].features[0, :n])
        assert not batch.features[row, n:].any()  # zero padding past each length


def _counts(batch: list[int], speakers: list[int]) -> Counter:
    return Counter(speakers[i] for i in batch)


def test_uneven_speakers_each_example_once_and_batches_mixed_while_they_last() -> None:
    speakers = [0] * 9 + [1] * 3 + [2] * 2
    batches = speaker_mixed_batches(speakers, 3, generator=torch.Generator().manual_seed(1))
    assert sorted(i for b in batches for i in b) == list(range(len(speakers)))
    assert [len(b) for b in batches] == [3, 3, 3, 3, 2]
    assert len(_counts(batches[0], speakers)) == 3  # dealt round-robin: the first round has one of each
    assert len(_counts(batches[1], speakers)) >= 2
    assert set(_counts(batches[-1], speakers)) == {0}  # only the big speaker is left at the end


def test_one_speaker_is_a_shuffle_and_a_seed_repeats_the_epoch() -> None:
    def epoch(seed: int) -> list[list[int]]:
        return speaker_mixed_batches([7] * 10, 4, generator=torch.Generator().manual_seed(seed))

    first = epoch(0)
    assert [len(b) for b in first] == [4, 4, 2]
    assert sorted(i for b in first for i in b) == list(range(10))
    assert epoch(0) == first
    assert any(epoch(s) != first for s in (1, 2, 3))
    assert speaker_mixed_batches([], 4, generator=torch.Generator()) == []
