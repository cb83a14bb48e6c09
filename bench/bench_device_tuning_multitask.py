"""Device Tuning, issue 28: the multi-task table (joint vs ASR-only compressor) and the Whisper split's privacy table.

**Multi-task table** (default). For the built-in split and the Whisper split, every compressor
found in ``~/.cache/workbench/compressors/`` (``recipes/train_compressor.py``,
``recipes/train_whisper_compressor.py --tasks asr|joint``; a ``-joint`` file is the jointly
trained one, paired with the ASR-only file of the same split and operating point), on held-out
simulated speakers (:func:`workbench.device_tuning.simulated.simulated_speakers`, the speakers
the joint recipe never trains on):

- bit rate: the wire bytes the device sends (headers included) per second of audio;
- ASR: WER of the server side on the wire messages (encode, bytes, restore, decode);
- speaker embedding: EER and nearest-speaker accuracy of a speaker head trained on the restored
  states (the same steps for every compressor) and, for a joint compressor, of its own head;
- atypicality profile: accuracy and severity MAE of the profile head (research output on
  simulated speakers, never a clinical score).

**Privacy table** (``--privacy``), the built-in split and the Whisper split: the strongest speaker-ID probe
(:func:`workbench.device_tuning.privacy.strongest_probes`: every probe of ``PROBE_FAMILY``, each
also run on d-vectors, the calibration) on the wire symbols, the restored states, raw log-mel and
Opus 6 kbit/s audio, scored on held-out utterances of the sample speakers, with chance; and an
inversion attack: a small decoder trained to predict log-mel from the restored states (and from
the wire symbols), Griffin-Lim to audio, recognized by the split's unsplit model (WER), next to the
original audio, the true log-mel through Griffin-Lim and Opus 6 kbit/s.

``--quick`` checks the plumbing (a few recordings, few steps, the ``--quick`` compressors or an
untrained one): its numbers mean nothing. The full runs are the lead's (quiet CPU)::

    OMP_NUM_THREADS=2 python -m bench.bench_device_tuning_multitask
    OMP_NUM_THREADS=2 python -m bench.bench_device_tuning_multitask --privacy
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from bench._common import bench_main, machine
from workbench.constants import cache_dir

REPO = Path(__file__).resolve().parents[1]
FULL = {"per_class": 12, "utts": 7, "heldout_per_class": 3, "head_steps": 600, "batch": 32, "probe_steps": 400,
        "per_speaker": 14, "test_per_speaker": 3, "inverse_steps": 600, "inverse_hidden": 192,
        "inverse_eval": 24, "griffin_lim_iters": 32}
QUICK = {"per_class": 2, "utts": 2, "heldout_per_class": 1, "head_steps": 6, "batch": 8, "probe_steps": 10,
         "per_speaker": 4, "test_per_speaker": 1, "inverse_steps": 4, "inverse_hidden": 32, "inverse_eval": 3,
         "griffin_lim_iters": 4}
BASES = {"built-in": "tiny", "Whisper": "whisper-tiny.en"}


def _compressors(quick: bool, backend, prefix: str, model: str) -> tuple[dict[str, tuple], str]:
    """``name -> (compressor, split layer, heads file or None)`` for ``backend`` (trained ones in the
    cache, else the shipped one, else an untrained one), and a note."""
    from bench.bench_device_tuning import compressor_files
    from workbench.device_tuning import Compressor
    from workbench.device_tuning.compressor import SHIPPED_DIR, load_compressor

    folder = cache_dir() / "compressors" / ("quick" if quick else "")
    found = {}
    for path in compressor_files(folder, prefix):
        comp, meta = load_compressor(path)
        if meta["base_fingerprint"] != backend.fingerprint():
            continue
        heads = path.with_suffix(".heads.safetensors")
        found[path.stem] = (comp, meta["split_layer"], heads if heads.exists() else None)
    if found:
        return found, f"{len(found)} compressor(s) from {folder}"
    shipped = sorted(SHIPPED_DIR.glob(f"{model}-k*.safetensors"))
    if shipped and not quick:
        comp, meta = load_compressor(shipped[0])
        return {shipped[0].stem: (comp, meta["split_layer"], None)}, f"the shipped compressor {shipped[0].name}"
    k = 2 if backend.is_seq2seq else 4
    from workbench.device_tuning import split_for

    comp = Compressor(split_for(backend, k).width, 8, 3, 2).eval()
    return {f"UNTRAINED-k{k}-8x3s2": (comp, k, None)}, f"no compressor for {prefix} in {folder}: an UNTRAINED one"


def _joint_heads(path: Path, width: int, hidden: int):
    from safetensors.torch import load_file

    from workbench.device_tuning.heads import AtypicalityHead, SpeakerHead

    t = load_file(str(path))
    spk, aty = SpeakerHead(width, hidden=hidden), AtypicalityHead(width, hidden=hidden)
    spk.load_state_dict({k[8:]: v for k, v in t.items() if k.startswith("speaker.")})
    aty.load_state_dict({k[8:]: v for k, v in t.items() if k.startswith("profile.")})
    return spk.eval(), aty.eval()


def run_tasks(device: str, quick: bool) -> dict[str, Any]:
    import torch

    from bench.bench_device_tuning_tasks import _heads
    from workbench.device_tuning import split_for
    from workbench.device_tuning.heads import (PROFILE_CLASSES, RESEARCH_LABEL, atypicality_metrics, head_outputs,
                                               speaker_metrics)
    from workbench.device_tuning.privacy import split_representations
    from workbench.device_tuning.simulated import heldout_speakers, simulated_speakers
    from workbench.evaluate import wer
    from workbench.models import load_base_model

    cfg = QUICK if quick else FULL
    t0 = time.perf_counter()
    items, info = simulated_speakers(cfg["per_class"], cfg["utts"], log=lambda m: print(m, flush=True))
    held = heldout_speakers(items, cfg["heldout_per_class"])  # the joint recipe's held-out speakers (same rule)
    tr = [it for it in items if it["speaker"] not in held]
    te = [it for it in items if it["speaker"] in held]
    te_wavs, refs = [it["wav"] for it in te], [it["text"] for it in te]
    seconds = sum(len(w) for w in te_wavs) / 16000
    rows: dict[str, dict] = {}
    notes = {}
    for base_name, model in BASES.items():
        backend = load_base_model(model, device=device).freeze()
        rows[f"{base_name}: unsplit"] = {"asr_wer": wer(refs, backend.transcribe(te_wavs, batch_size=8))}
        comps, notes[base_name] = _compressors(quick, backend, backend.name, model)
        print(f"   {base_name}: {notes[base_name]}", flush=True)
        for name, (comp, k, heads_file) in comps.items():
            split = split_for(backend, k, comp)
            msgs = split.encode(te_wavs)
            row = {"split_layer": k, "joint": "-joint" in name, "bits_per_s": 8 * sum(len(m.to_bytes()) for m in msgs)
                   / seconds, "asr_wer": wer(refs, split.transcribe(te_wavs))}
            feats_tr = split_representations(split, [it["wav"] for it in tr])["restored states"]
            feats_te = split_representations(split, te_wavs)["restored states"]
            row.update(_heads(feats_tr, feats_te, tr, te, cfg, {}))
            if heads_file is not None:
                spk, aty = _joint_heads(heads_file, split.width, _card_hidden(heads_file))
                emb = head_outputs(spk, feats_te).numpy()
                labels = (torch.tensor([PROFILE_CLASSES.index(it["profile"]) for it in te]),
                          torch.tensor([float(it["severity"]) for it in te]))
                row["joint_heads"] = {"speaker": speaker_metrics(emb, [it["speaker"] for it in te]),
                                      "atypicality": atypicality_metrics(head_outputs(aty, feats_te), *labels)}
            rows[f"{base_name}: {name}"] = row
            print(f"   {base_name}: {name}: {_line(row)}", flush=True)
    table = ["split: compressor   kbit/s | ASR WER | speaker EER, acc | profile* acc, severity MAE"]
    table += [f"{name:<48} {_line(r)}" for name, r in rows.items()]
    table.append("* research output on simulated speakers, never a clinical score")
    for line in table:
        print("   " + line)
    return {"machine": machine(device), "quick": quick, "config": cfg, "data": {**info, "heldout": sorted(held),
            "test_utterances": len(te), "test_audio_s": seconds}, "compressors": notes, "rows": rows,
            "table": table, "atypicality_label": RESEARCH_LABEL, "run_s": time.perf_counter() - t0}


def _card_hidden(heads_file: Path) -> int:
    import json

    from safetensors import safe_open

    with safe_open(str(heads_file), framework="pt") as f:
        card = json.loads((f.metadata() or {}).get("card", "{}"))
    return int(card.get("head_hidden", 128))


def _line(r: dict) -> str:
    if "speaker" not in r:
        return f"{'':>6} | {r['asr_wer']:.3f} |"
    s, a = r["speaker"], r["atypicality"]["held-out voices"]
    out = (f"{r['bits_per_s'] / 1000:6.2f} | {r['asr_wer']:.3f} | {s['eer']:.3f}, {s['nearest_speaker_accuracy']:.3f}"
           f" | {a['profile_accuracy']:.3f}, {a['severity_mae']:.3f}")
    if "joint_heads" in r:
        js, ja = r["joint_heads"]["speaker"], r["joint_heads"]["atypicality"]
        out += (f" (own heads: {js['eer']:.3f}, {js['nearest_speaker_accuracy']:.3f} | "
                f"{ja['profile_accuracy']:.3f}, {ja['severity_mae']:.3f})")
    return out


def run_privacy(device: str, quick: bool) -> dict[str, Any]:
    """The privacy table of each split (built-in and Whisper) on the sample speakers."""
    import torch

    from bench._codecs import opus_round_trip
    from bench.bench_device_tuning_tasks import _sample_items
    from workbench.device_tuning.privacy import dvector_frames, log_mels

    cfg = QUICK if quick else FULL
    t0 = time.perf_counter()
    items = _sample_items(cfg["per_speaker"])
    wavs = [it["wav"] for it in items]
    opus = [opus_round_trip(w, 6)[0] for w in wavs]
    shared = {"Opus 6 kbit/s audio (raw log-mel)": log_mels(opus)[1], "d-vectors (calibration)": dvector_frames(wavs)}
    splits = {base: _privacy(device, cfg, model, items, opus, shared) for base, model in BASES.items()}
    table = [line for base, r in splits.items() for line in [f"== {base} split =="] + r.pop("table")]
    for line in table:
        print("   " + line)
    return {"machine": machine(device), "quick": quick, "config": cfg, "splits": splits,
            "speakers": sorted({it["speaker"] for it in items}), "utterances": len(items), "table": table,
            "run_s": time.perf_counter() - t0, "torch_threads": torch.get_num_threads(),
            "notes": ["probe accuracy on held-out utterances of the speakers it was trained on; every probe of "
                      "PROBE_FAMILY runs on every representation (d-vectors included: the calibration) and the "
                      "strongest is reported", "split representations cover the audio's own frames (a Whisper "
                      "window's silence left out)", "reconstructions are recognized by the split's own unsplit model"]}


def _privacy_compressor(comps: dict[str, tuple], model: str) -> str:
    """The compressor whose stream the privacy table measures: the one the workbench ships for
    ``model`` (what a user's device sends) where it is among ``comps``, else the first ASR-only one."""
    from workbench.device_tuning.compressor import default_compressor
    from workbench.errors import WorkbenchError

    try:
        shipped = default_compressor(model).stem
    except WorkbenchError:  # none shipped for this model
        shipped = None
    plain = [n for n in comps if "-joint" not in n] or list(comps)
    return shipped if shipped in plain else plain[0]


def _privacy(device: str, cfg: dict, model: str, items: list[dict], opus: list, shared: dict) -> dict[str, Any]:
    """One split's probes and inversion attack (``opus``: the decoded Opus 6 kbit/s audio)."""
    from bench.bench_device_tuning_tasks import _inverse
    from workbench.device_tuning import split_for
    from workbench.device_tuning.heads import HeadTraining
    from workbench.device_tuning.privacy import (MelStats, log_mels, mel_to_audio, split_representations,
                                                 split_utterances, strongest_probes)
    from workbench.evaluate import cer, wer
    from workbench.models import load_base_model

    backend = load_base_model(model, device=device).freeze()
    comps, note = _compressors(cfg is QUICK, backend, backend.name, model)
    name = _privacy_compressor(comps, model)
    comp, k, _h = comps[name]
    split = split_for(backend, k, comp)
    wavs, speakers, refs = [it["wav"] for it in items], [it["speaker"] for it in items], [it["text"] for it in items]
    reps = {**split_representations(split, wavs), **shared}
    probes = strongest_probes(reps, speakers, test_per_speaker=cfg["test_per_speaker"],
                              settings=HeadTraining(max_steps=cfg["probe_steps"], batch_size=cfg["batch"]))
    for rep_name, p in probes.items():
        print(f"   probe {rep_name}: {p['best']['accuracy']:.0%} ({p['probe']}; chance {p['best']['chance']:.0%})",
              flush=True)
    tr_i, te_i = split_utterances(speakers, test_per_speaker=cfg["test_per_speaker"])
    inv_te = te_i[: cfg["inverse_eval"]]

    def asr(out_wavs: list[np.ndarray], idx: list[int] = inv_te) -> dict:
        hyps = backend.transcribe(out_wavs, batch_size=8)
        return {"wer": wer([refs[i] for i in idx], hyps), "cer": cer([refs[i] for i in idx], hyps), "utterances": len(idx)}

    norm, raw = log_mels(wavs)
    stats = MelStats.of([raw[i] for i in tr_i])
    mels_tr, mels_te = [norm[i] for i in tr_i], [norm[i] for i in inv_te]
    n_iter = cfg["griffin_lim_iters"]
    # mel frames per state frame: Whisper's encoder runs at 50 Hz (100 Hz log-mel at k = 0), the built-in at 25 Hz
    per_state = (1 if k == 0 else 2) if backend.is_seq2seq else 4
    recon = {"original audio": asr([wavs[i] for i in inv_te]),
             "Opus 6 kbit/s audio": asr([opus[i] for i in inv_te]),
             "true log-mel -> Griffin-Lim": asr([mel_to_audio(raw[i], n_iter=n_iter) for i in inv_te])}
    for rep_name, up in (("restored states", per_state), ("wire symbols", per_state * comp.config.stride)):
        feats = reps[rep_name]
        recon[f"inverse model from the {rep_name} -> Griffin-Lim"] = _inverse(
            [feats[i] for i in tr_i], mels_tr, [feats[i] for i in inv_te], mels_te, up, stats, cfg, asr)
    table = [f"compressor {name} (k={k}); strongest speaker-ID probe on held-out utterances (chance) [probe]"]
    table += [f"  {n:<44} {p['best']['accuracy']:.3f} ({p['best']['chance']:.3f}) [{p['probe']}]"
              for n, p in probes.items()]
    table.append(f"inversion: WER of the reconstruction, recognized by unsplit {backend.name}")
    table += [f"  {n:<60} {r['wer']:.3f}" for n, r in recon.items()]
    return {"model": backend.name, "compressor": {"name": name, "note": note, "split_layer": k},
            "probes": probes, "reconstruction": recon, "table": table}


def main(argv: list[str] | None = None) -> dict:
    return bench_main(__doc__, run_tasks, "device_tuning_multitask", argv,
                      modes={"--privacy": (run_privacy, "device_tuning_privacy")})


if __name__ == "__main__":
    main()
