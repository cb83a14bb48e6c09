"""Submodels: one mixed-speaker forward pass vs no adapters vs swapping adapters per speaker.

Side by side in one process, for 64 utterances from 64 different speakers:

  (a) the base model without adapters, batched;
  (b) a SubmodelBank mixed batch (every example routed to its own speaker's rows);
  (c) swap-per-speaker: load each speaker's Submodel file, inject it, run that one
      utterance, remove it (what serving one adapter at a time costs).

Also: Submodel file load latency; the training step for a batch mixing 32
speakers vs one speaker's batch of the same size; and the scaling curve of
throughput against the number of distinct speakers in a batch, for our stacked
gather and for a group-by loop like PEFT's mixed-batch LoRA inference (rows of
each adapter selected and run through that adapter, one adapter at a time).

Run: ``python -m bench.bench_submodels [--quick] [--device cuda] [--family hra]``
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from bench._common import machine, time_call, write_result
from workbench.adapters import REGISTRY, LoRAConfig, SubmodelBank, inject, load_submodel
from workbench.adapters.io import read_submodel
from workbench.constants import SAMPLE_RATE


def _backend(device: str):
    from workbench.models import load_base_model
    from workbench.models.tiny import TinyBackend, TinyConfig, TinyConformerCTC, default_model_dir

    if (default_model_dir() / "model.safetensors").is_file():
        return load_base_model("tiny", device=device), "shipped weights"
    torch.manual_seed(0)  # throughput does not depend on the weights' values
    model = TinyConformerCTC(TinyConfig()).to(device).eval()
    return TinyBackend(model).freeze(), "random weights (built-in architecture)"


def _waves(n: int, seconds: float = 2.5, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(0.1 * rng.standard_normal(int(SAMPLE_RATE * seconds * rng.uniform(0.8, 1.2)))).astype(np.float32)
            for _ in range(n)]


def _randomize(adapted, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in adapted.adapters.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=g).to(p.device))


def _write_speaker_files(backend, family: str, n: int, out: Path) -> list[Path]:
    """``n`` single-speaker Submodel files that share their shared weights (as a bank requires)."""
    cfg = REGISTRY[family][0]()
    if family == "hra":
        cfg = cfg.replace(train_controller=False)
    adapted = inject(backend, cfg)
    shared = {k: v.clone() for k, v in adapted.state_dict().items() if k not in adapted.per_speaker_keys()}
    paths = []
    for i in range(n):
        _randomize(adapted, i)
        adapted.load_state_dict({**adapted.state_dict(), **shared})
        paths.append(adapted.save(out / f"spk{i:04d}.safetensors", speaker_ids=[f"spk{i:04d}"]))
    adapted.remove()
    return paths


def bench_serving(backend, family: str, n: int, repeat: int, sync) -> dict:
    waves = _waves(n)
    batch = backend.featurize(waves)
    with tempfile.TemporaryDirectory() as tmp:
        paths = _write_speaker_files(backend, family, n, Path(tmp))
        t_load = time_call(lambda: read_submodel(paths[0]), repeat=max(repeat, 20))

        def base() -> None:
            with torch.no_grad():
                backend.log_probs(batch)

        t_base = time_call(base, repeat=repeat, sync=sync)
        bank = SubmodelBank.from_files(backend, paths)
        index = bank.index([f"spk{i:04d}" for i in range(n)])

        def mixed() -> None:
            with torch.no_grad(), bank.adapted.route(index):
                backend.log_probs(batch)

        t_bank = time_call(mixed, repeat=repeat, sync=sync)
        bank.adapted.remove()

        def swap() -> None:
            for i, p in enumerate(paths):
                adapted, _ = load_submodel(backend, p)
                with torch.no_grad():
                    backend.log_probs(backend.featurize([waves[i]]))
                adapted.remove()

        t_swap = time_call(swap, repeat=max(1, repeat // 3), warmup=0, sync=sync)
    row = {"base_s": t_base, "bank_s": t_bank, "swap_s": t_swap, "load_ms": 1e3 * t_load,
           "bank_over_base": t_bank / t_base, "bank_vs_swap": t_swap / t_bank}
    print(f"{family:9s} base {t_base:6.3f}s  bank {t_bank:6.3f}s ({row['bank_over_base']:.2f}x base)  "
          f"swap {t_swap:6.2f}s (bank {row['bank_vs_swap']:.0f}x faster)  file load {row['load_ms']:.2f} ms")
    return row


def bench_training(backend, family: str, n_speakers: int, batch_size: int, repeat: int, sync) -> dict:
    waves = _waves(batch_size, seconds=2.0, seed=1)
    texts = ["please turn on the kitchen light"] * batch_size
    cfg = REGISTRY[family][0]().replace(num_speakers=n_speakers)
    bank = inject(backend, cfg)
    bank.train()
    opt = torch.optim.AdamW(bank.trainable_parameters(), lr=1e-3)
    batch = backend.featurize(waves)

    def step(index: torch.Tensor) -> None:
        batch.speaker_index = index
        loss = bank.loss(batch, texts)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    one = torch.zeros(batch_size, dtype=torch.long, device=backend.device)
    mixed = (torch.arange(batch_size) % n_speakers).to(backend.device)
    t_one = time_call(lambda: step(one), repeat=repeat, sync=sync)
    t_mixed = time_call(lambda: step(mixed), repeat=repeat, sync=sync)
    bank.remove()
    row = {"one_speaker_step_s": t_one, "mixed_step_s": t_mixed, "mixed_over_one": t_mixed / t_one,
           "speedup_vs_separate_jobs": n_speakers * t_one / t_mixed}
    print(f"{family:9s} train step: one speaker {t_one:.3f}s, {n_speakers} speakers mixed {t_mixed:.3f}s "
          f"({row['mixed_over_one']:.2f}x); vs {n_speakers} separate jobs: {row['speedup_vs_separate_jobs']:.0f}x")
    return row


def _groupby_lora_hook(adapter, index_ref: dict):
    """PEFT-style mixed batch: loop over the distinct adapters, run each on its rows."""
    def hook(module, args, output):
        x, idx = args[0], index_ref["index"]
        delta = torch.zeros_like(output)
        for s in torch.unique(idx).tolist():
            rows = (idx == s).nonzero().squeeze(1)
            h = F.linear(x[rows], adapter.lora_a[s])
            delta[rows] = F.linear(h, adapter.lora_b[s]) * adapter.config.scale
        return output + delta
    return hook


def bench_scaling(backend, batch_size: int, distinct: list[int], n_bank: int, repeat: int, sync) -> dict:
    waves = _waves(batch_size, seconds=2.0, seed=2)
    batch = backend.featurize(waves)
    bank = inject(backend, LoRAConfig().replace(num_speakers=n_bank))
    _randomize(bank, 0)
    out: dict = {"distinct": distinct, "stacked_utt_per_s": [], "groupby_utt_per_s": []}
    for d in distinct:
        index = (torch.arange(batch_size) % d).to(backend.device)

        def stacked() -> None:
            with torch.no_grad(), bank.route(index):
                backend.log_probs(batch)

        t_s = time_call(stacked, repeat=repeat, sync=sync)
        bank.disable()
        ref = {"index": index}
        hooks = [lin.register_forward_hook(_groupby_lora_hook(bank.adapters[k], ref)) for k, lin in bank._linears.items()]

        def grouped() -> None:
            with torch.no_grad():
                backend.log_probs(batch)

        t_g = time_call(grouped, repeat=repeat, sync=sync)
        for h in hooks:
            h.remove()
        bank.enable()
        out["stacked_utt_per_s"].append(batch_size / t_s)
        out["groupby_utt_per_s"].append(batch_size / t_g)
        print(f"LoRA B={batch_size} distinct={d:4d}: stacked {batch_size / t_s:7.1f} utt/s, "
              f"group-by {batch_size / t_g:7.1f} utt/s ({t_g / t_s:.1f}x)")
    bank.remove()
    return out


def plot_scaling(result: dict, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.6), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    s = result["scaling"]
    ax.plot(s["distinct"], s["stacked_utt_per_s"], "o-", label="stacked gather (workbench)")
    ax.plot(s["distinct"], s["groupby_utt_per_s"], "s--", label="group-by loop (PEFT-style)")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("distinct speakers in a batch of %d" % s["batch"])
    ax.set_ylabel("utterances / s")
    ax.set_title(f"Mixed-speaker LoRA serving ({result['machine']['device']})")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.savefig(path, dpi=110)


def run(device: str = "cpu", quick: bool = False, families: list[str] | None = None) -> dict:
    torch.manual_seed(0)
    backend, weights = _backend(device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else None
    repeat = 2 if quick else 5
    n = 8 if quick else 64
    families = families or (["hra"] if quick else ["hra", "residual", "lora", "conv", "vector"])
    result: dict = {"machine": machine(device), "weights": weights, "n_speakers": n, "serving": {}, "training": {}}
    for fam in families:
        result["serving"][fam] = bench_serving(backend, fam, n, repeat, sync)
    for fam in families:
        result["training"][fam] = bench_training(backend, fam, 8 if quick else 32, 8 if quick else 32, repeat, sync)
    distinct = [1, 2, 4, 8] if quick else [1, 2, 4, 8, 16, 32, 64]
    result["scaling"] = {"batch": 8 if quick else 64,
                         **bench_scaling(backend, 8 if quick else 64, distinct, 64 if quick else 1024, repeat, sync)}
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--family", action="append", choices=sorted(REGISTRY))
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    result = run(args.device, args.quick, args.family)
    result["wall_s"] = time.perf_counter() - t0
    name = f"submodels_{args.device.split(':')[0]}" + ("_quick" if args.quick else "")
    path = write_result(name, result)
    plot_scaling(result, path.with_suffix(".png"))
    print(f"wrote {path} and {path.with_suffix('.png')}")


if __name__ == "__main__":
    main()
