"""Mixed-speaker adapters on Whisper tiny.en: our LoRA bank vs PEFT and vs no adapter; the vector family.

Part 2 of :mod:`bench.bench_peers`. Opt-in (about 7 minutes on 2 CPU cores):
``python -m bench.bench_peers_whisper [--quick]`` or ``python -m bench --only peers_whisper``;
writes ``docs/bench/peers_whisper_cpu.json``.
"""

from __future__ import annotations

from bench.bench_peers import main_whisper as main

__all__ = ["main"]

if __name__ == "__main__":
    main()
