"""Recordings uploaded through the page, added to a speaker folder.

Uploaded file names are text only: they are matched against the transcript ids
and shown in messages, and never become a path. The audio goes through
:func:`workbench.audio.load_audio` (bytes in) and
:meth:`~workbench.corpus.SpeakerCorpus.add_take`, like any other take.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from pathlib import PurePosixPath
from typing import Any

from workbench.corpus import (
    TRANSCRIPT_SUFFIXES,
    UPLOAD_SUFFIXES,
    load_one_upload,  # noqa: F401  (record.py's import, until it imports workbench.corpus)
    upload_name,
)
from workbench.errors import AudioError, CorpusError

__all__ = ["UploadReport", "add_uploaded_files"]


def _suffix(name: str) -> str:
    return PurePosixPath(name).suffix.lower()


def _stem(name: str) -> str:
    return PurePosixPath(name).stem


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s']", " ", text.casefold()).split())


@dataclasses.dataclass
class UploadReport:
    """What happened to each uploaded file."""

    added: list[str] = dataclasses.field(default_factory=list)
    rejected: list[str] = dataclasses.field(default_factory=list)  # saved, but failed the quality check
    unmatched: list[str] = dataclasses.field(default_factory=list)  # audio with no transcript line
    unreadable: list[str] = dataclasses.field(default_factory=list)  # "name: reason"
    already_present: list[str] = dataclasses.field(default_factory=list)
    new_prompts: int = 0

    @property
    def ok(self) -> bool:
        return bool(self.added) and not (self.unmatched or self.unreadable)

    @property
    def message(self) -> str:
        """One plain-language paragraph."""
        parts = [f"Added {len(self.added)} recording{'s' if len(self.added) != 1 else ''}."]
        if self.rejected:
            parts.append(f"{len(self.rejected)} more were saved but did not pass the quality check "
                         "(kept aside, not used for training).")
        if self.new_prompts:
            parts.append(f"{self.new_prompts} new sentence{'s were' if self.new_prompts != 1 else ' was'} "
                         "added to the prompt list.")
        if self.unmatched:
            parts.append(f"No transcript line for: {', '.join(self.unmatched[:8])}"
                         f"{' …' if len(self.unmatched) > 8 else ''}.")
        if self.unreadable:
            parts.append(f"Could not use: {'; '.join(self.unreadable[:5])}{' …' if len(self.unreadable) > 5 else ''}.")
        if self.already_present:
            parts.append(f"{len(self.already_present)} already added earlier (skipped).")
        return " ".join(parts)


def _parse_transcripts(name: str, content: bytes) -> dict[str, str]:
    """``{id: sentence}`` from an uploaded transcript file (the corpus's own rules)."""
    from workbench.corpus import parse_transcripts

    try:
        text = bytes(content).decode("utf-8-sig")
    except UnicodeDecodeError:
        raise CorpusError(f"'{name}' is not UTF-8 text. Save it as UTF-8 (plain text or CSV) and try again.") from None
    return parse_transcripts(text, csv=_suffix(name) == ".csv", source=name)


def add_uploaded_files(corpus: Any, files: Sequence[tuple[str, bytes]], *, consent_id: str | None = None
                       ) -> UploadReport:
    """Add uploaded recordings, matched to a transcript file uploaded with them.

    Args:
        corpus: the :class:`~workbench.corpus.SpeakerCorpus`.
        files: ``(file name, bytes)`` pairs: WAV/FLAC/OGG recordings and one transcript
            file (``.txt`` with ``<name> <sentence>`` lines, or ``.csv`` with ``id,text``
            columns), where ``<name>`` is the recording's file name without its extension.
        consent_id: the consent the takes are recorded under.

    Returns:
        an :class:`UploadReport`. Sentences that are not in the speaker's prompt list
        yet are added to it (as a folder import does).

    Raises:
        CorpusError: no recordings, no transcript file, two transcript files, or a
        transcript file with mistakes (the message says which lines).
    """
    names = [upload_name(n) for n, _ in files]
    audio = [(n, c) for n, (_, c) in zip(names, files, strict=True) if _suffix(n) in UPLOAD_SUFFIXES]
    texts = [(n, c) for n, (_, c) in zip(names, files, strict=True) if _suffix(n) in TRANSCRIPT_SUFFIXES]
    report = UploadReport()
    report.unreadable += [f"{n}: not a WAV, FLAC or OGG recording or a .txt/.csv transcript file"
                          for n in names if _suffix(n) not in UPLOAD_SUFFIXES + TRANSCRIPT_SUFFIXES]
    if not audio:
        raise CorpusError("No recordings in this upload. Choose WAV, FLAC or OGG files (and their transcript file).")
    if not texts:
        raise CorpusError(
            "Add the transcript file to the same upload: a .txt file with one line per recording, "
            "'<file name without extension> <the sentence>', or a .csv file with the columns id,text. "
            "To add a single recording for the prompt on screen, use 'Upload a recording for this prompt'.")
    if len(texts) > 1:
        raise CorpusError(f"Upload one transcript file at a time (got {', '.join(n for n, _ in texts)}).")
    sentences = _parse_transcripts(*texts[0])
    from workbench.audio import load_audio

    prompts = corpus.prompts()
    by_norm = {_norm(p): p for p in prompts}
    present = corpus.utterances(None)
    done = {u.extra.get("source_file") for u in present if u.extra.get("source") == "upload"}
    new_prompts: list[str] = []
    seen: set[str] = set()
    for name, content in audio:
        stem = _stem(name)
        if name in seen or name in done:
            report.already_present.append(name)
            continue
        seen.add(name)
        if stem not in sentences:
            report.unmatched.append(name)
            continue
        said = sentences[stem]
        prompt = by_norm.get(_norm(said))
        if prompt is None:
            prompt = by_norm[_norm(said)] = said
            new_prompts.append(said)
        try:
            utt = corpus.add_take(load_audio(bytes(content)), prompt=prompt, transcript=said, consent_id=consent_id,
                                  extra={"source": "upload", "source_file": name})
        except AudioError as err:
            report.unreadable.append(f"{name}: {err}")
            continue
        (report.added if utt.status == "ok" else report.rejected).append(name)
    if new_prompts:
        corpus.set_prompts(prompts + new_prompts)
        report.new_prompts = len(new_prompts)
    return report
