"""Live personalization: a small trainer with named events, a Stop flag and checkpoints.

The trainer knows nothing about widgets. A notebook, the app or the CLI
subscribes to its events (minGPT style)::

    trainer = Trainer(backend, train, valid, TrainConfig())
    trainer.on("on_step", lambda e: print(e.step, e.loss))
    result = trainer.fit()          # or in a thread: workbench.training_run.TrainingRun (Stop, progress)

Events (each callback gets one frozen record of :mod:`workbench.trainer_events`, also readable as the
dict it replaced, ``e["step"]``): ``on_start`` :class:`StartEvent` (steps planned, data sizes, the takes
left out), ``on_step`` :class:`StepEvent`, ``on_eval`` :class:`EvalEvent` (step 0 = the base model),
``on_best`` :class:`BestEvent` (a new lowest validation loss: the checkpoint kept), ``on_stop``
:class:`StopEvent` (the reason, in words too, :data:`STOP_REASONS`, and :attr:`TrainResult.cut_short`),
``on_end`` :class:`EndEvent` (the :class:`TrainResult`).

Under ``torchrun`` (see :mod:`workbench.distributed`) each process runs its share
of every batch and of the validation set; gradients and validation results are
combined so that every process takes the same steps and decisions as one process
would. Events fire in every process; print or plot from ``distributed.is_main()``.

Guarantees: the loss is checked to be finite every step; gradients are clipped;
``stop()`` may be called from any thread and ends the run after the current
step and one evaluation of the steps since the last; ``time_limit_s`` is a ceiling
on :meth:`Trainer.fit`, evaluations included (see there), that the defaults do not reach on a quiet
computer (:mod:`workbench.defaults`), so a busy computer gives the same model, later; early stopping
watches the validation WER, and the adapter weights with the lowest
validation loss are restored at the end; the same
seed gives the same result, and a run resumed from a checkpoint continues
exactly as if it had not been interrupted (batches, SpecAugment draws and
optimizer state are all functions of the seed and step).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from workbench import distributed
from workbench._atomic import write_bytes_atomic
from workbench._deprecated import renamed_fields, upgrade_keys
from workbench.adapters import Adapted, AdapterConfig, LoRAConfig, config_from_dict, inject
from workbench.augment import SpecAugmentPolicy, spec_augment
from workbench.dataset import Example, FeatureCache, left_out_note, speaker_mixed_batches, with_speed_perturbation
from workbench.defaults import RUN_DEFAULTS
from workbench.errors import TrainingError
from workbench.notices import notify
from workbench.progress import ceiling_note
from workbench.trainer_events import BestEvent, EndEvent, EvalEvent, StartEvent, StepEvent, StopEvent, TrainerEvent

if TYPE_CHECKING:  # annotations only: the base models sit above the trainer
    from workbench.models import ASRBackend

__all__ = [
    "EVENTS",
    "MIN_HELD_OUT_WORDS",
    "STOP_REASONS",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "check_enough_data",
    "with_speed_perturbation",
]

EVENTS = ("on_start", "on_step", "on_eval", "on_best", "on_stop", "on_end")
MIN_HELD_OUT_WORDS = 30  # below this many reference words the held-out WER is too noisy to trust
# TrainResult.stopped_reason -> the same in words: the app, the notebooks and the report say these
STOP_REASONS = {
    "max steps": "step limit reached",
    "time budget": "time limit reached",
    "early stop": "no more improvement on the recordings kept aside",
    "stopped by user": "stopped by user",
}


def _default_adapter() -> AdapterConfig:
    # LoRA reached the lowest held-out WER within the time budget in recipes/choose_defaults.py
    # (docs/results.md); HRA is the most parameter-efficient choice for banks of many speakers.
    return LoRAConfig()


#: Old field names of TrainConfig -> new (issue 31's naming rule): keywords and attributes warn until the next
#: release; settings saved under the old name (checkpoints, results files) load silently.
_RENAMED_FIELDS = {"max_seconds": "time_limit_s"}


@renamed_fields(**_RENAMED_FIELDS)
@dataclasses.dataclass
class TrainConfig:
    """Settings of one personalization run; the defaults need no tuning.

    Give ``adapter`` (and ``mode``) to the constructor: a ``learning_rate`` of None
    becomes that family's default there, once. Changing ``adapter`` afterwards (by
    assignment or ``dataclasses.replace``) keeps the old family's learning rate
    unless ``learning_rate`` is given as well.
    """

    adapter: AdapterConfig = dataclasses.field(default_factory=_default_adapter)
    mode: str = "adapter"  # "adapter" | "full" | "last_layers" (the last two: baselines for comparison)
    last_layers: int = 2  # blocks unfrozen by mode="last_layers" (plus the output layer)
    learning_rate: float | None = None  # peak learning rate (AdamW); None = the adapter family's default
    weight_decay: float = 0.0
    batch_size: int = 8
    max_steps: int = RUN_DEFAULTS.max_steps  # workflow.default_config: the base model's (max_steps_for)
    time_limit_s: float | None = RUN_DEFAULTS.time_limit_s  # wall-clock CEILING on Trainer.fit; None = steps only
    warmup_steps: int = 10  # linear warm-up, then cosine decay to 10 % at max_steps
    eval_every: int = 10  # steps between validation evaluations (the best checkpoint came at 20-70 steps)
    patience: int = 5  # evaluations without a lower validation WER before early stopping; 0 = never
    grad_clip: float = 1.0  # max global gradient norm
    # None: chosen by experiment for runs of <= 90 s on <= 50 utterances (bench_personalization
    # --policies on the validation recordings, and bench/study_defaults.py on development
    # speakers, docs/results.md): no SpecAugment policy beat no augmentation. Pass e.g.
    # POLICIES["librispeech_adaptive"] for longer runs or to study it.
    specaugment: SpecAugmentPolicy | None = None
    # Speed perturbation (Ko et al. 2015): each training recording is also used at these
    # speeds (1.1 = 10 % faster, pitch follows), computed once before training; () = off.
    # Chosen on six development speakers (bench/study_defaults.py, docs/results.md): it
    # helped five of six, SpecAugment and a lower learning rate did not.
    speed_perturb: tuple[float, ...] = (0.9, 1.1)
    seed: int = RUN_DEFAULTS.seed
    # True: a bank whose weights are all per speaker (LoRA, residual, conv; not HRA, whose
    # controller is shared) keeps each speaker's rows at that speaker's own lowest validation loss
    # and stops when no speaker's validation WER improves any more. Off by default: on six
    # development speakers it made no difference beyond the seed-to-seed spread
    # (bench/study_defaults.py --bank, docs/results.md); a speaker's own validation set is a few
    # recordings.
    per_speaker_selection: bool = False
    min_utterances: int = RUN_DEFAULTS.min_utterances  # refuse to train on fewer training utterances
    checkpoint_every: int = 0  # steps between checkpoints (0 = no checkpoints)

    def __post_init__(self) -> None:
        if self.mode not in ("adapter", "full", "last_layers"):
            raise TrainingError(f"mode must be 'adapter', 'full' or 'last_layers', got {self.mode!r}")
        for name in ("batch_size", "max_steps", "eval_every"):
            if getattr(self, name) < 1:
                raise TrainingError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.learning_rate is None:
            self.learning_rate = self.adapter.learning_rate if self.mode == "adapter" else 3e-4
        if not self.learning_rate > 0:
            raise TrainingError(f"learning_rate must be > 0, got {self.learning_rate}")
        self.speed_perturb = tuple(float(f) for f in self.speed_perturb)
        if any(not 0.5 <= f <= 2.0 or f == 1.0 for f in self.speed_perturb):
            raise TrainingError(f"speed_perturb factors must lie in [0.5, 2.0] and differ from 1.0 (the "
                                f"original is always used), got {self.speed_perturb}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["adapter"] = self.adapter.to_dict()
        d["specaugment"] = None if self.specaugment is None else self.specaugment.to_dict()
        d["speed_perturb"] = list(self.speed_perturb)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """The inverse of :meth:`to_dict`; also reads settings saved under an older field name."""
        d = upgrade_keys(d, _RENAMED_FIELDS)
        d["adapter"] = config_from_dict(d["adapter"])
        d["specaugment"] = None if d.get("specaugment") is None else SpecAugmentPolicy.from_dict(d["specaugment"])
        return cls(**d)


@dataclasses.dataclass
class TrainResult:
    """What a run did. WERs are ASR word error rates on the *validation* utterances.

    They chose the checkpoint, so they are optimistic; report the test WER of
    :func:`workbench.workflow.personalize_speaker` (recordings never used at all).
    """

    wer_before: float
    best_wer: float
    best_step: int
    steps: int
    seconds: float
    stopped_reason: str
    history: list[dict]  # one dict per event of kind "step" or "eval"
    parameter_report: dict
    speaker_steps: list[int] | None = None  # per-speaker selection: the step each speaker's rows come from
    max_steps: int = 0  # the run's step limit (TrainConfig.max_steps)

    @property
    def cut_short(self) -> str:
        """When the time ceiling ended the run: "stopped by the time limit at step N of about M; ..."; else ""."""
        return ceiling_note(self.steps, self.max_steps) if self.stopped_reason == "time budget" else ""

    @property
    def stopped_because(self) -> str:
        """:attr:`stopped_reason` in words for people (:data:`STOP_REASONS`), e.g. "time limit reached"."""
        return STOP_REASONS.get(self.stopped_reason, self.stopped_reason)

    @property
    def relative_reduction(self) -> float:
        return (self.wer_before - self.best_wer) / self.wer_before if self.wer_before > 0 else 0.0


def check_enough_data(n_train: int, minimum: int, *, n_held_out_words: int | None = None,
                      role: str = "held-out") -> None:
    """Refuse too little training data with a message saying how much more to record;
    warn when the ``role`` set ("held-out", "validation") is too small for its WER to mean much."""
    if n_train < minimum:
        raise TrainingError(
            f"only {n_train} usable training recordings; personalization needs at least {minimum}. "
            f"Record {minimum - n_train} more prompt(s) and try again.")
    if n_held_out_words is not None and n_held_out_words < MIN_HELD_OUT_WORDS:
        notify(
            f"the {role} set has only {n_held_out_words} words, so its WER is not reliable "
            f"(aim for at least {MIN_HELD_OUT_WORDS}); record more prompts or use k-fold evaluation",
            stacklevel=3)


class Trainer:
    """Train a speaker's Submodel (adapters on a frozen base model), or a baseline.

    Args:
        backend: the base :class:`~workbench.models.base.ASRBackend` (frozen for
            ``mode="adapter"``; modified in place by the baselines).
        train: training :class:`~workbench.dataset.Example` s (``speaker`` = bank row).
        valid: validation examples (never trained on): their loss picks the
            checkpoint and their WER decides early stopping, so both are optimistic. Keep the
            test recordings out of both ``train`` and ``valid`` (see
            :func:`workbench.corpus.split_by_prompt`).
        config: :class:`TrainConfig`.
        adapted: an existing injection to continue (e.g. a warm start); by default
            ``inject(backend, config.adapter)`` with as many rows as speakers.
        checkpoint_dir: where checkpoints go (with ``config.checkpoint_every``).
        decoder: per-utterance decoder for the validation WER (default greedy).
        clock: ``fn() -> seconds``: only the time ceiling and the times reported read it, no other
            decision (default :func:`time.perf_counter`; tests pass a slow or fake one).
    """

    def __init__(self, backend: ASRBackend, train: Sequence[Example], valid: Sequence[Example],
                 config: TrainConfig | None = None, *, adapted: Adapted | None = None,
                 checkpoint_dir: str | Path | None = None, decoder: Callable | None = None,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.config = config = config or TrainConfig()
        check_enough_data(len(train), config.min_utterances)  # first: no takes at all is not about validation
        if not valid:
            raise TrainingError("no validation recordings to watch the WER on; keep at least a few aside")
        self.backend = backend
        # the features first, before the base model is touched: a take the backend refuses (longer than
        # it trains on) is left out and named, and too few left is said before any adapter is injected
        self.frozen_layers = self._frozen_prefix()
        self.train_cache = FeatureCache(backend, with_speed_perturbation(train, config.speed_perturb),
                                        frozen_layers=self.frozen_layers, skip_unusable=True)
        self.eval_cache = FeatureCache(backend, valid, frozen_layers=self.frozen_layers, skip_unusable=True)
        self.left_out = left_out_note(train, self.train_cache, self.eval_cache)
        if self.left_out:
            notify(self.left_out, stacklevel=2)
        originals = {id(e) for e in train}
        n_train = sum(id(e) in originals for e in self.train_cache.examples)
        if not self.eval_cache.examples:
            raise TrainingError(f"no validation recordings are left to watch the WER on. {self.left_out}")
        n_words = sum(len(e.text.split()) for e in self.eval_cache.examples)
        try:
            check_enough_data(n_train, config.min_utterances, n_held_out_words=n_words, role="validation")
        except TrainingError as err:
            raise TrainingError(f"{err} {self.left_out}".strip()) from None
        valid = self.eval_cache.examples
        self.events: dict[str, list[Callable[[TrainerEvent], None]]] = {e: [] for e in EVENTS}
        self._stop = threading.Event()
        self.clock = clock
        self._slowest = {"step": 0.0, "eval": 0.0}  # seconds: what the time budget keeps in hand
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.decoder = None if backend.is_seq2seq else decoder or backend.greedy_decoder()
        # what the training loss is, for the curves' axis: Whisper's own loss is token cross-entropy
        self.loss_name = "cross-entropy" if backend.is_seq2seq else "CTC"
        n_speakers = 1 + max(e.speaker for e in [*train, *valid])
        self.adapted = None
        if config.mode == "adapter":
            if adapted is None:
                with torch.random.fork_rng(devices=[]):  # the initial weights follow config.seed, not
                    torch.manual_seed(config.seed)        # whatever ran before in this process
                    adapted = inject(backend, config.adapter.replace(num_speakers=n_speakers))
            self.adapted = adapted
            self.params = self.adapted.trainable_parameters()
        else:
            self.params = self._unfreeze_baseline(config)
        if not self.params:
            raise TrainingError("nothing to train: every parameter is frozen")
        self.rank, self.world = distributed.rank_and_size()  # (0, 1) without torchrun
        self.per_speaker = self._per_speaker_selection(n_speakers, valid)
        self.speaker_state = [{"best_loss": math.inf, "best_step": 0, "lowest_wer": math.inf, "bad_evals": 0,
                               "errors": 0, "words": 0, "n": 0} for _ in range(n_speakers if self.per_speaker else 0)]
        distributed.broadcast_parameters(self.params)  # every process starts from rank 0's weights
        self.optimizer = torch.optim.AdamW(self.params, lr=config.learning_rate, weight_decay=config.weight_decay)
        self.step = 0
        self.elapsed = 0.0
        self.history: list[dict] = []
        self.best_wer = math.inf
        self.best_loss = math.inf  # lowest validation loss: it chooses the checkpoint kept
        self.best_step = 0
        self.lowest_wer = math.inf  # lowest validation WER seen: early stopping watches it
        self.wer_before = math.nan
        self.bad_evals = 0
        self._best_state = self._snapshot()

    # ------------------------------------------------------------------ events
    def on(self, event: str, callback: Callable[[TrainerEvent], None]) -> Trainer:
        """Subscribe ``callback(record)`` to ``event`` (see :data:`EVENTS`, :mod:`workbench.trainer_events`)."""
        if event not in self.events:
            raise TrainingError(f"unknown event {event!r}; events are {EVENTS}")
        self.events[event].append(callback)
        return self

    def _emit(self, event: str, payload: TrainerEvent) -> None:
        for cb in self.events[event]:
            cb(payload)

    def stop(self) -> None:
        """Ask the run to stop after the current step (thread-safe); the best weights are kept.

        Under ``torchrun``, a stop asked in any process stops every process."""
        self._stop.set()

    # ------------------------------------------------------------------ parameters
    def _unfreeze_baseline(self, config: TrainConfig) -> list[nn.Parameter]:
        module = self.backend.module
        if config.mode == "full":
            params = list(module.parameters())
        else:
            sites = self.backend.adapter_sites()[-config.last_layers:]
            params = [p for _, m in sites for p in m.parameters()]
            params += [p for p in self.backend.output_layer().parameters()]
        for p in params:
            p.requires_grad_(True)
        self.backend.invalidate_fingerprint()
        return params

    def _frozen_prefix(self) -> int:
        """How many bottom encoder layers no trained weight touches, so that their outputs can be
        computed once per recording (backends with ``supports_frozen_prefix``; not with
        SpecAugment, which changes the input at every step)."""
        c, backend = self.config, self.backend
        if not getattr(backend, "supports_frozen_prefix", False) or c.specaugment is not None:
            return 0
        if c.mode == "adapter":
            return backend.num_layers - c.adapter.top_layers if c.adapter.top_layers else 0
        return backend.num_layers - c.last_layers if c.mode == "last_layers" else 0

    def _per_speaker_selection(self, n_speakers: int, valid: Sequence[Example]) -> bool:
        """Choose each speaker's rows on its own validation phrases? Only for a bank whose every
        trained weight has a row per speaker, and every speaker has validation phrases."""
        if not (self.config.per_speaker_selection and self.adapted is not None and n_speakers > 1):
            return False
        if self.backend.is_seq2seq:
            raise TrainingError("per-speaker selection needs each recording's own loss, which the workbench "
                                "computes for CTC models only; leave per_speaker_selection off for Whisper")
        if {id(p) for p in self.params} != {id(p) for p in self.adapted.per_speaker_parameters()}:
            return False  # shared weights (HRA's controller): one checkpoint for everyone
        missing = sorted(set(range(n_speakers)) - {e.speaker for e in valid})
        if missing:
            notify(f"bank rows {missing} have no validation recordings, so every speaker's Submodel is "
                          "chosen together", stacklevel=3)
            return False
        return True

    def _snapshot(self) -> list[torch.Tensor]:
        return [p.detach().clone() for p in self.params]

    def _restore(self, state: list[torch.Tensor]) -> None:
        with torch.no_grad():
            for p, s in zip(self.params, state, strict=True):
                p.copy_(s)

    def _set_train_mode(self, training: bool) -> None:
        if self.adapted is not None:
            self.adapted.train(training)  # the frozen base stays in eval mode (no dropout)
        else:
            self.backend.module.train(training)

    # ------------------------------------------------------------------ data order
    def _batch_indices(self, step: int) -> list[int]:
        """The batch of ``step``: a pure function of (seed, step), so resuming is exact."""
        n = len(self.train_cache)
        per_epoch = math.ceil(n / self.config.batch_size)
        epoch, pos = divmod(step, per_epoch)
        g = torch.Generator().manual_seed(self.config.seed * 1_000_003 + epoch)
        speakers = [e.speaker for e in self.train_cache.examples]
        return speaker_mixed_batches(speakers, self.config.batch_size, generator=g)[pos]

    def _lr(self, step: int) -> float:
        c = self.config
        if step < c.warmup_steps:
            return c.learning_rate * (step + 1) / c.warmup_steps
        t = min(1.0, (step - c.warmup_steps) / max(1, c.max_steps - c.warmup_steps))
        return c.learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Validation WER/CER (corpus-level, normalized text) and mean loss with the current weights."""
        from workbench.metrics import cer, error_counts, wer

        self._set_train_mode(False)
        refs, hyps, loss, speakers, losses = [], [], 0.0, [], []
        order = sorted(range(len(self.eval_cache)), key=lambda i: -self.eval_cache.lengths[i])
        order = order[self.rank::self.world]  # this process's share (all of it in one process)
        for s in range(0, len(order), 16):
            idx = order[s: s + 16]
            batch, texts = self.eval_cache.batch(idx)
            with self.adapted.route(batch.speaker_index) if self.adapted else contextlib.nullcontext():
                got, texts_out = self.backend.loss_and_decode(batch, texts, decoder=self.decoder,
                                                              per_utterance=self.per_speaker)
            if self.per_speaker:  # each utterance's own loss, for its speaker's choice (and the sum)
                own = [float(x) for x in got]
                speakers += [self.eval_cache.examples[i].speaker for i in idx]
                losses += own
                loss += sum(own)
            else:  # CTC: the same forward pass as the hypotheses
                loss += float(got) * len(idx)
            hyps += texts_out
            refs += texts
        parts = distributed.all_gather_objects((refs, hyps, loss, speakers, losses))  # every process scores all
        refs, hyps, speakers, losses = ([x for part in parts for x in part[k]] for k in (0, 1, 3, 4))
        out = {"wer": wer(refs, hyps), "cer": cer(refs, hyps), "loss": sum(part[2] for part in parts) / len(refs)}
        if self.per_speaker:
            out["speakers"] = {}
            for s in sorted(set(speakers)):
                mine = [k for k, x in enumerate(speakers) if x == s]
                counts = error_counts([refs[k] for k in mine], [hyps[k] for k in mine])
                out["speakers"][s] = {"wer": counts.errors / max(1, counts.ref_len), "errors": counts.errors,
                                      "words": counts.ref_len, "loss": sum(losses[k] for k in mine) / len(mine),
                                      "n": len(mine)}
        return out

    def _eval_and_track(self, start: float | None = None) -> None:
        """Evaluate, track the best weights and early stopping; ``start``: the clock at the run's
        start (``elapsed_s`` then includes this evaluation)."""
        t_eval = self.clock()
        scores = self.evaluate()
        self._slowest["eval"] = max(self._slowest["eval"], self.clock() - t_eval)
        if start is not None:
            self.elapsed = self.clock() - start
        payload = EvalEvent(step=self.step, elapsed_s=self.elapsed, **scores)
        self.history.append({"kind": "eval", **payload})
        if self.step == 0 and math.isnan(self.wer_before):
            self.wer_before = scores["wer"]
        self._emit("on_eval", payload)
        # Early stopping follows the validation WER: `patience` evaluations without a new
        # lowest WER end the run. The checkpoint kept is the one with the lowest validation
        # loss: on a few dozen validation words the WER moves in steps of one word and
        # ties often, and on six development speakers (not the sample speakers) keeping the
        # lowest-loss checkpoint gave the higher mean test reduction for five of six
        # training settings (docs/results.md, "Choosing the defaults on development speakers").
        if self.per_speaker:
            self._track_speakers(scores)
            return
        if scores["wer"] < self.lowest_wer - 1e-9:
            self.lowest_wer, self.bad_evals = scores["wer"], 0
        else:
            self.bad_evals += 1
        if scores["loss"] < self.best_loss:
            self.best_wer, self.best_loss, self.best_step = scores["wer"], scores["loss"], self.step
            self._best_state = self._snapshot()
            self._emit("on_best", BestEvent(step=self.step, wer=scores["wer"], loss=scores["loss"]))

    def _track_speakers(self, scores: dict) -> None:
        """Per-speaker selection: the same two rules as for one speaker, applied to each speaker's
        validation phrases; the run stops when every speaker has gone ``patience`` evaluations
        without a lower WER. The kept Submodel combines each speaker's best rows; its WER and
        loss are combined from each speaker's figures at that speaker's kept step."""
        self.lowest_wer = min(self.lowest_wer, scores["wer"])
        improved = []
        for s, sc in scores["speakers"].items():
            st = self.speaker_state[s]
            if sc["wer"] < st["lowest_wer"] - 1e-9:
                st["lowest_wer"], st["bad_evals"] = sc["wer"], 0
            else:
                st["bad_evals"] += 1
            if sc["loss"] < st["best_loss"]:
                st.update(best_loss=sc["loss"], best_step=self.step, errors=sc["errors"], words=sc["words"],
                          n=sc["n"])
                with torch.no_grad():
                    for kept, p in zip(self._best_state, self.params, strict=True):
                        kept[s].copy_(p[s])
                improved.append(s)
        states = self.speaker_state
        self.bad_evals = min(st["bad_evals"] for st in states)
        self.best_wer = sum(st["errors"] for st in states) / max(1, sum(st["words"] for st in states))
        self.best_loss = sum(st["best_loss"] * st["n"] for st in states) / max(1, sum(st["n"] for st in states))
        self.best_step = max(st["best_step"] for st in states)
        if improved:
            self._emit("on_best", BestEvent(step=self.step, wer=self.best_wer, loss=self.best_loss, speakers=improved))

    # ------------------------------------------------------------------ the loop
    def fit(self) -> TrainResult:
        """Train until max steps, the time budget, early stopping or :meth:`stop`.

        ``config.time_limit_s`` is a ceiling on this call, evaluations included: the first
        (step 0, the base model), the periodic ones and the last. A step starts only if it and
        one more evaluation still fit (as long as the slowest step and evaluation so far took),
        so that however the run ends, by the budget or by :meth:`stop`, the steps after the
        last evaluation are evaluated too and can be the checkpoint kept. (After Stop that
        costs one pass over the validation recordings, a few seconds; discarding up to
        ``eval_every - 1`` trained steps unseen would cost more.) An evaluation alone longer
        than the budget leaves no time for any step: the run ends with ``"time budget"``.
        """
        c = self.config
        report = self.adapted.parameter_report() if self.adapted else {
            "family": c.mode, "trainable": sum(p.numel() for p in self.params)}
        self._emit("on_start", StartEvent(max_steps=c.max_steps, time_limit_s=c.time_limit_s,
                                          train_utterances=len(self.train_cache),
                                          valid_utterances=len(self.eval_cache), parameters=report,
                                          left_out=self.left_out))
        start = self.clock() - self.elapsed  # a resumed run goes on counting from its checkpoint
        if self.step == 0:
            self._eval_and_track(start)
        reason = "max steps"
        steps_done_here, t_here = 0, self.clock()
        while self.step < c.max_steps:
            self.elapsed = self.clock() - start
            over_time = c.time_limit_s is not None and \
                self.elapsed + self._slowest["step"] + self._slowest["eval"] > c.time_limit_s
            asked, over_time = distributed.sum_scalars(self._stop.is_set(), over_time)  # any process decides
            if asked:
                reason = "stopped by user"
                break
            if over_time:
                reason = "time budget"
                break
            if c.patience and self.bad_evals >= c.patience:
                reason = "early stop"
                break
            t_step = self.clock()
            loss, grad_norm, lr = self._train_step()
            self.step += 1
            steps_done_here += 1
            self._slowest["step"] = max(self._slowest["step"], self.clock() - t_step)
            self.elapsed = self.clock() - start
            rate = steps_done_here / max(1e-9, self.clock() - t_here)
            payload = StepEvent(step=self.step, loss=loss, loss_name=self.loss_name, lr=lr, grad_norm=grad_norm,
                                steps_per_s=rate, elapsed_s=self.elapsed)
            self.history.append({"kind": "step", **payload})
            self._emit("on_step", payload)
            if self.step % c.eval_every == 0 or self.step == c.max_steps:
                self._eval_and_track(start)
            if c.checkpoint_every and self.checkpoint_dir and self.step % c.checkpoint_every == 0 and self.rank == 0:
                self.save_checkpoint(self.checkpoint_dir / "checkpoint.safetensors")
        if self.history and self.history[-1].get("kind") != "eval":  # the steps since the last evaluation
            self._eval_and_track(start)
        self.elapsed = self.clock() - start
        self._restore(self._best_state)
        self._set_train_mode(False)
        result = TrainResult(wer_before=self.wer_before, best_wer=self.best_wer, best_step=self.best_step,
                             steps=self.step, seconds=self.elapsed, stopped_reason=reason,
                             history=list(self.history), parameter_report=report,
                             speaker_steps=[st["best_step"] for st in self.speaker_state] or None, max_steps=c.max_steps)
        self._emit("on_stop", StopEvent(reason=reason, text=STOP_REASONS[reason], step=self.step,
                                        elapsed_s=self.elapsed, note=result.cut_short))
        self._emit("on_end", EndEvent(result=result))
        return result

    def _train_step(self) -> tuple[float, float, float]:
        c = self.config
        self._set_train_mode(True)
        indices = self._batch_indices(self.step)
        positions = range(self.rank, len(indices), self.world)  # this process's share of the batch
        lr = self._lr(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        loss, share = None, len(positions) / len(indices)
        if positions:
            batch, texts = self.train_cache.batch([indices[j] for j in positions])
            if c.specaugment is not None and batch.features.dim() == 3 and not batch.start_layer:  # log-mel
                seeds = torch.tensor([c.seed * 7_919 + self.step * 1_000 + j for j in positions])
                spec_augment(batch.features, batch.lengths, c.specaugment, seeds=seeds, inplace=True)
            loss = self.adapted.loss(batch, texts) if self.adapted else self.backend.loss(batch, texts)
        # the batch's mean loss: the shares' mean losses weighted by their sizes, summed over processes
        (mean_loss,) = distributed.sum_scalars(0.0 if loss is None else float(loss.detach()) * share)
        if not math.isfinite(mean_loss):
            self._restore(self._best_state)
            raise TrainingError(
                f"the training loss became {mean_loss} at step {self.step + 1}. The best adapter so far was kept. "
                "This usually means the learning rate is too high or a recording is broken: try a lower "
                f"learning rate (now {c.learning_rate:g}) or re-check recordings flagged by the quality check.")
        if loss is not None:
            (loss * share if self.world > 1 else loss).backward()
        distributed.sum_gradients(self.params)  # the shares' gradients add up to the batch mean's
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, c.grad_clip))
        self.optimizer.step()
        return mean_loss, grad_norm, lr

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, path: str | Path) -> Path:
        """Weights, best weights, optimizer state and progress; safetensors + JSON (no pickle)."""
        from safetensors.torch import save as to_bytes

        path = Path(path)
        tensors = {f"param.{i}": p.detach().contiguous() for i, p in enumerate(self.params)}
        tensors.update({f"best.{i}": t.contiguous() for i, t in enumerate(self._best_state)})
        opt = self.optimizer.state_dict()
        for i, state in opt["state"].items():
            for k, v in state.items():
                tensors[f"opt.{i}.{k}"] = torch.as_tensor(v).detach().contiguous()
        meta = {"step": self.step, "elapsed": self.elapsed, "best_wer": self.best_wer, "best_loss": self.best_loss,
                "best_step": self.best_step, "lowest_wer": self.lowest_wer,
                "wer_before": self.wer_before, "bad_evals": self.bad_evals, "history": self.history,
                "speaker_state": self.speaker_state,
                "config": self.config.to_dict()}
        write_bytes_atomic(path, to_bytes(tensors, metadata={"trainer": json.dumps(meta, default=float)}))
        return path

    def load_checkpoint(self, path: str | Path) -> None:
        """Continue a run from :meth:`save_checkpoint` (same data, config and base model)."""
        from safetensors import safe_open
        from safetensors.torch import load_file

        path = Path(path)
        if not path.is_file():
            raise TrainingError(f"no checkpoint at {path}")
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads(f.metadata()["trainer"])
        if upgrade_keys(meta["config"], _RENAMED_FIELDS) != self.config.to_dict():  # old checkpoints: old names
            raise TrainingError("this checkpoint was made with different training settings; resume with the same ones")
        tensors = load_file(str(path))
        n = len(self.params)
        if any(f"param.{i}" not in tensors for i in range(n)) or f"param.{n}" in tensors:
            raise TrainingError("this checkpoint belongs to a different model or adapter layout")
        self._restore([tensors[f"param.{i}"] for i in range(n)])
        self._best_state = [tensors[f"best.{i}"] for i in range(n)]
        opt = self.optimizer.state_dict()
        state: dict[int, dict] = {}
        for key, v in tensors.items():
            if key.startswith("opt."):
                _, i, k = key.split(".", 2)
                state.setdefault(int(i), {})[k] = v
        opt["state"] = state
        self.optimizer.load_state_dict(opt)
        self.step, self.elapsed = int(meta["step"]), float(meta["elapsed"])
        self.best_wer, self.best_step = float(meta["best_wer"]), int(meta["best_step"])
        self.best_loss, self.lowest_wer = float(meta["best_loss"]), float(meta["lowest_wer"])
        self.wer_before, self.bad_evals = float(meta["wer_before"]), int(meta["bad_evals"])
        self.speaker_state = [dict(st) for st in meta.get("speaker_state", [])]
        self.history = list(meta["history"])
