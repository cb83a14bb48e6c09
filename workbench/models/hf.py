"""Pretrained transformers backends behind the :class:`ASRBackend` interface.

- CTC models (``Wav2Vec2ForCTC``, ``HubertForCTC``, ``WavLMForCTC``: anything
  ``AutoModelForCTC`` loads) via :class:`HFCTCBackend`;
- Whisper (``WhisperForConditionalGeneration``) via
  :class:`workbench.models.whisper.backend.WhisperBackend` (its own module: features,
  loss and decoding differ).

Both load from a local directory (offline) or a hub id (downloaded once by
transformers, only when a user names one). Adapter sites are the encoder
layers; LoRA targets the encoder's attention and feed-forward linears (for
Whisper, the decoder's too with ``LoRAConfig(targets=...)`` is not offered yet).

Text: transcripts are normalized with :func:`workbench.text.normalize_text`; for
tokenizers with upper-case vocabularies (e.g. ``wav2vec2-base-960h``) targets are
upper-cased, and outputs are normalized back. Decoding is the model's own
(greedy CTC through the tokenizer, or Whisper's ``generate``); the workbench's
lexicon beam search works only with the built-in character vocabulary.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from workbench._optional import require
from workbench.constants import SAMPLE_RATE
from workbench.errors import WorkbenchError
from workbench.models._serial import one_load_at_a_time
from workbench.models.base import MAX_TRAIN_S, ASRBackend, Batch, check_waveforms
from workbench.text import normalize_text

__all__ = ["HFCTCBackend", "load_pretrained", "quiet_transformers"]

_OFFLINE_HELP = (
    "The model {name!r} is not on this machine and could not be downloaded ({reason}). "
    "On a machine with internet, download it once, e.g. `huggingface-cli download {name} --local-dir "
    "models/{short}`, copy that folder here, and use `--model models/{short}` (a local folder never needs "
    "the network).")


def _decoder_for(tokenizer: Any) -> Any:
    def decode(log_probs: np.ndarray) -> str:
        ids = np.asarray(log_probs).argmax(-1)
        return normalize_text(tokenizer.decode(ids.tolist(), skip_special_tokens=True))

    return decode


class _HFBase(ASRBackend):
    """Shared plumbing: device, frame mask capture, adapter sites, linear layers."""

    sample_rate = SAMPLE_RATE
    model_class: str  # the transformers class that loads the model (load_pretrained)

    def __init__(self, model: nn.Module, processor: Any, *, name: str) -> None:
        self.model = model
        self.module = model
        self.processor = processor
        self.name = name
        self._fingerprint = None
        self._frame_mask: torch.Tensor | None = None
        self.hidden_size = int(model.config.hidden_size if hasattr(model.config, "hidden_size") else model.config.d_model)
        self.num_layers = len(self._layers())

    def _layers(self) -> nn.ModuleList:  # pragma: no cover - abstract
        raise NotImplementedError

    def adapter_sites(self) -> list[tuple[str, nn.Module]]:
        return [(f"encoder.layers.{i}", layer) for i, layer in enumerate(self._layers())]

    def linear_layers(self) -> list[tuple[str, nn.Linear]]:
        return [(f"encoder.layers.{i}.{n}", m) for i, layer in enumerate(self._layers())
                for n, m in layer.named_modules() if isinstance(m, nn.Linear)]

    def site_frame_mask(self, args: tuple, kwargs: dict, output: torch.Tensor) -> torch.Tensor | None:
        m = self._frame_mask
        return m if m is not None and m.shape == output.shape[:2] else None

    @contextlib.contextmanager
    def _frames(self, mask: torch.Tensor | None):
        prev, self._frame_mask = self._frame_mask, mask
        try:
            yield
        finally:
            self._frame_mask = prev


class HFCTCBackend(_HFBase):
    """wav2vec2 / HuBERT / WavLM CTC models. ``Batch.features`` is the normalized waveform ``(B, S)``."""

    model_class = "AutoModelForCTC"

    def __init__(self, model: nn.Module, processor: Any, *, name: str) -> None:
        super().__init__(model, processor, name=name)
        vocab = processor.tokenizer.get_vocab()
        letters = [t for t in vocab if len(t) == 1 and t.isalpha()]
        self._upper = bool(letters) and all(t.isupper() for t in letters)

    def _layers(self) -> nn.ModuleList:
        return self.model.base_model.encoder.layers

    def output_layer(self) -> nn.Module:
        return self.model.lm_head

    def greedy_decoder(self):
        return _decoder_for(self.processor.tokenizer)

    def featurize(self, waveforms: list[np.ndarray]) -> Batch:
        wavs = check_waveforms(waveforms, sample_rate=self.sample_rate, max_s=MAX_TRAIN_S)
        out = self.processor.feature_extractor(wavs, sampling_rate=self.sample_rate, padding=True,
                                               return_attention_mask=True, return_tensors="pt")
        lengths = out["attention_mask"].sum(1).long()
        dev = self.device
        return Batch(out["input_values"].to(dev), lengths.to(dev), lengths.clone().to(dev))

    def _attention_mask(self, batch: Batch) -> torch.Tensor:
        s = batch.features.shape[1]
        return (torch.arange(s, device=batch.features.device)[None, :] < batch.lengths[:, None]).long()

    def encode(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        get_len = self.model._get_feat_extract_output_lengths
        enc_lens = get_len(batch.lengths).long()
        t = int(get_len(torch.tensor(batch.features.shape[1])))
        mask = torch.arange(t, device=batch.features.device)[None, :] < enc_lens[:, None]
        # Models whose feature extractor does not return attention masks (group-norm wav2vec2
        # "base" models) were trained on zero-padded batches without one; follow their convention.
        attn = self._attention_mask(batch) if self.processor.feature_extractor.return_attention_mask else None
        with self._frames(mask):
            hidden = self.model.base_model(batch.features, attention_mask=attn).last_hidden_state
        return hidden, enc_lens

    def log_probs(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        hidden, lens = self.encode(batch)
        return F.log_softmax(self.model.lm_head(self.model.dropout(hidden)), dim=-1), lens

    def _targets(self, texts: list[str]) -> list[list[int]]:
        tok = self.processor.tokenizer
        out = []
        for t in texts:
            t = normalize_text(t)
            out.append(tok(t.upper() if self._upper else t).input_ids)
        return out

    def loss_from_log_probs(self, log_probs: torch.Tensor, lengths: torch.Tensor,
                            targets: list[str]) -> torch.Tensor:
        lp, lens = log_probs, lengths
        ids = self._targets(targets)
        tl = torch.tensor([len(i) for i in ids], dtype=torch.long)
        flat = torch.tensor([c for i in ids for c in i], dtype=torch.long)
        blank = self.model.config.pad_token_id
        loss = F.ctc_loss(lp.transpose(0, 1).float(), flat, lens.cpu(), tl, blank=blank, reduction="none",
                          zero_infinity=True)
        return (loss / (tl.to(loss.device) + 1)).mean()


def hub_cache_folder(hub_id: str, *, weights: bool = False) -> Path | None:
    """The local hub cache's folder of ``hub_id`` (no network), or None when it is not there complete:
    its ``config.json``, and with ``weights`` a ``*.safetensors`` file too. A miss in the cache (not
    cached, partial, a bad id) means "not there"; no huggingface_hub means the same."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        return None
    try:
        path = Path(snapshot_download(hub_id, local_files_only=True))
    except _hub_errors():
        return None
    complete = (path / "config.json").is_file() and (not weights or any(path.glob("*.safetensors")))
    return path if complete else None


