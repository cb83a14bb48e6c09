"""Results page: ASR word error rate before and after, per-recording alignments, downloads, "try a phrase".

A result is read back from the CSV that :func:`workbench.workflow.personalize_speaker`
wrote next to its HTML report, and re-scored with :func:`workbench.metrics.compare`
(the same numbers and interval as the report). "Try a phrase" transcribes a new
recording with the base model and the speaker's personal model
(:func:`workbench.workflow.personal_submodel`: the run the therapist chose on this page,
else the newest run that beat the base model), on that Submodel's own base model, loaded
from this machine only (never the app's "auto" label, never a download). After a run
with no improvement the page says what to do next (:func:`workbench.workflow.run_advice`).
"""

from __future__ import annotations

import csv
import datetime as _dt
import logging
import re
import threading
from pathlib import Path
from typing import Any

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

__all__ = ["PhraseTester", "ResultsPage", "load_comparison", "report_files"]

_log = logging.getLogger(__name__)
# report-<stamp>.csv (older runs) or report-<speaker id>-<stamp>.csv (report.report_stem)
_REPORT = re.compile(r"report-(?:[A-Za-z0-9][A-Za-z0-9_.-]*-)?(\d{8}-\d{6})\.csv")
_AUTOMATIC = "Automatic: the newest run that beat the base model"


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
    """A :class:`~workbench.metrics.Comparison` rebuilt from a report CSV."""
    from workbench.metrics import compare

    with Path(csv_path).open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise CorpusError(f"The report {csv_path.name} has no recordings in it.")
    try:
        return compare([r["reference"] for r in rows], [r["before"] for r in rows], [r["after"] for r in rows],
                       utt_ids=[r["utt_id"] for r in rows])
    except (KeyError, ValueError) as err:
        raise CorpusError(f"The report {csv_path.name} cannot be read ({err}).") from None


def _load_base(ctx: AppContext, name: str) -> Any:
    """The base model ``name`` (a Submodel's ``base_model``, or a resolved choice) without the network.

    The app's own loader is called with ``offline=True``: a name read from a file is not the
    user's, so it loads from this machine or gives a plain message (never a hub request).
    A custom ``backend_factory`` (tests, Python callers) decides for itself.
    """
    from workbench.app_pages import common

    if ctx.backend_factory is common._default_backend_factory:
        from workbench.models import load_base_model

        return load_base_model(name, offline=True)
    return ctx.backend_factory(name)


