"""Scoring a speaker's personal adapter (or the base model alone) on recordings it never saw.

The result types come first: :class:`ModelsInUse` (which base model and Submodel, and why, as
:func:`choose_models` decides it for every command that uses a speaker's personal model), and
:class:`Evaluation`, the one type :func:`evaluate_speaker` returns. Nothing here prints: a front end
says the lines it is given. Also :func:`bank_row`, the row of a speaker in a Submodel file, which the
CLI uses too.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from workbench.dataset import examples_from_corpus
from workbench.defaults import RUN_DEFAULTS
from workbench.errors import TrainingError
from workbench.metrics import Comparison, compare
from workbench.models.choice import ModelChoice
from workbench.text import prompt_key
from workbench.workflow.common import FigureMaker, _transcribe_both, build_decoder

if TYPE_CHECKING:
    from workbench.adapters import Adapted
    from workbench.corpus import SpeakerCorpus
    from workbench.dataset import Example
    from workbench.models import ASRBackend
    from workbench.workflow.personal import PersonalModel

__all__ = ["BaseScore", "Evaluation", "ModelsInUse", "bank_row", "choose_models", "evaluate_speaker"]


@dataclasses.dataclass(frozen=True)
class ModelsInUse:
    """The base model and the Submodel a command uses, each with the line that says why.

    ``base.name`` is what to load: ``load_base_model(base.name, offline=offline)``.
    """

    base: ModelChoice  # the base model's name and why, e.g. "base model: tiny (chosen by you)"
    submodel: Path | None  # the Submodel file, or None: the base model alone
    submodel_reason: str | None  # one line, "Personal model: ... (why)"; None when nothing was asked about it
    offline: bool  # True for --model auto: a name read from a file (or the speaker's kind) never downloads
    personal: PersonalModel | None = None  # the speaker's personal model when it was chosen from their runs

    def lines(self) -> list[str]:
        """What a front end says before it loads anything: the Submodel line, then the base model's."""
        said = [] if self.submodel_reason is None else [self.submodel_reason]
        return [*said, self.base.reason[0].upper() + self.base.reason[1:]]


@dataclasses.dataclass(frozen=True)
class BaseScore:
    """ASR word/character error rates of one model on a speaker's held-out recordings."""

    speaker_id: str
    wer: float
    cer: float
    n_utterances: int

    def summary(self) -> str:
        from workbench.metrics import METRIC_LABEL

        return (f"{self.speaker_id}: {METRIC_LABEL} {100 * self.wer:.1f}% (character error rate "
                f"{100 * self.cer:.1f}%) on {self.n_utterances} held-out recordings, base model")


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """What :func:`evaluate_speaker` measured on a speaker's held-out recordings, and with which models.

    ``base`` is always there: the base model alone (with a Submodel, the "before" side of
    ``comparison``). ``comparison`` is the base model against the personal model, utterance by
    utterance, or None when there is no Submodel.
    """

    speaker_id: str
    base: BaseScore
    comparison: Comparison | None
    models: ModelsInUse
    report_html: Path | None = None  # the HTML report, when one was asked for (its CSV lies beside it)

    def summary(self) -> str:
        """One plain sentence: before and after with a Submodel, else the base model's rates."""
        return self.comparison.summary() if self.comparison is not None else self.base.summary()


