"""Character vocabulary and normalisation."""

import pytest

from workbench.text import BLANK_ID, VOCAB, VOCAB_SIZE, decode_ids, encode, normalize_text, number_to_words


def test_vocabulary_layout():
    assert VOCAB_SIZE == 29 and VOCAB[BLANK_ID] == "<blank>" and VOCAB[1] == " " and VOCAB[-1] == "'"
    assert "".join(VOCAB[2:28]) == "abcdefghijklmnopqrstuvwxyz"


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("Hello, World!", "hello world"),
        ("  It's   fine.  ", "it's fine"),
        ("I’m here", "i'm here"),
        ("'quoted' words", "quoted words"),
        ("Café au lait", "cafe au lait"),
        ("I have 3 cats", "i have three cats"),
        ("Room 101", "room one hundred one"),
        ("in 2024", "in two thousand twenty four"),
        ("call 07700", "call zero seven seven zero zero"),
        ("salt & pepper", "salt and pepper"),
        ("twenty-one", "twenty one"),
        ("", ""),
        ("?!", ""),
    ],
)
def test_normalize_text(raw, expected):
    assert normalize_text(raw) == expected


def test_normalize_is_idempotent():
    s = normalize_text("Don't stop — 42 times!")
    assert normalize_text(s) == s


def test_number_to_words_range():
    assert number_to_words(0) == "zero"
    assert number_to_words(9999) == "nine thousand nine hundred ninety nine"
    with pytest.raises(ValueError):
        number_to_words(10000)


def test_encode_decode_round_trip():
    s = "hello there it's me"
    ids = encode(s)
    assert BLANK_ID not in ids and len(ids) == len(s)
    assert decode_ids(ids) == s
    assert decode_ids([BLANK_ID, *ids, BLANK_ID]) == s


def test_encode_without_normalisation_rejects_bad_chars():
    with pytest.raises(ValueError, match="not in the vocabulary"):
        encode("Hello", normalize=False)
