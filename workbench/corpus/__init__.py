"""One folder per speaker, written so that no recording is ever lost.

Layout of ``<parent>/<speaker_id>/``::

    speaker.json      speaker_id, display_name, notes, consent records, created,
                      simulated (bool) and a free ``profile`` dict for synthetic speakers
    prompts.txt       one prompt a line
    manifest.jsonl    one utterance a line, append-only; a later line with the same
                      utt_id supersedes earlier ones (re-record, status change)
    audio/<utt_id>.flac   16 kHz mono 16-bit FLAC, written atomically
    .lock             held (fcntl.flock) while writing, so two sessions never interleave

Crash safety: the FLAC is written to a temporary file and renamed into place
*before* its manifest line is appended (flush + fsync), so every manifest line
points at a complete file. A crash can leave at worst one half-written last
line (reported by :meth:`SpeakerCorpus.problems` and skipped) or one FLAC
without a line (reported, kept). Damaged lines never stop the corpus from opening.
Unfinished temporary files of a killed writer are removed when the folder is
opened (and reported). A full disk or a read-only folder is a plain
:class:`~workbench.errors.CorpusError` that says what to do; the failed write
leaves nothing behind.

Prompts and transcripts must contain words that can be scored (see
:func:`workbench.text.normalize_text`): ``"!!!"`` or ``"   "`` is refused when a
take or a prompt list is saved, and such takes already stored are listed as
``"rejected"`` (reported by :meth:`SpeakerCorpus.problems`), so no metric or
training run sees an empty reference. A take whose audio file is gone is listed
with the status ``"missing"``.

Modules (each name below is importable from ``workbench.corpus``):

* :mod:`~workbench.corpus.records`: one take (:class:`Utterance`, a manifest line),
  the rules for ids and texts, :func:`split_by_prompt`;
* :mod:`~workbench.corpus.folder`: the files of a speaker folder, its lock, reading
  the manifest back (:class:`~workbench.corpus.folder.SpeakerFolder`);
* :mod:`~workbench.corpus.speaker`: :class:`SpeakerCorpus` (making, opening, saving
  takes with the one quality check, the split, the counts, the zip export) and
  :func:`list_speakers`;
* :mod:`~workbench.corpus.transcripts`: :func:`parse_transcripts`, :func:`match_transcripts`;
* :mod:`~workbench.corpus.importing`: existing recordings in, from a folder
  (:func:`import_folder`) or uploaded as ``(name, bytes)`` (:func:`import_files`,
  :func:`load_one_upload`), with one :class:`ImportReport`;
* :mod:`~workbench.corpus.use`: takes saved from use (corrected live captions):
  :func:`from_use`, :func:`use_counts`.

>>> import tempfile, numpy as np
>>> parent = tempfile.mkdtemp()
>>> corpus = SpeakerCorpus.create(parent, "spk-001", prompts=["hello there"])
>>> from workbench.constants import SAMPLE_RATE
>>> t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
>>> wav = (0.3 * np.sin(2 * np.pi * 200 * t) * (np.sin(2 * np.pi * 2 * t) > 0)).astype(np.float32)
>>> utt = corpus.add_take(wav, prompt="hello there")
>>> (utt.status, utt.duration_s, len(corpus.utterances()))
('ok', 1.0, 1)
"""

from __future__ import annotations

from workbench.corpus.importing import (
    TRANSCRIPT_SUFFIXES,
    UPLOAD_SUFFIXES,
    ImportReport,
    import_files,
    import_folder,
    load_one_upload,
    upload_name,
)
from workbench.corpus.records import (
    MISSING,
    STATUSES,
    Utterance,
    split_by_prompt,
    validate_speaker_id,
)
from workbench.corpus.speaker import SpeakerCorpus, list_speakers
from workbench.corpus.transcripts import match_transcripts, parse_transcripts
from workbench.corpus.use import USE_SOURCE, from_use, use_counts

__all__ = [
    "MISSING",
    "STATUSES",
    "TRANSCRIPT_SUFFIXES",
    "UPLOAD_SUFFIXES",
    "USE_SOURCE",
    "ImportReport",
    "SpeakerCorpus",
    "Utterance",
    "from_use",
    "import_files",
    "import_folder",
    "list_speakers",
    "load_one_upload",
    "match_transcripts",
    "parse_transcripts",
    "split_by_prompt",
    "upload_name",
    "use_counts",
    "validate_speaker_id",
]
