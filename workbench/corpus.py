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

>>> import tempfile, numpy as np
>>> parent = tempfile.mkdtemp()
>>> corpus = SpeakerCorpus.create(parent, "spk-001", prompts=["hello there"])
>>> t = np.arange(16_000) / 16_000
>>> wav = (0.3 * np.sin(2 * np.pi * 200 * t) * (np.sin(2 * np.pi * 2 * t) > 0)).astype(np.float32)
>>> utt = corpus.add_take(wav, prompt="hello there")
>>> (utt.status, utt.duration_s, len(corpus.utterances()))
('ok', 1.0, 1)
"""

from __future__ import annotations

import contextlib
import copy
import csv as _csv
import dataclasses
import datetime as _dt
import hashlib
import io
import json
import math
import os
import re
import secrets
import tempfile
import threading
import warnings
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from workbench import audio as _audio
from workbench._atomic import atomic_file, disk_error_message, fsync_dir, is_temp_name, write_bytes_atomic
from workbench.constants import SAMPLE_RATE
from workbench.errors import AudioError, CorpusError
from workbench.text import normalize_text

try:  # POSIX only; elsewhere a single app session per folder is assumed
    import fcntl as _fcntl
except ImportError:  # pragma: no cover - Windows
    _fcntl = None  # type: ignore[assignment]

__all__ = [
    "MISSING",
    "STATUSES",
    "TRANSCRIPT_SUFFIXES",
    "UPLOAD_SUFFIXES",
    "ImportReport",
    "SpeakerCorpus",
    "Utterance",
    "import_folder",
    "list_speakers",
    "load_one_upload",
    "parse_transcripts",
    "split_by_prompt",
    "upload_name",
    "validate_speaker_id",
]

#: Statuses stored in the manifest (:attr:`Utterance.status`, :meth:`SpeakerCorpus.set_status`).
STATUSES = ("ok", "rejected", "skipped")
#: The status :meth:`SpeakerCorpus.utterances` gives a take whose audio file is gone (never stored).
MISSING = "missing"

_MANIFEST = "manifest.jsonl"
_SPEAKER_JSON = "speaker.json"
_PROMPTS = "prompts.txt"
_AUDIO_DIR = "audio"
_LOCK = ".lock"
_OWN_FILES = frozenset({_MANIFEST, _SPEAKER_JSON, _PROMPTS, _AUDIO_DIR, _LOCK})
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_RESERVED = frozenset(
    {"con", "prn", "aux", "nul", "clock$"}
    | {f"com{i}" for i in range(10)}
    | {f"lpt{i}" for i in range(10)}
)
_REQUIRED_KEYS = ("utt_id", "audio_path", "prompt", "duration_s", "created", "status")
_IMPORT_SUFFIXES = _audio.AUDIO_SUFFIXES  # one list for transcribe, import and the app
_UNSUPPORTED_AUDIO = _audio.UNSUPPORTED_AUDIO_SUFFIXES
# str.splitlines() also breaks at these; inside one prompt they become spaces
_LINE_SEPARATORS = re.compile(" *[\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029][ \x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]*")
_FATAL_CODES = frozenset({"empty", "not_audio", "bad_shape", "nonfinite"})


# --------------------------------------------------------------------------- #
# Names and small helpers
# --------------------------------------------------------------------------- #


def _name_problem(value: Any) -> str | None:
    """Why ``value`` is not a safe file-name component, or None if it is."""
    if not isinstance(value, str):
        return f"is not text (it is a {type(value).__name__})"
    if value == "":
        return "is empty"
    if "\x00" in value:
        return "contains a NUL character"
    if "/" in value or "\\" in value:
        return "contains a path separator ('/' or '\\')"
    if value.startswith("."):
        return "starts with a dot (a hidden or relative folder)"
    if ".." in value:
        return "contains '..'"
    if len(value) > 64:
        return f"is {len(value)} characters long (at most 64)"
    if not _NAME_RE.fullmatch(value):
        return "contains characters other than letters, digits, '-', '_' or '.', or does not start with a letter or digit"
    if value.endswith("."):
        return "ends with a dot (Windows would drop it)"
    if value.split(".")[0].lower() in _RESERVED:
        return "is a reserved device name on Windows"
    return None


def _validate_name(value: Any, kind: str, example: str) -> str:
    reason = _name_problem(value)
    if reason is not None:
        raise CorpusError(
            f"{kind} {value!r} is not allowed: it {reason}. Use letters, digits, '-' or '_' "
            f"(up to 64 characters, starting with a letter or digit), e.g. {example!r}."
        )
    return value


def validate_speaker_id(speaker_id: str) -> str:
    """Return ``speaker_id`` if it is safe as one folder name, else raise CorpusError.

    Allowed: ``[A-Za-z0-9][A-Za-z0-9_.-]{0,63}`` with no ``..``, no trailing dot
    and no Windows device name (``con``, ``nul``, ``com1``...). Speaker ids
    should be de-identified codes, not names.

    >>> validate_speaker_id("spk-017")
    'spk-017'
    """
    return _validate_name(speaker_id, "Speaker id", "spk-017")


def _now() -> str:
    """Current time, ISO-8601 UTC with seconds (``2024-05-01T12:00:00+00:00``)."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _norm_prompt(text: str) -> str:
    """Prompt text for grouping: case, punctuation and spacing ignored."""
    return " ".join(re.sub(r"[^\w\s']", " ", text.casefold()).split())


def _one_line(text: str) -> str:
    """Unicode line and paragraph separators (U+2028 ...) become spaces; spacing is collapsed.

    Newlines and carriage returns are not touched (callers refuse them): they are visible
    line breaks, the others come invisibly from copy and paste.
    """
    return _LINE_SEPARATORS.sub(" ", text).strip() if _LINE_SEPARATORS.search(text) else text


def _text_problem(text: str) -> str | None:
    """Why ``text`` cannot be a prompt or transcript, or None: line breaks, broken characters, no words."""
    if "\n" in text or "\r" in text:
        return "has a line break; each prompt must be one line"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        bad = text[err.start]
        return (f"contains a broken character (U+{ord(bad):04X}, half of a pair, usually from copying text "
                "between programs); type the prompt again")
    if not normalize_text(text):
        return ("has no words that can be scored (letters a-z or numbers; punctuation, symbols and other "
                "alphabets are ignored), so every recording of it would count as an empty sentence")
    return None


def _disk_error(err: OSError, where: Path, what: str) -> CorpusError:
    """A plain CorpusError for a failed write: what failed, why, and what to do."""
    return CorpusError(f"{disk_error_message(err, where)} {what}")


def _json_problem(value: Any) -> str | None:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        return str(exc)
    return None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in the manifest")


def _json_bytes(obj: Any) -> bytes:
    return (
        json.dumps(obj, ensure_ascii=False, indent=2, allow_nan=False) + "\n"
    ).encode("utf-8")


