"""Whisper behind the :class:`ASRBackend` interface: its own features, loss, padding and decoding.

Whisper is a sequence-to-sequence model, so it differs from the CTC backends in
four ways, all owned here:

- **Features and padding.** ``Batch.features`` is ``(B, W, 80)`` log-mel (time
  first, like the built-in model) with ``W`` the *encoding window* in mel frames
  (100 per second). Frames after the audio hold Whisper's own log-mel of silence
  (which depends on each recording's loudest frame), never zeros: the feature
  extractor pads every recording to 30 s before the log, and the window is cut
  from that.
- **The window.** ``window="full"`` encodes Whisper's native 30 s (3000 frames)
  for every recording, as OpenAI's decoding does. ``window="auto"`` (the
  default) encodes only the batch's longest recording plus ``margin_s`` of
  silence, rounded up to ``bucket_s``, slicing the positional embeddings: a 3 s
  prompt costs 1/6 of the encoder work. Its cost in word errors is measured by
  ``bench/bench_real_speech.py`` (docs/benchmarks.md, "Real speech": auto vs full window).
- **Loss.** Token-level cross-entropy (mean over the batch's real tokens) of the
  transcript after the decoder prompt ``<|startoftranscript|>`` [``<|en|>
  <|transcribe|>`` for multilingual models] ``<|notimestamps|>`` — the same prompt
  as decoding, built once here (never a second start token).
- **Decoding.** Greedy, batched, with a key/value cache; special and timestamp
  tokens are suppressed, blank and end-of-text at the first step too (as
  Whisper's own decoding does); an optional logits processor (``bias``: a
  speaker's word list, :class:`workbench.decode_bias.VocabularyBias`) may move
  the choice within its bound, and may put the list in Whisper's previous-text prompt
  (``<|startofprev|>`` + the words, before the start token); at most ``8 + 7 * seconds`` tokens per recording
  (a generous speaking rate), and a *repetition guard* that ends a recording's
  text when it starts to loop, keeping one copy: a token or two repeated 4 times in
  a row ("no no no no ..."), three or four tokens 3 times, or any longer phrase
  (up to 48 tokens) twice. Runaway loops are Whisper's typical failure on atypical
  speech and on a short encoding window. Then an *end-of-speech-aware cut*
  (:mod:`workbench.speech_budget`) drops a trailing phrase said twice when the recording's
  syllable nuclei hold only one copy ("yes yes" from a 0.6 s "yes").

**Frozen-prefix caching.** When adapters touch only the top encoder layers (and the
decoder), the bottom ``k`` layers' outputs are the same at every step:
:meth:`WhisperBackend.cache_features` computes them once per recording (``Batch``
then carries hidden states with ``start_layer=k``), and :meth:`encode` resumes at
layer ``k``. Every recording of a cache shares one window, so the cached batch
equals the uncached one exactly.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from workbench.constants import FRAMES_PER_SECOND, HOP_LENGTH
from workbench.errors import NotYetSupportedError, WorkbenchError
from workbench.models.base import MAX_TRAIN_S, Batch, CachedFeatures, check_waveforms
from workbench.models.hf import _HFBase
from workbench.text import normalize_text

__all__ = ["LANGUAGES_HELP", "Decoded", "WhisperBackend"]

FULL_FRAMES = 30 * FRAMES_PER_SECOND  # Whisper's native window: 30 s of mel frames (3000)
WINDOWS = ("auto", "full")  # encoding windows: the audio + a margin (the default), or Whisper's 30 s
REPEAT_NGRAM = 48  # longest repeated token n-gram (a sentence) the guard looks for
LANGUAGES_HELP = "english, german, french, spanish, ... (Whisper's language names or codes such as 'en')"


@dataclasses.dataclass(frozen=True)
class Decoded:
    """One recording's greedy decoding (:meth:`WhisperBackend.decode_details`)."""

    tokens: list[int]  # token ids, forced prefix included, no prompt and no end token
    text: str  # normalized (workbench.text.normalize_text)
    avg_logprob: float  # mean natural-log probability of the freely chosen tokens, end token included
    no_speech_prob: float  # probability of Whisper's no-speech token at the start token (0 if it has none)