def choose_models(speaker: SpeakerCorpus | str | Path | None, model: str = RUN_DEFAULTS.model,
                  submodel: str | Path | None = None, *, personal: bool = True) -> ModelsInUse:
    """The base model and Submodel for a speaker (or, with ``speaker`` None, for plain audio files).

    THE choice every command makes (``transcribe``, ``evaluate``, ``report``, ``personalize``,
    ``listen``, :func:`evaluate_speaker`): ``submodel`` when given; else, with a speaker and
    ``personal``, the speaker's personal model (:func:`~workbench.workflow.personal.personal_submodel`:
    the run the user chose, else the newest run that beat the base model); else none.
    ``model="auto"`` is the base model that Submodel was trained on, else one by the speaker's kind
    (:func:`~workbench.models.choice.choose_base_model`). Nothing is loaded or printed.

    Raises:
        CorpusError: ``speaker`` is not a speaker folder.
    """
    from workbench.models.choice import choose_base_model

    corpus = speaker
    if speaker is not None and isinstance(speaker, (str, Path)):
        from workbench.corpus import SpeakerCorpus

        corpus = SpeakerCorpus.open(speaker)
    path, reason, adapter_base, chosen = None, None, None, None
    if submodel:
        path = Path(submodel)
        reason = f"Personal model: {path.name} (given with --adapter)"
        if model == "auto" and path.is_file():
            from workbench.adapters.io import read_submodel

            adapter_base = read_submodel(path)[1].get("base_model")
    elif corpus is not None and personal:
        from workbench.workflow.personal import personal_submodel

        chosen = personal_submodel(corpus.root)
        path, adapter_base = (chosen.path, chosen.base_model) if chosen else (None, None)
        reason = chosen.describe() if chosen else (
            f"Personal model: none ({corpus.speaker_id} has no run that beat the base model on its test "
            "phrases, and none was chosen); the base model alone is used. --adapter FILE names a run.")
    choice = choose_base_model(corpus.info if corpus is not None else None, model, adapter_base=adapter_base)
    return ModelsInUse(choice, path, reason, offline=model == "auto", personal=chosen)


def _before_after(adapted: Adapted, held_out: list[Example], decoder: Callable | None) -> Comparison:
    """Transcribe ``held_out`` with the base model (adapters off) and the personal model, same decoder."""
    before, after = _transcribe_both(adapted, held_out, decoder)
    return compare([e.text for e in held_out], before, after, utt_ids=[e.utt_id for e in held_out])


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
    from workbench.notices import notify

    notify(f"{path.name} is {ids[0]!r}'s adapter, not {speaker_id!r}'s: these scores are another speaker's "
                  f"adapter on {speaker_id!r}'s recordings, not {speaker_id!r}'s personal result. To score "
                  f"{speaker_id!r}'s own adapter, leave out --adapter (its personal model is used) "
                  "or choose one of its own files.", stacklevel=3)
    return f"{ids[0]} (another speaker: not {speaker_id})"