# --------------------------------------------------------------------------- #
# Utterance
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class Utterance:
    """One take: a line of ``manifest.jsonl``.

    Attributes:
        utt_id: unique within the speaker folder; a safe file-name component.
        audio_path: relative to the speaker folder, posix, e.g. ``"audio/00001-3fa2c1.flac"``.
        prompt: the text the speaker was asked to read.
        transcript: what was actually said (defaults to ``prompt``).
        duration_s: length of the stored audio in seconds (samples / 16000).
        quality: :meth:`workbench.audio.QualityReport.to_dict` of the take.
        consent_id: the consent record this take was made under, if any.
        created: ISO-8601 UTC time of recording (defaults to now).
        status: ``"ok"`` (used for training), ``"rejected"`` (kept, not used)
            or ``"skipped"``.
        extra: free JSON-safe dict (e.g. ``{"source_file": "a.wav"}``).
    """

    utt_id: str
    audio_path: str
    prompt: str
    transcript: str | None = None
    duration_s: float = 0.0
    quality: dict[str, Any] = field(default_factory=dict)
    consent_id: str | None = None
    created: str = ""
    status: str = "ok"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _validate_name(self.utt_id, "Utterance id", "00017-a3f9c2")
        for name in ("audio_path", "prompt"):
            if not isinstance(getattr(self, name), str):
                raise CorpusError(f"{name} must be text, got {getattr(self, name)!r}.")
        if self.transcript is None:
            object.__setattr__(self, "transcript", self.prompt)
        elif not isinstance(self.transcript, str):
            raise CorpusError(
                f"transcript must be text or None, got {self.transcript!r}."
            )
        p = self.audio_path
        parts = PurePosixPath(p).parts
        if (
            not p
            or "\\" in p
            or "\x00" in p
            or p.startswith("/")
            or ".." in parts
            or not parts
        ):
            raise CorpusError(
                f"audio_path {p!r} must be a relative path inside the speaker folder, e.g. 'audio/x.flac'."
            )
        d = self.duration_s
        if (
            isinstance(d, bool)
            or not isinstance(d, (int, float))
            or not math.isfinite(d)
            or d < 0
        ):
            raise CorpusError(
                f"duration_s must be a number of seconds >= 0, got {d!r}."
            )
        object.__setattr__(self, "duration_s", float(d))
        for name in ("quality", "extra"):
            value = getattr(self, name)
            if not isinstance(value, dict):
                raise CorpusError(f"{name} must be a dict, got {value!r}.")
            reason = _json_problem(value)
            if reason is not None:
                raise CorpusError(
                    f"{name} must hold only JSON values (text, numbers, lists, dicts): {reason}."
                )
        if self.consent_id is not None and not isinstance(self.consent_id, str):
            raise CorpusError(
                f"consent_id must be text or None, got {self.consent_id!r}."
            )
        if self.status not in STATUSES and self.status != MISSING:  # MISSING: only ever derived, see utterances()
            raise CorpusError(
                f"status must be one of {', '.join(STATUSES)}; got {self.status!r}."
            )
        if self.created == "":
            object.__setattr__(self, "created", _now())
        elif not isinstance(self.created, str):
            raise CorpusError(
                f"created must be an ISO-8601 time as text, got {self.created!r}."
            )
        else:
            try:
                _dt.datetime.fromisoformat(self.created)
            except ValueError:
                raise CorpusError(
                    f"created {self.created!r} is not an ISO-8601 time such as '2024-05-01T12:00:00+00:00'."
                ) from None

    def __hash__(
        self,
    ) -> int:  # the dict fields are not hashable; equal takes share these
        return hash((self.utt_id, self.audio_path, self.status, self.created))

    @property
    def quality_report(self) -> _audio.QualityReport:
        """The quality check :meth:`SpeakerCorpus.add_take` decided this take's status by.

        Its ``ok`` is the decision (``status`` is ``"ok"`` or ``"rejected"`` accordingly,
        unless the caller set a status), ``problems`` the reasons and ``message`` the
        plain-language text a view shows. Rebuilt from :attr:`quality`.
        """
        return _audio.QualityReport.from_dict(self.quality)

    def to_dict(self) -> dict[str, Any]:
        """All fields as a JSON-safe dict."""
        return {
            f.name: copy.deepcopy(getattr(self, f.name))
            for f in dataclasses.fields(self)
        }

    def to_json(self) -> str:
        """One manifest line (no newline), UTF-8 text."""
        return json.dumps(
            self.to_dict(), ensure_ascii=False, allow_nan=False, separators=(",", ":")
        )

    @classmethod
    def from_dict(cls, d: Any, *, line_no: int | None = None) -> Utterance:
        """Strictly validated construction; unknown keys are ignored (newer versions may add some).

        Raises:
            CorpusError: missing key or wrong type, naming ``line_no`` if given.
        """
        where = f"manifest line {line_no}: " if line_no is not None else ""
        if not isinstance(d, dict):
            raise CorpusError(f"{where}expected a JSON object, got {type(d).__name__}.")
        missing = [k for k in _REQUIRED_KEYS if k not in d]
        if missing:
            raise CorpusError(f"{where}missing {', '.join(missing)}.")
        kwargs = {f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d}
        if "quality" in kwargs and kwargs["quality"] is None:
            kwargs["quality"] = {}
        if kwargs.get("status") == MISSING:  # derived from the folder, never stored
            raise CorpusError(f"{where}status must be one of {', '.join(STATUSES)}; got {MISSING!r}.")
        try:
            return cls(**kwargs)
        except CorpusError as exc:
            raise CorpusError(f"{where}{exc}") from None

    @classmethod
    def from_json(cls, line: str | bytes, *, line_no: int | None = None) -> Utterance:
        """Parse one manifest line (inverse of :meth:`to_json`).

        Raises:
            CorpusError: not UTF-8, not JSON (NaN/Infinity included), or invalid
            fields; the message names ``line_no`` if given.
        """
        where = f"manifest line {line_no}: " if line_no is not None else ""
        if isinstance(line, (bytes, bytearray)):
            try:
                line = bytes(line).decode("utf-8")
            except UnicodeDecodeError:
                raise CorpusError(
                    f"{where}not valid UTF-8 text (damaged bytes)."
                ) from None
        try:
            obj = json.loads(line, parse_constant=_reject_constant)
        except (ValueError, RecursionError):
            raise CorpusError(f"{where}not valid JSON.") from None
        return cls.from_dict(obj, line_no=line_no)


def _latest(lines: Sequence[Utterance]) -> list[Utterance]:
    """Later lines supersede earlier ones with the same utt_id; order of first appearance."""
    latest: dict[str, Utterance] = {}
    for utt in lines:
        latest[utt.utt_id] = utt  # dict keeps the first insertion position
    return list(latest.values())


# --------------------------------------------------------------------------- #
# Import report
# --------------------------------------------------------------------------- #


