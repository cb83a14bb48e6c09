"""Which Submodel is a speaker's personal model: the therapist's pick, else the newest run that helped.

A speaker folder may hold many runs (``submodels/*.safetensors``); some made things
worse ("No improvement"). The personal model every front end uses (``transcribe``,
``evaluate``, the app's "Try a phrase" and Speakers table) is, in this order:

1. the run the user picked (:func:`choose_personal_submodel`; stored in
   ``<speaker>/personal_model.json``), when that file is still there, inside
   ``submodels/``, this speaker's, and readable;
2. else the newest run (file time) whose metadata says it beat the base model on
   the test phrases (``metrics``: ``wer_after < wer_before``);
3. else none: the base model alone.

Submodel metadata is untrusted (anyone can edit it): missing, non-numeric, negative
or non-finite figures count as "did not beat", and a run is only chosen when its
file reads back cleanly (:func:`workbench.adapters.io.read_submodel`).

>>> personal_submodel("no/such/folder") is None
True
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
from pathlib import Path
from typing import Any

from workbench.errors import TrainingError, WorkbenchError

__all__ = ["PICK_FILE", "PersonalModel", "SubmodelRun", "choose_personal_submodel", "chosen_submodel",
           "personal_submodel", "run_advice", "submodel_runs"]

#: The file in a speaker folder that holds the user's pick: ``{"file": "<name>.safetensors", "chosen": "<date>"}``.
PICK_FILE = "personal_model.json"
_MAX_PICK_BYTES = 4096
#: Below this base-model word error rate (0..1) on the test phrases a personal model has little to win.
ALREADY_GOOD_WER = 0.05
#: Fewer training recordings than this: advise recording more. On the sample speakers the test-phrase
#: gains kept growing up to 40 training utterances (docs/results.md, "Data efficiency").
RECORD_MORE_BELOW = 40


@dataclasses.dataclass(frozen=True)
class PersonalModel:
    """The Submodel used as a speaker's personal model, the base model it needs, and why it was chosen.

    ``reason`` is plain language for a person, e.g. ``"the newest run that beat the base
    model (14.1 % -> 9.0 %)"`` or ``"chosen by you on 2026-12-06"``.
    """

    path: Path
    base_model: str  # the Submodel's own base model (its metadata's ``base_model``), e.g. "workbench-tiny"
    reason: str

    def describe(self) -> str:
        """One line for a person: ``"Personal model: lora-2026....safetensors (<reason>)"``."""
        return f"Personal model: {self.path.name} ({self.reason})"


@dataclasses.dataclass(frozen=True)
class SubmodelRun:
    """One Submodel file of a speaker, as its metadata describes it (figures None when unusable)."""

    path: Path
    base_model: str | None
    created: str | None  # as written in the file (ISO time), for display only
    wer_before: float | None  # word error rate on the test phrases, 0..1 (None: missing or garbage)
    wer_after: float | None
    problem: str | None = None  # why the file cannot be used, in words (None: it reads back)
    training: dict = dataclasses.field(default_factory=dict)  # the file's "training" metadata (untrusted)

    @property
    def beat_base(self) -> bool:
        """True when the file is usable and its figures show fewer word errors than the base model."""
        return (self.problem is None and self.wer_before is not None and self.wer_after is not None
                and self.wer_after < self.wer_before)

    def figures(self) -> str:
        """``"14.1 % -> 9.0 %"``, or ``"no figures"``."""
        if self.wer_before is None or self.wer_after is None:
            return "no figures"
        return f"{100 * self.wer_before:.1f} % -> {100 * self.wer_after:.1f} %"


def _speaker_id(root: Path) -> str:
    """The id in ``speaker.json`` (the folder name when that cannot be read)."""
    try:
        info = json.loads((root / "speaker.json").read_text(encoding="utf-8"))
        sid = info.get("speaker_id") if isinstance(info, dict) else None
    except (OSError, ValueError):
        sid = None
    return sid if isinstance(sid, str) and sid else root.name


def _rate(value: Any) -> float | None:
    """A word error rate from untrusted metadata: a finite number >= 0, else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) and 0.0 <= value <= 1e6 else None


