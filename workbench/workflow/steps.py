"""The main job for one speaker, in steps: :func:`prepare`, :func:`train`, :func:`finish`.

:func:`personalize_speaker` is the three in order; a live view (notebook 03, the app)
calls them itself, so that it holds the trainer (its ``stop()``) between the first two.

A run leaves its base model as it found it: :func:`personalize_speaker` takes its adapter out of the
base model when it ends (however it ends), so the same loaded model serves the next speaker. The steps
keep the adapter in place from :func:`prepare` to :func:`finish` and after, for a view's "try it";
:meth:`PersonalizationPlan.release` (or ``run.adapted.remove()``) takes it out.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench._disk import check_room_for_run, report_disk_errors, save_or_keep
from workbench.dataset import examples_from_corpus
from workbench.defaults import RUN_DEFAULTS
from workbench.errors import TrainingError
from workbench.metrics import Comparison, compare
from workbench.trainer import TrainConfig, Trainer, TrainResult
from workbench.workflow.common import (
    FigureMaker,
    _check_writable,
    _progress_bar,
    build_decoder,
    decoder_name,
    default_config,
    three_way_split,
)

if TYPE_CHECKING:
    from workbench.adapters import Adapted
    from workbench.corpus import SpeakerCorpus
    from workbench.dataset import Example
    from workbench.models import ASRBackend

__all__ = ["NothingLearnedError", "PersonalizationPlan", "PersonalizationRun", "finish", "nothing_learned",
           "nothing_learned_error", "personalize_speaker", "prepare", "train"]


class NothingLearnedError(TrainingError):
    """The run stopped before its first check on the validation recordings: the adapter is untrained."""


def nothing_learned(result: TrainResult) -> bool:
    """True when no check after step 0 ran: the adapter kept is the untrained one (nothing was learned)."""
    return not any(h.get("kind") == "eval" and h.get("step", 0) > 0 for h in result.history)


def nothing_learned_error(result: TrainResult, eval_every: int, *, what: str = "personal model",
                          unsaved: str = "no personal model was saved and no report was written") -> NothingLearnedError:
    """The plain :class:`NothingLearnedError` for a run that :func:`nothing_learned` (what happened, what to do).

    Args:
        eval_every: the run's steps between checks (``TrainConfig.eval_every``).
        what: what is checked, e.g. ``"bank"``.
        unsaved: what was therefore not written, in words.
    """
    return NothingLearnedError(
        f"Stopped before the first check: nothing learned yet. The {what} is checked on the recordings kept "
        f"aside every {eval_every} training steps, and this run ended after {result.steps} "
        f"({result.stopped_because}), so {unsaved}. The recordings are safe: train again and let it run past "
        f"step {eval_every}.")


@dataclasses.dataclass
class PersonalizationRun:
    """Everything one personalization produced."""

    speaker_id: str
    comparison: Comparison  # held-out ASR word error rates before/after
    train_result: TrainResult
    submodel_path: Path
    report_html: Path
    report_csv: Path
    # from finish(): the live injection (backend + adapter), ready to transcribe until .remove(). From
    # personalize_speaker(), which leaves the base model as it found it: taken out already (.remove() does
    # nothing, and it transcribes as the base model): load submodel_path with load_submodel to use it.
    adapted: Adapted | None
    advice: str | None = None  # after "No improvement": what to do next, in plain words (None: it improved)


@dataclasses.dataclass
class PersonalizationPlan:
    """One speaker's run, prepared by :func:`prepare`; :func:`train` and :func:`finish` take it on.

    ``train``, ``valid`` and ``held_out`` are :class:`~workbench.dataset.Example` lists
    (16 kHz waveforms with their texts) of different prompts; ``decoder`` scores both the
    base and the personal model. :func:`train` sets ``result``.
    """

    corpus: SpeakerCorpus
    backend: ASRBackend
    base_model_reason: str  # why this base model, in words (for a person)
    config: TrainConfig
    train: list[Example]
    valid: list[Example]  # decides when to stop and which checkpoint is kept
    held_out: list[Example]  # the test phrases: the before/after figures, never trained on
    decoder: Callable | None
    decoder_label: str  # what decodes, in words (for the report)
    trainer: Trainer
    submodel_dir: Path
    report_dir: Path
    result: TrainResult | None = None
    _base: list[str] | None = dataclasses.field(default=None, repr=False)

    @property
    def adapted(self) -> Adapted:
        """The base model with the (untrained, then trained) personal adapter in place."""
        return self.trainer.adapted

    def release(self) -> None:
        """Take the adapter out of the base model (idempotent): the base model is as :func:`prepare`
        found it, and another run (or ``inject``) may use it. The trained weights stay readable on
        :attr:`adapted` and, after :func:`finish`, in the Submodel file."""
        self.adapted.remove()

    def base_transcripts(self) -> list[str]:
        """What the base model (the adapter switched off) hears in ``held_out``; computed once.

        The base model is frozen, so this is the "before" whether it is asked before
        training (to show the starting point) or after it (:func:`finish`).
        """
        if self._base is None:
            with self.adapted.disabled():
                self._base = self.adapted.transcribe([e.wav for e in self.held_out], decoder=self.decoder) \
                    if self.held_out else []
        return self._base


def prepare(
    speaker_dir: str | Path,
    *,
    backend: ASRBackend | None = None,
    model: str = RUN_DEFAULTS.model,
    config: TrainConfig | None = None,
    settings: dict[str, Any] | None = None,
    max_train: int | None = None,
    test_fraction: float = RUN_DEFAULTS.test_fraction,
    valid_fraction: float = RUN_DEFAULTS.valid_fraction,
    decoder: str = RUN_DEFAULTS.decoder,
    seed: int = RUN_DEFAULTS.seed,
    report_dir: str | Path | None = None,
    submodel_dir: str | Path | None = None,
    window: str | None = None,
    vocabulary: Sequence[str] | None = None,
) -> PersonalizationPlan:
    """Step 1: the data split, the base model, the settings and the trainer, for one speaker folder.

    Whether the Submodel and the report can be saved is checked first, before any model
    is loaded (a read-only or full disk is found now, not after the training).

    Every default is :data:`workbench.defaults.RUN_DEFAULTS`'s (the CLI's, the app's and the notebooks').

    Args:
        speaker_dir: a :class:`~workbench.corpus.SpeakerCorpus` folder.
        backend: a loaded base model (default: ``load_base_model`` of ``model``).
        model: a base model name, or ``"auto"`` (see :func:`workbench.models.choice.choose_base_model`).
        config: training settings (defaults need no tuning).
        settings: without ``config``: :class:`TrainConfig` fields over the base model's
            defaults (see :func:`default_config`), e.g. ``{"max_steps": 60}``.
        max_train: use at most this many utterances for training and validation together
            (data-efficiency studies).
        test_fraction: share of prompts held out for the before/after WER (never used
            in training, nor to choose the checkpoint).
        valid_fraction: share of the remaining prompts kept aside as validation: their
            WER stops training early and their loss picks the checkpoint kept.
        decoder: ``"greedy"`` or ``"lexicon"`` (see :func:`build_decoder`); the same
            decoder scores the base and the personal model.
        report_dir: where the report goes (default ``<speaker_dir>/reports``).
        submodel_dir: where the Submodel goes (default ``<speaker_dir>/submodels``).
        window: Whisper's encoding window to train on, ``"auto"`` (the recording + 1 s, ~9x cheaper
            per step) or ``"full"`` (Whisper's 30 s: what faster-whisper and transformers encode, for a
            personal model meant for export); None: the base model's own setting (``"auto"``). The
            Submodel records it, and every later decode of it uses it.
        vocabulary: the word list the before/after transcripts are decoded with (names and
            words the speaker uses, :mod:`workbench.vocabulary`); None: the speaker's saved list.
    """
    from workbench.corpus import SpeakerCorpus
    from workbench.vocabulary import speaker_vocabulary

    corpus = SpeakerCorpus.open(speaker_dir)
    # before the training, not at save time: a read-only or full disk is found first (issue 16)
    inside = (*(() if submodel_dir else ("submodels",)), *(() if report_dir else ("reports",)))
    if inside:
        corpus.check_writable(*inside, what="Nothing was trained: the personal model could not be saved there.")
    for folder, name in ((submodel_dir, "personal.safetensors"), (report_dir, "report.html")):
        if folder is not None:
            _check_writable(Path(folder) / name)
    train_utts, valid_utts, test_utts = three_way_split(corpus, test_fraction=test_fraction,
                                                        valid_fraction=valid_fraction, seed=seed, max_train=max_train)
    if backend is None:
        from workbench.models.choice import choose_base_model
        from workbench.models import load_base_model

        choice = choose_base_model(corpus.info, model)  # "auto": never a download (a name the user gave may)
        backend, reason = load_base_model(choice.name, offline=model == "auto"), choice.reason
    else:
        reason = f"base model: {backend.name} (given)"
    train_ex, valid_ex, held_out = (examples_from_corpus(corpus, u) for u in (train_utts, valid_utts, test_utts))
    dec = build_decoder(decoder, prompts=corpus.prompts(), backend=backend,
                        vocabulary=speaker_vocabulary(corpus.root) if vocabulary is None else vocabulary)
    config = config or default_config(backend, **{"seed": seed, **(settings or {})})
    from workbench.models.supernet.adapters import sandwich_adapter

    adapted = sandwich_adapter(backend, config)  # the supernet's largest size: one adapter for every size
    try:
        trainer = _trainer_on_window(window, backend, lambda: Trainer(backend, train_ex, valid_ex, config, decoder=dec,
                                                                      adapted=adapted))
    except BaseException:
        if adapted is not None:  # injected before the trainer refused the data: the base model goes back as it came
            adapted.remove()
        raise
    if trainer.adapted is None:
        raise TrainingError("the personalization workflow trains adapters; use Trainer directly for the baselines")
    try:
        check_room_for_run(trainer, held_out=len(held_out),  # a full disk: found now (issue 24)
                           submodel_dir=Path(submodel_dir or corpus.root / "submodels"),
                           report_dir=Path(report_dir or corpus.root / "reports"))
    except BaseException:
        trainer.adapted.remove()  # nothing will train: the given base model goes back as it came
        raise
    return PersonalizationPlan(corpus, backend, reason, config, train_ex, valid_ex, held_out, dec,
                               decoder_name(decoder, backend), trainer,
                               Path(submodel_dir) if submodel_dir else corpus.root / "submodels",
                               Path(report_dir) if report_dir else corpus.root / "reports")


def _trainer_on_window(window: str | None, backend: ASRBackend, build: Callable[[], Trainer]) -> Trainer:
    """``build()`` (a Trainer: it caches the features) on Whisper's ``window``; the trained adapter keeps
    the window (``Adapted.window``), and the shared base model's own setting is left as it was."""
    if window is None:
        return build()
    if window not in ("auto", "full"):
        raise TrainingError(f"the encoding window must be 'auto' (the recording + 1 s) or 'full' (Whisper's "
                            f"30 s), got {window!r}")
    if not hasattr(backend, "encoding_window"):
        raise TrainingError(f"the encoding window is a Whisper setting, and {backend.name} is not a Whisper model "
                            "(it always hears the whole recording): leave out the window")
    before, backend.window = backend.window, window
    try:
        trainer = build()
    finally:
        backend.window = before
    if trainer.adapted is not None:
        trainer.adapted.window = window
    return trainer


