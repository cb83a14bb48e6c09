"""CPU threads and how OpenMP threads wait: one policy, applied where the workbench starts.

A therapist's laptop is rarely idle. torch's CPU kernels run on an OpenMP (libgomp)
thread pool with one thread per core; at the end of every parallel region a thread
that finishes early *spins* (busy-waits) for about 3 ms (``GOMP_SPINCOUNT`` 300000,
libgomp's default when ``OMP_WAIT_POLICY`` is unset) before it sleeps. When another
program holds a core, the pool's last thread is descheduled while the others spin on
the remaining core, and every small operation of a training step waits for a time
slice: on a 2-core machine one busy process made the default training step 13 s
instead of 0.3 s (issue 16). The workbench therefore asks for the passive wait policy
(a thread with no work sleeps at once): under contention a step is then as fast as with
one thread, and on a quiet machine it keeps one thread per core
(``bench/bench_contention.py``, docs/benchmarks.md).

libgomp reads ``OMP_WAIT_POLICY`` and ``GOMP_SPINCOUNT`` once, when it is loaded,
that is when ``torch`` is first imported; so :func:`apply_env` runs when
``workbench`` is imported (before it imports torch). If torch was imported first it
is too late for the wait policy (import ``workbench`` first, or set
``OMP_WAIT_POLICY=PASSIVE`` yourself); :func:`apply_threads` (run by the CLI) sets the
number of threads, which torch allows at any time.

A user's own ``OMP_NUM_THREADS``, ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` is always
respected, and ``WORKBENCH_THREADS=off`` leaves every default alone.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping

__all__ = ["WAIT_POLICY", "apply_env", "apply_threads", "choose_env", "choose_threads", "usable_cores"]

#: OpenMP wait policy: a thread with no work sleeps at once instead of spinning ~3 ms.
WAIT_POLICY = "PASSIVE"
_USER_KEYS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask; ``os.cpu_count()`` elsewhere)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _off(env: Mapping[str, str]) -> bool:
    return env.get("WORKBENCH_THREADS", "").strip().lower() in ("off", "0", "no", "false")


def choose_env(env: Mapping[str, str]) -> dict[str, str]:
    """The OpenMP variables to add to ``env``: ``{"OMP_WAIT_POLICY": "PASSIVE"}``, or ``{}`` when the
    user set ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` or ``WORKBENCH_THREADS=off``.

    Chosen by ``bench/bench_contention.py``: with one or two busy processes on 2 cores a
    training step took 11-14 s with libgomp's default wait and ~1.1-1.5 s passive, the
    same as with 1 thread; a 0.1 ms spin (``GOMP_SPINCOUNT=10000``) still took ~4 s.
    """
    if _off(env) or any(k in env for k in _USER_KEYS):
        return {}
    return {"OMP_WAIT_POLICY": WAIT_POLICY}


def choose_threads(env: Mapping[str, str], cores: int, machine_cores: int | None) -> int | None:
    """torch's intra-op thread count, or None to keep torch's own (one per physical core).

    Args:
        env: the environment: ``OMP_NUM_THREADS`` (the user's choice) or
            ``WORKBENCH_THREADS=off`` keep torch's choice; ``WORKBENCH_THREADS=N`` asks for N.
        cores: cores this process may use (:func:`usable_cores`).
        machine_cores: ``os.cpu_count()``; when ``cores`` is fewer (a CPU set or affinity
            mask), the count is capped at ``cores`` so the threads do not fight each other.
    """
    if _off(env) or "OMP_NUM_THREADS" in env:
        return None
    given = env.get("WORKBENCH_THREADS", "").strip()
    if given.isdigit() and int(given) > 0:
        return int(given)
    return cores if machine_cores and cores < machine_cores else None


def apply_env(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Add :func:`choose_env`'s variables to ``environ`` (default ``os.environ``); returns what was added.

    Effective only before torch is first imported (libgomp reads them when it loads);
    child processes (``torchrun`` workers, benchmark workers) inherit them.
    """
    environ = os.environ if environ is None else environ
    added = choose_env(environ)
    environ.update(added)
    return added


def apply_threads(environ: Mapping[str, str] | None = None) -> int | None:
    """Set torch's intra-op thread count by :func:`choose_threads` (may be called at any time; torch
    is imported only when there is something to set). Returns the count set, or None."""
    environ = os.environ if environ is None else environ
    n = choose_threads(environ, usable_cores(), os.cpu_count())
    if n is None:
        return None
    import torch

    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n