@dataclass
class ImportReport:
    """What :func:`import_folder` did with each file.

    Attributes:
        added: utt ids imported with status ``"ok"``.
        rejected: utt ids imported with status ``"rejected"`` (kept, not used for training).
        unmatched_audio: audio file names with no transcript line.
        missing_audio: transcript ids with no audio file.
        unreadable: ``"name: reason"`` for files that could not be imported.
        already_present: file names skipped because an earlier import added them.
    """

    added: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    unmatched_audio: list[str] = field(default_factory=list)
    missing_audio: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    already_present: list[str] = field(default_factory=list)

    @property
    def message(self) -> str:
        """One plain-language paragraph."""
        parts = [
            f"Imported {len(self.added)} good takes and {len(self.rejected)} rejected takes."
        ]
        if self.unmatched_audio:
            parts.append(
                f"{len(self.unmatched_audio)} audio files have no transcript: {', '.join(self.unmatched_audio[:10])}."
            )
        if self.missing_audio:
            parts.append(
                f"{len(self.missing_audio)} transcripts have no audio file: {', '.join(self.missing_audio[:10])}."
            )
        if self.unreadable:
            parts.append(
                f"{len(self.unreadable)} files could not be read: {'; '.join(self.unreadable[:10])}."
            )
        if self.already_present:
            parts.append(
                f"{len(self.already_present)} files were already imported and were skipped."
            )
        return " ".join(parts)


# --------------------------------------------------------------------------- #
# SpeakerCorpus
# --------------------------------------------------------------------------- #


_MAKE_ONE = ("make one: in the app (workbench serve, Speakers page), with "
             "'workbench record FOLDER --create --consent ID', or in Python with SpeakerCorpus.create(parent, speaker_id).")


