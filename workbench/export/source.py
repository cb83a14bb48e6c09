"""What an export starts from: one speaker's Submodel, read as untrusted and loaded onto its base model.

``SOURCE`` on the command line is one of

- a **speaker folder**: its personal model, chosen as ``transcribe``, ``evaluate`` and the
  app choose it (:func:`workbench.workflow.personal.personal_submodel`);
- a **Submodel file** (``.safetensors`` from ``workbench personalize``);
- a **bank** (``workbench train-bank``) together with ``--speaker ID``.

The file's metadata is untrusted: :func:`workbench.adapters.io.read_submodel` checks its
types, :func:`workbench.adapters.io.check_base` refuses another base model and
:func:`workbench.adapters.adapted.fitting_config` checks the settings against the stored
weights before anything is built. A bank is cut down to the chosen speaker's row, so every
later step sees a one-speaker adapter.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.errors import WorkbenchError
from workbench.errors import ExportError

if TYPE_CHECKING:
    from workbench.adapters import Adapted
    from workbench.models import ASRBackend

__all__ = ["ExportSource", "base_kind", "load_adapted", "resolve_source"]

#: Base models an export knows how to write, by kind: the named Whisper models (``hf``, ``ct2``,
#: ``ggml``) and the built-in CTC model with its sizes (``onnx``).
WHISPER, BUILTIN = "whisper", "built-in"


@dataclasses.dataclass(frozen=True)
class ExportSource:
    """One speaker's Submodel, found and read (not yet loaded onto a model).

    Attributes:
        path: the Submodel (or bank) file.
        speaker_id: the speaker's id as stored in the file (no name is ever stored).
        row: the speaker's row in the file (0 for a one-speaker file).
        meta: the checked metadata (:func:`workbench.adapters.io.read_submodel`).
        tensors: the file's adapter weights, every row.
        chosen: how the file was found, in words ("the personal model of ...: <reason>").
    """

    path: Path
    speaker_id: str
    row: int
    meta: dict[str, Any]
    tensors: dict[str, Any]
    chosen: str

    @property
    def family(self) -> str:
        return str(self.meta["family"])

    @property
    def base_model(self) -> str:
        return str(self.meta["base_model"])

    @property
    def window(self) -> str:
        """The Whisper encoding window it was trained on: ``"auto"`` (the audio + 1 s) or ``"full"`` (30 s)."""
        return str(self.meta.get("window", "auto"))


def base_kind(name: str) -> str | None:
    """``"whisper"`` for the named Whisper models, ``"built-in"`` for the built-in model (any size), else None.

    >>> base_kind("whisper-tiny.en"), base_kind("workbench-tiny-small"), base_kind("facebook/wav2vec2-base")
    ('whisper', 'built-in', None)
    """
    from workbench.models.whisper.weights import is_whisper_name

    if name in ("tiny", "workbench-tiny") or name.startswith("workbench-tiny-"):
        return BUILTIN
    if is_whisper_name(name):
        return WHISPER
    return None


def resolve_source(source: str | Path, *, speaker: str | None = None) -> ExportSource:
    """Find the Submodel that ``source`` names, and the speaker's row in it.

    Raises:
        ExportError: no such file or folder, a folder with no personal model, a bank without
            ``speaker`` or without that speaker, another speaker's file.
        AdapterError: a damaged or crafted Submodel file (the message names the field).
    """
    from workbench.adapters.io import read_submodel

    path = Path(source)
    chosen = f"the Submodel file {path.name}"
    if path.is_dir():
        path, chosen, folder_speaker = _personal_file(path)
        if speaker is not None and speaker != folder_speaker:
            raise ExportError(f"{Path(source).name} is speaker {folder_speaker!r}'s folder, not {speaker!r}'s: leave out "
                              "--speaker, or give that speaker's folder")
        speaker = folder_speaker
    elif not path.exists():
        raise ExportError(f"there is no speaker folder or Submodel file at {path}: check the path (a speaker "
                          "folder holds speaker.json; a Submodel file ends in .safetensors)")
    tensors, meta = read_submodel(path)
    ids = list(meta["speaker_ids"])
    if len(ids) > 1:
        if speaker is None:
            shown = ", ".join(ids[:8]) + (f" and {len(ids) - 8} more" if len(ids) > 8 else "")
            raise ExportError(f"{path.name} is a bank of {len(ids)} speakers ({shown}); an export holds one "
                              "speaker's model: choose whose with --speaker ID")
        if speaker not in ids:
            raise ExportError(f"{path.name} holds no speaker {speaker!r} (it holds {len(ids)} speakers, e.g. "
                              f"{', '.join(ids[:5])}); check the id with 'workbench evaluate' or the app's Speakers "
                              "page")
        row = ids.index(speaker)
        chosen = f"speaker {speaker!r}'s row of the bank {path.name}" if chosen.startswith("the Submodel") else chosen
    else:
        if speaker is not None and speaker != ids[0]:
            raise ExportError(f"{path.name} is speaker {ids[0]!r}'s personal model, not {speaker!r}'s: leave out "
                              "--speaker, or choose that speaker's file")
        row = 0
    return ExportSource(path, ids[row], row, meta, tensors, chosen)


def _personal_file(folder: Path) -> tuple[Path, str, str]:
    """The personal model of a speaker folder: ``(file, how it was chosen, speaker id)``."""
    from workbench.workflow.personal import _speaker_id, personal_submodel

    if not (folder / "speaker.json").is_file():
        raise ExportError(f"{folder} is a folder but not a speaker folder (it has no speaker.json); give a speaker "
                          "folder, a Submodel file (.safetensors) or a bank with --speaker ID")
    sid = _speaker_id(folder)
    personal = personal_submodel(folder)
    if personal is None:
        raise ExportError(f"speaker {sid!r} has no personal model to export yet: no run in its submodels folder "
                          "beat the base model on the test phrases. Train one with 'workbench personalize "
                          f"{folder}', or export a chosen file with 'workbench export {folder}/submodels/<file>'")
    return personal.path, f"the personal model of {sid!r}: {personal.path.name} ({personal.reason})", sid


def load_adapted(src: ExportSource, *, model: str | None = None, backend: ASRBackend | None = None) -> tuple[Adapted, str]:
    """Load the Submodel's base model and inject the speaker's adapter (one row).

    Args:
        src: from :func:`resolve_source`.
        model: a base model to load instead of the one the file names (a local folder,
            say); the file is refused unless it was trained on exactly that model.
        backend: an already loaded base model to use (the app, tests); refused likewise
            unless the file was trained on it. Its adapters are removed after the export.

    Returns:
        ``(adapted, kind)`` with kind ``"whisper"`` or ``"built-in"``.

    Raises:
        ExportError: the base model is not one an export can write, or is not installed.
        AdapterError: the file was trained on another base model, or its settings do not fit
            its weights.
    """
    from workbench.adapters import inject
    from workbench.adapters.adapted import fitting_config
    from workbench.adapters.io import check_base
    from workbench.models import load_base_model
    from workbench.models.tiny import TinyBackend
    from workbench.models.whisper.backend import WhisperBackend

    name = model or src.base_model
    if backend is None and model is None and base_kind(name) is None:
        raise ExportError(f"{src.path.name} was trained on base model {name[:80]!r}, which export does not know by "
                          "name: exports are made from Whisper tiny.en / base or the built-in model. If you have "
                          "that model in a local folder, give it with --model FOLDER")
    if backend is None:
        try:
            backend = load_base_model(name, offline=model is None)  # a name read from a file never downloads
        except WorkbenchError as err:
            raise ExportError(f"the base model {name[:80]!r} that {src.path.name} needs cannot be loaded: {err}") \
                from None
    if isinstance(backend, WhisperBackend):
        kind = WHISPER
    elif isinstance(backend, TinyBackend):
        kind = BUILTIN
    else:
        raise ExportError(f"{name[:80]!r} is a {type(backend).__name__}; exports are made from Whisper models "
                          "(hf, ct2, ggml) and the built-in model (onnx)")
    check_base(src.meta, base_model=backend.name, base_fingerprint=backend.fingerprint(),
               what=f"{src.path.name}")
    config = fitting_config(backend, src.meta, src.tensors, src.path.name)
    adapted = inject(backend, config.replace(num_speakers=1))
    adapted.window = src.window  # decoded on the window it was trained on, as load_submodel does
    per = adapted.per_speaker_keys()
    try:
        adapted.load_state_dict({k: (v[src.row: src.row + 1] if k in per else v) for k, v in src.tensors.items()})
    except WorkbenchError:
        adapted.remove()
        raise
    adapted.eval()
    return adapted, kind