def _hub_errors() -> tuple[type[Exception], ...]:
    """What ``snapshot_download`` raises for a miss, a bad id or no network: its documented ``OSError``
    (not cached, not found, offline) and ``ValueError`` (a bad id), and its HTTP library's base error
    (httpx's proxy and transfer errors are not ``OSError``; requests' are)."""
    try:
        from huggingface_hub.errors import HTTPError
    except ImportError:  # an old huggingface_hub: requests' errors, all OSError
        return (OSError, ValueError)
    return (OSError, ValueError, HTTPError)


def _load_errors() -> tuple[type[Exception], ...]:
    """What transformers raises for a folder or hub id it cannot load, as probed: missing files or no
    network (``OSError`` and the hub's errors), a config it does not know (``ValueError``, ``KeyError``),
    weights of another shape (``RuntimeError``), no tokenizer (``TypeError``) or no tokenizer package
    (``ImportError``), a truncated or damaged weight file (safetensors' ``SafetensorError``)."""
    errors: tuple[type[Exception], ...] = (*_hub_errors(), KeyError, RuntimeError, TypeError, ImportError)
    try:
        from safetensors import SafetensorError
    except ImportError:
        return errors
    return (*errors, SafetensorError)


@contextlib.contextmanager
def quiet_transformers():
    """Inside the block transformers draws no progress bars ("Loading weights", "Writing model
    shards"): machine noise next to a therapist's or a teacher's output. Its warnings still show.
    The previous setting comes back after the block; ``with quiet_transformers(): model.save_pretrained(d)``."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


@one_load_at_a_time  # from_pretrained swaps process-wide functions: one load at a time
@quiet_transformers()  # no "Loading weights" bar (a hub download still shows huggingface_hub's own)
def load_pretrained(name_or_path: str | Path, backend_for: Callable[[Any], type[_HFBase]], *, device: str = "cpu",
                    **options: Any) -> ASRBackend:
    """Load a transformers model from a local folder or a hub id as the backend ``backend_for(config)`` picks.

    A local folder never touches the network. A hub id is fetched by transformers
    (once, into its cache); without network the error says how to get a local copy.
    Which backend a model gets is decided by the caller
    (:func:`workbench.models.loading.load_hf_model`: CTC or Whisper), so this module names none
    but its own; ``backend_for`` raises :class:`WorkbenchError` for a model it does not take, and
    ``options`` go to the backend's constructor.
    """
    transformers = require("transformers", extra="hf", purpose="use pretrained wav2vec2/HuBERT/WavLM/Whisper models")
    name = str(name_or_path)
    try:
        local = Path(name).is_dir()
    except OSError:  # a name too long for a path (ENAMETOOLONG): not a folder here
        local = False
    if not local and (Path(name).suffix or name.startswith((".", "/", "~"))):
        raise WorkbenchError(f"no model folder at {name!r}: check the path (a folder with config.json)")
    kwargs = {"local_files_only": True} if local else {}
    try:
        config = transformers.AutoConfig.from_pretrained(name, **kwargs)
        processor = transformers.AutoProcessor.from_pretrained(name, **kwargs)
        cls = backend_for(config)
        model = getattr(transformers, cls.model_class).from_pretrained(name, **kwargs)
    except WorkbenchError:
        raise
    except _load_errors() as err:  # network, hub and format errors of each library become one plain message
        if local:
            raise WorkbenchError(f"the folder {name!r} is not a complete transformers model ({err}); it needs "
                                 "config.json, the weights and the processor/tokenizer files") from None
        short = name.rstrip("/").split("/")[-1]
        raise WorkbenchError(_OFFLINE_HELP.format(name=name, short=short, reason=str(err).splitlines()[0][:160])) \
            from None
    model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return cls(model, processor, name=name, **options)
