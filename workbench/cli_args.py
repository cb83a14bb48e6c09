"""The flags several ``workbench`` commands share, added and read in one place.

As icefall's ``add_model_arguments`` is shared by train, decode and export, each flag group here
is added by every command that takes it (``add_*``), so a flag means the same, with the same
default and help, wherever it appears; the readers below turn the parsed flags into what the core
takes (:func:`load_models`, :func:`family`, :func:`vocabulary`). Light to import: nothing here
loads torch until a command runs.
"""

from __future__ import annotations

import argparse
import os
import sys

from workbench.defaults import RUN_DEFAULTS
from workbench.errors import UsageError

__all__ = ["add_decoder_argument", "add_family_arguments", "add_microphone_argument", "add_model_arguments",
           "add_submodel_argument", "add_token_argument", "add_training_arguments", "add_vocabulary_argument",
           "adapter_choice", "family", "load_models", "say", "training_limits", "vocabulary"]

MODEL_HELP = ("base model: 'auto' (default: the built-in model for simulated speakers, Whisper tiny.en for real "
              "people when installed), 'tiny', 'whisper-tiny.en', 'whisper-base', a transformers hub id, or a "
              "local folder (transformers or CTranslate2/faster-whisper)")
SIZE_HELP = ("a size of the built-in model: small, medium, large, or auto (the largest that runs in "
             "real time on this computer, measured now); 'workbench models' lists them")
VOCABULARY_HELP = ("a word list: one word or name a line that the speaker uses (family, places, medicines); "
                   "decoding favours them where the audio allows, no retraining (default: the list saved "
                   "in the speaker folder, if any)")
MINUTES_HELP = (f"a ceiling on the training time, in minutes (default {RUN_DEFAULTS.max_minutes:g}). Training "
                "normally ends sooner, when the model stops improving on the recordings kept aside, so a busy "
                "computer gives the same model, later; a run this limit cuts short says so")
DECODERS = ("greedy", "lexicon")


# --------------------------------------------------------------------------- adding the flags


def add_model_arguments(p: argparse.ArgumentParser, *, size: bool = False) -> None:
    """``--model NAME`` (default ``auto``), and with ``size`` ``--size small|medium|large|auto``."""
    p.add_argument("--model", default=RUN_DEFAULTS.model, help=MODEL_HELP)
    if size:
        p.add_argument("--size", default=None, choices=["small", "medium", "large", "auto"], help=SIZE_HELP)


def add_decoder_argument(p: argparse.ArgumentParser, default: str = RUN_DEFAULTS.decoder) -> None:
    """``--decoder greedy|lexicon``."""
    p.add_argument("--decoder", default=default, choices=list(DECODERS))


def add_vocabulary_argument(p: argparse.ArgumentParser) -> None:
    """``--vocabulary FILE``: a word list that biases decoding (read by :func:`vocabulary`)."""
    p.add_argument("--vocabulary", default=None, metavar="FILE", help=VOCABULARY_HELP)


def add_family_arguments(p: argparse.ArgumentParser) -> None:
    """``--family NAME`` and ``--adapter FAMILY``, its former name there (read by :func:`family`)."""
    p.add_argument("--family", default=None, help="adapter family: lora (default), residual, conv, hra or vector")
    p.add_argument("--adapter", dest="family_alias", default=None, metavar="FAMILY",
                   help="the former name of --family (this release only; elsewhere --adapter is a Submodel file)")


def add_training_arguments(p: argparse.ArgumentParser, *, size: bool = False) -> None:
    """What every training command takes: the base model (and with ``size`` ``--size``), the adapter
    family, ``--minutes``, the decoder of its test phrases and ``--seed`` (defaults:
    :data:`~workbench.defaults.RUN_DEFAULTS`)."""
    add_model_arguments(p, size=size)
    add_family_arguments(p)
    p.add_argument("--minutes", type=float, default=RUN_DEFAULTS.max_minutes, help=MINUTES_HELP)
    add_decoder_argument(p)
    p.add_argument("--seed", type=int, default=RUN_DEFAULTS.seed)


def add_submodel_argument(p: argparse.ArgumentParser, help_text: str) -> None:
    """``--adapter FILE``: a Submodel file (everywhere but the training commands)."""
    p.add_argument("--adapter", default=None, help=help_text)


def add_token_argument(p: argparse.ArgumentParser, help_text: str) -> None:
    """``--token``: the clinic server's secret (default: ``$WORKBENCH_SERVER_TOKEN``)."""
    p.add_argument("--token", default=os.environ.get("WORKBENCH_SERVER_TOKEN"), help=help_text)


