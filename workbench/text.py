"""Character vocabulary and text normalisation shared by models, decoders and evaluation.

The vocabulary is ``<blank>``, space, ``a``-``z`` and the apostrophe (29 symbols);
index 0 is the CTC blank.

:func:`normalize_text` is deliberately simple and predictable, because WER is
computed on its output (``workbench.metrics`` reuses it):

1. Unicode is folded to ASCII (``café`` -> ``cafe``) and lower-cased;
   curly apostrophes become ``'``.
2. ``&`` -> ``and``, ``%`` -> ``percent``.
3. Whole numbers from 0 to 9999 are spelled out (``42`` -> ``forty two``,
   ``1999`` -> ``one thousand nine hundred ninety nine``); other digit strings are
   spelled digit by digit. Hyphens become spaces (``twenty-one`` -> ``twenty one``).
4. Every other character outside ``a-z '`` becomes a space; apostrophes that do not
   sit inside a word (quotes) are dropped; runs of spaces collapse.

>>> normalize_text("Hello,  World! It's 3 o'clock.")
"hello world it's three o'clock"
>>> decode_ids(encode("hi there"))
'hi there'
"""

from __future__ import annotations

import re
import unicodedata

__all__ = [
    "BLANK",
    "BLANK_ID",
    "VOCAB",
    "VOCAB_SIZE",
    "decode_ids",
    "encode",
    "normalize_text",
    "number_to_words",
    "prompt_key",
]

BLANK = "<blank>"
BLANK_ID = 0
VOCAB: tuple[str, ...] = (BLANK, " ", *"abcdefghijklmnopqrstuvwxyz", "'")
VOCAB_SIZE = len(VOCAB)
_CHAR_TO_ID = {c: i for i, c in enumerate(VOCAB) if i != BLANK_ID}

_ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_to_words(n: int) -> str:
    """Spell a whole number ``0 <= n <= 9999`` in words (no "and").

    >>> number_to_words(2024)
    'two thousand twenty four'
    """
    if not 0 <= n <= 9999:
        raise ValueError(f"number_to_words handles 0..9999, got {n}")
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    if n < 1000:
        rest = n % 100
        return _ONES[n // 100] + " hundred" + ("" if rest == 0 else " " + number_to_words(rest))
    rest = n % 1000
    return _ONES[n // 1000] + " thousand" + ("" if rest == 0 else " " + number_to_words(rest))


def _spell_number(match: re.Match) -> str:
    digits = match.group(0)
    if len(digits) <= 4 and not (len(digits) > 1 and digits[0] == "0"):
        return " " + number_to_words(int(digits)) + " "
    return " " + " ".join(_ONES[int(d)] for d in digits) + " "


def normalize_text(text: str) -> str:
    """Lower-case, spell out simple numbers and keep only ``a-z``, ``'`` and single spaces."""
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("`", "'")
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").lower()
    text = text.replace("&", " and ").replace("%", " percent ")
    text = re.sub(r"\d+", _spell_number, text)
    text = re.sub(r"[^a-z' ]+", " ", text)
    text = re.sub(r"(?<![a-z])'|'(?![a-z])", " ", text)  # quotes, not apostrophes
    return re.sub(r" +", " ", text).strip()


def prompt_key(text: str) -> str:
    """The one rule for "the same prompt": case, punctuation and spacing ignored.

    Every place that compares prompts uses it: the corpus's split (test, validation and
    training phrases are whole prompts), a bank's rule that no speaker trains on another's
    test phrase, ``workbench evaluate``, the prompt list and the app's pages. Unlike
    :func:`normalize_text` it keeps digits and letters outside ``a-z`` as they are, so a
    split once made never moves.

    >>> prompt_key("The conference is now LOCKED.") == prompt_key("the conference is now locked")
    True
    >>> prompt_key("  Don't   stop!  ")
    "don't stop"
    """
    return " ".join(re.sub(r"[^\w\s']", " ", str(text).casefold()).split())


def encode(text: str, *, normalize: bool = True) -> list[int]:
    """Character ids of ``text`` (normalised first unless ``normalize=False``).

    Raises:
        ValueError: with ``normalize=False``, for a character outside the vocabulary.
    """
    if normalize:
        text = normalize_text(text)
    try:
        return [_CHAR_TO_ID[c] for c in text]
    except KeyError as exc:
        raise ValueError(
            f"character {exc.args[0]!r} in {text!r} is not in the vocabulary (a-z, space, apostrophe); "
            "pass normalize=True or clean the transcript"
        ) from None


def decode_ids(ids) -> str:
    """Join character ids into text; blanks are skipped (no CTC collapsing here)."""
    return "".join(VOCAB[int(i)] for i in ids if int(i) != BLANK_ID)
