"""Phoneme rules on espeak-ng phoneme mnemonics (the output of ``espeak-ng -q -x``), English voices.

Speaker-consistent substitutions and deletions (articulation) and accent-like
substitutions. A speaker's rule set is drawn once (:func:`draw_rules`) and
every utterance is rewritten with it (:func:`apply_rules`). Whether a rule fires
on a given word is decided by a stable hash of (speaker seed, rule, word,
position), so the same speaker says the same word the same way every time, as
real speakers with a motor speech disorder largely do, which is also what makes
personalization learnable. Pure functions: no engines, no files; randomness
only from a ``numpy.random.Generator`` passed in.

>>> toks = tokenize_phonemes("s'O2lt")
>>> toks
['s', "'", 'O2', 'l', 't']
>>> apply_rules(["s'O2lt"], ("lisp",), probability=1.0, speaker_seed=0)
["T'O2lt"]
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

__all__ = [
    "ACCENT_RULES",
    "ARTICULATION_RULES",
    "apply_rules",
    "draw_rules",
    "is_consonant",
    "is_vowel",
    "phoneme_edits",
    "tokenize_phonemes",
]

# Multi-character English mnemonics, matched longest first; anything else is one character.
_MULTI = sorted(
    [
        "aI@", "aI3", "aU@", "i@3", "oU#", "I2#", "aI", "aU", "eI", "OI", "oU", "@U", "i@", "e@", "U@",
        "O@", "o@", "A@", "aa", "A:", "O:", "3:", "i:", "u:", "@L", "@2", "@5", "@-", "I2", "I#", "a#",
        "E2", "E3", "0#", "O2", "t#", "d#", "t2", "d2", "tS", "dZ", "r-", "l/", "n-", "m-",
    ],
    key=len,
    reverse=True,
)
_STRESS = "',%="
_CONSONANT_BASES = set("pbtdkgfvTDszSZhmnNlrwjxRL")
_VOWEL_BASES = set("aeiouAEIOUV@03")


def tokenize_phonemes(word: str) -> list[str]:
    """Split one espeak-ng phoneme word into tokens: phonemes, stress marks and pauses.

    ``"".join(tokenize_phonemes(w)) == w`` always holds.
    """
    out: list[str] = []
    i = 0
    while i < len(word):
        c = word[i]
        if c in _STRESS:
            out.append(c)
            i += 1
            continue
        if c == "_":  # pause mnemonics: _ _: _!
            j = i + 1
            while j < len(word) and word[j] in ":!_":
                j += 1
            out.append(word[i:j])
            i = j
            continue
        tok = next((m for m in _MULTI if word.startswith(m, i)), c)
        i += len(tok)
        while i < len(word) and word[i] == ";":  # espeak's palatal/linking mark stays with its phoneme
            tok += ";"
            i += 1
        out.append(tok)
    return out


def _base(tok: str) -> str:
    return tok.rstrip(";")


def is_vowel(tok: str) -> bool:
    """True for a vowel token (``"i:"``, ``"@2"``, ``"aI"``...)."""
    return bool(tok) and tok[0] in _VOWEL_BASES


def is_consonant(tok: str) -> bool:
    """True for a consonant token (``"t#"``, ``"tS"``, ``"r-"``...)."""
    return bool(tok) and tok[0] in _CONSONANT_BASES and not is_vowel(tok)


def _phones(tokens: Sequence[str]) -> list[int]:
    """Indices of the phoneme tokens (not stress marks or pauses)."""
    return [i for i, t in enumerate(tokens) if is_vowel(t) or is_consonant(t)]


# name -> (description, kind, mapping). kind "sub": replace anywhere; "final": replace word-finally;
# "final_deletion" / "cluster": structural edits. A mapping value "" deletes the phoneme.
_Rule = tuple[str, str, dict[str, str]]

ARTICULATION_RULES: dict[str, _Rule] = {
    "stop_weakening": ("stops weakened to fricatives (p->f, b->v, t->s, d->z, k/g->x)", "sub",
                       {"p": "f", "b": "v", "t": "s", "t#": "s", "t2": "s", "d": "z", "k": "x", "g": "x"}),
    "final_consonant_deletion": ("the last consonant of a word is dropped (cat -> ca)", "final_deletion", {}),
    "cluster_reduction": ("initial consonant clusters lose a member (stop -> top, play -> pay)", "cluster", {}),
    "lisp": ("s->th, z->dh (interdental lisp)", "sub", {"s": "T", "z": "D"}),
    "gliding": ("r->w (gliding)", "sub", {"r": "w", "r-": "w"}),
    "devoicing": ("voiced consonants lose voicing (b->p, d->t, z->s...)", "sub",
                  {"b": "p", "d": "t", "g": "k", "v": "f", "z": "s", "D": "T", "dZ": "tS", "Z": "S"}),
    "velar_fronting": ("k->t, g->d, ng->n", "sub", {"k": "t", "g": "d", "N": "n"}),
    "stopping": ("fricatives become stops (f->p, s->t, sh->t...)", "sub",
                 {"f": "p", "v": "b", "s": "t", "z": "d", "S": "t", "T": "t", "D": "d"}),
    "vowel_centralization": ("short vowels drift to schwa (reduced vowel space)", "sub",
                             {"I": "@", "E": "@", "a": "@", "aa": "@", "V": "@", "0": "@", "U": "@", "O2": "@"}),
    "diphthong_reduction": ("diphthongs flatten to one vowel (eI->E, aI->a, oU->O:)", "sub",
                            {"aI": "a", "aU": "a", "eI": "E", "oU": "O:", "OI": "O:", "e@": "E", "i@": "I"}),
    "deaffrication": ("ch->sh, j->zh", "sub", {"tS": "S", "dZ": "Z"}),
    "h_deletion": ("h is dropped", "sub", {"h": ""}),
}

ACCENT_RULES: dict[str, _Rule] = {
    "th_stopping": ("th->t, dh->d", "sub", {"T": "t", "D": "d"}),
    "lax_vowel_merger": ("lax vowels merge with tense ones (ship -> sheep, full -> fool)", "sub",
                         {"I": "i:", "I2": "i:", "U": "u:"}),
    "final_devoicing": ("word-final voiced consonants devoice (bag -> back)", "final",
                        {"b": "p", "d": "t", "g": "k", "v": "f", "z": "s", "dZ": "tS"}),
    "w_to_v": ("w->v", "sub", {"w": "v"}),
    "full_vowels": ("unstressed schwa said as a full vowel", "sub", {"@": "a", "@2": "a", "3": "a"}),
    "h_dropping": ("h is dropped", "sub", {"h": ""}),
}

_ALL_RULES: dict[str, _Rule] = {**ARTICULATION_RULES, **ACCENT_RULES}
_EXCLUSIVE = [{"stop_weakening", "stopping"}, {"h_deletion", "h_dropping"}]


def _compatible(chosen: list[str], name: str) -> bool:
    return not any(name in group and group & set(chosen) for group in _EXCLUSIVE)


def draw_rules(articulation: float, accent: float, rng: np.random.Generator) -> tuple[str, ...]:
    """Draw a speaker's rule set once from its severities (both in [0, 1]).

    Articulation draws ``1 + round(4.5 * severity)`` rules from
    :data:`ARTICULATION_RULES`; accent always has ``th_stopping`` plus
    ``1 + round(3 * severity)`` rules from :data:`ACCENT_RULES`. Same generator
    state, same rules.
    """
    chosen: list[str] = []
    if accent > 0:
        chosen.append("th_stopping")
        others = [r for r in ACCENT_RULES if r != "th_stopping"]
        for i in rng.permutation(len(others)):
            if len(chosen) >= 2 + round(3 * accent):
                break
            chosen.append(others[i])
    if articulation > 0:
        names = list(ARTICULATION_RULES)
        want = len(chosen) + 1 + round(4.5 * articulation)
        for i in rng.permutation(len(names)):
            if len(chosen) >= want:
                break
            if _compatible(chosen, names[i]):
                chosen.append(names[i])
    return tuple(chosen)


def _fires(speaker_seed: int, rule: str, word: str, pos: int, probability: float) -> bool:
    key = f"{speaker_seed}|{rule}|{word}|{pos}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") / 2**64 < probability


def _apply_one(tokens: list[str], rule: str, decide) -> list[str]:
    _, kind, mapping = _ALL_RULES[rule]
    phones = _phones(tokens)
    if not phones:
        return tokens
    out = list(tokens)
    if kind in ("sub", "final"):
        where = phones if kind == "sub" else phones[-1:]
        for i in where:
            new = mapping.get(_base(out[i]))
            if new is not None and decide(i):
                out[i] = new
    elif kind == "final_deletion":
        last = phones[-1]
        if is_consonant(out[last]) and any(is_vowel(out[i]) for i in phones[:-1]) and decide(last):
            out[last] = ""
    elif kind == "cluster" and len(phones) >= 2:
        a, b = phones[0], phones[1]
        if is_consonant(out[a]) and is_consonant(out[b]) and decide(a):
            if _base(out[a]) == "s":
                out[a] = ""
            elif _base(out[b]) in ("r", "l", "w", "j", "r-"):
                out[b] = ""
    return [t for t in out if t != ""]


def apply_rules(words: Sequence[str], rules: Sequence[str], *, probability: float, speaker_seed: int) -> list[str]:
    """Rewrite espeak phoneme words with a speaker's rules.

    Args:
        words: phoneme words, e.g. ``["kUd", "ju:", "p'aas"]``.
        rules: rule names from :data:`ARTICULATION_RULES` / :data:`ACCENT_RULES`, applied in order.
        probability: chance in [0, 1] that a rule fires at a place where it applies.
        speaker_seed: the speaker's seed; with the word and position it decides, stably, where rules fire.

    Returns:
        list[str]: the rewritten words (a word never becomes empty; it keeps at least its first phoneme).
    """
    unknown = [r for r in rules if r not in _ALL_RULES]
    if unknown:
        raise ValueError(f"unknown phoneme rule(s) {unknown}; known rules: {sorted(_ALL_RULES)}")
    out = []
    for word in words:
        tokens = tokenize_phonemes(word)
        for rule in rules:

            def decide(pos: int, _rule: str = rule, _word: str = word) -> bool:
                return _fires(speaker_seed, _rule, _word, pos, probability)

            tokens = _apply_one(tokens, rule, decide)
        if not _phones(tokens):  # keep something pronounceable
            tokens = tokenize_phonemes(word)[:2]
        out.append("".join(tokens))
    return out


def phoneme_edits(before: Sequence[str], after: Sequence[str]) -> int:
    """Levenshtein distance between two phoneme word lists, counted in phonemes (stress marks ignored)."""
    a = [t for w in before for t in tokenize_phonemes(w) if is_vowel(t) or is_consonant(t)]
    b = [t for w in after for t in tokenize_phonemes(w) if is_vowel(t) or is_consonant(t)]
    prev = list(range(len(b) + 1))
    for i, ta in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, tb in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ta != tb))
        prev = cur
    return prev[-1]
