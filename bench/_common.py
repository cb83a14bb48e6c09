"""Shared helpers for the benchmarks: machine description, timing, result files."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: Where results go: docs/bench, or $WORKBENCH_BENCH_DIR (the CI smoke test writes to a temporary folder).
RESULTS_DIR = Path(os.environ.get("WORKBENCH_BENCH_DIR") or Path(__file__).resolve().parent.parent / "docs" / "bench")

__all__ = ["RESULTS_DIR", "Partial", "bench_main", "compare_calls", "compare_samples", "defaults_tag", "machine",
           "machine_text", "personal_model_path", "run_and_write", "spread", "time_call", "write_result"]


def machine(device: str = "cpu") -> dict[str, Any]:
    """CPU model, cores, torch version and GPU (if the device is CUDA)."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": device,
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def time_call(fn: Callable[[], Any], *, repeat: int = 5, warmup: int = 1, sync: Callable[[], None] | None = None) -> float:
    """Median wall time of ``fn()`` in seconds over ``repeat`` runs after ``warmup`` runs."""
    return compare_calls({"fn": fn}, repeat=repeat, warmup=warmup, sync=sync)["fn"]


def compare_calls(fns: dict[str, Callable[[], Any]], *, repeat: int = 5, warmup: int = 1,
                  sync: Callable[[], None] | None = None,
                  setup: Callable[[], None] | None = None) -> dict[str, float]:
    """Median wall time (s) of each function, measured **interleaved** (see :func:`compare_samples`)."""
    samples = compare_samples(fns, repeat=repeat, warmup=warmup, sync=sync, setup=setup)
    return {k: statistics.median(v) for k, v in samples.items()}


def compare_samples(fns: dict[str, Callable[[], Any]], *, repeat: int = 5, warmup: int = 1,
                    sync: Callable[[], None] | None = None,
                    setup: Callable[[], None] | None = None) -> dict[str, list[float]]:
    """Every round's wall time (s) of each function, measured **interleaved**: every round runs
    each variant once, so a slow spell on a shared machine hits all variants alike (round ``i``
    of two variants is a matched pair). ``setup`` runs untimed before every call (e.g. to write
    a fresh input)."""
    for fn in fns.values():
        for _ in range(warmup):
            if setup:
                setup()
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            if setup:
                setup()
            if sync:
                sync()
            t0 = time.perf_counter()
            fn()
            if sync:
                sync()
            times[name].append(time.perf_counter() - t0)
    return times


def spread(values: list[float]) -> dict[str, float]:
    """Median and the spread of ``values``: lower and upper quartiles, minimum and maximum.

    >>> spread([1.0, 2.0, 3.0, 4.0, 100.0])["median"]
    3.0
    """
    v = sorted(values)
    if len(v) == 1:
        q1 = q3 = v[0]
    else:
        q1, _, q3 = statistics.quantiles(v, n=4, method="inclusive")
    return {"median": statistics.median(v), "q1": q1, "q3": q3, "min": v[0], "max": v[-1], "n": len(v)}


def machine_text(m: dict[str, Any]) -> str:
    """A result's :func:`machine` in words, for the tables' provenance lines.

    >>> machine_text({"cpu": "Xeon", "cores": 2, "torch_threads": 1, "torch": "2.13.0"})
    'Xeon, 2 cores (1 torch thread), torch 2.13.0'
    """
    threads = m["torch_threads"]
    gpu = f", GPU {m['gpu']}" if m.get("gpu") else ""
    return (f"{m['cpu']}, {m['cores']} cores ({threads} torch thread{'' if threads == 1 else 's'}), "
            f"torch {m['torch']}{gpu}")


def defaults_tag(backend: Any) -> str:
    """8 hex digits naming the training defaults a personalization on ``backend`` uses now (its
    ``default_config``, seed 0): a personal model cached under this tag is trained again, not reused,
    once the defaults change (a new rank, learning rate or step limit)."""
    import hashlib

    from workbench.workflow import default_config

    return hashlib.sha256(repr(default_config(backend, seed=0)).encode()).hexdigest()[:8]


def personal_model_path(folder: Path, speaker: str, model: str, tag: str, backend: Any) -> Path:
    """Where a benchmark caches ``speaker``'s personal ``model`` (``tag``: "full", "quick"): the name
    holds :func:`defaults_tag`, so a model trained with earlier defaults is trained again, not reused."""
    return folder / f"{speaker.replace('/', '_')}-{model}-{tag}-{defaults_tag(backend)}.safetensors"


