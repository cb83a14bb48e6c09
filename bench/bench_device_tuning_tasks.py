"""Device Tuning tasks and privacy: server-side heads on the compressed stream vs the uncompressed one, and what the stream gives away.

Everything reads the representation at the split (after encoder block ``k`` of the frozen
built-in model). For each compressor, the same heads are trained on it and on the uncompressed
hidden states, with the same steps, architecture and data:

- speech recognition: the frozen rest of the model (WER on held-out voices);
- speaker embedding (:class:`~workbench.device_tuning.heads.SpeakerHead`, distilled from the
  d-vectors of the raw audio): EER and nearest-speaker accuracy on held-out speakers;
- atypicality (:class:`~workbench.device_tuning.heads.AtypicalityHead`): profile accuracy and
  severity MAE on held-out voices. This is a research output on simulated speakers, never a
  clinical score.

Privacy, measured (:mod:`workbench.device_tuning.privacy`):

- a speaker-identification probe on the wire symbols, on the restored and the uncompressed
  hidden states, and on raw log-mel. Accuracy is on held-out utterances of the same speakers;
- an inverse model from the stream to log-mel, then Griffin-Lim, recognized by the ASR model
  (WER). The true log-mel through Griffin-Lim and the original audio are given for reference.

Data: speakers simulated with ``workbench.simulate`` (random espeak voices x the profiles of
``PROFILE_TEMPLATES`` at random severities), cached in
``~/.cache/workbench/device_tuning_tasks/``. In the full run the eight sample speakers are an extra
atypicality set. ``--quick`` uses a few sample-speaker recordings, an untrained compressor and a
few steps: it checks the plumbing, and its numbers mean nothing.

Compressors: ``~/.cache/workbench/compressors/tiny-k*-*.safetensors`` from
``recipes/train_compressor.py``. When there are none, the full run uses an untrained one and
says so (``compressors_note``).

``--probes`` runs only the speaker-ID probe of notebook 08, with its settings, on the shipped
compressor: the wire symbols, the restored states, raw log-mel and d-vectors (the calibration: a
representation made to carry identity, so a reader sees that the probe is strong enough), with
chance. Under a minute on 1 thread; writes ``docs/bench/device_tuning_probes_cpu.json`` (both
of the notebook's settings; with ``--quick`` only its fast ones, to ``..._quick.json``), which
``bench/summarize.py`` puts in docs/results.md.

Full run: ``OMP_NUM_THREADS=2 python -m bench.bench_device_tuning_tasks`` writes
``docs/bench/device_tuning_tasks_cpu.json``. Estimated from per-step timings on this 2-core
machine under load (not a timed full run): about 25 minutes with four compressors at one split.
That is about 6 minutes of data and reference rows (the first synthesis of 588 utterances and
their d-vectors is cached), about 4 minutes for the uncompressed rows of each split point, and
about 3.5 minutes per compressor. The inverse models and Griffin-Lim take most of it.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench._common import bench_main, machine
from workbench.constants import cache_dir

REPO = Path(__file__).resolve().parents[1]
FULL = {"per_class": 12, "utts": 7, "heldout_per_class": 3, "probe_test": 2, "head_steps": 600, "probe_steps": 400,
        "inverse_steps": 600, "inverse_hidden": 192, "inverse_eval": 30, "griffin_lim_iters": 32, "batch": 32,
        "sample_per_speaker": 20}
# notebook 08, part 4: utterances per sample speaker and probe steps (WORKBENCH_FAST=1 -> "fast")
NOTEBOOK_PROBES = {"fast": {"per_speaker": 6, "probe_steps": 40, "test_per_speaker": 2},
                   "full": {"per_speaker": 14, "probe_steps": 300, "test_per_speaker": 2}}
QUICK = {"per_sample_speaker": 4, "heldout_speakers": 3, "probe_test": 1, "head_steps": 12, "probe_steps": 20,
         "inverse_steps": 8, "inverse_hidden": 32, "inverse_eval": 3, "griffin_lim_iters": 4, "batch": 8}


# -- data -------------------------------------------------------------------------------------
def _sample_items(per: int | None) -> list[dict]:
    """The simulated sample speakers' recordings with their profile class and severity."""
    from workbench.corpus import SpeakerCorpus
    from workbench.device_tuning.heads import profile_label
    from workbench.embeddings import speaker_profile
    from workbench.text import normalize_text

    items = []
    for folder in sorted((REPO / "sample_data").glob("sim-*")):
        corpus = SpeakerCorpus.open(folder)
        cls, sev = profile_label(speaker_profile(corpus))
        for u in corpus.utterances()[:per]:
            items.append({"wav": corpus.load_audio(u), "text": normalize_text(u.transcript), "speaker": folder.name,
                          "profile": cls, "severity": sev})
    return items


