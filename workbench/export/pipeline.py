"""One export, start to finish: find the Submodel, load it, merge, check, write, rename.

>>> from workbench.export import export_model                                        # doctest: +SKIP
>>> export_model("speakers/anna-01", "ct2", "anna-01-ct2").path                       # doctest: +SKIP
PosixPath('anna-01-ct2')
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from workbench.errors import ExportError
from workbench.export.formats import EXPORT_EXTRA, FORMATS
from workbench.export.merge import Verification, check_family
from workbench.export.source import base_kind, load_adapted, resolve_source

if TYPE_CHECKING:
    from workbench.models import ASRBackend

__all__ = ["QUANTIZATIONS", "ExportResult", "export_model", "window_note"]

#: format -> the weight types it can be written in (the first is the default)
QUANTIZATIONS: dict[str, tuple[str, ...]] = {
    "ct2": ("float32", "int8", "float16"),  # the first: the default (the personal model's words)
    "ggml": ("float16",),  # whisper.cpp aborts on a float32 file (see workbench.export.ggml.FLOAT32_REFUSED)
    "hf": ("float32",),
    "onnx": ("float32",),
}
_BYTES = {"int8": 1, "float16": 2, "float32": 4}
_ENGINES = {"ct2": ("ctranslate2", "transformers"), "hf": ("transformers",), "ggml": ("transformers", "librosa"),
            "onnx": ("onnx", "onnxruntime")}


@dataclasses.dataclass(frozen=True)
class ExportResult:
    """A finished export.

    Attributes:
        path: the export folder (complete).
        format: ``"hf"``, ``"ct2"``, ``"ggml"`` or ``"onnx"``.
        quantization: the weight type written.
        speaker_id: the speaker id as stored in the Submodel.
        submodel: the Submodel file it was made from.
        family: the adapter family.
        verification: the merged-vs-adapted check.
        files: file name -> what it holds.
        seconds: wall time of the export.
        notes: what the user should know about this export, in words (also given as notices).
    """

    path: Path
    format: str
    quantization: str
    speaker_id: str
    submodel: Path
    family: str
    verification: Verification
    files: dict[str, str]
    seconds: float
    notes: tuple[str, ...] = ()

    def summary(self) -> str:
        return (f"Exported the personal model of speaker {self.speaker_id} ({self.family}, from {self.submodel.name}) "
                f"for {FORMATS[self.format]} ({self.quantization}) to {self.path} in {self.seconds:.0f} s.\n"
                f"Check: {self.verification.describe()}.\nModel card with the decoding settings: "
                f"{self.path / 'README.md'}")


def _writer(fmt: str) -> Callable:
    if fmt == "hf":
        from workbench.export.hf import write_hf as writer
    elif fmt == "ct2":
        from workbench.export.ct2 import write_ct2 as writer
    elif fmt == "ggml":
        from workbench.export.ggml import write_ggml as writer
    else:
        from workbench.export.onnx import write_onnx as writer
    return writer


def window_note(fmt: str, window: str) -> str | None:
    """What to tell the user when the engine of ``fmt`` does not encode what the model learned.

    faster-whisper and transformers always encode Whisper's 30 s window; a personal model trained on
    the workbench's short window (``"auto"``) therefore says other words there on some recordings.
    whisper.cpp can encode a short window (``audio_ctx``) but wrote other words on 11 of 20 test
    phrases of the benchmark speaker (docs/benchmarks.md). None when there is nothing to say (a
    ``"full"`` model, or a format of the built-in model).
    """
    if window != "auto" or fmt not in ("ct2", "hf", "ggml"):
        return None
    if fmt == "ggml":
        return ("this personal model was trained on the workbench's short window (the recording + 1 s). whisper.cpp "
                "can encode that window (audio_ctx, as the model card shows) but still wrote other words than the "
                "workbench on about half of the benchmark's test phrases. For an export that matches in whisper.cpp, "
                "train the speaker with 'workbench personalize SPEAKER_DIR --window full' and export that personal "
                "model.")
    engine = {"ct2": "faster-whisper", "hf": "transformers"}[fmt]
    head = (f"this personal model was trained on the workbench's short window (the recording + 1 s), but {engine} "
            "always encodes Whisper's 30 s window, so its transcripts will differ from the workbench's on some "
            "recordings.")
    if fmt == "ct2":
        return (head + " The model card's CTranslate2 recipe encodes the window the model was trained on and "
                "writes what the workbench writes: use it where the words must be the same. For an export that "
                "matches in faster-whisper itself, train the speaker with 'workbench personalize SPEAKER_DIR "
                "--window full', export that personal model and run it with the card's faster-whisper recipe.")
    return (head + " For an export that matches in transformers, train the speaker with 'workbench personalize "
            "SPEAKER_DIR --window full' and export that personal model.")


def _check_engines(fmt: str) -> None:
    from workbench._optional import has_module
    from workbench.errors import MissingDependencyError

    missing = [m for m in _ENGINES[fmt] if not has_module(m)]
    if missing:
        raise MissingDependencyError(f"exporting for {FORMATS[fmt]} needs {', '.join(missing)}, which "
                                     f"{'is' if len(missing) == 1 else 'are'} not installed. Install with: {EXPORT_EXTRA}")


def export_model(source: str | Path, fmt: str, out: str | Path, *, speaker: str | None = None,
                 quantization: str | None = None, force: bool = False, model: str | None = None,
                 backend: ASRBackend | None = None) -> ExportResult:
    """Export one speaker's personal model for another engine.

    Args:
        source: a speaker folder (its personal model), a Submodel file, or a bank (with ``speaker``).
        fmt: ``"hf"`` (transformers), ``"ct2"`` (faster-whisper), ``"ggml"`` (whisper.cpp) or
            ``"onnx"`` (ONNX Runtime; the built-in model).
        out: the folder to create; it appears complete or not at all.
        speaker: the speaker id, for a bank (or to check whose file it is).
        quantization: the weight type (:data:`QUANTIZATIONS`; default the first listed).
        force: replace an existing ``out`` (only once the new export is complete).
        model: load this base model instead of the one the file names (a local folder).
        backend: an already loaded base model to use instead of loading one (the file must
            have been trained on it).

    Raises:
        ExportError, AdapterError, MissingDependencyError: with a plain message; nothing is
            written and an existing ``out`` is untouched.
    """
    from workbench._atomic import write_bytes_atomic
    from workbench.export.card import model_card
    from workbench.export.output import check_target, staged_folder

    t0 = time.perf_counter()
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; choose one of: " +
                          ", ".join(f"{k} ({v})" for k, v in FORMATS.items()))
    allowed = QUANTIZATIONS[fmt]
    quantization = quantization or allowed[0]
    if fmt == "ggml" and quantization == "float32":
        from workbench.export.ggml import FLOAT32_REFUSED

        raise ExportError(FLOAT32_REFUSED)
    if quantization not in allowed:
        raise ExportError(f"--quantization {quantization} is not available for {fmt}; choose "
                          f"{' or '.join(allowed)}")
    out = check_target(out, force=force)
    src = resolve_source(source, speaker=speaker)
    kind = None if backend is not None else base_kind(model or src.base_model)
    if kind is not None:
        check_family(src.family, fmt, kind)  # before the model is loaded: a refusal costs nothing
    _check_engines(fmt)
    adapted, kind = load_adapted(src, model=model, backend=backend)
    try:
        check_family(src.family, fmt, kind)
        need = adapted.backend.num_parameters() * (_BYTES[quantization] + (4 if fmt == "ct2" else 0))  # ct2: + scratch
        with staged_folder(out, force=force, need_bytes=need) as tmp:
            files, details, verification = _writer(fmt)(adapted, tmp, quantization)
            files = {"README.md": "this model card", **files}
            card = model_card(fmt=fmt, kind=kind, speaker_id=src.speaker_id, meta=src.meta, chosen=src.chosen,
                              details=details, files=[f"`{k}`: {v}" for k, v in files.items()],
                              verification=verification.describe(), folder=out.name,
                              prompt=list(getattr(adapted.backend, "prompt_ids", []) or []))
            write_bytes_atomic(tmp / "README.md", card.encode("utf-8"))
    finally:
        adapted.remove()
    note = window_note(fmt, src.window) if kind == "whisper" else None
    if note:
        from workbench.notices import notify

        notify(note, stacklevel=2)
    return ExportResult(out, fmt, quantization, src.speaker_id, src.path, src.family, verification, files,
                        time.perf_counter() - t0, (note,) if note else ())
