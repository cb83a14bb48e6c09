"""Issue 27's tables in docs/results.md (used by bench/summarize.py).

Sources: ``docs/bench/study_defaults_whisper.json`` (bench/study_defaults.py ``--model
whisper-tiny.en``: the Whisper defaults chosen on development speakers) and
``docs/bench/data_efficiency_cpu.json`` (bench/bench_data_efficiency.py: 10/25/50 recordings).
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["data_efficiency_section", "whisper_defaults_section"]


def _machine(result: dict) -> str:
    from bench._common import machine_text

    return machine_text(result["machine"])


def whisper_defaults_section(study: dict | None) -> list[str]:
    """The table of ``study_defaults.py --model whisper-tiny.en``: candidates, then the chosen one's
    evaluation interval x patience."""
    if not study or not study.get("candidates"):
        return []
    speakers = sorted({s for r in study["candidates"] for s in r["speakers"]})
    seeds = sorted({t["seed"] for t in study["trajectories"]})
    lim = study["limits"]
    shared = study.get("common_seeds", seeds)
    common = f"seed{'s' if len(shared) > 1 else ''} {', '.join(map(str, shared))}"
    out = ["### Choosing Whisper tiny.en's defaults on development speakers", "",
           f"{len(speakers)} *development* speakers (never the sample speakers), each candidate trained for "
           f"{study['steps']} "
           f"steps, seeds {seeds}, the validation and (for this study only) test WER logged every "
           f"{study['logged_every']} steps. Each cell is the test-phrase relative WER reduction of the checkpoint the "
           f"trainer keeps (lowest validation loss), with an evaluation every {study['interval']} steps and early "
           f"stopping after {study['patience']} evaluations without a lower validation WER, replayed on the logged "
           f"runs. The candidates are ranked on {common}, which every candidate ran (a study grown in stages gave "
           "some candidates more seeds); the speaker cells are means over each candidate's seeds; "
           "`oracle` is the lowest test WER of the run (an upper bound, not a rule). Step: the median "
           f"training step at batch 8; run: steps and evaluations up to the replayed stop. Admissible: at most "
           f"{lim['step_s']:g} s a step and {lim['run_s'] / 60:g} minutes a run (mean over speakers). "
           + _timed_note(study) + f"Machine: {_machine(study)}. `python -m bench.study_defaults --model "
           "whisper-tiny.en`" + (" then `--timing --threads 2` on a quiet machine" if study.get("timing") else ""),
           "",
           "| candidate | mean, " + common + " | mean, all its runs | " + " | ".join(s.removeprefix("dev-") for s in speakers)
           + " | oracle | s / step | run (mean, longest) | admissible |",
           "|---|---|---|" + "---|" * len(speakers) + "---|---|---|---|"]
    for r in study["candidates"]:
        cells = " | ".join(f"{100 * r['speakers'][s]:+.0f}%" if s in r["speakers"] else "—" for s in speakers)
        name = f"**{r['candidate']}** (chosen)" if r["candidate"] == study["chosen"] else r["candidate"]
        out.append(f"| {name} | **{100 * r.get('common_mean', r['mean_relative_reduction']):+.1f}%** | "
                   f"{100 * r['mean_relative_reduction']:+.1f}% ({r['runs']} runs) | {cells} | "
                   f"{100 * r['oracle_relative_reduction']:+.0f}% | {r['step_s']:.2f} | {r['run_s_mean']:.0f} s, "
                   f"{r['run_s_max']:.0f} s | {'yes' if r['admissible'] else 'no'} |")
    if study["chosen"] is None:
        out += ["", "No candidate stayed within the limits on this machine: nothing is chosen.", ""]
        return out
    out += ["", f"The chosen candidate ({study['chosen']}) with other evaluation intervals and patience, replayed on "
            "the same runs:", "", "| evaluation every | patience | mean | run (mean, longest) |", "|---|---|---|---|"]
    for r in study["schedules"]:
        out.append(f"| {r['eval_every']} steps | {r['patience']} | {100 * r['mean_relative_reduction']:+.0f}% | "
                   f"{r['run_s_mean']:.0f} s, {r['run_s_max']:.0f} s |")
    return [*out, ""]


def _timed_note(study: dict) -> str:
    """Where the study's seconds come from: its quiet timing pass, its own runs, or both."""
    sources = {r.get("timed", "during the study's runs") for r in study["candidates"]}
    if sources == {"quiet timing pass"}:
        threads = sorted({t["threads"] for t in study["timing"].values()})
        steps = sorted({t["steps"] for t in study["timing"].values()})
        return (f"The seconds come from a separate timing pass on a quiet machine ({'/'.join(map(str, steps))} steps of "
                f"each candidate on each speaker, {'/'.join(map(str, threads))} threads), not from the study's "
                "runs, which may share the CPU. ")
    if "quiet timing pass" in sources:
        return ("The seconds come from a quiet timing pass where it has the candidate, else from the study's own "
                "runs, which may have shared the CPU. ")
    return "The seconds come from the study's own runs, which may have shared the CPU. "


def data_efficiency_section(load: Callable[[str], dict | None]) -> list[str]:
    """Test WER after personalizing from 10/25/50 recordings, Whisper tiny.en beside the built-in model."""
    result = load("data_efficiency_cpu")
    if not result or not result.get("summary"):
        return []
    summary = result["summary"]
    names = {"whisper-tiny.en": "Whisper tiny.en", "tiny": "built-in model"}
    models = sorted(summary, key=lambda m: list(names).index(m) if m in names else len(names))
    out = ["### Data efficiency: 10, 25 and 50 recordings", "",
           f"{len(result['speakers'])} atypical sample speakers, the same test phrases for every size and model; "
           "the personal model learns from the first N of the speaker's other recordings (training and validation "
           "together), step-based with each model's defaults, "
           f"{result['seeds']} seed{'s' if result['seeds'] != 1 else ''}. Mean test WER after personalization "
           "(relative reduction; range of the per-speaker means). The app's Record page reads these means "
           "(`workbench/data/recording_hint.json`, written by the same run) to say how many more recordings are "
           f"worth making. Machine: {_machine(result)}. `{result.get('command', 'python -m bench.bench_data_efficiency')}`",
           "", "| recordings | " + " | ".join(names.get(m, m) for m in models) + " |",
           "|---|" + "---|" * len(models)]
    sizes = sorted({e["recordings"] for m in models for e in summary[m]})
    for n in sizes:
        cells = []
        for m in models:
            e = next((x for x in summary[m] if x["recordings"] == n), None)
            cells.append("—" if e is None else
                         f"{100 * e['wer_after']:.1f}% ({100 * e['relative_reduction']:+.0f}%; "
                         f"{100 * e['speaker_range'][0]:+.0f}..{100 * e['speaker_range'][1]:+.0f}%)")
        out.append(f"| {n} | " + " | ".join(cells) + " |")
    before = " and ".join(f"{names.get(m, m)} {100 * summary[m][0]['wer_before']:.1f}%" for m in models)
    out += ["", f"Base models on the same test phrases: {before}. These are ASR word error rates on synthetic "
            "voices, not clinical scores.", ""]
    return out