class SpeakerCorpus:
    """A speaker folder: recordings, prompts, consent and the manifest.

    Use :meth:`create` or :meth:`open`, not the constructor. Reads always go to
    disk, so two sessions on one folder see each other's takes; writes hold a
    lock file so their lines never interleave.

    Attributes:
        root: the speaker folder itself.
        speaker_id: the de-identified id (from ``speaker.json``).
        last_import: the :class:`ImportReport` of the last :func:`import_folder`
            into this object, else None.
    """

    root: Path
    speaker_id: str

    def __init__(self, root: Path, info: dict[str, Any]) -> None:
        self.root = Path(root)
        self.speaker_id = info["speaker_id"]
        self.last_import: ImportReport | None = None
        self._problems: list[str] = []
        self._thread_lock = threading.RLock()
        self._lock_depth = 0
        self._lock_fd: int | None = None
        self._lock_write = False

    def __repr__(self) -> str:
        return f"SpeakerCorpus({str(self.root)!r})"

    # -- creation ---------------------------------------------------------- #

    @classmethod
    def create(
        cls,
        parent: str | os.PathLike,
        speaker_id: str,
        *,
        display_name: str = "",
        notes: str = "",
        prompts: Sequence[str] | None = None,
        simulated: bool = False,
        profile: dict[str, Any] | None = None,
        exist_ok: bool = False,
    ) -> SpeakerCorpus:
        """Make ``<parent>/<speaker_id>/`` and return it.

        Args:
            parent: folder holding speaker folders (created if needed).
            speaker_id: de-identified id, see :func:`validate_speaker_id`.
            display_name: what the app shows (keep it de-identified too).
            notes: free text for the therapist.
            prompts: the prompt list, one prompt each (no newlines).
            simulated: True for synthetic speakers (:mod:`workbench.simulate`).
            profile: JSON-safe dict describing a synthetic speaker.
            exist_ok: open an existing speaker folder unchanged instead of failing.

        Raises:
            CorpusError: bad id or arguments, or the folder exists (and not ``exist_ok``).
        """
        speaker_id = validate_speaker_id(speaker_id)
        parent = Path(os.fspath(parent))
        root = parent / speaker_id
        if (root / _SPEAKER_JSON).is_file():
            if exist_ok:
                return cls.open(root)
            raise CorpusError(
                f"A speaker folder for {speaker_id!r} already exists in '{parent}'. Open it with "
                f"SpeakerCorpus.open('{root}'), pass exist_ok=True, or choose another speaker id."
            )
        if root.exists() and not root.is_dir():
            raise CorpusError(
                f"'{root}' is a file, not a folder. Choose another speaker id or parent folder."
            )
        if root.is_dir():
            foreign = sorted(
                p.name
                for p in root.iterdir()
                if p.name not in _OWN_FILES and not p.name.startswith(".")
            )
            if foreign:
                raise CorpusError(
                    f"'{root}' already exists and is not a speaker folder (it holds {', '.join(foreign[:5])}). "
                    "Choose another speaker id or parent folder."
                )
        for name, value in (("display_name", display_name), ("notes", notes)):
            if not isinstance(value, str):
                raise CorpusError(f"{name} must be text, got {value!r}.")
        profile = {} if profile is None else profile
        if not isinstance(profile, dict) or _json_problem(profile) is not None:
            raise CorpusError(
                f"profile must be a dict of JSON values (text, numbers, lists, dicts), got {profile!r}."
            )
        prompt_list = _check_prompts(prompts or [])
        info = {
            "format": "workbench-speaker",
            "version": 1,
            "speaker_id": speaker_id,
            "display_name": display_name,
            "notes": notes,
            "consent": [],
            "created": _now(),
            "simulated": bool(simulated),
            "profile": copy.deepcopy(profile),
        }
        new_folder = not root.exists()
        corpus = cls(root, info)
        try:
            (root / _AUDIO_DIR).mkdir(parents=True, exist_ok=True)
            with corpus._locked():
                write_bytes_atomic(
                    root / _PROMPTS, "".join(p + "\n" for p in prompt_list).encode("utf-8")
                )
                (root / _MANIFEST).touch()
                write_bytes_atomic(
                    root / _SPEAKER_JSON, _json_bytes(info)
                )  # last: marks the folder complete
        except (OSError, CorpusError) as err:
            if new_folder:  # leave no half-made speaker folder behind
                _remove_unfinished(root)
            if isinstance(err, CorpusError):
                raise
            raise _disk_error(err, root, f"The speaker folder {speaker_id!r} was not created.") from None
        return corpus

    @classmethod
    def open(cls, path: str | os.PathLike) -> SpeakerCorpus:
        """Open an existing speaker folder (the folder itself, not its parent).

        Damaged manifest lines are skipped and reported once with ``warnings.warn``;
        see :meth:`problems`.

        Raises:
            CorpusError: the path is missing, not a folder, or has no valid speaker.json.
        """
        root = Path(os.fspath(path))
        if not root.exists():
            raise CorpusError(
                f"No speaker folder at '{root}'. Check the path, or {_MAKE_ONE}"
            )
        if not root.is_dir():
            raise CorpusError(
                f"'{root}' is a file, not a speaker folder. Pass the folder that holds speaker.json."
            )
        if not (root / _SPEAKER_JSON).is_file():
            kids = sorted(
                d.name for d in root.iterdir() if (d / _SPEAKER_JSON).is_file()
            )
            hint = (
                f" It contains speaker folders ({', '.join(kids[:5])}): open one of those, "
                f"or use list_speakers('{root}')."
                if kids
                else f" To start a new speaker, {_MAKE_ONE}"
            )
            raise CorpusError(
                f"'{root}' is not a speaker folder (it has no speaker.json).{hint}"
            )
        info = _read_info(root)
        if info["speaker_id"] != root.name:
            warnings.warn(
                f"Speaker folder '{root}' holds speaker {info['speaker_id']!r}; the folder name differs. "
                "The id in speaker.json is used.",
                stacklevel=2,
            )
        corpus = cls(root, info)
        removed = corpus._remove_temp_files()
        if removed:
            warnings.warn(
                f"Speaker folder '{root}': removed {len(removed)} unfinished temporary file(s) left by a save that "
                f"was interrupted ({', '.join(removed[:5])}). Every take in the manifest is complete; a take being "
                "saved at that moment was not saved and needs recording again.",
                stacklevel=2,
            )
        corpus._read()
        if corpus._problems:
            shown = "".join(f"\n  - {p}" for p in corpus._problems[:5])
            more = (
                f"\n  ... and {len(corpus._problems) - 5} more (see .problems())"
                if len(corpus._problems) > 5
                else ""
            )
            warnings.warn(
                f"Speaker folder '{root}': {len(corpus._problems)} problem(s), skipped or kept aside "
                f"(nothing was deleted):{shown}{more}",
                stacklevel=2,
            )
        return corpus

    # -- locking and raw I/O ---------------------------------------------- #

    @contextlib.contextmanager
    def _locked(self, *, write: bool = True) -> Iterator[None]:
        """Hold the folder's lock (re-entrant in this object; a read nested in a write reuses it).

        Writers create ``.lock`` and hold it exclusively. Readers hold it shared,
        and never create it: a folder nobody has written to (read-only sample
        data) is read without a lock.
        """
        with self._thread_lock:
            if self._lock_depth == 0:
                try:
                    flags = os.O_RDWR | os.O_CREAT if write else os.O_RDONLY
                    fd: int | None = os.open(self.root / _LOCK, flags, 0o644)
                except OSError as err:
                    if write:
                        raise _disk_error(err, self.root, "Nothing was changed in the speaker folder.") from None
                    fd = None
                if fd is not None and _fcntl is not None:
                    try:
                        _fcntl.flock(fd, _fcntl.LOCK_EX if write else _fcntl.LOCK_SH)
                    except BaseException:
                        os.close(fd)
                        raise
                self._lock_fd = fd
                self._lock_write = write
            elif (
                write and not self._lock_write
            ):  # pragma: no cover - a bug in this module
                raise RuntimeError("cannot upgrade a read lock to a write lock")
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1
                if self._lock_depth == 0 and self._lock_fd is not None:
                    os.close(self._lock_fd)  # closing releases the flock
                    self._lock_fd = None

    def _temp_files(self) -> list[Path]:
        """Temporary files of :func:`~workbench._atomic.atomic_file` in the folder and in ``audio/``."""
        out = []
        for folder in (self.root, self.root / _AUDIO_DIR):
            with contextlib.suppress(OSError):
                out += sorted(p for p in folder.iterdir() if is_temp_name(p.name) and p.is_file())
        return out

    def _remove_temp_files(self) -> list[str]:
        """Delete the unfinished temporary files of a writer that was killed; returns their names.

        Every write into the folder happens under the exclusive lock, so with the lock
        held no temporary file belongs to a write in progress. A folder that cannot be
        written keeps them (:meth:`problems` lists them).
        """
        if not self._temp_files():
            return []
        removed = []
        try:
            with self._locked():
                for path in self._temp_files():
                    with contextlib.suppress(OSError):
                        path.unlink()
                        removed.append(path.relative_to(self.root).as_posix())
        except CorpusError:  # read-only folder: reported by problems()
            pass
        return removed

    def _read(self) -> list[Utterance]:
        """All valid manifest lines in order; refreshes :meth:`problems`."""
        return self._scan()[0]

    def _scan(self) -> tuple[list[Utterance], dict[str, str]]:
        """``(valid manifest lines in order, {utt_id: derived status})``; refreshes :meth:`problems`.

        Derived statuses: :data:`MISSING` for a take whose audio file is gone, and
        ``"rejected"`` for an ``"ok"`` take whose transcript has no words to score.
        """
        with self._locked(write=False):
            try:
                data = (self.root / _MANIFEST).read_bytes()
            except FileNotFoundError:
                data = b""
            audio_files = (
                sorted(
                    p.name
                    for p in (self.root / _AUDIO_DIR).iterdir()
                    if p.is_file() and not p.name.startswith(".")
                )
                if (self.root / _AUDIO_DIR).is_dir()
                else []
            )
            temp_files = self._temp_files()
        derived: dict[str, str] = {}
        lines: list[Utterance] = []
        problems: list[str] = []
        raw_lines = data.split(b"\n")
        for i, raw in enumerate(raw_lines, start=1):
            if not raw.strip():
                continue
            try:
                lines.append(Utterance.from_json(raw, line_no=i))
            except CorpusError as exc:
                if i == len(raw_lines) and "not valid JSON" in str(exc):
                    problems.append(
                        f"manifest line {i}: cut off (the app probably stopped while saving); skipped."
                    )
                else:
                    problems.append(f"{exc} Skipped.")
        referenced = {utt.audio_path for utt in lines}
        for utt in _latest(lines):
            if not (self.root / utt.audio_path).is_file():
                derived[utt.utt_id] = MISSING
                problems.append(
                    f"take {utt.utt_id!r}: its audio file {utt.audio_path} is missing; the take is listed as "
                    f"'{MISSING}' and not used. Restore the file from a backup or export, or record the prompt again."
                )
            elif utt.status == "ok" and not normalize_text(utt.transcript or utt.prompt):
                derived[utt.utt_id] = "rejected"
                problems.append(
                    f"take {utt.utt_id!r}: its text {utt.transcript or utt.prompt!r} has no words to score, so it is "
                    "left out of training and of every error rate (listed as 'rejected'). Record it again with a "
                    "prompt that has words."
                )
        for name in audio_files:
            if f"{_AUDIO_DIR}/{name}" not in referenced:
                problems.append(
                    f"{_AUDIO_DIR}/{name} has no manifest line (the app probably stopped while saving it); "
                    "the file is kept."
                )
        for path in temp_files:
            problems.append(
                f"{path.relative_to(self.root).as_posix()} is an unfinished file left by a save that was interrupted "
                "and holds no take of the manifest; it is removed when the folder is next opened where it can be "
                "written (or delete it yourself)."
            )
        self._problems = problems + self._prompt_problems()
        return lines, derived

    def _append(self, line: str) -> None:
        """Append one line durably; starts a new line if the last one was cut off. Hold the lock."""
        path = self.root / _MANIFEST
        data = line.encode("utf-8") + b"\n"
        new = not path.exists()
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            if size > 0:
                os.lseek(fd, size - 1, os.SEEK_SET)
                if os.read(fd, 1) != b"\n":
                    data = b"\n" + data
            view = memoryview(data)
            try:
                while view:  # O_APPEND: every write lands at the end
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            except OSError:  # full disk: take back the part of the line that was written
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, size)
                raise
        finally:
            os.close(fd)
        if new:
            fsync_dir(self.root)

    # -- speaker info, consent, prompts ------------------------------------ #

    @property
    def info(self) -> dict[str, Any]:
        """A copy of ``speaker.json`` (speaker_id, display_name, notes, consent, created, simulated, profile)."""
        return _read_info(self.root)

    def add_consent(
        self, consent_id: str, *, text: str = "", given_by: str = ""
    ) -> None:
        """Record a consent (appended to ``speaker.json``'s ``consent`` list).

        Args:
            consent_id: a short id, e.g. ``"consent-2024-05"``; takes refer to it.
            text: what was agreed to.
            given_by: who gave it (the speaker or a guardian; de-identified).

        Raises:
            CorpusError: bad or already used consent id.
        """
        _validate_name(consent_id, "Consent id", "consent-2024-05")
        for name, value in (("text", text), ("given_by", given_by)):
            if not isinstance(value, str):
                raise CorpusError(f"{name} must be text, got {value!r}.")
        with self._locked():
            info = _read_info(self.root)
            if any(c.get("consent_id") == consent_id for c in info["consent"]):
                raise CorpusError(
                    f"Consent {consent_id!r} is already recorded for {self.speaker_id!r}; use a new id."
                )
            info["consent"].append(
                {
                    "consent_id": consent_id,
                    "text": text,
                    "given_by": given_by,
                    "created": _now(),
                }
            )
            with self._writing(f"Consent {consent_id!r} was not recorded."):
                write_bytes_atomic(self.root / _SPEAKER_JSON, _json_bytes(info))

    def _prompt_lines(self) -> list[tuple[int, str]]:
        """``(line number, prompt)`` of ``prompts.txt``; only ``\n`` ends a line (U+2028 is a space)."""
        try:
            text = (self.root / _PROMPTS).read_text(encoding="utf-8-sig", errors="replace")
        except FileNotFoundError:
            return []
        lines = ((i, _one_line(line.strip())) for i, line in enumerate(text.split("\n"), start=1))
        return [(i, line) for i, line in lines if line]

    def _prompt_problems(self) -> list[str]:
        return [f"prompts.txt line {i}: {p!r} has no words to score; it is left out of the prompt list. "
                "Edit the list (set_prompts) to give it words." for i, p in self._prompt_lines()
                if not normalize_text(p)]

    def prompts(self) -> list[str]:
        """The prompt list (``prompts.txt``; blank lines and prompts without words left out)."""
        return [p for _, p in self._prompt_lines() if normalize_text(p)]

    def set_prompts(self, prompts: Sequence[str]) -> None:
        """Replace the prompt list (atomically). Each prompt is one line of text with words.

        Raises:
            CorpusError: a prompt with a line break, a broken character or no words
            (``"!!!"``), or the folder cannot be written.
        """
        checked = _check_prompts(prompts)
        with self._locked(), self._writing("The prompt list was not changed."):
            write_bytes_atomic(
                self.root / _PROMPTS, "".join(p + "\n" for p in checked).encode("utf-8")
            )

    def check_writable(self, *subfolders: str, what: str = "Nothing was changed.") -> None:
        """Raise a plain :class:`CorpusError` now if the folder (or these subfolders) cannot be written.

        Call it before long work whose result is saved into the folder (training), so
        that a read-only or full disk is found before, not after. It writes, fsyncs and
        removes a small temporary file in each folder (in the speaker folder for a
        subfolder that does not exist yet): a permission check alone misses read-only
        disks, full disks and root. Nothing is left behind.

        Args:
            subfolders: e.g. ``"submodels"``, ``"reports"``.
            what: the sentence the message ends with, e.g. "Nothing was trained."
        """
        for sub in subfolders or ("",):
            folder = self.root / sub if sub and (self.root / sub).is_dir() else self.root
            try:
                fd, tmp = tempfile.mkstemp(dir=folder, prefix=".write-check.", suffix=".tmp")
            except OSError as err:
                raise _disk_error(err, self.root / sub, what) from None
            try:
                os.write(fd, bytes(64 * 1024))  # room for a small file, not only for a name
                os.fsync(fd)
            except OSError as err:
                raise _disk_error(err, self.root / sub, what) from None
            finally:
                os.close(fd)
                with contextlib.suppress(OSError):
                    os.unlink(tmp)

    @contextlib.contextmanager
    def _writing(self, what: str) -> Iterator[None]:
        """Turn an ``OSError`` of a write (full disk, read-only folder) into a plain CorpusError."""
        try:
            yield
        except OSError as err:
            raise _disk_error(err, self.root, what) from None

    # -- takes -------------------------------------------------------------- #

    def add_take(
        self,
        audio: np.ndarray,
        *,
        prompt: str,
        transcript: str | None = None,
        sample_rate: int = SAMPLE_RATE,
        consent_id: str | None = None,
        utt_id: str | None = None,
        status: str | None = None,
        extra: dict[str, Any] | None = None,
        replaces: Sequence[str] = (),
    ) -> Utterance:
        """Save one take: FLAC first (atomically), then its manifest line (fsynced).

        The quality check happens here, once: a take with quality errors is still
        saved, with status ``"rejected"``, so nothing is lost; :meth:`set_status` can
        bring it back. The returned take carries the decision: its ``status`` and
        its :attr:`Utterance.quality_report` (``ok``, ``problems``, ``message``), which
        is what a view shows; nobody needs to check the audio again.

        Args:
            audio: ``(n,)`` or ``(n, channels)`` samples at ``sample_rate``
                (float in [-1, 1] or int16). Mixed to mono and resampled to 16 kHz.
            prompt: the text the speaker was asked to read.
            transcript: what was actually said, if it differs from the prompt.
            sample_rate: rate of ``audio`` in Hz.
            consent_id: a consent recorded with :meth:`add_consent`.
            utt_id: default: zero-padded counter + random suffix (``"00017-a3f9c2"``).
                Reusing an id re-records that take: the new line supersedes the
                old one, and the old audio file is kept.
            status: default ``"ok"`` if the quality check has no errors, else ``"rejected"``.
            extra: JSON-safe dict stored with the take.
            replaces: utt ids of earlier takes (of the same prompt) that this take
                replaces if it is saved as ``"ok"``: they are listed in its
                ``extra["replaces"]`` and set to ``"rejected"`` (kept on disk) once the
                new take is on disk. A take saved as ``"rejected"`` replaces nothing.

        Returns:
            The :class:`Utterance` written: ``status`` is the decision and
            :attr:`~Utterance.quality_report` the reasons (``quality`` is its dict).

        Raises:
            AudioError: nothing to save (no samples, NaN/inf, not audio).
            CorpusError: bad prompt (no words, a line break, a broken character), id,
            status, consent or extra, checked before anything is written; or the folder
            cannot be written (full disk, read-only), when nothing is left behind.
        """
        if not isinstance(prompt, str):
            raise CorpusError(f"prompt must be text, got {prompt!r}.")
        if transcript is not None and not isinstance(transcript, str):
            raise CorpusError(f"transcript must be text or None, got {transcript!r}.")
        prompt = _one_line(prompt)
        transcript = None if transcript is None else _one_line(transcript)
        for name, text in (("prompt", prompt), ("transcript", transcript)):
            reason = None if text is None else _text_problem(text)
            if reason is not None:
                raise CorpusError(f"The take was not saved: its {name} {text!r} {reason}.")
        if status is not None and status not in STATUSES:
            raise CorpusError(
                f"status must be one of {', '.join(STATUSES)}; got {status!r}."
            )
        if utt_id is not None:
            _validate_name(utt_id, "Utterance id", "00017-a3f9c2")
        extra = {} if extra is None else extra
        if not isinstance(extra, dict) or _json_problem(extra) is not None:
            raise CorpusError(f"extra must be a dict of JSON values, got {extra!r}.")
        if isinstance(replaces, str):
            raise CorpusError("replaces must be a list of utt ids, not one string. Wrap it: [utt_id].")
        replaces = [_validate_name(r, "Utterance id", "00017-a3f9c2") for r in replaces]
        report = _audio.check_quality(audio, sample_rate)
        fatal = [
            p
            for p in report.problems
            if p.code in _FATAL_CODES
            or (p.code == "wrong_rate" and report.sample_rate == 0)
        ]
        if fatal:
            raise AudioError(
                "This take cannot be saved. " + " ".join(p.message for p in fatal)
            )
        wav = _audio.to_mono(audio)
        if sample_rate != SAMPLE_RATE:
            wav = _audio.resample(wav, int(sample_rate), SAMPLE_RATE)
        flac = _audio.encode_audio(wav, ".flac", SAMPLE_RATE)  # before the lock; the disk is touched once, below
        with self._locked():
            if consent_id is not None:
                known = [c.get("consent_id") for c in _read_info(self.root)["consent"]]
                if consent_id not in known:
                    raise CorpusError(
                        f"Consent {consent_id!r} is not recorded for {self.speaker_id!r} "
                        f"(known: {', '.join(map(str, known)) or 'none'}). Record it first with add_consent()."
                    )
            lines = self._read()
            ids = {u.utt_id for u in lines}
            unknown = [r for r in replaces if r not in ids]
            if unknown:
                raise CorpusError(
                    f"The take was not saved: it should replace {', '.join(map(repr, unknown))}, but speaker "
                    f"{self.speaker_id!r} has no such take."
                )
            if utt_id is None:
                utt_id = self._new_utt_id(ids)
            audio_path = self._free_audio_path(utt_id, {u.audio_path for u in lines})
            decided = status or ("ok" if report.ok else "rejected")
            extra = copy.deepcopy(extra)
            if replaces and decided == "ok":
                extra["replaces"] = list(replaces)
            utt = Utterance(
                utt_id=utt_id,
                audio_path=audio_path,
                prompt=prompt,
                transcript=transcript,
                duration_s=wav.size / SAMPLE_RATE,
                quality=report.to_dict(),
                consent_id=consent_id,
                status=decided,
                extra=extra,
            )
            try:
                line = utt.to_json()
                line.encode("utf-8")
            except UnicodeEncodeError as err:  # e.g. half a surrogate pair inside ``extra``
                raise CorpusError(
                    f"The take was not saved: its details contain a broken character (U+{ord(err.object[err.start]):04X}, "
                    "half of a pair, usually from copying text between programs). Type that text again."
                ) from None
            with self._writing(f"The take for {prompt!r} was not saved; the takes saved before are safe."):
                write_bytes_atomic(self.root / audio_path, flac)
                try:
                    self._append(line)
                except OSError:
                    with contextlib.suppress(OSError):  # no audio file without its manifest line
                        (self.root / audio_path).unlink()
                    raise
            if decided == "ok" and replaces:  # after the new take is safely on disk
                stored = {u.utt_id: u for u in _latest(lines)}
                with self._writing(f"The take was saved, but {', '.join(map(repr, replaces))} is still marked "
                                   "as good; set it aside with set_status(utt_id, 'rejected')."):
                    for old_id in replaces:
                        if stored[old_id].status != "rejected":
                            self._append(dataclasses.replace(stored[old_id], status="rejected").to_json())
        return utt

    def _new_utt_id(self, ids: set[str]) -> str:
        n = len(ids) + 1
        while True:
            candidate = f"{n:05d}-{secrets.token_hex(3)}"
            if (
                candidate not in ids
                and not (self.root / _AUDIO_DIR / f"{candidate}.flac").exists()
            ):
                return candidate

    def _free_audio_path(self, utt_id: str, used: set[str]) -> str:
        """``audio/<utt_id>.flac``, or ``audio/<utt_id>.r2.flac``... if taken (never overwrite a take)."""
        k = 1
        while True:
            rel = (
                f"{_AUDIO_DIR}/{utt_id}.flac"
                if k == 1
                else f"{_AUDIO_DIR}/{utt_id}.r{k}.flac"
            )
            if rel not in used and not (self.root / rel).exists():
                return rel
            k += 1

    def utterances(self, status: str | None = "ok") -> list[Utterance]:
        """Current takes, in recording order (a later line with the same utt_id wins).

        A take whose audio file is gone is listed with the status :data:`MISSING`, and
        an ``"ok"`` take whose text has no words to score (``"!!!"``, stored before such
        prompts were refused) as ``"rejected"``; :meth:`problems` says why. The
        manifest keeps the stored status, so a restored file brings the take back.

        Args:
            status: ``"ok"`` (default), ``"rejected"``, ``"skipped"``, ``"missing"``,
                or None for all.
        """
        if status is not None and status not in STATUSES and status != MISSING:
            raise CorpusError(
                f"status must be one of {', '.join(STATUSES)}, {MISSING} or None; got {status!r}."
            )
        lines, derived = self._scan()
        current = [dataclasses.replace(u, status=derived[u.utt_id]) if u.utt_id in derived else u
                   for u in _latest(lines)]
        return [u for u in current if status is None or u.status == status]

    def _get(self, utt_id: str) -> Utterance:
        for utt in self.utterances(None):
            if utt.utt_id == utt_id:
                return utt
        raise CorpusError(
            f"There is no take {utt_id!r} for speaker {self.speaker_id!r}."
        )

    def set_status(self, utt_id: str, status: str) -> None:
        """Mark a take ``"ok"``, ``"rejected"`` or ``"skipped"`` (appends an updated line)."""
        if status not in STATUSES:
            raise CorpusError(
                f"status must be one of {', '.join(STATUSES)}; got {status!r}."
            )
        with self._locked(), self._writing(f"Take {utt_id!r} keeps its status."):
            stored = {u.utt_id: u for u in _latest(self._read())}
            utt = stored.get(utt_id) or self._get(utt_id)  # _get raises the plain error
            if utt.status != status:
                self._append(dataclasses.replace(utt, status=status).to_json())

    def load_audio(self, utt: Utterance | str) -> np.ndarray:
        """The take's audio, ``(n,)`` float32 at 16 kHz.

        Args:
            utt: an :class:`Utterance` of this corpus or its utt_id.
        """
        if isinstance(utt, str):
            utt = self._get(utt)
        path = self.root / utt.audio_path
        if not path.is_file():
            raise CorpusError(
                f"The audio of take {utt.utt_id!r} ({utt.audio_path}) is missing from '{self.root}'. "
                "Restore it from a backup or export, or mark the take 'skipped'."
            )
        return _audio.load_audio(path, max_seconds=None)

    # -- views -------------------------------------------------------------- #

    def split(
        self, *, test_fraction: float = 0.2, seed: int = 0
    ) -> tuple[list[Utterance], list[Utterance]]:
        """Deterministic train/test split of the ``"ok"`` takes, by prompt.

        All takes of one prompt (compared ignoring case, punctuation and spacing)
        land on the same side, so no test sentence is seen in training. Prompts
        are ranked by a hash of ``(seed, prompt text)``, not by recording order,
        and the ``round(test_fraction * n_prompts)`` lowest go to test; with two
        or more prompts and ``test_fraction > 0`` at least one prompt is on each side.

        Returns:
            ``(train, test)``, each in recording order.
        """
        return split_by_prompt(self.utterances("ok"), fraction=test_fraction, seed=seed)

    def problems(self) -> list[str]:
        """Plain-language list of what was skipped or is out of place, with line numbers.

        Damaged manifest lines (cut off by a crash, garbage bytes, wrong types),
        takes whose audio file is missing, and audio files with no manifest line.
        Empty when all is well.
        """
        self._read()
        return list(self._problems)

    def summary(self) -> dict[str, Any]:
        """Counts for a dashboard.

        Returns:
            ``{"speaker_id", "display_name", "simulated", "n_ok", "n_rejected",
            "n_skipped", "n_missing", "minutes_ok", "n_prompts", "n_prompts_recorded", "n_problems"}``;
            ``n_prompts_recorded`` counts prompts of the list with at least one ok take.
        """
        utts = self.utterances(None)
        ok = [u for u in utts if u.status == "ok"]
        info = self.info
        recorded = {_norm_prompt(u.prompt) for u in ok}
        prompt_keys = {_norm_prompt(p) for p in self.prompts()}
        return {
            "speaker_id": self.speaker_id,
            "display_name": info.get("display_name", ""),
            "simulated": bool(info.get("simulated", False)),
            "n_ok": len(ok),
            "n_rejected": sum(u.status == "rejected" for u in utts),
            "n_skipped": sum(u.status == "skipped" for u in utts),
            "n_missing": sum(u.status == MISSING for u in utts),
            "minutes_ok": round(sum(u.duration_s for u in ok) / 60.0, 3),
            "n_prompts": len(prompt_keys),
            "n_prompts_recorded": len(prompt_keys & recorded),
            "n_problems": len(self._problems),
        }

    # -- import / export ------------------------------------------------------ #

    @classmethod
    def import_folder(
        cls,
        src_dir: str | os.PathLike,
        transcripts: str | os.PathLike,
        parent: str | os.PathLike,
        speaker_id: str,
        **create_kwargs: Any,
    ) -> SpeakerCorpus:
        """Same as the module function :func:`import_folder`."""
        return import_folder(src_dir, transcripts, parent, speaker_id, **create_kwargs)

    def export_zip(self, dest: str | os.PathLike) -> Path:
        """Write the whole speaker folder to a zip file (atomically).

        Args:
            dest: a ``.zip`` path, or an existing folder (then ``<folder>/<speaker_id>.zip``).
                Must be outside the speaker folder.

        Returns:
            The zip path. Entries are ``<speaker_id>/speaker.json``, ``prompts.txt``,
            ``manifest.jsonl`` and ``audio/...``; the lock and temp files are left out.
        """
        dest = Path(os.fspath(dest))
        if dest.is_dir():
            dest = dest / f"{self.speaker_id}.zip"
        root = self.root.resolve()
        if dest.resolve() == root or root in dest.resolve().parents:
            raise CorpusError(
                f"Cannot export into the speaker folder itself ('{dest}'). Choose a path outside '{self.root}'."
            )
        try:
            self._write_zip(dest)
        except OSError as err:
            raise _disk_error(err, dest, "No export was written; the speaker folder is unchanged.") from None
        return dest

    def _write_zip(self, dest: Path) -> None:
        with atomic_file(dest, "wb") as fh, self._locked(write=False):
            with zipfile.ZipFile(fh, "w") as zf:
                for path in sorted(self.root.rglob("*")):
                    rel = path.relative_to(self.root)
                    if not path.is_file() or any(part.startswith(".") for part in rel.parts):
                        continue
                    stored = path.suffix.lower() in (".flac", ".ogg")  # already compressed
                    zf.write(path, f"{self.speaker_id}/{rel.as_posix()}",
                             compress_type=zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED)


