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
- :class:`CTCStep` (the built-in model, transformers CTC models). Greedy CTC, or the decoder the
  offline path uses (``text_decoder``: the lexicon beam search a speaker's evaluation uses), whose
  words are then aligned to the frames (CTC Viterbi forced alignment). A word's times are the
  frames of its first and last character on the path (exact to a frame), so a stable prefix is
  found by time; a word whose characters' mean probability is below ``min_confidence`` is
  dropped as noise.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import torch

from workbench.constants import SAMPLE_RATE
from workbench.live.events import Word
from workbench.live.vad import FRAME_S

__all__ = ["CTCStep", "Hypothesis", "WhisperStep", "ctc_align", "spread_words", "step_decoder"]


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


def _cut_loop(texts: list[str], start: int) -> list[str]:
    """``texts`` without a repetition that runs to its end and begins at or after word ``start``: the start
    of the phrase said again, or the words just before said again (at least two words). Whisper, forced to
    begin with committed words, often starts the phrase over.

    >>> " ".join(_cut_loop("the grass needs cutting the grass needs cutting".split(), 3))
    'the grass needs cutting'
    >>> " ".join(_cut_loop("i want to go".split(), 2))
    'i want to go'
    """
    for j in range(max(start, 1), len(texts) - 1):
        rest = texts[j:]
        m = len(rest)
        if rest == texts[:m] or (j >= m and rest == texts[j - m: j]):
            return texts[:j]
    return texts


class WhisperStep:
    """Decode the buffer with a Whisper backend (see the module docstring).

    Args:
        backend: a :class:`~workbench.models.whisper.backend.WhisperBackend` (adapters, if any, already injected).
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
        texts = _cut_loop(texts, len(prefix))  # a loop after the forced words is not new speech
        free = len(texts) > len(prefix)  # the decode added words of its own
        silent = d.no_speech_prob > self.no_speech_threshold and d.avg_logprob < self.logprob_threshold
        # a continuation of words already committed is judged by the silence rule alone: its few tokens
        # (one word and the end token) make the mean log-probability too noisy to be a test of speech
        speech = free and not silent and (bool(prefix) or d.avg_logprob >= self.min_logprob)
        return Hypothesis(spread_words(texts, voiced), speech, d.avg_logprob)


def ctc_align(log_probs: np.ndarray, labels: Sequence[int], blank: int = 0) -> np.ndarray | None:
    """The frame where each label is first emitted on the best CTC path that spells ``labels`` (Viterbi).

    Args:
        log_probs: ``(T, V)`` per-frame log-probabilities.
        labels: the label ids to align, ``(L,)`` (no blanks).
        blank: the blank id.

    Returns:
        ``(L,)`` int frame indices (non-decreasing), or None when ``labels`` cannot fit in ``T`` frames.

    >>> lp = np.log(np.array([[.1, .8, .1], [.8, .1, .1], [.1, .1, .8]]))
    >>> ctc_align(lp, [1, 2]).tolist()
    [0, 2]
    """
    lp = np.asarray(log_probs, np.float64)
    labels = [int(c) for c in labels]
    t_max, n = lp.shape[0], len(labels)
    if n == 0:
        return np.zeros(0, np.int64)
    ext = np.full(2 * n + 1, blank, np.int64)  # blank, c1, blank, c2, ..., blank
    ext[1::2] = labels
    s = len(ext)
    skip = np.zeros(s, bool)  # a label may follow the previous label directly when they differ
    skip[3::2] = ext[3::2] != ext[1:-2:2]
    score = np.full(s, -np.inf)
    score[0], score[1] = lp[0, blank], lp[0, ext[1]]
    back = np.zeros((t_max, s), np.int8)  # 0: stay, 1: from s-1, 2: from s-2
    for t in range(1, t_max):
        stay, step1 = score, np.concatenate([[-np.inf], score[:-1]])
        step2 = np.where(skip, np.concatenate([[-np.inf, -np.inf], score[:-2]]), -np.inf)
        best = np.stack([stay, step1, step2])
        back[t] = best.argmax(0)
        score = best.max(0) + lp[t, ext]
    end = s - 1 if score[s - 1] >= score[s - 2] else s - 2
    if not np.isfinite(score[end]):
        return None
    first = np.zeros(n, np.int64)
    state = end
    for t in range(t_max - 1, -1, -1):
        if state % 2 == 1:
            first[state // 2] = t  # walking back: the last assignment is the first frame of the label
        if t:
            state -= int(back[t, state])
    return first


class CTCStep:
    """Decode the buffer with a CTC backend (see the module docstring).

    Args:
        backend: the built-in model or a transformers CTC backend (adapters already injected).
        route: a context manager factory for a bank's row, or None.
        min_confidence: a word whose characters' mean posterior is below this is dropped.
        text_decoder: ``(T, V)`` log-probabilities -> text, the decoder of the offline path
            (:func:`workbench.workflow.build_decoder`, e.g. the lexicon beam search); None: greedy.
    """

    def __init__(self, backend, *, route=None, min_confidence: float = 0.5, text_decoder=None) -> None:
        from workbench.text import VOCAB

        self.backend, self.route = backend, route
        self.min_confidence = float(min_confidence)
        self.text_decoder = text_decoder
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
            texts = (self.text_decoder or self.backend.greedy_decoder())(lp).split()
            return Hypothesis(spread_words(texts, voiced), bool(texts), 1.0)
        if self.text_decoder is not None:
            return self._aligned(lp, frame_s, self.text_decoder(lp).split())
        return self._words(lp, frame_s)

    def _aligned(self, lp: np.ndarray, frame_s: float, texts: list[str]) -> Hypothesis:
        """``texts`` (the offline decoder's words) with the frames of their characters on the aligned path."""
        from workbench.text import BLANK_ID

        index = {c: i for i, c in enumerate(self._vocab)}
        texts = [t for t in texts if t and all(c in index for c in t)]
        if not texts:
            return Hypothesis([], False, 0.0)
        labels = [index[c] for c in " ".join(texts)]
        first = ctc_align(lp, labels, BLANK_ID)
        if first is None:  # cannot happen for a decoder's own output; greedy is the safe answer
            return self._words(lp, frame_s)
        probs = np.exp(lp[first, labels])
        words, conf, k = [], [], 0
        for t in texts:
            frames, p = first[k: k + len(t)], probs[k: k + len(t)]
            k += len(t) + 1  # the space
            c = float(np.mean(p))
            conf.append(c)
            if c >= self.min_confidence:
                words.append(Word(t, round(int(frames[0]) * frame_s, 4), round((int(frames[-1]) + 1) * frame_s, 4)))
        return Hypothesis(words, bool(words), float(np.mean(conf)))

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
