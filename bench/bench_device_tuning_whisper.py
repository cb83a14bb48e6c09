"""Device Tuning on Whisper tiny.en (issue 28): bandwidth against WER, next to sending audio with codecs.

Every system is recognized by the same frozen Whisper tiny.en, each recording in its own encoding
window (as a device sends it: the identity split at k = 0, which equals the unsplit model):

- unsplit, sending raw 16-bit PCM (256 kbit/s) or fp16 log-mel (128 kbit/s): the same transcripts;
- split after ``k`` encoder layers with each trained Whisper compressor
  (``recipes/train_whisper_compressor.py``, found in its output folder): the bit rate is measured
  on the wire bytes, payload and total (the 44-byte version-2 header and the speaker id included);
- codec2 700C, 1200 and 3200 and Opus 6, 12 and 24 kbit/s: encoded on the device, decoded on the
  server and recognized by the whole model;
- a classical transform coder of the same log-mel frames a split-0 message codes
  (``bench/_transform_coder.py``: PCA to 64 components per 40 ms, one uniform quantizer step
  ``delta``, range coding conditioned on the previous frame, the same header), fit on the real
  training prompts (the Asterisk prompts outside the 150-prompt test set), at three steps.

Each split point also records ``wer_unrounded``: its WER through the compressor's bottleneck without
the rounding to symbols, which tells the bottleneck's loss (too few dimensions) from the quantizer's
(too few bits).

Sets: the 150-prompt real set (``bench/bench_real_speech.py``'s, never trained on by the
compressors), the real voice in ``sample_data/real`` and the atypical simulated sample speakers.
The goal (issue 28): a split point at <= 2 kbit/s whose real-speech WER is within 10 % relative of
unsplit Whisper and lower than Opus 6 kbit/s's; ``goal`` says which points reach it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from bench._common import bench_main, machine

REPO = Path(__file__).resolve().parents[1]
OPUS_KBPS = [6, 12, 24]
CODEC2 = ["700C", "1200", "3200"]
REAL_SETS = ("real 150 prompts", "real voice")
CHUNK = 16  # recordings per server call (a batch of each window size)
TRANSFORM_DELTAS = [0.5, 0.7, 1.0]  # the transform coder's quantizer steps (log-mel units x sqrt(4 frames))


def _sets(quick: bool) -> dict[str, list[tuple[np.ndarray, str]]]:
    from bench.bench_real_speech import SUBSET, _subset
    from workbench.corpus import SpeakerCorpus
    from workbench.text import normalize_text

    per = 3 if quick else 20
    sets = {"real 150 prompts": [(u.wav, normalize_text(u.text)) for u in _subset(6 if quick else SUBSET)]}
    sim, real = [], []
    atypical = [f for f in sorted((REPO / "sample_data").glob("sim-*")) if "typical" not in f.name.split("-")]
    for folder in atypical + [REPO / "sample_data" / "real" / "real-allison"]:
        corpus = SpeakerCorpus.open(folder)
        rows = [(corpus.load_audio(u), normalize_text(u.transcript)) for u in corpus.utterances()[:per]]
        (real if "real" in folder.parts else sim).extend(rows)
    sets["real voice"] = real
    sets["atypical sample speakers"] = sim
    return sets


def _score(refs: list[str], hyps: list[str]) -> dict[str, float]:
    from workbench.evaluate import cer, wer

    return {"wer": wer(refs, hyps), "cer": cer(refs, hyps)}


def _compressors(quick: bool, backend, wavs) -> dict[str, Any]:
    from workbench.device_tuning import Compressor
    from workbench.device_tuning import split_for

    if quick:  # plumbing only: an untrained compressor with tables counted on the set itself
        split = split_for(backend, 2)
        comp = Compressor(split.width, 16, 3, 2).eval()
        comp.fit_tables([comp.encode(it.features[None])[0] for it in split.device_hidden(wavs[:4])])
        return {"untrained 16x3s2 (plumbing only)": (comp, 2, {})}
    sys.path.insert(0, str(REPO / "recipes"))
    from train_whisper_compressor import default_out

    from bench.bench_device_tuning import trained_compressors

    return trained_compressors(backend, default_out(), backend.name)


def _transform_coders(quick: bool, unsplit, wavs) -> dict[float, Any]:
    """The transform coder at each step, fit on the real training prompts (quick: on 4 test
    recordings, plumbing only)."""
    from bench._transform_coder import TransformCoder

    if quick:
        train = wavs[:4]
    else:
        sys.path.insert(0, str(REPO / "recipes"))
        from train_whisper_compressor import real_training_waves

        train = [w for w, _ in real_training_waves()]
    windows = [(it.features.numpy(), it.samples) for it in _chunked(unsplit.device_hidden, train)]
    return {delta: TransformCoder.fit(windows, delta=delta) for delta in TRANSFORM_DELTAS[: 1 if quick else None]}


def _unrounded(split, items: list) -> list[str]:
    """Transcripts of the device states ``items`` (``split.device_hidden``'s) through the split's
    bottleneck without its rounding (``Compressor.unrounded``): the WER the bottleneck costs apart
    from the quantizer."""
    import torch

    with torch.no_grad():
        states = [split.round_trip(split.compressor.unrounded, it.features[None], [it.samples])[0] for it in items]
    return split.transcribe_hidden(states, samples=[it.samples for it in items])


def _chunked(fn, items: list) -> list:
    return [y for s in range(0, len(items), CHUNK) for y in fn(items[s:s + CHUNK])]


def run(device: str, quick: bool) -> dict[str, Any]:
    import torch

    from bench._codecs import codec2_round_trip, opus_round_trip
    from workbench.constants import SAMPLE_RATE
    from workbench.device_tuning import split_for
    from workbench.models import load_base_model

    backend = load_base_model("whisper-tiny.en", device=device).freeze()
    unsplit = split_for(backend, 0)  # no compressor: the whole model, each recording in its own window
    sets = _sets(quick)
    comps = _compressors(quick, backend, [w for w, _ in sets["real 150 prompts"]])
    transform_coders = _transform_coders(quick, unsplit, [w for w, _ in sets["real 150 prompts"]])
    rows: dict[str, dict[str, Any]] = {}

    def add(system: str, set_name: str, refs, hyps, bits: float, seconds: float, **extra) -> None:
        rows.setdefault(system, {})[set_name] = {**_score(refs, hyps), "bits_per_s": bits / seconds, **extra}

    for set_name, items in sets.items():
        if not items:
            continue
        wavs, refs = [w for w, _ in items], [t for _, t in items]
        seconds = sum(len(w) for w in wavs) / SAMPLE_RATE
        print(f"   {set_name}: {len(items)} recordings, {seconds:.0f} s", flush=True)
        base = _chunked(unsplit.transcribe, wavs)
        add("raw PCM 16-bit", set_name, refs, base, 16 * SAMPLE_RATE * seconds, seconds)
        add("log-mel fp16", set_name, refs, base, 80 * 100 * 16 * seconds, seconds)
        states: dict[int, list] = {}  # split layer -> the device states of every recording (no compressor in them)
        for name, (comp, k, card) in comps.items():
            split = split_for(backend, k, comp)
            if k not in states:
                states[k] = _chunked(split.device_hidden, wavs)
            msgs = _chunked(split.encode, wavs)
            hyps = _chunked(lambda ms, split=split: split.transcribe_hidden(
                split.restore(ms), samples=[m.samples for m in ms]), msgs)
            add(f"split k={k} {name}", set_name, refs, hyps, sum(len(m.to_bytes()) for m in msgs) * 8, seconds,
                payload_bits_per_s=sum(len(m.payload) for m in msgs) * 8 / seconds,
                wer_unrounded=_score(refs, _chunked(lambda its, split=split: _unrounded(split, its), states[k]))["wer"],
                nominal_bits_per_s=comp.config.nominal_bits_per_second(50.0 if k else 100.0), card=card)
            print(f"     {name}: {rows[f'split k={k} {name}'][set_name]['bits_per_s'] / 1000:.2f} kbit/s, "
                  f"WER {rows[f'split k={k} {name}'][set_name]['wer']:.3f}", flush=True)
        for mode in CODEC2[: 1 if quick else None]:
            out = [codec2_round_trip(w, mode) for w in wavs]
            add(f"codec2 {mode}", set_name, refs, _chunked(unsplit.transcribe, [o for o, _ in out]),
                sum(b for _, b in out), seconds)
        for kbps in OPUS_KBPS[: 1 if quick else None]:
            out = [opus_round_trip(w, kbps) for w in wavs]
            add(f"opus {kbps} kbit/s", set_name, refs, _chunked(unsplit.transcribe, [o for o, _ in out]),
                sum(b for _, b in out), seconds)
        mel = _chunked(unsplit.device_hidden, wavs) if transform_coders else []  # log-mel windows: every step's input
        for delta, coder in transform_coders.items():
            out = [(*coder.round_trip(it.features.numpy(), it.samples), it.samples) for it in mel]
            hyps = _chunked(lambda rs: unsplit.transcribe_hidden([torch.from_numpy(r) for r, _, _ in rs],
                                                                 samples=[n for _, _, n in rs]), out)
            add(f"transform coder PCA-64 step {delta}", set_name, refs, hyps, 8 * sum(b for _, b, _ in out), seconds)
    return {"machine": machine(device), "rows": rows, "goal": _goal(rows),
            "sets": {k: len(v) for k, v in sets.items()}, "quick": quick}


def _goal(rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per split point on each real set: <= 2 kbit/s, WER <= 1.1 x unsplit, WER < Opus 6 kbit/s."""
    out: dict[str, Any] = {}
    for set_name in REAL_SETS:
        ref = rows.get("raw PCM 16-bit", {}).get(set_name)
        opus = rows.get("opus 6 kbit/s", {}).get(set_name)
        if ref is None:
            continue
        for system, by_set in rows.items():
            r = by_set.get(set_name)
            if not system.startswith("split") or r is None:
                continue
            rel = r["wer"] / ref["wer"] - 1 if ref["wer"] else float("inf") if r["wer"] else 0.0
            out.setdefault(system, {})[set_name] = {
                "kbit_s": r["bits_per_s"] / 1000, "relative_wer": rel,
                "met": bool(r["bits_per_s"] <= 2000 and rel <= 0.10 and (opus is None or r["wer"] < opus["wer"]))}
    return out


def main(argv: list[str] | None = None) -> dict:
    return bench_main(__doc__, run, "device_tuning_whisper", argv)


if __name__ == "__main__":
    main()