def split_by_prompt(
    utts: Sequence[Utterance], *, fraction: float, seed: int = 0
) -> tuple[list[Utterance], list[Utterance]]:
    """Deterministic split of takes by prompt: ``(rest, aside)``, each in the given order.

    All takes of one prompt (compared ignoring case, punctuation and spacing) land
    on the same side. Prompts are ranked by a hash of ``(seed, prompt text)``, and
    the ``round(fraction * n_prompts)`` lowest are set aside; with two or more
    prompts and ``fraction > 0`` at least one prompt is on each side. Used for the
    test split (:meth:`SpeakerCorpus.split`) and again, inside the training side,
    for the validation recordings that decide early stopping.
    """
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction < 1:
        raise CorpusError(f"the share to set aside must be at least 0 and below 1, e.g. 0.2; got {fraction!r}.")

    def rank(key: str) -> bytes:
        return hashlib.sha256(f"{seed}\x1f{key}".encode()).digest()

    keys = sorted({_norm_prompt(u.prompt) for u in utts})
    n = len(keys)
    k = round(fraction * n)
    if fraction > 0 and n >= 2:
        k = min(max(k, 1), n - 1)
    elif n < 2:
        k = 0
    aside_keys = set(sorted(keys, key=rank)[:k])
    rest = [u for u in utts if _norm_prompt(u.prompt) not in aside_keys]
    aside = [u for u in utts if _norm_prompt(u.prompt) in aside_keys]
    return rest, aside


