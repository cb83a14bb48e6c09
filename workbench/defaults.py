"""The defaults of a personalization run, in one place: :data:`RUN_DEFAULTS`.

The workflow (:func:`~workbench.workflow.prepare`, :func:`~workbench.workflow.personalize_speaker`,
:func:`~workbench.workflow.train_bank`, :func:`~workbench.workflow.evaluate_speaker`),
:meth:`~workbench.corpus.SpeakerCorpus.split`, the ``workbench`` command, the app and the
notebooks read their defaults here, so a run started from any of them is the same run.
No signature restates one of these values: it names the field (``seed: int = RUN_DEFAULTS.seed``).

Training ends on convergence (early stopping on the validation recordings) or at the step
limit; the time limit is a *ceiling* that a quiet 2-core laptop does not reach with these
defaults, so the model a run produces does not depend on how busy the computer is. When the
ceiling does cut a run short, the run says so (:attr:`workbench.trainer.TrainResult.cut_short`).

>>> RUN_DEFAULTS.model, RUN_DEFAULTS.decoder, RUN_DEFAULTS.test_fraction
('auto', 'lexicon', 0.25)
>>> RUN_DEFAULTS.time_limit_s / 60
15.0
"""

from __future__ import annotations

import dataclasses
from typing import Any

from workbench._deprecated import renamed_fields

__all__ = ["RUN_DEFAULTS", "RunDefaults"]


@renamed_fields(max_seconds="time_limit_s")  # the old name works, with a warning, until the next release
@dataclasses.dataclass(frozen=True)
class RunDefaults:
    """What a personalization run uses when nobody says otherwise (see docs/architecture.md,
    "Run defaults", for which value won where the front ends used to disagree, and why)."""

    # the base model: "auto" = the built-in model for simulated speakers, Whisper tiny.en for real
    # people (workbench.models.choice); a Submodel file brings its own
    model: str = "auto"
    # scores the test phrases of a speaker (and the validation WER of CTC models): the prompt
    # domain's words plus the speaker's own ("greedy" = the model alone)
    decoder: str = "lexicon"
    # `workbench transcribe` of arbitrary audio: free speech is not the prompt domain, and the
    # lexicon decoder would force it onto known words
    transcribe_decoder: str = "greedy"
    test_fraction: float = 0.25  # share of a speaker's prompts kept as test phrases (never trained on)
    valid_fraction: float = 0.15  # share of the other prompts kept aside to decide when to stop
    seed: int = 0  # the split and the training (initial weights, batch order)
    # the step limit (the cosine schedule ends there): CTC models such as the built-in one take
    # ~0.2-0.4 s a step with its evaluations, and stopped early after 20-120 steps on every
    # sample speaker (docs/results.md), so 400 is never the limit that ends a run
    max_steps: int = 400
    # sequence-to-sequence models (Whisper tiny.en): ~1.1 s a step at batch 8 on 2 cores plus
    # ~2 s an evaluation every 10 steps (docs/benchmarks.md), so 120 steps are about 3 minutes;
    # the best validation loss came at 20-70 steps (docs/results.md)
    max_steps_seq2seq: int = 120
    # the time ceiling, seconds (CLI --minutes, the app's slider): 3x the slowest default run on a
    # quiet 2-core laptop (Whisper on the slow ALS-like sample speaker: ~2.5 s a step with its
    # evaluations, so 120 steps = 5 minutes; 5x the usual 3 minutes), so a computer two or three
    # times slower (a video call, a browser) gives the same model, later. The step limit, not
    # this, bounds a run that never converges.
    time_limit_s: float = 900.0
    min_utterances: int = 10  # training recordings a run needs (the app says how many more to record)

    def max_steps_for(self, backend: Any) -> int:
        """The step limit for ``backend`` (an :class:`~workbench.models.base.ASRBackend`, or None)."""
        return self.max_steps_seq2seq if backend is not None and backend.is_seq2seq else self.max_steps

    @property
    def max_minutes(self) -> float:
        """:attr:`time_limit_s` in minutes (the CLI's and the app's unit)."""
        return self.time_limit_s / 60.0


#: The one set of run defaults (frozen: change a run's settings through its arguments, not here).
RUN_DEFAULTS = RunDefaults()
