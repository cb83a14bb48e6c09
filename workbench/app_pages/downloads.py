"""Results page: the speaker's personal model as downloads for other engines, one zip each.

"for faster-whisper" (``ct2``), "for whisper.cpp" (``ggml``) and "for transformers" (``hf``)
for a Whisper personal model; "for ONNX Runtime" (``onnx``) for a built-in-model one. Each
button runs :func:`workbench.export.export_model` on the speaker's personal model (as
:func:`workbench.workflow.personal_submodel` chooses it) when it is clicked and sends a zip of
the folder, model card included. Zips are kept in the workbench cache
(``$WORKBENCH_CACHE/exports``), named by the Submodel file's hash, so a second click is
instant and a new personal model gets a new zip; the speaker folder itself is never written.
"""

from __future__ import annotations

import hashlib
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import panel as pn

from workbench.app_pages.common import AppContext, SessionState, esc, html_pane, message_html, open_speaker
from workbench.errors import WorkbenchError

__all__ = ["LABELS", "ExportDownloads", "downloads_for", "export_zip"]

#: format -> button label
LABELS = {"ct2": "for faster-whisper", "ggml": "for whisper.cpp", "hf": "for transformers", "onnx": "for ONNX Runtime"}
_FORMATS_BY_KIND = {"whisper": ("ct2", "ggml", "hf"), "built-in": ("onnx",)}
_STORED = (".bin", ".safetensors", ".onnx")  # weights: zip would spend seconds to save little


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:12]


def _zip_folder(folder: Path, target: Path) -> None:
    """Zip ``folder``'s files under its name, atomically (the zip is complete or absent)."""
    from workbench._atomic import atomic_file

    with atomic_file(target, "wb") as fh, zipfile.ZipFile(fh, "w") as zf:
        for path in sorted(folder.iterdir()):
            method = zipfile.ZIP_STORED if path.suffix in _STORED else zipfile.ZIP_DEFLATED
            zf.write(path, f"{folder.name}/{path.name}", compress_type=method)


def export_zip(speaker_dir: str | Path, fmt: str, *, cache: Path | None = None, **options: Any) -> Path:
    """A zip of the speaker's personal model exported as ``fmt``; made once per Submodel file.

    Args:
        speaker_dir: the speaker folder.
        fmt: ``"ct2"``, ``"ggml"``, ``"hf"`` or ``"onnx"``.
        cache: where zips are kept (default ``$WORKBENCH_CACHE/exports``).
        options: passed to :func:`workbench.export.export_model` (``backend``, ``quantization``).

    Raises:
        WorkbenchError: no personal model, a family that cannot go to ``fmt``, a full disk
            (plain messages from the export).
    """
    from workbench._atomic import disk_error_message
    from workbench.export import ExportError, export_model
    from workbench.export.source import resolve_source
    from workbench.constants import cache_dir

    src = resolve_source(speaker_dir)
    cache = Path(cache) if cache is not None else cache_dir() / "exports"
    name = f"{src.speaker_id}-{fmt}-{_digest(src.path)}"
    target = cache / f"{name}.zip"
    if target.is_file():
        return target
    try:
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".export-", dir=cache) as tmp:
            out = Path(tmp) / name
            export_model(speaker_dir, fmt, out, **options)
            _zip_folder(out, target)
    except OSError as err:
        raise ExportError(disk_error_message(err, target)) from None
    return target


def _window_advice(submodel: Path) -> str:
    """A sentence for a personal model trained on the short window (what faster-whisper/transformers change)."""
    from workbench.adapters.io import read_submodel

    try:
        window = read_submodel(submodel)[1]["window"]
    except WorkbenchError:
        return ""
    if window != "auto":
        return (" It was trained on Whisper's 30 s window: faster-whisper, whisper.cpp and transformers, run with "
                "the settings in the zip's README, write what the workbench writes (checked on a sample speaker, "
                "docs/benchmarks.md).")
    return (" It was trained on the workbench's short window (the recording + 1 s): only the README's CTranslate2 "
            "recipe hears it exactly as the workbench does. faster-whisper, whisper.cpp and transformers will write "
            "other words on some recordings (about half of a sample speaker's test phrases). For a model meant for "
            "those programs, train it with Whisper's full window: workbench personalize SPEAKER_DIR --window full.")


