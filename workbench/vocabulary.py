"""A speaker's word list: the names and words they use (family, places, medicines).

One plain-text file per speaker, ``<speaker folder>/vocabulary.txt``: one word or name a
line (a short name of up to four words, such as "Auntie Margaret", counts as one line);
blank lines and lines starting with ``#`` are ignored; duplicates (same letters, whatever
the case or punctuation) are dropped, the first spelling kept. Spelling as written matters
to Whisper (it writes names with a capital letter), so entries keep it.

The file is untrusted input (anyone can edit a speaker folder, or hand over a file): it
is refused, with the line and what to do, when it is larger than :data:`MAX_FILE_BYTES`,
not UTF-8 text, holds control characters, a line longer than :data:`MAX_LINE_CHARS`, an
entry with no letters or more than :data:`MAX_ENTRY_WORDS` words, or more than
:data:`MAX_ENTRIES` entries. Nothing is written unless the whole list is valid.

How decoding uses the list is decided in one place,
:func:`workbench.workflow.build_decoder`: the built-in model's lexicon beam search boosts
the words (:class:`workbench.decode.BeamSearchDecoder`), Whisper reads them as its previous
text and biases its search towards them, within a bound
(:class:`workbench.decode_bias.VocabularyBias`). Either way it takes effect at the next
decoding, with no retraining.

>>> parse_vocabulary("# family\\nSiobhan\\nAuntie Margaret\\n\\nsiobhan\\n")
['Siobhan', 'Auntie Margaret']
>>> boost_words(["Siobhan", "Auntie Margaret", "Dr. Okafor"])
['siobhan', 'auntie', 'margaret', 'dr', 'okafor']
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path

from workbench.errors import VocabularyError
from workbench.text import normalize_text

__all__ = ["MAX_ENTRIES", "MAX_ENTRY_WORDS", "MAX_FILE_BYTES", "MAX_LINE_CHARS", "VOCABULARY_FILE", "boost_words",
           "parse_vocabulary", "read_vocabulary", "resolve_vocabulary", "save_vocabulary", "speaker_vocabulary",
           "vocabulary_text"]

VOCABULARY_FILE = "vocabulary.txt"  # in the speaker folder
MAX_FILE_BYTES = 16 * 1024  # a list of a few hundred names is a few kB
MAX_LINE_CHARS = 60  # characters a line, comments included
MAX_ENTRIES = 200  # words or names in one list
MAX_ENTRY_WORDS = 4  # words in one entry ("Auntie Margaret", "Lake District")
_HINT = "Write one word or name a line, in plain text (UTF-8)."


def parse_vocabulary(data: str | bytes, *, source: str = "the word list") -> list[str]:
    """The entries of a word list (see the module docstring), in order, first spelling kept.

    Args:
        data: the file's bytes (checked as UTF-8, a byte-order mark allowed) or text.
        source: how to name the list in error messages (e.g. the file's path).

    Raises:
        VocabularyError: the list is too large, not text, or a line cannot be used; the
            message gives the line number and what to change.
    """
    if isinstance(data, bytes):
        if len(data) > MAX_FILE_BYTES:
            raise VocabularyError(f"{source} is {len(data)} bytes; a word list may hold at most {MAX_FILE_BYTES} "
                                  f"bytes ({MAX_ENTRIES} words or names). Keep the words this person says most.")
        try:
            data = data.decode("utf-8-sig")
        except UnicodeDecodeError as err:
            raise VocabularyError(f"{source} is not plain text (UTF-8): byte {err.start} cannot be read. "
                                  f"{_HINT} Save it again as UTF-8 text.") from None
    elif len(data.encode("utf-8", "surrogatepass")) > MAX_FILE_BYTES:
        raise VocabularyError(f"{source} is longer than {MAX_FILE_BYTES} bytes; keep at most {MAX_ENTRIES} "
                              "words or names, those this person says most.")
    entries: list[str] = []
    seen: set[str] = set()
    for number, raw in enumerate(data.replace("\r\n", "\n").replace("\r", "\n").split("\n"), start=1):
        line = raw.strip()
        if len(line) > MAX_LINE_CHARS:
            raise VocabularyError(f"line {number} of {source} is {len(line)} characters long (at most "
                                  f"{MAX_LINE_CHARS}): {line[:30]!r}... {_HINT}")
        bad = next((c for c in line if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn")), None)
        if bad is not None:
            raise VocabularyError(f"line {number} of {source} holds a control character (U+{ord(bad):04X}). "
                                  f"{_HINT}")
        if not line or line.startswith("#"):
            continue
        line = " ".join(line.split())
        key = normalize_text(line)
        if not key:
            raise VocabularyError(f"line {number} of {source} has no letters to recognise: {line!r}. {_HINT}")
        if len(key.split()) > MAX_ENTRY_WORDS:
            raise VocabularyError(f"line {number} of {source} has {len(key.split())} words: {line!r}. A line is "
                                  f"one word or name of at most {MAX_ENTRY_WORDS} words; whole phrases belong in "
                                  "the prompt list.")
        if key in seen:
            continue
        seen.add(key)
        entries.append(line)
        if len(entries) > MAX_ENTRIES:
            raise VocabularyError(f"{source} holds more than {MAX_ENTRIES} words or names; keep those this person "
                                  "says most (a long list makes wrong words more likely).")
    return entries


def read_vocabulary(path: str | Path) -> list[str]:
    """The entries of the word-list file ``path`` (:func:`parse_vocabulary`).

    Raises:
        VocabularyError: the file is missing, a folder, too large, or invalid.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise VocabularyError(f"{path} is a folder, not a word list; give a text file with one word or name "
                                  "a line")
        if size > MAX_FILE_BYTES:
            raise VocabularyError(f"{path} is {size} bytes; a word list may hold at most {MAX_FILE_BYTES} bytes "
                                  f"({MAX_ENTRIES} words or names). Keep the words this person says most.")
        with path.open("rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)  # the file may grow between stat and read
    except FileNotFoundError:
        raise VocabularyError(f"there is no word list at {path}; check the path, or write a text file with one "
                              "word or name a line") from None
    except OSError as err:
        raise VocabularyError(f"cannot read the word list {path} ({err.strerror}); check that it is a readable "
                              "file") from None
    return parse_vocabulary(data, source=str(path))


def speaker_vocabulary(speaker_dir: str | Path) -> list[str]:
    """The word list saved in a speaker folder (:data:`VOCABULARY_FILE`); ``[]`` when there is none."""
    path = Path(speaker_dir) / VOCABULARY_FILE
    if not path.exists():
        return []
    return read_vocabulary(path)


def save_vocabulary(speaker_dir: str | Path, text: str | Iterable[str]) -> list[str]:
    """Check and save a speaker's word list (one entry a line); returns the entries saved.

    An empty list removes the file. Nothing is written when the list is invalid (the old
    list stays), and the write is atomic and private (:mod:`workbench._atomic`).

    Raises:
        VocabularyError: the list is invalid, or the speaker folder does not exist.
    """
    from workbench._atomic import write_bytes_atomic

    folder = Path(speaker_dir)
    if not folder.is_dir():
        raise VocabularyError(f"there is no speaker folder at {folder}; create the speaker first")
    source = text if isinstance(text, str) else "\n".join(text)
    entries = parse_vocabulary(source, source="the word list")
    path = folder / VOCABULARY_FILE
    if not entries:
        path.unlink(missing_ok=True)
        return []
    write_bytes_atomic(path, vocabulary_text(entries).encode("utf-8"))
    return entries


def vocabulary_text(entries: Sequence[str]) -> str:
    """The file's text for ``entries``: one a line, ending in a newline ("" for none)."""
    return "".join(f"{e}\n" for e in entries)


def resolve_vocabulary(speaker_dir: str | Path | None = None, file: str | Path | None = None) -> list[str]:
    """The word list a command uses: ``file`` when given (``--vocabulary FILE``), else the
    speaker's saved list, else none."""
    if file is not None:
        return read_vocabulary(file)
    return speaker_vocabulary(speaker_dir) if speaker_dir is not None else []


def boost_words(entries: Iterable[str]) -> list[str]:
    """The normalized words of ``entries`` (``a-z`` and ``'``), in order, once each: what the
    built-in model's character decoder can spell and boost."""
    out: list[str] = []
    for e in entries:
        out += [w for w in normalize_text(e).split() if w not in out]
    return out