def _simulated_items(per_class: int, utts: int, seed: int = 0) -> tuple[list[dict], dict]:
    """The library's simulated speakers (:func:`workbench.device_tuning.simulated.simulated_speakers`)."""
    from workbench.device_tuning.simulated import simulated_speakers

    return simulated_speakers(per_class, utts, seed, log=lambda m: print(m, flush=True))


def _heldout_speakers(items: list[dict], per_class: int) -> set[str]:
    from workbench.device_tuning.simulated import heldout_speakers

    return heldout_speakers(items, per_class)


def _compressors(quick: bool, backend) -> tuple[dict, str]:
    from workbench.device_tuning import Compressor
    from workbench.device_tuning.compressor import load_compressor

    found = {}
    if not quick:
        for path in sorted((cache_dir() / "compressors").glob("tiny-k*-*.safetensors")):
            comp, meta = load_compressor(path)
            if meta["base_fingerprint"] != backend.fingerprint():
                print(f"   skip {path.name}: made for another base model", flush=True)
                continue
            found[path.stem] = (comp, meta["split_layer"], meta["card"])
    if found:
        return found, f"{len(found)} trained compressor(s) from recipes/train_compressor.py"
    comp = Compressor(backend.hidden_size, 8, 3, 2).eval()
    note = ("UNTRAINED compressor 8x3s2 at k=4 (random weights): " +
            ("--quick checks the plumbing only" if quick else
             "no trained compressor was found in ~/.cache/workbench/compressors; run recipes/train_compressor.py"))
    return {"untrained-k4-8x3s2": (comp, 4, {})}, note


# -- measurements -----------------------------------------------------------------------------
def _heads(train: list, test: list, tr_items: list[dict], te_items: list[dict], cfg: dict,
           extra: dict[str, tuple[list, list[dict]]]) -> dict[str, Any]:
    """Speaker and atypicality heads trained on ``train`` frames, scored on ``test`` (and on ``extra`` sets)."""
    import torch

    from workbench.device_tuning.heads import (
        PROFILE_CLASSES,
        AtypicalityHead,
        HeadTraining,
        SpeakerHead,
        atypicality_loss,
        atypicality_metrics,
        head_outputs,
        speaker_loss,
        speaker_metrics,
        train_head,
    )

    d = train[0].shape[1]
    settings = HeadTraining(max_steps=cfg["head_steps"], batch_size=cfg["batch"])
    spk = SpeakerHead(d)
    hist_s = train_head(spk, train, torch.tensor(np.stack([it["dvector"] for it in tr_items])), speaker_loss, settings)
    emb = head_outputs(spk, test).numpy()
    target = np.stack([it["dvector"] for it in te_items])
    speaker = {**speaker_metrics(emb, [it["speaker"] for it in te_items]),
               "cosine_to_dvector": float(np.mean(np.sum(emb * target, 1) / np.linalg.norm(target, axis=1))),
               "steps": len(hist_s), "first_loss": hist_s[0]["loss"], "final_loss": hist_s[-1]["loss"]}

    def labels(items):
        return (torch.tensor([PROFILE_CLASSES.index(it["profile"]) for it in items]),
                torch.tensor([float(it["severity"]) for it in items]))

    aty = AtypicalityHead(d)
    hist_a = train_head(aty, train, labels(tr_items), atypicality_loss, settings)
    atyp = {"held-out voices": atypicality_metrics(head_outputs(aty, test), *labels(te_items))}
    for name, (frames, items) in extra.items():
        atyp[name] = atypicality_metrics(head_outputs(aty, frames), *labels(items))
    atyp["steps"] = len(hist_a)
    return {"speaker": speaker, "atypicality": atyp}


def _probe(feats: list, speakers: list[str], cfg: dict) -> dict:
    from workbench.device_tuning.heads import HeadTraining
    from workbench.device_tuning.privacy import speaker_probe, split_utterances

    tr, te = split_utterances(speakers, test_per_speaker=cfg["probe_test"])
    res = speaker_probe(feats, speakers, tr, te, HeadTraining(max_steps=cfg["probe_steps"], batch_size=cfg["batch"]))
    return res.to_dict()


