"""Thread limits for one call: torch intra-op threads and OpenMP/BLAS pools (a no-op when ``n`` is None)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from workbench._optional import has_module


@contextlib.contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    """Run torch ops with ``n`` intra-op threads (None: leave torch's setting alone)."""
    if n is None or int(n) == torch.get_num_threads():
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, int(n)))
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def _thread_limit(n: int | None) -> Iterator[None]:
    """Limit OpenMP/BLAS pools (threadpoolctl, a scikit-learn dependency) to ``n`` threads; None: no change."""
    if n is None or not has_module("threadpoolctl"):
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=max(1, int(n))), _torch_threads(n):
        yield
