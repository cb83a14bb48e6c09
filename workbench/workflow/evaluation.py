"""Scoring a speaker's personal adapter (or the base model alone) on recordings it never saw.

Also :func:`bank_row`, the row of a speaker in a Submodel file, which the CLI uses too.
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
from workbench.text import prompt_key
from workbench.workflow.common import FigureMaker, _transcribe_both, build_decoder

if TYPE_CHECKING:
    from workbench.adapters import Adapted
    from workbench.dataset import Example
    from workbench.models.base import ASRBackend

__all__ = ["BaseScore", "bank_row", "evaluate_speaker"]


def _before_after(adapted: Adapted, held_out: list[Example], decoder: Callable | None) -> Comparison:
    """Transcribe ``held_out`` with the base model (adapters off) and the personal model, same decoder."""
    before, after = _transcribe_both(adapted, held_out, decoder)
    return compare([e.text for e in held_out], before, after, utt_ids=[e.utt_id for e in held_out])


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
                     vocabulary: Sequence[str] | None = None) -> Comparison | BaseScore:
    """Score the base model, and the speaker's personal adapter when there is one.

    ``adapter`` None: the speaker's personal model (:func:`~workbench.workflow.personal_submodel`:
    the run the user chose, else the newest run that beat the base model), if any.
    Without ``backend``, ``model`` is loaded; ``"auto"`` is the adapter's own base model, or without
    one the speaker's (:func:`~workbench.models.choice.choose_base_model`).

    Held-out recordings are those the adapter never saw: its file lists its training
    and validation utterances, and every recording of their prompts is excluded too. Without an
    adapter the folder is split as :func:`personalize_speaker` splits it.

    ``vocabulary``: the word list to decode with (names and words the speaker uses,
    :mod:`workbench.vocabulary`); None: the speaker's saved list.

    Returns:
        a :class:`~workbench.metrics.Comparison` (base vs personal) or, with no adapter,
        a :class:`BaseScore`. ``write_report`` also writes the HTML/CSV report, with
        ``figures(comparison, None)`` in it when given (see :func:`finish`).
    """
    from workbench.adapters import load_submodel
    from workbench.corpus import SpeakerCorpus
    from workbench.metrics import cer, wer
    from workbench.models.loading import load_base_model
    from workbench.vocabulary import speaker_vocabulary

    corpus = SpeakerCorpus.open(speaker_dir)
    if adapter:
        path = Path(adapter)
    else:  # the speaker's personal model: the run the user chose, else the newest run that beat the base model
        from workbench.workflow.personal import personal_submodel

        personal = personal_submodel(corpus.root)
        path = personal.path if personal else None
    if backend is None:
        from workbench.adapters.io import read_submodel
        from workbench.models.choice import choose_base_model

        own_base = read_submodel(path)[1].get("base_model") if model == "auto" and path and path.is_file() else None
        backend = load_base_model(choose_base_model(corpus.info, model, adapter_base=own_base).name,
                                  offline=model == "auto")
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
        train_prompts = {prompt_key(u.prompt) for u in all_utts if u.utt_id in trained} | {
            prompt_key(p) for p in used.get("prompts", []) if isinstance(p, str)}  # files before prompt_key: lower()
        test_utts = [u for u in all_utts if u.utt_id not in trained and prompt_key(u.prompt) not in train_prompts]
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
                                  data={k: v for k, v in used.items() if not k.endswith("utt_ids") and k != "prompts"},
                                  figures=figures(comparison, None) if figures else ())
            print(f"Report: {html_path}")
        return comparison
    finally:
        adapted.remove()
