"""How far a training run is, for people: the time left, and a run the time ceiling cut short.

Both views of a run (the notebook's :class:`~workbench.ui.trainer.TrainerSession` and the app's
:class:`~workbench.app_pages.jobs.TrainingJob`) and the report say these the same way.

>>> time_left_s(step=10, max_steps=120, elapsed_s=15.0)
165.0
>>> time_left_text(165.0)
'at most about 3 minutes left'
>>> ceiling_note(steps=40, max_steps=120)
'stopped by the time limit at step 40 of about 120; the model may improve with more time'
"""

from __future__ import annotations

import math

__all__ = ["ceiling_note", "time_left_s", "time_left_text"]


def time_left_s(step: int, max_steps: int, elapsed_s: float) -> float | None:
    """Seconds until the step limit at the pace so far, evaluations included.

    Args:
        step: training steps done.
        max_steps: the run's step limit (``TrainConfig.max_steps``).
        elapsed_s: seconds since the run started (its evaluations included), as the trainer
            reports them (``elapsed_s`` of its events).

    Returns:
        ``(max_steps - step) * elapsed_s / step``, an upper bound: early stopping usually ends
        the run sooner. None before the first step (no pace measured yet).
    """
    if step < 1 or elapsed_s <= 0 or max_steps < 1:
        return None
    return max(0, max_steps - step) * float(elapsed_s) / step


def time_left_text(seconds: float | None, *, ceiling_s: float | None = None, elapsed_s: float = 0.0) -> str:
    """``seconds`` left in words ("at most about 3 minutes left"); "" when not known yet.

    ``ceiling_s``: the run's time limit, which also bounds what is left (``elapsed_s`` spent of it).
    """
    if seconds is None:
        return ""
    if ceiling_s:
        seconds = min(seconds, max(0.0, ceiling_s - elapsed_s))
    if seconds < 60:
        return f"at most about {max(5, 5 * math.ceil(seconds / 5)):.0f} seconds left"
    minutes = math.ceil(seconds / 60)
    return f"at most about {minutes} minute{'s' if minutes > 1 else ''} left"


def ceiling_note(steps: int, max_steps: int) -> str:
    """What to say when the time ceiling ended a run: it had not converged, more time may help."""
    return (f"stopped by the time limit at step {steps} of about {max_steps}; "
            "the model may improve with more time")