class PhraseTester:
    """Transcribe a phrase with the base model and the speaker's personal model (each loaded once)."""

    def __init__(self, ctx: AppContext, corpus: SpeakerCorpus) -> None:
        self.ctx, self.corpus = ctx, corpus
        self._lock = threading.Lock()
        self._loaded: tuple[Path | str, Any] | None = None  # (Submodel path, Adapted) or (base name, backend)

    def personal(self) -> Any:
        """The speaker's :class:`~workbench.workflow.PersonalModel` now, or None."""
        from workbench.workflow import personal_submodel

        return personal_submodel(self.corpus.root)

    def transcribe(self, wav: Any) -> dict[str, Any]:
        """``{"base", "personal", "model", "reason"}`` for one ``(n,)`` 16 kHz recording.

        ``personal`` is None (and ``model`` empty) when no run beat the base model and none
        was chosen: ``reason`` then says why, and the base model alone is heard.

        Raises:
            WorkbenchError: the speaker has no run at all, or a model cannot be loaded (plain message).
        """
        from workbench.adapters import load_submodel
        from workbench.vocabulary import speaker_vocabulary
        from workbench.workflow import build_decoder
        from workbench.workflow.evaluation import choose_models

        words = speaker_vocabulary(self.corpus.root)  # the word list saved on the Speakers page: used at once
        with self._lock:
            models = choose_models(self.corpus, self.ctx.default_model)  # the personal model, else the base model
            chosen = models.personal
            runs = any((self.corpus.root / "submodels").glob("*.safetensors"))
            if chosen is None and not runs:
                raise WorkbenchError(f"{self.corpus.speaker_id} has no personal model yet: train one on the "
                                     "Personalize page first.")
            if chosen is None:  # runs, but none beat the base model and none was chosen: the base model alone
                name = models.base.name  # the app's choice, "auto" resolved for this speaker
                if self._loaded is None or self._loaded[0] != name:
                    self._loaded = None  # free the previous model before loading the next
                    self._loaded = (name, _load_base(self.ctx, name))
                backend = self._loaded[1]
                decoder = build_decoder(self.ctx.decoder, prompts=self.corpus.prompts(), backend=backend,
                                        vocabulary=words)
                base = backend.transcribe([wav], decoder=decoder)[0]
                why = "no run has beaten the base model yet, and none was chosen on this page"
                return {"base": base, "personal": None, "model": "", "reason": why}
            if self._loaded is None or self._loaded[0] != chosen.path:
                self._loaded = None
                adapted, _ = load_submodel(_load_base(self.ctx, chosen.base_model), chosen.path)
                self._loaded = (chosen.path, adapted)
            adapted = self._loaded[1]
            decoder = build_decoder(self.ctx.decoder, prompts=self.corpus.prompts(), backend=adapted.backend,
                                    vocabulary=words)
            with adapted.disabled():
                base = adapted.transcribe([wav], decoder=decoder)[0]
            personal = adapted.transcribe([wav], decoder=decoder)[0]
        return {"base": base, "personal": personal, "model": chosen.path.name, "reason": chosen.reason}


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
        self.personal_line = html_pane("", sizing_mode="stretch_width")
        self.pick = pn.widgets.Select(name="Personal model (used by Try a phrase and transcribing)", options={},
                                      width=520)
        self.pick_button = pn.widgets.Button(name="Use this", button_type="primary", width=120)
        self.pick_message = html_pane("")
        self.pick_button.on_click(lambda _: self.use_run(self.pick.value))
        self.try_answer = html_pane("")
        self.try_upload = FileUpload(accept=".wav,.flac,.ogg", multiple=False,
                                     label="Or upload a recording (WAV, FLAC or OGG)")
        self.recorder = PanelRecorder(max_s=20.0) if recorder_available() else None
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
            self.show_personal()
            return
        if self.tester is None or self.tester.corpus.root != self.corpus.root:
            self.tester = PhraseTester(self.ctx, self.corpus)
            self.try_answer.object = self.pick_message.object = ""
        self.show_personal()
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

    def show_personal(self) -> None:
        """Say which personal model is in use and why, and offer every usable run to choose from."""
        from workbench.workflow import chosen_submodel, submodel_runs

        if self.corpus is None or self.tester is None:
            self.personal_line.object, self.pick.options = "", {}
            return
        personal = self.tester.personal()
        runs = [r for r in submodel_runs(self.corpus.root) if r.problem is None]
        if personal is not None:
            line = (f"<p><b>Personal model in use:</b> {esc(personal.path.name)}, {esc(personal.reason)}. "
                    "Try a phrase and transcribing use it.</p>")
        elif runs:
            line = ("<p><b>No personal model in use:</b> no run has beaten the base model on the recordings kept "
                    "aside, so Try a phrase and transcribing use the base model alone. You can still choose a run "
                    "below.</p>")
        else:
            line = "<p><b>No personal model yet:</b> train one on the <b>Personalize</b> page.</p>"
        self.personal_line.object = line
        options = {_AUTOMATIC: ""}
        for r in runs:
            options[self._run_label(r)] = r.path.name
        self.pick.options = options
        pinned = chosen_submodel(self.corpus.root)
        self.pick.value = pinned if pinned in options.values() else ""
        self.pick.visible = self.pick_button.visible = bool(runs)

    @staticmethod
    def _run_label(run: Any) -> str:
        try:
            when = _dt.datetime.fromtimestamp(run.path.stat().st_mtime).strftime("%d %b %Y, %H:%M")
        except OSError:
            when = run.path.stem
        verdict = "better than the base model" if run.beat_base else "no improvement"
        return f"{when}: {run.figures()} word errors ({verdict})"

    def use_run(self, name: Any) -> bool:
        """Make the run ``name`` (a file name offered by :attr:`pick`; ``""``: automatic) the personal model."""
        from workbench.workflow import choose_personal_submodel

        if self.corpus is None:
            return False
        if not isinstance(name, str) or name not in self.pick.options.values():
            self.pick_message.object = message_html("Choose one of the runs in the list.", False)
            return False
        try:
            chosen = choose_personal_submodel(self.corpus.root, name or None)
        except WorkbenchError as err:
            self.pick_message.object = message_html(str(err), False)
            self.show_personal()
            return False
        if chosen is None:
            text = ("Automatic choice: no run has beaten the base model yet, so the base model alone is used.")
        else:
            text = f"Personal model: {chosen.path.name} ({chosen.reason})."
        self.pick_message.object = message_html(text, True)
        self.show_personal()
        self.show()  # the report shown may now be (or no longer be) the personal model's
        return True

    def _run_of_report(self, csv_path: Path) -> Any:
        """The Submodel run written with this report (same time stamp), or None."""
        from workbench.workflow import submodel_runs

        m = _REPORT.fullmatch(csv_path.name)
        if not m or self.corpus is None:
            return None
        return next((r for r in submodel_runs(self.corpus.root) if r.path.stem.endswith(f"-{m.group(1)}")), None)

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
        self.summary.object = self._summary_html(cmp_) + self._run_html(cmp_, self._run_of_report(csv_path))
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

    def _run_html(self, c: Any, run: Any) -> str:
        """Whether the shown run is the personal model, and after no improvement what to do next."""
        from workbench.workflow import run_advice

        personal = self.tester.personal() if self.tester is not None else None
        advice = run_advice(c.wer_before, c.wer_after, run.training if run is not None else {})
        if run is not None and personal is not None and personal.path.name == run.path.name:
            used = "<p>This run is the personal model in use.</p>"
        elif run is not None:
            used = "<p>This run is not the personal model in use (choose it below to use it anyway).</p>"
        else:
            used = ""
        return used + (message_html(advice, None) if advice else "")

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

    def _transcribe(self, wav: Any) -> dict[str, Any]:
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

    def _show_try(self, out: dict[str, Any]) -> None:
        if "error" in out:
            self.try_answer.object = message_html(out["error"], False)
            return
        rows = f"<tr><th>Base model heard</th><td>{esc(out['base']) or '<i>(nothing)</i>'}</td></tr>"
        if out.get("personal") is None:
            note = f"No personal model: {esc(out.get('reason', ''))}. Only the base model listened."
        else:
            rows += (f"<tr><th>Personal model heard</th><td><b>{esc(out['personal']) or '<i>(nothing)</i>'}</b>"
                     "</td></tr>")
            note = f"Personal model: {esc(out['model'])}, {esc(out.get('reason', ''))}"
        self.try_answer.object = (f"<table class='wb-table wb-try'>{rows}</table>"
                                  f"<div style='color:#666;font-size:0.9em'>{note}</div>")

    def try_phrase(self, wav: Any) -> dict[str, Any] | None:
        """Transcribe one recording with both models and show the two texts side by side (blocking)."""
        out = self._transcribe(wav)
        self._show_try(out)
        return None if "error" in out else out

    def _try_in_thread(self, wav: Any) -> None:
        self.try_answer.object = message_html("Listening…", None)
        out: dict[str, Any] = {}
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
        from workbench.app_pages.downloads import downloads_for  # exports for other engines (issue 26)

        mic: list[Any] = [self.recorder] if self.recorder is not None else []
        return pn.Column(
            self.header, self.choose, self.summary, self.chart, pn.Row(self.download_html, self.download_csv),
            self.table,
            html_pane("<h3>Personal model</h3>"), self.personal_line,
            pn.Row(self.pick, pn.Column(pn.Spacer(height=18), self.pick_button)), self.pick_message,
            downloads_for(self),
            html_pane("<h3>Try a phrase</h3><p>Record (or upload) a new sentence and see what the base model "
                      "and the personal model make of it.</p>"),
            *mic, self.try_upload, self.try_answer,
            sizing_mode="stretch_width", css_classes=["wb-page", "wb-results"],
        )
