"""The real-speech and Whisper parts of docs/benchmarks.md and docs/results.md (used by bench/summarize.py).

Sources: ``docs/bench/real_speech_cpu.json`` (bench_real_speech), ``whisper_cpu.json``
(bench_whisper: step times, trick costs, the per-speaker table) and, for the side-by-side
column, the built-in model's ``personalization_seeds.json``.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["results_md_real_speech", "whisper_details", "whisper_targets"]

Row = tuple[str, str, str, "bool | None", str]


def _table_means(whisper: dict | None) -> list[dict]:
    """Per speaker over seeds; ``whisper``: ``whisper_cpu.json`` (its ``table``) or the step-based
    ``personalization_whisper_seeds.json`` of bench_personalization (its ``rows``)."""
    rows = (whisper or {}).get("table") or (whisper or {}).get("rows") or []
    per: dict[str, list[dict]] = {}
    for r in rows:
        per.setdefault(r["speaker"], []).append(r)
    return [{"speaker": s, "runs": len(rs), "before": rs[0]["wer_before"],
             "after": sum(r["wer_after"] for r in rs) / len(rs),
             "mean": sum(r["relative_reduction"] for r in rs) / len(rs),
             "min": min(r["relative_reduction"] for r in rs), "max": max(r["relative_reduction"] for r in rs),
             "train_s": max(r["train_s"] for r in rs), "steps": sum(r["steps"] for r in rs) / len(rs)}
            for s, rs in per.items()]


def whisper_targets(load: Callable[[str], dict | None]) -> list[Row]:
    """Target rows of issue 15: the Whisper training step and its personal results."""
    rows: list[Row] = []
    whisper = load("whisper_cpu")  # real speech against CTranslate2 and pocketsphinx: bench/summarize_peers.py
    script = "bench/bench_whisper.py"
    if not whisper:
        rows.append(("Whisper tiny.en training step and personal results", "<= 2 s; >= 50%",
                     "not run (opt-in: `python -m bench --only whisper`, then `--table`)", None, script))
    else:
        st = whisper["step"]["seconds_per_step"]
        rows.append(("Whisper tiny.en training step, batch 8, 2 threads (default: auto window + cached bottom half)",
                     "<= 2 s", f"{st['auto+prefix']:.2f} s (plain 30 s window, every layer: "
                     f"{st.get('full', float('nan')):.2f} s)", st["auto+prefix"] <= 2.0, script))
        stepped = load("personalization_whisper_seeds")  # the step-based table, when it has been run
        means = _table_means(stepped or whisper)
        if means:
            script = "bench/bench_personalization.py" if stepped else script
            met = sum(m["mean"] >= 0.5 for m in means)
            within = all(m["train_s"] <= 180 + 30 for m in means)
            rows.append(("Whisper tiny.en personalization: >= 50% relative WER reduction, <= 3 min, 3 seeds",
                         "every atypical speaker", f"{met} of {len(means)} speakers on the mean of "
                         f"{means[0]['runs']} seeds", met == len(means) and within, script))
    return rows


def whisper_details(load: Callable[[str], dict | None]) -> list[str]:
    """The docs/benchmarks.md sections: real speech per system, and the training step per trick."""
    out: list[str] = []
    real, whisper = load("real_speech_cpu"), load("whisper_cpu")
    if real:
        out += ["## Real speech: every base model on one real voice", "",
                f"{real['utterances']} prompts ({real['audio_minutes']:.1f} min) of {real['set']}; the same "
                "recordings for every system, one after another in one process; real-time factor = processing "
                "seconds (features included) / audio seconds. `python -m bench.bench_real_speech`", "",
                "| system | WER | CER | real-time factor |", "|---|---|---|---|"]
        for name, r in real["systems"].items():
            if "wer" in r:
                out.append(f"| {name} | {100 * r['wer']:.1f}% | {100 * r['cer']:.1f}% | {r['rtf']:.3f} |")
            else:
                out.append(f"| {name} | not measured: {r['error']} | | |")
        out += ["", "The recordings are 8 kHz telephone audio: pocketsphinx's 16 kHz model suffers most from the "
                "missing high band. ctranslate2 always encodes Whisper's 30 s window; the workbench's `auto` window "
                "encodes the audio plus 1 s, which is where most of its lead comes from (its cost in words is the "
                "auto vs full rows).", ""]
    if whisper:
        st = whisper["step"]
        out += ["## Whisper tiny.en: the training step and what each trick costs", "",
                f"Batch {st['batch']} of `{st['speaker']}` (mean {st['mean_utterance_s']:.1f} s per recording), "
                "the Trainer's own step (forward, backward, clipping, AdamW), variants interleaved, medians. "
                "`python -m bench.bench_whisper [--tricks]`", "",
                "| variant | s / step |", "|---|---|"]
        labels = {"full": "30 s window, LoRA on every encoder layer + decoder (plain fine-tuning)",
                  "full+prefix": "30 s window, bottom half of the encoder cached",
                  "auto": "auto window (audio + 1 s), LoRA on every encoder layer + decoder",
                  "auto+prefix": "auto window + bottom half cached (the default)"}
        for k, v in st["seconds_per_step"].items():
            out.append(f"| {labels.get(k, k)} | {v:.2f} |")
        tricks = whisper.get("tricks") or []
        if tricks:
            out += ["", f"Word error rate on the test phrases after {tricks[0]['steps']} training steps of each variant "
                    "(same speakers, same data, seed 0):", "",
                    "| speaker | variant | WER before | WER after | training s |", "|---|---|---|---|---|"]
            for t in tricks:
                out.append(f"| {t['speaker']} | {labels.get(t['variant'], t['variant'])} | "
                           f"{100 * t['wer_before']:.1f}% | {100 * t['wer_after']:.1f}% | {t['train_s']:.0f} |")
        out.append("")
    return out


def _lora_words(settings: dict | None) -> str:
    """A run's LoRA settings in words.

    >>> _lora_words({"adapter": {"rank": 8, "top_layers": 0, "decoder": True}, "learning_rate": 1e-3})
    'LoRA rank 8 on every encoder layer and the decoder, learning rate 0.001'
    """
    if not settings or "adapter" not in settings:
        return "LoRA"
    a = settings["adapter"]
    where = "every encoder layer" if not a.get("top_layers") else f"the top {a['top_layers']} encoder layers"
    return (f"LoRA rank {a.get('rank')} on {where}{' and the decoder' if a.get('decoder') else ''}, "
            f"learning rate {settings.get('learning_rate'):g}")


def _current_lora_words() -> str:
    """Whisper's default LoRA settings now (:mod:`workbench.training_defaults`), in :func:`_lora_words`'s words."""
    import dataclasses
    from types import SimpleNamespace

    from workbench.training_defaults import train_settings_for

    settings = train_settings_for(SimpleNamespace(model_type="whisper", num_layers=4))
    return _lora_words({"adapter": dataclasses.asdict(settings["adapter"]),
                        "learning_rate": settings["learning_rate"]})


def results_md_real_speech(load: Callable[[str], dict | None], builtin_means: list[dict]) -> list[str]:
    """The docs/results.md section: Whisper tiny.en's personal results next to the built-in model's
    (the step-based ``personalization_whisper_seeds.json`` when there is one, else ``whisper_cpu.json``)."""
    stepped = load("personalization_whisper_seeds")
    whisper = stepped or load("whisper_cpu")
    means = _table_means(whisper)
    if not means:
        return []
    by_builtin = {m["speaker"]: m for m in builtin_means}
    how = (f"with its defaults ({_lora_words(stepped['rows'][0].get('settings'))}, auto window, at most 50 "
           "recordings), step-based: each run ends on early stopping or at the step limit, the time limit only a "
           "ceiling" if stepped else "with its defaults (LoRA on the top half of the encoder and the decoder, auto window, at "
           "most 50 recordings, at most 3 minutes of training)")
    command = ("python -m bench.bench_personalization --model whisper-tiny.en --seeds 3" if stepped
               else "python -m bench.bench_whisper --table")
    if stepped and (now := _current_lora_words()) != _lora_words(stepped["rows"][0].get("settings")):
        how += f" (*measured with the earlier defaults; the default is now {now}: rerun the command to refresh*)"
    out = ["## Whisper tiny.en (real-speech base model) on the atypical sample speakers", "",
           f"`workbench personalize SPEAKER --model whisper-tiny.en` {how}, "
           f"{means[0]['runs']} seeds; WER on the test phrases, never trained on. The built-in model's figures "
           f"(its own defaults: LoRA, lexicon decoder) are beside them. `{command}`",
           "", "| speaker | Whisper before | Whisper after (mean) | reduction: mean (min..max) | steps | training s (longest seed) | "
           "built-in before | built-in after | built-in reduction |", "|---|---|---|---|---|---|---|---|---|"]
    for m in means:
        b = by_builtin.get(m["speaker"])
        bi = (f"{100 * b['before']:.1f}% | {100 * b['after']:.1f}% | {100 * b['mean']:+.0f}%" if b else "— | — | —")
        out.append(f"| {m['speaker']} | {100 * m['before']:.1f}% | {100 * m['after']:.1f}% | "
                   f"{100 * m['mean']:+.0f}% ({100 * m['min']:+.0f}..{100 * m['max']:+.0f}) | {m['steps']:.0f} | "
                   f"{m['train_s']:.0f} | {bi} |")
    met = sum(m["mean"] >= 0.5 for m in means)
    lower = sum(m["speaker"] in by_builtin and m["after"] < by_builtin[m["speaker"]]["after"] for m in means)
    out += ["", f"{met} of {len(means)} speakers reach the 50 % target on the mean of the seeds; the personal Whisper "
            f"model ends below the personal built-in model on {lower} of {len(means)}. The sample speakers are "
            "synthetic espeak/flite voices, the kind the built-in model was trained on, and still Whisper starts "
            "lower on most of them; on a real voice the built-in model fails completely (docs/benchmarks.md, "
            "'Real speech'). These are ASR word error rates, not clinical scores.", ""]
    return out