def train(plan: PersonalizationPlan, *, progress: bool = True,
          callbacks: dict[str, Callable[[dict], None]] | None = None) -> TrainResult:
    """Step 2: train the personal adapter (returns when training has finished or was stopped).

    Training stops at early stopping or the step limit, or after ``plan.trainer.stop()``
    (thread-safe: a Stop button calls it); the best adapter so far is kept. The time limit is a
    ceiling the defaults do not reach on a quiet computer; a run it cut short says so
    (``result.cut_short``, also in the Submodel file and the report).

    Args:
        progress: show a tqdm progress bar.
        callbacks: extra trainer event subscriptions (event name -> ``fn(payload)``),
            e.g. a live plot; a view may also subscribe on ``plan.trainer`` itself.
    """
    if plan.result is not None:
        raise TrainingError("this run has been trained already: prepare a new one to train again")
    if progress:
        _progress_bar(plan.trainer)
    for event, fn in (callbacks or {}).items():
        plan.trainer.on(event, fn)
    from workbench.workflow.busy import training_lock

    with training_lock(plan.corpus.root):  # a live correction waits for the run (workbench.live.corrections)
        plan.result = plan.trainer.fit()
    return plan.result


def finish(plan: PersonalizationPlan, *, figures: FigureMaker | None = None) -> PersonalizationRun:
    """Step 3: measure the base and the personal model on the test phrases, save the Submodel, write the report.

    A run that did not beat the base model is saved and reported with advice (``run.advice``,
    and "what to do next" in the report); it is not used as the personal model
    (:func:`~workbench.workflow.personal_submodel`) unless the user chooses it.

    Raises:
        NothingLearnedError: the run stopped before its first check (no evaluation after step 0),
            so its adapter is untrained: nothing is saved and no report is written.

    Args:
        figures: ``fn(comparison, history) -> figures`` for the report, e.g.
            :func:`workbench.plots.report_figures` (a front end with matplotlib passes it);
            None: a report without figures.
    """
    result = plan.result
    if result is None:
        raise TrainingError("nothing has been trained yet: train first, then finish")
    if nothing_learned(result):  # an untrained adapter is not a personal model: nothing is saved or reported
        raise nothing_learned_error(result, plan.config.eval_every)
    corpus, config, adapted, held_out = plan.corpus, plan.config, plan.adapted, plan.held_out
    after = adapted.transcribe([e.wav for e in held_out], decoder=plan.decoder) if held_out else []
    comparison = compare([e.text for e in held_out], plan.base_transcripts(), after,
                         utt_ids=[e.utt_id for e in held_out])
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    minutes = sum(e.seconds for e in plan.train) / 60
    training = {"utterances": len(plan.train), "validation_utterances": len(plan.valid),
                "minutes": round(minutes, 2), "utt_ids": [e.utt_id for e in plan.train],
                "valid_utt_ids": [e.utt_id for e in plan.valid],
                "steps": result.steps, "seconds": round(result.seconds, 1), "stopped": result.stopped_reason,
                "stopped_because": result.stopped_because,  # the code's words (trainer.STOP_REASONS), as the app says
                "best_step": result.best_step, "decoder": plan.decoder_label}
    if result.cut_short:  # the time ceiling, not convergence, ended it: say so wherever the run is shown
        training["cut_short"] = result.cut_short
    if hasattr(plan.backend, "encoding_window"):  # Whisper: the window it learned, decoded on from now on
        training["window"] = plan.backend.encoding_window
    from workbench.corpus import use_counts

    takes = {u.utt_id: u for u in corpus.utterances("ok")}
    use = use_counts(takes.values(), [takes[e.utt_id] for e in [*plan.train, *plan.valid] if e.utt_id in takes],
                     [takes[e.utt_id] for e in held_out if e.utt_id in takes])
    training["from_use"] = use["from_use"]
    metrics = {"wer_before": comparison.wer_before, "wer_after": comparison.wer_after,
               "cer_before": comparison.cer_before, "cer_after": comparison.cer_after,
               "held_out_utterances": len(held_out), "interval": comparison.interval}
    submodel = save_or_keep(lambda path: adapted.save(  # a full disk now: kept elsewhere, with a plain message
        path, speaker_ids=[corpus.speaker_id], training=training, metrics=metrics,
        specaugment=None if config.specaugment is None else config.specaugment.to_dict()),
        plan.submodel_dir / f"{config.adapter.family}-{stamp}.safetensors", speaker_dir=corpus.root)
    report = result.parameter_report
    adapter_info = {"family": config.adapter.family, "parameters per speaker": report.get("per_speaker"),
                    "share of the base model": f"{report.get('per_speaker_percent', 0):.2f}%",
                    "base model": plan.backend.name, "training steps": result.steps,
                    "training time": f"{result.seconds:.0f} s", "stopped because": result.stopped_because,
                    "file": submodel.name}
    from workbench.workflow.personal import run_advice

    advice = run_advice(comparison.wer_before, comparison.wer_after, training)
    if result.cut_short:
        adapter_info["time limit"] = result.cut_short[0].upper() + result.cut_short[1:] + "."
    if advice:
        adapter_info["what to do next"] = advice
    data = {"training utterances": len(plan.train), "validation utterances (decide when to stop)": len(plan.valid),
            "training minutes": f"{minutes:.1f}",
            "held-out utterances": len(held_out), "decoder": plan.decoder_label}
    data["of which from use (corrected live captions)"] = use["from_use"]
    if use["kept_out"]:
        data["corrections kept out of training (they are test phrases)"] = use["kept_out"]
    from workbench.report import write_report

    with report_disk_errors(plan.report_dir, submodel=submodel, speaker_dir=corpus.root):
        html_path, csv_path = write_report(plan.report_dir, speaker=corpus.info, comparison=comparison,
                                           adapter=adapter_info, data=data, name=f"report-{stamp}",
                                           figures=figures(comparison, result.history) if figures else ())
    return PersonalizationRun(corpus.speaker_id, comparison, result, submodel, html_path, csv_path, adapted, advice)


