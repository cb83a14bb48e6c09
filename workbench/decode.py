"""CTC decoding: greedy, and prefix beam search with a word lexicon, a word LM and boosting.

Every decoder is a callable ``decoder(log_probs) -> str`` over ONE utterance's
``(T', V)`` log-probabilities (numpy, V = 29 characters of :mod:`workbench.text`,
true frames only), so ``backend.transcribe(wavs, decoder=...)`` takes any of them.

* :func:`greedy_decode`: argmax, collapse repeats, drop blanks.
* :class:`BeamSearchDecoder`: CTC prefix beam search over characters where a
  prefix is ``(completed words, partial word)``:

  - **lexicon** (:class:`Lexicon`, a prefix trie): with ``unknown="forbid"``
    (default) a partial word must stay on the trie and a word can only end at a
    trie word; with ``unknown="penalize"`` any spelling is allowed but a word
    outside the lexicon costs ``oov_penalty`` (natural log) on top of the LM's
    unknown-word probability.
  - **word LM** (:class:`WordLM`): interpolated absolute-discounting bigram
    (or unigram) built from a prompt list; ``lm_weight * log P(word | previous)``
    is added when a word completes, and a unigram *look-ahead* (the best word
    below the trie node) guides the beam inside words.
  - **boost**: personal vocabulary (names, places). Boost words join the lexicon
    and get ``+boost_score`` natural-log bonus each time they are hypothesised.

  Score of a hypothesis = CTC log-prob + ``lm_weight`` * (LM + look-ahead)
  + ``word_bonus`` * #words (+ boosts, - OOV penalties).

Pure Python: on a 3 s utterance (75 encoder frames) with beam 16 it takes a
few ms, because only characters within ``prune`` nats of the best one in a
frame are expanded (CTC posteriors are peaky; most frames are blank).

>>> import numpy as np
>>> lp = np.full((5, 29), -20.0); lp[[0, 1, 3, 4], [9, 9, 10, 0]] = 0.0; lp[2, 0] = 0.0
>>> greedy_decode(lp)   # h h <b> i <b>
'hi'
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from typing import Iterable

import numpy as np

from workbench.text import BLANK_ID, VOCAB, normalize_text

__all__ = [
    "BeamSearchDecoder",
    "Lexicon",
    "WordLM",
    "greedy_decode",
]

_NEG_INF = float("-inf")
_SPACE_ID = VOCAB.index(" ")


def greedy_decode(log_probs: np.ndarray) -> str:
    """Best path: argmax per frame, collapse repeats, remove blanks, tidy spaces.

    Args:
        log_probs: ``(T', V)`` array (any monotone score works; probabilities too).
    """
    ids = np.asarray(log_probs).argmax(-1)
    if ids.size == 0:
        return ""
    keep = np.ones_like(ids, dtype=bool)
    keep[1:] = ids[1:] != ids[:-1]
    ids = ids[keep & (ids != BLANK_ID)]
    return " ".join("".join(VOCAB[i] for i in ids).split())


def _lse(a: float, b: float) -> float:
    if a == _NEG_INF:
        return b
    if b == _NEG_INF:
        return a
    if a > b:
        return a + math.log1p(math.exp(b - a))
    return b + math.log1p(math.exp(a - b))


class Lexicon:
    """A prefix trie over allowed words.

    Nodes are integer ids; node 0 is the root. ``child(node, ch)`` returns the next
    node or ``None``; ``is_word(node)`` says whether a word ends there.

    >>> lex = Lexicon(["cat", "car"])
    >>> lex.is_word(lex.walk("car")), lex.walk("cow") is None
    (True, True)
    """

    def __init__(self, words: Iterable[str]) -> None:
        self._children: list[dict[str, int]] = [{}]
        self._word: list[str | None] = [None]
        self.words: set[str] = set()
        for w in words:
            self.add(w)

    @classmethod
    def from_sentences(cls, sentences: Iterable[str]) -> "Lexicon":
        """All words of the (normalised) sentences."""
        return cls(w for s in sentences for w in normalize_text(s).split())

    def add(self, word: str) -> None:
        word = normalize_text(word)
        for part in word.split():  # "new york" adds both words
            node = 0
            for ch in part:
                nxt = self._children[node].get(ch)
                if nxt is None:
                    nxt = len(self._children)
                    self._children.append({})
                    self._word.append(None)
                    self._children[node][ch] = nxt
                node = nxt
            self._word[node] = part
            self.words.add(part)

    def child(self, node: int, ch: str) -> int | None:
        return self._children[node].get(ch)

    def is_word(self, node: int) -> bool:
        return self._word[node] is not None

    def walk(self, prefix: str) -> int | None:
        node = 0
        for ch in prefix:
            node = self._children[node].get(ch)
            if node is None:
                return None
        return node

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: str) -> bool:
        return word in self.words

    def subtree_max(self, scores: dict[str, float], default: float) -> list[float]:
        """For each node, the best ``scores[word]`` over words at or below it (LM look-ahead)."""
        best = [default] * len(self._children)
        for node in range(len(self._children) - 1, -1, -1):  # children have larger ids
            b = scores.get(self._word[node], default) if self._word[node] is not None else _NEG_INF
            for c in self._children[node].values():
                b = max(b, best[c])
            best[node] = b
        return best


class WordLM:
    """Interpolated absolute-discounting word bigram (``order=2``) or unigram LM.

    ``P(w | v) = max(c(v, w) - D, 0) / c(v) + D * N1+(v, .) / c(v) * P_uni(w)``, with
    ``P_uni`` add-``alpha`` smoothed over the vocabulary plus one unknown word
    ``<unk>``. ``<s>``/``</s>`` mark sentence boundaries. All scores are natural logs.

    >>> lm = WordLM.from_sentences(["good morning", "good night"])
    >>> lm.logprob("morning", "good") > lm.logprob("good", "good")
    True
    """

    def __init__(self, unigrams: Counter, bigrams: Counter, *, order: int = 2, discount: float = 0.5,
                 alpha: float = 0.1) -> None:
        if order not in (1, 2):
            raise ValueError(f"order must be 1 or 2, got {order}")
        self.order = order
        self.discount = discount
        self.vocab = {w for w in unigrams if w != "<s>"}
        total = sum(c for w, c in unigrams.items() if w != "<s>")
        v = len(self.vocab) + 1
        self._uni = {w: math.log((unigrams[w] + alpha) / (total + alpha * v)) for w in self.vocab}
        self._unk = math.log(alpha / (total + alpha * v))
        self._ctx: dict[str, tuple[int, int]] = {}
        self._bi: dict[tuple[str, str], int] = dict(bigrams)
        ctx_count: Counter = Counter()
        ctx_types: Counter = Counter()
        for (a, _b), c in bigrams.items():
            ctx_count[a] += c
            ctx_types[a] += 1
        self._ctx = {a: (ctx_count[a], ctx_types[a]) for a in ctx_count}
        self._cache: dict[tuple[str, str], float] = {}

    @classmethod
    def from_sentences(cls, sentences: Iterable[str], *, order: int = 2, discount: float = 0.5,
                       alpha: float = 0.1) -> "WordLM":
        uni: Counter = Counter()
        bi: Counter = Counter()
        for s in sentences:
            words = ["<s>", *normalize_text(s).split(), "</s>"]
            uni.update(words)
            bi.update(zip(words[:-1], words[1:]))
        return cls(uni, bi, order=order, discount=discount, alpha=alpha)

    def unigram(self, word: str) -> float:
        return self._uni.get(word, self._unk)

    def logprob(self, word: str, prev: str = "<s>") -> float:
        """``log P(word | prev)``; unknown words get the ``<unk>`` probability."""
        if self.order == 1:
            return self.unigram(word)
        key = (prev, word)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        uni = math.exp(self.unigram(word))
        ctx = self._ctx.get(prev)
        if ctx is None:
            p = uni
        else:
            n, types = ctx
            p = max(self._bi.get(key, 0) - self.discount, 0.0) / n + self.discount * types / n * uni
        out = math.log(p)
        self._cache[key] = out
        return out


class BeamSearchDecoder:
    """CTC prefix beam search with an optional lexicon, word LM and boost list.

    Args:
        lexicon: allowed words (a :class:`Lexicon` or an iterable of words); None = free spelling.
        lm: a :class:`WordLM`; None = no LM.
        boost: personal words/phrases to favour (added to the lexicon).
        beam: hypotheses kept per frame (8-16 is plenty).
        lm_weight: multiplies LM and look-ahead log-probs.
        word_bonus: added per completed word (counters the LM's preference for short outputs).
        boost_score: natural-log bonus per boosted word.
        unknown: ``"forbid"`` (only lexicon words) or ``"penalize"`` (allow others at ``oov_penalty``).
        oov_penalty: natural-log cost of a word outside the lexicon (``unknown="penalize"``).
        prune: expand only characters within ``prune`` nats of the frame's best.

    >>> dec = BeamSearchDecoder(lexicon=["hello", "world"])
    >>> callable(dec)
    True
    """

    def __init__(
        self,
        lexicon: Lexicon | Iterable[str] | None = None,
        lm: WordLM | None = None,
        *,
        boost: Iterable[str] = (),
        beam: int = 12,
        lm_weight: float = 0.5,
        word_bonus: float = 1.0,
        boost_score: float = 3.0,
        unknown: str = "forbid",
        oov_penalty: float = 6.0,
        prune: float = 10.0,
    ) -> None:
        if unknown not in ("forbid", "penalize"):
            raise ValueError(f"unknown must be 'forbid' or 'penalize', got {unknown!r}")
        if beam < 1:
            raise ValueError(f"beam must be >= 1, got {beam}")
        if lexicon is not None and not isinstance(lexicon, Lexicon):
            lexicon = Lexicon(lexicon)
        self.boost = {w for b in boost for w in normalize_text(b).split()}
        if self.boost:
            if lexicon is None and unknown == "forbid" and lm is not None:
                lexicon = Lexicon(lm.vocab)
            if lexicon is not None:
                lexicon = Lexicon([*lexicon.words, *self.boost])  # copy: never mutate the caller's lexicon
        if lexicon is None and lm is not None and unknown == "forbid":
            lexicon = Lexicon(lm.vocab)
        self.lexicon = lexicon
        self.lm = lm
        self.beam = beam
        self.lm_weight = lm_weight
        self.word_bonus = word_bonus
        self.boost_score = boost_score
        self.unknown = unknown
        self.oov_penalty = oov_penalty
        self.prune = prune
        self._lookahead: list[float] | None = None
        if lexicon is not None:
            scores = {w: self._word_static(w) for w in lexicon.words}
            self._lookahead = lexicon.subtree_max(scores, 0.0)
            root = self._lookahead[0]
            # look-ahead is relative to the best word, so it is a pure penalty (<= 0)
            self._lookahead = [x - root if x != _NEG_INF else x for x in self._lookahead]

    @classmethod
    def from_prompts(cls, prompts: Iterable[str], *, boost: Iterable[str] = (), order: int = 2,
                     **kwargs) -> "BeamSearchDecoder":
        """Lexicon = every word of ``prompts`` (+ ``boost``), LM = a word bigram over ``prompts``.

        >>> dec = BeamSearchDecoder.from_prompts(["turn on the light", "good morning"], boost=["Siobhan"])
        >>> sorted(dec.lexicon.words)[:3]
        ['good', 'light', 'morning']
        """
        prompts = list(prompts)
        return cls(Lexicon.from_sentences(prompts), WordLM.from_sentences(prompts, order=order), boost=boost, **kwargs)

    def _word_static(self, word: str) -> float:
        """Unigram LM (weighted) + boost of a word: used for look-ahead only."""
        s = self.lm_weight * self.lm.unigram(word) if self.lm is not None else 0.0
        return s + (self.boost_score if word in self.boost else 0.0)

    def _word_score(self, word: str, prev: str) -> float:
        s = self.word_bonus
        if self.lm is not None:
            s += self.lm_weight * self.lm.logprob(word, prev)
        if word in self.boost:
            s += self.boost_score
        if self.lexicon is not None and word not in self.lexicon:
            s -= self.oov_penalty
        return s

    def _node_la(self, node: int | None) -> float:
        if self._lookahead is None or node is None:
            return 0.0
        return self._lookahead[node]

    def __call__(self, log_probs: np.ndarray) -> str:
        return self.decode(log_probs)

    def decode(self, log_probs: np.ndarray) -> str:
        """Best transcript for one utterance's ``(T', V)`` log-probs."""
        lp = np.asarray(log_probs, dtype=np.float64)
        if lp.ndim != 2 or lp.shape[1] != len(VOCAB):
            raise ValueError(f"log_probs must be (T', {len(VOCAB)}), got {lp.shape}")
        lex = self.lexicon
        forbid = self.unknown == "forbid" and lex is not None
        # a hypothesis: key = (words tuple, partial str); value = [pb, pnb]; side info per key:
        # (word score so far, trie node of partial or None, last char id or -1)
        root = 0 if lex is not None else None
        beams: dict = {((), ""): [0.0, _NEG_INF]}
        info: dict = {((), ""): (0.0, root, -1)}
        chars = VOCAB
        for t in range(lp.shape[0]):
            row = lp[t]
            best = row.max()
            cand = [c for c in np.nonzero(row >= best - self.prune)[0].tolist() if c != BLANK_ID]
            p_blank = row[BLANK_ID]
            nxt: dict = defaultdict(lambda: [_NEG_INF, _NEG_INF])
            for key, (pb, pnb) in beams.items():
                wscore, node, last = info[key]
                total = _lse(pb, pnb)
                e = nxt[key]
                e[0] = _lse(e[0], total + p_blank)
                if last >= 0:  # repeated char without a blank collapses into the same prefix
                    e[1] = _lse(e[1], pnb + row[last])
                words, partial = key
                for c in cand:
                    pc = row[c]
                    if c == _SPACE_ID:
                        if not partial:  # leading or double space: not a new symbol
                            if last == _SPACE_ID:  # "x _ <b> _": a second space after a blank
                                e[1] = _lse(e[1], pb + pc)
                            else:  # utterance start: behaves like a blank
                                e[0] = _lse(e[0], total + pc)
                            continue
                        if forbid and (node is None or not lex.is_word(node)):
                            continue
                        prev = words[-1] if words else "<s>"
                        nkey = ((*words, partial), "")
                        if nkey not in info:
                            info[nkey] = (wscore + self._word_score(partial, prev), root, _SPACE_ID)
                        ne = nxt[nkey]
                        ne[1] = _lse(ne[1], total + pc)
                        continue
                    ch = chars[c]
                    if lex is not None and node is not None:
                        nnode = lex.child(node, ch)
                        if nnode is None and forbid:
                            continue
                    else:
                        nnode = None
                        if forbid:
                            continue
                    nkey = (words, partial + ch)
                    if nkey not in info:
                        info[nkey] = (wscore, nnode, c)
                    ne = nxt[nkey]
                    ne[1] = _lse(ne[1], (pb if c == last else total) + pc)
            # prune to the beam by acoustic + word scores + look-ahead
            scored = sorted(
                nxt.items(),
                key=lambda kv: _lse(*kv[1]) + info[kv[0]][0] + self._node_la(info[kv[0]][1]),
                reverse=True,
            )
            beams = dict(scored[: self.beam])
        # finish: complete the partial word and add the end-of-sentence LM score
        final = []
        for key, (pb, pnb) in beams.items():
            words, partial = key
            wscore, node, _ = info[key]
            if partial:
                if forbid and (node is None or not lex.is_word(node)):
                    continue
                wscore += self._word_score(partial, words[-1] if words else "<s>")
                words = (*words, partial)
            if self.lm is not None and self.lm.order == 2:
                wscore += self.lm_weight * self.lm.logprob("</s>", words[-1] if words else "<s>")
            final.append((_lse(pb, pnb) + wscore, words))
        if not final:  # nothing ended on a word: fall back to the best path
            return greedy_decode(lp)
        return " ".join(max(final, key=lambda x: x[0])[1])
