"""Which model captions a speaker live, and why: :func:`open_recognizer`.

The personal model is the one every front end uses
(:func:`workbench.workflow.personal.personal_submodel`: the user's pick, else the newest run
that beat the base model). The base model is the one it was trained on (``model="auto"``),
else the speaker's kind decides (:func:`workbench.models.choice.choose_base_model`).
Every case a person may meet gets a sentence in the description, never a traceback:
no speaker given, no personal model yet, a personal model made for another base model
than the one asked for (the base model is used alone).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from workbench.errors import AdapterError
from workbench.live.stream import StreamingRecognizer

__all__ = ["open_recognizer"]


def _offline_decoder(options: dict[str, Any], corpus, backend, lines: list[str]) -> dict[str, Any]:
    """``options`` with the CTC decoder a speaker's evaluation uses (the lexicon of their prompts), so live
    captions read as the offline transcripts of the same model do (Whisper always uses its own search)."""
    from workbench.defaults import RUN_DEFAULTS
    from workbench.workflow.common import build_decoder

    decoder = dict(options.get("decoder") or {})
    if "text_decoder" not in decoder:
        decoder["text_decoder"] = build_decoder(RUN_DEFAULTS.decoder, prompts=corpus.prompts(), backend=backend)
        if decoder["text_decoder"] is not None:
            lines.append(f"Words are decoded with the {RUN_DEFAULTS.decoder} decoder of the speaker's evaluation "
                         "(the everyday and the speaker's own prompts).")
    return {**options, "decoder": decoder}


def open_recognizer(speaker_dir: str | Path | None = None, model: str = "auto", *, backend=None,
                    **options: Any) -> tuple[StreamingRecognizer, str]:
    """A :class:`StreamingRecognizer` for a speaker (their personal model when there is one) and a plain
    description of which model is used and why.

    Args:
        speaker_dir: the speaker folder, or None for the base model alone.
        model: ``"auto"`` (the personal model's own base model, else by the speaker's kind) or a base model name.
        backend: an already loaded base model to use instead of loading ``model`` (it must be the personal
            model's base model for the personal model to apply).
        options: :class:`StreamingRecognizer` settings (``step_s``, ``pause_s``, ...).

    Returns:
        ``(recognizer, description)``; the description has one sentence per line.

    Raises:
        CorpusError: ``speaker_dir`` is not a speaker folder.
    """
    from workbench.workflow.evaluation import choose_models

    corpus, info, lines = None, None, []
    if speaker_dir is not None:
        from workbench.corpus import SpeakerCorpus

        corpus = SpeakerCorpus.open(speaker_dir)
        info = corpus.info
    models = choose_models(corpus, model)
    personal = models.personal
    if backend is None:
        from workbench.models import load_base_model

        choice = models.base
        lines.append(choice.reason[0].upper() + choice.reason[1:] + ".")
        backend = load_base_model(choice.name)
    else:
        lines.append(f"Base model: {backend.name} (given).")
    if speaker_dir is not None and not backend.is_seq2seq:
        options = _offline_decoder(options, corpus, backend, lines)
    if speaker_dir is None:
        lines.append("No speaker chosen: the base model captions alone (give a speaker folder to use their "
                     "personal model).")
        return StreamingRecognizer(backend, **options), "\n".join(lines)
    if personal is None:
        lines.append("No personal model yet for this speaker: the base model is used. Personalize it first "
                     "(workbench personalize, or the app's Personalize page) to caption with a personal model.")
        return StreamingRecognizer(backend, **options), "\n".join(lines)
    try:
        rec = StreamingRecognizer(backend, submodel=personal.path, speaker=info.get("speaker_id"), **options)
    except AdapterError as err:
        lines.append(f"The personal model {personal.path.name} was made for base model {personal.base_model!r}, "
                     f"not {backend.name!r}, so the base model captions alone ({err}). Use the model 'auto' to "
                     "caption with the personal model.")
        return StreamingRecognizer(backend, **options), "\n".join(lines)
    lines.append(personal.describe() + ".")
    return rec, "\n".join(lines)
