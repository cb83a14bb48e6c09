"""Transcript files: ``<id> <text>`` lines or a CSV with ``id,text`` columns, read into ``{id: text}``.

The one reader for a folder import, the app's uploads and the command line; every
line is checked (an id, words to score, no repeats) before anything is written.
:func:`match_transcripts` also takes a plain prompt list (one sentence a line, no file
names), matched to the recordings in the order of their file names.
"""

from __future__ import annotations

import csv as _csv
import io
import re
from collections.abc import Sequence
from pathlib import Path

from workbench.corpus.records import _LINE_SEPARATORS
from workbench.errors import CorpusError
from workbench.text import normalize_text

__all__ = ["match_transcripts", "parse_transcripts"]


def _read_transcripts(path: Path, ids: Sequence[str] = ()) -> tuple[dict[str, str], str]:
    """``({id: text}, note)`` from a transcript file (see :func:`match_transcripts`)."""
    if not path.is_file():
        raise CorpusError(f"Transcript file '{path}' was not found. Check the path.")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise CorpusError(
            f"Transcript file '{path}' is not UTF-8 text. Save it as UTF-8 (plain text or CSV) and try again."
        ) from None
    return match_transcripts(text, csv=path.suffix.lower() == ".csv", source=str(path), ids=ids)


def _split_id(line: str, ids: Sequence[str]) -> tuple[str, str]:
    """``(id, text)`` of one plain-text transcript line (the rule is in :func:`parse_transcripts`)."""
    if "\t" in line:
        uid, _, rest = line.partition("\t")
        return uid.strip(), rest
    for uid in sorted(ids, key=len, reverse=True):
        if line.startswith(uid) and (len(line) == len(uid) or line[len(uid)].isspace()):
            return uid, line[len(uid):]
    parts = line.split(None, 1)
    return parts[0], parts[1] if len(parts) > 1 else ""


def _file_order(stem: str) -> list:
    """Sort key: file names in the order people number them (``take 2`` before ``take 10``)."""
    return [(0, int(t), "") if t.isdigit() else (1, 0, t.casefold()) for t in re.split(r"(\d+)", stem) if t]


def _looks_like_an_id(word: str) -> bool:
    """A first word that names a file (``a01``, ``rec_3``, ``take-2``), not the first word of a sentence."""
    return bool(re.fullmatch(r"[\w.-]+", word)) and bool(re.search(r"[\d_]", word))


def match_transcripts(text: str, *, csv: bool = False, source: str = "transcripts",
                      ids: Sequence[str] = ()) -> tuple[dict[str, str], str]:
    """``({id: text}, note)``: :func:`parse_transcripts`, or a plain prompt list matched by file order.

    A speaker's own ``prompts.txt`` (one sentence a line, no file names) is the natural
    file to upload with the recordings. When no line starts with the name of one of the
    recordings (``ids``, without endings) and the first words do not look like file names,
    the lines are taken as the sentences of the recordings in the order of their file
    names (``take 2`` before ``take 10``): as many lines as recordings, or a plain error.
    ``note`` then says so, with the first and last pair to check; else it is ``""``.

    >>> match_transcripts("Good morning.\\nThank you.", ids=["b-2", "b-1"])[0]
    {'b-1': 'Good morning.', 'b-2': 'Thank you.'}
    """
    clean = _LINE_SEPARATORS.sub(" ", text.replace("\r\n", "\n"))
    lines = [" ".join(line.split()) for line in clean.split("\n")]
    lines = [line for line in lines if line and not line.startswith("#")]
    first = lines[0].lower() if lines else ""
    names = sorted(ids, key=len, reverse=True)

    def named(line: str) -> bool:
        return any(line.startswith(n) and (len(line) == len(n) or line[len(n)].isspace()) for n in names)

    plain = (not csv and ids and lines and "\t" not in clean and not ("id" in first and "text" in first)
             and not any(named(line) for line in lines)
             and not all(_looks_like_an_id(line.split()[0]) for line in lines))
    if not plain:
        return parse_transcripts(text, csv=csv, source=source, ids=ids), ""
    order = sorted(ids, key=_file_order)
    if len(lines) != len(order):
        raise CorpusError(
            f"'{source}' has {len(lines)} sentences without file names for {len(order)} recordings. Either start "
            "each line with the recording's file name (without .wav), then the sentence ('take-01 Good "
            "morning.'), or give exactly one sentence per recording, in the order of the file names.")
    wordless = [f"line {i + 1} ({line!r})" for i, line in enumerate(lines) if not normalize_text(line)]
    if wordless:
        raise CorpusError(f"'{source}' has sentences without words to score: {', '.join(wordless[:10])}. "
                          "Fix them and try again.")
    out = dict(zip(order, lines, strict=True))
    note = (f"'{source}' has no file names, so its {len(lines)} sentences were matched to the recordings in the "
            f"order of their file names ({order[0]}: {lines[0]!r}"
            + (f" ... {order[-1]}: {lines[-1]!r}" if len(order) > 1 else "")
            + "). Check a few on the Record page; if the order is wrong, start each line with the file name.")
    return out, note


