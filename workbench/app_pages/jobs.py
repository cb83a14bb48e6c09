"""Training runs of the app: one background run per speaker at a time.

A :class:`TrainingJob` runs the steps of :func:`workbench.workflow.personalize_speaker`
(:func:`~workbench.workflow.prepare`, :func:`~workbench.workflow.train`,
:func:`~workbench.workflow.finish`: the same as the CLI and the notebooks) as a headless
:class:`~workbench.training_run.TrainingRun` (the thread, Stop, the progress and its words, shared
with the notebook's trainer view), whose progress any browser session can poll with
:meth:`TrainingJob.snapshot`. The module-level registry (:func:`start_training`,
:func:`job_for`) is keyed by the speaker folder, so a second run for the same
speaker, from any session, is refused with :class:`TrainingBusyError` while the
first is running; a session that opens the speaker sees the run in progress.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from workbench.defaults import RUN_DEFAULTS
from workbench.errors import TrainingBusyError, TrainingError, WorkbenchError
from workbench.training_run import TrainingProgress, TrainingRun

__all__ = ["TrainingJob", "job_for", "start_training"]

_log = logging.getLogger(__name__)

_JOBS: dict[str, TrainingJob] = {}
_JOBS_LOCK = threading.Lock()
_RUN_FIELDS = {"phase", "max_steps", "time_limit_s", "finished_at"}  # what _set hands to the run


class TrainingJob:
    """One personalization run in a background thread.

    Args:
        speaker_dir: the speaker folder (already validated against the data folder).
        backend_factory: ``fn(model) -> backend``, called in the thread (a fresh copy per run).
        model: name passed to ``backend_factory``.
        config: the :class:`~workbench.trainer.TrainConfig` of this run, or ``fn(backend) -> TrainConfig``.
        decoder: ``"lexicon"`` or ``"greedy"``.
        test_fraction: share of prompts kept aside to measure the result.
        clock: ``fn() -> seconds`` for the live progress between the trainer's events
            (default :func:`time.monotonic`; tests pass a fake).

    The time limit (``config.time_limit_s``) is the trainer's own: a ceiling on training,
    its measurements of the kept-aside recordings included, with the last check of the
    steps since the previous one inside it (:meth:`workbench.trainer.Trainer.fit`). With the
    defaults a quiet computer never reaches it: training ends when the model stops improving.
    The job only shows it; the reason shown when the run ends is the one saved with the personal
    model and written in the report (:data:`workbench.trainer.STOP_REASONS`), and a run the
    ceiling cut short says so (:attr:`cut_short`). While it trains, :meth:`time_left` estimates
    the time left from the measured pace.

    When the run ends, the job lets go of the trainer, the base model and the feature
    caches (some hundred MB each for Whisper); what it keeps is :attr:`run`: figures,
    file paths and the training history.

    Attributes:
        phase: ``"waiting"``, ``"loading"`` (the base model), ``"preparing"`` (features),
            ``"training"``, ``"measuring"`` (transcribing the kept-aside recordings,
            writing the report), then ``"done"``, ``"nothing learned"`` (the run ended before
            its first check, so nothing was saved: an outcome, not a failure) or ``"failed"``.
        run: the :class:`~workbench.workflow.PersonalizationRun` once done (its live
            model is released; the personal adapter is on disk).
        error: the plain-language problem when ``phase == "failed"``.
        notice: what happened and what to do when ``phase == "nothing learned"``.
        cut_short: when the time ceiling ended the training: "stopped by the time limit at step N
            of about M; the model may improve with more time" (else "").
    """

    def __init__(self, speaker_dir: Path, *, backend_factory: Any, model: str, config: Any,
                 decoder: str = RUN_DEFAULTS.decoder, test_fraction: float = RUN_DEFAULTS.test_fraction,
                 clock: Any = time.monotonic) -> None:
        self.speaker_dir = Path(speaker_dir)
        self.speaker_id = self.speaker_dir.name
        self.backend_factory = backend_factory
        self.model = model
        self.config = config
        self.decoder = decoder
        self.test_fraction = test_fraction
        self.clock = clock
        self.run: Any = None
        self.notice: str | None = None
        # the thread, Stop and the progress (0 steps: the base model's limit, known when training starts)
        self.training = TrainingRun(self._work, max_steps=int(config.max_steps or 0), time_limit_s=config.time_limit_s,
                                    clock=clock, done="done", outcomes=("nothing learned",), explain=self._explain,
                                    keep_error=False, name=f"workbench-train-{self.speaker_id}")
        self._on_start, self._on_step = self.training._on_start, self.training._on_step
        self._on_eval, self._on_stop = self.training._on_eval, self.training._on_stop

    # ------------------------------------------------------------------ the run's state, read through
    phase = property(lambda self: self.training.phase)
    error = property(lambda self: self.training.error_text)
    stop_requested = property(lambda self: self.training.stop_requested)
    started_at = property(lambda self: self.training.started_at)
    finished_at = property(lambda self: self.training.finished_at)
    step = property(lambda self: self.training.step)
    max_steps = property(lambda self: self.training.max_steps)
    time_limit_s = property(lambda self: self.training.time_limit_s)
    elapsed = property(lambda self: self.training.elapsed_s)
    losses = property(lambda self: self.training.losses)
    wers = property(lambda self: self.training.wers)
    stop_reason = property(lambda self: self.training.stop_reason)
    cut_short = property(lambda self: self.training.cut_short)
    note = property(lambda self: self.training.left_out, doc="takes the trainer left out (too long...), named")
    version = property(lambda self: self.training.version)

    # ------------------------------------------------------------------ control
    @property
    def finished(self) -> bool:
        return self.training.finished

    @property
    def running(self) -> bool:
        return not self.finished

    def start(self) -> TrainingJob:
        """Start the thread (returns at once)."""
        if not self.training.start():
            raise TrainingError("this training run was already started")
        return self

    def stop(self) -> None:
        """Stop after the current step; the best adapter so far is kept, measured and saved.
        Pressed while the base model loads, it stops the trainer as soon as there is one."""
        self.training.stop()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread; True when the run has finished."""
        return self.training.join(timeout)

    def progress(self) -> TrainingProgress:
        """The run's progress as one frozen record (:class:`~workbench.training_run.TrainingProgress`)."""
        return self.training.progress()

    def snapshot(self) -> dict[str, Any]:
        """A consistent copy of the progress, for a view (the page's keys)."""
        p = self.training.progress()  # first: the work sets run and notice before its final phase
        return {
            "phase": p.phase, "step": p.step, "max_steps": p.max_steps, "elapsed": p.elapsed_s,
            "time_limit_s": p.time_limit_s, "losses": list(p.losses), "wers": list(p.wers),
            "stop_requested": p.stop_requested, "stop_reason": p.stop_reason, "error": p.error,
            "notice": self.notice, "version": p.version, "run": self.run, "model": self.model,
            "training_s": p.training_s, "note": p.left_out, "cut_short": p.cut_short,
            "time_left_s": p.time_left_s,
        }

    def training_s(self) -> float:
        """Seconds since training started (measurements included): live while it runs, then the
        trainer's own figure (the one saved with the personal model)."""
        return self.training.training_s()

    def time_left(self) -> float | None:
        """Seconds of training left at most, at the pace measured so far (steps and checks of the
        kept-aside recordings), bounded by the time limit; early stopping usually ends the run
        sooner. None outside training, or before the first step."""
        return self.training.time_left()

    @property
    def fraction(self) -> float:
        """Progress in [0, 1]: steps, or the time budget, whichever is further along."""
        return self.training.fraction

    # ------------------------------------------------------------------ the thread
    def _set(self, **changes: Any) -> None:
        """Set the job's fields: the run's (phase, limits, finished_at) through it, under its lock."""
        for key in set(changes) - _RUN_FIELDS:
            setattr(self, key, changes.pop(key))
        self.training.update(**changes)

    def _explain(self, err: BaseException) -> str:
        """A failure in the thread, in words for the page; anything unexpected is logged in full,
        never lost with the thread."""
        if isinstance(err, WorkbenchError):
            return str(err)
        _log.error("training %s failed:\n%s", self.speaker_id, "".join(traceback.format_exception(err)))
        return (f"Training stopped because of an unexpected problem ({type(err).__name__}: {err}). "
                "Your recordings are safe. Try again; if it happens again, send the server log "
                "to whoever set up this computer.")

    def _work(self) -> Any:
        from workbench.plots import report_figures
        from workbench.workflow import NothingLearnedError, finish, prepare, train

        plan = backend = None
        try:
            self._set(phase="loading")
            if self.model == "auto":  # simulated speakers: the built-in model; real people: Whisper
                from workbench.corpus import SpeakerCorpus
                from workbench.models.choice import choose_base_model

                self.model = choose_base_model(SpeakerCorpus.open(self.speaker_dir).info).name
            backend = self.backend_factory(self.model)
            config = self.config(backend) if callable(self.config) else self.config
            self._set(phase="preparing")
            plan = prepare(self.speaker_dir, backend=backend, config=config, decoder=self.decoder,
                           test_fraction=self.test_fraction)
            self.training.attach(plan.trainer)
            train(plan, progress=False)
            run = finish(plan, figures=report_figures)
            try:
                run.adapted.remove()  # the adapter is saved; free the live model
            except RuntimeError as err:  # torch failing to unmerge: the result is saved, keep it
                _log.warning("could not release the personal model of %s: %s", self.speaker_id, err)
            run.adapted = None
            self.run = run  # before the final phase: a view that sees "done" sees the run
            return run
        except NothingLearnedError as err:  # Stop or the time limit came first: nothing saved, nothing broken
            try:
                plan.adapted.remove()  # the untrained adapter goes; the base model goes with the plan
            except RuntimeError as gone:
                _log.warning("could not remove the untrained adapter of %s: %s", self.speaker_id, gone)
            self.notice = (f"{err} On this page: choose a longer time limit, and press Stop only after the word "
                           "error chart has its second point.")
            self._set(phase="nothing learned")
            return None
        finally:
            plan = backend = None  # noqa: F841 - the base model, the trainer and its caches, on every path
            self.training.detach()  # the trainer's callbacks point back at this job


def _key(speaker_dir: Path) -> str:
    return str(Path(speaker_dir).resolve())


def job_for(speaker_dir: Path) -> TrainingJob | None:
    """The latest run of this speaker in this server process (running or finished), or None."""
    with _JOBS_LOCK:
        return _JOBS.get(_key(speaker_dir))


def start_training(speaker_dir: Path, **kwargs: Any) -> TrainingJob:
    """Start a :class:`TrainingJob` for ``speaker_dir``; refuse if one is already running for it.

    Raises:
        TrainingBusyError: a run for this speaker is going (in this or another browser window).
    """
    key = _key(speaker_dir)
    with _JOBS_LOCK:
        old = _JOBS.get(key)
        if old is not None and old.running:
            since = time.strftime("%H:%M", time.localtime(old.started_at))
            raise TrainingBusyError(
                f"Personalization for {old.speaker_id} is already running (started at {since}, perhaps in "
                "another browser window). Only one run per speaker at a time: wait until it finishes, "
                "or press Stop on the Personalize page.")
        job = TrainingJob(Path(speaker_dir), **kwargs)
        _JOBS[key] = job
        job.start()
    return job