def run_and_write(name: str, run: Callable[[], dict]) -> tuple[dict, Path]:
    """Run ``run()``, add how long it took (``wall_s``, seconds), write it to ``docs/bench/<name>.json``
    and say where; returns the result and the path. A result's ``"_partial"`` (the study's
    :class:`Partial`) is not written: its file goes once the result is."""
    t0 = time.perf_counter()
    result = run()
    partial = result.pop("_partial", None)
    result["wall_s"] = time.perf_counter() - t0
    path = write_result(name, result)
    if partial is not None:
        partial.done()
    print(f"wrote {path}")
    return result, path


def bench_main(doc: str, run: Callable[..., dict], name: str, argv: list[str] | None = None, *,
               modes: dict[str, tuple[Callable[..., dict], str]] | None = None) -> dict:
    """The shared command line of a benchmark: ``--device``, ``--quick``; writes ``docs/bench/<name>_<device>.json``.

    ``modes`` maps a further flag to the run it selects instead and that run's result name, e.g.
    ``{"--probes": (run_probes, "device_tuning_probes")}``; the first flag given wins.
    """
    import argparse

    modes = modes or {}
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true")
    for flag, (_, mode_name) in modes.items():
        parser.add_argument(flag, action="store_true", help=f"run this instead (writes docs/bench/{mode_name}_<device>.json)")
    args = parser.parse_args(argv)
    for flag, (mode_run, mode_name) in modes.items():
        if getattr(args, flag.lstrip("-").replace("-", "_")):
            run, name = mode_run, mode_name
            break
    result, path = run_and_write(f"{name}_{args.device.split(':')[0]}" + ("_quick" if args.quick else ""),
                                 lambda: run(args.device, args.quick))
    result["path"] = str(path)
    return result


def write_result(name: str, result: dict[str, Any], *, out_dir: Path | None = None) -> Path:
    """Write ``result`` (plus machine info already inside it) to ``docs/bench/<name>.json``."""
    out = (out_dir or RESULTS_DIR)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    path.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    return path


class Partial:
    """The finished runs of a resumable study, kept in ``docs/bench/<name>.partial.json``.

    Every run is saved the moment it finishes (``{key: row}``, written whole to a temporary file
    and renamed, so an interrupted write loses nothing); a rerun with the same ``settings`` skips
    the runs already there. A file written with other settings is refused, with what to do.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = Partial("demo", {"steps": 3}, out_dir=Path(d))
    ...     first = p.run("a", lambda: {"wer": 0.5})
    ...     again = Partial("demo", {"steps": 3}, out_dir=Path(d)).run("a", lambda: {"wer": 9.9})  # doctest: +ELLIPSIS
    resuming: 1 finished runs in ...
    >>> again
    {'wer': 0.5}
    """

    def __init__(self, name: str, settings: dict[str, Any], *, fresh: bool = False,
                 out_dir: Path | None = None) -> None:
        self.path = (out_dir or RESULTS_DIR) / f"{name}.partial.json"
        self.settings = json.loads(json.dumps(settings))  # as it reads back from the file
        self.runs: dict[str, Any] = {}
        if self.path.is_file() and not fresh:
            try:
                saved = json.loads(self.path.read_text())
                runs, old = saved["runs"], saved["settings"]
            except (ValueError, KeyError, TypeError) as err:
                raise SystemExit(f"{self.path} is not a study's partial file ({err}); move it away or pass "
                                 "--fresh to start again") from err
            if old != self.settings:
                raise SystemExit(f"{self.path} holds runs made with other settings ({old}, now "
                                 f"{self.settings}); pass --fresh to start again, or the same settings to go on")
            self.runs = dict(runs)
            if self.runs:
                print(f"resuming: {len(self.runs)} finished runs in {self.path}", flush=True)

    def __contains__(self, key: str) -> bool:
        return key in self.runs

    def run(self, key: str, fn: Callable[[], Any]) -> Any:
        """The saved row of ``key``, else ``fn()`` saved under ``key``."""
        if key not in self.runs:
            self.runs[key] = fn()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"settings": self.settings, "runs": self.runs}, indent=1))
            tmp.replace(self.path)
        return self.runs[key]

    @staticmethod
    def saved(name: str, *, out_dir: Path | None = None) -> dict[str, Any]:
        """The finished runs of study ``name`` (``{key: row}``), read only, whatever its settings;
        ``{}`` when it has no partial file."""
        path = (out_dir or RESULTS_DIR) / f"{name}.partial.json"
        return json.loads(path.read_text())["runs"] if path.is_file() else {}

    def done(self) -> None:
        """The study is written: the partial file goes."""
        self.path.unlink(missing_ok=True)
