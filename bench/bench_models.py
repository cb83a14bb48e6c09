"""Base model speed: load time and real-time factor, batched vs one at a time.

RTF = compute seconds / audio seconds (lower is faster; 0.02 = 50x faster than
real time). Greedy decoding is included; feature extraction is included.

Run: ``python -m bench.bench_models [--quick] [--device cuda]``
"""

from __future__ import annotations

import numpy as np
import torch

from bench._common import bench_main, machine, time_call
from workbench.constants import SAMPLE_RATE


def run(device: str = "cpu", quick: bool = False) -> dict:
    from workbench.models import load_base_model
    from workbench.models.tiny import default_model_dir

    if not (default_model_dir() / "model.safetensors").is_file():
        raise SystemExit("the built-in model weights are not installed; train them with recipes/pretrain_tiny.py")
    sync = torch.cuda.synchronize if device.startswith("cuda") else None
    t_load = time_call(lambda: load_base_model("tiny", device=device), repeat=3 if quick else 10)
    backend = load_base_model("tiny", device=device)
    rng = np.random.default_rng(0)
    n = 8 if quick else 32
    waves = [(0.1 * rng.standard_normal(int(SAMPLE_RATE * rng.uniform(2.0, 4.0)))).astype(np.float32) for _ in range(n)]
    audio_s = sum(len(w) for w in waves) / SAMPLE_RATE
    repeat = 2 if quick else 5
    t_batched = time_call(lambda: backend.transcribe(waves, batch_size=16), repeat=repeat, sync=sync)
    t_single = time_call(lambda: [backend.transcribe([w]) for w in waves], repeat=max(1, repeat // 2), sync=sync)
    result = {
        "machine": machine(device), "parameters": backend.num_parameters(), "utterances": n, "audio_s": audio_s,
        "load_s": t_load, "rtf_batched": t_batched / audio_s, "rtf_single": t_single / audio_s,
        "batched_speedup": t_single / t_batched,
    }
    print(f"load {1e3 * t_load:.0f} ms; RTF batched {result['rtf_batched']:.4f}, one at a time "
          f"{result['rtf_single']:.4f} (batching {result['batched_speedup']:.1f}x) on {audio_s:.0f} s of audio")
    return result


def main(argv: list[str] | None = None) -> None:
    bench_main(__doc__, run, "models", argv)


if __name__ == "__main__":
    main()
