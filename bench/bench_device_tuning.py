"""Device Tuning: bandwidth against WER for the device/server split, next to sending audio with codecs.

Every system recognizes the same recordings with the same frozen built-in model:

- unsplit, sending raw 16-bit PCM (256 kbit/s) or fp16 log-mel (128 kbit/s): the same WER;
- split after ``k`` blocks with each trained compressor (``recipes/train_compressor.py``): the
  device sends range-coded symbols; the bit rate is measured on the wire bytes (payload, and total
  with the 40-byte header and the speaker id);
- codec2 (700C-3200 bit/s) and Opus (6-24 kbit/s): encoded on the device, decoded on the server and
  recognized by the full model.

Sets: the pretraining recipe's held-out voices reading held-out phrases (never trained on by the
model or the compressors), the simulated sample speakers, and the real voice in
``sample_data/real``. Also the device part's cost per split point: real-time factor (each
utterance alone, as a device would) and parameter memory.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench._common import bench_main, machine

REPO = Path(__file__).resolve().parents[1]
OPUS_KBPS = [6, 12, 24]
SPLITS = [2, 4, 6]


def _sets(quick: bool) -> dict[str, list[tuple[np.ndarray, str]]]:
    from workbench.corpus import SpeakerCorpus
    from workbench.text import normalize_text

    per = 4 if quick else 20
    sets: dict[str, list] = {}
    if not quick:
        sys.path.insert(0, str(REPO / "recipes"))
        from pretrain.data import build_data
        from train_compressor import default_out

        args = argparse.Namespace(n_train=1500, variants=2, n_eval=150, train_voices=800, heldout_voices=24,
                                  heldout_texts=0.15, workers=2, seed=0)
        data = build_data(args, default_out().parent / "pretrain")
        sets["held-out voices"] = [(w, t) for w, t in data["eval_heldout_voices"]][:100]
    sim, real = [], []
    for folder in sorted((REPO / "sample_data").glob("sim-*")) + [REPO / "sample_data" / "real" / "real-allison"]:
        corpus = SpeakerCorpus.open(folder)
        utts = corpus.utterances()[:per]
        (real if "real" in folder.parts else sim).extend(
            (corpus.load_audio(u), normalize_text(u.transcript)) for u in utts)
    sets["sample speakers"] = sim
    sets["real voice"] = real
    return sets


def _score(refs: list[str], hyps: list[str]) -> dict[str, float]:
    from workbench.evaluate import cer, wer

    return {"wer": wer(refs, hyps), "cer": cer(refs, hyps)}


def _compressors(quick: bool, backend) -> dict[str, Any]:
    from workbench.device_tuning import Compressor

    if quick:
        return {"untrained 8x3s2 (plumbing only)": (Compressor(backend.hidden_size, 8, 3, 2), 4, {})}
    from train_compressor import default_out  # recipes/ is on sys.path in the full run

    return trained_compressors(backend, default_out(), "tiny")


def compressor_files(folder: Path, prefix: str) -> list[Path]:
    """The compressors a recipe wrote to ``folder`` for base ``prefix`` (``<prefix>-k*-*.safetensors``),
    without the files beside them: run checkpoints (``.ckpt.``) and a joint run's heads (``.heads.``)."""
    return [path for path in sorted(folder.glob(f"{prefix}-k*-*.safetensors"))
            if not path.name.endswith((".ckpt.safetensors", ".heads.safetensors"))]


def trained_compressors(backend, folder: Path, prefix: str) -> dict[str, Any]:
    """``{name: (compressor, split layer, card)}`` of the compressors a recipe wrote to ``folder`` for
    ``backend`` (:func:`compressor_files`; other base models skipped)."""
    from workbench.device_tuning.compressor import load_compressor

    out = {}
    for path in compressor_files(folder, prefix):
        comp, meta = load_compressor(path)
        if meta["base_fingerprint"] != backend.fingerprint():
            print(f"   skip {path.name}: made for another base model")
            continue
        out[path.stem] = (comp, meta["split_layer"], meta["card"])
    return out


