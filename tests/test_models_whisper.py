"""The Whisper backend on a tiny random config (offline): windows, caching, loss, decoding, training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

from workbench.adapters import LoRAConfig, load_submodel  # noqa: E402
from workbench.dataset import Example, FeatureCache  # noqa: E402
from workbench.errors import AudioError, TrainingError, WorkbenchError  # noqa: E402
from workbench.models import load_base_model  # noqa: E402
from workbench.models.whisper.backend import WhisperBackend, _repetition_cut  # noqa: E402
from workbench.trainer import TrainConfig, Trainer  # noqa: E402
from workbench.workflow import build_decoder, default_config  # noqa: E402

from _models import hf_whisper_dir, noise_waves  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore")

WORDS = ["hello there", "yes please", "good morning", "thank you", "see you soon", "no thanks", "a cup of tea",
         "open the door", "call my son", "turn it off", "i am tired", "where is it"]


@pytest.fixture(scope="module")
def whisper_dir(tmp_path_factory):
    return hf_whisper_dir(tmp_path_factory.mktemp("hf") / "whisper")


@pytest.fixture
def backend(whisper_dir) -> WhisperBackend:
    b = load_base_model(whisper_dir)
    assert isinstance(b, WhisperBackend) and b.is_seq2seq
    return b


def test_auto_window_follows_the_longest_recording_and_full_is_30_s(whisper_dir) -> None:
    auto = load_base_model(whisper_dir)
    full = load_base_model(whisper_dir, window="full")
    waves = [np.zeros(16000 * 2, np.float32) + 0.01, np.zeros(16000 * 5 // 2, np.float32) + 0.01]
    assert auto.featurize(waves).features.shape[1] == 400  # 2.5 s + 1 s margin -> 4 s (2 s buckets)
    assert full.featurize(waves).features.shape[1] == 3000
    assert auto.window_frames(2990) == 3000 and auto.window_frames(0) == 200
    with pytest.raises(WorkbenchError, match="window"):
        load_base_model(whisper_dir, window="half")


def test_padding_is_whispers_silence_not_zeros(backend) -> None:
    wav = (0.3 * np.sin(np.arange(16000) / 5)).astype(np.float32)
    f = backend.featurize([wav]).features[0]  # (W, 80)
    tail = f[150:]  # after the 1 s of audio
    assert float(tail.abs().max()) > 0.1  # log-mel silence of this recording, not 0
    torch.testing.assert_close(tail, tail[-1:].expand_as(tail))


def test_the_prompt_has_one_start_token_and_labels_end_with_eot(backend) -> None:
    dec_in, labels = backend.decoder_io(["Hello there.", "yes"])
    sot = backend.prompt_ids[0]
    assert (dec_in == sot).sum(1).tolist() == [1, 1]
    p = len(backend.prompt_ids)
    assert dec_in[0, :p].tolist() == backend.prompt_ids
    n = len(backend.target_ids("Hello there."))
    assert labels[0, p - 1: p - 1 + n].tolist() == dec_in[0, p: p + n].tolist()  # next-token targets
    assert labels[0, p - 1 + n] == backend.eot and (labels[0, : p - 1] == -100).all()
    assert not any(t >= backend.eot for t in backend.target_ids("Hello there."))


def test_frozen_prefix_cache_equals_the_full_encoder(backend) -> None:
    waves = noise_waves(3, seed=1)
    plain = FeatureCache(backend, [Example(w, t) for w, t in zip(waves, WORDS, strict=False)])
    cached = FeatureCache(backend, [Example(w, t) for w, t in zip(waves, WORDS, strict=False)], frozen_layers=1)
    b0, texts = plain.batch([0, 1, 2])
    b1, _ = cached.batch([0, 1, 2])
    assert b1.start_layer == 1 and b1.features.shape[-1] == backend.hidden_size
    with torch.no_grad():
        e0, l0 = backend.encode(b0)
        e1, l1 = backend.encode(b1)
        torch.testing.assert_close(e0, e1, atol=1e-5, rtol=1e-5)
        assert l0.tolist() == l1.tolist()
        torch.testing.assert_close(backend.loss(b0, texts), backend.loss(b1, texts), atol=1e-5, rtol=1e-5)


def test_decoding_is_capped_by_duration_and_stops_loops() -> None:
    assert _repetition_cut([7, 3, 3, 3, 3]) == 2
    assert _repetition_cut([9, 1, 2, 1, 2, 1, 2, 1, 2]) == 3
    assert _repetition_cut([1, 2, 3, 1, 2, 3]) is None  # three tokens: 3 copies needed
    assert _repetition_cut([8, 1, 2, 3, 4, 5, 1, 2, 3, 4, 5]) == 6  # a phrase said twice


def test_random_model_output_is_bounded_by_the_audio_length(backend) -> None:
    wav = noise_waves(1, lo=16000, hi=16001)[0]  # 1 s: at most 8 + 7 tokens
    batch = backend.featurize([wav])
    text = backend.decode_batch(batch)[0]
    assert len(backend.target_ids(text)) <= 15 + 2  # re-tokenized text may merge/split a token


def test_long_recordings_are_chunked_for_transcription_and_refused_for_training(backend) -> None:
    two_minutes = (0.05 * np.random.default_rng(0).standard_normal(16000 * 120)).astype(np.float32)
    assert len(backend.transcribe([two_minutes])) == 1  # split at pauses into <= 20 s pieces
    with pytest.raises(AudioError, match="at most 30 s"):
        backend.featurize([two_minutes])


def test_lexicon_decoder_is_not_used_with_whisper(backend) -> None:
    assert build_decoder("lexicon", ["hello there"], backend=backend) is None
    with pytest.raises(WorkbenchError, match="own search"):
        backend.transcribe(noise_waves(1), decoder=lambda lp: "x")


def test_default_adapter_is_lora_on_every_layer_and_the_decoder(backend) -> None:
    cfg = default_config(backend)
    assert cfg.adapter.family == "lora" and cfg.adapter.decoder and cfg.adapter.top_layers == 0
    assert cfg.learning_rate == pytest.approx(1e-3)
    assert default_config(backend, adapter=LoRAConfig()).learning_rate == pytest.approx(3e-3)


def test_trainer_fit_evaluate_save_load_transcribe(backend, tmp_path) -> None:
    waves = noise_waves(12, seed=3)
    train = [Example(w, t) for w, t in zip(waves[:10], WORDS[:10], strict=True)]
    valid = [Example(w, t) for w, t in zip(waves[10:], WORDS[10:], strict=True)]
    cfg = default_config(backend, adapter=LoRAConfig(top_layers=1, decoder=True), max_steps=6, eval_every=3,
                         time_limit_s=None, speed_perturb=(), patience=0, learning_rate=3e-2)
    trainer = Trainer(backend, train, valid, cfg)
    assert trainer.frozen_layers == 1  # LoRA on the top layer only: the bottom encoder layer is computed once
    result = trainer.fit()
    losses = [h["loss"] for h in result.history if h["kind"] == "step"]
    assert len(losses) == 6 and losses[-1] < losses[0]
    evals = [h for h in result.history if h["kind"] == "eval"]
    assert [e["step"] for e in evals] == [0, 3, 6] and all(0 <= e["wer"] for e in evals)
    path = trainer.adapted.save(tmp_path / "a.safetensors", speaker_ids=["spk"])
    before = trainer.adapted.transcribe(waves[10:])
    trainer.adapted.remove()
    adapted, meta = load_submodel(backend, path)
    assert meta["config"]["decoder"] is True
    assert adapted.transcribe(waves[10:]) == before


def test_per_speaker_selection_is_refused_plainly_for_whisper(backend) -> None:
    waves = noise_waves(12, seed=5)
    train = [Example(w, t, speaker=i % 2) for i, (w, t) in enumerate(zip(waves[:10], WORDS[:10], strict=True))]
    valid = [Example(w, t, speaker=i) for i, (w, t) in enumerate(zip(waves[10:], WORDS[10:], strict=True))]
    with pytest.raises(TrainingError, match="per_speaker_selection"):
        Trainer(backend, train, valid, TrainConfig(per_speaker_selection=True, speed_perturb=()))


def test_cached_decoding_chooses_what_the_whole_sequence_says(backend) -> None:
    """Each token greedy decoding chose with its key/value cache is the best next token of the decoder run
    on the whole sequence without a cache. Transformers before 5.24 ignore ``cache=`` (it lands in
    ``**kwargs``), so every step decoded without its past; the cache's name now follows the version."""
    wavs = noise_waves(3, seed=3, lo=16000, hi=32000)
    batch = backend.featurize(wavs)
    forced = [backend.target_ids(t) for t in ("good morning", "open the door", "thank you")]
    decoded = backend.decode_details(batch, prefixes=forced)
    free = [len(d.tokens) - len(f) for d, f in zip(decoded, forced, strict=True)]
    assert sum(free) >= 3, f"too few tokens chosen after the forced ones to tell: {free}"  # each needs the cache
    p = len(backend.prompt_ids)
    with torch.no_grad():
        enc, _ = backend.encode(batch)
        for i, d in enumerate(decoded):
            seq = torch.tensor([backend.prompt_ids + d.tokens])
            h = backend.model.model.decoder(input_ids=seq, encoder_hidden_states=enc[i: i + 1], use_cache=False)
            logits = backend.model.proj_out(h.last_hidden_state[0]).float()
            logits[:, backend._suppress] = -float("inf")
            logits[p - 1, backend._begin_suppress] = -float("inf")
            for step in range(len(forced[i]), len(d.tokens)):  # position p - 1 + step predicts token `step`
                token, row = d.tokens[step], logits[p - 1 + step]
                assert float(row[token]) >= float(row.max()) - 1e-4, (i, step, token, int(row.argmax()))
