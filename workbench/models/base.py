"""The backend interface every base ASR model implements (loading by name: :mod:`workbench.models.loading`).

Adapters, training, evaluation and the UI only talk to :class:`ASRBackend`.
A backend owns its frontend (``featurize``), a frozen encoder whose blocks are
*adapter sites*, a CTC (or seq2seq) loss and batched transcription.

Input rules (shared by every backend through :func:`check_waveforms`):

* waveforms are 1-D float arrays at ``backend.sample_rate`` (16 kHz); pass
  ``sample_rate=`` to ``transcribe`` for other rates: audio is **resampled**
  (librosa, ``soxr_hq``) rather than refused;
* an empty batch, a 0-length waveform, a multi-channel array or NaN/inf samples
  raise :class:`workbench.errors.AudioError` with a plain message;
* long recordings are **chunked**, not refused: ``transcribe`` splits anything
  longer than ``max_chunk_s`` (20 s) into pieces that end at the quietest
  10 ms frame in the last 5 s of each piece (no overlap, so no word is
  transcribed twice), transcribes the pieces in one batch and joins the texts
  with spaces. ``featurize``/``loss`` do *not* chunk: training utterances must be
  short prompts, and a longer one raises :class:`AudioError`.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import hashlib
from typing import Callable

import numpy as np
import torch
from torch import nn

from workbench._deprecated import renamed_keywords
from workbench.constants import FRAMES_PER_SECOND
from workbench.errors import AudioError, NotYetSupportedError, WorkbenchError

__all__ = [
    "ASRBackend",
    "Batch",
    "CachedFeatures",
    "MAX_CHUNK_S",
    "MAX_TRAIN_S",
    "check_waveforms",
    "split_long_waveform",
]

MAX_CHUNK_S = 20.0  # seconds: transcribe() splits longer audio into pieces at most this long
MAX_TRAIN_S = 30.0  # seconds: featurize()/loss() refuse longer utterances (record shorter prompts)

Decoder = Callable[[np.ndarray], str]  # (T', V) log-probs of ONE utterance -> text


@dataclasses.dataclass
class Batch:
    """A padded batch with true lengths.

    Attributes:
        features: ``(B, T, F)`` frontend features (log-mel for the built-in model,
            the raw waveform ``(B, S)`` for waveform backends).
        lengths: ``(B,)`` true lengths of ``features`` along time (frames or samples).
        waveform_lengths: ``(B,)`` true lengths in samples of the source audio.
        speaker_index: optional ``(B,)`` long tensor routing each example to an adapter.
        start_layer: 0 for frontend features; ``k`` when ``features`` are already the
            hidden states ``(B, T', D)`` after the first ``k`` encoder layers (frozen-prefix
            caching, see :meth:`ASRBackend.cache_features`); ``lengths`` are then in encoder frames.
    """

    features: torch.Tensor
    lengths: torch.Tensor
    waveform_lengths: torch.Tensor
    speaker_index: torch.Tensor | None = None
    start_layer: int = 0

    def __len__(self) -> int:
        return int(self.features.shape[0])

    def to(self, device: str | torch.device) -> "Batch":
        si = None if self.speaker_index is None else self.speaker_index.to(device)
        return Batch(self.features.to(device), self.lengths.to(device), self.waveform_lengths.to(device), si,
                     self.start_layer)


@dataclasses.dataclass(frozen=True)
class CachedFeatures:
    """One recording's features, computed alone by :meth:`ASRBackend.cache_features`, for
    :meth:`ASRBackend.collate` (the record a feature cache and a device/server split hold).

    Attributes:
        features: what the backend's encoder takes from ``start_layer`` on, time first:
            ``start_layer == 0``: frontend features ``(T, F)`` (log-mel, 100 frames per second,
            for the built-in model and Whisper) or the raw waveform ``(S,)`` at 16 kHz for
            waveform backends; ``start_layer == k > 0``: the hidden states ``(T', D)`` after
            the frontend and the first ``k`` encoder layers (encoder frames: 25 per second for
            the built-in model, 50 for Whisper). Whisper's hold its whole encoding window
            (audio and silence), the others their true frames only.
        length: true frames of ``features`` along time (mel frames, encoder frames or samples,
            as ``features``).
        samples: length of the source recording in samples at 16 kHz.
        start_layer: ``k``, the encoder layers already run (0: frontend features).
    """

    features: torch.Tensor
    length: int
    samples: int
    start_layer: int = 0


@renamed_keywords(max_seconds="max_s")
def check_waveforms(
    waveforms, *, sample_rate: int, max_s: float | None = None, what: str = "waveform"
) -> list[np.ndarray]:
    """Validate a batch of mono waveforms; return them as contiguous float32 arrays.

    Raises:
        AudioError: empty batch, non-1-D array, 0-length, NaN/inf, or longer than ``max_s``.
    """
    if isinstance(waveforms, np.ndarray) and waveforms.ndim == 1:
        raise AudioError("expected a list of waveforms, got a single 1-D array; wrap it in a list: [wav]")
    waveforms = list(waveforms) if waveforms is not None else []
    if not waveforms:
        raise AudioError("the batch is empty: pass at least one waveform")
    out = []
    for i, w in enumerate(waveforms):
        if isinstance(w, torch.Tensor):
            w = w.detach().cpu().numpy()
        w = np.asarray(w)
        if w.ndim != 1:
            raise AudioError(
                f"{what} {i} has shape {w.shape}; expected mono 1-D audio. "
                "Load files with workbench.audio.load_audio, which mixes down to mono"
            )
        if w.shape[0] == 0:
            raise AudioError(f"{what} {i} is empty (0 samples); record it again or drop it from the batch")
        w = np.ascontiguousarray(w, dtype=np.float32)
        if not np.isfinite(w).all():
            bad = int((~np.isfinite(w)).sum())
            raise AudioError(f"{what} {i} contains {bad} NaN or infinite samples; the file is corrupt — record it again")
        if max_s is not None and w.shape[0] > max_s * sample_rate:
            raise AudioError(
                f"{what} {i} is {w.shape[0] / sample_rate:.1f} s long; training utterances must be at most "
                f"{max_s:.0f} s — cut it into prompts, or use transcribe(), which splits long audio"
            )
        out.append(w)
    return out


def split_long_waveform(wav: np.ndarray, sample_rate: int, max_chunk_s: float = MAX_CHUNK_S) -> list[np.ndarray]:
    """Split ``wav`` into consecutive, non-overlapping pieces of at most ``max_chunk_s``.

    Each cut is placed at the 10 ms frame of lowest energy within the last quarter
    of the allowed piece, so cuts fall in pauses where there is one.

    >>> [len(p) for p in split_long_waveform(np.ones(50 * 16000, np.float32), 16000)]  # no pause: mid last frame
    [319920, 319920, 160160]
    """
    max_len = int(max_chunk_s * sample_rate)
    hop = sample_rate // FRAMES_PER_SECOND  # 10 ms
    pieces, start = [], 0
    n = len(wav)
    while n - start > max_len:
        lo, hi = start + (3 * max_len) // 4, start + max_len
        seg = wav[lo:hi]
        m = len(seg) // hop
        energy = (seg[: m * hop].reshape(m, hop) ** 2).sum(1)
        # last occurrence of the minimum: keeps pieces as long as possible
        cut = lo + (m - 1 - int(np.argmin(energy[::-1]))) * hop + hop // 2
        pieces.append(wav[start:cut])
        start = cut
    pieces.append(wav[start:])
    return pieces


class ASRBackend(abc.ABC):
    """A frozen base ASR model behind one interface.

    Subclasses implement ``featurize``, ``encode``, ``log_probs``, ``loss``,
    ``adapter_sites`` and ``linear_layers``; ``transcribe``, ``decode_batch`` (CTC),
    ``cache_features``/``collate``, ``frame_outputs`` and ``fingerprint`` are shared here.
    A sequence-to-sequence backend (``is_seq2seq``) overrides ``decode_batch`` and
    ``loss_and_decode``; ``transcribe`` then runs its search through the same loop.

    Attributes:
        name: model id, e.g. ``"workbench-tiny"``.
        sample_rate: Hz of the waveforms it takes (16000).
        hidden_size: width ``D`` of the encoder output and of every adapter site.
        num_layers: number of encoder blocks (``len(adapter_sites())``).
        module: the underlying ``nn.Module`` (parameters, ``train()``/``eval()``, device).
    """

    name: str
    sample_rate: int
    hidden_size: int
    num_layers: int
    module: nn.Module
    is_seq2seq: bool = False  # True: no CTC log-probs; decode_batch() and loss() instead
    # the key of its training defaults (the adapter, the learning rate) in workbench.training_defaults
    # (a table outside the models, as PEFT's): "ctc" for CTC models, "whisper" for Whisper
    model_type: str = "ctc"
    supports_frozen_prefix: bool = False  # True: cache_features(frozen_layers=k > 0) works
    transcribe_batch_size: int = 16  # transcribe()'s default: recordings (or 20 s pieces) per forward pass

    # -- to implement ---------------------------------------------------------
    @abc.abstractmethod
    def featurize(self, waveforms: list[np.ndarray]) -> Batch:
        """Validate and featurize a batch of 16 kHz waveforms (no chunking)."""

    @abc.abstractmethod
    def encode(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder output ``(B, T', D)`` and its true lengths ``(B,)`` in encoder frames."""

    @abc.abstractmethod
    def log_probs(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """CTC log-probabilities ``(B, T', V)`` and lengths ``(B,)``."""

    def loss(self, batch: Batch, targets: list[str]) -> torch.Tensor:
        """Mean per-utterance CTC loss (scalar), differentiable through adapters.

        Sequence-to-sequence backends override this with their own loss.
        """
        return self.loss_from_log_probs(*self.log_probs(batch), targets)

    def loss_from_log_probs(self, log_probs: torch.Tensor, lengths: torch.Tensor,
                            targets: list[str]) -> torch.Tensor:
        """The :meth:`loss` of already computed ``log_probs (B, T', V)`` with ``lengths (B,)``.

        Lets an evaluation that needs both the hypotheses and the loss run the model once.
        """
        raise NotImplementedError(f"{type(self).__name__} has no CTC loss")

    @abc.abstractmethod
    def adapter_sites(self) -> list[tuple[str, nn.Module]]:
        """The encoder blocks whose OUTPUT an adapter modifies, in order (name, module)."""

    @abc.abstractmethod
    def linear_layers(self) -> list[tuple[str, nn.Linear]]:
        """Attention/FFN ``nn.Linear`` layers inside the encoder blocks (LoRA targets)."""

    def output_layer(self) -> nn.Module:
        """The layer that maps encoder output to vocabulary logits (unfrozen by the
        "last layers" fine-tuning baseline)."""
        raise NotYetSupportedError(f"{type(self).__name__} does not expose its output layer")

    def site_frame_mask(self, args: tuple, kwargs: dict, output: torch.Tensor) -> torch.Tensor | None:
        """``(B, T')`` bool mask of true frames at an adapter site, from the block's
        call arguments; None when the backend cannot tell (adapters then treat every
        frame as real). Padding-aware adapters (ConvAdapter) need it."""
        return None

    # -- decoding (one path: transcribe, the trainer's validation and a split's server call it) --
    def decode_batch(self, batch: Batch, *, decoder: Decoder | None = None) -> list[str]:
        """Transcripts of a featurized batch, one per example (normalized text).

        CTC: :meth:`log_probs`, then ``decoder`` (default: greedy CTC) on each utterance's
        ``(T'_i, V)`` true frames. Sequence-to-sequence backends override this with their own
        search, whose ``decoder`` is what that search takes (Whisper: a word-list bias).
        """
        return self.decode_log_probs(*self.log_probs(batch), decoder)

    def decode_log_probs(self, log_probs: torch.Tensor, lengths: torch.Tensor,
                         decoder: Decoder | None = None) -> list[str]:
        """``decoder`` (None: :meth:`greedy_decoder`) on each of ``log_probs (B, T', V)`` up to ``lengths (B,)``."""
        decoder = self.greedy_decoder() if decoder is None else decoder
        lp = log_probs.float().cpu().numpy()
        return [decoder(lp[j, : int(lengths[j])]) for j in range(lp.shape[0])]

    def loss_and_decode(self, batch: Batch, targets: list[str], *, decoder: Decoder | None = None,
                        per_utterance: bool = False) -> tuple[torch.Tensor, list[str]]:
        """The loss of ``targets`` and the transcripts of a featurized batch (for validation).

        CTC: one forward pass gives both (:meth:`loss_from_log_probs`, :meth:`decode_log_probs`).

        Returns:
            ``(loss, texts)``: ``loss`` is the batch mean (a scalar tensor), or with
            ``per_utterance`` each example's own loss ``(B,)``; one transcript per example.
        """
        lp, lens = self.log_probs(batch)
        if per_utterance:
            loss = torch.stack([self.loss_from_log_probs(lp[j: j + 1], lens[j: j + 1], [targets[j]])
                                for j in range(len(targets))])
        else:
            loss = self.loss_from_log_probs(lp, lens, targets)
        return loss, self.decode_log_probs(lp, lens, decoder)

    # -- shared -----------------------------------------------------------------
    def cache_features(self, waveforms: list[np.ndarray], *, frozen_layers: int = 0) -> list[CachedFeatures]:
        """Features of each waveform computed alone (nothing depends on a later batch).

        Returns:
            one :class:`CachedFeatures` per waveform (frontend features ``(T_i, F)`` or ``(S_i,)``,
            true frames only), for :meth:`collate`.
        """
        if frozen_layers:
            raise NotYetSupportedError(f"{type(self).__name__} cannot cache frozen encoder layers yet")
        out = []
        for w in waveforms:
            batch = self.featurize([w])
            n = int(batch.lengths[0])
            out.append(CachedFeatures(batch.features[0, :n].detach().clone(), n, int(batch.waveform_lengths[0])))
        return out

    def collate(self, items: list[CachedFeatures], speakers: list[int]) -> Batch:
        """A padded :class:`Batch` of :meth:`cache_features` items (zero padding past each length;
        ``start_layer`` from the items, which must share it)."""
        start = self._start_layer(items)
        feats = [it.features for it in items]
        lengths = torch.tensor([it.length for it in items], dtype=torch.long)
        out = torch.zeros((len(feats), int(lengths.max()), *feats[0].shape[1:]), dtype=feats[0].dtype)
        for j, f in enumerate(feats):
            out[j, : f.shape[0]] = f
        wl = torch.tensor([it.samples for it in items], dtype=torch.long)
        dev = self.device
        return Batch(out.to(dev), lengths.to(dev), wl.to(dev), torch.tensor(speakers, dtype=torch.long).to(dev),
                     start)

    @staticmethod
    def _start_layer(items: list[CachedFeatures]) -> int:
        """The ``start_layer`` every item of a batch shares (a batch starts at one encoder layer)."""
        starts = {int(it.start_layer) for it in items}
        if len(starts) != 1:
            raise WorkbenchError(f"cannot batch features cached at different encoder layers {sorted(starts)} "
                                 "(or no features at all); cache them with one frozen_layers")
        return starts.pop()

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    def greedy_decoder(self) -> Decoder:
        from workbench.decode import greedy_decode

        return greedy_decode

    def _prepare(self, waveforms, sample_rate: int | None) -> tuple[list[np.ndarray], list[int]]:
        """Validate, resample and chunk; returns pieces and the owner index of each piece."""
        sample_rate = self.sample_rate if sample_rate is None else int(sample_rate)
        wavs = check_waveforms(waveforms, sample_rate=sample_rate)
        if sample_rate != self.sample_rate:
            import librosa

            wavs = [librosa.resample(w, orig_sr=sample_rate, target_sr=self.sample_rate).astype(np.float32) for w in wavs]
        pieces, owner = [], []
        for i, w in enumerate(wavs):
            for p in split_long_waveform(w, self.sample_rate):
                pieces.append(p)
                owner.append(i)
        return pieces, owner

    @torch.no_grad()
    def transcribe(
        self,
        waveforms: list[np.ndarray],
        *,
        batch_size: int | None = None,
        decoder: Decoder | None = None,
        sample_rate: int | None = None,
        speakers: list[int] | None = None,
        route: Callable | None = None,
    ) -> list[str]:
        """Transcribe a list of waveforms, batched (sorted by length to waste little padding).

        Args:
            waveforms: list of 1-D float arrays (16 kHz unless ``sample_rate`` says otherwise).
            batch_size: utterances (or 20 s pieces) per forward pass; None: the backend's
                :attr:`transcribe_batch_size`.
            decoder: what :meth:`decode_batch` decodes with. CTC: maps one utterance's
                ``(T', V)`` log-prob array to text; default greedy CTC. Use
                :class:`workbench.decode.BeamSearchDecoder` for lexicon/LM/boosted decoding.
            sample_rate: rate of ``waveforms`` in Hz; other rates are resampled.
            speakers: with ``route``, the Submodel row of each waveform; each batch
                runs inside ``route(speaker_index (b,))`` (see ``workbench.adapters``).

        Returns:
            one normalised transcript per input waveform.
        """
        pieces, owner = self._prepare(waveforms, sample_rate)
        batch_size = self.transcribe_batch_size if batch_size is None else batch_size
        was_training = self.module.training
        self.module.eval()
        try:
            order = np.argsort([-len(p) for p in pieces], kind="stable")
            texts: list[str] = [""] * len(pieces)
            for s in range(0, len(order), batch_size):
                idx = order[s : s + batch_size]
                ctx = contextlib.nullcontext()
                if route is not None:
                    ctx = route(None if speakers is None else torch.tensor([speakers[owner[i]] for i in idx]))
                with ctx:
                    for i, t in zip(idx, self.decode_batch(self.featurize([pieces[i] for i in idx]), decoder=decoder),
                                    strict=True):
                        texts[i] = t
        finally:
            self.module.train(was_training)
        out = [[] for _ in range(max(owner) + 1)]
        for o, t in zip(owner, texts):
            if t:
                out[o].append(t)
        return [" ".join(parts) for parts in out]

    @torch.no_grad()
    def frame_outputs(self, waveforms: list[np.ndarray], layer: int = -1) -> list[torch.Tensor]:
        """Per-utterance frame-level outputs of encoder block ``layer`` (for embeddings).

        Returns:
            list of ``(T'_i, D)`` tensors, true frames only. ``layer=-1`` is the last block.
        """
        sites = self.adapter_sites()
        name, block = sites[layer]
        captured = {}

        def hook(_m, _inp, out):
            captured["x"] = out[0] if isinstance(out, tuple) else out

        h = block.register_forward_hook(hook)
        was_training = self.module.training
        self.module.eval()
        try:
            batch = self.featurize(waveforms)
            _, lens = self.encode(batch)
        finally:
            h.remove()
            self.module.train(was_training)
        x = captured["x"]
        return [x[i, : int(lens[i])].clone() for i in range(x.shape[0])]

    def fingerprint(self) -> str:
        """sha256 over the frozen base weights (names sorted, dtype/shape/bytes), cached.

        Adapter parameters (any parameter added after loading, registered under a
        name containing ``adapter`` or ``lora``) are excluded.
        """
        cached = getattr(self, "_fingerprint", None)
        if cached is not None:
            return cached
        h = hashlib.sha256()
        for key, t in sorted(self.module.state_dict().items()):
            low = key.lower()
            if "adapter" in low or "lora" in low:
                continue
            t = t.detach().cpu().contiguous()
            h.update(key.encode())
            h.update(str(t.dtype).encode())
            h.update(str(tuple(t.shape)).encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        self._fingerprint = h.hexdigest()
        return self._fingerprint

    def invalidate_fingerprint(self) -> None:
        """Forget the cached fingerprint (call after changing base weights on purpose)."""
        self._fingerprint = None

    def freeze(self) -> "ASRBackend":
        """Set ``requires_grad=False`` on every base parameter; returns self."""
        for p in self.module.parameters():
            p.requires_grad_(False)
        return self

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.module.parameters())
