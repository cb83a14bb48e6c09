"""Takes saved from use: corrected live captions, told apart from takes read from a prompt.

:func:`workbench.live.save_correction` writes them with ``extra["source"] = USE_SOURCE``;
the workflow's split (:func:`workbench.workflow.three_way_split`) and its report read them
back with :func:`from_use` and :func:`use_counts`. They live here, with the takes, so that
the workflow (which trains on them) and the live branch (which saves them) both depend on
the corpus and not on each other.

>>> from workbench.corpus import Utterance
>>> from_use(Utterance(utt_id="u1", prompt="hi", audio_path="audio/u1.flac", extra={"source": USE_SOURCE}))
True
"""

from __future__ import annotations

from typing import Any

from workbench.text import prompt_key

__all__ = ["USE_SOURCE", "from_use", "use_counts"]

USE_SOURCE = "use"  # extra["source"] of a take saved from a corrected live caption


def from_use(utt: Any) -> bool:
    """True for a take saved from use (a corrected caption), not read from a prompt."""
    extra = getattr(utt, "extra", None)
    return isinstance(extra, dict) and extra.get("source") == USE_SOURCE


def use_counts(takes: Any, trained: Any, test: Any) -> dict[str, int]:
    """How many takes from use a run trained on, and how many it left out as test phrases.

    Args:
        takes: every ``"ok"`` take of the speaker; trained: the takes of the training pool
            (training + validation); test: the test-phrase takes.

    Returns:
        ``{"from_use": n, "kept_out": m}``: ``m`` corrections equal a test phrase (same
        :func:`~workbench.text.prompt_key`) and were kept out of training.
    """
    test_keys = {prompt_key(u.prompt) for u in test}
    return {"from_use": sum(1 for u in trained if from_use(u)),
            "kept_out": sum(1 for u in takes if from_use(u) and prompt_key(u.prompt) in test_keys)}
