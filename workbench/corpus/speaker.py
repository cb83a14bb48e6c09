"""A speaker's recordings: :class:`SpeakerCorpus`, the speaker folder with its takes.

Layout of ``<parent>/<speaker_id>/`` and the crash-safety rules: see :mod:`workbench.corpus`.
Making and opening a folder, its files and the lock are
:class:`~workbench.corpus.folder.SpeakerFolder`; this module adds saving a take (the
one quality check, whose decision the returned :class:`~workbench.corpus.Utterance`
carries), listing, status changes, the train/test split, the dashboard counts and
the zip export.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
import secrets
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from workbench import audio as _audio
from workbench._atomic import atomic_file, write_bytes_atomic
from workbench.constants import SAMPLE_RATE
from workbench.corpus.folder import (
    _AUDIO_DIR,
    _SPEAKER_JSON,
    SpeakerFolder,
    _disk_error,
    _read_info,
)
from workbench.corpus.records import (
    MISSING,
    STATUSES,
    Utterance,
    _json_problem,
    _latest,
    _one_line,
    _text_problem,
    _validate_name,
    split_by_prompt,
)
from workbench.defaults import RUN_DEFAULTS
from workbench.errors import AudioError, CorpusError
from workbench.notices import notify
from workbench.text import prompt_key

if TYPE_CHECKING:
    from workbench.corpus.importing import ImportReport

__all__ = ["SpeakerCorpus", "list_speakers"]

_FATAL_CODES = frozenset({"empty", "not_audio", "bad_shape", "nonfinite"})


class SpeakerCorpus(SpeakerFolder):
    """A speaker folder: recordings, prompts, consent and the manifest.

    Use :meth:`create` or :meth:`open`, not the constructor. Reads always go to
    disk, so two sessions on one folder see each other's takes; writes hold a
    lock file so their lines never interleave.

    Attributes:
        root: the speaker folder itself.
        speaker_id: the de-identified id (from ``speaker.json``).
        last_import: the :class:`~workbench.corpus.ImportReport` of the last
            :func:`~workbench.corpus.import_folder` or :func:`~workbench.corpus.import_files`
            into this object, else None.
    """

    def __init__(self, root: Path, info: dict[str, Any]) -> None:
        super().__init__(root, info)
        self.last_import: ImportReport | None = None

    def __repr__(self) -> str:
        return f"SpeakerCorpus({str(self.root)!r})"

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
        return _audio.load_audio(path, max_s=None)

    # -- views -------------------------------------------------------------- #

    def split(
        self, *, test_fraction: float = RUN_DEFAULTS.test_fraction, seed: int = RUN_DEFAULTS.seed
    ) -> tuple[list[Utterance], list[Utterance]]:
        """Deterministic train/test split of the ``"ok"`` takes, by prompt (the test side of
        :func:`~workbench.workflow.three_way_split`, with the same defaults).

        All takes of one prompt (compared ignoring case, punctuation and spacing)
        land on the same side, so no test sentence is seen in training. Prompts
        are ranked by a hash of ``(seed, prompt text)``, not by recording order,
        and the ``round(test_fraction * n_prompts)`` lowest go to test; with two
        or more prompts and ``test_fraction > 0`` at least one prompt is on each side.

        Returns:
            ``(train, test)``, each in recording order.
        """
        return split_by_prompt(self.utterances("ok"), fraction=test_fraction, seed=seed)

    def usable_problem(self) -> str | None:
        """Why no take of this speaker can be trained or measured on, in plain words; None when one can.

        Every take rejected says so, with the quality check's most frequent findings (one
        example message each), so a person knows what to change before recording again.
        """
        utts = self.utterances(None)
        if any(u.status == "ok" for u in utts):
            return None
        sid = self.speaker_id
        if not utts:
            return f"{sid} has no recordings yet. Record the sentences (or upload recordings) first."
        found: dict[str, list] = {}  # problem code -> [count, one message]
        set_aside = 0
        for u in utts:
            if u.status != "rejected":
                continue
            errors = [p for p in u.quality_report.problems if p.severity == "error"]
            if not errors:
                set_aside += 1  # a good take set aside by "Record again" or replaced
            for p in errors:
                found.setdefault(p.code, [0, p.message])[0] += 1
        why = [f"{n} take{'s' if n != 1 else ''}: {message}" for n, message in
               sorted(found.values(), key=lambda x: -x[0])[:3]]
        if set_aside:
            why.append(f"{set_aside} set aside with Record again")
        others = len(utts) - sum(u.status == "rejected" for u in utts)
        if others:
            why.append(f"{others} skipped or missing")
        return (f"None of the {len(utts)} takes of {sid} can be used: every one was rejected or set aside "
                f"({'; '.join(why)}). Fix what the quality check found, then record the sentences again.")

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
        recorded = {prompt_key(u.prompt) for u in ok}
        prompt_keys = {prompt_key(p) for p in self.prompts()}
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

    # -- export (imports: workbench.corpus.import_folder / import_files) ------ #

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
        with atomic_file(dest, "wb") as fh, self._locked(write=False), zipfile.ZipFile(fh, "w") as zf:
            for path in sorted(self.root.rglob("*")):
                rel = path.relative_to(self.root)
                if not path.is_file() or any(part.startswith(".") for part in rel.parts):
                    continue
                stored = path.suffix.lower() in (".flac", ".ogg")  # already compressed
                zf.write(path, f"{self.speaker_id}/{rel.as_posix()}",
                         compress_type=zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED)


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
                notify(f"Skipped speaker folder '{child}': {exc}", stacklevel=2)
    return out