def personalize_speaker(
    speaker_dir: str | Path,
    *,
    backend: ASRBackend | None = None,
    model: str = RUN_DEFAULTS.model,
    config: TrainConfig | None = None,
    max_train: int | None = None,
    test_fraction: float = RUN_DEFAULTS.test_fraction,
    valid_fraction: float = RUN_DEFAULTS.valid_fraction,
    decoder: str = RUN_DEFAULTS.decoder,
    progress: bool = True,
    callbacks: dict[str, Callable[[dict], None]] | None = None,
    report_dir: str | Path | None = None,
    seed: int = RUN_DEFAULTS.seed,
    trainer_hook: Callable[[Trainer], None] | None = None,
    figures: FigureMaker | None = None,
    window: str | None = None,
    vocabulary: Sequence[str] | None = None,
) -> PersonalizationRun:
    """Personalize one speaker folder end to end: :func:`prepare`, :func:`train`, :func:`finish`.

    The arguments are theirs (see them); ``trainer_hook`` is called with the
    :class:`~workbench.trainer.Trainer` before it starts, e.g. so an app can call its
    thread-safe ``stop()``.

    The run leaves ``backend`` as it found it: its adapter is taken out when the run ends, also
    when it fails, so the same loaded model personalizes the next speaker. ``run.adapted`` is
    then the released adapter (its weights, ``parameter_report()``; it no longer changes what the
    base model hears): to transcribe with the personal model, load the saved file, e.g.
    ``adapted, _ = load_submodel(backend, run.submodel_path)`` (:mod:`workbench.adapters`).
    """
    plan = prepare(speaker_dir, backend=backend, model=model, config=config, max_train=max_train,
                   test_fraction=test_fraction, valid_fraction=valid_fraction, decoder=decoder, seed=seed,
                   report_dir=report_dir, window=window, vocabulary=vocabulary)
    try:
        if trainer_hook is not None:
            trainer_hook(plan.trainer)
        train(plan, progress=progress, callbacks=callbacks)
        return finish(plan, figures=figures)
    finally:
        plan.release()
