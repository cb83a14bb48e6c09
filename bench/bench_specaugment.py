"""SpecAugment: one vectorized pass vs a straightforward per-utterance loop.

Same policy, same batch (B = 32, true lengths 100-1500 frames, 80 mels). The
loop baseline is what a per-utterance implementation does (PaddleSpeech-style):
for each utterance compute its own adaptive count and width, draw each mask with
torch's RNG, and assign the fill value slice by slice. Time warp is timed on its
own: vectorized piecewise-linear warp vs per-utterance ``F.interpolate`` of the
two segments (the SpeechBrain/torchaudio approach).

Run: ``python -m bench.bench_specaugment [--device cuda] [--quick]``
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from bench._common import bench_main, compare_calls, machine, time_call
from workbench.augment import POLICIES, SpecAugmentPolicy, spec_augment


def loop_spec_augment(x: torch.Tensor, lengths: torch.Tensor, policy: SpecAugmentPolicy,
                      generator: torch.Generator, inplace: bool = False) -> torch.Tensor:
    """Reference per-utterance loop (masks with zeros), adaptive on true lengths."""
    out = x if inplace else x.clone()
    n_bins = x.shape[2]
    for i in range(x.shape[0]):
        tau = int(lengths[i])
        if tau == 0:
            continue
        count = min(policy.time_masks, math.floor(policy.adaptive_multiplicity * tau)) \
            if policy.adaptive_multiplicity > 0 else policy.time_masks
        max_w = math.floor(policy.adaptive_size * tau) if policy.adaptive_size > 0 \
            else min(policy.time_width, math.floor(policy.time_ratio * tau))
        for _ in range(count):
            w = int(torch.randint(0, max_w + 1, (1,), generator=generator))
            t0 = int(torch.randint(0, tau - w + 1, (1,), generator=generator))
            out[i, t0:t0 + w, :] = 0.0
        for _ in range(policy.freq_masks):
            f = int(torch.randint(0, min(policy.freq_width, n_bins) + 1, (1,), generator=generator))
            f0 = int(torch.randint(0, n_bins - f + 1, (1,), generator=generator))
            out[i, :tau, f0:f0 + f] = 0.0
    return out


def loop_time_warp(x: torch.Tensor, lengths: torch.Tensor, max_warp: int, generator: torch.Generator) -> torch.Tensor:
    """Per-utterance warp: interpolate the two segments around a moved centre."""
    out = x.clone()
    for i in range(x.shape[0]):
        tau = int(lengths[i])
        w = min(max_warp, (tau + 1) // 2 - 1)
        if w <= 0:
            continue
        c = int(torch.randint(w, tau - w, (1,), generator=generator))
        d = int(torch.randint(-w, w + 1, (1,), generator=generator))
        seg = x[i, :tau].T[None]  # (1, F, tau)
        if c + d == 0:  # the whole utterance becomes the right-hand segment
            out[i, :tau] = F.interpolate(seg, size=tau, mode="linear", align_corners=False)[0].T
            continue
        left = F.interpolate(seg[:, :, :c], size=c + d, mode="linear", align_corners=False)
        right = F.interpolate(seg[:, :, c:], size=tau - c - d, mode="linear", align_corners=False)
        out[i, :tau] = torch.cat([left, right], dim=2)[0].T
    return out


def _row(name: str, mode: str, t: dict[str, float]) -> dict[str, float]:
    print(f"{name:22s} {mode:15s} vectorized {1e3 * t['vec']:7.2f} ms   loop {1e3 * t['loop']:7.2f} ms   "
          f"speed-up {t['loop'] / t['vec']:5.1f}x")
    return {"vectorized_ms": 1e3 * t["vec"], "loop_ms": 1e3 * t["loop"], "speedup": t["loop"] / t["vec"]}


def run(device: str = "cpu", quick: bool = False) -> dict:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    batch, n_mels = 32, 80
    lengths = torch.randint(100, 1501, (batch,), generator=g)
    x = torch.randn(batch, int(lengths.max()), n_mels, generator=g).to(device)
    lengths = lengths.to(device)
    repeat = 5 if quick else 30
    sync = torch.cuda.synchronize if device.startswith("cuda") else None
    result: dict = {"machine": machine(device), "batch": batch, "lengths": "100-1500 frames", "n_mels": n_mels,
                    "policies": {}}
    # Both variants are timed out of place (a new tensor, input kept) and in place
    # (what training does on freshly computed features); each against the loop in
    # the same mode, so the ratio measures the masking, not an allocation. Before
    # every timed call (untimed) the batch is rewritten from ``x``, as the feature
    # extractor rewrites it before every training step: each call masks a fresh
    # batch that was just written, never the leftovers of the previous call.
    work = x.clone()
    refresh = lambda: work.copy_(x)  # noqa: E731
    for name in ("librispeech_adaptive", "conformer", "SS"):
        policy = POLICIES[name].replace(time_warp=0)
        row = {}
        for mode, inplace in (("out_of_place", False), ("in_place", True)):
            t = compare_calls({
                "vec": lambda: spec_augment(work, lengths, policy, generator=g, inplace=inplace),
                "loop": lambda: loop_spec_augment(work, lengths.cpu(), policy, g, inplace=inplace),
            }, repeat=repeat, sync=sync, setup=refresh)
            row[mode] = _row(name, mode, t)
        # For reference only: the same batch masked again and again, one variant after
        # the other, so it stays in the CPU cache between calls (no refresh). This shows
        # how much of the vectorized time is memory traffic; training never runs this way.
        t = {k: time_call(fn, repeat=repeat, sync=sync) for k, fn in (
            ("vec", lambda: spec_augment(work, lengths, policy, generator=g, inplace=True)),
            ("loop", lambda: loop_spec_augment(work, lengths.cpu(), policy, g, inplace=True)))}
        row["in_place_cached"] = _row(name, "in_place_cached", t)
        result["policies"][name] = row
    warp_policy = SpecAugmentPolicy(time_warp=80, freq_masks=0)
    t = compare_calls({"vec": lambda: spec_augment(x, lengths, warp_policy, generator=g),
                       "loop": lambda: loop_time_warp(x, lengths.cpu(), 80, g)}, repeat=repeat, sync=sync)
    result["time_warp"] = _row("time warp (W=80)", "out_of_place", t)
    return result


def main(argv: list[str] | None = None) -> None:
    bench_main(__doc__, run, "specaugment", argv)


if __name__ == "__main__":
    main()
