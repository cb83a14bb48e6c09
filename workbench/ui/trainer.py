"""The live trainer view: a progress bar, live loss/WER curves, a Stop button, and "try it".

:class:`TrainerSession` is the view's logic over a headless :class:`~workbench.training_run.TrainingRun`
(the background thread, Stop, the progress and its words, shared with the app's training job): it
redraws about twice a second as the run moves, and after training transcribes a phrase with the
base and the personal model side by side. :meth:`TrainerSession.widget` builds the ipywidgets view
over it. Widget traits are updated from the training thread (ipywidgets sends those as comm
messages); nothing is printed into an Output widget from the thread, which is not thread-safe.

Waiting in a notebook: ``session.join()`` blocks the kernel, so a click on Stop
(a comm message) is handled only after the cell ends, which under Run All is after
training. ``await session.wait()`` waits without blocking: the kernel keeps
handling widget messages while the cell awaits (ipykernel >= 7.4 dispatches comm
messages during an awaiting cell), so Stop stops the run and the next cells go on.
"""

from __future__ import annotations

import asyncio
import html
import inspect
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from workbench.errors import WorkbenchError
from workbench.trainer import Trainer, TrainResult
from workbench.training_run import Throttle, TrainingProgress, TrainingRun
from workbench.ui._render import error_html

__all__ = ["Throttle", "TrainerSession"]


def _kernel_handles_comms_while_waiting() -> bool | None:
    """Does this Jupyter kernel dispatch widget messages while a cell awaits? None outside a kernel.

    ipykernel dispatches comm messages concurrently with an awaiting cell since its
    ``dispatch_shell(..., concurrent=...)`` (7.4); older kernels queue them after the cell.
    """
    kernelbase = sys.modules.get("ipykernel.kernelbase")
    if kernelbase is None:
        return None
    try:
        return "concurrent" in inspect.signature(kernelbase.Kernel.dispatch_shell).parameters
    except (AttributeError, TypeError, ValueError):
        return False


