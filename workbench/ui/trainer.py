"""The live trainer view: a progress bar, live loss/WER curves, a Stop button, and "try it".

:class:`TrainerSession` is the logic (no widgets): it runs a
:class:`~workbench.trainer.Trainer` in a background thread, keeps a
throttled snapshot of progress for the view, and after training transcribes a
phrase with the base and the personal model side by side. :meth:`TrainerSession.widget`
builds the ipywidgets view over it. Widget traits are updated from the training
thread (ipywidgets sends those as comm messages); nothing is printed into an
Output widget from the thread, which is not thread-safe.

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
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from workbench.errors import WorkbenchError
from workbench.progress import time_left_s, time_left_text
from workbench.trainer import Trainer, TrainResult
from workbench.ui._render import error_html

__all__ = ["Throttle", "TrainerSession"]


class Throttle:
    """Call ``fn`` at most once per ``interval`` seconds; :meth:`flush` forces a last call."""

    def __init__(self, fn: Callable[[], None], interval: float = 0.5, clock: Callable[[], float] = time.monotonic):
        self.fn, self.interval, self.clock = fn, interval, clock
        self._last = -float("inf")
        self._lock = threading.Lock()

    def __call__(self) -> bool:
        with self._lock:
            now = self.clock()
            if now - self._last < self.interval:
                return False
            self._last = now
        self.fn()
        return True

    def flush(self) -> None:
        with self._lock:
            self._last = self.clock()
        self.fn()


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
    """

    def __init__(self, trainer: Trainer, *, on_update: Callable[[], None] | None = None,
                 decoder: Callable | None = None, update_interval: float = 0.5,
                 fit: Callable[[], TrainResult] | None = None) -> None:
        self.trainer = trainer
        self._fit = fit or trainer.fit
        self.decoder = decoder if decoder is not None else trainer.decoder
        self.thread: threading.Thread | None = None
        self.result: TrainResult | None = None
        self.error: BaseException | None = None
        self.status = "ready"
        self.finished = False
        self.step = 0
        self.elapsed = 0.0  # seconds of training so far (the trainer's clock)
        self.max_steps = trainer.config.max_steps
        self.max_seconds = trainer.config.max_seconds
        self.losses: list[tuple[int, float]] = []
        self.wers: list[tuple[int, float]] = []
        self._stopping = False
        self._note = ""  # a hint kept on the status line while training
        self._lock = threading.Lock()
        self._update = Throttle(on_update or (lambda: None), update_interval)
        trainer.on("on_step", self._on_step).on("on_eval", self._on_eval).on("on_stop", self._on_stop)

    # ---------------------------------------------------------------- trainer events (training thread)
    def _on_step(self, e: dict) -> None:
        with self._lock:
            self.step = e["step"]
            self.elapsed = float(e.get("elapsed_s", self.elapsed))
            self.losses.append((e["step"], e["loss"]))
            self.status = self._training_status()
        self._update()

    def _on_eval(self, e: dict) -> None:
        with self._lock:
            self.wers.append((e["step"], e["wer"]))
        self._update()

    def _on_stop(self, e: dict) -> None:
        with self._lock:
            self.elapsed = float(e.get("elapsed_s", self.elapsed))  # the last check included
            self.status = f"finished ({e.get('text', e['reason'])}) after {e['step']} steps in {self.elapsed:.0f} s"
            if e.get("note"):  # the time ceiling ended it before the model stopped improving
                self.status += f": {e['note']}"

    def _training_status(self) -> str:
        if self._stopping:
            return f"stopping after this step and one last check (step {self.step}, {self.elapsed:.0f} s)..."
        left = time_left_text(time_left_s(self.step, self.max_steps, self.elapsed), ceiling_s=self.max_seconds,
                              elapsed_s=self.elapsed)  # at the pace so far; early stopping usually comes sooner
        left = f", {left}" if left else ""
        if self.max_seconds is not None:
            return (f"training: {self.elapsed:.0f} of at most {self.max_seconds:.0f} s, step {self.step} "
                    f"(at most {self.max_steps} steps){left}{self._note}")
        return f"training: step {self.step} of at most {self.max_steps}{left}{self._note}"

    @property
    def progress(self) -> float:
        """Share of the budget used, 0 to 1: steps or seconds, whichever ends the run first; 1 when finished."""
        if self.finished:
            return 1.0
        done = self.step / max(1, self.max_steps)
        if self.max_seconds:
            done = max(done, self.elapsed / self.max_seconds)
        return min(1.0, done)

    # ---------------------------------------------------------------- control (any thread)
    def start(self) -> bool:
        """Start training in a background thread (returns at once).

        One run per session: when it has started already (the Start button, or an
        earlier call) nothing happens and False is returned, so a notebook cell with
        ``session.start()`` after a click on Start just waits for that run.
        """
        if self.thread is not None:
            return False

        def run() -> None:
            try:
                self.result = self._fit()
            # The thread's boundary: any failure (an interrupt too) is kept and shown in the view, never
            # lost with the thread; the view is where a person reads it (re-raising would only print it).
            except BaseException as err:  # noqa: BLE001
                self.error = err
                self.status = f"stopped with an error: {err}"
            finally:
                self.finished = True
                self._update.flush()

        self.status = "starting: measuring the base model on the validation phrases"
        self.finished = False
        self.thread = threading.Thread(target=run, name="workbench-trainer", daemon=True)
        self.thread.start()
        self._update.flush()  # the view shows at once that training runs (Start greyed out)
        return True

    def stop(self) -> None:
        """Ask training to stop after the current step; the best adapter is kept."""
        if self.thread is None or self.finished:
            return
        with self._lock:
            self._stopping = True
            self.status = "stopping after this step and one last check..."
        self.trainer.stop()
        self._update.flush()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread; True when it has finished.

        This blocks the kernel: in a notebook the Stop button is handled only after the
        cell ends. Use ``await session.wait()`` there.
        """
        if self.thread is None:
            return True
        self.thread.join(timeout)
        return not self.thread.is_alive()

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
            with self._lock:
                self._note = (" (this Jupyter kernel handles Stop only after this cell: interrupt the kernel "
                              "to stop now, or update it: pip install -U ipykernel)")
                self.status += self._note
            self._update.flush()
        try:
            while self.running:
                await asyncio.sleep(poll)
        except (asyncio.CancelledError, KeyboardInterrupt):
            self.stop()
            raise
        return self.result

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def snapshot(self) -> dict:
        """A consistent copy of the progress for a view."""
        with self._lock:
            return {"step": self.step, "max_steps": self.max_steps, "elapsed_s": self.elapsed,
                    "max_seconds": self.max_seconds, "progress": self.progress, "status": self.status,
                    "losses": list(self.losses), "wers": list(self.wers)}

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
