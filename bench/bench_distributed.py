"""Several processes (torchrun) vs one: training speed of a many-speaker Submodel bank.

The same bank job (the six atypical sample speakers, default LoRA adapter, batch
of 16 mixed-speaker utterances, no speed perturbation so that set-up stays
short) is launched with ``torchrun`` in each configuration, alternately, twice
each:

- on a CPU: 1 process x 1 thread, 1 process x all threads, N processes x 1
  thread (N = cores, at most 4);
- on CUDA: 1 process on one GPU, one process per GPU (with more than one GPU).

Each process trains its share of every batch (``workbench.distributed``); rank 0
times the steps after the first two (warm-up) and writes the median step time.
Reported: seconds per step, utterances per second, and the ratio to one process
with all threads. The steps are the same steps in every configuration (tested in
``tests/test_distributed.py``), so the ratio is a pure speed ratio.

Run: ``python -m bench.bench_distributed [--quick] [--device cuda]``.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench._common import bench_main, machine

ROOT = Path(__file__).resolve().parent.parent
BATCH = 16


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker(out: str, steps: int, threads: int, device: str) -> None:
    """One process of the job (started by torchrun): train ``steps`` steps, rank 0 writes timings."""
    import torch

    torch.set_num_threads(threads)
    from workbench import distributed
    from workbench.corpus import list_speakers
    from workbench.dataset import examples_from_corpus
    from workbench.models import load_base_model
    from workbench.trainer import TrainConfig, Trainer
    from workbench.workflow import three_way_split

    dev = distributed.init_from_env("cuda" if device.startswith("cuda") else "cpu")
    speakers = [c for c in list_speakers(ROOT / "sample_data") if "typical" not in c.speaker_id]
    train, valid = [], []
    for row, corpus in enumerate(speakers):
        tr, va, _ = three_way_split(corpus)
        train += examples_from_corpus(corpus, tr, speaker=row)
        valid += examples_from_corpus(corpus, va[:2], speaker=row)
    config = TrainConfig(max_steps=steps, time_limit_s=None, batch_size=BATCH, eval_every=steps + 1, patience=0,
                         speed_perturb=())
    trainer = Trainer(load_base_model("tiny", device=dev), train, valid, config)
    stamps: list[float] = []
    trainer.on("on_step", lambda e: stamps.append(time.perf_counter()))
    trainer.fit()
    rank, world = distributed.rank_and_size()
    if rank == 0:
        step_s = statistics.median(b - a for a, b in zip(stamps[2:], stamps[3:]))
        Path(out).write_text(json.dumps({"step_s": step_s, "processes": world, "threads": threads,
                                         "speakers": len(speakers), "train_utterances": len(train)}))
    distributed.shutdown()


def _launch(processes: int, threads: int, steps: int, device: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.json"
        env = {**os.environ, "OMP_NUM_THREADS": str(threads),
               "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(processes),
               "--master-addr", "127.0.0.1", "--master-port", str(_free_port()),
               "-m", "bench.bench_distributed", "--worker", str(out), "--steps", str(steps),
               "--threads", str(threads), "--device", device]
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"torchrun with {processes} processes failed:\n{proc.stderr[-3000:]}")
        return json.loads(out.read_text())


def run(device: str = "cpu", quick: bool = False) -> dict:
    import torch

    steps = 5 if quick else 24
    if device.startswith("cuda"):
        gpus = torch.cuda.device_count()
        variants = [("1 process, 1 GPU", 1, 1)] + ([(f"{gpus} processes, {gpus} GPUs", gpus, 1)] if gpus > 1 else [])
    else:
        cores = os.cpu_count() or 1
        n = max(2, min(4, cores))
        variants = [("1 process x 1 thread", 1, 1)] if not quick else []
        variants += [(f"1 process x {cores} threads", 1, cores), (f"{n} processes x 1 thread", n, 1)]
    rounds = 1 if quick else 2
    times: dict[str, list[float]] = {name: [] for name, _, _ in variants}
    info: dict = {}
    for _ in range(rounds):  # alternate, so a slow spell hits every configuration alike
        for name, processes, threads in variants:
            r = _launch(processes, threads, steps, device)
            times[name].append(r["step_s"])
            info = r
    reference = next((v[0] for v in variants if v[1] == 1 and v[2] > 1), variants[0][0])  # 1 process, all threads
    rows = []
    for name, processes, threads in variants:
        step_s = min(times[name])
        rows.append({"variant": name, "processes": processes, "threads": threads, "step_s": step_s,
                     "utt_per_s": BATCH / step_s, "speedup": min(times[reference]) / step_s})
        print(f"{name:26s} {step_s:.3f} s/step  {BATCH / step_s:6.1f} utt/s  "
              f"{rows[-1]['speedup']:.2f}x vs {reference}")
    return {"machine": machine(device), "batch": BATCH, "steps": steps, "rounds": rounds, "reference": reference,
            "speakers": info.get("speakers"), "train_utterances": info.get("train_utterances"), "rows": rows}


def main(argv: list[str] | None = None) -> dict | None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--worker" in argv:
        import argparse

        p = argparse.ArgumentParser()
        p.add_argument("--worker")
        p.add_argument("--steps", type=int)
        p.add_argument("--threads", type=int)
        p.add_argument("--device", default="cpu")
        a = p.parse_args(argv)
        worker(a.worker, a.steps, a.threads, a.device)
        return None
    return bench_main(__doc__, run, "distributed", argv)


if __name__ == "__main__":
    main()