class WhisperBackend(_HFBase):
    """Whisper (``WhisperForConditionalGeneration``) as a backend.

    Args:
        model: the transformers model (frozen, eval mode).
        processor: its ``WhisperProcessor``.
        name: the model id shown to users and bound into Submodel files.
        language: for multilingual models, the spoken language (name or code;
            default English). English-only (``.en``) models ignore it.
        window: ``"auto"`` (encode the audio plus a margin) or ``"full"`` (30 s).
        margin_s: seconds of silence after the longest recording (``"auto"``).
        bucket_s: the window is rounded up to a multiple of this (``"auto"``).
    """

    is_seq2seq = True
    supports_frozen_prefix = True
    transcribe_batch_size = 8  # "auto" windows follow each batch's longest recording
    model_class = "WhisperForConditionalGeneration"
    model_type = "whisper"  # its training defaults: workbench.training_defaults

    def __init__(self, model: nn.Module, processor: Any, *, name: str, language: str | None = None,
                 window: str = "auto", margin_s: float = 1.0, bucket_s: float = 2.0) -> None:
        super().__init__(model, processor, name=name)
        if window not in WINDOWS:
            raise WorkbenchError(f"window must be 'auto' or 'full', got {window!r}")
        self.window, self.margin_s, self.bucket_s = window, float(margin_s), float(bucket_s)
        self.tokenizer = processor.tokenizer
        tok = self.tokenizer
        self.eot = int(tok.convert_tokens_to_ids("<|endoftext|>"))
        sot = int(tok.convert_tokens_to_ids("<|startoftranscript|>"))
        self.multilingual = int(model.config.vocab_size) >= 51865
        prompt = [sot]
        self.language = None
        if self.multilingual:
            self.language = _language_token(tok, language or "en")
            prompt += [int(tok.convert_tokens_to_ids(self.language)), int(tok.convert_tokens_to_ids("<|transcribe|>"))]
        prompt.append(int(tok.convert_tokens_to_ids("<|notimestamps|>")))
        self.prompt_ids = prompt
        vocab = int(model.config.vocab_size)
        suppress = torch.zeros(vocab, dtype=torch.bool)
        suppress[self.eot + 1:] = True  # every special and timestamp token
        for i in list(model.config.suppress_tokens or []):
            if 0 <= int(i) < vocab:
                suppress[int(i)] = True
        self._suppress = suppress
        begin = torch.zeros(vocab, dtype=torch.bool)
        for i in list(model.config.begin_suppress_tokens or [220]) + [self.eot]:
            if 0 <= int(i) < vocab:
                begin[int(i)] = True
        self._begin_suppress = begin
        self.max_target = int(model.config.max_target_positions)
        self.no_speech_id = None  # Whisper's silence detector: <|nocaptions|> (.en) or <|nospeech|>
        for name in ("<|nocaptions|>", "<|nospeech|>"):
            i = tok.convert_tokens_to_ids(name)
            if isinstance(i, int) and i != tok.unk_token_id and 0 <= i < vocab:
                self.no_speech_id = i
                break
        # decode_details' logits processor when none is given (a speaker's word list for live captions)
        self.logit_bias: Any = None
        self.speech_cut = True  # the end-of-speech-aware cut of repeats (workbench.speech_budget); False: off

    # ------------------------------------------------------------------ structure
    def _layers(self) -> nn.ModuleList:
        return self.model.model.encoder.layers

    def output_layer(self) -> nn.Module:
        return self.model.proj_out

    def linear_layers(self) -> list[tuple[str, nn.Linear]]:
        """Encoder linears (``encoder.layers.i.*``) and decoder linears (``decoder.layers.i.*``):
        LoRA with ``decoder=True`` adapts both."""
        out = super().linear_layers()
        out += [(f"decoder.layers.{i}.{n}", m) for i, layer in enumerate(self.model.model.decoder.layers)
                for n, m in layer.named_modules() if isinstance(m, nn.Linear)]
        return out

    # ------------------------------------------------------------------ features
    @property
    def encoding_window(self) -> str:
        """The window in use, ``"auto"`` or ``"full"``: the live personal adapter's (the window it was
        trained on: ``Adapted.window``, set from its Submodel file by ``load_submodel`` and by the
        workflow when it trains), else this backend's own ``window``. A personal model is therefore
        decoded on the window it learned, whatever the shared base model's default is."""
        trained = getattr(self._attached, "window", None)
        return trained if trained in WINDOWS else self.window

    @property
    def _attached(self) -> Any:
        """The personal adapter injected into this backend with its hooks in place (on or off), or None."""
        adapted = getattr(self, "_adapted", None)
        return adapted if adapted is not None and adapted._hooks else None

    @property
    def personal_active(self) -> bool:
        """Whether a personal adapter is in place and switched on (not :meth:`Adapted.disabled`, as
        the base model's side of a before/after comparison is)."""
        return self._attached is not None and self._attached.enabled

    def window_frames(self, n_frames: int, window: str | None = None) -> int:
        """The encoding window (mel frames, even) for a longest recording of ``n_frames``, in the
        window ``window`` (``"auto"``/``"full"``; None: :attr:`encoding_window`)."""
        if (window or self.encoding_window) == "full":
            return FULL_FRAMES
        bucket = max(2, int(round(self.bucket_s * FRAMES_PER_SECOND)) // 2 * 2)
        need = n_frames + int(round(self.margin_s * FRAMES_PER_SECOND))
        return int(min(FULL_FRAMES, math.ceil(need / bucket) * bucket))

    def featurize(self, waveforms: list[np.ndarray], *, window: int | None = None) -> Batch:
        """Log-mel ``(B, W, 80)`` cut from each recording's 30 s features; lengths in mel frames."""
        wavs = check_waveforms(waveforms, sample_rate=self.sample_rate, max_s=MAX_TRAIN_S)
        frames = [len(w) // HOP_LENGTH for w in wavs]
        w_frames = window or self.window_frames(max(frames))
        out = self.processor.feature_extractor(wavs, sampling_rate=self.sample_rate, return_tensors="pt")
        feats = out["input_features"][:, :, :w_frames].transpose(1, 2).contiguous()  # (B, W, 80)
        dev = self.device
        return Batch(feats.to(dev), torch.tensor([min(f, w_frames) for f in frames], device=dev),
                     torch.tensor([len(w) for w in wavs], device=dev))

    def cache_features(self, waveforms: list[np.ndarray], *, frozen_layers: int = 0,
                       window: str | None = None) -> list[CachedFeatures]:
        """Per recording the log-mel ``(W, 80)`` of one window shared by all (``window``: ``"auto"``
        or ``"full"``; None: :attr:`encoding_window`), length in mel frames; with ``frozen_layers = k``
        the hidden states ``(W/2, D)`` after the convolutional frontend and the first ``k`` encoder
        layers (computed once, no grad), length in encoder frames."""
        if not waveforms:
            return []
        if not 0 <= frozen_layers <= self.num_layers:
            raise WorkbenchError(f"frozen_layers must be in [0, {self.num_layers}], got {frozen_layers}")
        window = self.window_frames(max(len(w) for w in waveforms) // HOP_LENGTH, window)
        items = []
        for s in range(0, len(waveforms), 8):
            batch = self.featurize(waveforms[s: s + 8], window=window)
            feats, lens = batch.features, batch.lengths
            if frozen_layers:
                with torch.no_grad():
                    feats, lens = self._frontend(batch), self._encoder_lengths(batch.lengths, window)
                    for layer in self._layers()[:frozen_layers]:
                        feats = layer(feats, None)
            items += [CachedFeatures(feats[j].detach().clone(), int(lens[j]), int(batch.waveform_lengths[j]),
                                     frozen_layers) for j in range(feats.shape[0])]
        return items

    def collate(self, items: list[CachedFeatures], speakers: list[int]) -> Batch:
        """Stack cached items (they share one window, so no padding is needed)."""
        start = self._start_layer(items)
        feats = torch.stack([it.features for it in items])
        dev = self.device
        return Batch(feats.to(dev), torch.tensor([it.length for it in items], device=dev),
                     torch.tensor([it.samples for it in items], device=dev), torch.tensor(speakers, device=dev),
                     start_layer=start)

    # ------------------------------------------------------------------ encoder
    def _frontend(self, batch: Batch) -> torch.Tensor:
        """Convolutions + positional embeddings of log-mel ``(B, W, 80)`` -> ``(B, W/2, D)``."""
        enc = self.model.model.encoder
        x = F.gelu(enc.conv1(batch.features.transpose(1, 2)))
        x = F.gelu(enc.conv2(x)).transpose(1, 2)  # (B, W/2, D)
        if x.shape[1] > enc.embed_positions.weight.shape[0]:
            raise WorkbenchError(f"the encoding window is {x.shape[1]} frames; Whisper takes at most "
                                 f"{enc.embed_positions.weight.shape[0]} (30 s)")
        return x + enc.embed_positions.weight[: x.shape[1]]

    @staticmethod
    def _encoder_lengths(mel_lengths: torch.Tensor, window: int) -> torch.Tensor:
        return torch.clamp(torch.div(mel_lengths + 1, 2, rounding_mode="floor"), max=window // 2)

    def encode(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder output ``(B, W/2, D)`` and true lengths in encoder frames (20 ms each)."""
        start = batch.start_layer
        if start:
            x, lens = batch.features, batch.lengths
        else:
            x = self._frontend(batch)
            lens = self._encoder_lengths(batch.lengths, batch.features.shape[1])
        mask = torch.arange(x.shape[1], device=x.device)[None, :] < lens[:, None]
        with self._frames(mask):
            for layer in self._layers()[start:]:
                x = layer(x, None)
        return self.model.model.encoder.layer_norm(x), lens

    def log_probs(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        raise WorkbenchError("Whisper is a sequence-to-sequence model: it has no CTC log-probabilities; "
                             "use transcribe(), decode_batch() or loss()")

    # ------------------------------------------------------------------ loss
    def target_ids(self, text: str) -> list[int]:
        """Token ids of one transcript (no prompt, no end token); whitespace collapsed."""
        return list(self.tokenizer(" " + " ".join(text.split()), add_special_tokens=False).input_ids)

    def decoder_io(self, targets: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forcing decoder input and labels, both ``(B, P + N)`` long.

        The input is the prompt (one start token) then the transcript's tokens, padded with
        end tokens; the labels are the transcript's tokens then one end token, aligned so that
        position ``t`` predicts token ``t + 1``, and -100 (ignored) on the prompt and padding.
        """
        seqs = [self.target_ids(t)[: self.max_target - len(self.prompt_ids) - 1] for t in targets]
        p, n_max = len(self.prompt_ids), max(len(s) for s in seqs)
        dec_in = torch.full((len(seqs), p + n_max), self.eot, dtype=torch.long)
        labels = torch.full((len(seqs), p + n_max), -100, dtype=torch.long)
        for i, s in enumerate(seqs):
            dec_in[i, :p] = torch.tensor(self.prompt_ids)
            dec_in[i, p: p + len(s)] = torch.tensor(s, dtype=torch.long)
            labels[i, p - 1: p + len(s)] = torch.tensor([*s, self.eot], dtype=torch.long)
        return dec_in, labels

    def loss(self, batch: Batch, targets: list[str]) -> torch.Tensor:
        """Mean token cross-entropy of ``targets`` (prompt excluded, end token included)."""
        enc, _ = self.encode(batch)
        dec_in, labels = self.decoder_io(targets)
        logits = self.forced_logits(enc, dec_in)
        return F.cross_entropy(logits.flatten(0, 1).float(), labels.to(enc.device).flatten(), ignore_index=-100)

    def forced_logits(self, enc: torch.Tensor, dec_in: torch.Tensor) -> torch.Tensor:
        """The decoder's next-token logits ``(B, L, vocab)`` on encoder states ``enc (B, T, D)`` under
        teacher forcing of ``dec_in (B, L)`` (:meth:`decoder_io`)."""
        # no key/value cache: nothing decodes incrementally here (a cache would also keep adapted attention
        # on transformers' own forward, workbench.adapters.attention)
        hidden = self.model.model.decoder(input_ids=dec_in.to(enc.device), encoder_hidden_states=enc,
                                          use_cache=False).last_hidden_state
        return self.model.proj_out(hidden)

    # ------------------------------------------------------------------ decoding
    def vocabulary_bias(self, entries: list[str], config: Any = None) -> Any:
        """A :class:`~workbench.decode_bias.VocabularyBias` for a word list, in this model's tokens."""
        from workbench.decode_bias import VocabularyBias

        return VocabularyBias.from_entries(
            entries, lambda text: list(self.tokenizer(text, add_special_tokens=False).input_ids), config=config)

    @torch.no_grad()
    def decode_batch(self, batch: Batch, *, decoder: Any = None) -> list[str]:
        """Greedy transcripts of a featurized batch (normalized text), one per example.

        ``decoder`` must be None (Whisper decodes with its own greedy search) or a word-list
        bias for that search (:meth:`vocabulary_bias`)."""
        if decoder is not None and not getattr(decoder, "is_logit_bias", False):
            raise WorkbenchError("Whisper decodes with its own search; custom (CTC lexicon) decoders are for the "
                                 "built-in model and CTC models. Use --decoder greedy, or leave the decoder out")
        return [d.text for d in self.decode_details(batch, bias=decoder)]

    def loss_and_decode(self, batch: Batch, targets: list[str], *, decoder: Any = None,
                        per_utterance: bool = False) -> tuple[torch.Tensor, list[str]]:
        """:meth:`loss` (the batch mean) and :meth:`decode_batch`: two passes, as the decoder's
        input differs (teacher forcing, then its own choices)."""
        if per_utterance:
            raise NotYetSupportedError("each recording's own loss is computed for CTC models only; "
                                       "leave per_speaker_selection off for Whisper")
        return self.loss(batch, targets), self.decode_batch(batch, decoder=decoder)

    @torch.no_grad()
    def decode_details(self, batch: Batch, *, prefixes: list[list[int]] | None = None,
                       bias: Any = None) -> list[Decoded]:
        """Greedy decoding with what a streaming caller needs besides the text, one per example.

        Args:
            batch: featurized audio (:meth:`featurize`).
            prefixes: per example, token ids forced after the prompt (text already committed,
                e.g. :meth:`target_ids` of it); decoding continues after them. None: no prefix.
            bias: a logits processor ``bias(logp (B, V), tokens so far per example) -> scores
                (B, V)`` whose argmax is chosen (:class:`~workbench.decode_bias.VocabularyBias`);
                None: :attr:`logit_bias` (usually none). A word list decodes with its bound for the
                model in use (:meth:`~workbench.decode_bias.VocabularyBias.for_model`:
                :attr:`personal_active`). The log-probabilities reported stay the model's own.

        Returns:
            :class:`Decoded` per example: the tokens (prefix included), the normalized text,
            the mean log-probability of the tokens chosen freely (end token included) and the
            probability of Whisper's no-speech token at the start token (its silence detector).
        """
        from transformers.cache_utils import DynamicCache, EncoderDecoderCache

        enc, _ = self.encode(batch)
        b = enc.shape[0]
        prefixes = [list(p) for p in prefixes] if prefixes is not None else [[] for _ in range(b)]
        seconds = batch.waveform_lengths.float().cpu() / self.sample_rate
        bias = self.logit_bias if bias is None else bias
        if hasattr(bias, "for_model"):  # a word list's bound: the personal model's or the base model's
            bias = bias.for_model(self.personal_active)
        prev = self._previous_text(bias)  # [<|startofprev|>, the word list's tokens] or []
        cap = self.max_target - len(prev) - len(self.prompt_ids) - 1
        limits = [int(min(cap, max(8 + math.ceil(7 * float(s)), len(p) + 1)))
                  for s, p in zip(seconds, prefixes, strict=True)]
        prefixes = [p[: lim] for p, lim in zip(prefixes, limits, strict=True)]
        cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
        cache_arg = _decoder_cache_arg(type(self.model.model.decoder))
        inp = torch.tensor([prev + self.prompt_ids] * b, device=enc.device)
        out: list[list[int]] = [[] for _ in range(b)]
        logprob, chosen = [0.0] * b, [0] * b
        no_speech = [0.0] * b
        done = [False] * b
        suppress, begin = self._suppress.to(enc.device), self._begin_suppress.to(enc.device)
        for step in range(max(limits)):
            o = self.model.model.decoder(input_ids=inp, encoder_hidden_states=enc, use_cache=True,
                                         **{cache_arg: cache})
            cache = o.cache if "cache" in o else o.past_key_values
            if step == 0 and self.no_speech_id is not None:  # at the start token, as Whisper's decoding does
                first = self.model.proj_out(o.last_hidden_state[:, len(prev)]).float().softmax(-1)
                no_speech = [float(v) for v in first[:, self.no_speech_id]]
            logits = self.model.proj_out(o.last_hidden_state[:, -1]).float()
            logits[:, suppress] = -math.inf
            if step == 0:  # no blank or empty transcript (Whisper's own rule)
                logits[:, begin] = -math.inf
            logp = logits.log_softmax(-1)
            nxt = (logits if bias is None else bias(logp, out)).argmax(-1)
            for i in range(b):
                if done[i]:
                    continue
                forced = len(out[i]) < len(prefixes[i])
                t = prefixes[i][len(out[i])] if forced else int(nxt[i])
                nxt[i] = t
                if not forced:
                    logprob[i] += float(logp[i, t])
                    chosen[i] += 1
                if t == self.eot or len(out[i]) >= limits[i]:
                    done[i] = True
                    continue
                out[i].append(t)
                cut = None if forced else _repetition_cut(out[i])
                if cut is not None:
                    out[i] = out[i][:max(cut, len(prefixes[i]))]
                    done[i] = True
            if all(done):
                break
            inp = nxt[:, None]
        out = self._speech_cut(batch, out, prefixes)
        texts = self.tokenizer.batch_decode(out, skip_special_tokens=True)
        return [Decoded(out[i], normalize_text(texts[i]), logprob[i] / max(1, chosen[i]), no_speech[i])
                for i in range(b)]

    def _speech_cut(self, batch: Batch, out: list[list[int]], prefixes: list[list[int]]) -> list[list[int]]:
        """The end-of-speech-aware cut (:mod:`workbench.speech_budget`): a trailing repeat that the
        recording's syllable nuclei cannot hold is dropped ("yes yes" from a 0.6 s "yes"); forced
        prefix tokens are kept. Needs log-mel features (a batch of cached hidden states is left as is)."""
        from workbench.speech_budget import band_power_db, repeat_cut, syllable_nuclei

        if not self.speech_cut or batch.start_layer or batch.features.shape[-1] != int(self.model.config.num_mel_bins):
            return out
        cut = []
        for i, toks in enumerate(out):
            pieces = self.tokenizer.convert_ids_to_tokens(toks)
            bounds = [j for j, piece in enumerate(pieces) if j == 0 or piece.startswith("\u0120")]  # "\u0120": a space
            starts, words = [], []  # where each word begins, and its text; punctuation joins the word before
            for a, e in zip(bounds, bounds[1:] + [len(toks)], strict=True):
                word = normalize_text(self.tokenizer.decode(toks[a:e]))
                if word or not starts:
                    starts.append(a)
                    words.append(word)
            frames = int(batch.lengths[i])
            nuclei = syllable_nuclei(band_power_db(batch.features[i, :frames].float().cpu().numpy()))
            keep = repeat_cut(words, nuclei)
            cut.append(toks if keep == len(words) else toks[: max(starts[keep], len(prefixes[i]))])
        return cut

    def _previous_text(self, bias: Any) -> list[int]:
        """The previous-text prompt a word list asks for (``bias.prompt``: its tokens, see
        :mod:`workbench.decode_bias`): ``<|startofprev|>`` and at most the last
        ``max_target // 2 - 1`` of them (openai-whisper's rule), or ``[]``."""
        ids = [int(t) for t in (getattr(bias, "prompt", None) or ())]
        start = self.tokenizer.convert_tokens_to_ids("<|startofprev|>")
        if not ids or not isinstance(start, int) or start == self.tokenizer.unk_token_id:
            return []
        return [start, *ids[-(self.max_target // 2 - 1):]]


def _repeats_needed(n: int) -> int:
    """Copies in a row of an ``n``-token n-gram that count as a loop: 4 of one or two tokens
    ("no no no no"), 3 of three or four, 2 of anything longer (a whole phrase said twice
    in a row is Whisper's typical loop on a short window, and rare in a read prompt)."""
    return 4 if n <= 2 else 3 if n <= 4 else 2


@functools.cache
def _decoder_cache_arg(decoder_class: type) -> str:
    """The name under which this transformers version's Whisper decoder takes its key/value cache.

    ``cache`` from transformers 5.24 (``past_key_values`` still works there, with a deprecation
    warning); ``past_key_values`` before, where an unknown ``cache=`` lands in ``**kwargs`` and
    is ignored, so every step would decode without its past (seen on 5.12; the test
    ``test_cached_decoding_chooses_what_the_whole_sequence_says`` catches it).
    """
    params = inspect.signature(decoder_class.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _repetition_cut(tokens: list[int]) -> int | None:
    """Where to cut ``tokens`` if they end in a loop (see :func:`_repeats_needed`, n <=
    ``REPEAT_NGRAM``): the length that keeps the first copy; else None.

    >>> _repetition_cut([5, 1, 1, 1, 1])
    2
    >>> _repetition_cut([9, 1, 2, 1, 2, 1, 2, 1, 2])
    3
    >>> _repetition_cut([1, 2, 3, 4, 5, 1, 2, 3, 4, 5])
    5
    >>> _repetition_cut([1, 1, 1]) is None
    True
    """
    n_tok = len(tokens)
    for n in range(1, min(REPEAT_NGRAM, n_tok // 2) + 1):
        times = _repeats_needed(n)
        span = n * times
        if span > n_tok:
            continue
        gram = tokens[n_tok - n:]
        if all(tokens[n_tok - k * n - n: n_tok - k * n] == gram for k in range(1, times)):
            return n_tok - span + n
    return None


def _language_token(tokenizer: Any, language: str) -> str:
    """``<|xx|>`` for a language name or code; a plain error for an unknown one."""
    from transformers.models.whisper.tokenization_whisper import LANGUAGES, TO_LANGUAGE_CODE

    key = language.strip().lower()
    code = key if key in LANGUAGES else TO_LANGUAGE_CODE.get(key)
    token = f"<|{code}|>" if code else None
    if token is None or tokenizer.convert_tokens_to_ids(token) in (None, tokenizer.unk_token_id):
        raise WorkbenchError(f"unknown language {language!r} for this multilingual Whisper model; use one of: "
                             f"{LANGUAGES_HELP}")
    return token