def evaluate_speaker(speaker_dir: str | Path, *, model: str = RUN_DEFAULTS.model, backend: ASRBackend | None = None,
                     adapter: str | Path | None = None, decoder: str = RUN_DEFAULTS.decoder,
                     test_fraction: float = RUN_DEFAULTS.test_fraction, seed: int = RUN_DEFAULTS.seed,
                     write_report: bool = False,
                     figures: FigureMaker | None = None,
                     vocabulary: Sequence[str] | None = None,
                     say: Callable[[str], None] | None = None) -> Evaluation:
    """Score the base model, and the speaker's personal adapter when there is one.

    ``adapter`` None: the speaker's personal model (:func:`~workbench.workflow.personal_submodel`:
    the run the user chose, else the newest run that beat the base model), if any.
    Without ``backend``, ``model`` is loaded; ``"auto"`` is the adapter's own base model, or without
    one the speaker's (:func:`choose_models` decides both).

    Held-out recordings are those the adapter never saw: its file lists its training
    and validation utterances, and every recording of their prompts is excluded too. Without an
    adapter the folder is split as :func:`personalize_speaker` splits it.

    ``vocabulary``: the word list to decode with (names and words the speaker uses,
    :mod:`workbench.vocabulary`); None: the speaker's saved list.

    ``say``: called with each line of :meth:`ModelsInUse.lines` as soon as the models are chosen,
    before anything loads (the command line prints them); nothing is printed here.

    Returns:
        an :class:`Evaluation`: the base model's rates, and with a Submodel the
        :class:`~workbench.metrics.Comparison` (base vs personal). ``write_report`` also writes the
        HTML/CSV report (``report_html``), with ``figures(comparison, None)`` in it when given
        (see :func:`finish`).
    """
    from workbench.adapters import load_submodel
    from workbench.corpus import SpeakerCorpus
    from workbench.metrics import cer, wer
    from workbench.vocabulary import speaker_vocabulary

    corpus = SpeakerCorpus.open(speaker_dir)
    models = choose_models(corpus, model, adapter or None)
    if backend is not None:  # a model the caller loaded is the base model, whatever ``model`` says
        models = dataclasses.replace(models, base=ModelChoice(backend.name, f"base model: {backend.name} (given)"))
    for line in models.lines() if say else ():
        say(line)
    if backend is None:
        from workbench.models import load_base_model

        backend = load_base_model(models.base.name, offline=models.offline)
    path = models.submodel
    dec = build_decoder(decoder, prompts=corpus.prompts(), backend=backend,
                        vocabulary=speaker_vocabulary(corpus.root) if vocabulary is None else vocabulary)
    if path is None:
        if write_report:
            runs = list((corpus.root / "submodels").glob("*.safetensors"))
            raise TrainingError(
                f"{corpus.speaker_id} has no personal adapter yet: none of its {len(runs)} runs beat the base model "
                "on the test phrases. Write the report of one run with --adapter FILE, or record more and train "
                f"again ('workbench personalize {corpus.root}')" if runs else
                f"{corpus.speaker_id} has no personal adapter yet: run 'workbench personalize {corpus.root}' first")
        _, test_utts = corpus.split(test_fraction=test_fraction, seed=seed)
        held_out = examples_from_corpus(corpus, test_utts)
        refs = [e.text for e in held_out]
        hyps = backend.transcribe([e.wav for e in held_out], decoder=dec)
        return Evaluation(corpus.speaker_id, BaseScore(corpus.speaker_id, wer(refs, hyps), cer(refs, hyps),
                                                       len(held_out)), None, models)
    adapted, meta = load_submodel(backend, path)
    try:
        row = bank_row(meta, corpus.speaker_id)
        owner = _adapter_owner(meta, corpus.speaker_id, path)
        used = meta.get("training", {})
        if "speakers" in used:  # a bank (train_bank): this speaker's takes, and every trained prompt
            used = {**{k: v for k, v in used.items() if k != "speakers"}, **used["speakers"].get(corpus.speaker_id, {})}
        trained = set(used.get("utt_ids", [])) | set(used.get("valid_utt_ids", []))  # training or validation
        all_utts = corpus.utterances()
        train_prompts = {prompt_key(u.prompt) for u in all_utts if u.utt_id in trained} | {
            prompt_key(p) for p in used.get("prompts", []) if isinstance(p, str)}  # files before prompt_key: lower()
        test_utts = [u for u in all_utts if u.utt_id not in trained and prompt_key(u.prompt) not in train_prompts]
        if not test_utts:
            raise TrainingError("every recording of this speaker was used to train the adapter, so there is "
                                "nothing left to measure on; record a few new prompts")
        comparison = _before_after(adapted, examples_from_corpus(corpus, test_utts, speaker=row), dec)
        html_path = None
        if write_report:
            from workbench.report import write_report as _write

            stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
            info = {"family": meta.get("family"), "file": path.name, "trained for": owner,
                    "base model": meta.get("base_model"), "created": meta.get("created")}
            html_path, _ = _write(corpus.root / "reports", speaker=corpus.info, comparison=comparison,
                                  adapter=info, name=f"report-{stamp}",
                                  data={k: v for k, v in used.items() if not k.endswith("utt_ids") and k != "prompts"},
                                  figures=figures(comparison, None) if figures else ())
        base = BaseScore(corpus.speaker_id, comparison.wer_before, comparison.cer_before, len(comparison.utterances))
        return Evaluation(corpus.speaker_id, base, comparison, models, report_html=html_path)
    finally:
        adapted.remove()
