"""CTC decoders: greedy, lexicon beam search, word LM and boosting."""

import time

import numpy as np
import pytest

from workbench.decode import BeamSearchDecoder, Lexicon, WordLM, greedy_decode
from workbench.text import BLANK_ID, VOCAB, encode


def posteriorgram(text: str, *, frames_per_char: int = 3, noise: float = 0.0, seed: int = 0,
                  alternatives: dict[int, tuple[str, float]] | None = None) -> np.ndarray:
    """Hand-made (T, V) log-probs: each char peaks on one frame followed by blanks.

    ``alternatives[i] = (char, share)`` splits char i's mass with another char.
    """
    rng = np.random.default_rng(seed)
    ids = encode(text)
    t = len(ids) * frames_per_char
    p = np.full((t, len(VOCAB)), 1e-4) + noise * rng.random((t, len(VOCAB)))
    for i, c in enumerate(ids):
        row = i * frames_per_char
        if alternatives and i in alternatives:
            alt, share = alternatives[i]
            p[row, c] = 1 - share
            p[row, VOCAB.index(alt)] = share
        else:
            p[row, c] = 1.0
        p[row + 1 :, BLANK_ID][: frames_per_char - 1] = 1.0
    p /= p.sum(1, keepdims=True)
    return np.log(p)


def test_greedy_collapses_repeats_and_blanks():
    # "l l <b> l o" -> "ll o"? no: repeats collapse unless separated by blank
    ids = [VOCAB.index(c) if c != "_" else BLANK_ID for c in "hhe_ll_llo__"]
    lp = np.full((len(ids), len(VOCAB)), -10.0)
    lp[np.arange(len(ids)), ids] = 0.0
    assert greedy_decode(lp) == "hello"


def test_greedy_strips_extra_spaces():
    assert greedy_decode(posteriorgram(" hi  there ")) == "hi there"
    assert greedy_decode(np.zeros((0, len(VOCAB)))) == ""


def test_beam_without_constraints_matches_greedy_on_clean_input():
    lp = posteriorgram("could you pass the salt")
    assert BeamSearchDecoder(beam=8)(lp) == greedy_decode(lp) == "could you pass the salt"


def test_lexicon_fixes_a_misspelling():
    # acoustics prefer "tee" (e: 0.6) over "tea" (a: 0.4)
    text = "a cup of tee please"
    lp = posteriorgram(text, alternatives={text.index("tee") + 2: ("a", 0.4)})
    assert greedy_decode(lp) == "a cup of tee please"
    dec = BeamSearchDecoder(["a", "cup", "of", "tea", "please"], beam=8)
    assert dec(lp) == "a cup of tea please"


def test_penalize_mode_keeps_confident_unknown_words():
    lp = posteriorgram("hello zorblax")
    dec = BeamSearchDecoder(["hello", "world"], unknown="penalize", oov_penalty=2.0)
    assert dec(lp) == "hello zorblax"
    assert BeamSearchDecoder(["hello", "world"], unknown="forbid")(lp) != "hello zorblax"


def test_word_lm_prefers_seen_continuations():
    lm = WordLM.from_sentences(["turn on the light", "turn off the light", "the light is on"])
    assert lm.logprob("light", "the") > lm.logprob("on", "the")
    assert lm.logprob("zebra", "the") < lm.logprob("light", "the")
    assert WordLM.from_sentences(["a b"], order=1).logprob("b", "a") == pytest.approx(
        WordLM.from_sentences(["a b"], order=1).unigram("b"))


def test_lm_breaks_an_acoustic_tie():
    text = "turn on the light"
    # "on" vs "in": 50/50 acoustically
    lp = posteriorgram(text, alternatives={text.index("on"): ("i", 0.5)})
    lm = WordLM.from_sentences(["turn on the light", "turn on the radio"])
    dec = BeamSearchDecoder(["turn", "on", "in", "the", "light", "radio"], lm, lm_weight=1.0)
    assert dec(lp) == "turn on the light"


def test_boost_changes_the_output():
    text = "call mary now"
    lp = posteriorgram(text, alternatives={text.index("mary") + 1: ("o", 0.65)})  # "mory"/"mary"
    words = ["call", "mary", "mory", "now"]
    plain = BeamSearchDecoder(words)
    boosted = BeamSearchDecoder(words, boost=["Mary"], boost_score=3.0)
    assert plain(lp) == "call mory now"
    assert boosted(lp) == "call mary now"


def test_boost_adds_words_to_the_lexicon_without_mutating_it():
    lex = Lexicon(["call", "now"])
    text = "call siobhan now"
    dec = BeamSearchDecoder(lex, boost=["Siobhan"])
    assert dec(posteriorgram(text)) == text
    assert "siobhan" not in lex


def test_lexicon_trie():
    lex = Lexicon.from_sentences(["New York, please", "don't go"])
    assert {"new", "york", "please", "don't", "go"} == lex.words
    assert lex.walk("yo") is not None and not lex.is_word(lex.walk("yo"))
    assert lex.is_word(lex.walk("york")) and lex.walk("yz") is None and "go" in lex and len(lex) == 5


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown"):
        BeamSearchDecoder(unknown="maybe")
    with pytest.raises(ValueError, match="log_probs"):
        BeamSearchDecoder()(np.zeros((4, 5)))


def test_beam_search_is_fast_enough():
    """~3 s of audio = 75 encoder frames; the target is well under 50 ms with beam 16."""
    lm = WordLM.from_sentences(["could you pass me the salt please", "please pass the butter"])
    dec = BeamSearchDecoder(lm.vocab, lm, beam=16)
    lp = posteriorgram("could you pass me the salt please", frames_per_char=2, noise=0.05)
    lp = np.concatenate([lp, lp[:10]])[:75]
    t0 = time.perf_counter()
    for _ in range(5):
        dec(lp)
    per_call = (time.perf_counter() - t0) / 5
    assert per_call < 0.5  # generous for loaded CI machines; typical is a few ms
