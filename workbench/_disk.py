"""Room on the disk for a personalization's results: checked before training, and a way out when the save fails.

A run writes a Submodel file (the adapter weights plus JSON metadata), an HTML report with its
figures and a CSV, and, when the trainer keeps checkpoints, a checkpoint (weights plus the
optimizer's two moments). :func:`run_output_bytes` estimates that from the adapter itself;
:func:`check_room` refuses to start training when a folder's disk has less than twice that
free (issue 24: a write test of a few KB passed with a few hundred KB free, the run trained,
then died at the save).

When the disk fills up during the run anyway, :func:`save_or_keep` writes the trained
Submodel somewhere else (the system's temporary folder, then the home folder) and says where
it is and how to finish; :func:`report_disk_errors` words a failed report write. Neither
lets an ``OSError`` traceback through.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from workbench._atomic import disk_error_message, disk_reason
from workbench.errors import TrainingError

__all__ = ["check_room", "check_room_for_run", "free_bytes", "report_disk_errors", "run_output_bytes", "save_or_keep"]

_METADATA_BYTES = 64 << 10  # a Submodel's JSON metadata: settings, the training take ids, metrics
_REPORT_BYTES = 512 << 10  # an HTML report: page, two embedded PNG figures (~130 KB measured), tables
_PER_UTTERANCE_BYTES = 4 << 10  # each test phrase: two aligned rows in the HTML (twice), one CSV row
_MARGIN = 2  # free space asked for, as a multiple of the estimate (file-system overhead, other writers)


def _existing(folder: Path) -> Path:
    """``folder`` or its nearest existing parent (a folder that is made at save time)."""
    folder = Path(folder).absolute()
    while not folder.exists() and folder.parent != folder:
        folder = folder.parent
    return folder


def free_bytes(folder: str | os.PathLike) -> int | None:
    """Bytes this user may still write on the disk holding ``folder`` (None: cannot tell)."""
    try:
        return shutil.disk_usage(_existing(Path(folder))).free
    except OSError:
        return None


def run_output_bytes(adapted: Any, *, held_out: int, checkpoint: bool = False) -> dict[str, int]:
    """Estimated bytes of one run's files: ``{"submodel": ..., "report": ..., "checkpoint": ...}``.

    Args:
        adapted: the :class:`~workbench.adapters.Adapted` being trained (its trainable weights are
            what the Submodel stores).
        held_out: the number of test phrases (rows of the report and the CSV).
        checkpoint: whether the trainer writes checkpoints (weights + two Adam moments).
    """
    weights = sum(p.numel() * p.element_size() for p in adapted.trainable_parameters())
    return {"submodel": weights + _METADATA_BYTES,
            "report": _REPORT_BYTES + _PER_UTTERANCE_BYTES * int(held_out),
            "checkpoint": 3 * weights + _METADATA_BYTES if checkpoint else 0}


def _mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


def check_room(needs: dict[Path, int], *, what: str = "Nothing was trained.") -> None:
    """Raise a plain :class:`TrainingError` if a folder's disk has less than twice what will be written there.

    Args:
        needs: folder -> bytes that will be written into it; folders on one disk are added up.
        what: the sentence the message ends with.
    """
    per_disk: dict[int, tuple[Path, int]] = {}
    for folder, n in needs.items():
        try:
            dev = os.stat(_existing(Path(folder))).st_dev
        except OSError:
            continue  # the writability check before this one names what is wrong with the folder
        first, total = per_disk.get(dev, (Path(folder), 0))
        per_disk[dev] = (first, total + int(n))
    for folder, total in per_disk.values():
        free, needed = free_bytes(folder), _MARGIN * total
        if free is not None and free < needed:
            raise TrainingError(
                f"There is not enough room to save this personalization: the disk holding '{folder}' has "
                f"{_mb(free)} free, and the personal model and its report need about {_mb(total)} (with room to "
                f"spare: {_mb(needed)}). Free some space (or move the speaker folder to a disk with room) and "
                f"try again. {what}")


def check_room_for_run(trainer: Any, *, held_out: int, submodel_dir: Path, report_dir: Path | None) -> None:
    """:func:`check_room` for a prepared :class:`~workbench.trainer.Trainer` run (before ``fit``).

    ``report_dir`` None: the run writes no report (a bank: :func:`workbench.workflow.train_bank`).
    """
    sizes = run_output_bytes(trainer.adapted, held_out=held_out,
                             checkpoint=bool(trainer.checkpoint_dir and trainer.config.checkpoint_every))
    needs = {Path(submodel_dir): sizes["submodel"]}
    if report_dir is not None:
        needs[Path(report_dir)] = needs.get(Path(report_dir), 0) + sizes["report"]
    if sizes["checkpoint"]:
        needs[trainer.checkpoint_dir] = needs.get(trainer.checkpoint_dir, 0) + sizes["checkpoint"]
    check_room(needs)


def _keep_folders() -> list[Path]:
    """Where a Submodel that could not be saved is kept: a private folder in the system's temporary
    folder, then in the home folder (often another disk than a full USB stick or share)."""
    user = os.environ.get("USER") or str(os.getuid() if hasattr(os, "getuid") else "user")
    return [Path(tempfile.gettempdir()) / f"workbench-unsaved-{user}", Path.home() / "workbench-unsaved"]


def save_or_keep(save: Callable[[Path], Path], path: Path, *, speaker_dir: Path) -> Path:
    """``save(path)``; when the disk refuses it, ``save`` into another folder and raise a plain
    :class:`TrainingError` that says what happened, where the trained model is, and what to do.

    Args:
        save: writes the Submodel to the path it is given and returns it (e.g. ``Adapted.save``).
        path: where it belongs (the speaker's ``submodels/`` folder).
        speaker_dir: the speaker folder (named in the "what to do" sentence).
    """
    try:
        return save(path)
    except OSError as err:
        said = f"Could not save the personal model in '{path.parent}': {disk_reason(err)}."
    for folder in _keep_folders():
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            kept = save(folder / path.name)
        except OSError:
            continue
        raise TrainingError(
            f"{said} It was trained, and it was kept at '{kept}'. Once there is room, move that file into "
            f"'{path.parent}', then make its report with: workbench report '{speaker_dir}' --adapter '{path}'") \
            from None
    raise TrainingError(f"{said} It could not be kept anywhere else either; the recordings are safe. Free some space "
                        "(or move the speaker folder to a disk with room), then run the personalization again.") \
        from None


@contextlib.contextmanager
def report_disk_errors(report_dir: Path, *, submodel: Path, speaker_dir: Path) -> Iterator[None]:
    """Turn an ``OSError`` while the report is written into ``report_dir`` into a plain
    :class:`TrainingError` (the personal model is saved already: say so, and how to make the report later)."""
    try:
        yield
    except OSError as err:
        raise TrainingError(
            f"{disk_error_message(err, err.filename or report_dir)} The personal model itself was saved "
            f"('{submodel}'); only the report is missing. Once there is room, make it with: workbench report "
            f"'{speaker_dir}' --adapter '{submodel}'") from None
