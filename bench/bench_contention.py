"""A training step on a busy CPU: thread count and OpenMP wait policy (issue 16, item 8).

The default training step (built-in model, default LoRA, batch 8, as the Trainer
runs it: ``Trainer._train_step`` on a sample speaker's recordings) is timed on a
quiet machine, with one busy process and with two (each busy process spins a
Python loop on one core, at the same priority). Each setting is a long-lived
worker process with its own environment (libgomp reads its variables when torch
loads); the settings take turns step by step, so a noisy spell hits all alike;
the figure is the median step.

Settings: ``old`` (torch's defaults: one thread per core, libgomp's 3 ms spin),
``1 thread``, ``passive`` (OMP_WAIT_POLICY=PASSIVE), and ``workbench`` (what
``workbench._threads`` chooses when nothing is set). The target: with contention,
a step within 2x of the same step with 1 thread, without losing much quiet.

``python -m bench.bench_contention [--quick] [--rounds N]`` writes docs/bench/contention.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = {  # name -> environment of the worker (on top of a copy with every thread variable removed)
    "old": {"WORKBENCH_THREADS": "off"},
    "1 thread": {"WORKBENCH_THREADS": "off", "OMP_NUM_THREADS": "1"},
    "passive": {"WORKBENCH_THREADS": "off", "OMP_WAIT_POLICY": "PASSIVE"},
    "workbench": {},
}
_THREAD_VARS = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "MKL_NUM_THREADS", "WORKBENCH_THREADS")
_BUSY = "while True: pass"


def worker() -> None:
    """Build the default Trainer, then answer each stdin line ``N`` with N step times (JSON list, s)."""
    import workbench  # noqa: F401 - first, as the CLI does: its thread policy must precede torch

    import torch

    from workbench.corpus import SpeakerCorpus
    from workbench.dataset import examples_from_corpus
    from workbench.models import load_base_model
    from workbench.trainer import TrainConfig, Trainer
    from workbench.workflow import three_way_split

    corpus = SpeakerCorpus.open(ROOT / "sample_data" / "sim-dysarthria-severe")
    tr, va, _ = three_way_split(corpus)
    config = TrainConfig(time_limit_s=None)  # the defaults: LoRA, batch 8, speed perturbation
    trainer = Trainer(load_base_model("tiny"), examples_from_corpus(corpus, tr), examples_from_corpus(corpus, va),
                      config)
    info = {"threads": torch.get_num_threads(), "wait": os.environ.get("OMP_WAIT_POLICY", ""),
            "spincount": os.environ.get("GOMP_SPINCOUNT", "")}
    for _ in range(2):  # warm-up
        trainer._train_step()
        trainer.step += 1
    print(json.dumps(info), flush=True)
    for line in sys.stdin:
        times = []
        for _ in range(int(line)):
            t0 = time.perf_counter()
            trainer._train_step()
            times.append(time.perf_counter() - t0)
            trainer.step += 1
        print(json.dumps(times), flush=True)


class _Worker:
    def __init__(self, env_extra: dict[str, str]) -> None:
        env = {k: v for k, v in os.environ.items() if k not in _THREAD_VARS}
        env.update(env_extra)
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.bench_contention", "--worker"], cwd=ROOT, env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.info = json.loads(self._line())

    def _line(self) -> str:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"benchmark worker exited with {self.proc.wait()}")
        return line

    def steps(self, n: int) -> list[float]:
        self.proc.stdin.write(f"{n}\n")
        self.proc.stdin.flush()
        return json.loads(self._line())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def run(rounds: int, steps: int, loads: tuple[int, ...]) -> dict:
    from bench._common import machine

    workers = {name: _Worker(env) for name, env in SETTINGS.items()}
    rows = []
    try:
        for busy in loads:
            spinners = [subprocess.Popen([sys.executable, "-c", _BUSY]) for _ in range(busy)]
            try:
                time.sleep(0.5)
                load0 = os.getloadavg()[0]
                times: dict[str, list[float]] = {k: [] for k in workers}
                for _ in range(rounds):
                    for name, w in workers.items():
                        times[name] += w.steps(steps)
                load1 = os.getloadavg()[0]
            finally:
                for p in spinners:
                    p.kill()
                    p.wait()
            for name, ts in times.items():
                rows.append({"setting": name, "busy": busy, "step_s": statistics.median(ts), "steps": ts,
                             "loadavg_1min": [load0, load1], **workers[name].info})
            print(f"busy {busy}: " + ", ".join(f"{n} {statistics.median(t):.3f} s" for n, t in times.items()), flush=True)
    finally:
        for w in workers.values():
            w.close()
    by = {(r["setting"], r["busy"]): r["step_s"] for r in rows}
    for r in rows:
        r["over_1_thread"] = r["step_s"] / by[("1 thread", r["busy"])]
        r["over_quiet_old"] = r["step_s"] / by[("old", 0)] if ("old", 0) in by else None
    return {"machine": machine(), "cores_usable": len(os.sched_getaffinity(0)), "rounds": rounds,
            "steps_per_round": steps, "settings": SETTINGS, "rows": rows,
            "note": "busy = a separate Python process spinning on one core at the same priority; other jobs may "
                    "have shared the machine (see loadavg_1min, taken before and after each load level)"}


def main(argv: list[str] | None = None) -> dict | None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="one round of one step, quiet and one busy process")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=2, help="steps per setting per round")
    parser.add_argument("--device", default="cpu", help="cpu only (contention is a CPU matter)")
    args = parser.parse_args(argv)
    if args.worker:
        worker()
        return None
    from bench._common import write_result

    t0 = time.perf_counter()
    result = run(1 if args.quick else args.rounds, 1 if args.quick else args.steps, (0, 1) if args.quick else (0, 1, 2))
    result["wall_s"] = time.perf_counter() - t0
    path = write_result("contention" + ("_quick" if args.quick else ""), result)
    print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main()
