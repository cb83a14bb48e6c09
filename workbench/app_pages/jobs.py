"""Training runs of the app: one background thread per run, one run per speaker at a time.

A :class:`TrainingJob` runs the steps of :func:`workbench.workflow.personalize_speaker`
(:func:`~workbench.workflow.prepare`, :func:`~workbench.workflow.train`,
:func:`~workbench.workflow.finish`: the same as the CLI and the notebooks) in a daemon thread and keeps a
lock-protected record of its progress that any browser session can poll with
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
from typing import TYPE_CHECKING, Any

from workbench.defaults import RUN_DEFAULTS
from workbench.errors import TrainingBusyError, TrainingError, WorkbenchError

if TYPE_CHECKING:
    from workbench.trainer import Trainer

__all__ = ["TrainingJob", "job_for", "start_training"]

_log = logging.getLogger(__name__)

_JOBS: dict[str, TrainingJob] = {}
_JOBS_LOCK = threading.Lock()


class TrainingJob:
    """One personalization run in a background thread.

    Args:
        speaker_dir: the speaker folder (already validated against the data folder).
        backend_factory: ``fn(model) -> backend``, called in the thread (a fresh copy per run).
        model: name passed to ``backend_factory``.
        config: the :class:`~workbench.trainer.TrainConfig` of this run (this object is
            the one the trainer reads, see :meth:`stop`).
        decoder: ``"lexicon"`` or ``"greedy"``.
        test_fraction: share of prompts kept aside to measure the result.
        clock: ``fn() -> seconds`` for the live progress between the trainer's events
            (default :func:`time.monotonic`; tests pass a fake).

    The time limit (``config.max_seconds``) is the trainer's own: a ceiling on training,
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
        self.phase = "waiting"
        self.run: Any = None
        self.error: str | None = None
        self.notice: str | None = None
        self.stop_requested = False
        self.started_at = time.time()
        self.finished_at: float | None = None
        self.step = 0
        self.max_steps = int(config.max_steps or 0)  # 0: the base model's, known when training starts
        self.max_seconds = config.max_seconds
        self.elapsed = 0.0
        self.losses: list[tuple[int, float]] = []
        self.wers: list[tuple[int, float]] = []
        self.stop_reason = ""
        self.cut_short = ""
        self.note = ""  # takes the trainer left out (too long...), named, with what to do
        self.clock = clock
        self.version = 0  # bumped on every change, so views redraw only when needed
        self._trainer: Trainer | None = None
        self._train_t0: float | None = None
        self._train_end: float | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ control
    @property
    def finished(self) -> bool:
        return self.phase in ("done", "nothing learned", "failed")

    @property
    def running(self) -> bool:
        return not self.finished

    def start(self) -> TrainingJob:
        """Start the thread (returns at once)."""
        if self._thread is not None:
            raise TrainingError("this training run was already started")
        self._thread = threading.Thread(target=self._target, name=f"workbench-train-{self.speaker_id}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop after the current step; the best adapter so far is kept, measured and saved."""
        with self._lock:
            if self.finished:
                return
            self.stop_requested = True
            self.version += 1
        if self._trainer is not None:
            self._trainer.stop()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread; True when the run has finished."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.finished

    def snapshot(self) -> dict[str, Any]:
        """A consistent copy of the progress, for a view."""
        with self._lock:
            return {
                "phase": self.phase, "step": self.step, "max_steps": self.max_steps, "elapsed": self.elapsed,
                "max_seconds": self.max_seconds, "losses": list(self.losses), "wers": list(self.wers),
                "stop_requested": self.stop_requested, "stop_reason": self.stop_reason, "error": self.error,
                "notice": self.notice, "version": self.version, "run": self.run, "model": self.model,
                "training_s": self.training_seconds(), "note": self.note, "cut_short": self.cut_short,
                "time_left_s": self._time_left(),
            }

    def training_seconds(self) -> float:
        """Seconds since training started (measurements included): live while it runs, then the
        trainer's own figure (the one saved with the personal model)."""
        if self._train_t0 is None:
            return 0.0
        if self._train_end is not None:
            return self.elapsed
        return max(0.0, self.clock() - self._train_t0)

    def _time_left(self) -> float | None:
        """:meth:`time_left` without the lock (the caller holds it)."""
        from workbench.progress import time_left_s

        if self.phase != "training" or self._train_t0 is None:
            return None
        seconds = self.training_seconds()
        left = time_left_s(self.step, self.max_steps, max(self.elapsed, 1e-9))  # the pace at the last step
        if left is None:
            return None
        left = max(0.0, left - max(0.0, seconds - self.elapsed))  # the time since the last step is spent
        return min(left, max(0.0, self.max_seconds - seconds)) if self.max_seconds else left

    def time_left(self) -> float | None:
        """Seconds of training left at most, at the pace measured so far (steps and checks of the
        kept-aside recordings), bounded by the time limit; early stopping usually ends the run
        sooner. None outside training, or before the first step."""
        with self._lock:
            return self._time_left()

    @property
    def fraction(self) -> float:
        """Progress in [0, 1]: steps, or the time budget, whichever is further along."""
        if self.finished:
            return 1.0
        done = self.step / self.max_steps if self.max_steps else 0.0
        if self.max_seconds:
            elapsed = self.elapsed
            if self.phase == "training" and self._train_t0 is not None:  # live, not only at step events
                elapsed = max(elapsed, self.training_seconds())
            done = max(done, elapsed / self.max_seconds)
        if self.step > 0:  # a step is done: never show an empty bar
            done = max(done, 0.001)
        return min(done, 1.0)

    # ------------------------------------------------------------------ the thread
    def _set(self, **changes: Any) -> None:
        with self._lock:
            for k, v in changes.items():
                setattr(self, k, v)
            self.version += 1

    def _on_start(self, e: dict) -> None:
        self._train_t0 = self.clock()
        self._set(phase="training", max_steps=int(e.get("max_steps", self.max_steps)),
                  max_seconds=e.get("max_seconds", self.max_seconds), note=str(e.get("left_out") or ""))

    def _on_step(self, e: dict) -> None:
        with self._lock:
            self.step, self.elapsed = int(e["step"]), float(e.get("elapsed_s", self.elapsed))
            self.losses.append((self.step, float(e["loss"])))
            self.version += 1

    def _on_eval(self, e: dict) -> None:
        with self._lock:
            self.wers.append((int(e["step"]), float(e["wer"])))
            self.version += 1

    def _on_stop(self, e: dict) -> None:
        from workbench.trainer import STOP_REASONS

        reason = str(e.get("reason", ""))
        self._train_end = self.clock()
        self._set(phase="measuring", stop_reason=str(e.get("text", STOP_REASONS.get(reason, reason))),
                  elapsed=float(e.get("elapsed_s", self.elapsed)), cut_short=str(e.get("note") or ""))

    def _attach(self, trainer: Trainer) -> None:
        self._trainer = trainer
        if self.stop_requested:
            trainer.stop()

    def _target(self) -> None:
        from workbench.plots import report_figures
        from workbench.workflow import NothingLearnedError, finish, prepare, train

        plan = None
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
            self._attach(plan.trainer)
            train(plan, progress=False, callbacks={"on_start": self._on_start, "on_step": self._on_step,
                                                   "on_eval": self._on_eval, "on_stop": self._on_stop})
            run = finish(plan, figures=report_figures)
            try:
                run.adapted.remove()  # the adapter is saved; free the live model
            except RuntimeError as err:  # torch failing to unmerge: the result is saved, keep it
                _log.warning("could not release the personal model of %s: %s", self.speaker_id, err)
            run.adapted = None
            self._release()
            plan = backend = None  # the base model, the trainer and its feature caches go with them
            self._set(run=run, phase="done", finished_at=time.time())
        except NothingLearnedError as err:  # Stop or the time limit came first: nothing saved, nothing broken
            try:
                plan.adapted.remove()  # the untrained adapter goes; the base model goes with the plan
            except RuntimeError as gone:
                _log.warning("could not remove the untrained adapter of %s: %s", self.speaker_id, gone)
            self._set(phase="nothing learned", finished_at=time.time(),
                      notice=f"{err} On this page: choose a longer time limit, and press Stop only after the word "
                             "error chart has its second point.")
        except WorkbenchError as err:
            self._set(phase="failed", error=str(err), finished_at=time.time())
        # The job's boundary: any failure in this thread is shown on the page and logged in full,
        # never lost with the thread (re-raising here would only print it to the server's console).
        except Exception as err:  # noqa: BLE001
            _log.error("training %s failed:\n%s", self.speaker_id, traceback.format_exc())
            self._set(phase="failed", finished_at=time.time(),
                      error=f"Training stopped because of an unexpected problem ({type(err).__name__}: {err}). "
                            "Your recordings are safe. Try again; if it happens again, send the server log "
                            "to whoever set up this computer.")
        finally:
            plan = None  # noqa: F841 - the base model, the trainer and its caches, on every path
            self._release()

    def _release(self) -> None:
        """Let go of the trainer (it holds the base model, the adapter, the feature caches and the
        optimizer), so that a finished run keeps only its figures and file paths in memory."""
        trainer, self._trainer = self._trainer, None
        if trainer is not None:
            trainer.events = {name: [] for name in trainer.events}  # its callbacks point back at this job


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