def _speaker_metrics(metrics: Any, speaker_id: str) -> dict:
    """The before/after figures of ``speaker_id``: a one-speaker file's ``metrics`` or a bank's row."""
    if not isinstance(metrics, dict):
        return {}
    row = metrics.get(speaker_id)
    if isinstance(row, dict) and "wer_before" not in metrics:  # a bank: {speaker id: {...}}
        return row
    return metrics


def _read_run(path: Path, speaker_id: str) -> SubmodelRun:
    """Describe one Submodel file; a file that does not read back gets a ``problem``, never an exception."""
    from workbench.adapters.io import read_submodel

    try:
        _, meta = read_submodel(path)
    except (WorkbenchError, OSError) as err:
        return SubmodelRun(path, None, None, None, None, problem=str(err))
    ids = meta.get("speaker_ids") or []
    created = meta.get("created") if isinstance(meta.get("created"), str) else None
    if speaker_id not in ids and len(ids) != 1:
        return SubmodelRun(path, meta["base_model"], created, None, None,
                           problem=f"{path.name} is a bank that does not hold {speaker_id!r}")
    if speaker_id not in ids:
        return SubmodelRun(path, meta["base_model"], created, None, None,
                           problem=f"{path.name} is {ids[0]!r}'s adapter, not {speaker_id!r}'s")
    figures = _speaker_metrics(meta.get("metrics"), speaker_id)
    before, after = _rate(figures.get("wer_before")), _rate(figures.get("wer_after"))
    n = figures.get("held_out_utterances")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:  # no test phrases: the figures mean nothing
        before = after = None
    training = meta.get("training") if isinstance(meta.get("training"), dict) else {}
    return SubmodelRun(path, meta["base_model"], created, before, after, training=training)


def _files(root: Path) -> list[Path]:
    """``submodels/*.safetensors`` of a speaker folder, newest first (file time, then name)."""
    folder = root / "submodels"
    if not folder.is_dir():
        return []
    found = []
    for p in folder.glob("*.safetensors"):
        try:
            if p.is_file():
                found.append((p.stat().st_mtime, p.name, p))
        except OSError:  # vanished meanwhile
            continue
    return [p for *_, p in sorted(found, reverse=True)]


def submodel_runs(speaker_dir: str | Path) -> list[SubmodelRun]:
    """Every Submodel file in the speaker's ``submodels/`` folder, newest first (for a picker)."""
    root = Path(speaker_dir)
    sid = _speaker_id(root)
    return [_read_run(p, sid) for p in _files(root)]


def _inside_submodels(root: Path, name: Any) -> Path:
    """``root/submodels/name``, checked: a plain ``.safetensors`` file name inside that folder, present."""
    if not isinstance(name, str) or not name or name != Path(name).name or not name.endswith(".safetensors"):
        raise TrainingError(f"{str(name)[:80]!r} is not a Submodel file name (a name like lora-20261206-101500."
                            "safetensors in the speaker's submodels folder)")
    folder = (root / "submodels").resolve()
    path = folder / name
    if path.resolve().parent != folder:
        raise TrainingError(f"{name!r} points outside the speaker's submodels folder, so it cannot be used")
    if not path.is_file():
        raise TrainingError(f"{name} is no longer in the speaker's submodels folder")
    return root / "submodels" / name


def _read_pick(root: Path) -> tuple[str | None, str | None]:
    """``(file name, chosen date)`` from the pick file, or ``(None, None)``; garbage counts as no pick."""
    path = root / PICK_FILE
    try:
        if not path.is_file() or path.stat().st_size > _MAX_PICK_BYTES:
            return None, None
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None, None
    if not isinstance(data, dict) or not isinstance(data.get("file"), str):
        return None, None
    chosen = data.get("chosen")
    return data["file"], chosen if isinstance(chosen, str) else None


def chosen_submodel(speaker_dir: str | Path) -> str | None:
    """The file name the user chose as the personal model (as stored, not checked), or None: automatic."""
    return _read_pick(Path(speaker_dir))[0]


def _checked_pick(root: Path, name: str, speaker_id: str) -> SubmodelRun:
    """The picked file as a run, or :class:`TrainingError` saying why it cannot be used."""
    run = _read_run(_inside_submodels(root, name), speaker_id)
    if run.problem is not None:
        raise TrainingError(run.problem)
    return run


