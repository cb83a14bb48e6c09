"""Bounded logit biasing towards a word list, for token-by-token decoders (Whisper).

A speaker's word list (:mod:`workbench.vocabulary`) is turned into token sequences: each
entry as written, Capitalized and lower-case, each with a leading space (a word inside the
text) and without (the first word of the transcript). The sequences form a prefix trie
(:class:`TokenTrie`). At every decoding step, the tokens that would start a listed word, or
continue one whose first tokens were just emitted, are *candidates*.

**The bound.** A candidate gets a bonus only when the model already finds it plausible:

- its log-probability is within ``margin`` nats of the best token's, and
- its probability is at least ``floor``;

and then the bonus is a fixed ``bonus`` nats, never more. A listed word that the audio
does not support (far below the best token) is therefore never produced: greedy search
picks the same token as without the list. One that is close (a name the model half heard,
"Siobhan" against "Chevron") wins. Each token of a word is judged on its own, so a word
whose later tokens the audio does not support stops there.

The scores are log-probabilities plus bonuses; the decoder reports its confidence from
the unbiased log-probabilities (the list changes what is chosen, not how sure the model was).

**The prompt** (``BiasConfig.prompt``). Whisper can also be told the words before it decodes:
the list, written as text ("Priya, Margaret, Oliver"), goes in its *previous-text* prompt
(``<|startofprev|>`` + the words, before ``<|startoftranscript|>``), as openai-whisper's
``initial_prompt`` and transformers' ``prompt_ids`` do. :attr:`VocabularyBias.prompt` holds
those tokens; :meth:`workbench.models.whisper.backend.WhisperBackend.decode_details` puts them in
front. A prompt is context, not a constraint: nothing is forced, the model still chooses.

Both are on by default (``bench/bench_vocabulary.py``, personal Whisper tiny.en models trained
without a prompt, greedy): chosen on sim-als-like, sim-accent and sim-parkinsonian (10 phrases
with names and 10 without each), listed-name WER 93 % without the list, 87 % with the bias
alone, 80 % with the prompt alone, 60 % with both; other words 37.0, 37.0, 35.8, 32.5 %. On
the other speakers (sim-dysarthria-severe, sim-stutter, sim-voice-tremor and the real voice's
own words, 6 + 6 phrases each) both together: names 44 % -> 19 %, other words 28.4 -> 25.9 %;
no listed name inserted into a phrase without one by a personal model in either set.

**The bound's values** (:class:`BiasConfig`: margin 3, floor 0.005, bonus 3) were chosen on the six
development speakers, with their own names and sentences (``bench/study_vocabulary.py``; docs/results.md,
"Choosing the word list's bound"): of 18 bounds, the lowest listed-name WER whose other-word WER stays
within 1 point of the personal model without the list and which inserts no more listed words into
phrases without them than the earlier default (margin 2, floor 0.02, bonus 2). Personal models, every
development speaker together: names 84.6 % without the list, 30.0 % with the earlier bound, 26.7 % with
this one; other words 24.0, 17.3 and 17.5 %; no listed word inserted into a phrase without one. Margin 4
with bonus 4 reached 24.6 % but inserted listed words where none was said, and was rejected.

**The base model's bound** (:data:`BASE_BOUND`: margin 2, floor 0.02, bonus 2) is chosen by the same study
with the same rule applied to the base model's own scores. The base model is far less sure of an atypical
speaker's words, so a bold bound makes it write listed words that were not said: with the personal bound,
the development speakers' base model put listed words into 32 of their 120 phrases without them (other
words 55.4 % -> 60.2 %); with this one, 16 (other words 54.7 %; names 93.3 % -> 42.5 %). A word list
built by :meth:`VocabularyBias.from_entries` without an explicit ``config`` keeps both bounds, and the
decoder picks one per search (:meth:`VocabularyBias.for_model`): the personal bound while a personal
adapter is active, this one otherwise (a therapist who loads a word list before training).

>>> import torch
>>> bias = VocabularyBias([[5, 6]], config=BiasConfig(margin=1.0, bonus=1.0))
>>> logp = torch.log_softmax(torch.tensor([[3.0, 0, 0, 0, 0, 2.5, 0, 0]]), -1)
>>> int(bias(logp, [[]]).argmax())    # token 5 starts a listed word and is 0.5 nats behind: it wins
5
>>> logp = torch.log_softmax(torch.tensor([[3.0, 0, 0, 0, 0, 1.5, 0, 0]]), -1)
>>> int(bias(logp, [[]]).argmax())    # 1.5 nats behind, beyond the margin: no bonus
0
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable, Iterable, Sequence

import torch

from workbench.errors import VocabularyError

__all__ = ["BASE_BOUND", "BiasConfig", "TokenTrie", "VocabularyBias", "prompt_text"]


@dataclasses.dataclass(frozen=True)
class BiasConfig:
    """How far the word list may move a decision (natural-log units)."""

    margin: float = 3.0  # a candidate is helped only within this many nats of the best token
    floor: float = 0.005  # ... and only when its probability is at least this
    bonus: float = 3.0  # nats added to a helped candidate (fixed: the most the list can add)
    prompt: bool = True  # also write the list into Whisper's previous-text prompt (see the module docstring)

    def __post_init__(self) -> None:
        if not isinstance(self.prompt, bool):
            raise VocabularyError(f"vocabulary bias prompt must be True or False, got {self.prompt!r}")
        for name, value, hi in (("margin", self.margin, 10.0), ("floor", self.floor, 1.0), ("bonus", self.bonus, 10.0)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and 0.0 <= value <= hi):
                raise VocabularyError(f"vocabulary bias {name} must be a number from 0 to {hi}, got {value!r}")


BASE_BOUND = BiasConfig(margin=2.0, floor=0.02, bonus=2.0)  # the base model's bound (module docstring)


class TokenTrie:
    """A prefix trie over token-id sequences; node 0 is the root.

    >>> t = TokenTrie([[1, 2], [1, 3], [4]])
    >>> sorted(t.children(t.walk([1])))
    [2, 3]
    >>> t.walk([2]) is None
    True
    """

    def __init__(self, sequences: Iterable[Sequence[int]] = ()) -> None:
        self._next: list[dict[int, int]] = [{}]
        self.depth = 0  # tokens in the longest sequence
        for seq in sequences:
            self.add(seq)

    def add(self, seq: Sequence[int]) -> None:
        node = 0
        for t in seq:
            nxt = self._next[node].get(int(t))
            if nxt is None:
                nxt = len(self._next)
                self._next[node][int(t)] = nxt
                self._next.append({})
            node = nxt
        self.depth = max(self.depth, len(seq))

    def walk(self, tokens: Sequence[int], node: int = 0) -> int | None:
        """The node reached from ``node`` along ``tokens``; None when they leave the trie."""
        for t in tokens:
            node = self._next[node].get(int(t))
            if node is None:
                return None
        return node

    def children(self, node: int) -> Iterable[int]:
        """The tokens that continue the path to ``node``."""
        return self._next[node].keys()

    def __len__(self) -> int:
        return len(self._next) - 1


class VocabularyBias:
    """A logits processor for greedy decoding: ``scores = bias(logp, histories)``.

    Args:
        anywhere: token sequences of the listed words as they appear inside a text (with
            their leading space): a candidate at any step.
        at_start: sequences of the words as the first word of a transcript (no leading
            space): candidates only at the first step.
        config: the bound with a personal adapter active (:class:`BiasConfig`; None: its defaults).
        base_config: the bound for the base model alone (None: ``config``); :meth:`for_model` picks.
        prompt: token ids of the list as text for Whisper's previous-text prompt (no special
            token), or empty for none (see the module docstring).

    ``__call__(logp, histories)``: ``logp`` ``(B, V)`` log-probabilities of the next token;
    ``histories[i]`` the tokens of example ``i`` so far (after the decoder prompt). Returns
    ``(B, V)`` scores to take the argmax of (``logp`` plus the bonuses).
    """

    is_logit_bias = True  # what WhisperBackend.transcribe accepts as its ``decoder``

    def __init__(self, anywhere: Iterable[Sequence[int]], at_start: Iterable[Sequence[int]] = (), *,
                 config: BiasConfig | None = None, base_config: BiasConfig | None = None,
                 entries: Sequence[str] = (), prompt: Sequence[int] = ()) -> None:
        self.anywhere = TokenTrie(s for s in anywhere if len(s))
        self.at_start = TokenTrie(s for s in at_start if len(s))
        self.config = config or BiasConfig()
        self.base_config = base_config or self.config
        self.entries = list(entries)  # the words, for display
        self.prompt = [int(t) for t in prompt]  # previous-text tokens, before the decoder's start token

    @classmethod
    def from_entries(cls, entries: Sequence[str], encode: Callable[[str], list[int]], *,
                     config: BiasConfig | None = None) -> VocabularyBias:
        """Sequences of every spelling of ``entries`` (as written, Capitalized, lower-case),
        with and without a leading space; ``encode(text)`` gives the token ids of text
        (no special tokens). With ``config.prompt``, :func:`prompt_text` of ``entries`` is
        encoded as the previous-text prompt.

        ``config`` None: the defaults, the personal bound (``BiasConfig()``) and the base model's
        (:data:`BASE_BOUND`); a given ``config`` is used with and without a personal adapter."""
        base = BASE_BOUND if config is None else config
        config = config or BiasConfig()
        anywhere, at_start = set(), set()
        for e in entries:
            words = " ".join(str(e).split())
            for form in {words, " ".join(w[:1].upper() + w[1:] for w in words.split()), words.lower()}:
                anywhere.add(tuple(encode(" " + form)))
                at_start.add(tuple(encode(form)))
        prompt = encode(prompt_text(entries)) if config.prompt and entries else []
        return cls(sorted(anywhere), sorted(at_start), config=config, base_config=base, entries=entries, prompt=prompt)

    def for_model(self, personal: bool) -> VocabularyBias:
        """This list with the bound for the model that decodes: ``config`` with a personal adapter
        active, ``base_config`` without (the same tries and prompt; ``self`` when they are equal).

        >>> bias = VocabularyBias([[5]], base_config=BASE_BOUND)
        >>> bias.for_model(True) is bias, bias.for_model(False).config == BASE_BOUND
        (True, True)
        """
        if personal or self.base_config == self.config:
            return self
        out = copy.copy(self)
        out.config = out.base_config
        return out

    def candidates(self, history: Sequence[int]) -> set[int]:
        """Tokens that start a listed word after ``history`` or continue one it ends inside."""
        out = set(self.anywhere.children(0))
        n = len(history)
        if n == 0:
            out.update(self.at_start.children(0))
        for k in range(1, min(n, self.anywhere.depth) + 1):
            node = self.anywhere.walk(history[n - k:])
            if node is not None:
                out.update(self.anywhere.children(node))
        if 0 < n <= self.at_start.depth:
            node = self.at_start.walk(history)
            if node is not None:
                out.update(self.at_start.children(node))
        return out

    def __call__(self, logp: torch.Tensor, histories: Sequence[Sequence[int]]) -> torch.Tensor:
        if logp.ndim != 2 or logp.shape[0] != len(histories):
            raise ValueError(f"logp must be (B, V) with B = {len(histories)} histories, got {tuple(logp.shape)}")
        scores = logp.clone()
        cfg = self.config
        if cfg.bonus == 0.0:
            return scores
        best = logp.max(-1).values  # (B,)
        lowest = math.log(cfg.floor) if cfg.floor > 0 else -math.inf
        vocab = logp.shape[1]
        for i, hist in enumerate(histories):
            cand = [t for t in self.candidates(hist) if 0 <= t < vocab]
            if not cand:
                continue
            idx = torch.tensor(cand, device=logp.device)
            lp = logp[i, idx]
            ok = (lp >= best[i] - cfg.margin) & (lp >= lowest)
            scores[i, idx[ok]] += cfg.bonus
        return scores

    def __repr__(self) -> str:
        base, c = self.base_config, self.config
        alone = "" if base == c else f"; base model: margin={base.margin}, floor={base.floor}, bonus={base.bonus}"
        return (f"VocabularyBias({len(self.entries)} words, margin={c.margin}, floor={c.floor}, "
                f"bonus={c.bonus}{alone}, prompt={len(self.prompt)} tokens)")


def prompt_text(entries: Sequence[str]) -> str:
    """The word list as Whisper's previous text: the entries as written, comma-separated, with
    the leading space openai-whisper gives an ``initial_prompt``.

    >>> prompt_text(["Siobhan", "Auntie  Margaret"])
    ' Siobhan, Auntie Margaret'
    """
    return " " + ", ".join(" ".join(str(e).split()) for e in entries)
