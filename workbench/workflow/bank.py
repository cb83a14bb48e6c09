"""Many speakers, one job: one Submodel bank (a row per speaker), also across processes (``torchrun``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from workbench._disk import check_room_for_run
from workbench.dataset import examples_from_corpus
from workbench.defaults import RUN_DEFAULTS
from workbench.errors import TrainingError
from workbench.metrics import Comparison, compare
from workbench.text import prompt_key
from workbench.trainer import TrainConfig, Trainer, TrainResult
from workbench.workflow.common import (
    _check_writable,
    _progress_bar,
    _transcribe_both,
    build_decoder,
    decoder_name,
    default_config,
    three_way_split,
)
from workbench.workflow.steps import nothing_learned, nothing_learned_error

if TYPE_CHECKING:
    from workbench.adapters import Adapted
    from workbench.corpus import SpeakerCorpus
    from workbench.models import ASRBackend
    from workbench.models.choice import ModelChoice

__all__ = ["BankRun", "bank_base_model", "speaker_folders", "train_bank"]


@dataclasses.dataclass
class BankRun:
    """What :func:`train_bank` produced. In a ``torchrun`` job only rank 0 writes the
    file: elsewhere ``path`` is None (``comparisons`` is the same everywhere)."""

    speaker_ids: list[str]
    train_result: TrainResult
    comparisons: dict[str, Comparison]  # speaker id -> ASR word error rates before/after on its test phrases
    path: Path | None  # the bank's Submodel file
    adapted: Adapted

    def table(self) -> str:
        """One line per speaker: WER before -> after on its own test phrases."""
        lines = [f"{'speaker':28s} {'before':>7s} {'after':>7s}  test phrases"]
        for sid, c in self.comparisons.items():
            lines.append(f"{sid:28s} {100 * c.wer_before:6.1f}% {100 * c.wer_after:6.1f}%  {len(c.utterances)}")
        return "\n".join(lines)


def speaker_folders(paths: list[str | Path]) -> list[SpeakerCorpus]:
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


def bank_base_model(corpora: list[SpeakerCorpus], model: str = RUN_DEFAULTS.model) -> ModelChoice:
    """The base model of a bank: ``model``, or with ``"auto"`` the built-in model when every
    speaker is simulated, else Whisper tiny.en (:func:`~workbench.models.choice.choose_base_model`)."""
    from workbench.models.choice import choose_base_model

    return choose_base_model({"simulated": all(bool(c.info.get("simulated")) for c in corpora)}, model)


def train_bank(
    speakers: list[str | Path],
    out: str | Path,
    *,
    backend: ASRBackend | None = None,
    model: str = RUN_DEFAULTS.model,
    device: str = "cpu",
    config: TrainConfig | None = None,
    decoder: str = RUN_DEFAULTS.decoder,
    test_fraction: float = RUN_DEFAULTS.test_fraction,
    valid_fraction: float = RUN_DEFAULTS.valid_fraction,
    max_train: int | None = None,
    seed: int = RUN_DEFAULTS.seed,
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
        model: without ``backend``: a base model name, or ``"auto"`` (:func:`bank_base_model`).
        config: training settings (default: :func:`default_config` of the base model, with ``seed``).
        max_train: use at most this many of each speaker's takes for training and validation
            together (as :func:`personalize_speaker`).

    Raises:
        TrainingError: the disk holding ``out`` has too little room for the bank (checked before
            training, from the adapter's size: :func:`workbench._disk.check_room_for_run`).
        NothingLearnedError: the run stopped before its first check (no evaluation after step 0):
            the adapter is untrained, so no bank is saved. A ``backend`` given is left without it.
    """
    from workbench import distributed
    from workbench.models import load_base_model

    corpora = speaker_folders(speakers)
    _check_writable(Path(out))  # before the training, not after it
    splits = [three_way_split(c, test_fraction=test_fraction, valid_fraction=valid_fraction, seed=seed,
                              max_train=max_train) for c in corpora]
    # A prompt that is a test phrase of any speaker is trained on by none: shared weights (HRA's
    # controller, the speaker space) would otherwise have heard its text from another voice. Such
    # takes join their speaker's test phrases (as evaluate_speaker would count them).
    test_prompts = {prompt_key(u.prompt) for _, _, te in splits for u in te}
    train, valid, held_out, used, trained_prompts = [], [], [], {}, set()
    for row, (corpus, (tr, va, te)) in enumerate(zip(corpora, splits, strict=True)):
        te = te + [u for u in tr + va if prompt_key(u.prompt) in test_prompts]  # never trained on: tested
        tr, va = ([u for u in part if prompt_key(u.prompt) not in test_prompts] for part in (tr, va))
        train += examples_from_corpus(corpus, tr, speaker=row)
        valid += examples_from_corpus(corpus, va, speaker=row)
        held_out += examples_from_corpus(corpus, te, speaker=row)
        used[corpus.speaker_id] = {"utt_ids": [u.utt_id for u in tr], "valid_utt_ids": [u.utt_id for u in va]}
        trained_prompts |= {prompt_key(u.prompt) for u in tr + va}
    backend = backend or load_base_model(bank_base_model(corpora, model).name, device=device,
                                         offline=model == "auto")
    dec = build_decoder(decoder, prompts=sorted({p for c in corpora for p in c.prompts()}),
                        backend=backend)  # validation
    config = config or default_config(backend, seed=seed)
    trainer = Trainer(backend, train, valid, config, decoder=dec)
    try:  # a full disk: found now, not at the save after the training (issue 24 B8)
        check_room_for_run(trainer, held_out=0, submodel_dir=Path(out).parent, report_dir=None)
    except TrainingError:
        trainer.adapted.remove()  # the backend goes back as it came
        raise
    rank, world = distributed.rank_and_size()
    if progress and rank == 0:
        _progress_bar(trainer)
    result = trainer.fit()
    if nothing_learned(result):  # an untrained adapter is no personal model (issue 24 A5); every process agrees
        trainer.adapted.remove()
        raise nothing_learned_error(result, config.eval_every, what="bank",
                                    unsaved=f"no bank was saved (nothing was written to '{out}')")
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
                "seconds": round(result.seconds, 1), "stopped": result.stopped_reason,
                "stopped_because": result.stopped_because, "processes": world, "decoder": decoder_name(decoder, backend)}
    if result.cut_short:  # the time ceiling ended it, not convergence
        training["cut_short"] = result.cut_short
    if hasattr(backend, "encoding_window"):  # Whisper: the window the bank learned, decoded on from now on
        training["window"] = backend.encoding_window
    metrics = {sid: {"wer_before": c.wer_before, "wer_after": c.wer_after, "held_out_utterances": len(c.utterances)}
               for sid, c in comparisons.items()}
    path = trainer.adapted.save(out, speaker_ids=ids,
                                specaugment=None if config.specaugment is None else config.specaugment.to_dict(),
                                training=training, metrics=metrics)
    return BankRun(ids, result, comparisons, path, trainer.adapted)
