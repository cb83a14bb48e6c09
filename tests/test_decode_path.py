"""One decode path and typed cached features at the backend boundary (issue 31 items 4 and 5).

``ASRBackend.decode_batch`` decodes CTC log-probabilities (greedy, or the decoder given) and is
what ``transcribe``, the Trainer's validation and a split's server call for every backend;
Whisper overrides only ``decode_batch``/``loss_and_decode``, not the transcription loop.
``cache_features`` returns :class:`CachedFeatures` on every backend.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from workbench.dataset import Example, FeatureCache
from workbench.decode import greedy_decode
from workbench.errors import WorkbenchError
from workbench.models.base import ASRBackend, CachedFeatures

from _models import hf_whisper_dir, noise_waves, tiny_backend

def _old_ctc_branch(backend, batch, decoder) -> list[str]:
    """What the callers wrote before the shared path: log-probs, then the decoder per utterance."""
    lp, lens = backend.log_probs(batch)
    lp = lp.float().cpu().numpy()
    return [decoder(lp[j, : int(lens[j])]) for j in range(lp.shape[0])]


@pytest.fixture(scope="module")
def whisper(tmp_path_factory):
    pytest.importorskip("transformers")
    from workbench.models import load_base_model

    return load_base_model(hf_whisper_dir(tmp_path_factory.mktemp("hf") / "whisper"))


def test_ctc_decode_batch_is_the_greedy_or_given_decoder_on_the_log_probs() -> None:
    backend = tiny_backend(0)
    batch = backend.featurize(noise_waves(4, seed=1))
    with torch.no_grad():
        assert backend.decode_batch(batch) == _old_ctc_branch(backend, batch, greedy_decode)
        def frames_and_mass(lp: np.ndarray) -> str:  # any decoder: sees each utterance's own true frames
            return f"{lp.shape[0]} {float(np.exp(lp).sum()):.3f}"

        assert backend.decode_batch(batch, decoder=frames_and_mass) == _old_ctc_branch(backend, batch, frames_and_mass)


def test_ctc_loss_and_decode_is_one_pass_of_loss_and_texts() -> None:
    backend = tiny_backend(0)
    waves, texts = noise_waves(3, seed=2), ["hello there", "yes please", "good morning"]
    batch = backend.featurize(waves)
    with torch.no_grad():
        lp, lens = backend.log_probs(batch)
        loss, hyps = backend.loss_and_decode(batch, texts)
        assert torch.equal(loss, backend.loss_from_log_probs(lp, lens, texts))
        assert hyps == _old_ctc_branch(backend, batch, greedy_decode)
        own, _ = backend.loss_and_decode(batch, texts, per_utterance=True)
    assert own.shape == (3,)
    for j in range(3):  # bit for bit each utterance's own loss
        assert float(own[j]) == float(backend.loss_from_log_probs(lp[j: j + 1], lens[j: j + 1], [texts[j]]))


def test_transcribe_is_one_loop_for_every_backend(whisper) -> None:
    assert type(whisper).transcribe is ASRBackend.transcribe
    assert whisper.transcribe_batch_size == 8 and ASRBackend.transcribe_batch_size == 16
    waves = noise_waves(3, seed=4, lo=8000, hi=24000)
    with torch.no_grad():  # a batch of one is the same window as transcribe's pieces
        alone = [whisper.decode_batch(whisper.featurize([w]))[0] for w in waves]
    assert whisper.transcribe(waves, batch_size=1) == alone
    with pytest.raises(WorkbenchError, match="own search"):
        whisper.decode_batch(whisper.featurize(waves[:1]), decoder=lambda lp: "x")


def test_cache_features_returns_typed_records_on_both_backends(whisper) -> None:
    waves = noise_waves(3, seed=5)
    for backend, k in ((tiny_backend(0), 2), (whisper, 1)):
        for frozen in (0, k):
            items = backend.cache_features(waves, frozen_layers=frozen)
            assert all(isinstance(it, CachedFeatures) for it in items)
            assert [it.samples for it in items] == [len(w) for w in waves]
            assert {it.start_layer for it in items} == {frozen}
            batch = backend.collate(items, [0, 1, 0])
            assert batch.start_layer == frozen
            assert batch.lengths.tolist() == [it.length for it in items]
    cache = FeatureCache(tiny_backend(0), [Example(w, "hello") for w in waves], frozen_layers=2)
    assert cache.lengths == [it.length for it in cache.items]


def test_collate_refuses_features_cached_at_different_layers() -> None:
    backend = tiny_backend(0)
    waves = noise_waves(2, seed=6)
    mixed = backend.cache_features(waves[:1]) + backend.cache_features(waves[1:], frozen_layers=1)
    with pytest.raises(WorkbenchError, match="different encoder layers"):
        backend.collate(mixed, [0, 0])


def test_a_split_server_decodes_through_the_backend_path() -> None:
    from workbench.device_tuning import split_for

    backend = tiny_backend(0)
    waves = noise_waves(3, seed=7)
    split = split_for(backend, 2)
    items = split.device_hidden(waves)
    assert all(isinstance(it, CachedFeatures) and it.start_layer == 2 for it in items)
    assert split.transcribe(waves) == backend.transcribe(waves)
    assert np.all([it.features.shape[0] == it.length for it in items])  # the built-in split keeps true frames only
