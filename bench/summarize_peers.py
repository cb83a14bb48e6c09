"""The "Against the peers" rows of docs/benchmarks.md and the README, and their details (for bench/summarize.py).

Sources: ``docs/bench/peers_cpu.json`` (bench_peers: SpecAugment, the built-in model's
mixed-speaker LoRA, WER against jiwer), ``peers_whisper_cpu.json`` (bench_peers_whisper),
``real_speech_cpu.json`` (bench_real_speech: CTranslate2 and pocketsphinx on the same
recordings) and ``peers_training_cpu.json`` (bench_peers_training: the PEFT +
``Seq2SeqTrainer`` script). Every row is a ratio measured side by side in one process.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["peers_details", "peers_targets"]

Row = tuple[str, str, str, "bool | None", str]
Load = Callable[[str], "dict | None"]

_OPT_IN = "not run (opt-in: `python -m bench --only {}`)"


def _real(real: dict, prefix: str) -> dict | None:
    rows = [v for k, v in real["systems"].items() if k.startswith(prefix) and "wer" in v]
    return rows[0] if rows else None


def _specaugment_rows(peers: dict | None) -> list[Row]:
    script = "bench/bench_peers.py"
    if not peers:
        return [("SpecAugment vs lhotse and SpeechBrain", ">= 3x lhotse; 0 frames in padding", "not measured", None,
                 script)]
    s = peers["specaugment"]
    shape = f"({s['batch']}, {s['frames']}, {s['n_mels']}), {s['lengths']}"
    ms = s["ms"]
    rows: list[Row] = []
    if "speedup_vs_lhotse" in s:
        r = s["speedup_vs_lhotse_rounds"]
        rows.append((f"SpecAugment vs lhotse `SpecAugment` {shape}", ">= 3x faster",
                     f"{s['speedup_vs_lhotse']:.1f}x ({ms['ours_out_of_place']['median']:.2f} vs "
                     f"{ms['lhotse']['median']:.2f} ms; rounds {r['q1']:.1f}-{r['q3']:.1f}x)",
                     s["speedup_vs_lhotse"] >= 3, script))
    else:
        rows.append(("SpecAugment vs lhotse `SpecAugment`", ">= 3x faster", s["missing"]["lhotse"], None, script))
    if "speedup_vs_speechbrain" in s:
        r = s["speedup_vs_speechbrain_rounds"]
        rows.append((f"SpecAugment (in place) vs SpeechBrain `SpectrogramDrop`, time + frequency {shape}",
                     "faster (no goal set)", f"{s['speedup_vs_speechbrain']:.1f}x ({ms['ours_in_place']['median']:.2f} "
                     f"vs {ms['speechbrain']['median']:.2f} ms; rounds {r['q1']:.1f}-{r['q3']:.1f}x)",
                     s["speedup_vs_speechbrain"] > 1, script))
    else:
        rows.append(("SpecAugment vs SpeechBrain `SpectrogramDrop`", "faster (no goal set)",
                     s["missing"]["speechbrain"], None, script))
    mf = s["masked_frames"]
    names = {"ours_in_place": "ours", "lhotse": "lhotse", "speechbrain": "SpeechBrain"}
    got = ", ".join(f"{label} {mf[k]['in_padding']:,.0f}" for k, label in names.items() if k in mf)
    rows.append(("SpecAugment: time-masked frames inside the padding, per call", "0 (ours)", got,
                 mf["ours_in_place"]["in_padding"] == 0 and mf["ours_out_of_place"]["in_padding"] == 0, script))
    return rows


def _lora_rows(result: dict | None, label: str, script: str, opt_in: str | None) -> list[Row]:
    name = f"Mixed-speaker LoRA ({label}) vs PEFT `adapter_names`"
    if not result:
        return [(name, ">= 1.5x at 64 speakers; >= 1x at 1", _OPT_IN.format(opt_in) if opt_in else "not measured",
                 None, script)]
    m = result["mixed_lora"]
    if "missing" in m:
        return [(name, ">= 1.5x at 64 speakers; >= 1x at 1", m["missing"], None, script)]
    by = {r["distinct"]: r for r in m["rows"]}
    rows: list[Row] = []
    top = by.get(max(d for d in by if d != "single"))
    rows.append((f"{name}, {top['distinct']} speakers in a batch of {m['batch']}", ">= 1.5x",
                 f"{top['ratio']:.2f}x ({top['ours_utt_per_s']:.1f} vs {top['peft_utt_per_s']:.1f} utt/s; rounds "
                 f"{top['ratio_rounds']['q1']:.2f}-{top['ratio_rounds']['q3']:.2f}x)", top["ratio"] >= 1.5, script))
    low = [r for k, r in by.items() if k in ("single", 1)]
    rows.append((f"{name}, a single adapter and 1 speaker of {m['batch']}",
                 ">= 1x (never slower), by the median and the lower quartile of rounds",
                 ", ".join(f"{'single adapter' if r['distinct'] == 'single' else '1 of ' + str(r['loaded'])} "
                           f"{r['ratio']:.2f}x (rounds {r['ratio_rounds']['q1']:.2f}-{r['ratio_rounds']['q3']:.2f}x)"
                           for r in low), all(r["ratio"] >= 1.0 and r["ratio_rounds"]["q1"] >= 1.0 for r in low),
                 script))
    worst = max(r["max_abs_diff"] for r in m["rows"])
    effect = min(r["max_abs_effect"] for r in m["rows"])
    rows.append((f"Mixed-speaker LoRA ({label}): outputs against PEFT's, same weights", "<= 1e-4 (float32 rounding)",
                 f"largest difference {worst:.1e} (LoRA itself moves them by >= {effect:.1e})", worst <= 1e-4, script))
    if "ours_over_base" in top:
        q = top["ours_over_base_rounds"]
        rows.append((f"Mixed-speaker LoRA ({label}): time over no adapter, {top['distinct']} speakers in a batch of "
                     f"{m['batch']}", "<= 1.25x",
                     f"ours {top['ours_over_base']:.2f}x (rounds {q['q1']:.2f}-{q['q3']:.2f}x), PEFT "
                     f"{top['peft_over_base']:.2f}x", top["ours_over_base"] <= 1.25, script))
    vector = [r for r in m.get("vector", []) if r["distinct"] == top["distinct"]]
    if vector:
        rows.append((f"Vector adapters ({label}): time over no adapter, {top['distinct']} speakers in a batch of "
                     f"{m['batch']}", "close to 1x (no goal set)",
                     ", ".join(f"{r['mode']} {r['over_base']:.2f}x (rounds {r['over_base_rounds']['q1']:.2f}-"
                               f"{r['over_base_rounds']['q3']:.2f}x; {r['per_speaker_parameters']:,} parameters per "
                               f"speaker)" for r in vector)
                     + f"; LoRA {m['lora_per_speaker_parameters']:,} parameters per speaker", None, script))
    return rows


def _real_rows(real: dict | None) -> list[Row]:
    script = "bench/bench_real_speech.py"
    if not real:
        return [("Whisper tiny.en vs CTranslate2 and pocketsphinx (real recordings)", "<= 2x; <= 0.5x",
                 _OPT_IN.format("real_speech"), None, script)]
    rows: list[Row] = []
    ours, full = _real(real, "whisper-tiny.en (workbench, auto"), _real(real, "whisper-tiny.en (workbench, full")
    ct2, ps = _real(real, "whisper-tiny.en (ctranslate2 float32"), _real(real, "pocketsphinx")
    if ours and ct2 and full:
        rows.append(("Whisper tiny.en transcription: CPU time vs CTranslate2 (same weights, float32)", "<= 2x",
                     f"{ours['rtf'] / ct2['rtf']:.2f}x with the auto window (WER {100 * ours['wer']:.1f}%), "
                     f"{full['rtf'] / ct2['rtf']:.2f}x with the full 30 s window ({100 * full['wer']:.1f}%); "
                     f"CTranslate2 RTF {ct2['rtf']:.3f}, WER {100 * ct2['wer']:.1f}%",
                     full["rtf"] <= 2 * ct2["rtf"], script))
    if ours and ps:
        rows.append(("Real speech: Whisper tiny.en WER vs pocketsphinx's (same recordings)", "<= 0.5x",
                     f"{100 * ours['wer']:.1f}% vs {100 * ps['wer']:.1f}% ({ours['wer'] / ps['wer']:.2f}x; "
                     "pocketsphinx "
                     f"RTF {ps['rtf']:.3f})", ours["wer"] <= 0.5 * ps["wer"], script))
    return rows


def _training_row(tr: dict | None) -> Row:
    name = "Personalizing Whisper tiny.en: wall time to the same validation WER vs PEFT + `Seq2SeqTrainer`"
    script = "bench/bench_peers_training.py"
    if not tr:
        return name, "<= 0.5x", _OPT_IN.format("peers_training"), None, script
    if "missing" in tr:
        return name, "<= 0.5x", tr["missing"], None, script
    parts = []
    for r in tr["rows"]:
        t = r["targets"][0]
        o, p = r["ours"], r["peft"]
        when = (f"{t['ratio']:.2f}x ({t['ours_s']:.0f} vs {t['peft_s']:.0f} s to {100 * t['wer']:.1f}%)"
                if t["ratio"] is not None else "not compared")
        parts.append(f"{r['speaker']} seed {r['seed']}: {when}; test WER ours {100 * o['test_wer_before']:.1f}% -> "
                     f"{100 * o['test_wer']:.1f}%, script {100 * p['test_wer_before']:.1f}% -> "
                     f"{100 * p['test_wer']:.1f}%")
    sm = tr.get("summary")
    if sm:  # issue 27: the mean test WER too, over speakers x seeds
        ratio = "not compared" if sm["ratio_median"] is None else f"median {sm['ratio_median']:.2f}x"
        ok = sm["test_met"] and bool(sm["time_met"]) if sm["time_met"] is not None else None
        return (name + "; final test WER", f"<= {tr['goal']}x; test WER <= the script's (mean)",
                f"{sm['speakers']} speakers x {sm['pairs'] // max(1, sm['speakers'])} seeds: {ratio}; mean test "
                f"WER ours {100 * sm['test_wer']['ours']:.1f}%, script {100 * sm['test_wer']['peft']:.1f}%", ok, script)
    ok = None if tr["ratio"] is None else tr["ratio"] <= tr["goal"]
    return name, f"<= {tr['goal']}x", "; ".join(parts), ok, script


def peers_targets(load: Load) -> list[Row]:
    """``(comparison, goal, measured, ok, script)`` rows of the peers table."""
    peers = load("peers_cpu")
    rows = _specaugment_rows(peers)
    rows += _lora_rows(peers, "built-in model", "bench/bench_peers.py", None)
    rows += _lora_rows(load("peers_whisper_cpu"), "Whisper tiny.en", "bench/bench_peers_whisper.py", "peers_whisper")
    rows += _real_rows(load("real_speech_cpu"))
    rows.append(_training_row(load("peers_training_cpu")))
    if peers and "max_abs_diff_corpus" in peers.get("wer_vs_jiwer", {}):
        j = peers["wer_vs_jiwer"]
        worst = max(j["max_abs_diff_corpus"], j["max_abs_diff_per_utterance"], j["max_abs_diff_cer"])
        rows.append((f"WER and CER vs jiwer ({j['utterances']} edited prompts, after our normalization)", "identical",
                     f"largest difference {worst:.1e}", worst <= 1e-12, "bench/bench_peers.py"))
    return rows


def _vector_study(v: dict | None) -> list[str]:
    """The vector family against LoRA on the atypical sample speakers (bench/bench_vector_study.py)."""
    if not v:
        return []
    per: dict[str, dict[str, list[float]]] = {}
    for r in v["rows"]:
        per.setdefault(r["speaker"], {}).setdefault(r["family"], []).append(r["wer_after"])
        per[r["speaker"]].setdefault("before", []).append(r["wer_before"])
    families = list(v["summary"])
    out = [f"## The vector family against LoRA: word errors ({v['model']})", "",
           f"Each atypical sample speaker, training seeds {', '.join(str(s) for s in v['seeds'])} (each seed its own "
           "split of the speaker's takes; the test phrases are never trained on), the workbench's defaults for each "
           "family (its own learning rate, the same layers, early stopping on the validation recordings, "
           "step-based). Test WER, mean over the seeds. `python -m bench.bench_vector_study`", "",
           "| speaker | before | " + " | ".join(families) + " |", "|---|---|" + "---|" * len(families)]
    for speaker, d in per.items():
        out.append(f"| {speaker} | {100 * sum(d['before']) / len(d['before']):.1f}% | "
                   + " | ".join(f"{100 * sum(d[f]) / len(d[f]):.1f}%" for f in families) + " |")
    row = " | ".join(f"{100 * v['summary'][f]['wer_after']:.1f}% (sd {100 * v['summary'][f]['wer_after_sd']:.1f})"
                     for f in families)
    out += [f"| all ({v['summary'][families[0]]['runs']} runs each) | "
            f"{100 * v['summary'][families[0]]['wer_before']:.1f}% | {row} |",
            "| parameters per speaker | | " + " | ".join(f"{v['summary'][f]['per_speaker_parameters']:,}"
                                                      for f in families) + " |",
            "| training seconds (mean) | | " + " | ".join(f"{v['summary'][f]['train_s']:.0f}" for f in families) + " |",
            ""]
    return out


def _server_before_after(fast: dict | None, plain: dict | None) -> list[str]:
    """The clinic server's load test (bench_device_server, built-in split) with the reordered sums and without
    them (every LoRA delta added after the frozen linear), when both runs are saved."""
    if not fast or not plain:
        return []
    a, b = fast["load"], plain["load"]
    return [f"The clinic server under the same load test (`bench/bench_device_server.py`: {a['clients']} device "
            f"clients for {a['seconds']:.0f} s, {fast['speakers']} speakers mixed, {fast['machine']['cpu']}), two "
            f"runs minutes apart: {a['per_s']:.1f} requests/s, p95 {a['p95_ms']:.0f} ms with the paths above; "
            f"{b['per_s']:.1f}/s, p95 {b['p95_ms']:.0f} ms with every delta added after the frozen linear and nothing "
            "merged (`docs/bench/device_server_cpu_peft_order_builtin.json`). One request at a time moved as much "
            f"({fast['one_at_a_time']['per_s']:.1f}/s against {plain['one_at_a_time']['per_s']:.1f}/s), so the "
            "difference is the run-to-run spread of this test, not the adapter path.", ""]


def peers_details(load: Load) -> list[str]:
    """The docs/benchmarks.md sections behind the table: how each comparison was matched."""
    out: list[str] = []
    peers = load("peers_cpu")
    if peers:
        s = peers["specaugment"]
        out += ["## Against the peers: SpecAugment", "",
                f"Batch ({s['batch']}, {s['frames']}, {s['n_mels']}), true lengths {s['lengths']} "
                f"({100 * s['padding_fraction']:.0f} % of the frames are padding); one policy for all: "
                f"{s['policy']['freq_masks']} frequency masks of 0-{s['policy']['freq_width']} bins, "
                f"{s['policy']['time_masks']} time masks of 0-{s['policy']['time_width']} frames, no time warp, every "
                "utterance. lhotse `SpecAugment(time_warp_factor=None, p=1.0, ...)` clones the batch, so it is timed "
                "against ours out of place; SpeechBrain's two `SpectrogramDrop` calls (time, then frequency) fill in "
                "place, so against ours in place. Variants alternate round by round; the batch is rewritten "
                "(untimed) before every call. `python -m bench.bench_peers`", "",
                "| variant | median (ms) | q1-q3 (ms) | time-masked frames per call: in padding | in the utterances |",
                "|---|---|---|---|---|"]
        for k, t in s["ms"].items():
            mf = s["masked_frames"][k]
            out.append(f"| {k} | {t['median']:.2f} | {t['q1']:.2f}-{t['q3']:.2f} | {mf['in_padding']:,.0f} | "
                       f"{mf['in_utterances']:,.0f} |")
        out += ["", "The peers draw mask positions over the padded length, so part of their masking lands on padding "
                "(which the model never sees) and less on the speech; ours draws within each utterance's true "
                "length.", ""]
    for key, label in (("peers_cpu", "built-in model"), ("peers_whisper_cpu", "Whisper tiny.en")):
        res = load(key)
        m = (res or {}).get("mixed_lora")
        if not m or "rows" not in m:
            continue
        c = m["config"]
        out += [f"## Against the peers: mixed-speaker LoRA, {label}", "",
                f"Batches of {m['batch']} utterances of ~{m['utterance_s']:.1f} s ({m['frames']} frames); LoRA rank "
                f"{c['rank']}, alpha {c['alpha']:g}, targets {c['targets']}"
                + (f", top {c['top_layers']} layers" if c.get("top_layers") else "")
                + (" and the decoder" if c.get("decoder") else "") + f" ({m['rows'][0]['layers']} linear layers). "
                "The same weights in our bank and in PEFT (adapter `spk{i}` = bank row i; both scale by alpha/r, "
                "PEFT without rsLoRA), each on its own copy of the base model, the same scoring code; medians "
                "of alternating rounds. `python -m bench."
                + ("bench_peers`" if key == "peers_cpu" else "bench_peers_whisper`"), "",
                "| distinct speakers (loaded) | ours (utt/s) | PEFT (utt/s) | ratio | ratio per round, q1-q3 | "
                "max abs difference |", "|---|---|---|---|---|---|"]
        with_base = all("base_utt_per_s" in r for r in m["rows"])
        if with_base:
            out[-2] = out[-2].removesuffix("max abs difference |") + "no adapter (utt/s) | ours / no adapter | " \
                "PEFT / no adapter | max abs difference |"
            out[-1] = "|---|---|---|---|---|---|---|---|---|"
        for r in m["rows"]:
            d = "single adapter" if r["distinct"] == "single" else f"{r['distinct']} ({r['loaded']})"
            base = (f"{r['base_utt_per_s']:.1f} | {r['ours_over_base']:.2f}x | {r['peft_over_base']:.2f}x | "
                    if with_base else "")
            out.append(f"| {d} | {r['ours_utt_per_s']:.1f} | {r['peft_utt_per_s']:.1f} | {r['ratio']:.2f}x | "
                       f"{r['ratio_rounds']['q1']:.2f}-{r['ratio_rounds']['q3']:.2f}x | {base}{r['max_abs_diff']:.1e} |")
        out += ["", "PEFT's mixed batch loops over the distinct adapters in the batch, selecting each one's rows and "
                "running its two small matmuls; ours gathers every example's factors once per utterance and runs one "
                "batched matmul per layer whatever the number of speakers, with one shrink for the layers that read "
                "the same input (q/k/v; every cross-attention k/v) and the expand added into the layer's output by "
                "the matmul itself. On the built-in model a batch of one speaker runs on that speaker's merged weights (a "
                "cached copy) and a mixed batch expand first; on Whisper the delta is added after the frozen linear, "
                "in PEFT's order, unmerged (workbench.adapters.adapted.REORDERED_SUMS). "
                "'no adapter' is the base model in the same alternating rounds.", ""]
        if key == "peers_cpu":
            out += _server_before_after(load("device_server_cpu"), load("device_server_cpu_peft_order_builtin"))
        if m.get("vector"):
            out += [f"Vector adapters on the same layers, {m['batch']} utterances, alternating with the base model "
                    "(LoRA for comparison: "
                    f"{m['lora_per_speaker_parameters']:,} parameters per speaker):", "",
                    "| mode | distinct speakers (loaded) | parameters per speaker | vector (utt/s) | no adapter (utt/s) "
                    "| time over no adapter | rounds, q1-q3 |", "|---|---|---|---|---|---|---|"]
            for r in m["vector"]:
                q = r["over_base_rounds"]
                out.append(f"| {r['mode']} | {r['distinct']} ({r['loaded']}) | {r['per_speaker_parameters']:,} | "
                           f"{r['utt_per_s']:.1f} | {r['base_utt_per_s']:.1f} | {r['over_base']:.2f}x | "
                           f"{q['q1']:.2f}-{q['q3']:.2f}x |")
            out.append("")
    out += _vector_study(load("vector_study_cpu"))
    real = load("real_speech_cpu")
    names = ("workbench, auto", "workbench, full", "ctranslate2 float32", "ctranslate2 int8")
    ours, full, ct2, int8 = (_real(real, f"whisper-tiny.en ({n}") for n in names) if real else (None,) * 4
    if ours and full and ct2:
        out += ["## Against the peers: Whisper transcription", "",
                f"The same tiny.en weights and recordings, greedy, batches of 8 (per-system table: 'Real speech' "
                f"below). On the same 30 s window our PyTorch path takes {full['rtf'] / ct2['rtf']:.2f}x "
                "CTranslate2's time, float32 on both. "
                f"What makes ours faster is the auto window (the audio plus 1 s): {ours['rtf'] / ct2['rtf']:.2f}x, at "
                f"a cost of {100 * (ours['wer'] - full['wer']):+.1f} points of WER on these recordings"
                + (f"; CTranslate2's int8 weights (real-time factor {int8['rtf']:.3f} against {ct2['rtf']:.3f}) are "
                   "the step ours does not take." if int8 else "."), ""]
    tr = load("peers_training_cpu")
    if tr and "rows" in tr:
        out += ["## Against the peers: personalizing Whisper tiny.en", "",
                f"Training / validation / test recordings: {tr['sizes'][0]} / {tr['sizes'][1]} / {tr['sizes'][2]} "
                "(`three_way_split`, at most 50 for training and validation). Ours: `Trainer` with "
                "`default_config` (no time budget); the script: `bench/peft_whisper_baseline.py` (PEFT LoRA + "
                "`Seq2SeqTrainer`, the same rank, targets, learning rate, schedule, batch, evaluation interval and "
                f"early stopping), bounded at {tr['bound_s']:.0f} s. Wall time from the first feature computation, "
                "evaluations included; each side scores its validation phrases with its own decoding. "
                "`python -m bench.bench_peers_training`", "",
                "| speaker | seed | side | steps | wall (s) | stopped | validation WER start -> best | test WER "
                "before -> after |", "|---|---|---|---|---|---|---|---|"]
        for r in tr["rows"]:
            for side in ("ours", "peft"):
                x = r[side]
                out.append(f"| {r['speaker']} | {r['seed']} | {'ours' if side == 'ours' else 'PEFT script'} | "
                           f"{x['steps']} | {x['wall_s']:.0f} | {x['stopped']} | {100 * x['evals'][0]['wer']:.1f}% -> "
                           f"{100 * min(e['wer'] for e in x['evals']):.1f}% | {100 * x['test_wer_before']:.1f}% -> "
                           f"{100 * x['test_wer']:.1f}% |")
        out += ["", "| speaker | seed | target validation WER | ours reached it at | the script at | ratio |",
                "|---|---|---|---|---|---|"]
        for r in tr["rows"]:
            for t in r["targets"]:
                show = lambda v: "never" if v is None else f"{v:.0f} s"  # noqa: E731
                ratio = "—" if t["ratio"] is None else f"{t['ratio']:.2f}x"
                out.append(f"| {r['speaker']} | {r['seed']} | {100 * t['wer']:.1f}% ({t['target']}) | "
                           f"{show(t['ours_s'])} | {show(t['peft_s'])} | {ratio} |")
        sm = tr.get("summary")
        if sm:
            ratio = "—" if sm["ratio_median"] is None else f"{sm['ratio_median']:.2f}x"
            out += ["", f"Over {sm['pairs']} speaker x seed pairs: mean final test WER ours "
                    f"{100 * sm['test_wer']['ours']:.1f}%, the script {100 * sm['test_wer']['peft']:.1f}% "
                    f"({'at or below' if sm['test_met'] else 'above'} the script's); median wall-time ratio to the "
                    f"lowest validation WER both reach {ratio} (goal <= {tr['goal']}x, {sm['ratios_compared']} pairs "
                    "compared)."]
        adapter = (tr.get("rows") or [{}])[0].get("ours", {}).get("settings", {}).get("adapter", {})
        cached = ("computes the frozen bottom of the encoder once per recording (the adapter covers only its top "
                  f"{adapter['top_layers']} layers), " if adapter.get("top_layers") else "")
        out += ["", "What makes the difference: the script encodes every recording in Whisper's 30 s window at every "
                "step and evaluation; ours encodes the audio plus 1 s (the auto window), " + cached
                + "and decodes its validation phrases greedily with a key/value cache.", ""]
    return out
