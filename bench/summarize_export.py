"""The "Exported personal models" section of docs/benchmarks.md, from docs/bench/export.json (bench_export.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["export_details"]


def _machine(result: dict[str, Any]) -> str:
    m = result["machine"]
    return f"{m['cpu']}, {m['cores']} cores, {result['threads']} threads per engine"


def _engines(part: dict[str, Any], goals: dict[str, float]) -> list[str]:
    trained = {"auto": ", trained on the workbench's short window (the default)",
               "full": ", trained on Whisper's 30 s window (`personalize --window full`)"}.get(part.get("window"), "")
    lines = [f"**{part['speaker']}** ({part['submodel']}{trained}): {part['recordings']} test phrases, "
             f"{part['audio_s']:.0f} s of audio.", "",
             "| engine | transcripts identical to `workbench transcribe --adapter` | WER | vs the workbench | "
             "engine's own text, no loop cut: identical, WER | RTF | |", "|---|---|---|---|---|---|---|"]
    for name, e in part["engines"].items():
        mark = "reference" if name == "workbench" else ("—" if "met" not in e else ("met" if e["met"] else "**missed**"))
        lines.append(f"| {name} | {100 * e['identical']:.0f} % ({round(e['identical'] * e['n'])} of {e['n']}) | "
                     f"{100 * e['wer']:.1f} % | {e['wer_points_vs_workbench']:+.1f} points | "
                     f"{100 * e.get('identical_raw', e['identical']):.0f} %, {100 * e.get('wer_raw', e['wer']):.1f} % | "
                     f"{e['rtf']:.3f} | {mark} |")
    lines += ["", "| export | size | export time | merged vs adapted (largest difference) | adapter's own effect |",
              "|---|---|---|---|---|"]
    for name, x in part["exports"].items():
        lines.append(f"| {name} | {x['mb']:.0f} MB | {x['seconds']:.0f} s | {x['max_diff']:.1e} | "
                     f"{x['adapter_effect']:.1e} |")
    return lines + [""]


def export_details(load: Callable[[str], dict | None]) -> list[str]:
    """Markdown lines of the section (a 'not measured' line when the benchmark has not run)."""
    result = load("export")
    head = ["## Exported personal models in their engines", ""]
    if not result:
        return head + ["Not measured yet: `python -m bench.bench_export` (about 40 minutes; trains three sample "
                       "personal models once).", ""]
    g = result["goals"]
    full = result.get("whisper_full")
    steps = (f" The full-window model was trained for {result['full_window_steps']} steps (a step count, not a time "
             "budget, so it does not depend on the machine's load).") if full else ""
    return head + [
        f"Each export run by its own engine, greedy, one recording at a time, with the model card's decoding "
        f"settings; goals: at least {100 * g['identical']:.0f} % of transcripts identical to the workbench's and the "
        f"corpus WER within {g['wer_points']:.0f} point. RTF: compute seconds per second of audio, median of "
        f"{result['rounds']} interleaved rounds. The workbench decodes a personal model on the window it was "
        "trained on. For the default model (the recording + 1 s, in 2 s steps) CTranslate2 (called directly, the "
        "model card's recipe) and whisper.cpp (`audio_ctx`) encode that window; faster-whisper and transformers "
        "always encode 30 s, like the workbench's own full-window row. For the full-window model every engine runs "
        "with its 30 s window, as its model card says: CTranslate2 and faster-whisper get the recording followed "
        "by 30 s of silence (faster-whisper with `clip_timestamps=[0, 30]`: on its own it pads its log-mel with "
        "zeros, not with the log-mel of silence the workbench encodes), whisper.cpp runs with flash attention off "
        "(its float16 attention changed words)." + steps + " The int8 rows are the cost of quantization (CTranslate2's int8 "
        "weights), not of the export; whisper.cpp runs float16 weights only (a float32 file aborts it), and the row "
        "'weights rounded to float16' is the workbench's own path on those weights. The workbench cuts a transcript "
        "that starts to loop; the engines' text gets the same cut (the model card's `cut_loops`; the CTranslate2 "
        "recipe cuts by itself), and their own text is shown too. Machine: " + _machine(result) +
        ". `python -m bench.bench_export`", "",
        *_engines(result["whisper"], g), *(_engines(full, g) if full else []), *_engines(result["builtin"], g)]
