"""Small random base models for tests (no shipped weights needed)."""

from __future__ import annotations

import numpy as np
import torch

from workbench.models.tiny import TinyBackend, TinyConfig, TinyConformerCTC


def tiny_backend(seed: int = 0) -> TinyBackend:
    """A 3-block, 32-wide built-in-architecture model with random weights, frozen, eval mode."""
    torch.manual_seed(seed)
    cfg = TinyConfig(d_model=32, num_layers=3, num_heads=2, ff_mult=2, conv_kernel=5, subsample_channels=8,
                     dropout=0.0)
    backend = TinyBackend(TinyConformerCTC(cfg).eval(), name="test-tiny")
    return backend.freeze()


def noise_waves(n: int, seed: int = 0, lo: int = 6000, hi: int = 20000) -> list[np.ndarray]:
    """``n`` noise waveforms of random lengths (samples at 16 kHz)."""
    rng = np.random.default_rng(seed)
    return [(0.1 * rng.standard_normal(int(rng.integers(lo, hi)))).astype(np.float32) for _ in range(n)]


CHARS = list("abcdefghijklmnopqrstuvwxyz'")


def hf_ctc_dir(path) -> str:
    """Save a tiny random wav2vec2-CTC model, tokenizer and feature extractor to ``path``."""
    import json

    from transformers import (Wav2Vec2Config, Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor, Wav2Vec2ForCTC,
                              Wav2Vec2Processor)

    path.mkdir(parents=True, exist_ok=True)
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, **{c: 5 + i for i, c in enumerate(CHARS)}}
    (path / "vocab.json").write_text(json.dumps(vocab))
    tok = Wav2Vec2CTCTokenizer(str(path / "vocab.json"), word_delimiter_token="|")
    fe = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                                  return_attention_mask=True)
    Wav2Vec2Processor(feature_extractor=fe, tokenizer=tok).save_pretrained(path)
    torch.manual_seed(0)
    cfg = Wav2Vec2Config(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=40, conv_dim=(16, 16), conv_stride=(5, 4), conv_kernel=(10, 8),
                         num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, feat_extract_norm="layer",
                         do_stable_layer_norm=True, pad_token_id=0, hidden_dropout=0.0, attention_dropout=0.0,
                         activation_dropout=0.0, feat_proj_dropout=0.0, layerdrop=0.0, mask_time_prob=0.0,
                         architectures=["Wav2Vec2ForCTC"])
    Wav2Vec2ForCTC(cfg).save_pretrained(path)
    return str(path)


def hf_whisper_dir(path) -> str:
    """Save a tiny random Whisper model with a byte-level tokenizer to ``path``."""
    import json

    from transformers import (WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration,
                              WhisperProcessor, WhisperTokenizer)
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    path.mkdir(parents=True, exist_ok=True)
    vocab = {ch: i for i, ch in enumerate(bytes_to_unicode().values())}
    specials = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|translate|>", "<|transcribe|>",
                "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>", "<|notimestamps|>"]
    for sp in specials:
        vocab[sp] = len(vocab)
    (path / "vocab.json").write_text(json.dumps(vocab))
    (path / "merges.txt").write_text("#version: 0.2\n")
    tok = WhisperTokenizer(str(path / "vocab.json"), str(path / "merges.txt"), unk_token="<|endoftext|>",
                           bos_token="<|endoftext|>", eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    fe = WhisperFeatureExtractor(feature_size=80)
    WhisperProcessor(feature_extractor=fe, tokenizer=tok).save_pretrained(path)
    torch.manual_seed(0)
    cfg = WhisperConfig(vocab_size=len(vocab), d_model=32, encoder_layers=2, decoder_layers=2,
                        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=48,
                        decoder_ffn_dim=48, num_mel_bins=80, max_source_positions=1500, max_target_positions=64,
                        pad_token_id=vocab["<|endoftext|>"], bos_token_id=vocab["<|endoftext|>"],
                        eos_token_id=vocab["<|endoftext|>"], decoder_start_token_id=vocab["<|startoftranscript|>"],
                        dropout=0.0, architectures=["WhisperForConditionalGeneration"])
    model = WhisperForConditionalGeneration(cfg)
    model.generation_config.decoder_start_token_id = vocab["<|startoftranscript|>"]
    model.generation_config.forced_decoder_ids = None
    model.generation_config.suppress_tokens = []
    model.generation_config.begin_suppress_tokens = []
    model.save_pretrained(path)
    return str(path)
