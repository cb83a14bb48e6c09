"""Run every benchmark and write docs/benchmarks.md: ``python -m bench [--quick] [--only NAME] [--device cuda]``."""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback

BENCHES = ["specaugment", "models", "submodels", "distributed", "embeddings", "personalization", "peers"]
# --only NAME: kept out of the 15-minute suite (contention: minutes of deliberately stalled steps;
# real_speech and whisper: about 7 and 3 minutes, more with bench_whisper --table/--tricks; peers_whisper
# and peers_training: Whisper against PEFT, about 4 and 15 minutes)
OPTIONAL = ["contention", "real_speech", "whisper", "peers_whisper", "peers_training", "device_tuning", "device_server",
            "device_tuning_tasks", "export", "live"]  # export: every engine on the exported personal models, ~10
# minutes; live: ~30 minutes (a personal model per speaker is trained once, then cached)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that every benchmark runs")
    parser.add_argument("--only", action="append", choices=BENCHES + OPTIONAL)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    failed = []
    seconds: dict[str, float] = {}
    t_all = time.perf_counter()
    for name in args.only or BENCHES:
        print(f"== bench_{name} ==", flush=True)
        t0 = time.perf_counter()
        try:
            module = importlib.import_module(f"bench.bench_{name}")
        except ModuleNotFoundError as err:
            print(f"   missing: {err}")
            failed.append(name)
            continue
        extra = ["--quick"] if args.quick else []
        if name != "personalization":
            extra += ["--device", args.device]
        try:
            module.main(extra)
        except (Exception, SystemExit) as err:  # noqa: BLE001 - report and go on with the other benchmarks
            if isinstance(err, SystemExit) and err.code in (0, None):
                pass
            else:
                traceback.print_exc()
                failed.append(name)
        seconds[name] = time.perf_counter() - t0
        print(f"   ({seconds[name]:.0f} s)", flush=True)
    if not args.only:  # the whole suite: its wall time is a target too (< 15 min)
        from bench._common import machine, write_result

        write_result("suite" + ("_quick" if args.quick else ""), {"machine": machine(args.device), "seconds": seconds,
                               "wall_s": time.perf_counter() - t_all, "failed": failed})
    from bench.summarize import main as summarize

    summarize(quick=args.quick)  # --quick summarizes into the results folder, never over docs/
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
