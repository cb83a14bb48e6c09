"""One decode of the live buffer: words with audio times, and whether the model heard speech at all.

Two kinds of base model, one interface (``decoder(wav, prefix) -> Hypothesis``):

- :class:`WhisperStep` (sequence to sequence). The words already committed from this
  buffer are *forced* as the start of the transcript (:meth:`WhisperBackend.decode_details`
  ``prefixes``), so the new decode only continues them; the backend's auto window, its
  repetition guard and its key/value cache are used as they are. Whisper's greedy search
  gives no word times, so a word's times are estimated: the words share the voiced frames
  of the buffer in proportion to their length in characters (a phrase-level VAD alignment).
  Whisper writes words for silence and noise ("thank you"); its own silence detector decides:
  a decode whose no-speech probability is above ``no_speech_threshold`` while its mean
  log-probability is below ``logprob_threshold`` (OpenAI's rule), or whose mean
  log-probability is below ``min_logprob`` (a guess, whatever it is; only for the first words of a
  phrase), is not speech.
- :class:`CTCStep` (the built-in model, transformers CTC models). Greedy CTC: a word's times
  are the frames of its first and last character on the best path (exact to a frame), so a
  stable prefix is found by time; a word whose characters' mean probability is below
  ``min_confidence`` is dropped as noise.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import torch

from workbench.constants import SAMPLE_RATE
from workbench.live.events import Word
from workbench.live.vad import FRAME_S

__all__ = ["CTCStep", "Hypothesis", "WhisperStep", "spread_words", "step_decoder"]


@dataclasses.dataclass(frozen=True)
class Hypothesis:
    """One decode of the buffer.

    Attributes:
        words: every word of the buffer, the forced prefix included (Whisper), times in
            seconds from the buffer's start.
        speech: False when the model's own detector says the buffer holds no speech
            (its words are then not to be shown).
        score: the figure behind ``speech`` (Whisper: mean token log-probability; CTC:
            mean character confidence), for benchmarks.
    """

    words: list[Word]
    speech: bool
    score: float


def spread_words(texts: Sequence[str], voiced: np.ndarray, frame_s: float = FRAME_S) -> list[Word]:
    """Times for ``texts`` (seconds from the buffer start): they share the voiced frames in proportion
    to their length (characters + 1 for the gap).

    Args:
        texts: the words, in order.
        voiced: ``(F,)`` bool per VAD frame of the buffer; with no voiced frame every frame counts.
        frame_s: seconds per frame.

    >>> [(w.text, w.start_s, w.end_s) for w in spread_words(["ab", "c"], np.array([0, 1, 1, 1, 1, 0], bool), 0.1)]
    [('ab', 0.1, 0.4), ('c', 0.3, 0.5)]
    """
    if not texts:
        return []
    voiced = np.asarray(voiced, bool)
    if not voiced.any():
        voiced = np.ones(max(1, len(voiced)), bool)
    idx = np.flatnonzero(voiced)  # frames that carry speech, in order
    weights = np.array([len(t) + 1 for t in texts], np.float64)
    edges = np.concatenate([[0.0], np.cumsum(weights)]) / weights.sum() * len(idx)  # in voiced frames

    def at(pos: float, end: bool) -> float:
        k = min(len(idx) - 1, max(0, int(np.ceil(pos) - 1 if end else np.floor(pos))))
        return round(float(idx[k] + (1 if end else 0)) * frame_s, 4)

    return [Word(t, at(edges[i], False), max(at(edges[i], False), at(edges[i + 1], True)))
            for i, t in enumerate(texts)]


class WhisperStep:
    """Decode the buffer with a Whisper backend (see the module docstring).

    Args:
        backend: a :class:`~workbench.models.whisper.WhisperBackend` (adapters, if any, already injected).
        route: a context manager factory ``route(index)`` for a bank's row, or None.
        no_speech_threshold, logprob_threshold: OpenAI's silence rule (both must hold).
        min_logprob: below this mean log-probability the decode is dropped whatever the detector says.
    """

    def __init__(self, backend, *, route=None, no_speech_threshold: float = 0.6, logprob_threshold: float = -1.0,
                 min_logprob: float = -1.5) -> None:
        self.backend, self.route = backend, route
        self.no_speech_threshold, self.logprob_threshold = float(no_speech_threshold), float(logprob_threshold)
        self.min_logprob = float(min_logprob)

    @torch.no_grad()
    def __call__(self, wav: np.ndarray, prefix: Sequence[str], voiced: np.ndarray) -> Hypothesis:
        """``wav``: ``(n,)`` float32 buffer; ``prefix``: words committed from it; ``voiced``: its VAD frames."""
        import contextlib

        b = self.backend
        ids = b.target_ids(" ".join(prefix)) if prefix else []
        with self.route() if self.route is not None else contextlib.nullcontext():
            d = b.decode_details(b.featurize([wav]), prefixes=[ids])[0]
        texts = d.text.split()
        free = len(texts) > len(prefix)  # the decode added words of its own
        silent = d.no_speech_prob > self.no_speech_threshold and d.avg_logprob < self.logprob_threshold
        # a continuation of words already committed is judged by the silence rule alone: its few tokens
        # (one word and the end token) make the mean log-probability too noisy to be a test of speech
        speech = free and not silent and (bool(prefix) or d.avg_logprob >= self.min_logprob)
        return Hypothesis(spread_words(texts, voiced), speech, d.avg_logprob)


class CTCStep:
    """Decode the buffer with a CTC backend (see the module docstring).

    Args:
        backend: the built-in model or a transformers CTC backend (adapters already injected).
        route: a context manager factory for a bank's row, or None.
        min_confidence: a word whose characters' mean posterior is below this is dropped.
    """

    def __init__(self, backend, *, route=None, min_confidence: float = 0.5) -> None:
        from workbench.text import VOCAB

        self.backend, self.route = backend, route
        self.min_confidence = float(min_confidence)
        self._vocab = VOCAB

    @torch.no_grad()
    def __call__(self, wav: np.ndarray, prefix: Sequence[str], voiced: np.ndarray) -> Hypothesis:
        import contextlib

        with self.route() if self.route is not None else contextlib.nullcontext():
            lp, lens = self.backend.log_probs(self.backend.featurize([wav]))
        lp = lp[0, : int(lens[0])].float().cpu().numpy()  # (T', V)
        if lp.shape[0] == 0:
            return Hypothesis([], False, 0.0)
        frame_s = len(wav) / SAMPLE_RATE / lp.shape[0]
        if lp.shape[-1] != len(self._vocab):  # another alphabet: its own decoder, times spread by VAD
            texts = self.backend.greedy_decoder()(lp).split()
            return Hypothesis(spread_words(texts, voiced), bool(texts), 1.0)
        return self._words(lp, frame_s)

    def _words(self, lp: np.ndarray, frame_s: float) -> Hypothesis:
        """Words on the greedy CTC path with the frames of their first and last characters."""
        from workbench.text import BLANK_ID

        ids = lp.argmax(-1)
        probs = np.exp(lp.max(-1))
        space = self._vocab.index(" ")
        words, conf = [], []
        chars, first, last, cprob = [], None, None, []
        prev = -1

        def close() -> None:
            if chars:
                c = float(np.mean(cprob))
                conf.append(c)
                if c >= self.min_confidence:
                    words.append(Word("".join(chars), round(first * frame_s, 4), round((last + 1) * frame_s, 4)))

        for t, i in enumerate(ids):
            i = int(i)
            if i != prev and i != BLANK_ID:
                if i == space:
                    close()
                    chars, first, cprob = [], None, []
                else:
                    if first is None:
                        first = t
                    chars.append(self._vocab[i])
                    cprob.append(probs[t])
            if i != BLANK_ID and i != space:
                last = t
            prev = i
        close()
        return Hypothesis(words, bool(words), float(np.mean(conf)) if conf else 0.0)


def step_decoder(backend, *, route=None, **options):
    """:class:`WhisperStep` for a sequence-to-sequence backend, else :class:`CTCStep`."""
    return (WhisperStep if backend.is_seq2seq else CTCStep)(backend, route=route, **options)
