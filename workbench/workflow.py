"""The main job, as one call: personalize one speaker folder and report before/after.

Used by ``workbench personalize``, ``workbench demo``, the notebooks and the app,
so every front end runs exactly the same steps:

1. open the speaker folder; split it by prompt into test (held-out texts, never
   trained on and never used to choose anything), validation (decides early
   stopping and which checkpoint to keep) and training;
2. load the frozen base model and build the decoder (greedy, or a word lexicon + LM
   of the prompt domain plus the speaker's personal vocabulary);
3. train a personal adapter with the :class:`~workbench.trainer.Trainer`;
4. transcribe the held-out recordings with the base model and the personal model;
5. save the Submodel into the speaker folder and write the HTML/CSV report.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

from workbench.dataset import examples_from_corpus
from workbench.errors import TrainingError
from workbench.evaluate import Comparison, compare
from workbench.trainer import TrainConfig, Trainer, TrainResult

__all__ = ["BankRun", "BaseScore", "PersonalizationRun", "bank_row", "build_decoder", "decoder_name", "default_config",
           "evaluate_speaker", "personalize_speaker", "speaker_folders", "train_bank"]


@dataclasses.dataclass
class PersonalizationRun:
    """Everything one personalization produced."""

    speaker_id: str
    comparison: Comparison  # held-out ASR word error rates before/after
    train_result: TrainResult
    submodel_path: Path
    report_html: Path
    report_csv: Path
    adapted: Any  # the live injection (backend + adapter), ready to transcribe


def build_decoder(kind: str, prompts: list[str] | None = None, *, backend: Any = None) -> Callable | None:
    """``"greedy"`` (None: the backend's default) or ``"lexicon"``.

    A sequence-to-sequence ``backend`` (Whisper) always decodes with its own search, so
    this returns None for it whatever ``kind`` says (see :func:`decoder_name`).

    The lexicon decoder is a beam search restricted to the words of the shipped
    everyday prompt list plus ``prompts`` (the speaker's own list), with a bigram
    LM of those sentences; the speaker's words that are not in the everyday list
    (names, places: personal vocabulary) are boosted. It assumes the speaker says
    phrases from that domain, as in phrase-based apps; free speech outside it
    will be forced onto known words.
    """
    if kind not in ("greedy", "lexicon"):
        raise TrainingError(f"decoder must be 'greedy' or 'lexicon', got {kind!r}")
    if kind == "greedy" or getattr(backend, "is_seq2seq", False):
        return None
    from workbench.decode import BeamSearchDecoder, Lexicon, WordLM
    from workbench.prompts import load_prompts, prompt_vocabulary

    everyday = load_prompts("everyday")
    own = list(prompts or [])
    known = prompt_vocabulary(everyday)
    personal = sorted(prompt_vocabulary(own) - known)
    sentences = everyday + own
    return BeamSearchDecoder(Lexicon.from_sentences(sentences), WordLM.from_sentences(sentences), boost=personal)


def decoder_name(kind: str, backend: Any) -> str:
    """What decodes, in words, for reports: Whisper's own search, or the CTC decoder ``kind``."""
    return f"{backend.name} greedy search" if getattr(backend, "is_seq2seq", False) else kind


def default_config(backend: Any, **settings: Any) -> TrainConfig:
    """:class:`TrainConfig` with ``backend``'s defaults (its adapter and learning rate) under ``settings``.

    Giving ``adapter`` drops the backend's learning rate too (the family's own default applies);
    ``backend=None`` gives the generic defaults."""
    base = {} if "adapter" in settings or backend is None else backend.default_train_settings()
    return TrainConfig(**{**base, **settings})


def _progress_bar(trainer: Trainer) -> None:
    """A tqdm bar over steps, with loss and held-out WER in the postfix."""
    from tqdm.auto import tqdm

    state: dict[str, Any] = {}

    def start(e: dict) -> None:
        state["bar"] = tqdm(total=e["max_steps"], desc="personalizing", unit="step", leave=True)

    def step(e: dict) -> None:
        state["bar"].update(1)
        state["bar"].set_postfix(loss=f"{e['loss']:.2f}", wer=state.get("wer", "-"), refresh=False)

    def evaluated(e: dict) -> None:
        state["wer"] = f"{100 * e['wer']:.0f}%"

    def end(e: dict) -> None:
        state["bar"].close()

    trainer.on("on_start", start).on("on_step", step).on("on_eval", evaluated).on("on_stop", end)


def three_way_split(corpus: Any, *, test_fraction: float = 0.25, valid_fraction: float = 0.15, seed: int = 0,
                    max_train: int | None = None) -> tuple[list, list, list]:
    """``(train, valid, test)`` utterances of a speaker, split by prompt.

    The test prompts are those of ``corpus.split(test_fraction, seed)`` (the same for
    every run and every model, so before/after figures compare); ``max_train`` caps
    the rest (training + validation together); ``valid_fraction`` of its prompts are
    then set aside for validation.
    """
    from workbench.corpus import split_by_prompt

    rest, test = corpus.split(test_fraction=test_fraction, seed=seed)
    if max_train is not None:
        rest = rest[:max_train]
    train, valid = split_by_prompt(rest, fraction=valid_fraction, seed=seed + 1)
    return train, valid, test


def personalize_speaker(
    speaker_dir: str | Path,
    *,
    backend: Any = None,
    model: str = "tiny",
    config: TrainConfig | None = None,
    max_train: int | None = None,
    test_fraction: float = 0.25,
    valid_fraction: float = 0.15,
    decoder: str = "greedy",
    progress: bool = True,
    callbacks: dict[str, Callable[[dict], None]] | None = None,
    report_dir: str | Path | None = None,
    seed: int = 0,
    trainer_hook: Callable[[Trainer], None] | None = None,
) -> PersonalizationRun:
    """Personalize one speaker folder end to end (see the module docstring).

    Args:
        speaker_dir: a :class:`~workbench.corpus.SpeakerCorpus` folder.
        backend: a loaded base model (default: ``load_base_model(model)``).
        config: training settings (defaults need no tuning).
        max_train: use at most this many utterances for training and validation together
            (data-efficiency studies).
        test_fraction: share of prompts held out for the before/after WER (never used
            in training, nor to choose the checkpoint).
        valid_fraction: share of the remaining prompts kept aside as validation: their
            WER stops training early and their loss picks the checkpoint kept.
        decoder: ``"greedy"`` or ``"lexicon"`` (see :func:`build_decoder`); the same
            decoder scores the base and the personal model.
        progress: show a tqdm progress bar.
        callbacks: extra trainer event subscriptions, e.g. a live plot.
        report_dir: where the report goes (default ``<speaker_dir>/reports``).
        trainer_hook: called with the :class:`~workbench.trainer.Trainer` before it
            starts, e.g. so an app can call its thread-safe ``stop()``.
    """
    from workbench.corpus import SpeakerCorpus
    from workbench.models.loading import load_base_model

    corpus = SpeakerCorpus.open(speaker_dir)
    # before the training, not at save time: a read-only or full disk is found first (issue 16)
    corpus.check_writable("submodels", *(() if report_dir else ("reports",)),
                          what="Nothing was trained: the personal model could not be saved there.")
    if report_dir is not None:
        _check_writable(Path(report_dir) / "report.html")
    train_utts, valid_utts, test_utts = three_way_split(corpus, test_fraction=test_fraction,
                                                        valid_fraction=valid_fraction, seed=seed, max_train=max_train)
    backend = backend or load_base_model(model)
    train, valid, held_out = (examples_from_corpus(corpus, u) for u in (train_utts, valid_utts, test_utts))
    dec = build_decoder(decoder, prompts=corpus.prompts(), backend=backend)
    decoder = decoder_name(decoder, backend)
    config = config or default_config(backend, seed=seed)
    trainer = Trainer(backend, train, valid, config, decoder=dec)
    if progress:
        _progress_bar(trainer)
    for event, fn in (callbacks or {}).items():
        trainer.on(event, fn)
    if trainer_hook is not None:
        trainer_hook(trainer)
    result = trainer.fit()
    adapted = trainer.adapted
    if adapted is None:
        raise TrainingError("personalize_speaker trains adapters; use Trainer directly for the baselines")
    comparison = _before_after(adapted, held_out, dec)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    minutes = sum(e.seconds for e in train) / 60
    training = {"utterances": len(train), "validation_utterances": len(valid), "minutes": round(minutes, 2),
                "utt_ids": [e.utt_id for e in train],
                "valid_utt_ids": [e.utt_id for e in valid],
                "steps": result.steps, "seconds": round(result.seconds, 1), "stopped": result.stopped_reason,
                "decoder": decoder}
    metrics = {"wer_before": comparison.wer_before, "wer_after": comparison.wer_after,
               "cer_before": comparison.cer_before, "cer_after": comparison.cer_after,
               "held_out_utterances": len(held_out), "interval": comparison.interval}
    submodel = adapted.save(corpus.root / "submodels" / f"{config.adapter.family}-{stamp}.safetensors",
                            speaker_ids=[corpus.speaker_id],
                            specaugment=None if config.specaugment is None else config.specaugment.to_dict(),
                            training=training, metrics=metrics)
    report = result.parameter_report
    adapter_info = {"family": config.adapter.family, "parameters per speaker": report.get("per_speaker"),
                    "share of the base model": f"{report.get('per_speaker_percent', 0):.2f}%",
                    "base model": backend.name, "training steps": result.steps,
                    "training time": f"{result.seconds:.0f} s", "stopped because": result.stopped_reason,
                    "file": submodel.name}
    data = {"training utterances": len(train), "validation utterances (decide when to stop)": len(valid),
            "training minutes": f"{minutes:.1f}",
            "held-out utterances": len(held_out), "decoder": decoder}
    html_path, csv_path = _write_report_for(corpus, comparison, result, adapter_info, data, report_dir, stamp)
    return PersonalizationRun(corpus.speaker_id, comparison, result, submodel, html_path, csv_path, adapted)


def _before_after(adapted: Any, held_out: list, decoder: Callable | None) -> Comparison:
    """Transcribe ``held_out`` with the base model (adapters off) and the personal model, same decoder."""
    before, after = _transcribe_both(adapted, held_out, decoder)
    return compare([e.text for e in held_out], before, after, utt_ids=[e.utt_id for e in held_out])


def _transcribe_both(adapted: Any, examples: list, decoder: Callable | None) -> tuple[list[str], list[str]]:
    """``(base, personal)`` transcripts of ``examples``; each is routed to its own bank row
    (``Example.speaker``; row 0 for one speaker)."""
    if not examples:
        return [], []
    wavs = [e.wav for e in examples]
    rows = [e.speaker for e in examples] if adapted.num_speakers > 1 else None
    with adapted.disabled():
        before = adapted.transcribe(wavs, decoder=decoder, speakers=rows)
    return before, adapted.transcribe(wavs, decoder=decoder, speakers=rows)


def _write_report_for(corpus: Any, comparison: Comparison, result: TrainResult, adapter_info: dict, data: dict,
                     report_dir: str | Path | None, stamp: str) -> tuple[Path, Path]:
    from workbench.report import write_report

    out = Path(report_dir) if report_dir else corpus.root / "reports"
    return write_report(out, speaker=corpus.info, comparison=comparison, history=result.history,
                        adapter=adapter_info, data=data, name=f"report-{stamp}")


@dataclasses.dataclass(frozen=True)
class BaseScore:
    """ASR word/character error rates of one model on a speaker's held-out recordings."""

    speaker_id: str
    wer: float
    cer: float
    n_utterances: int

    def summary(self) -> str:
        from workbench.evaluate import METRIC_LABEL

        return (f"{self.speaker_id}: {METRIC_LABEL} {100 * self.wer:.1f}% (character error rate "
                f"{100 * self.cer:.1f}%) on {self.n_utterances} held-out recordings, base model")


def bank_row(meta: dict, speaker_id: str | None) -> int:
    """The row of ``speaker_id`` in a Submodel file's metadata (``read_submodel``/``load_submodel``).

    A one-speaker file has one row (0) whatever the id; a bank needs an id it holds.
    """
    ids = list(meta.get("speaker_ids", []))
    if len(ids) <= 1:
        return 0
    if speaker_id not in ids:
        shown = ", ".join(ids[:8]) + (f" and {len(ids) - 8} more" if len(ids) > 8 else "")
        what = (f"it does not hold {speaker_id!r}" if speaker_id
                else "choose one (on the command line: --speaker ID)")
        raise TrainingError(f"this Submodel file is a bank of {len(ids)} speakers ({shown}): {what}")
    return ids.index(speaker_id)


def _adapter_owner(meta: dict, speaker_id: str, path: Path) -> str:
    """Whose adapter a Submodel file is, in words; warns when it is another speaker's (issue 16)."""
    ids = list(meta.get("speaker_ids", []))
    if speaker_id in ids:
        return speaker_id if len(ids) == 1 else f"{speaker_id} (one of {len(ids)} speakers in a bank)"
    import warnings

    warnings.warn(f"{path.name} is {ids[0]!r}'s adapter, not {speaker_id!r}'s: these scores are another speaker's "
                  f"adapter on {speaker_id!r}'s recordings, not {speaker_id!r}'s personal result. To score "
                  f"{speaker_id!r}'s own adapter, leave out --adapter (the newest in its submodels folder is used) "
                  "or choose one of its own files.", UserWarning, stacklevel=3)
    return f"{ids[0]} (another speaker: not {speaker_id})"


def _newest_submodel(root: Path) -> Path | None:
    files = sorted((root / "submodels").glob("*.safetensors"), key=lambda p: p.stat().st_mtime)
    return files[-1] if files else None


def evaluate_speaker(speaker_dir: str | Path, *, model: str = "tiny", backend: Any = None,
                     adapter: str | Path | None = None, decoder: str = "lexicon", test_fraction: float = 0.25,
                     seed: int = 0, write_report: bool = False) -> Comparison | BaseScore:
    """Score the base model, and the speaker's personal adapter when there is one.

    Held-out recordings are those the adapter never saw: its file lists its training
    and validation utterances, and every recording of their prompts is excluded too. Without an
    adapter the folder is split as :func:`personalize_speaker` splits it.

    Returns:
        a :class:`~workbench.evaluate.Comparison` (base vs personal) or, with no adapter,
        a :class:`BaseScore`. ``write_report`` also writes the HTML/CSV report.
    """
    from workbench.adapters import load_submodel
    from workbench.corpus import SpeakerCorpus
    from workbench.evaluate import cer, wer
    from workbench.models.loading import load_base_model

    corpus = SpeakerCorpus.open(speaker_dir)
    backend = backend or load_base_model(model)
    path = Path(adapter) if adapter else _newest_submodel(corpus.root)
    dec = build_decoder(decoder, prompts=corpus.prompts(), backend=backend)
    if path is None:
        if write_report:
            raise TrainingError(f"{corpus.speaker_id} has no personal adapter yet: run "
                                f"'workbench personalize {corpus.root}' first")
        _, test_utts = corpus.split(test_fraction=test_fraction, seed=seed)
        held_out = examples_from_corpus(corpus, test_utts)
        refs = [e.text for e in held_out]
        hyps = backend.transcribe([e.wav for e in held_out], decoder=dec)
        return BaseScore(corpus.speaker_id, wer(refs, hyps), cer(refs, hyps), len(held_out))
    adapted, meta = load_submodel(backend, path)
    try:
        row = bank_row(meta, corpus.speaker_id)
        owner = _adapter_owner(meta, corpus.speaker_id, path)
        used = meta.get("training", {})
        if "speakers" in used:  # a bank (train_bank): this speaker's takes, and every trained prompt
            used = {**{k: v for k, v in used.items() if k != "speakers"}, **used["speakers"].get(corpus.speaker_id, {})}
        trained = set(used.get("utt_ids", [])) | set(used.get("valid_utt_ids", []))  # training or validation
        all_utts = corpus.utterances()
        train_prompts = {u.prompt.lower() for u in all_utts if u.utt_id in trained} | set(used.get("prompts", []))
        test_utts = [u for u in all_utts if u.utt_id not in trained and u.prompt.lower() not in train_prompts]
        if not test_utts:
            raise TrainingError("every recording of this speaker was used to train the adapter, so there is "
                                "nothing left to measure on; record a few new prompts")
        comparison = _before_after(adapted, examples_from_corpus(corpus, test_utts, speaker=row), dec)
        if write_report:
            from workbench.report import write_report as _write

            stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
            info = {"family": meta.get("family"), "file": path.name, "trained for": owner,
                    "base model": meta.get("base_model"), "created": meta.get("created")}
            html_path, _ = _write(corpus.root / "reports", speaker=corpus.info, comparison=comparison,
                                  adapter=info, name=f"report-{stamp}",
                                  data={k: v for k, v in used.items() if not k.endswith("utt_ids") and k != "prompts"})
            print(f"Report: {html_path}")
        return comparison
    finally:
        adapted.remove()


# ---------------------------------------------------------------------------- many speakers, one job


@dataclasses.dataclass
class BankRun:
    """What :func:`train_bank` produced. In a ``torchrun`` job only rank 0 writes the
    file: elsewhere ``path`` is None (``comparisons`` is the same everywhere)."""

    speaker_ids: list[str]
    train_result: TrainResult
    comparisons: dict[str, Comparison]  # speaker id -> ASR word error rates before/after on its test phrases
    path: Path | None  # the bank's Submodel file
    adapted: Any

    def table(self) -> str:
        """One line per speaker: WER before -> after on its own test phrases."""
        lines = [f"{'speaker':28s} {'before':>7s} {'after':>7s}  test phrases"]
        for sid, c in self.comparisons.items():
            lines.append(f"{sid:28s} {100 * c.wer_before:6.1f}% {100 * c.wer_after:6.1f}%  {len(c.utterances)}")
        return "\n".join(lines)


def speaker_folders(paths: list[str | Path]) -> list[Any]:
    """The :class:`~workbench.corpus.SpeakerCorpus` of each path: a speaker folder, or a folder
    of speaker folders (all of them). Raises if none is found or an id repeats."""
    from workbench.corpus import SpeakerCorpus, list_speakers

    corpora = []
    for path in paths:
        path = Path(path)
        corpora += [SpeakerCorpus.open(path)] if (path / "speaker.json").is_file() else list_speakers(path)
    if not corpora:
        raise TrainingError(f"no speaker folders in {', '.join(map(str, paths))} (a speaker folder holds "
                            "speaker.json; make them with the app, workbench record or workbench simulate)")
    ids = [c.speaker_id for c in corpora]
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        raise TrainingError(f"speaker ids must differ within one bank; given twice: {', '.join(twice)}")
    return corpora


def train_bank(
    speakers: list[str | Path],
    out: str | Path,
    *,
    backend: Any = None,
    model: str = "tiny",
    device: str = "cpu",
    config: TrainConfig | None = None,
    decoder: str = "lexicon",
    test_fraction: float = 0.25,
    valid_fraction: float = 0.15,
    max_train: int | None = None,
    seed: int = 0,
    progress: bool = True,
) -> BankRun:
    """Train one Submodel bank for many speakers in one job (one row per speaker).

    Every batch mixes speakers; each example is routed to its own speaker's rows.
    Each speaker is split by prompt as :func:`personalize_speaker` splits one
    (test / validation / training); early stopping and the checkpoint kept follow
    the validation set of all speakers together. A prompt that is a test phrase of
    any speaker is used in training by none, since shared weights would have heard
    it. Under ``torchrun`` each process takes its share of every batch and of the
    test phrases (:mod:`workbench.distributed`); only rank 0 writes the file.

    Args:
        speakers: speaker folders, or folders of speaker folders.
        out: the bank's Submodel file (``.safetensors``); one speaker's Submodel can be
            taken out of it with :meth:`workbench.adapters.SubmodelBank.export_speaker`.
        config: training settings (default :class:`TrainConfig` with ``seed``).
        max_train: use at most this many of each speaker's takes for training and validation
            together (as :func:`personalize_speaker`).
    """
    from workbench import distributed
    from workbench.models.loading import load_base_model

    corpora = speaker_folders(speakers)
    _check_writable(Path(out))  # before the training, not after it
    splits = [three_way_split(c, test_fraction=test_fraction, valid_fraction=valid_fraction, seed=seed,
                              max_train=max_train) for c in corpora]
    # A prompt that is a test phrase of any speaker is trained on by none: shared weights (HRA's
    # controller, the speaker space) would otherwise have heard its text from another voice. Such
    # takes join their speaker's test phrases (as evaluate_speaker would count them).
    test_prompts = {u.prompt.lower() for _, _, te in splits for u in te}
    train, valid, held_out, used, trained_prompts = [], [], [], {}, set()
    for row, (corpus, (tr, va, te)) in enumerate(zip(corpora, splits, strict=True)):
        te = te + [u for u in tr + va if u.prompt.lower() in test_prompts]  # never trained on: tested
        tr, va = ([u for u in part if u.prompt.lower() not in test_prompts] for part in (tr, va))
        train += examples_from_corpus(corpus, tr, speaker=row)
        valid += examples_from_corpus(corpus, va, speaker=row)
        held_out += examples_from_corpus(corpus, te, speaker=row)
        used[corpus.speaker_id] = {"utt_ids": [u.utt_id for u in tr], "valid_utt_ids": [u.utt_id for u in va]}
        trained_prompts |= {u.prompt.lower() for u in tr + va}
    backend = backend or load_base_model(model, device=device)
    dec = build_decoder(decoder, prompts=sorted({p for c in corpora for p in c.prompts()}),
                        backend=backend)  # validation
    config = config or default_config(backend, seed=seed)
    trainer = Trainer(backend, train, valid, config, decoder=dec)
    rank, world = distributed.rank_and_size()
    if progress and rank == 0:
        _progress_bar(trainer)
    result = trainer.fit()
    # Test phrases: every process transcribes its share, each speaker with its own decoder (the one
    # personalize_speaker and evaluate_speaker use), and every process gathers all of them.
    by_row = [[i for i, e in enumerate(held_out) if e.speaker == row] for row in range(len(corpora))]
    share: list[tuple] = []
    for corpus, idx in zip(corpora, by_row, strict=True):
        mine = idx[rank::world]
        before, after = _transcribe_both(trainer.adapted, [held_out[i] for i in mine],
                                         build_decoder(decoder, prompts=corpus.prompts(), backend=backend))
        share += list(zip(mine, before, after, strict=True))
    heard = {i: (b, a) for part in distributed.all_gather_objects(share) for i, b, a in part}
    comparisons = {corpus.speaker_id: compare([held_out[i].text for i in idx], [heard[i][0] for i in idx],
                                              [heard[i][1] for i in idx], utt_ids=[held_out[i].utt_id for i in idx])
                   for corpus, idx in zip(corpora, by_row, strict=True)}
    ids = [c.speaker_id for c in corpora]
    if rank != 0:
        return BankRun(ids, result, comparisons, None, trainer.adapted)
    training = {"speakers": used, "prompts": sorted(trained_prompts), "steps": result.steps,
                "seconds": round(result.seconds, 1), "stopped": result.stopped_reason, "processes": world,
                "decoder": decoder_name(decoder, backend)}
    metrics = {sid: {"wer_before": c.wer_before, "wer_after": c.wer_after, "held_out_utterances": len(c.utterances)}
               for sid, c in comparisons.items()}
    path = trainer.adapted.save(out, speaker_ids=ids,
                                specaugment=None if config.specaugment is None else config.specaugment.to_dict(),
                                training=training, metrics=metrics)
    return BankRun(ids, result, comparisons, path, trainer.adapted)


def _check_writable(path: Path) -> None:
    """Raise a plain error now if ``path`` could not be written later."""
    import os

    folder = path.parent  # Path("bank.safetensors").parent is Path(".")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise TrainingError(f"cannot create the folder for {path} ({err.strerror}); choose another --out") from None
    if path.is_dir() or not os.access(folder, os.W_OK):
        raise TrainingError(f"cannot write {path} (a folder, or no permission to write there); choose another --out")
