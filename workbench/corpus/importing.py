"""Recordings that already exist, into a speaker folder: a folder of files, or files uploaded as ``(name, bytes)``.

Both go one way (:func:`_add_recordings`) and give one :class:`ImportReport`:

1. each audio file is matched to its transcript line by file stem (``a01.wav`` <->
   ``a01``; names with spaces: :func:`~workbench.corpus.parse_transcripts`), or a plain
   prompt list (no file names) to the files in the order of their names
   (:func:`~workbench.corpus.transcripts.match_transcripts`; the report says so);
2. transcript sentences not yet in the prompt list are added to it (compared
   ignoring case, punctuation and spacing); a take keeps the list's spelling as its
   prompt and the transcript's as what was said;
3. every file goes through :meth:`~workbench.corpus.SpeakerCorpus.add_take` (the
   one quality check; takes with errors are kept as ``"rejected"``);
4. a file added before (same name, same source) is skipped, so an interrupted
   import or upload can simply be run again.

:func:`load_one_upload` is the one way a single uploaded file becomes a take, for
the app's upload buttons and the notebook recorder. Uploaded names are text only:
they are matched and shown, never used as a path.

>>> upload_name("../../x/take 1.wav")
'take 1.wav'
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from workbench import audio as _audio
from workbench.constants import SAMPLE_RATE
from workbench.corpus.records import _name_problem
from workbench.corpus.speaker import SpeakerCorpus
from workbench.corpus.transcripts import _read_transcripts, match_transcripts
from workbench.errors import AudioError, CorpusError
from workbench.notices import notify
from workbench.text import prompt_key

__all__ = [
    "TRANSCRIPT_SUFFIXES",
    "UPLOAD_SUFFIXES",
    "ImportReport",
    "import_files",
    "import_folder",
    "load_one_upload",
    "upload_name",
]

#: Endings of the recordings an upload takes: the formats the app's file choosers offer
#: (a folder import reads every ending of :data:`workbench.audio.AUDIO_SUFFIXES`).
UPLOAD_SUFFIXES = (".wav", ".flac", ".ogg")
#: Endings of a transcript file uploaded with its recordings.
TRANSCRIPT_SUFFIXES = (".txt", ".csv")
_MAX_UPLOAD_NAME = 80
_MAX_SECONDS = 600  # longest file imported, as for any take read from disk


@dataclass
class ImportReport:
    """What an import (:func:`import_folder`) or an upload (:func:`import_files`) did with each file.

    Attributes:
        added: utt ids saved with status ``"ok"``.
        rejected: utt ids saved with status ``"rejected"`` (kept, not used for training).
        rejected_files: ``"file name: why"`` for each of :attr:`rejected`.
        unmatched_audio: audio file names with no transcript line.
        missing_audio: transcript ids with no audio file.
        unreadable: ``"name: reason"`` for files that could not be used.
        already_present: file names skipped because an earlier import added them.
        new_prompts: sentences added to the prompt list.
        note: how the transcript file was read, when it was a plain prompt list matched by
            file order (:func:`~workbench.corpus.transcripts.match_transcripts`); else ``""``.
        source: ``"upload"`` for uploaded files, None for a folder (as stored in
            each take's ``extra["source"]``); the message's wording follows it.
    """

    added: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    rejected_files: list[str] = field(default_factory=list)
    unmatched_audio: list[str] = field(default_factory=list)
    missing_audio: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    already_present: list[str] = field(default_factory=list)
    new_prompts: int = 0
    note: str = ""
    source: str | None = None

    @property
    def unmatched(self) -> list[str]:
        """Same as :attr:`unmatched_audio` (the app page's name for it)."""
        return self.unmatched_audio

    @property
    def ok(self) -> bool:
        """True when something was added and every file was matched and read."""
        return bool(self.added) and not (self.unmatched_audio or self.unreadable)

    @property
    def message(self) -> str:
        """One plain-language paragraph."""
        n, m = len(self.added), len(self.rejected)
        if self.source == "upload":
            parts = [f"Added {n} recording{'s' if n != 1 else ''}."]
            if m:
                parts.append(f"{m} more {'were' if m != 1 else 'was'} saved but did not pass the quality check "
                             "(kept aside, not used for training; record or upload "
                             f"{'them' if m != 1 else 'it'} again):")
        else:
            parts = [f"Imported {n} good take{'s' if n != 1 else ''} and {m} rejected "
                     f"take{'s' if m != 1 else ''}" + (":" if m else ".")]
        if m:
            shown = [why.rstrip(".") for why in self.rejected_files[:10] or self.rejected[:10]]
            parts.append("; ".join(shown) + (f" (and {m - len(shown)} more)." if m > len(shown) else "."))
        if self.note:
            parts.append(self.note)
        if self.new_prompts:
            parts.append(f"{self.new_prompts} new sentence{'s were' if self.new_prompts != 1 else ' was'} "
                         "added to the prompt list.")
        if self.unmatched_audio:
            parts.append(
                f"{len(self.unmatched_audio)} audio files have no transcript: {', '.join(self.unmatched_audio[:10])}."
            )
        if self.missing_audio:
            parts.append(
                f"{len(self.missing_audio)} transcripts have no audio file: {', '.join(self.missing_audio[:10])}."
            )
        if self.unreadable:
            parts.append(f"{len(self.unreadable)} files could not be read: {'; '.join(self.unreadable[:10])}.")
        if self.already_present:
            parts.append(f"{len(self.already_present)} files were already imported and were skipped.")
        return " ".join(parts)


# --------------------------------------------------------------------------- #
# The one path
# --------------------------------------------------------------------------- #

#: ``{file stem: [(file name, path or bytes), ...]}``; more than one file per stem is refused.
_ByStem = dict[str, list[tuple[str, "Path | bytes"]]]


def _utt_id_from_stem(stem: str) -> str | None:
    if _name_problem(stem) is None:
        return stem
    cleaned = (
        re.sub(r"[^A-Za-z0-9_.-]+", "_", stem)
        .lstrip("._-")
        .rstrip(".")[:64]
        .rstrip(".")
    )
    return cleaned if _name_problem(cleaned) is None else None


def _add_prompts(corpus: SpeakerCorpus, texts: dict[str, str], report: ImportReport) -> dict[str, str]:
    """Add the sentences not yet in the prompt list; returns ``{normalized: the list's spelling}``."""
    prompts = corpus.prompts()
    by_norm = {prompt_key(p): p for p in prompts}
    new = []
    for text in texts.values():
        if prompt_key(text) not in by_norm:
            by_norm[prompt_key(text)] = text
            new.append(text)
    if new:
        corpus.set_prompts(prompts + new)
        report.new_prompts = len(new)
    return by_norm


def _add_recordings(corpus: SpeakerCorpus, by_stem: _ByStem, texts: dict[str, str], report: ImportReport, *,
                    consent_id: str | None = None, add_prompts: bool = True) -> None:
    """Match, check and save every recording of ``by_stem`` (the steps in the module docstring)."""
    source = report.source
    if add_prompts:
        by_norm = _add_prompts(corpus, texts, report)
    else:
        by_norm = {prompt_key(p): p for p in corpus.prompts()}
    present = corpus.utterances(None)
    used_ids = {u.utt_id for u in present}
    done = {(u.extra.get("source"), u.extra.get("source_file")) for u in present}
    again = "upload the same files again" if source == "upload" else "run the same import again"
    for stem, items in sorted(by_stem.items()):
        if len(items) > 1:
            names = " and ".join(name for name, _ in items)
            report.unreadable.append(f"{names}: two files with the same name; keep one and import again")
            continue
        name, data = items[0]
        if stem not in texts:
            report.unmatched_audio.append(name)
            continue
        if (source, name) in done:
            report.already_present.append(name)
            continue
        utt_id = _utt_id_from_stem(stem)
        if utt_id is not None and utt_id in used_ids:
            utt_id = None
        said = texts[stem]
        extra = {"source_file": name} if source is None else {"source": source, "source_file": name}
        try:
            with warnings.catch_warnings(record=True) as heard:
                warnings.simplefilter("always")
                x, rate = _audio.read_audio(data, max_s=_MAX_SECONDS)
            report.unreadable += [f"{name}: {w.message} (imported)" for w in heard]
            utt = corpus.add_take(x, prompt=by_norm.get(prompt_key(said), said), transcript=said,
                                  sample_rate=rate, consent_id=consent_id, utt_id=utt_id, extra=extra)
        except AudioError as exc:
            report.unreadable.append(f"{name}: {exc}")
            continue
        except CorpusError as exc:  # the folder cannot be written (full disk, read-only): stop here
            raise CorpusError(
                f"The import into '{corpus.root}' stopped at {name}: {exc} The {len(report.added) + len(report.rejected)} "
                f"files imported before it are saved; {again} afterwards and it goes on from there."
            ) from None
        used_ids.add(utt.utt_id)
        (report.added if utt.status == "ok" else report.rejected).append(utt.utt_id)
        if utt.status != "ok":
            report.rejected_files.append(f"{name}: {utt.quality_report.message}")
    report.missing_audio = [uid for uid in texts if uid not in by_stem]
    corpus.last_import = report


# --------------------------------------------------------------------------- #
# A folder
# --------------------------------------------------------------------------- #


def import_folder(
    src_dir: str | os.PathLike,
    transcripts: str | os.PathLike,
    parent: str | os.PathLike,
    speaker_id: str,
    **create_kwargs: Any,
) -> SpeakerCorpus:
    """Import existing recordings into a speaker folder.

    Audio files (:data:`workbench.audio.AUDIO_SUFFIXES`: WAV, FLAC, OGG, MP3,
    AIFF directly in ``src_dir``) are matched to transcripts by file stem
    (``a01.wav`` <-> ``a01``; names with spaces: see :func:`parse_transcripts`). Every file is
    quality-checked; takes with errors are kept with status ``"rejected"``.
    Re-running the import skips files already imported.

    Args:
        src_dir: folder of audio files.
        transcripts: ``<id> <text>`` lines (``#`` comments allowed), or a CSV
            file with an ``id,text`` header.
        parent: folder that holds speaker folders.
        speaker_id: the speaker folder to create (or reuse, with ``exist_ok=True``).
        **create_kwargs: passed to :meth:`SpeakerCorpus.create` (display_name,
            notes, prompts, simulated, profile, exist_ok). Without ``prompts``,
            the transcript texts are added to the prompt list.

    Returns:
        The corpus; ``corpus.last_import`` is the :class:`ImportReport`
        (unmatched and unreadable files are also reported with ``warnings.warn``).

    Raises:
        CorpusError: ``src_dir`` or the transcript file is missing or malformed
        (checked before anything is written).
    """
    src = Path(os.fspath(src_dir))
    if not src.is_dir():
        raise CorpusError(
            f"'{src}' is not a folder. Pass the folder that holds the audio files."
        )
    allowed = {"display_name", "notes", "prompts", "simulated", "profile", "exist_ok"}
    unknown = sorted(set(create_kwargs) - allowed)
    if unknown:
        raise CorpusError(
            f"import_folder() got unknown options {unknown}; allowed: {sorted(allowed)}."
        )
    report = ImportReport()
    by_stem: _ByStem = {}
    for path in sorted(src.iterdir()):
        if not path.is_file() or path.name.startswith("."):
            continue
        suffix = path.suffix.lower()
        if suffix in _audio.AUDIO_SUFFIXES:
            by_stem.setdefault(path.stem, []).append((path.name, path))
        elif suffix in _audio.UNSUPPORTED_AUDIO_SUFFIXES:
            report.unreadable.append(
                f"{path.name}: this format is not supported; export it as WAV or FLAC"
            )
    texts, report.note = _read_transcripts(Path(os.fspath(transcripts)), ids=list(by_stem))
    corpus = SpeakerCorpus.create(parent, speaker_id, **create_kwargs)
    _add_recordings(corpus, by_stem, texts, report, add_prompts="prompts" not in create_kwargs)
    if report.unmatched_audio or report.missing_audio or report.unreadable:
        notify(f"Import into '{corpus.root}': {report.message}", stacklevel=2)
    return corpus


# --------------------------------------------------------------------------- #
# Uploads: files that arrive as (name, bytes)
# --------------------------------------------------------------------------- #


def upload_name(name: Any) -> str:
    """The last part of an uploaded file name, printable and shortened; for messages and matching only."""
    text = str(name or "upload").replace("\\", "/")
    text = PurePosixPath(text).name or "upload"
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return text if len(text) <= _MAX_UPLOAD_NAME else text[: _MAX_UPLOAD_NAME - 1] + "…"


def _suffix(name: str) -> str:
    return PurePosixPath(name).suffix.lower()


def _format_names(suffixes: Sequence[str]) -> str:
    """``(".wav", ".flac", ".ogg")`` -> ``"WAV, FLAC or OGG"``."""
    names = [s.lstrip(".").upper() for s in suffixes]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def import_files(corpus: SpeakerCorpus, files: Sequence[tuple[str, bytes]], *,
                 consent_id: str | None = None) -> ImportReport:
    """Add uploaded recordings, matched to a transcript file uploaded with them.

    Args:
        corpus: the speaker folder.
        files: ``(file name, bytes)`` pairs: WAV/FLAC/OGG recordings (:data:`UPLOAD_SUFFIXES`)
            and one transcript file (``.txt`` with ``<name> <sentence>`` lines, or ``.csv``
            with ``id,text`` columns), where ``<name>`` is the recording's file name
            without its extension; or the speaker's prompt list, one sentence per
            recording in the order of the file names.
        consent_id: the consent the takes are recorded under.

    Returns:
        The :class:`ImportReport` (``source="upload"``; also ``corpus.last_import``).
        Sentences that are not in the speaker's prompt list yet are added to it.

    Raises:
        CorpusError: no recordings, no transcript file, two transcript files, or a
        transcript file with mistakes (the message says which lines).
    """
    report = ImportReport(source="upload")
    by_stem: _ByStem = {}
    transcript_files = []
    for raw_name, content in files:
        name = upload_name(raw_name)
        if _suffix(name) in UPLOAD_SUFFIXES:
            by_stem.setdefault(PurePosixPath(name).stem, []).append((name, bytes(content)))
        elif _suffix(name) in TRANSCRIPT_SUFFIXES:
            transcript_files.append((name, content))
        else:
            report.unreadable.append(f"{name}: not a {_format_names(UPLOAD_SUFFIXES)} recording "
                                     f"or a {'/'.join(TRANSCRIPT_SUFFIXES)} transcript file")
    if not by_stem:
        raise CorpusError(f"No recordings in this upload. Choose {_format_names(UPLOAD_SUFFIXES)} files "
                          "(and their transcript file).")
    if not transcript_files:
        raise CorpusError(
            "Add the transcript file to the same upload: a .txt file with one line per recording, "
            "'<file name without extension> <the sentence>', a .csv file with the columns id,text, or the "
            "speaker's prompt list (one sentence per recording, in the order of the file names). "
            "To add a single recording for the prompt on screen, use 'Upload a recording for this prompt'.")
    if len(transcript_files) > 1:
        raise CorpusError(f"Upload one transcript file at a time (got {', '.join(n for n, _ in transcript_files)}).")
    name, content = transcript_files[0]
    try:
        text = bytes(content).decode("utf-8-sig")
    except UnicodeDecodeError:
        raise CorpusError(f"'{name}' is not UTF-8 text. Save it as UTF-8 (plain text or CSV) and try again.") from None
    texts, report.note = match_transcripts(text, csv=_suffix(name) == ".csv", source=name, ids=list(by_stem))
    _add_recordings(corpus, by_stem, texts, report, consent_id=consent_id)
    return report


def load_one_upload(
    name: str | None, content: bytes | bytearray | memoryview | None, *,
    suffixes: Sequence[str] | None = UPLOAD_SUFFIXES,
) -> _audio.Recording:
    """One uploaded recording as a 16 kHz mono :class:`~workbench.audio.Recording`.

    The one place an uploaded file becomes a take, for the app's upload buttons and the
    notebook recorder's upload fallback alike; messages name the file.

    Args:
        name: the file name as uploaded (only its last part is used, never as a path),
            or None for bytes without a name (then messages say "the upload" and the
            ending is not checked).
        content: the file's bytes; None or empty means nothing was uploaded.
        suffixes: the endings accepted (lower case, with the dot), default
            :data:`UPLOAD_SUFFIXES`; None accepts every file :func:`~workbench.audio.load_audio` reads.

    Returns:
        The recording, ``(n,)`` float32 at :data:`~workbench.constants.SAMPLE_RATE` Hz.

    Raises:
        AudioError: nothing uploaded, an ending not in ``suffixes``, or not a readable recording.
    """
    shown = "the upload" if name is None else upload_name(name)
    formats = _format_names(suffixes or UPLOAD_SUFFIXES)
    if not content:
        raise AudioError(f"No file was uploaded. Choose a {formats} recording.")
    if name is not None and suffixes is not None and _suffix(shown) not in suffixes:
        raise AudioError(f"{shown} is not a {formats} recording. Export it in one of those formats.")
    try:
        return _audio.Recording(_audio.load_audio(bytes(content)), SAMPLE_RATE)
    except AudioError as err:
        raise AudioError(f"{shown}: {err}") from None