class TrainerSession:
    """Run a trainer in the background and expose its progress to a view.

    Args:
        trainer: a configured :class:`~workbench.trainer.Trainer`.
        on_update: called (throttled, about twice a second) after progress changes;
            the widget passes its redraw here.
        decoder: decoder for "try it" (default: the trainer's validation decoder).
        fit: what the background thread runs (default ``trainer.fit``), e.g.
            ``lambda: workflow.train(plan, progress=False)``: the workflow's train step on
            ``plan.trainer``, so that ``workflow.finish(plan)`` can follow.

    The thread, Stop and the progress are the session's :attr:`run` (a
    :class:`~workbench.training_run.TrainingRun`); :meth:`progress_record` is its typed record,
    :meth:`snapshot` the same as a dict for older code.
    """

    def __init__(self, trainer: Trainer, *, on_update: Callable[[], None] | None = None,
                 decoder: Callable | None = None, update_interval: float = 0.5,
                 fit: Callable[[], TrainResult] | None = None) -> None:
        self.trainer = trainer
        self.decoder = decoder if decoder is not None else trainer.decoder
        self.run: TrainingRun[TrainResult] = TrainingRun(fit or trainer.fit, trainer=trainer, on_update=on_update,
                                                         update_interval=update_interval)
        self._update = self.run.updates  # the throttled redraw (the widget sets its function)
        self._on_step, self._on_eval, self._on_stop = self.run._on_step, self.run._on_eval, self.run._on_stop

    # ---------------------------------------------------------------- the run's state, read through
    thread = property(lambda self: self.run.thread)
    result = property(lambda self: self.run.result)
    error = property(lambda self: self.run.error)
    status = property(lambda self: self.run.status)
    step = property(lambda self: self.run.step)
    elapsed = property(lambda self: self.run.elapsed_s, doc="seconds of training so far (the trainer's clock)")
    max_steps = property(lambda self: self.run.max_steps)
    time_limit_s = property(lambda self: self.run.time_limit_s)
    max_seconds = property(lambda self: self.run.max_seconds, doc="Deprecated: the old name of time_limit_s.")
    losses = property(lambda self: self.run.losses)
    wers = property(lambda self: self.run.wers)

    @property
    def finished(self) -> bool:
        """The background thread has ended (trained, stopped, or failed)."""
        return self.run.finished

    @property
    def progress(self) -> float:
        """Share of the budget used, 0 to 1: steps or seconds, whichever ends the run first; 1 when finished."""
        return self.run.fraction

    # ---------------------------------------------------------------- control (any thread)
    def start(self) -> bool:
        """Start training in a background thread (returns at once).

        One run per session: when it has started already (the Start button, or an
        earlier call) nothing happens and False is returned, so a notebook cell with
        ``session.start()`` after a click on Start just waits for that run.
        """
        return self.run.start(status="starting: measuring the base model on the validation phrases")

    def stop(self) -> None:
        """Ask training to stop after the current step; the best adapter is kept."""
        if self.thread is not None:  # before Start there is nothing to stop
            self.run.stop()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread; True when it has finished.

        This blocks the kernel: in a notebook the Stop button is handled only after the
        cell ends. Use ``await session.wait()`` there.
        """
        return True if self.thread is None else self.run.join(timeout)

    async def wait(self, poll: float = 0.2) -> TrainResult | None:
        """Wait until training has finished without blocking the kernel's event loop.

        In a notebook cell write ``await session.wait()``: the Stop button keeps working
        while the cell waits, also under Run All. Interrupting the kernel (the stop
        square in the toolbar) while it waits asks training to stop, too.

        Returns:
            The :class:`~workbench.trainer.TrainResult` (None if training failed:
            see :attr:`error`, or if it was never started).
        """
        if self.running and _kernel_handles_comms_while_waiting() is False:
            self.run.set_hint(" (this Jupyter kernel handles Stop only after this cell: interrupt the kernel "
                              "to stop now, or update it: pip install -U ipykernel)")
        try:
            while self.running:
                await asyncio.sleep(poll)
        except (asyncio.CancelledError, KeyboardInterrupt):
            self.stop()
            raise
        return self.result

    @property
    def running(self) -> bool:
        return self.run.running

    def progress_record(self) -> TrainingProgress:
        """The run's progress as one frozen record (:class:`~workbench.training_run.TrainingProgress`)."""
        return self.run.progress()

    def snapshot(self) -> dict:
        """A consistent copy of the progress for a view (the record's fields as a dict)."""
        p = self.run.progress()
        return {"step": p.step, "max_steps": p.max_steps, "elapsed_s": p.elapsed_s, "time_limit_s": p.time_limit_s,
                "progress": p.fraction, "status": p.status, "losses": list(p.losses), "wers": list(p.wers)}

    def figure(self) -> Any:
        from workbench.plots import plot_training_curve

        snap = self.snapshot()
        history = [{"kind": "step", "step": s, "loss": v} for s, v in snap["losses"]]
        history += [{"kind": "eval", "step": s, "wer": v} for s, v in snap["wers"]]
        return plot_training_curve(history, title="Live personalization", loss_name=self.trainer.loss_name)

    # ---------------------------------------------------------------- try it
    def try_phrase(self, wav: np.ndarray) -> dict[str, str]:
        """Transcribe one recording with the base and the personal model (after training)."""
        adapted = self.trainer.adapted
        if self.running and not self.finished:
            raise RuntimeError("training is still running: press Stop or wait until it finishes")
        with adapted.disabled():
            base = adapted.transcribe([wav], decoder=self.decoder)[0]
        personal = adapted.transcribe([wav], decoder=self.decoder)[0]
        return {"base": base, "personal": personal}

    # ---------------------------------------------------------------- the view
    def widget(self, phrases: dict[str, np.ndarray] | None = None, *, record: bool | Any = True) -> Any:
        """Progress bar, status, live curve image, Start/Stop, and "try it" afterwards.

        Args:
            phrases: what was said -> its recording (16 kHz float32 waveform), e.g. the
                held-out phrases; "Try it" shows both transcripts word by word against it.
            record: also offer a recorder (the kernel's microphone, else the browser's, or
                an upload; a :class:`~workbench.ui.recorder.Recorder` to use a given one,
                False for none). A new recording is transcribed by both models once
                training has finished.
        """
        from workbench._optional import require
        from workbench.ui._render import figure_png

        w = require("ipywidgets", extra="ui", purpose="show the live trainer")
        bar = w.IntProgress(value=0, min=0, max=100, description="training")  # % of the budget
        status = w.Label(value=self.status)
        image = w.Image(format="png")
        start = w.Button(description="Start", button_style="success", icon="play")
        stop = w.Button(description="Stop", button_style="danger", icon="stop", disabled=True)
        choice = w.Dropdown(options=sorted(phrases or {}), description="phrase")
        try_button = w.Button(description="Try it", icon="comments", disabled=True)
        answer = w.HTML()

        def redraw() -> None:  # runs on the training thread, throttled
            snap = self.snapshot()
            done = self.finished
            bar.value = round(100 * self.progress)
            bar.bar_style = ("danger" if self.error is not None else "success") if done else ""
            status.value = snap["status"]
            if snap["losses"] or snap["wers"]:
                image.value = figure_png(self.figure())
            start.disabled = self.thread is not None  # one run per session: started from code or by the button
            if done:
                start.tooltip = "This session has trained once; make a new TrainerSession to train again."
            stop.disabled = done or self.thread is None
            try_button.disabled = not done or not phrases

        self._update.fn = redraw
        redraw()  # also right for a session started before its view was made

        def on_start(_: Any) -> None:
            if self.thread is None:
                self.start()

        def on_try(_: Any) -> None:
            if choice.value is not None:
                answer.value = self._answer_html(self.try_phrase(phrases[choice.value]), said=choice.value)

        start.on_click(on_start)
        stop.on_click(lambda _: self.stop())
        try_button.on_click(on_try)
        rows = [w.HBox([start, stop, bar]), status, image, w.HBox([choice, try_button]), answer]
        if record is not False:
            from workbench.ui.recorder import Recorder

            rec = record if isinstance(record, Recorder) else Recorder()

            def on_recording(recording: Any) -> None:
                if self.thread is None:
                    answer.value = "<i>Train first: press Start, then record the phrase again.</i>"
                    return
                if not self.finished:
                    answer.value = ("<i>Training is still running: press Stop or wait until it "
                                    "finishes, then record the phrase again.</i>")
                    return
                report = recording.quality()
                if not report.ok:  # silent, clipped, too short...: say what to do, transcribe nothing
                    answer.value = error_html(report.message)
                    return
                try:
                    answer.value = self._answer_html(self.try_phrase(recording.audio))
                except WorkbenchError as err:
                    answer.value = error_html(str(err))

            rec.on_recording(on_recording)
            rows.insert(4, w.VBox([w.HTML("<b>Or record a phrase</b> (after training):"), rec.widget()]))
        return w.VBox(rows)

    @staticmethod
    def _answer_html(out: dict[str, str], said: str | None = None) -> str:
        """Both transcripts as a small table; word by word against ``said`` when it is known."""
        from workbench.metrics import alignment_html, alignment_legend

        def cell(hyp: str) -> str:
            if said is not None:
                return alignment_html(said, hyp)
            return html.escape(hyp) if hyp else "<i>(nothing)</i>"

        rows = [f"<tr><td><b>said</b></td><td>{html.escape(said)}</td></tr>"] if said is not None else []
        rows += [f"<tr><td><b>base model</b></td><td>{cell(out['base'])}</td></tr>",
                 f"<tr><td><b>personal model</b></td><td>{cell(out['personal'])}</td></tr>"]
        return "<table>" + "".join(rows) + "</table>" + (alignment_legend() if said is not None else "")
