"""Mixed-speaker adapters on Whisper tiny.en: our LoRA bank vs PEFT and vs no adapter; the vector family.

Part 2 of :mod:`bench.bench_peers`. Opt-in (about 7 minutes on 2 CPU cores):
``python -m bench.bench_peers_whisper [--quick]`` or ``python -m bench --only peers_whisper``;
writes ``docs/bench/peers_whisper_cpu.json``.

Our side serves a mixed batch with transformers' Whisper attention minus its copies
(:mod:`workbench.adapters.attention`), each LoRA delta added after the frozen linear as PEFT adds
it (not expand first, not merged: :data:`workbench.adapters.adapted.REORDERED_SUMS`); "no adapter" is
transformers' own forward (``Adapted.disabled()``); no side builds a key/value cache
(teacher forcing reads none). The largest difference from PEFT is float32 rounding:
against a float64 run of PEFT (batch 64) ours, PEFT and our former hook path are each
about 2.6e-4 away at the largest logit (|logits| <= 31). Each row records where the
roundings part (``per_layer``: every encoder and decoder layer against PEFT and against
the float64 copy) and, for the single adapter, how far PEFT's own merge moves PEFT.
"""

from __future__ import annotations

from bench.bench_peers import main_whisper as main

__all__ = ["main"]

if __name__ == "__main__":
    main()