class ExportDownloads(pn.viewable.Viewer):
    """The download buttons of the open speaker's personal model (a block of the Results page)."""

    def __init__(self, ctx: AppContext, state: SessionState, **params: Any) -> None:
        super().__init__(**params)
        self.ctx, self.state = ctx, state
        self.root: Path | None = None
        self.header = html_pane("<h3>Take the personal model to another program</h3>")
        self.note = html_pane("", sizing_mode="stretch_width")
        self.message = html_pane("")
        self.buttons = {fmt: pn.widgets.FileDownload(label=f"Download {label} (zip)", callback=self._callback(fmt),
                                                     filename=f"{fmt}.zip", visible=False, width=300)
                        for fmt, label in LABELS.items()}
        state.param.watch(lambda _: self.refresh(), "speaker_id")
        self.refresh()

    def _callback(self, fmt: str):
        def make() -> str | None:
            return self.download(fmt)

        return make

    def refresh(self) -> None:
        """Show the buttons that fit the open speaker's personal model, or say why there are none."""
        from workbench.export.source import base_kind
        from workbench.workflow import personal_submodel

        self.root = None
        self.message.object = ""
        for b in self.buttons.values():
            b.visible = False
        personal = None
        if self.state.speaker_id:
            try:
                self.root = open_speaker(self.ctx, self.state.speaker_id).root
                personal = personal_submodel(self.root)
            except WorkbenchError:
                self.root = None
        if personal is None:
            self.note.object = ("<p>When this speaker has a personal model that beats the base model, it can be "
                                "downloaded here for faster-whisper, whisper.cpp or transformers.</p>")
            return
        kind = base_kind(personal.base_model) or ""
        formats = _FORMATS_BY_KIND.get(kind, ())
        for fmt in formats:
            self.buttons[fmt].visible = True
            self.buttons[fmt].filename = f"{self.state.speaker_id}-{fmt}.zip"
        self.note.object = (f"<p>{esc(personal.describe())}. Each zip holds the model with the personal adapter "
                            "merged in and a README with the decoding settings to use. The first download takes "
                            f"up to a minute.{_window_advice(personal.path) if kind == 'whisper' else ''}</p>"
                            if formats else
                            f"<p>{esc(personal.describe())} is on a base model that cannot be exported.</p>")

    def download(self, fmt: str) -> str | None:
        """The zip's path for the browser, or None with the reason shown in the page."""
        from workbench.app_pages import common
        from workbench.workflow import personal_submodel

        if self.root is None:
            return None
        try:
            options: dict[str, Any] = {}
            if self.ctx.backend_factory is not common._default_backend_factory:  # tests, Python callers
                personal = personal_submodel(self.root)
                options["backend"] = self.ctx.backend_factory(personal.base_model) if personal else None
            path = export_zip(self.root, fmt, **options)
        except WorkbenchError as err:
            self.message.object = message_html(str(err), False)
            return None
        self.message.object = message_html(f"Prepared {path.name} ({path.stat().st_size / 1e6:.0f} MB).", True)
        return str(path)

    def __panel__(self) -> Any:
        return pn.Column(self.header, self.note, pn.Row(*self.buttons.values()), self.message,
                         sizing_mode="stretch_width")


def downloads_for(page: Any) -> ExportDownloads:
    """The page's download block, made once (the Results page's hook: ``downloads_for(self)``)."""
    block = page.__dict__.get("_export_downloads")
    if block is None:
        block = page.__dict__["_export_downloads"] = ExportDownloads(page.ctx, page.state)
    return block
