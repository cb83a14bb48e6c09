"""Export, evaluation and model cards of the sizes a supernet (or single-size) run trained.

Each size is written as a built-in model folder ``<run>/<size>/`` (fp16 ``model.safetensors``,
``config.json`` with the size's config and name, ``metrics.json``, ``model_card.md``); the run gets
``<run>/summary.json`` and ``<run>/model_card.md`` (one row per size). :func:`compare` puts several
runs side by side (the supernet against its single-size twins, the ablations).

Evaluation items are ``(waveform (samples,) float32 at 16 kHz, text)``; real-time factors are
seconds of compute per second of audio, measured here with the given torch threads.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from pretrain import REPO
from pretrain.evaluation import (
    evaluate_backend,
    make_decoders,
    sample_data_sets,
    tune_decoder,
)

from workbench.constants import SAMPLE_RATE
from workbench.models.supernet.model import Supernet
from workbench.models.tiny import load_tiny, save_tiny

MAX_TOTAL_MB = 20.0  # every shipped size together (issue 18)
RTF_UTTERANCES = 24  # utterances timed one by one (what one device does)


def export_sizes(supernet: Supernet, names: list[str], run_dir: Path, extra: dict) -> dict[str, Path]:
    """Write each size's plain model (fp16) to ``run_dir/<name>``; warns when they pass 20 MB together."""
    folders = {}
    for name in names:
        model = supernet.extract(name).cpu().eval()
        folder = run_dir / name
        save_tiny(model, folder, fp16=True, extra={**extra, "params": sum(p.numel() for p in model.parameters())})
        folders[name] = folder
    total = sum((f / "model.safetensors").stat().st_size for f in folders.values()) / 1e6
    note = "" if total < MAX_TOTAL_MB else f" - OVER the {MAX_TOTAL_MB:g} MB the shipped sizes may take together"
    print(f"exported {', '.join(names)} to {run_dir}: {total:.1f} MB together{note}", flush=True)
    return folders


def measure_rtf(backend, wavs: list[np.ndarray]) -> dict:
    """Greedy real-time factors: one utterance at a time (a device) and batched (32)."""
    audio_s = sum(len(w) for w in wavs) / SAMPLE_RATE
    backend.transcribe(wavs[:2], batch_size=1)  # warm-up
    t0 = time.perf_counter()
    for w in wavs[:RTF_UTTERANCES]:
        backend.transcribe([w], batch_size=1)
    one = (time.perf_counter() - t0) / (sum(len(w) for w in wavs[:RTF_UTTERANCES]) / SAMPLE_RATE)
    t0 = time.perf_counter()
    backend.transcribe(wavs, batch_size=32)
    return {"rtf_batch1": one, "rtf_batched": (time.perf_counter() - t0) / audio_s, "threads": torch.get_num_threads()}


def evaluate_size(folder: Path, data: dict, *, beam: bool = True, sample_data: bool = True) -> dict:
    """WER/CER (greedy and, with ``beam``, the dev-tuned lexicon beam) on the held-out sets and
    ``sample_data/``, RTF, parameters and file size; writes ``metrics.json`` and ``model_card.md``."""
    from workbench.prompts import load_prompts

    backend = load_tiny(folder)
    prompts = load_prompts("everyday")
    tuned = tune_decoder(backend, data["dev"], data["meta"], prompts) if beam else {}
    decoders = make_decoders(data["meta"], prompts, {k: v for k, v in tuned.items() if k in ("lm_weight", "word_bonus")})
    if not beam:
        decoders.pop("lexicon_beam")
    results = {"heldout_voices_heldout_texts": evaluate_backend(backend, data["eval_heldout_voices"], decoders),
               "heldout_texts_training_voices": evaluate_backend(backend, data["eval_train_voices"], decoders)}
    for name, items in (sample_data_sets(REPO / "sample_data") if sample_data else {}).items():
        results[f"sample_data/{name}"] = evaluate_backend(backend, items, decoders)
    metrics = {"size": backend.config.size, "name": backend.name, "params": backend.num_parameters(),
               "file_mb": (folder / "model.safetensors").stat().st_size / 1e6, "fingerprint": backend.fingerprint(),
               "decoder": tuned, "results": results,
               **measure_rtf(backend, [w for w, _ in data["eval_heldout_voices"]])}
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str) + "\n")
    (folder / "model_card.md").write_text(_size_card(folder, metrics))
    print(f"{metrics['name']}: {metrics['params'] / 1e6:.2f} M params, {metrics['file_mb']:.1f} MB, "
          f"held-out voices greedy WER {results['heldout_voices_heldout_texts']['greedy']['wer']:.3f}, "
          f"RTF {metrics['rtf_batch1']:.4f} (one at a time)", flush=True)
    return metrics