def _inverse(inputs_tr: list, mels_tr: list, inputs_te: list, mels_te: list, upsample: int, stats, cfg: dict,
             asr) -> dict:
    import torch

    from workbench.device_tuning.heads import HeadTraining
    from workbench.device_tuning.privacy import (
        InverseModel,
        mel_to_audio,
        reconstruct,
        train_inverse,
    )

    model = InverseModel(inputs_tr[0].shape[1], upsample, hidden=cfg["inverse_hidden"])
    hist = train_inverse(model, inputs_tr, mels_tr, HeadTraining(max_steps=cfg["inverse_steps"], batch_size=16))
    pred = reconstruct(model, inputs_te, [m.shape[0] for m in mels_te])
    l1 = float(torch.stack([(p - m).abs().mean() for p, m in zip(pred, mels_te, strict=True)]).mean())
    wavs = [mel_to_audio(p, stats, n_iter=cfg["griffin_lim_iters"]) for p in pred]
    return {**asr(wavs), "mel_l1": l1, "steps": len(hist), "final_loss": hist[-1]["loss"]}


def run(device: str, quick: bool) -> dict[str, Any]:
    import torch

    from workbench.constants import SAMPLE_RATE
    from workbench.device_tuning import SplitModel
    from workbench.device_tuning.heads import RESEARCH_LABEL, restored
    from workbench.device_tuning.privacy import (
        MelStats,
        log_mels,
        mel_to_audio,
        wire_levels,
    )
    from workbench.evaluate import cer, wer
    from workbench.models import load_base_model

    cfg = QUICK if quick else FULL
    t_start = time.perf_counter()
    backend = load_base_model("tiny", device=device).freeze()
    if quick:
        items = _sample_items(cfg["per_sample_speaker"])
        names = sorted({it["speaker"] for it in items})
        held = set(names[:: max(1, len(names) // cfg["heldout_speakers"])][: cfg["heldout_speakers"]])
        from workbench.embeddings import embed_utterances

        for it, v in zip(items, embed_utterances([it["wav"] for it in items], "dvector", threads=1), strict=True):
            it["dvector"] = v
        data_info = {"source": "sample_data/sim-* (quick)", "utterances": len(items), "speakers": len(names)}
        extra_items: list[dict] = []
    else:
        items, data_info = _simulated_items(cfg["per_class"], cfg["utts"])
        held = _heldout_speakers(items, cfg["heldout_per_class"])
        data_info["source"] = "workbench.simulate: random espeak voices x PROFILE_TEMPLATES"
        extra_items = _sample_items(cfg["sample_per_speaker"])
        from workbench.embeddings import embed_utterances

        for it, v in zip(extra_items, embed_utterances([it["wav"] for it in extra_items], "dvector", threads=1),
                         strict=True):
            it["dvector"] = v
    tr_i = [i for i, it in enumerate(items) if it["speaker"] not in held]
    te_i = [i for i, it in enumerate(items) if it["speaker"] in held]
    tr_items, te_items = [items[i] for i in tr_i], [items[i] for i in te_i]
    data_info.update({"head_train_utterances": len(tr_i), "heldout_utterances": len(te_i),
                      "heldout_speakers": sorted(held)})
    print(f"   {len(items)} utterances, {len(held)} held-out speakers ({len(te_i)} utterances)", flush=True)
    comps, note = _compressors(quick, backend)
    print(f"   compressors: {note}", flush=True)

    wavs = [it["wav"] for it in items]
    speakers = [it["speaker"] for it in items]
    refs = [it["text"] for it in items]
    inv_te = te_i[: cfg["inverse_eval"]]

    def asr(out_wavs: list[np.ndarray], idx: list[int] = inv_te) -> dict:
        hyps = backend.transcribe(out_wavs, batch_size=8)
        return {"wer": wer([refs[i] for i in idx], hyps), "cer": cer([refs[i] for i in idx], hyps),
                "utterances": len(idx)}

    norm, raw = log_mels(wavs)
    stats = MelStats.of([raw[i] for i in tr_i])
    mels_tr, mels_te = [norm[i] for i in tr_i], [norm[i] for i in inv_te]
    n_iter = cfg["griffin_lim_iters"]
    reconstruction = {
        "original audio": asr([wavs[i] for i in inv_te]),
        "true log-mel -> Griffin-Lim": asr([mel_to_audio(raw[i], n_iter=n_iter) for i in inv_te]),
        "true normalized log-mel + average level -> Griffin-Lim": asr(
            [mel_to_audio(norm[i], stats, n_iter=n_iter) for i in inv_te]),
    }
    probes = {"raw log-mel": _probe(raw, speakers, cfg),
              "d-vectors of the raw audio (calibration)": _probe(
                  [torch.as_tensor(it["dvector"], dtype=torch.float32)[None] for it in items], speakers, cfg)}
    extra_wavs = [it["wav"] for it in extra_items]
    tasks: dict[str, dict] = {}
    asr_rows: dict[str, dict] = {}
    dvec_ref = speaker_metrics_reference(te_items)
    hidden_by_k: dict[int, tuple[list, list]] = {}
    for name, (comp, k, card) in comps.items():
        t0 = time.perf_counter()
        if k not in hidden_by_k:
            split = SplitModel(backend, k)
            hidden_by_k[k] = ([it.features.cpu() for it in split.device_hidden(wavs)],
                              [it.features.cpu() for it in split.device_hidden(extra_wavs)] if extra_wavs else [])
            hid, ext = hidden_by_k[k]
            unc = f"uncompressed k={k}"
            print(f"   {unc}: heads, probe, inverse", flush=True)
            tasks[unc] = _heads([hid[i] for i in tr_i], [hid[i] for i in te_i], tr_items, te_items, cfg,
                                {"sample speakers": (ext, extra_items)} if ext else {})
            asr_rows[unc] = _asr_hidden(SplitModel(backend, k), [hid[i] for i in te_i], te_items)
            probes[unc] = _probe(hid, speakers, cfg)
            reconstruction[unc] = _inverse([hid[i] for i in tr_i], mels_tr, [hid[i] for i in inv_te], mels_te, 4,
                                           stats, cfg, asr)
        hid, ext = hidden_by_k[k]
        rest = restored(comp, hid)
        wire = wire_levels(comp, hid)
        label = f"compressed k={k} {name}"
        print(f"   {label}: heads, probes, inverse", flush=True)
        tasks[label] = _heads([rest[i] for i in tr_i], [rest[i] for i in te_i], tr_items, te_items, cfg,
                              {"sample speakers": (restored(comp, ext), extra_items)} if ext else {})
        asr_rows[label] = _asr_hidden(SplitModel(backend, k, comp), [rest[i] for i in te_i], te_items)
        probes[f"{label} (wire symbols)"] = _probe(wire, speakers, cfg)
        probes[f"{label} (restored)"] = _probe(rest, speakers, cfg)
        reconstruction[f"{label} (from wire symbols)"] = _inverse(
            [wire[i] for i in tr_i], mels_tr, [wire[i] for i in inv_te], mels_te, 4 * comp.config.stride, stats, cfg,
            asr)
        tasks[label]["card"] = card
        tasks[label]["nominal_bits_per_s"] = comp.config.nominal_bits_per_second(25.0)
        print(f"   {label}: {time.perf_counter() - t0:.0f} s", flush=True)
    for name, row in asr_rows.items():
        tasks[name]["asr"] = row
    table = _table(tasks, probes, reconstruction, dvec_ref)
    for line in table:
        print("   " + line)
    seconds = sum(len(w) for w in wavs) / SAMPLE_RATE
    return {"machine": machine(device), "quick": quick, "config": cfg, "data": {**data_info, "audio_s": seconds},
            "compressors_note": note, "atypicality_label": RESEARCH_LABEL, "tasks": tasks,
            "speaker_reference_dvector": dvec_ref, "privacy": {"speaker_probe": probes, "reconstruction": reconstruction},
            "table": table, "run_s": time.perf_counter() - t_start,
            "notes": [("heads and probes run on the CPU; compared heads have the same steps, architecture "
                       "and data"),
                      "probe accuracy is on held-out utterances of the speakers it was trained on",
                      "reconstruction WER: inverse model -> Griffin-Lim audio -> the same ASR model"]}


def speaker_metrics_reference(te_items: list[dict]) -> dict:
    """The d-vectors of the raw audio themselves on the held-out speakers (what the head imitates)."""
    from workbench.device_tuning.heads import speaker_metrics

    return speaker_metrics(np.stack([it["dvector"] for it in te_items]), [it["speaker"] for it in te_items])


def _asr_hidden(split, hidden: list, items: list[dict]) -> dict:
    from workbench.evaluate import wer

    hyps = split.transcribe_hidden(hidden)
    return {"wer": wer([it["text"] for it in items], hyps), "utterances": len(items)}


def _table(tasks: dict, probes: dict, recon: dict, dvec_ref: dict) -> list[str]:
    """Plain-text rows: each head on each representation, then the privacy figures."""
    head = ("multi-task heads (held-out voices)   ASR WER | speaker EER, nearest-speaker acc | "
            "atypicality* profile acc, severity MAE")
    ref = (f"{'d-vectors of the raw audio':<44}      - | {dvec_ref['eer']:.3f}, "
           f"{dvec_ref['nearest_speaker_accuracy']:.3f} |")
    rows = [head, ref]
    for name, t in tasks.items():
        s, a = t["speaker"], t["atypicality"]["held-out voices"]
        rows.append(f"{name:<44} {t['asr']['wer']:6.3f} | {s['eer']:.3f}, {s['nearest_speaker_accuracy']:.3f} | "
                    f"{a['profile_accuracy']:.3f}, {a['severity_mae']:.3f}")
    rows.append("* atypicality head: research output on simulated speakers, never a clinical score")
    rows.append("privacy: speaker-ID probe accuracy on held-out utterances of known speakers (chance)")
    rows += [f"  {name:<60} {p['accuracy']:.3f} ({p['chance']:.3f})" for name, p in probes.items()]
    rows.append("privacy: WER of audio reconstructed by an inverse model + Griffin-Lim")
    rows += [f"  {name:<60} {r['wer']:.3f}" for name, r in recon.items()]
    return rows


def run_probes(device: str, quick: bool) -> dict[str, Any]:
    """Notebook 08's speaker probe (:func:`workbench.device_tuning.privacy.probe_split`) with its
    settings, on the shipped compressor and the sample speakers (``--probes``)."""
    import torch

    from workbench.corpus import SpeakerCorpus
    from workbench.dataset import examples_from_corpus
    from workbench.device_tuning import SplitModel
    from workbench.device_tuning.compressor import default_compressor, load_compressor
    from workbench.device_tuning.heads import HeadTraining
    from workbench.device_tuning.privacy import probe_split
    from workbench.models import load_base_model

    t0 = time.perf_counter()
    backend = load_base_model("tiny", device=device).freeze()
    path = default_compressor()
    compressor, meta = load_compressor(path)
    split = SplitModel(backend, meta["split_layer"], compressor)
    folders = sorted(p for p in (REPO / "sample_data").glob("sim-*") if (p / "manifest.jsonl").exists())
    runs = {}
    for name, cfg in NOTEBOOK_PROBES.items():
        if quick and name != "fast":
            continue
        utts, who = [], []
        for f in folders:  # as notebook 08 reads them
            exs = examples_from_corpus(SpeakerCorpus.open(f))[: cfg["per_speaker"]]
            utts += [e.wav for e in exs]
            who += [f.name] * len(exs)
        t1 = time.perf_counter()
        res = probe_split(split, utts, who, test_per_speaker=cfg["test_per_speaker"],
                          settings=HeadTraining(max_steps=cfg["probe_steps"]))
        order = list(res)  # the JSON's keys are sorted: this keeps the table's order
        runs[name] = {"settings": cfg, "probes": {k: v.to_dict() for k, v in res.items()},
                      "seconds": time.perf_counter() - t1}
        print(f"   {name} settings ({len(utts)} utterances of {len(folders)} speakers): " + ", ".join(
            f"{k} {v.accuracy:.0%}" for k, v in res.items()) + f" (chance {next(iter(res.values())).chance:.0%})",
            flush=True)
    return {"machine": machine(device), "quick": quick, "torch_threads": torch.get_num_threads(),
            "compressor": {"file": path.name, "split_layer": meta["split_layer"], **dataclasses.asdict(compressor.config)},
            "speakers": [f.name for f in folders], "runs": runs, "representations": order, "run_s": time.perf_counter() - t0,
            "notes": ["probe: mean and std of the frames -> LayerNorm -> MLP (workbench.device_tuning.privacy); "
                      "accuracy on held-out utterances of the speakers it was trained on; chance = the largest "
                      "speaker's share of the test utterances",
                      "d-vectors (pretrained GE2E, workbench.embeddings) are the calibration: they are made to "
                      "carry identity"]}


def main(argv: list[str] | None = None) -> dict:
    return bench_main(__doc__, run, "device_tuning_tasks", argv, modes={"--probes": (run_probes, "device_tuning_probes")})


if __name__ == "__main__":
    main()