def _check_prompts(prompts: Sequence[str]) -> list[str]:
    if isinstance(prompts, str):
        raise CorpusError(
            "prompts must be a list of prompts, not one string. Wrap it: [prompt]."
        )
    out = []
    for i, p in enumerate(prompts):
        if not isinstance(p, str):
            raise CorpusError(f"Prompt {i + 1} must be text, got {p!r}.")
        p = _one_line(p.strip())
        if not p:  # a blank entry, like a blank line in a prompt file
            continue
        reason = _text_problem(p)
        if reason is not None:
            raise CorpusError(f"Prompt {i + 1} ({p!r}) {reason}. Nothing was saved; fix it and try again.")
        out.append(p)
    return out


def _remove_unfinished(root: Path) -> None:
    """Remove a speaker folder that :meth:`SpeakerCorpus.create` made but could not finish (its own files only)."""
    for name in (_PROMPTS, _MANIFEST, _LOCK):
        with contextlib.suppress(OSError):
            (root / name).unlink()
    for folder in (root / _AUDIO_DIR, root):
        with contextlib.suppress(OSError):
            folder.rmdir()  # only if empty


def _read_info(root: Path) -> dict[str, Any]:
    """Read and check ``speaker.json``; fill defaults for optional keys."""
    path = root / _SPEAKER_JSON
    restore = " Restore it from a backup or an export; the recordings (audio/ and manifest.jsonl) are untouched."
    try:
        info = json.loads(
            path.read_text(encoding="utf-8"), parse_constant=_reject_constant
        )
    except FileNotFoundError:
        raise CorpusError(
            f"'{root}' is not a speaker folder (it has no speaker.json)."
        ) from None
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise CorpusError(f"'{path}' is damaged (not valid JSON).{restore}") from None
    if not isinstance(info, dict):
        raise CorpusError(f"'{path}' is damaged (expected a JSON object).{restore}")
    if _name_problem(info.get("speaker_id")) is not None:
        raise CorpusError(
            f"'{path}' has no valid speaker_id (found {info.get('speaker_id')!r}).{restore}"
        )
    defaults: dict[str, Any] = {
        "display_name": "",
        "notes": "",
        "consent": [],
        "created": "",
        "simulated": False,
        "profile": {},
    }
    for key, value in defaults.items():
        if not isinstance(info.get(key), type(value)):
            info[key] = value
    info["consent"] = [c for c in info["consent"] if isinstance(c, dict)]
    return info


