"""``--format ggml``: a whisper.cpp model file (``ggml-model.bin``), written here from the merged weights.

No clone of openai/whisper is needed (whisper.cpp #2730): the mel filters come from librosa
(OpenAI made theirs with ``librosa.filters.mel(sr=16000, n_fft=400, n_mels=80)``), the
vocabulary from the model's own tokenizer. The layout is whisper.cpp's legacy ggml format,
as its ``models/convert-h5-to-ggml.py`` writes it; all integers are little-endian int32:

==============================  ==============================================================
``0x67676d6c``                  magic ("ggml")
11 hparams                      n_vocab, n_audio_ctx, n_audio_state, n_audio_head,
                                n_audio_layer, n_text_ctx, n_text_state, n_text_head,
                                n_text_layer, n_mels, ftype (0 float32, 1 float16)
n_mel, n_fft, then floats       the mel filterbank ``(80, 201)``, float32
n_tokens, then per token        byte length and the token's bytes (GPT-2 byte-level BPE
                                decoded to raw bytes); ids ``0 .. eot - 1`` (whisper.cpp
                                names the special tokens itself)
per tensor                      n_dims, name length, type (0 f32, 1 f16), the dims
                                innermost first, the name, the data (row-major)
==============================  ==============================================================

Tensor names are OpenAI's (``encoder.blocks.0.attn.query.weight``); ``proj_out`` is not
written (tied to the token embedding). Matrices are float16 and vectors, convolution biases
and positional embeddings float32, as whisper.cpp's own converter writes them.

**Why float16 only.** :func:`write_ggml_file` can write a float32 file (``ftype`` 0, tested for
its layout), and it loads, but whisper.cpp then builds the convolution kernels in float32 too,
and its CPU convolution (``ggml_conv_1d`` -> ``im2col`` with float16 output) takes float16
kernels only: whisper.cpp 1.8.5 (pywhispercpp 1.5.1, the newest wheel) aborts the process on the
first recording (``GGML_ASSERT(src0->type == GGML_TYPE_F16)`` in ``ggml_compute_forward_im2col``,
checked 2026-12-06). Keeping float16 kernels inside a float32 file is refused by its loader
("tensor 'encoder.conv1.weight' has wrong size"). So ``--quantization float32`` is refused
for ggml with that explanation (:data:`FLOAT32_REFUSED`); the cost of float16 weights is
measured in ``bench/bench_export.py`` (the workbench's own path on the merged weights rounded
to float16).
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import IO, TYPE_CHECKING

import numpy as np

from workbench.errors import ExportError
from workbench.export.merge import Verification, how_merged, merged_whisper

if TYPE_CHECKING:
    from workbench.adapters import Adapted

__all__ = ["FLOAT32_REFUSED", "GGML_MAGIC", "QUANTIZATIONS", "ggml_name", "write_ggml", "write_ggml_file"]

GGML_MAGIC = 0x67676D6C
QUANTIZATIONS = ("float16",)  # whisper.cpp's CPU convolution takes float16 kernels only (module docstring)
FLOAT32_REFUSED = (
    "--quantization float32 is not available for ggml: whisper.cpp builds the convolution kernels of a float32 file "
    "in float32, and its CPU convolution (im2col) takes float16 kernels only, so whisper.cpp 1.8.5 (pywhispercpp "
    "1.5.1) stops the whole program with 'GGML_ASSERT(src0->type == GGML_TYPE_F16) failed' on the first recording. "
    "Leave out --quantization (float16), or for float32 weights use --format ct2 --quantization float32 "
    "(faster-whisper / CTranslate2)")
FILE_NAME = "ggml-model.bin"
_LAYER_MAP = {
    "self_attn.k_proj": "attn.key", "self_attn.q_proj": "attn.query", "self_attn.v_proj": "attn.value",
    "self_attn.out_proj": "attn.out", "self_attn_layer_norm": "attn_ln",
    "encoder_attn.q_proj": "cross_attn.query", "encoder_attn.k_proj": "cross_attn.key",
    "encoder_attn.v_proj": "cross_attn.value", "encoder_attn.out_proj": "cross_attn.out",
    "encoder_attn_layer_norm": "cross_attn_ln", "fc1": "mlp.0", "fc2": "mlp.2", "final_layer_norm": "mlp_ln",
}
_TOP_MAP = {
    "encoder.layer_norm.weight": "encoder.ln_post.weight", "encoder.layer_norm.bias": "encoder.ln_post.bias",
    "encoder.embed_positions.weight": "encoder.positional_embedding",
    "decoder.layer_norm.weight": "decoder.ln.weight", "decoder.layer_norm.bias": "decoder.ln.bias",
    "decoder.embed_positions.weight": "decoder.positional_embedding",
    "decoder.embed_tokens.weight": "decoder.token_embedding.weight",
}
_KEEP_F32 = ("encoder.conv1.bias", "encoder.conv2.bias", "encoder.positional_embedding", "decoder.positional_embedding")


def ggml_name(hf_name: str) -> str | None:
    """OpenAI's tensor name for a transformers Whisper ``state_dict`` key; None for ``proj_out`` (tied).

    >>> ggml_name("model.encoder.layers.3.self_attn.q_proj.weight")
    'encoder.blocks.3.attn.query.weight'
    >>> ggml_name("model.decoder.layers.0.encoder_attn.k_proj.weight")
    'decoder.blocks.0.cross_attn.key.weight'
    """
    if hf_name == "proj_out.weight":
        return None
    parts = hf_name.split(".")[1:]  # drop "model."
    if len(parts) > 3 and parts[1] == "layers":
        inner = ".".join(parts[3:-1])
        if inner not in _LAYER_MAP:
            raise ExportError(f"the Whisper weight {hf_name!r} has no whisper.cpp name; this model's architecture "
                              "is not one whisper.cpp runs")
        return ".".join([parts[0], "blocks", parts[2], _LAYER_MAP[inner], parts[-1]])
    name = ".".join(parts)
    return _TOP_MAP.get(name, name)


def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level BPE alphabet, reversed: printable character -> the byte it stands for."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    return {c: b for b, c in bytes_to_unicode().items()}


def _vocabulary(tokenizer) -> list[bytes]:
    """The raw bytes of tokens ``0 .. eot - 1`` (the text tokens)."""
    eot = int(tokenizer.convert_tokens_to_ids("<|endoftext|>"))
    decoder = _byte_decoder()
    tokens = tokenizer.convert_ids_to_tokens(list(range(eot)))
    try:
        return [bytes(decoder[c] for c in tok) for tok in tokens]
    except (KeyError, TypeError):
        raise ExportError("the tokenizer is not Whisper's byte-level BPE; whisper.cpp cannot use it") from None


def write_ggml_file(fh: IO[bytes], state: dict, config, tokenizer, *, ftype: int) -> int:
    """Write a whisper.cpp model to the open binary file ``fh``; returns the number of tensors.

    Args:
        state: the merged transformers ``state_dict`` (name -> tensor).
        config: the ``WhisperConfig``.
        tokenizer: the Whisper tokenizer.
        ftype: 1 for float16 matrices, 0 for float32 everywhere.
    """
    import librosa

    c = config
    hparams = (c.vocab_size, c.max_source_positions, c.d_model, c.encoder_attention_heads, c.encoder_layers,
               c.max_target_positions, c.d_model, c.decoder_attention_heads, c.decoder_layers, c.num_mel_bins, ftype)
    fh.write(struct.pack("<12i", GGML_MAGIC, *map(int, hparams)))
    filters = librosa.filters.mel(sr=16000, n_fft=400, n_mels=int(c.num_mel_bins)).astype("<f4")  # (80, 201)
    fh.write(struct.pack("<2i", *filters.shape))
    fh.write(filters.tobytes())
    vocab = _vocabulary(tokenizer)
    fh.write(struct.pack("<i", len(vocab)))
    for tok in vocab:
        fh.write(struct.pack("<i", len(tok)))
        fh.write(tok)
    count = 0
    for key, tensor in state.items():
        name = ggml_name(key)
        if name is None:
            continue
        data = tensor.detach().float().cpu().numpy()
        if name in ("encoder.conv1.bias", "encoder.conv2.bias"):
            data = data.reshape(-1, 1)
        half = ftype == 1 and data.ndim >= 2 and name not in _KEEP_F32
        data = np.ascontiguousarray(data, dtype="<f2" if half else "<f4")
        raw = name.encode("utf-8")
        fh.write(struct.pack("<3i", data.ndim, len(raw), 1 if half else 0))
        fh.write(struct.pack(f"<{data.ndim}i", *reversed(data.shape)))
        fh.write(raw)
        fh.write(data.tobytes())
        count += 1
    return count


def write_ggml(adapted: Adapted, folder: Path, quantization: str | None) -> tuple[dict[str, str], list[str], Verification]:
    """Merge, check and write ``ggml-model.bin`` into ``folder``."""
    from workbench._atomic import atomic_file

    quantization = quantization or "float16"
    model, verification = merged_whisper(adapted)
    state = model.state_dict()
    with atomic_file(folder / FILE_NAME, "wb") as fh:
        n = write_ggml_file(fh, state, model.config, adapted.backend.tokenizer,
                            ftype=1 if quantization == "float16" else 0)
    files = {FILE_NAME: f"the whisper.cpp model ({n} tensors, {quantization} matrices, personal adapter merged)"}
    return files, [f"- format: whisper.cpp ggml, {quantization} (vectors and positional embeddings float32), written "
                   f"by the workbench from the merged float32 model ({how_merged(adapted.config.family)}); mel filters from "
                   "librosa, vocabulary from the model's tokenizer."], verification
