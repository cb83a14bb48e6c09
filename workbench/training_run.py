"""One training run in a background thread, headless: the thread, the lock, Stop, the progress and its words.

Both views of a run wrap a :class:`TrainingRun`: the notebook's
:class:`~workbench.ui.trainer.TrainerSession` and the app's :class:`~workbench.app_pages.jobs.TrainingJob`.
The run follows a :class:`~workbench.trainer.Trainer`'s events (:mod:`workbench.trainer_events`) and
keeps, under one lock, what a view shows; :meth:`TrainingRun.progress` returns it as one frozen
:class:`TrainingProgress`. The time limit is the trainer's own (``TrainConfig.time_limit_s``, a ceiling
on :meth:`Trainer.fit <workbench.trainer.Trainer.fit>`, evaluations included): a run shows it and never
checks it itself, so the reason a run ended is the one the trainer saved.

``work`` is what the thread runs: ``trainer.fit``, or the workflow's steps around it (the app loads the
base model first, then :meth:`TrainingRun.attach` es the trainer it built). A Stop asked before the
trainer is attached stops it as soon as it is::

    run = TrainingRun(trainer.fit, trainer=trainer)
    run.start()                 # returns at once
    run.progress().status       # 'training: step 3 of at most 400, at most about 2 minutes left'
    run.stop()                  # after this step and one last check; the best adapter is kept
    run.join()
    run.result                  # the TrainResult (run.error: what went wrong, if it failed)
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from workbench._deprecated import renamed_fields, renamed_keywords, warn_renamed
from workbench.progress import time_left_s, time_left_text

if TYPE_CHECKING:  # annotations only: the views import this module without the trainer
    from workbench.trainer import Trainer

__all__ = ["FAILED", "FINISHED", "MEASURING", "TRAINING", "WAITING", "Throttle", "TrainingProgress", "TrainingRun"]

T = TypeVar("T")

# the phases a run goes through by itself; the work may name its own steps in between (set_phase)
WAITING = "waiting"  # not training yet (not started, or the work prepares: loading, featurizing...)
TRAINING = "training"  # from the trainer's on_start
MEASURING = "measuring"  # training has ended (on_stop) and the work goes on (the workflow's finish measures)
FINISHED = "finished"  # the work returned (a wrapper may give this phase another name: ``done=``)
FAILED = "failed"  # the work raised


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


@renamed_fields(max_seconds="time_limit_s")  # old names work, with a warning, until the next release
@dataclasses.dataclass(frozen=True)
class TrainingProgress:
    """One consistent look at a run, for a view. Seconds are wall-clock seconds of training.

    ``losses`` and ``wers`` are ``(step, value)`` pairs so far: the training loss of each step
    (its kind: ``loss_name``) and the validation WER of each check (0..1; step 0 is the base model).
    """

    phase: str  # WAITING, TRAINING, MEASURING, a step the work named, or a final phase (``finished``)
    status: str  # the run in words for people: "training: step 12 of at most 400, at most about ..."
    step: int  # training steps done
    max_steps: int  # the step limit (0: not known yet)
    elapsed_s: float  # seconds of training at the trainer's last event, its checks included (its clock)
    training_s: float  # the same, live: it goes on counting between the trainer's events
    time_limit_s: float | None  # the trainer's time ceiling; None: steps only
    time_left_s: float | None  # at most this much longer at the pace so far; None: not training, or no step yet
    fraction: float  # 0..1: steps or seconds, whichever ends the run first; 1 when finished
    losses: tuple[tuple[int, float], ...]
    wers: tuple[tuple[int, float], ...]
    loss_name: str  # "CTC" or "cross-entropy" ("" before a trainer is attached)
    left_out: str  # the takes the trainer left out (too long...), named, with what to do; "" when none
    stop_requested: bool  # Stop was asked (the run ends after the current step and one last check)
    stop_reason: str  # why training ended, in words (workbench.trainer.STOP_REASONS); "" until it has
    cut_short: str  # the time ceiling ended it before it converged: "stopped by the time limit at step N ..."
    finished: bool  # the work is over (finished, an outcome the wrapper named, or failed)
    error: str | None  # what went wrong, in words, when it failed
    version: int  # bumped on every change: a view redraws only when it moved


class TrainingRun(Generic[T]):
    """Run ``work`` in a daemon thread and keep its progress for any thread to read.

    Args:
        work: ``fn() -> result``, run in the thread (e.g. ``trainer.fit``); its return value
            becomes :attr:`result`.
        trainer: the :class:`~workbench.trainer.Trainer` to follow now (else :meth:`attach` it later,
            from the work).
        max_steps, time_limit_s: the limits to show before a trainer is attached (the trainer's own
            replace them).
        on_update: called after progress changes, at most once per ``update_interval`` seconds
            (and always at start, at Stop and at the end): a view's redraw. It runs on the
            training thread, outside the lock.
        clock: ``fn() -> seconds`` for the live seconds between the trainer's events (tests pass a fake).
        done: the final phase when the work returns (a wrapper's word, e.g. ``"done"``).
        outcomes: other final phases the work may set itself (:meth:`set_phase`), e.g. ``"nothing learned"``.
        explain: ``fn(error) -> str``: an error in words for the view (default ``str``).
        keep_error: keep the exception itself in :attr:`error` (its traceback holds the work's
            objects: a server's run that must let go of its model keeps only the words).
        name: the thread's name.
    """

    @renamed_keywords(max_seconds="time_limit_s")
    def __init__(self, work: Callable[[], T], *, trainer: Trainer | None = None, max_steps: int = 0,
                 time_limit_s: float | None = None, on_update: Callable[[], None] | None = None,
                 update_interval: float = 0.0, clock: Callable[[], float] = time.monotonic,
                 done: str = FINISHED, outcomes: Collection[str] = (),
                 explain: Callable[[BaseException], str] = str, keep_error: bool = True,
                 name: str = "workbench-trainer") -> None:
        self.work = work
        self.clock = clock
        self.updates = Throttle(on_update or (lambda: None), update_interval)
        self.thread: threading.Thread | None = None
        self.result: T | None = None
        self.error: BaseException | None = None  # with keep_error=False: None, the words are in error_text
        self.error_text: str | None = None
        self.started_at = time.time()  # wall clock, for people ("started at 14:05")
        self.finished_at: float | None = None
        self._done, self._final = done, {done, FAILED, *outcomes}
        self._explain, self._keep_error, self._name = explain, keep_error, name
        self._lock = threading.Lock()
        self.phase = WAITING
        self.status = "ready"
        self.step, self.max_steps, self.time_limit_s = 0, int(max_steps or 0), time_limit_s
        self.elapsed_s = 0.0
        self.losses: list[tuple[int, float]] = []
        self.wers: list[tuple[int, float]] = []
        self.loss_name = self.left_out = self.stop_reason = self.cut_short = ""
        self.hint = ""  # kept at the end of the training status (e.g. how to stop in an old kernel)
        self.stop_requested = False
        self.version = 0
        self._t0: float | None = None  # the clock at on_start
        self._t_end: float | None = None  # the clock at on_stop
        self.trainer: Trainer | None = None
        self._subscribed: list[tuple[str, Callable]] = []
        if trainer is not None:
            self.attach(trainer)

    # ---------------------------------------------------------------- the trainer
    def attach(self, trainer: Trainer) -> None:
        """Follow ``trainer``'s events from now on; a Stop asked already stops it at once."""
        subs = [("on_start", self._on_start), ("on_step", self._on_step), ("on_eval", self._on_eval),
                ("on_stop", self._on_stop)]
        for event, fn in subs:
            trainer.on(event, fn)
        with self._lock:
            self.trainer, self._subscribed = trainer, subs
            self.max_steps, self.time_limit_s = trainer.config.max_steps, trainer.config.time_limit_s
            self.loss_name = trainer.loss_name
            stop = self.stop_requested
            self.version += 1
        if stop:
            trainer.stop()

    def detach(self) -> None:
        """Stop following the trainer and let go of it (it holds the base model, the adapter and the
        feature caches): a finished run keeps only its figures."""
        with self._lock:
            trainer, subs = self.trainer, self._subscribed
            self.trainer, self._subscribed = None, []
        if trainer is not None:
            for event, fn in subs:
                if fn in trainer.events[event]:
                    trainer.events[event].remove(fn)

    # The handlers read the events by key, so a test or an old caller may pass the dicts they replaced.
    def _on_start(self, e: Mapping) -> None:
        with self._lock:
            self._t0 = self.clock()
            self.phase = TRAINING
            self.max_steps = int(e.get("max_steps", self.max_steps))
            self.time_limit_s = e["time_limit_s"] if "time_limit_s" in e else e.get("max_seconds", self.time_limit_s)
            self.left_out = str(e.get("left_out") or "")
            self.status = self._training_status()
            self.version += 1
        self.updates()

    def _on_step(self, e: Mapping) -> None:
        with self._lock:
            self.step, self.elapsed_s = int(e["step"]), float(e.get("elapsed_s", self.elapsed_s))
            self.losses.append((self.step, float(e["loss"])))
            self.status = self._training_status()
            self.version += 1
        self.updates()

    def _on_eval(self, e: Mapping) -> None:
        with self._lock:
            self.wers.append((int(e["step"]), float(e["wer"])))
            self.version += 1
        self.updates()

    def _on_stop(self, e: Mapping) -> None:
        with self._lock:
            self._t_end = self.clock()
            self.phase = MEASURING
            self.step = int(e.get("step", self.step))
            self.elapsed_s = float(e.get("elapsed_s", self.elapsed_s))  # the last check included
            self.stop_reason = str(e.get("text") or e.get("reason", ""))
            self.cut_short = str(e.get("note") or "")
            self.status = f"finished ({self.stop_reason}) after {self.step} steps in {self.elapsed_s:.0f} s"
            if self.cut_short:  # the time ceiling ended it before the model stopped improving
                self.status += f": {self.cut_short}"
            self.version += 1
        self.updates()

    # ---------------------------------------------------------------- control (any thread)
    def start(self, status: str = "starting") -> bool:
        """Start the work in a background thread (returns at once); False when it has started already."""
        with self._lock:
            if self.thread is not None:
                return False
            self.status = status
            self.version += 1
            self.thread = threading.Thread(target=self._target, name=self._name, daemon=True)
        self.thread.start()
        self.updates.flush()
        return True

    def stop(self) -> None:
        """Ask training to stop after the current step and one last check; the best adapter is kept.

        Asked before the trainer is attached (the base model still loading), it stops the trainer
        as soon as it is. After the run has finished it does nothing."""
        with self._lock:
            if self.phase in self._final:
                return
            self.stop_requested = True
            if self.phase != MEASURING:  # training, or about to: the status says the Stop is heard
                self.status = "stopping after this step and one last check..."
            trainer = self.trainer
            self.version += 1
        if trainer is not None:
            trainer.stop()
        self.updates.flush()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread; True when the work is over (False too when it was never started)."""
        if self.thread is not None:
            self.thread.join(timeout)
        return self.finished

    @property
    def finished(self) -> bool:
        """The work is over: returned (``done``), an outcome the work named, or failed."""
        return self.phase in self._final

    @property
    def running(self) -> bool:
        """The thread is alive."""
        return self.thread is not None and self.thread.is_alive()

    def set_phase(self, phase: str, **changes: Any) -> None:
        """Name the step the work is at (``"loading"``, ``"preparing"``...) or its outcome (one of
        ``outcomes``); ``changes``: other fields to set with it, at once (``time_limit_s``, ``finished_at``)."""
        self.update(phase=phase, **changes)

    def update(self, **changes: Any) -> None:
        """Set fields of the run together, under its lock (``phase``, ``max_steps``, ``time_limit_s``,
        ``finished_at``, ``status``)."""
        allowed = {"phase", "max_steps", "time_limit_s", "finished_at", "status"}
        if not set(changes) <= allowed:
            raise AttributeError(f"a training run has no settable field {sorted(set(changes) - allowed)}; "
                                 f"these are: {sorted(allowed)}")
        with self._lock:
            for key, value in changes.items():
                setattr(self, key, value)
            if self.phase in self._final and self.finished_at is None:
                self.finished_at = time.time()
            self.version += 1

    def set_hint(self, hint: str) -> None:
        """Keep ``hint`` at the end of the status while training (and add it to the status now)."""
        with self._lock:
            self.hint = hint
            self.status += hint
            self.version += 1
        self.updates.flush()

    # ---------------------------------------------------------------- the thread
    def _target(self) -> None:
        try:
            result = self.work()
        # The thread's boundary: any failure (an interrupt too) is kept and shown in the view, never lost
        # with the thread; re-raising here would only print it to a console no one reads.
        except BaseException as err:  # noqa: BLE001
            text = self._explain(err)
            with self._lock:
                self.error = err if self._keep_error else None
                self.error_text = text
                self.phase, self.status = FAILED, f"stopped with an error: {text}"
                self.finished_at = time.time()
                self.version += 1
        else:
            with self._lock:
                self.result = result
                if self.phase not in self._final:
                    self.phase = self._done
                if self.finished_at is None:
                    self.finished_at = time.time()
                self.version += 1
        finally:
            self.updates.flush()

    # ---------------------------------------------------------------- progress (any thread)
    def _training_s(self) -> float:
        """Seconds of training: live between the trainer's events, then the trainer's own figure."""
        if self._t0 is None or self._t_end is not None:
            return self.elapsed_s
        return max(0.0, self.clock() - self._t0)

    def _time_left(self) -> float | None:
        """Seconds of training left at most, at the pace of the steps so far (their checks included),
        bounded by the time ceiling; early stopping usually ends the run sooner. None outside training
        or before the first step."""
        if self.phase in self._final or self._t_end is not None:
            return None
        seconds = self._training_s()
        left = time_left_s(self.step, self.max_steps, max(self.elapsed_s, 1e-9))  # the pace at the last step
        if left is None:
            return None
        left = max(0.0, left - max(0.0, seconds - self.elapsed_s))  # the time since the last step is spent
        return min(left, max(0.0, self.time_limit_s - seconds)) if self.time_limit_s else left

    def _fraction(self) -> float:
        if self.phase in self._final:
            return 1.0
        done = self.step / self.max_steps if self.max_steps else 0.0
        if self.time_limit_s:
            elapsed = self.elapsed_s
            if self.phase == TRAINING and self._t0 is not None:  # live, not only at the trainer's events
                elapsed = max(elapsed, self._training_s())
            done = max(done, elapsed / self.time_limit_s)
        if self.step > 0:  # a step is done: never show an empty bar
            done = max(done, 0.001)
        return min(done, 1.0)

    def _training_status(self) -> str:
        if self.stop_requested:
            return f"stopping after this step and one last check (step {self.step}, {self.elapsed_s:.0f} s)..."
        left = time_left_text(self._time_left())  # at the pace so far; early stopping usually comes sooner
        left = f", {left}" if left else ""
        if self.time_limit_s is not None:
            return (f"training: {self.elapsed_s:.0f} of at most {self.time_limit_s:.0f} s, step {self.step} "
                    f"(at most {self.max_steps} steps){left}{self.hint}")
        return f"training: step {self.step} of at most {self.max_steps}{left}{self.hint}"

    @property
    def fraction(self) -> float:
        """Progress in [0, 1]: steps or the time ceiling, whichever is further along; 1 when finished."""
        with self._lock:
            return self._fraction()

    def time_left(self) -> float | None:
        """Seconds of training left at most, at the pace so far; None outside training or before a step."""
        with self._lock:
            return self._time_left()

    def training_s(self) -> float:
        """Seconds of training so far (its checks included): live while it runs, then the trainer's figure."""
        with self._lock:
            return self._training_s()

    def training_seconds(self) -> float:
        """Deprecated: the old name of :meth:`training_s` (goes in the next release)."""
        warn_renamed("TrainingRun", "training_seconds", "training_s")
        return self.training_s()

    @property
    def max_seconds(self) -> float | None:
        """Deprecated: the old name of :attr:`time_limit_s` (goes in the next release)."""
        warn_renamed("TrainingRun", "max_seconds", "time_limit_s")
        return self.time_limit_s

    def progress(self) -> TrainingProgress:
        """A consistent copy of the progress, for a view."""
        with self._lock:
            return TrainingProgress(
                phase=self.phase, status=self.status, step=self.step, max_steps=self.max_steps,
                elapsed_s=self.elapsed_s, training_s=self._training_s(), time_limit_s=self.time_limit_s,
                time_left_s=self._time_left(), fraction=self._fraction(), losses=tuple(self.losses),
                wers=tuple(self.wers), loss_name=self.loss_name, left_out=self.left_out,
                stop_requested=self.stop_requested, stop_reason=self.stop_reason, cut_short=self.cut_short,
                finished=self.phase in self._final, error=self.error_text, version=self.version)