def run(device: str, quick: bool) -> dict[str, Any]:
    if not quick:
        sys.path.insert(0, str(REPO / "recipes"))
    from bench._codecs import CODEC2_MODES, codec2_round_trip, opus_round_trip
    from workbench.constants import FRAMES_PER_SECOND, SAMPLE_RATE
    from workbench.device_tuning import SplitModel
    from workbench.models import load_base_model

    backend = load_base_model("tiny", device=device).freeze()
    sets = _sets(quick)
    comps = _compressors(quick, backend)
    rows: dict[str, dict[str, Any]] = {}

    def add(system: str, set_name: str, refs, hyps, bits: float, seconds: float, **extra) -> None:
        rows.setdefault(system, {})[set_name] = {**_score(refs, hyps), "bits_per_s": bits / seconds, **extra}

    for set_name, items in sets.items():
        wavs = [w for w, _ in items]
        refs = [t for _, t in items]
        seconds = sum(len(w) for w in wavs) / SAMPLE_RATE
        print(f"   {set_name}: {len(items)} recordings, {seconds:.0f} s", flush=True)
        base = backend.transcribe(wavs, batch_size=8)
        add("raw PCM 16-bit", set_name, refs, base, 16 * SAMPLE_RATE * seconds, seconds)
        add("log-mel fp16", set_name, refs, base, 80 * FRAMES_PER_SECOND * 16 * seconds, seconds)  # 80 mels x 16 bits
        for name, (comp, k, card) in comps.items():
            split = SplitModel(backend, k, comp)
            msgs = split.encode(wavs)
            hyps = split.transcribe_hidden(split.restore(msgs))
            payload = sum(len(m.payload) for m in msgs) * 8
            total = sum(len(m.to_bytes()) for m in msgs) * 8
            add(f"split k={k} {name}", set_name, refs, hyps, total, seconds, payload_bits_per_s=payload / seconds,
                nominal_bits_per_s=comp.config.nominal_bits_per_second(25.0), card=card)
        for mode in CODEC2_MODES[: 2 if quick else None]:
            out = [codec2_round_trip(w, mode) for w in wavs]
            add(f"codec2 {mode}", set_name, refs, backend.transcribe([o for o, _ in out], batch_size=8),
                sum(b for _, b in out), seconds)
        for kbps in OPUS_KBPS[: 1 if quick else None]:
            out = [opus_round_trip(w, kbps) for w in wavs]
            add(f"opus {kbps} kbit/s", set_name, refs, backend.transcribe([o for o, _ in out], batch_size=8),
                sum(b for _, b in out), seconds)

    # device part's cost per split point: each utterance alone, as on a device
    probe = [w for w, _ in next(iter(sets.values()))][: 4 if quick else 30]
    audio_s = sum(len(w) for w in probe) / SAMPLE_RATE
    cost = {}
    m = backend.model
    front = sum(p.numel() for mod in (m.frontend, m.subsample) for p in mod.parameters())
    for k in SPLITS:
        split = SplitModel(backend, k)
        split.device_hidden(probe[:2])
        times = []
        for _ in range(1 if quick else 3):
            t0 = time.perf_counter()
            split.device_hidden(probe)
            times.append(time.perf_counter() - t0)
        params = front + sum(p.numel() for b in m.blocks[:k] for p in b.parameters())
        cost[str(k)] = {"rtf": float(np.median(times)) / audio_s, "params": params, "fp32_mb": params * 4 / 1e6,
                        "fp16_mb": params * 2 / 1e6}
    return {"machine": machine(device), "rows": rows, "device_cost": cost,
            "sets": {k: len(v) for k, v in sets.items()}, "quick": quick}


def main(argv: list[str] | None = None) -> dict:
    return bench_main(__doc__, run, "device_tuning", argv)


if __name__ == "__main__":
    main()
