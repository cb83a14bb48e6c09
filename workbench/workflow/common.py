"""What every job of the workflow shares: the decoder, the settings, the three-way split, the progress bar.

Also the two helpers the jobs share: transcribing with the base and the personal model
(the adapter switched off, then on) and checking that a result file can be written.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.defaults import RUN_DEFAULTS
from workbench.errors import TrainingError
from workbench.metrics import Comparison
from workbench.trainer import TrainConfig, Trainer
from workbench.training_defaults import train_settings_for

if TYPE_CHECKING:
    from workbench.adapters import Adapted
    from workbench.corpus import SpeakerCorpus
    from workbench.dataset import Example
    from workbench.models import ASRBackend

__all__ = ["FigureMaker", "build_decoder", "decoder_name", "default_config", "three_way_split"]

# fn(comparison, trainer history or None) -> the report's figures, e.g. workbench.plots.report_figures
FigureMaker = Callable[[Comparison, list[dict] | None], Sequence[Any]]


def build_decoder(kind: str, prompts: list[str] | None = None, *,
                  backend: ASRBackend | None = None, vocabulary: Sequence[str] = ()) -> Callable | None:
    """``"greedy"`` (None: the backend's default) or ``"lexicon"``.

    A sequence-to-sequence ``backend`` (Whisper) always decodes with its own search, so
    this returns None for it whatever ``kind`` says (see :func:`decoder_name`), or, with a
    ``vocabulary``, that search's bounded bias towards the listed words
    (:class:`~workbench.decode_bias.VocabularyBias`).

    ``vocabulary``: the speaker's word list (:mod:`workbench.vocabulary`; names, places,
    medicines). The CTC decoders boost its words: the lexicon decoder adds them to its
    words, and ``"greedy"`` becomes a beam search with free spelling that boosts them.

    The lexicon decoder is a beam search restricted to the words of the shipped
    everyday prompt list plus ``prompts`` (the speaker's own list), with a bigram
    LM of those sentences; the speaker's words that are not in the everyday list
    (names, places: personal vocabulary) are boosted. It assumes the speaker says
    phrases from that domain, as in phrase-based apps; free speech outside it
    will be forced onto known words.
    """
    if kind not in ("greedy", "lexicon"):
        raise TrainingError(f"decoder must be 'greedy' or 'lexicon', got {kind!r}")
    if backend is not None and backend.is_seq2seq:
        return backend.vocabulary_bias(list(vocabulary)) if vocabulary else None
    from workbench.decode import BeamSearchDecoder, Lexicon, WordLM
    from workbench.vocabulary import boost_words

    listed = boost_words(vocabulary)
    if kind == "greedy":
        return BeamSearchDecoder(boost=listed) if listed else None
    from workbench.prompts import load_prompts, prompt_vocabulary

    everyday = load_prompts("everyday")
    own = list(prompts or [])
    known = prompt_vocabulary(everyday)
    personal = sorted((prompt_vocabulary(own) - known) | set(listed))
    sentences = everyday + own
    return BeamSearchDecoder(Lexicon.from_sentences(sentences), WordLM.from_sentences(sentences), boost=personal)


def decoder_name(kind: str, backend: ASRBackend) -> str:
    """What decodes, in words, for reports: Whisper's own search, or the CTC decoder ``kind``."""
    return f"{backend.name} greedy search" if backend.is_seq2seq else kind


def default_config(backend: ASRBackend | None, **settings: Any) -> TrainConfig:
    """:class:`TrainConfig` with ``backend``'s defaults (its adapter and learning rate:
    :mod:`workbench.training_defaults`; its step limit) under ``settings``.

    Giving ``adapter`` drops the backend's learning rate too (the family's own default applies),
    not its step limit (:meth:`RunDefaults.max_steps_for <workbench.defaults.RunDefaults.max_steps_for>`:
    what a step of this model costs); ``backend=None`` gives the generic defaults."""
    base = {} if "adapter" in settings or backend is None else train_settings_for(backend)
    return TrainConfig(**{"max_steps": RUN_DEFAULTS.max_steps_for(backend), **base, **settings})


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


def three_way_split(corpus: SpeakerCorpus, *, test_fraction: float = RUN_DEFAULTS.test_fraction,
                    valid_fraction: float = RUN_DEFAULTS.valid_fraction, seed: int = RUN_DEFAULTS.seed,
                    max_train: int | None = None) -> tuple[list, list, list]:
    """``(train, valid, test)`` utterances of a speaker, split by prompt.

    The test prompts are those of ``corpus.split(test_fraction, seed)`` over the prompted
    takes (the same for every run and every model, so before/after figures compare);
    ``max_train`` caps the rest of the prompted takes (training + validation together);
    ``valid_fraction`` of its prompts are then set aside for validation.

    Takes from use (corrected live captions, :func:`workbench.corpus.from_use`) never become
    test phrases: all of them join the rest after the prompted takes (``max_train`` does not
    cap them), except those whose prompt is a test phrase (:func:`workbench.text.prompt_key`),
    which are left out altogether.
    """
    from workbench.corpus import from_use, split_by_prompt
    from workbench.text import prompt_key

    takes = corpus.utterances("ok")
    rest, test = split_by_prompt([u for u in takes if not from_use(u)], fraction=test_fraction, seed=seed)
    test_keys = {prompt_key(u.prompt) for u in test}
    if max_train is not None:
        rest = rest[:max_train]
    rest += [u for u in takes if from_use(u) and prompt_key(u.prompt) not in test_keys]
    train, valid = split_by_prompt(rest, fraction=valid_fraction, seed=seed + 1)
    return train, valid, test


def _transcribe_both(adapted: Adapted, examples: list[Example], decoder: Callable | None) -> tuple[list[str], list[str]]:
    """``(base, personal)`` transcripts of ``examples``; each is routed to its own bank row
    (``Example.speaker``; row 0 for one speaker)."""
    if not examples:
        return [], []
    wavs = [e.wav for e in examples]
    rows = [e.speaker for e in examples] if adapted.num_speakers > 1 else None
    with adapted.disabled():
        before = adapted.transcribe(wavs, decoder=decoder, speakers=rows)
    return before, adapted.transcribe(wavs, decoder=decoder, speakers=rows)


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
