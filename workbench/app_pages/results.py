"""Results page: ASR word error rate before and after, per-recording alignments, downloads, "try a phrase".

A result is read back from the CSV that :func:`workbench.workflow.personalize_speaker`
wrote next to its HTML report, and re-scored with :func:`workbench.evaluate.compare`
(the same numbers and interval as the report). "Try a phrase" transcribes a new
recording with the base model and the speaker's newest personal model.
"""

from __future__ import annotations

import csv
import datetime as _dt
import logging
import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import panel as pn

from workbench.app_pages.common import (
    AppContext,
    SessionState,
    esc,
    html_pane,
    in_session,
    inside_data_dir,
    message_html,
    open_speaker,
)
from workbench.app_pages.recorder import PanelRecorder, recorder_available
from workbench.app_pages.upload_input import FileUpload
from workbench.corpus import SpeakerCorpus, load_one_upload
from workbench.errors import CorpusError, WorkbenchError

if TYPE_CHECKING:  # annotations only: torch loads when a phrase is first tried
    from workbench.adapters import Adapted

__all__ = ["PhraseTester", "ResultsPage", "load_comparison", "report_files"]

_log = logging.getLogger(__name__)
# report-<stamp>.csv (older runs) or report-<speaker id>-<stamp>.csv (report.report_stem)
_REPORT = re.compile(r"report-(?:[A-Za-z0-9][A-Za-z0-9_.-]*-)?(\d{8}-\d{6})\.csv")


def report_files(speaker_dir: Path) -> list[Path]:
    """The speaker's report CSVs (each with its HTML beside it), newest first."""
    folder = Path(speaker_dir) / "reports"
    if not folder.is_dir():
        return []
    found = [(m.group(1), p) for p in folder.iterdir() if (m := _REPORT.fullmatch(p.name)) and p.is_file()]
    return [p for _, p in sorted(found, key=lambda sp: (sp[0], sp[1].name), reverse=True)]


def _label(path: Path) -> str:
    m = _REPORT.fullmatch(path.name)
    try:
        when = _dt.datetime.strptime(m.group(1), "%Y%m%d-%H%M%S") if m else None
    except ValueError:
        when = None
    return when.strftime("%d %b %Y, %H:%M:%S") if when else path.stem


def load_comparison(csv_path: Path) -> Any:
    """A :class:`~workbench.evaluate.Comparison` rebuilt from a report CSV."""
    from workbench.evaluate import compare

    with Path(csv_path).open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise CorpusError(f"The report {csv_path.name} has no recordings in it.")
    try:
        return compare([r["reference"] for r in rows], [r["before"] for r in rows], [r["after"] for r in rows],
                       utt_ids=[r["utt_id"] for r in rows])
    except (KeyError, ValueError) as err:
        raise CorpusError(f"The report {csv_path.name} cannot be read ({err}).") from None


class PhraseTester:
    """Transcribe a phrase with the base model and the speaker's newest personal model (loaded once)."""

    def __init__(self, ctx: AppContext, corpus: SpeakerCorpus) -> None:
        self.ctx, self.corpus = ctx, corpus
        self._lock = threading.Lock()
        self._loaded: tuple[Path, Adapted] | None = None

    def newest_submodel(self) -> Path | None:
        files = sorted((self.corpus.root / "submodels").glob("*.safetensors"), key=lambda p: p.stat().st_mtime)
        return files[-1] if files else None

    def transcribe(self, wav: Any) -> dict[str, str]:
        """``{"base": text, "personal": text, "model": file name}`` for one ``(n,)`` 16 kHz recording."""
        from workbench.adapters import load_submodel
        from workbench.workflow import build_decoder

        with self._lock:
            path = self.newest_submodel()
            if path is None:
                raise WorkbenchError(f"{self.corpus.speaker_id} has no personal model yet: train one on the "
                                     "Personalize page first.")
            if self._loaded is None or self._loaded[0] != path:
                backend = self.ctx.backend_factory(self.ctx.default_model)
                adapted, _ = load_submodel(backend, path)
                self._loaded = (path, adapted)
            adapted = self._loaded[1]
            decoder = build_decoder(self.ctx.decoder, prompts=self.corpus.prompts())
            with adapted.disabled():
                base = adapted.transcribe([wav], decoder=decoder)[0]
            personal = adapted.transcribe([wav], decoder=decoder)[0]
        return {"base": base, "personal": personal, "model": path.name}