def list_speakers(parent: str | os.PathLike) -> list[SpeakerCorpus]:
    """Every speaker folder directly inside ``parent``, sorted by folder name.

    Folders whose ``speaker.json`` is damaged are skipped with a warning.

    Raises:
        CorpusError: ``parent`` is not a folder.
    """
    parent = Path(os.fspath(parent))
    if not parent.is_dir():
        raise CorpusError(
            f"'{parent}' is not a folder. Pass the folder that holds the speaker folders."
        )
    out = []
    for child in sorted(parent.iterdir()):
        if child.is_dir() and (child / _SPEAKER_JSON).is_file():
            try:
                out.append(SpeakerCorpus.open(child))
            except CorpusError as exc:
                warnings.warn(f"Skipped speaker folder '{child}': {exc}", stacklevel=2)
    return out


# --------------------------------------------------------------------------- #
# Import
# --------------------------------------------------------------------------- #


def _read_transcripts(path: Path, ids: Sequence[str] = ()) -> dict[str, str]:
    """``{id: text}`` from a transcript file (see :func:`parse_transcripts`)."""
    if not path.is_file():
        raise CorpusError(f"Transcript file '{path}' was not found. Check the path.")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise CorpusError(
            f"Transcript file '{path}' is not UTF-8 text. Save it as UTF-8 (plain text or CSV) and try again."
        ) from None
    return parse_transcripts(text, csv=path.suffix.lower() == ".csv", source=str(path), ids=ids)


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
    by_stem: dict[str, list[Path]] = {}
    for path in sorted(src.iterdir()):
        if not path.is_file() or path.name.startswith("."):
            continue
        suffix = path.suffix.lower()
        if suffix in _IMPORT_SUFFIXES:
            by_stem.setdefault(path.stem, []).append(path)
        elif suffix in _UNSUPPORTED_AUDIO:
            report.unreadable.append(
                f"{path.name}: this format is not supported; export it as WAV or FLAC"
            )
    texts = _read_transcripts(Path(os.fspath(transcripts)), ids=list(by_stem))
    corpus = SpeakerCorpus.create(parent, speaker_id, **create_kwargs)
    if "prompts" not in create_kwargs:
        existing = corpus.prompts()
        keys = {_norm_prompt(p) for p in existing}
        new = []
        for t in texts.values():
            if _norm_prompt(t) not in keys:
                keys.add(_norm_prompt(t))
                new.append(t)
        if new:
            corpus.set_prompts(existing + new)
    present = corpus.utterances(None)
    used_ids = {u.utt_id for u in present}
    done_files = {u.extra.get("source_file") for u in present}
    for stem, paths in sorted(by_stem.items()):
        if len(paths) > 1:
            names = " and ".join(p.name for p in paths)
            report.unreadable.append(
                f"{names}: two files with the same name; keep one and import again"
            )
            continue
        path = paths[0]
        if stem not in texts:
            report.unmatched_audio.append(path.name)
            continue
        if path.name in done_files:
            report.already_present.append(path.name)
            continue
        utt_id = _utt_id_from_stem(stem)
        if utt_id is not None and utt_id in used_ids:
            utt_id = None
        try:
            with warnings.catch_warnings(record=True) as heard:
                warnings.simplefilter("always")
                x, rate = _audio.read_audio(path, max_seconds=600)
            report.unreadable += [f"{path.name}: {w.message} (imported)" for w in heard]
            utt = corpus.add_take(
                x,
                prompt=texts[stem],
                sample_rate=rate,
                utt_id=utt_id,
                extra={"source_file": path.name},
            )
        except AudioError as exc:
            report.unreadable.append(f"{path.name}: {exc}")
            continue
        except CorpusError as exc:  # the folder cannot be written (full disk, read-only): stop here
            raise CorpusError(
                f"The import into '{corpus.root}' stopped at {path.name}: {exc} The {len(report.added) + len(report.rejected)} "
                "files imported before it are saved; run the same import again afterwards and it goes on from there."
            ) from None
        used_ids.add(utt.utt_id)
        (report.added if utt.status == "ok" else report.rejected).append(utt.utt_id)
    report.missing_audio = [uid for uid in texts if uid not in by_stem]
    corpus.last_import = report
    if report.unmatched_audio or report.missing_audio or report.unreadable:
        warnings.warn(f"Import into '{corpus.root}': {report.message}", stacklevel=2)
    return corpus