def personal_submodel(speaker_dir: str | Path) -> PersonalModel | None:
    """The speaker's personal model (see the module docstring), or None: use the base model alone."""
    root = Path(speaker_dir)
    if not root.is_dir():
        return None
    sid = _speaker_id(root)
    name, chosen = _read_pick(root)
    note = ""
    if name is not None:
        try:
            run = _checked_pick(root, name, sid)
        except TrainingError as err:
            note = f"; the run you chose cannot be used ({err})"
        else:
            when = f" on {chosen[:10]}" if chosen else ""
            return PersonalModel(run.path, str(run.base_model), f"chosen by you{when}; {run.figures()}")
    for path in _files(root):  # newest first; stop at the first that helped
        run = _read_run(path, sid)
        if run.beat_base:
            return PersonalModel(run.path, str(run.base_model),
                                 f"the newest run that beat the base model ({run.figures()}){note}")
    return None


def choose_personal_submodel(speaker_dir: str | Path, path_or_none: str | Path | None) -> PersonalModel | None:
    """Pin ``path_or_none`` (a file in the speaker's ``submodels/``, or its name) as the personal model,
    or, with None, go back to the automatic choice. Returns the personal model now in force.

    The pick is checked first (inside ``submodels/``, this speaker's, reads back cleanly) and
    written atomically; a refused pick changes nothing.

    Raises:
        TrainingError: the file cannot be used (the message says why); or the pick cannot be saved.
    """
    from workbench._atomic import atomic_file, disk_error_message, fsync_dir

    root = Path(speaker_dir)
    if not (root / "speaker.json").is_file():
        raise TrainingError(f"'{root}' is not a speaker folder (it has no speaker.json)")
    pick = root / PICK_FILE
    try:
        if path_or_none is None:
            if pick.exists():
                pick.unlink()
                fsync_dir(root)
            return personal_submodel(root)
        name = Path(path_or_none).name
        given = Path(path_or_none)
        if given.parent != Path(".") and given.resolve().parent != (root / "submodels").resolve():
            raise TrainingError(f"{given} is not in {root.name}'s submodels folder; choose one of that speaker's runs")
        _checked_pick(root, name, _speaker_id(root))
        record = {"file": name, "chosen": _dt.date.today().isoformat()}
        with atomic_file(pick, "w") as fh:
            json.dump(record, fh)
    except OSError as err:
        raise TrainingError(disk_error_message(err, pick)) from None
    chosen = personal_submodel(root)
    if chosen is None or chosen.path.name != name:  # pragma: no cover - only if the file vanished meanwhile
        raise TrainingError(f"{name} could not be kept as the personal model; choose it again")
    return chosen



def _whole(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def run_advice(wer_before: float, wer_after: float, training: dict | None = None) -> str | None:
    """What a therapist can do after a run that did not beat the base model, in plain words (None: it did).

    Args:
        wer_before, wer_after: word error rates (0..1) of the base and the personal model on the test phrases.
        training: the run's ``training`` metadata (``utterances``, ``minutes``, ``steps``,
            ``best_step``, ``stopped``); untrusted: unusable fields are left out of the advice.
    """
    if wer_after < wer_before:
        return None
    training = training if isinstance(training, dict) else {}
    parts = [f"No improvement: the personal model made {100 * wer_after:.1f} % word errors on the test phrases, "
             f"the base model {100 * wer_before:.1f} %."]
    if wer_before <= ALREADY_GOOD_WER:
        parts.append("The base model already understands this speaker well, so a personal model is not needed "
                     "for now.")
    else:
        utts, minutes = _whole(training.get("utterances")), _rate(training.get("minutes"))
        if utts is not None and utts < RECORD_MORE_BELOW:
            spoken = f" ({minutes:.1f} minutes)" if minutes is not None else ""
            parts.append(f"Record more: this run learned from {utts} recordings{spoken}; results usually keep "
                         f"improving up to about {RECORD_MORE_BELOW}. Record more sentences, then train again.")
        steps, best = _whole(training.get("steps")), _whole(training.get("best_step"))
        stopped = training.get("stopped")
        if steps and best == steps and stopped in ("time budget", "stopped by user", "max steps"):
            parts.append("Train longer: the model was still getting better at the last check when the run ended, "
                         "so give the next run more minutes.")
    parts.append("Do not use this run: it is not used as the personal model (Try a phrase and transcribing keep "
                 "the base model, or an earlier run that helped), unless you choose it yourself on the Results page.")
    return " ".join(parts)
