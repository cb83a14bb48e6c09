"""The speaker folder on disk: its files, the lock that keeps writers apart, and reading them back.

:class:`SpeakerFolder` is the storage half of :class:`~workbench.corpus.SpeakerCorpus`
(which adds the takes): making and opening a folder, the layout, the re-entrant ``fcntl`` lock, the manifest scan
(damaged lines skipped and reported, missing audio derived), the durable append,
``speaker.json`` (consent) and ``prompts.txt``. Every failed write is a plain
:class:`~workbench.errors.CorpusError` that leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Self

from workbench._atomic import (
    disk_error_message,
    fsync_dir,
    is_temp_name,
    open_private,
    write_bytes_atomic,
)
from workbench.corpus.records import (
    MISSING,
    Utterance,
    _check_prompts,
    _json_problem,
    _latest,
    _name_problem,
    _now,
    _one_line,
    _reject_constant,
    _validate_name,
    validate_speaker_id,
)
from workbench.errors import CorpusError
from workbench.notices import notify
from workbench.text import normalize_text, prompt_key

try:  # POSIX only; elsewhere a single app session per folder is assumed
    import fcntl as _fcntl
except ImportError:  # pragma: no cover - Windows
    _fcntl = None  # type: ignore[assignment]

__all__ = ["SpeakerFolder"]

_MANIFEST = "manifest.jsonl"
_SPEAKER_JSON = "speaker.json"
_PROMPTS = "prompts.txt"
_AUDIO_DIR = "audio"
_LOCK = ".lock"
_OWN_FILES = frozenset({_MANIFEST, _SPEAKER_JSON, _PROMPTS, _AUDIO_DIR, _LOCK})


def _disk_error(err: OSError, where: Path, what: str) -> CorpusError:
    """A plain CorpusError for a failed write: what failed, why, and what to do."""
    return CorpusError(f"{disk_error_message(err, where)} {what}")


def _json_bytes(obj: Any) -> bytes:
    return (
        json.dumps(obj, ensure_ascii=False, indent=2, allow_nan=False) + "\n"
    ).encode("utf-8")


_MAKE_ONE = ("make one: in the app (workbench serve, Speakers page), with "
             "'workbench record FOLDER --create --consent ID', or in Python with SpeakerCorpus.create(parent, speaker_id).")


class SpeakerFolder:
    """The files of one speaker folder and their lock; see :class:`~workbench.corpus.SpeakerCorpus`.

    Attributes:
        root: the speaker folder itself.
        speaker_id: the de-identified id (from ``speaker.json``).
    """

    root: Path
    speaker_id: str

    def __init__(self, root: Path, info: dict[str, Any]) -> None:
        self.root = Path(root)
        self.speaker_id = info["speaker_id"]
        self._problems: list[str] = []
        self._thread_lock = threading.RLock()
        self._lock_depth = 0
        self._lock_fd: int | None = None
        self._lock_write = False

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
    ) -> Self:
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
                os.close(open_private(root / _MANIFEST, os.O_WRONLY | os.O_CREAT))  # private, as every file here
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
    def open(cls, path: str | os.PathLike) -> Self:
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
            notify(
                f"Speaker folder '{root}' holds speaker {info['speaker_id']!r}; the folder name differs. "
                "The id in speaker.json is used.",
                stacklevel=2,
            )
        corpus = cls(root, info)
        removed = corpus._remove_temp_files()
        if removed:
            notify(
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
            notify(
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
                    fd: int | None = open_private(self.root / _LOCK, flags)
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
        fd = open_private(path, os.O_RDWR | os.O_APPEND | os.O_CREAT)
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
        """The prompt list (``prompts.txt``; blank lines and prompts without words left out).

        A line that is the same prompt as an earlier one (:func:`~workbench.text.prompt_key`:
        ``"Now locked"`` and ``"now locked."``) is left out too, so every page counts the
        same sentences and a take of either spelling records that one sentence.
        """
        seen: set[str] = set()
        out = []
        for _, p in self._prompt_lines():
            key = prompt_key(p)
            if normalize_text(p) and key not in seen:
                seen.add(key)
                out.append(p)
        return out

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

    def problems(self) -> list[str]:
        """Plain-language list of what was skipped or is out of place, with line numbers.

        Damaged manifest lines (cut off by a crash, garbage bytes, wrong types),
        takes whose audio file is missing, and audio files with no manifest line.
        Empty when all is well.
        """
        self._read()
        return list(self._problems)


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
