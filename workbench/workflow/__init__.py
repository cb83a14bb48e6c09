"""The main job, in three steps: personalize one speaker folder and report before/after.

Used by ``workbench personalize``, ``workbench demo``, the notebooks and the app,
so every front end runs exactly the same steps:

1. :func:`prepare`: open the speaker folder and check that the results can be saved;
   split it by prompt into test (held-out texts, never trained on and never used to
   choose anything), validation (decides early stopping and which checkpoint to keep)
   and training; load the frozen base model, build the decoder (greedy, or a word
   lexicon + LM of the prompt domain plus the speaker's personal vocabulary), the
   settings and the :class:`~workbench.trainer.Trainer` (its feature caches);
2. :func:`train`: run the trainer (its events feed a progress bar, a live view, an app);
3. :func:`finish`: transcribe the held-out recordings with the base model and the
   personal model, save the Submodel and write the HTML/CSV report.

:func:`personalize_speaker` is the three in order. A view that shows the training
live (notebook 03, the app) calls them itself, so that it can hold the trainer (its
``stop()``) between the first two.

The package: :mod:`~workbench.workflow.steps` (one speaker, the three steps),
:mod:`~workbench.workflow.evaluation` (scoring an adapter later),
:mod:`~workbench.workflow.bank` (many speakers in one job),
:mod:`~workbench.workflow.personal` (which Submodel is a speaker's personal model) and
:mod:`~workbench.workflow.common` (the decoder, the settings and the split they share).
"""

from workbench.workflow.bank import BankRun, speaker_folders, train_bank
from workbench.workflow.common import (
    FigureMaker,
    build_decoder,
    decoder_name,
    default_config,
    three_way_split,
)
from workbench.workflow.evaluation import BaseScore, bank_row, evaluate_speaker
from workbench.workflow.personal import (
    PersonalModel,
    SubmodelRun,
    choose_personal_submodel,
    chosen_submodel,
    personal_submodel,
    run_advice,
    submodel_runs,
)
from workbench.workflow.steps import (
    NothingLearnedError,
    PersonalizationPlan,
    PersonalizationRun,
    finish,
    nothing_learned,
    personalize_speaker,
    prepare,
    train,
)

__all__ = ["BankRun", "BaseScore", "FigureMaker", "NothingLearnedError", "PersonalModel", "PersonalizationPlan",
           "PersonalizationRun", "SubmodelRun", "bank_row", "build_decoder", "choose_personal_submodel",
           "chosen_submodel", "decoder_name", "default_config", "evaluate_speaker", "finish", "nothing_learned",
           "personal_submodel", "personalize_speaker", "prepare", "run_advice", "speaker_folders", "submodel_runs",
           "three_way_split", "train", "train_bank"]
