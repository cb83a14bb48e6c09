"""The clinic's server under load: concurrent device clients with mixed speakers, on 127.0.0.1.

A local Ray Serve instance (``workbench.device_tuning.server``) with the shipped compressor and a
bank of 8 speakers (random LoRA rows: the cost of a Submodel, not its accuracy). ``--clients``
threads each send one recording after another (a device that waits for its answer) for
``--seconds``; then one client alone for the same time, for the throughput of one request at a
time. Reports requests served, p50/p95 latency, the batch sizes Ray Serve formed and errors.
Nothing leaves the machine.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import socket
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import torch

from bench._common import machine, write_result

REPO = Path(__file__).resolve().parents[1]


def _load(url: str, cpath: Path, clips, speakers, clients: int, seconds: float) -> dict[str, Any]:
    from workbench.device_tuning.client import DeviceClient
    from workbench.errors import ServerError

    client = DeviceClient(url, cpath, timeout_s=60)
    messages = {}  # the device part runs on the "devices": encode once per (clip, speaker), outside the timing
    for i, w in enumerate(clips):
        for s in speakers:
            messages[i, s] = client.split.encode([w], speaker=s)[0].to_bytes()
    keys = list(messages)
    lat, batches, errors = [], Counter(), 0
    stop = time.perf_counter() + seconds

    def device(k: int) -> None:
        nonlocal errors
        j = k
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            try:
                out = client._request(messages[keys[j % len(keys)]])
            except ServerError:
                errors += 1
                continue
            lat.append(time.perf_counter() - t0)
            batches[out["batch_size"]] += 1
            j += clients

    t0 = time.perf_counter()
    with cf.ThreadPoolExecutor(clients) as ex:
        list(ex.map(device, range(clients)))
    wall = time.perf_counter() - t0
    q = statistics.quantiles(lat, n=20) if len(lat) > 1 else [float("nan")] * 19
    return {"clients": clients, "seconds": wall, "requests": len(lat), "errors": errors,
            "per_s": len(lat) / wall, "p50_ms": 1000 * statistics.median(lat) if lat else None,
            "p95_ms": 1000 * q[18], "batch_sizes": dict(sorted(batches.items())),
            "bytes_per_request": statistics.mean(len(m) for m in messages.values())}


def run(clients: int, seconds: float) -> dict[str, Any]:
    import ray
    from ray import serve

    from workbench.adapters import LoRAConfig, SubmodelBank
    from workbench.corpus import SpeakerCorpus
    from workbench.device_tuning.compressor import default_compressor
    from workbench.device_tuning.server import serve_asr
    from workbench.models import load_base_model

    backend = load_base_model("tiny").freeze()
    speakers = [f"spk-{i}" for i in range(8)]
    tmp = Path(tempfile.mkdtemp(prefix="bench-server-"))
    bank = SubmodelBank(backend, LoRAConfig(top_layers=4), speakers)
    with torch.no_grad():
        for p in bank.adapted.trainable_parameters():
            p.add_(torch.randn_like(p) * 0.05)
    bpath = bank.save(tmp / "bank.safetensors")
    corpus = SpeakerCorpus.open(REPO / "sample_data" / "sim-typical-espeak")
    clips = [corpus.load_audio(u) for u in corpus.utterances()[:12]]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.perf_counter()
    url = serve_asr(default_compressor(), [bpath], port=port, blocking=False, batch_wait_timeout_s=0.02)
    start_s = time.perf_counter() - t0
    try:
        _load(url, default_compressor(), clips[:2], speakers[:1], 1, 3)  # warm-up
        loaded = _load(url, default_compressor(), clips, speakers + [""], clients, seconds)
        alone = _load(url, default_compressor(), clips, speakers + [""], 1, seconds)
    finally:
        serve.shutdown()
        ray.shutdown()
    return {"machine": machine("cpu"), "start_s": start_s, "load": loaded, "one_at_a_time": alone,
            "throughput_ratio": loaded["per_s"] / alone["per_s"], "speakers": len(speakers) + 1}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--quick", action="store_true", help="4 clients for 5 s")
    p.add_argument("--device", default="cpu")
    a = p.parse_args(argv)
    result = run(4, 5.0) if a.quick else run(a.clients, a.seconds)
    path = write_result("device_server_cpu" + ("_quick" if a.quick else ""), result)
    for k in ("load", "one_at_a_time"):
        r = result[k]
        print(f"{k}: {r['requests']} requests in {r['seconds']:.0f} s ({r['per_s']:.1f}/s), p50 {r['p50_ms']:.0f} ms, "
              f"p95 {r['p95_ms']:.0f} ms, errors {r['errors']}, batch sizes {r['batch_sizes']}")
    print(f"throughput {result['throughput_ratio']:.2f}x one request at a time; Ray Serve started in "
          f"{result['start_s']:.0f} s; wrote {path}")
    return result


if __name__ == "__main__":
    main()
