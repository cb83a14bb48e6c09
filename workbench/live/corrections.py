"""Corrections that teach the personal model: a corrected caption becomes a take, marked as coming from use.

A correction is the text the speaker meant plus the audio of the caption's words
(:meth:`StreamingRecognizer.audio`). It is saved through
:meth:`SpeakerCorpus.add_take <workbench.corpus.SpeakerCorpus.add_take>` like any take
(the same crash safety and quality check), with ``extra["source"] = "use"``. The next
personalization trains on it (:func:`workbench.workflow.three_way_split`): it never
joins the fixed test phrases, and a correction whose text is one of the test phrases
(the same :func:`~workbench.text.prompt_key`) is kept out of training, so the test
phrases stay unseen; the report counts both.

A correction is refused, with a plain message and nothing written, when its text has no
words, when its audio is empty or broken, or while a training run is using the folder
(the corrected take would otherwise miss that run or change its data under it).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from workbench.constants import SAMPLE_RATE
from workbench.corpus.use import USE_SOURCE, from_use, use_counts
from workbench.errors import AudioError, CorpusError, TrainingBusyError

if TYPE_CHECKING:
    from workbench.corpus import Utterance

__all__ = ["USE_SOURCE", "from_use", "save_correction", "use_counts"]


def _training_in_progress(root: Path) -> str | None:
    """Why the folder is busy with a training run, or None (the lock that ``personalize`` holds)."""
    from workbench.workflow.busy import training_in_progress

    return training_in_progress(root)


def save_correction(speaker_dir: str | Path, text: str, audio: np.ndarray,
                    sample_rate: int = SAMPLE_RATE, *, caption: str | None = None) -> Utterance:
    """Save a corrected caption as a take of the speaker, marked as coming from use.

    Args:
        speaker_dir: the speaker folder.
        text: what the speaker said (the corrected caption).
        audio: ``(n,)`` float32 samples of those words at ``sample_rate`` Hz.
        sample_rate: rate of ``audio``.
        caption: what the recognizer had written, kept with the take (for counting what use fixed).

    The take carries the speaker's latest recorded consent (``consent_id``), as a take recorded on
    the Record page does; None when the folder records no consent.

    Returns:
        The saved :class:`~workbench.corpus.Utterance` (``status`` ``"ok"``, or ``"rejected"`` when the
        audio fails the quality check: it is kept either way, and its quality report says why).

    Raises:
        CorpusError: the text has no words, or the folder cannot be written.
        TrainingBusyError: a training run is using the folder; correct again when it has finished.
        AudioError: the audio is empty or broken.
    """
    from workbench.corpus import SpeakerCorpus
    from workbench.text import normalize_text

    if not isinstance(text, str) or not normalize_text(text):
        raise CorpusError("The correction was not saved: it has no words. Type what was said, then save again.")
    wav = np.asarray(audio)
    if wav.size == 0:
        raise AudioError("The correction was not saved: there is no audio for this line (it may be older than the "
                         "audio kept). Correct a recent line.")
    corpus = SpeakerCorpus.open(speaker_dir)
    busy = _training_in_progress(corpus.root)
    if busy is not None:
        raise TrainingBusyError(f"The correction was not saved: {busy}. Save it again when the training has "
                                "finished; the caption stays on screen.")
    extra: dict[str, Any] = {"source": USE_SOURCE}
    if caption is not None:
        extra["caption"] = str(caption)[:500]
    # The speaker's latest recorded consent covers the take, as it does a take recorded on the Record page.
    consents = [c.get("consent_id") for c in corpus.info.get("consent", []) if c.get("consent_id")]
    return corpus.add_take(wav, prompt=text, sample_rate=sample_rate, extra=extra,
                           consent_id=consents[-1] if consents else None)
