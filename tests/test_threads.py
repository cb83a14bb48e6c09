"""The thread and OpenMP wait policy (issue 16: a busy CPU stalled training 40x)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from workbench import _threads

ROOT = Path(__file__).resolve().parent.parent


def test_passive_wait_unless_the_user_chose() -> None:
    assert _threads.choose_env({}) == {"OMP_WAIT_POLICY": "PASSIVE"}
    assert _threads.choose_env({"OMP_WAIT_POLICY": "ACTIVE"}) == {}
    assert _threads.choose_env({"GOMP_SPINCOUNT": "100000"}) == {}
    assert _threads.choose_env({"WORKBENCH_THREADS": "off"}) == {}
    env = {"OMP_WAIT_POLICY": "active"}
    assert _threads.apply_env(env) == {} and env == {"OMP_WAIT_POLICY": "active"}
    env = {"PATH": "/bin"}
    assert _threads.apply_env(env) == {"OMP_WAIT_POLICY": "PASSIVE"} and env["OMP_WAIT_POLICY"] == "PASSIVE"


@pytest.mark.parametrize("env, cores, machine, want", [
    ({}, 2, 2, None),  # torch's own default: one thread per physical core
    ({}, 2, 8, 2),  # a CPU set smaller than the machine
    ({"OMP_NUM_THREADS": "3"}, 2, 8, None),  # the user's choice stands
    ({"WORKBENCH_THREADS": "1"}, 2, 2, 1),
    ({"WORKBENCH_THREADS": "off"}, 2, 8, None),
    ({"WORKBENCH_THREADS": "lots"}, 4, 4, None),
])
def test_thread_count(env, cores, machine, want) -> None:
    assert _threads.choose_threads(env, cores, machine) == want


def test_apply_threads_sets_torch_at_run_time() -> None:
    import torch

    before = torch.get_num_threads()
    try:
        assert _threads.apply_threads({"WORKBENCH_THREADS": "1"}) == 1 and torch.get_num_threads() == 1
        assert _threads.apply_threads({"OMP_NUM_THREADS": "1"}) is None
    finally:
        torch.set_num_threads(before)


def _python(code: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items()
             if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "WORKBENCH_THREADS")}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**clean, **env}, capture_output=True,
                          text=True, check=True, timeout=120)
    return proc.stdout.strip()


def test_importing_workbench_sets_the_policy_before_torch_loads_openmp() -> None:
    code = "import sys, os, workbench; print('torch' in sys.modules, os.environ.get('OMP_WAIT_POLICY'))"
    assert _python(code) == "False PASSIVE"  # set before libgomp is loaded, so libgomp reads it
    assert _python(code, OMP_WAIT_POLICY="ACTIVE") == "False ACTIVE"
    assert _python(code, WORKBENCH_THREADS="off") == "False None"
