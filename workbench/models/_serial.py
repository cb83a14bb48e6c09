"""One base-model load at a time in a process (:data:`LOAD_LOCK`, :func:`one_load_at_a_time`).

transformers' ``from_pretrained`` swaps process-wide functions while it builds a model
(``PreTrainedModel.tie_weights``, ``torch.linspace``) and puts them back afterwards. Two
loads in two threads interleave those swaps: the second saves the first's stand-in as the
"original" and restores it for good, and from then on every load in the process fails with
"Cannot copy out of meta tensor" (issue 24: two Train clicks a few seconds apart in the app,
5 of 5 two-thread loads). The first Whisper use also imports weights into a shared cache
folder. Loads are therefore serialized: the second waits for the first (a Whisper load is
about a second; the built-in model's, 30 ms).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import TypeVar

__all__ = ["LOAD_LOCK", "one_load_at_a_time"]

LOAD_LOCK = threading.RLock()  # re-entrant: load_base_model calls hf.load_pretrained, which takes it too

_F = TypeVar("_F", bound=Callable)


def one_load_at_a_time(fn: _F) -> _F:
    """Decorate a loader so that it holds :data:`LOAD_LOCK` while it runs."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with LOAD_LOCK:
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