def _sample_mean(results: dict, decoder: str, key: str) -> float:
    vals = [v[decoder][key] for k, v in results.items() if k.startswith("sample_data/")]
    return float(np.mean(vals)) if vals else float("nan")


def _row(label: str, m: dict) -> str:
    r = m["results"]
    dec = "lexicon_beam" if "lexicon_beam" in r["heldout_voices_heldout_texts"] else "greedy"
    hv, ht = r["heldout_voices_heldout_texts"][dec], r["heldout_texts_training_voices"][dec]
    return (f"| {label} | {m['params'] / 1e6:.2f} M | {m['file_mb']:.1f} MB | {hv['wer']:.3f} / {hv['cer']:.3f} | "
            f"{ht['wer']:.3f} / {ht['cer']:.3f} | {_sample_mean(r, dec, 'wer'):.3f} / {_sample_mean(r, dec, 'cer'):.3f} | "
            f"{m['rtf_batch1']:.4f} | {m['rtf_batched']:.4f} |")


_HEAD = ("| {what} | parameters | file (fp16) | held-out voices + phrases WER / CER | training voices, held-out "
         "phrases WER / CER | sample_data speakers (mean) WER / CER | RTF one at a time | RTF batched |\n"
         "|---|---|---|---|---|---|---|---|")


def _size_card(folder: Path, m: dict) -> str:
    cfg = json.loads((folder / "config.json").read_text())
    rows = "\n".join(f"| {k} | {v['greedy']['wer']:.3f} | {v['greedy']['cer']:.3f} | "
                     f"{v.get('lexicon_beam', {}).get('wer', float('nan')):.3f} | "
                     f"{v.get('lexicon_beam', {}).get('cer', float('nan')):.3f} |" for k, v in m["results"].items())
    train = cfg.get("training", {})
    return f"""# {m['name']}

A size of the built-in model (`workbench-tiny`), cut from the supernet of a TODM run
(`recipes/train_supernet.py`, mode `{train.get('mode', '?')}`): {m['params'] / 1e6:.2f} M parameters,
{m['file_mb']:.1f} MB in fp16, config `{json.dumps(cfg['config'])}`. Like the built-in model it is
trained on SYNTHETIC typical speech only; WER is ASR accuracy, not a clinical score.

Training: {train.get('steps', '?')} steps, {train.get('minutes', 0):.1f} min ({train.get('device', '?')}), distillation
`{train.get('distill', '?')}`, adaptive dropout `{train.get('adaptive_dropout', '?')}`, optimizer `{train.get('optimizer', '?')}`;
best checkpoint at step {train.get('best_step', '?')} by dev CER.

| set | greedy WER | greedy CER | lexicon-beam WER | lexicon-beam CER |
|---|---|---|---|---|
{rows}

Real-time factor (greedy, {m['threads']} threads, this machine): {m['rtf_batch1']:.4f} one utterance at a time,
{m['rtf_batched']:.4f} batched. Fingerprint `{m['fingerprint'][:16]}`; decoder `{m['decoder']}`.
"""


def write_run_card(run_dir: Path, info: dict, metrics: dict[str, dict]) -> None:
    """``summary.json`` and ``model_card.md`` of a run: one row per size."""
    (run_dir / "summary.json").write_text(json.dumps({"run": info, "sizes": metrics}, indent=2, default=str) + "\n")
    rows = "\n".join(_row(name, m) for name, m in metrics.items())
    total = sum(m["file_mb"] for m in metrics.values())
    (run_dir / "model_card.md").write_text(f"""# TODM run `{run_dir.name}`

Mode `{info['mode']}`, {info['steps']} steps in {info['minutes']:.1f} min on {info['device']} ({info['threads']} threads),
initialised from {info['init']}; distillation `{info['distill']}`, adaptive dropout `{info['adaptive_dropout']}`,
optimizer `{info['optimizer']}`; {info['n_train_utterances']} training utterances. Sizes together: {total:.1f} MB (fp16).
Decoding: lexicon beam (tuned on dev) where evaluated, else greedy.

{_HEAD.format(what='size')}
{rows}
""")


def compare(run_dirs: list[Path], out: Path) -> str:
    """A markdown table of every size of every run (``summary.json``), written to ``out``."""
    lines = []
    for d in run_dirs:
        s = json.loads((d / "summary.json").read_text())
        r = s["run"]
        for name, m in s["sizes"].items():
            tag = f"{d.name}: {name} ({r['minutes']:.1f} min, {r['steps']} steps)"
            lines.append(_row(tag, m))
    text = "# Supernet vs single-size twins and ablations\n\n" + _HEAD.format(what="run: size") + "\n" + "\n".join(lines) + "\n"
    out.write_text(text)
    print(text)
    return text
