"""Recordings uploaded through the Record page, added to a speaker folder.

The page only passes the files on: matching, checking and saving them is
:func:`workbench.corpus.import_files`, the same path as a folder import, and one
uploaded take is :func:`workbench.corpus.load_one_upload`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from workbench.corpus import import_files

if TYPE_CHECKING:
    from workbench.corpus import ImportReport, SpeakerCorpus

__all__ = ["add_uploaded_files"]


def add_uploaded_files(corpus: SpeakerCorpus, files: Sequence[tuple[str, bytes]], *,
                       consent_id: str | None = None) -> ImportReport:
    """Add the recordings of the "Upload many" box with the transcript file uploaded with them.

    Args:
        corpus: the speaker open on the page.
        files: ``(file name, bytes)`` pairs as the upload box delivers them.
        consent_id: the consent recorded on the page.

    Returns:
        The :class:`~workbench.corpus.ImportReport`; its ``message`` and ``ok`` are what the page shows.

    Raises:
        CorpusError: see :func:`workbench.corpus.import_files`.
    """
    return import_files(corpus, files, consent_id=consent_id)