# --------------------------------------------------------------------------- #
# Uploads: files that arrive as (name, bytes)
# --------------------------------------------------------------------------- #

#: Endings of the recordings an upload takes: the formats the app's file choosers offer
#: (a folder import reads every ending of :data:`workbench.audio.AUDIO_SUFFIXES`).
UPLOAD_SUFFIXES = (".wav", ".flac", ".ogg")
#: Endings of a transcript file uploaded with its recordings.
TRANSCRIPT_SUFFIXES = (".txt", ".csv")
_MAX_UPLOAD_NAME = 80


def upload_name(name: Any) -> str:
    """The last part of an uploaded file name, printable and shortened; for messages and matching only.

    An uploaded name never becomes a path.

    >>> upload_name("../../x/take 1.wav")
    'take 1.wav'
    """
    text = str(name or "upload").replace("\\", "/")
    text = PurePosixPath(text).name or "upload"
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return text if len(text) <= _MAX_UPLOAD_NAME else text[: _MAX_UPLOAD_NAME - 1] + "…"


def _format_names(suffixes: Sequence[str]) -> str:
    """``(".wav", ".flac", ".ogg")`` -> ``"WAV, FLAC or OGG"``."""
    names = [s.lstrip(".").upper() for s in suffixes]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


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
    if name is not None and suffixes is not None and PurePosixPath(shown).suffix.lower() not in suffixes:
        raise AudioError(f"{shown} is not a {formats} recording. Export it in one of those formats.")
    try:
        return _audio.Recording(_audio.load_audio(bytes(content)), SAMPLE_RATE)
    except AudioError as err:
        raise AudioError(f"{shown}: {err}") from None