class ResultsPage(pn.viewable.Viewer):
    """Show a speaker's reports and try the personal model on a new phrase."""

    def __init__(self, ctx: AppContext, state: SessionState, **params: Any) -> None:
        super().__init__(**params)
        self.ctx, self.state = ctx, state
        self.corpus: SpeakerCorpus | None = None
        self.comparison: Any = None
        self.tester: PhraseTester | None = None
        self._newest: str | None = None  # the newest report when the list was last shown
        self.header = html_pane("")
        self.choose = pn.widgets.Select(name="Training run", options={}, width=320)
        self.summary = html_pane("", sizing_mode="stretch_width")
        self.chart = pn.pane.Matplotlib(None, dpi=96, tight=True, format="png", width=420, visible=False)
        self.table = html_pane("", sizing_mode="stretch_width")
        self.download_html = pn.widgets.FileDownload(label="Download the report (HTML)", button_type="primary",
                                                     visible=False, width=280)
        self.download_csv = pn.widgets.FileDownload(label="Download the table (CSV)", visible=False, width=280)
        self.try_answer = html_pane("")
        self.try_upload = FileUpload(accept=".wav,.flac,.ogg", multiple=False,
                                     label="Or upload a recording (WAV, FLAC or OGG)")
        self.recorder = PanelRecorder(max_seconds=20.0) if recorder_available() else None
        if self.recorder is not None:
            self.recorder.on_recording(lambda rec: self._try_in_thread(rec.audio))
        self.try_upload.on_files(self._on_try_upload)
        self.try_upload.on_refused(lambda text: setattr(self.try_answer, "object", message_html(text, False)))
        self.choose.param.watch(lambda _: self.show(), "value")
        state.param.watch(lambda _: self.load(), "speaker_id")
        self.load()

    def on_show(self) -> None:
        """Called when the page is opened: a run may have added a report meanwhile."""
        self.load()

    # ------------------------------------------------------------------ logic
    def load(self) -> None:
        """List the open speaker's reports and show the newest."""
        self.corpus = None
        if self.state.speaker_id:
            try:
                self.corpus = open_speaker(self.ctx, self.state.speaker_id)
            except WorkbenchError as err:
                self.header.object = "<h2>Results</h2>" + message_html(str(err), False)
        if self.corpus is None:
            if not self.state.speaker_id:
                self.header.object = "<h2>Results</h2><p>First choose a speaker on the <b>Speakers</b> page.</p>"
            self.choose.options = {}
            self._clear()
            return
        if self.tester is None or self.tester.corpus.root != self.corpus.root:
            self.tester = PhraseTester(self.ctx, self.corpus)
            self.try_answer.object = ""
        self.header.object = f"<h2>Results: {esc(self.corpus.speaker_id)}</h2>"
        files = report_files(self.corpus.root)
        options = {_label(p): p.name for p in files}  # values are names; paths are rebuilt and checked in show()
        old = self.choose.value
        newest = files[0].name if files else None
        self.choose.options = options
        if files:  # a new run is shown at once; otherwise the run chosen stays chosen
            keep = old in options.values() and newest == self._newest
            self.choose.value = old if keep else newest
        self._newest = newest
        self.show()

    def _clear(self) -> None:
        self.comparison = None
        self.summary.object = self.table.object = ""
        self.chart.visible = self.download_html.visible = self.download_csv.visible = False

    def _report_path(self, name: Any) -> Path:
        if not isinstance(name, str) or not _REPORT.fullmatch(name):
            raise CorpusError("That is not one of this speaker's reports.")
        path = inside_data_dir(self.ctx, self.corpus.root / "reports" / name)
        if not path.is_file():
            raise CorpusError(f"The report {name} is no longer there.")
        return path

    def show(self) -> None:
        """Show the chosen report."""
        if self.corpus is None:
            return self._clear()
        if not self.choose.value:
            self._clear()
            self.summary.object = ("<p>No results yet for this speaker. Train a personal model on the "
                                   "<b>Personalize</b> page; its report appears here.</p>")
            return
        try:
            csv_path = self._report_path(self.choose.value)
            cmp_ = load_comparison(csv_path)
        except WorkbenchError as err:
            self._clear()
            self.summary.object = message_html(str(err), False)
            return
        self.comparison = cmp_
        self.summary.object = self._summary_html(cmp_)
        self._draw_chart(cmp_)
        self.table.object = ("<h3>Each recording kept aside</h3><p>Worst first. What the base model and the "
                             "personal model recognised, compared with what was said.</p>"
                             + cmp_.to_html_table(cmp_.worst(len(cmp_.utterances))))
        html_path = csv_path.with_suffix(".html")
        self.download_csv.file, self.download_csv.filename = str(csv_path), csv_path.name
        self.download_csv.visible = True
        if html_path.is_file():
            self.download_html.file, self.download_html.filename = str(html_path), html_path.name
            self.download_html.visible = True
        else:
            self.download_html.visible = False

    def _summary_html(self, c: Any) -> str:
        from workbench.report import NOTICE

        lo, hi = 100 * c.interval["diff_low"], 100 * c.interval["diff_high"]
        better = c.wer_after < c.wer_before
        verdict = (f"{100 * c.relative_reduction:.0f}% fewer word errors with the personal model." if better
                   else "No improvement on these recordings.")
        return (
            "<div class='wb-big'>"
            f"<span>Base model: <b>{100 * c.wer_before:.0f}%</b></span> &rarr; "
            f"<span>Personal model: <b>{100 * c.wer_after:.0f}%</b></span> word errors</div>"
            f"<p>{esc(verdict)} Measured on {len(c.utterances)} recordings kept aside (never trained on). "
            f"With 95% confidence the drop is between {lo:.1f} and {hi:.1f} percentage points; with few "
            "recordings this range is wide.</p>"
            f"<p class='wb-notice'>{esc(NOTICE)}</p>")

    def _draw_chart(self, c: Any) -> None:
        try:
            from workbench.plots import plot_wer_before_after

            fig = plot_wer_before_after(c.wer_before, c.wer_after,
                                        interval=(c.interval["diff_low"], c.interval["diff_high"]))
        except WorkbenchError:  # matplotlib missing: the numbers above still say it all
            self.chart.visible = False
            return
        self.chart.object = fig
        self.chart.visible = True

    def _transcribe(self, wav: Any) -> dict[str, str]:
        if self.tester is None:
            return {"error": "Open a speaker first."}
        try:
            return self.tester.transcribe(wav)
        except WorkbenchError as err:
            return {"error": str(err)}
        except Exception as err:  # noqa: BLE001 - top of the "try a phrase" thread: any failure (torch, a bug)
            # must reach the page and the log; a narrower catch would leave the page waiting for an answer
            _log.exception("try a phrase failed")
            return {"error": f"The phrase could not be transcribed ({type(err).__name__}: {err})."}

    def _show_try(self, out: dict[str, str]) -> None:
        if "error" in out:
            self.try_answer.object = message_html(out["error"], False)
            return
        self.try_answer.object = (
            "<table class='wb-table wb-try'><tr><th>Base model heard</th><td>"
            f"{esc(out['base']) or '<i>(nothing)</i>'}</td></tr><tr><th>Personal model heard</th><td>"
            f"<b>{esc(out['personal']) or '<i>(nothing)</i>'}</b></td></tr></table>"
            f"<div style='color:#666;font-size:0.9em'>Personal model: {esc(out['model'])}</div>")

    def try_phrase(self, wav: Any) -> dict[str, str] | None:
        """Transcribe one recording with both models and show the two texts side by side (blocking)."""
        out = self._transcribe(wav)
        self._show_try(out)
        return None if "error" in out else out

    def _try_in_thread(self, wav: Any) -> None:
        self.try_answer.object = message_html("Listening…", None)
        out: dict[str, str] = {}
        show = in_session(lambda: self._show_try(out))

        def work() -> None:
            out.update(self._transcribe(wav))
            show()

        threading.Thread(target=work, name="workbench-try", daemon=True).start()

    def _on_try_upload(self, files: list[tuple[str, bytes]]) -> None:
        try:
            if len(files) != 1:
                raise WorkbenchError("Upload one recording at a time.")
            rec = load_one_upload(*files[0])
        except WorkbenchError as err:
            self.try_answer.object = message_html(str(err), False)
            return
        self._try_in_thread(rec.audio)

    # ------------------------------------------------------------------ view
    def __panel__(self) -> Any:
        mic: list[Any] = [self.recorder] if self.recorder is not None else []
        return pn.Column(
            self.header, self.choose, self.summary, self.chart, pn.Row(self.download_html, self.download_csv),
            self.table,
            html_pane("<h3>Try a phrase</h3><p>Record (or upload) a new sentence and see what the base model "
                      "and the personal model make of it.</p>"),
            *mic, self.try_upload, self.try_answer,
            sizing_mode="stretch_width", css_classes=["wb-page", "wb-results"],
        )
