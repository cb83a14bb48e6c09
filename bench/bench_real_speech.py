"""Real speech: word error rate and speed of every base model on one real voice.

The set is Debian's Asterisk prompts (one professional speaker, 8 kHz telephone
audio, CC-BY-SA-3.0; :mod:`workbench.real_speech`): a fixed, evenly spaced subset
(every k-th prompt by name). Every system transcribes the same recordings, one
after another in this process, 8 at a time where it batches:

- the built-in model (synthetic voices only), greedy;
- Whisper tiny.en through the workbench, with the "auto" encoding window (the
  default) and with the full 30 s window; Whisper base (multilingual, English);
- CTranslate2 on the same tiny.en weights (``compute_type`` float32 and int8), the
  optimized engine a user could run instead (greedy, 30 s window as it requires);
- pocketsphinx with the US-English model its wheel ships.

The real-time factor is processing seconds (features included) divided by audio
seconds, after one warm-up batch. WER/CER use the workbench's normalization for every
system. Not a clinical figure: an ASR accuracy on one typical speaker.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from bench._common import bench_main, machine
from workbench.constants import SAMPLE_RATE

SUBSET = 150  # prompts in the full run (every k-th of ~545); --quick uses 8


def _subset(n: int) -> list:
    from workbench.real_speech import load_asterisk

    utts = load_asterisk()
    step = max(1, len(utts) // n)
    return utts[::step][:n]


def _score(refs: list[str], hyps: list[str], seconds: float, audio_s: float) -> dict[str, Any]:
    from workbench.evaluate import cer, wer

    return {"wer": wer(refs, hyps), "cer": cer(refs, hyps), "rtf": seconds / audio_s, "seconds": seconds,
            "examples": [{"ref": r, "hyp": h} for r, h in list(zip(refs, hyps, strict=True))[:5]]}


def _timed(fn, wavs: list[np.ndarray]) -> tuple[list[str], float]:
    fn(wavs[:8])  # warm-up: first-call allocations, caches
    t0 = time.perf_counter()
    hyps = fn(wavs)
    return hyps, time.perf_counter() - t0


def _workbench(name: str, **options: Any):
    from workbench.models import load_base_model

    backend = load_base_model(name, **options)
    return lambda wavs: backend.transcribe(wavs, batch_size=8)


def _ct2(compute_type: str):
    import ctranslate2

    from workbench.models.whisper import weights as ww
    from workbench.models import load_base_model
    from workbench.text import normalize_text

    src = ww.WHISPER_MODELS["whisper-tiny.en"]
    folder = ww._resource(src.parts[0]).parent
    processor = load_base_model("whisper-tiny.en").processor  # the same tokenizer and log-mel
    import torch

    model = ctranslate2.models.Whisper(str(folder), device="cpu", compute_type=compute_type,
                                       intra_threads=torch.get_num_threads())
    prompt = [processor.tokenizer.convert_tokens_to_ids(t) for t in ("<|startoftranscript|>", "<|notimestamps|>")]

    def run(wavs: list[np.ndarray]) -> list[str]:
        out = []
        for s in range(0, len(wavs), 8):
            chunk = wavs[s: s + 8]
            feats = processor.feature_extractor(chunk, sampling_rate=SAMPLE_RATE, return_tensors="np")["input_features"]
            res = model.generate(ctranslate2.StorageView.from_array(np.ascontiguousarray(feats)),
                                 [prompt] * len(chunk), beam_size=1, max_length=224)
            out += [normalize_text(processor.tokenizer.decode(r.sequences_ids[0])) for r in res]
        return out

    return run


def _pocketsphinx():
    from pocketsphinx import Decoder

    from workbench.text import normalize_text

    decoder = Decoder(samprate=SAMPLE_RATE, loglevel="FATAL")

    def run(wavs: list[np.ndarray]) -> list[str]:
        out = []
        for w in wavs:
            pcm = (np.clip(w, -1, 1) * 32767).astype("<i2").tobytes()
            decoder.start_utt()
            decoder.process_raw(pcm, full_utt=True)
            decoder.end_utt()
            hyp = decoder.hyp()
            out.append(normalize_text(hyp.hypstr if hyp is not None else ""))
        return out

    return run


SYSTEMS = {
    "builtin (workbench-tiny)": lambda: _workbench("tiny"),
    "whisper-tiny.en (workbench, auto window)": lambda: _workbench("whisper-tiny.en"),
    "whisper-tiny.en (workbench, full 30 s window)": lambda: _workbench("whisper-tiny.en", window="full"),
    "whisper-base (workbench, auto window)": lambda: _workbench("whisper-base"),
    "whisper-tiny.en (ctranslate2 float32)": lambda: _ct2("float32"),
    "whisper-tiny.en (ctranslate2 int8)": lambda: _ct2("int8"),
    "pocketsphinx (en-us)": _pocketsphinx,
}


def run(device: str, quick: bool, *, systems_only: list[str] | None = None, utterances: int | None = None) -> dict:
    """Every system of :data:`SYSTEMS` (or those named in ``systems_only``) on the same recordings."""
    from workbench.text import normalize_text

    utts = _subset(utterances or (8 if quick else SUBSET))
    wavs = [u.wav for u in utts]
    refs = [normalize_text(u.text) for u in utts]
    audio_s = sum(len(w) for w in wavs) / SAMPLE_RATE
    systems: dict[str, Any] = {}
    for name, make in SYSTEMS.items():
        if systems_only is not None and name not in systems_only:
            continue
        try:
            fn = make()
        except Exception as err:  # noqa: BLE001 - a peer or a model that is not installed is reported, not fatal
            systems[name] = {"error": f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"}
            print(f"{name}: not measured ({systems[name]['error']})", flush=True)
            continue
        hyps, seconds = _timed(fn, wavs)
        systems[name] = _score(refs, hyps, seconds, audio_s)
        s = systems[name]
        print(f"{name}: WER {100 * s['wer']:.1f}% CER {100 * s['cer']:.1f}% RTF {s['rtf']:.3f}", flush=True)
    return {"machine": machine(device), "utterances": len(utts), "audio_minutes": audio_s / 60,
            "set": "Debian asterisk-core-sounds-en(-wav), en_US_f_Allison, every k-th prompt of 0.3-12 s",
            "systems": systems}


def main(argv: list[str] | None = None) -> dict:
    return bench_main(__doc__, run, "real_speech", argv)


if __name__ == "__main__":
    main()