def add_microphone_argument(p: argparse.ArgumentParser) -> None:
    """``--device``: which microphone (``record``, ``listen``)."""
    p.add_argument("--device", default=None, help="microphone index or name (default: the system default)")


# --------------------------------------------------------------------------- reading them


def say(line: str) -> None:
    """One line for the person at the terminal about what a command uses (stderr: stdout is the result)."""
    print(line, file=sys.stderr)


def adapter_choice(name: str | None) -> dict:
    """``TrainConfig`` keyword for ``--family NAME`` (given to the constructor, so that the learning
    rate follows the family's default); ``{}`` without one.

    Raises:
        UsageError: not an adapter family.
    """
    if not name:
        return {}
    from workbench.adapters import REGISTRY

    if name not in REGISTRY:
        raise UsageError(f"unknown adapter family {name!r}; choose one of {sorted(REGISTRY)}")
    return {"adapter": REGISTRY[name][0]()}


def family(args: argparse.Namespace) -> str | None:
    """The adapter family ``personalize`` / ``train-bank`` train: ``--family``, or ``--adapter``, its former
    name there, which works for one more release with a note (everywhere else ``--adapter`` is a Submodel file).

    Raises:
        UsageError: both are given.
    """
    if args.family_alias is None:
        return args.family
    if args.family is not None:
        raise UsageError(f"--adapter is the former name of --family here; give the adapter family once, as "
                         f"--family {args.family} (leave out --adapter {args.family_alias})")
    from workbench.notices import notify

    notify(f"use --family {args.family_alias}: for {args.command}, --adapter still names the adapter family, for "
           "this release only (everywhere else --adapter is a Submodel file, and it will be here too)")
    return args.family_alias


def training_limits(args: argparse.Namespace) -> dict:
    """``TrainConfig`` keywords for ``--minutes`` (and ``--steps`` where a command has it).

    Raises:
        UsageError: a ceiling no run can train under (``--minutes`` not above 0, ``--steps`` below 1).
    """
    if not args.minutes > 0:  # NaN too
        raise UsageError(f"--minutes must be more than 0, got {args.minutes:g}; it is a ceiling (default "
                         f"{RUN_DEFAULTS.max_minutes:g}): training normally ends sooner, when the model stops improving")
    steps = getattr(args, "steps", None)
    if steps is not None and steps < 1:
        raise UsageError(f"--steps must be at least 1, got {steps}; leave it out for the base model's own limit")
    return {"time_limit_s": 60.0 * args.minutes, **({"max_steps": steps} if steps else {})}


def vocabulary(args: argparse.Namespace, speaker_dir: str | None) -> list[str]:
    """The word list a command decodes with: ``--vocabulary FILE``, else the speaker's saved list
    (:func:`workbench.vocabulary.resolve_vocabulary`), said on stderr when there is one."""
    from workbench.vocabulary import resolve_vocabulary

    words = resolve_vocabulary(speaker_dir, args.vocabulary)
    if words:
        where = args.vocabulary if args.vocabulary else "the speaker's word list"
        shown = ", ".join(words[:5]) + (f", ... ({len(words)} in all)" if len(words) > 5 else "")
        say(f"Word list: {shown} (from {where})")
    return words


def load_models(speaker_dir: str | None, model: str, submodel: str | None = None, *, personal: bool = True,
                size: str | None = None):
    """``(backend, submodel)``: the base model, loaded, and the Submodel file to use (or None), each said on
    stderr first.

    The choice is :func:`workbench.workflow.evaluation.choose_models` (the speaker's personal model
    unless ``submodel`` is given or ``personal`` is False; ``--model auto``: the base model that
    Submodel was trained on, never downloaded). ``size`` (``--size``) picks a size of the built-in
    model instead, and says why.
    """
    import dataclasses

    from workbench.models import load_base_model
    from workbench.workflow.evaluation import choose_models

    models = choose_models(speaker_dir, model, submodel, personal=personal)
    if size is not None:  # --size: a size of the built-in model (auto: the largest in real time here)
        from workbench.models.choice import ModelChoice
        from workbench.models.supernet.sizes import sized_model

        models = dataclasses.replace(models, base=ModelChoice(*sized_model(size, model)), offline=False)
    for line in models.lines():
        say(line)
    return load_base_model(models.base.name, offline=models.offline), (
        None if models.submodel is None else str(models.submodel))