def parse_transcripts(text: str, *, csv: bool = False, source: str = "transcripts",
                      ids: Sequence[str] = ()) -> dict[str, str]:
    """``{id: text}`` from ``<id> <text>`` lines, or CSV with an ``id,text`` header.

    Where the id of a plain-text line ends:

    1. at the first tab, if the line has one (``take 3<TAB>hello there``);
    2. else after the longest of ``ids`` (the audio files' names without their
       ending) that the line starts with, followed by a space, so that
       ``take 3 hello there`` matches ``take 3.wav``;
    3. else at the first space.

    Only ``\\n`` (or ``\\r\\n``) ends a line; other Unicode line separators are spaces.

    Args:
        text: the file's content.
        csv: treat it as CSV even without a recognisable header.
        source: the name used in error messages (a file name, never used as a path).
        ids: the ids the lines may start with (rule 2); ``import_folder`` passes the stems.

    Raises:
        CorpusError: lines without id or text, text without words (``!!!``),
        repeated ids, or no transcripts at all.

    >>> parse_transcripts("take 3 hello there\\nb1 good morning", ids=["take 3", "take"])
    {'take 3': 'hello there', 'b1': 'good morning'}
    """
    path = source
    is_csv = csv
    text = _LINE_SEPARATORS.sub(" ", text.replace("\r\n", "\n"))
    first = next((line for line in text.split("\n") if line.strip()), "")
    header = [h.strip().lower() for h in first.split(",")]
    rows: list[tuple[int, str, str]] = []
    errors: list[str] = []
    if is_csv or ("id" in header and "text" in header):
        reader = _csv.DictReader(io.StringIO(text))
        fields = {(f or "").strip().lower(): f for f in reader.fieldnames or []}
        if "id" not in fields or "text" not in fields:
            raise CorpusError(
                f"'{path}' needs a header line with the columns id and text (found: {first!r})."
            )
        for row in reader:
            line_no = reader.line_num
            uid = (row.get(fields["id"]) or "").strip()
            utext = " ".join((row.get(fields["text"]) or "").split())
            if not uid and not utext:
                continue
            rows.append((line_no, uid, utext))
    else:
        for line_no, line in enumerate(text.split("\n"), start=1):
            stripped = line.strip(" \r\x00\x0b\x0c") if "\t" in line else line.strip()
            if not stripped.strip() or stripped.startswith("#"):
                continue
            uid, rest = _split_id(stripped, ids)
            rows.append((line_no, uid, " ".join(rest.split())))
    out: dict[str, str] = {}
    seen: dict[str, int] = {}
    for line_no, uid, utext in rows:
        if not uid:
            errors.append(f"line {line_no}: no id")
        elif not utext:
            errors.append(f"line {line_no}: {uid!r} has no text")
        elif not normalize_text(utext):
            errors.append(f"line {line_no}: the text of {uid!r} ({utext!r}) has no words to score")
        elif uid in seen and ids and uid not in ids:
            errors.append(f"line {line_no}: {uid!r} (also the start of line {seen[uid]}) is not the name of a "
                          "recording; each line must start with the recording's file name (without .wav), then "
                          "the sentence")
        elif uid in seen:
            errors.append(
                f"line {line_no}: {uid!r} already appears on line {seen[uid]}"
            )
        else:
            seen[uid] = line_no
            out[uid] = utext
    if errors:
        more = f" (and {len(errors) - 10} more)" if len(errors) > 10 else ""
        raise CorpusError(
            f"Transcript file '{path}' has problems: {'; '.join(errors[:10])}{more}. Fix them and try again."
        )
    if not out:
        raise CorpusError(
            f"Transcript file '{path}' has no transcripts. Expected '<id> <text>' lines or a CSV with id,text columns."
        )
    return out
