"""Smoke test of the benchmark suite: ``workbench bench --quick`` runs every benchmark and writes its output.

It checks that the scripts run and write their results and summaries, not that
anything is fast (speed is measured by ``python -m bench`` on a quiet machine and
recorded in docs/benchmarks.md). Results go to a temporary folder, never over docs/.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXPECTED = ["specaugment_cpu_quick", "models_cpu_quick", "submodels_cpu_quick", "distributed_cpu_quick",
            "embeddings_cpu_quick", "personalization_quick"]


@pytest.mark.skipif(not (ROOT / "bench" / "__main__.py").is_file(), reason="bench/ is only in the source checkout")
def test_workbench_bench_quick_runs_every_benchmark_and_writes_its_output(tmp_path) -> None:
    docs = {p: p.stat().st_mtime_ns for p in (ROOT / "docs").rglob("*") if p.is_file()}
    env = {**os.environ, "WORKBENCH_BENCH_DIR": str(tmp_path), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "workbench", "bench", "--quick"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for name in EXPECTED:
        result = json.loads((tmp_path / f"{name}.json").read_text())
        assert result["machine"]["torch"] and result["wall_s"] > 0, name
    assert (tmp_path / "submodels_cpu_quick.png").stat().st_size > 1000
    summary = (tmp_path / "benchmarks_quick.md").read_text()
    assert "| target | required | measured |" in summary and "| not measured |" not in summary  # every target ran
    assert "Default settings" in (tmp_path / "results_quick.md").read_text()
    after = {p: p.stat().st_mtime_ns for p in (ROOT / "docs").rglob("*") if p.is_file()}
    assert after == docs, "a --quick run must not write into docs/"
