"""Personalize page: choose the base model, press Train, watch progress and live curves, Stop.

The run is a :class:`~workbench.app_pages.jobs.TrainingJob` (a background thread,
one per speaker at a time, shared by every browser session). This page polls
its snapshot about twice a second and streams new points into two Bokeh
charts; it never blocks the server while the model trains.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import panel as pn

from workbench.app_pages.common import (
    AppContext,
    SessionState,
    esc,
    html_pane,
    message_html,
    open_speaker,
)
from workbench.app_pages.jobs import TrainingJob, job_for, start_training
from workbench.defaults import RUN_DEFAULTS
from workbench.errors import WorkbenchError
from workbench.progress import time_left_text
from workbench.text import prompt_key
from workbench.workflow import three_way_split

if TYPE_CHECKING:
    from workbench.corpus import SpeakerCorpus

__all__ = ["PersonalizePage"]

_PHASES = {
    "waiting": "Starting…",
    "loading": "Loading the base model…",
    "preparing": "Preparing the recordings and measuring the base model…",
    "training": "Training the personal model",
    "measuring": "Training finished. Measuring the result on the recordings kept aside and writing the report…",
    "done": "Finished.",
    "nothing learned": "Stopped before the first check: nothing learned yet.",
    "failed": "Training did not finish.",
}
_POLL_MS = 500


def _aside(n: int, fraction: float) -> int:
    """Prompts :func:`workbench.corpus.split_by_prompt` sets aside out of ``n``."""
    if n < 2 or fraction <= 0:
        return 0
    return min(max(round(fraction * n), 1), n - 1)


def sentences_needed(n_prompts: int, need: int, *, test_fraction: float,
                     valid_fraction: float = RUN_DEFAULTS.valid_fraction) -> int:
    """How many more sentences (one good take each) until the split leaves ``need`` to learn from
    and at least one for validation and one for the test: the same arithmetic as
    :func:`~workbench.workflow.three_way_split`, so it adds up whatever has been recorded.

    >>> sentences_needed(0, 10, test_fraction=0.25), sentences_needed(5, 10, test_fraction=0.25)
    (16, 11)
    """
    n = max(0, int(n_prompts))
    while True:
        test = _aside(n, test_fraction)
        valid = _aside(n - test, valid_fraction)
        if n - test - valid >= need and valid >= 1 and test >= 1:
            return n - int(n_prompts)
        n += 1


def _figure(title: str, y_label: str, colour: str) -> tuple[Any, Any]:
    """A line chart with explicit ranges from 0 (:func:`_fit_ranges` widens them as points arrive).

    Bokeh's automatic ranges cannot be set from an empty source ("could not set initial
    ranges"), nor from values that are all equal, e.g. 0 % word errors at every measurement.
    """
    from bokeh.models import ColumnDataSource, Range1d
    from bokeh.plotting import figure

    source = ColumnDataSource(data={"step": [], "value": []})
    fig = figure(title=title, height=260, sizing_mode="stretch_width", toolbar_location=None,
                 x_axis_label="training step", y_axis_label=y_label, x_range=Range1d(0, 10), y_range=Range1d(0, 1))
    fig.line("step", "value", source=source, line_width=2, color=colour)
    fig.scatter("step", "value", source=source, size=5, color=colour)
    return fig, source


def _fit_ranges(fig: Any, source: Any, last_step: int, *, min_top: float) -> None:
    """Ranges from 0 to a little past ``last_step`` and the largest value (at least 10 steps and ``min_top``)."""
    values = [v for v in source.data["value"] if v == v]  # no NaN
    fig.x_range.end = max(10.0, 1.03 * last_step + 1)
    fig.y_range.end = max(min_top, 1.1 * max(values, default=0.0))


class PersonalizePage(pn.viewable.Viewer):
    """Train a personal model for the open speaker."""

    def __init__(self, ctx: AppContext, state: SessionState, **params: Any) -> None:
        super().__init__(**params)
        self.ctx, self.state = ctx, state
        self.job: TrainingJob | None = None
        self._seen_version = -1
        self._n_loss = self._n_wer = 0
        self.header = html_pane("")
        self.data = html_pane("")
        self.model = pn.widgets.Select(name="Base model", options=dict(ctx.models), width=360)
        ceiling = RUN_DEFAULTS.max_minutes  # training ends sooner, when the model stops improving
        self.minutes = pn.widgets.FloatSlider(name="Time limit (minutes)", start=0.5, end=max(30.0, ceiling), step=0.5,
                                              value=ceiling, width=360)
        self.train = pn.widgets.Button(name="▶ Train", button_type="success", width=160)
        self.stop_button = pn.widgets.Button(name="■ Stop", button_type="danger", width=160, disabled=True)
        self.progress = pn.indicators.Progress(value=0, max=1000, width=520, bar_color="success", visible=False)
        self.status = html_pane("")
        self.message = html_pane("")
        self.result = html_pane("")
        self.see_results = pn.widgets.Button(name="See the results →", button_type="primary", width=200,
                                             visible=False)
        self.loss_fig, self.loss_source = _figure("Training loss (goes down as the model learns)", "loss", "#495057")
        self.wer_fig, self.wer_source = _figure("Word errors on recordings kept aside (%)", "ASR word error rate (%)",
                                                "#c62828")
        self.charts = pn.Row(pn.pane.Bokeh(self.loss_fig, sizing_mode="stretch_width"),
                             pn.pane.Bokeh(self.wer_fig, sizing_mode="stretch_width"),
                             sizing_mode="stretch_width", visible=False)
        self.train.on_click(lambda _: self.start())
        self.stop_button.on_click(lambda _: self.stop())
        self.see_results.on_click(lambda _: setattr(self.state, "page", "Results"))
        state.param.watch(lambda _: self.load(), ["speaker_id", "data_version"])
        self._callback: Any = None
        self.load()

    # ------------------------------------------------------------------ logic
    def _speaker(self) -> SpeakerCorpus | None:
        return open_speaker(self.ctx, self.state.speaker_id) if self.state.speaker_id else None

    def load(self) -> None:
        """Show the open speaker's data and attach to a run in progress (from any session)."""
        self.message.object = ""
        try:
            corpus = self._speaker()
        except WorkbenchError as err:
            corpus = None
            self.message.object = message_html(str(err), False)
        if corpus is None:
            self.header.object = "<h2>Personalize</h2><p>First choose or create a speaker on the <b>Speakers</b> page.</p>"
            self.data.object = ""
            self.train.disabled = True
            self._attach(None)
            return
        self.header.object = f"<h2>Personalize: {esc(corpus.speaker_id)}</h2>"
        self.data.object, ready = self._readiness(corpus)
        job = job_for(corpus.root)
        if job is not self.job:
            self._attach(job)
        self.train.disabled = not ready or (self.job is not None and self.job.running)
        self.poll()

    def on_show(self) -> None:
        self.load()

    def _readiness(self, corpus: SpeakerCorpus) -> tuple[str, bool]:
        from workbench.trainer import MIN_HELD_OUT_WORDS

        s = corpus.summary()
        train, valid, test = three_way_split(corpus, test_fraction=self.ctx.test_fraction)
        need = int(self.ctx.train_config(self.minutes.value).min_utterances)
        text = (f"<p>{s['n_ok']} good recordings ({s['minutes_ok']:.1f} minutes) of {s['n_prompts_recorded']} "
                f"sentences. {len(test)} of them are kept aside to measure the result and {len(valid)} to decide "
                f"when to stop; the model learns from the other {len(train)}.</p>")
        if len(train) < need or not test or not valid:
            problem = corpus.usable_problem() if s["n_rejected"] else None
            if problem is not None:  # every take rejected: say why, not "record more"
                return text + message_html(problem, False), False
            prompts = len({prompt_key(u.prompt) for u in [*train, *valid, *test]})
            more = max(1, sentences_needed(prompts, need, test_fraction=self.ctx.test_fraction))
            text += message_html(f"Not enough recordings yet: personalization needs at least {need} to learn from "
                                 f"plus a few kept aside. Record about {more} more sentence{'s' if more > 1 else ''}"
                                 " (one good recording each), then come back.", False)
            return text, False
        for role, utts in (("to decide when to stop", valid), ("to measure the result", test)):
            words = sum(len((u.transcript or u.prompt).split()) for u in utts)
            if words < MIN_HELD_OUT_WORDS:
                text += (f"<p class='wb-notice'>Only {words} words are kept aside {role} (at least "
                         f"{MIN_HELD_OUT_WORDS} give a steady figure), so the word error rate on them jumps in big "
                         "steps. You can train now; recording more sentences makes the result more reliable.</p>")
        return text, True

    def start(self) -> TrainingJob | None:
        """Start training the open speaker (refused with a message if a run is already going)."""
        try:
            corpus = self._speaker()
            if corpus is None:
                raise WorkbenchError("Open a speaker first (Speakers page).")
            model = self.model.value or self.ctx.default_model
            if model not in self.ctx.models.values():  # only models offered by the server
                raise WorkbenchError("Choose one of the base models in the list.")
            self._size_reason = ""
            if model == "tiny-auto":  # the size is measured on this computer now; the status line says why
                from workbench.models.supernet.sizes import sized_model

                model, self._size_reason = sized_model("auto")
            job = start_training(corpus.root, backend_factory=self.ctx.backend_factory, model=model,
                                 config=self.ctx.train_config(float(self.minutes.value)), decoder=self.ctx.decoder,
                                 test_fraction=self.ctx.test_fraction)
        except WorkbenchError as err:
            self.message.object = message_html(str(err), False)
            return None
        self.message.object = ""
        self._attach(job)
        self.poll()
        return job

    def stop(self) -> None:
        if self.job is not None and self.job.running:
            self.job.stop()
            self.poll()

    def _attach(self, job: TrainingJob | None) -> None:
        self.job = job
        self._seen_version = -1
        self._n_loss = self._n_wer = 0
        self.loss_source.data = {"step": [], "value": []}
        self.wer_source.data = {"step": [], "value": []}
        _fit_ranges(self.loss_fig, self.loss_source, 0, min_top=1.0)
        _fit_ranges(self.wer_fig, self.wer_source, 0, min_top=10.0)
        if job is None:
            self.progress.visible = self.charts.visible = self.see_results.visible = False
            self.status.object = self.result.object = ""
            self.stop_button.disabled = True
        elif job.running:
            self._start_polling()

    def _start_polling(self) -> None:
        if self._callback is not None or pn.state.curdoc is None or pn.state.curdoc.session_context is None:
            return  # outside a served page (tests call poll() themselves)
        self._callback = pn.state.add_periodic_callback(self.poll, period=_POLL_MS)

    def _stop_polling(self) -> None:
        if self._callback is not None:
            self._callback.stop()
            self._callback = None

    def poll(self) -> None:
        """Copy the run's progress into the page (cheap when nothing changed)."""
        job = self.job
        if job is None:
            return
        snap = job.snapshot()
        if snap["version"] == self._seen_version:
            return
        self._seen_version = snap["version"]
        losses, wers = snap["losses"], snap["wers"]
        if len(losses) > self._n_loss:
            new = losses[self._n_loss:]
            self.loss_source.stream({"step": [s for s, _ in new], "value": [v for _, v in new]})
            self._n_loss = len(losses)
        if len(wers) > self._n_wer:
            new = wers[self._n_wer:]
            self.wer_source.stream({"step": [s for s, _ in new], "value": [100 * v for _, v in new]})
            self._n_wer = len(wers)
        _fit_ranges(self.loss_fig, self.loss_source, snap["step"], min_top=1.0)
        _fit_ranges(self.wer_fig, self.wer_source, snap["step"], min_top=10.0)
        self.charts.visible = True
        self.progress.visible = True
        self.progress.value = int(1000 * job.fraction)
        running = not job.finished
        self.stop_button.disabled = not running or snap["phase"] == "measuring" or snap["stop_requested"]
        self.train.disabled = self.model.disabled = self.minutes.disabled = running
        self.status.object = self._status_html(snap)
        if running:
            self._start_polling()
            self.result.object = ""
            self.see_results.visible = False
            return
        self._stop_polling()
        if snap["phase"] == "failed":
            self.result.object = message_html(snap["error"] or "Training did not finish.", False)
            self.see_results.visible = False
        elif snap["phase"] == "nothing learned":  # an outcome with what to do, not a failure: grey, not red
            self.result.object = message_html(snap.get("notice") or _PHASES["nothing learned"], None)
            self.see_results.visible = False
        else:
            run = snap["run"]
            better = run.comparison.wer_after < run.comparison.wer_before
            self.result.object = message_html(run.comparison.summary() + ". The report is on the Results page.",
                                              True if better else None)
            if run.advice:  # after "No improvement": what to do next (workflow.personal.run_advice)
                self.result.object += message_html(run.advice, None)
            self.see_results.visible = True

    def _status_html(self, snap: dict) -> str:
        phase = snap["phase"]
        text = _PHASES.get(phase, phase)
        seconds, limit = snap.get("training_s", snap["elapsed"]), snap["time_limit_s"]
        if phase == "training":
            text += f": step {snap['step']} of at most {snap['max_steps']}"
            if limit and seconds > limit:
                text += (f", {seconds:.0f} seconds: past the {limit:.0f} second limit, stopping after the "
                         "step or measurement under way")
            else:  # from the measured pace; early stopping usually ends the run sooner
                left = time_left_text(snap.get("time_left_s"))
                text += f", {seconds:.0f} seconds" + (f", {left} (it usually stops sooner, when the model " \
                                                      "stops improving)" if left else "")
            if snap["wers"]:
                text += f". Word errors on the kept-aside recordings: {100 * snap['wers'][-1][1]:.0f}%"
            if snap["stop_requested"]:
                text = "Stopping after this step and one last check of the recordings kept aside…"
        elif phase == "done":
            why = snap["stop_reason"] or "finished"
            text = f"Finished ({why}) after {snap['step']} training steps"
            if limit:
                text += f" and {seconds:.0f} seconds (limit {limit:.0f} s)"
            text += "."
            if snap.get("cut_short"):  # the ceiling, not convergence, ended it
                text += f" {snap['cut_short'][0].upper()}{snap['cut_short'][1:]}: choose a longer time limit."
        started = self.job.started_at if self.job else time.time()
        note = f"<p class='wb-notice'>{esc(snap['note'])}</p>" if snap.get("note") else ""
        return (f"<div class='wb-status' aria-live='polite'>{esc(text)}</div>{note}"
                f"<div style='color:#666;font-size:0.9em'>Started at {time.strftime('%H:%M', time.localtime(started))}"
                f" with {esc(self._model_label(snap['model']))}. You can keep recording other speakers meanwhile.</div>")

    def _model_label(self, name: str) -> str:
        if getattr(self, "_size_reason", "") and name.startswith("tiny"):  # which size runs, and why
            return self._size_reason
        return next((label for label, value in self.ctx.models.items() if value == name), name)

    # ------------------------------------------------------------------ view
    def __panel__(self) -> Any:
        return pn.Column(
            self.header, self.data,
            html_pane("<p>The base model stays as it is; a small personal part is trained on this speaker's "
                      "recordings. Training ends by itself when the model stops improving, usually well before the "
                      "time limit (a busy computer takes longer, for the same model); you can stop at any time and "
                      "the best model so far is kept.</p>"),
            pn.Row(self.model, self.minutes), pn.Row(self.train, self.stop_button), self.message,
            self.progress, self.status, self.charts, self.result, self.see_results,
            sizing_mode="stretch_width", css_classes=["wb-page", "wb-personalize"],
        )
