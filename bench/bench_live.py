"""Live captions (issue 25): latency, streaming vs offline WER, real-time factor, words on silence and noise.

For Whisper tiny.en, base and personal, and the streaming peer a user would pick instead
(whisper_streaming's LocalAgreement policy as shipped in ``whisperlivekit``, on
faster-whisper with the same tiny.en weights; it has no personal model), on the same
streams, one system after another in this process, with 2 torch threads:

- **Streams.** Per speaker (the atypical sample speakers and the real voice), the speaker's
  fixed test phrases (``three_way_split``, seed 0: never trained on) joined with 1 s of
  silence between them, played through the recognizer as if in real time (chunks of 0.1 s
  for ours, 1 s for the peer, its default ``min-chunk-size``). The clock is simulated: a
  decode starts when its audio has arrived and the previous decode has finished, and lasts as
  long as it really took here (see :class:`workbench.live.StreamingRecognizer`).
- **Committed-word latency**: the commit's ``emitted`` time minus the word's end in the audio,
  for every committed word that matches a reference word (difflib alignment per phrase).
  Word ends come from the recording itself, not from a model: the phrase's speech ends where
  its 10 ms level falls 35 dB below its loudest frame (exact for the last word), and the
  words share the loud frames in proportion to their length in characters (an estimate for
  the words inside a phrase). Median and 90th percentile over all matched words; the
  last-word latency (exact end) is reported beside them.
- **Streaming WER vs offline WER**: committed words assigned to the phrase whose time span
  holds them, against the offline transcript of each phrase by the same model.
- **Real-time factor**: decoding seconds (wall) and CPU seconds (all threads) per second of audio.
- **Silence and noise**: words committed on 60 s of digital silence and on 60 s of synthetic
  room noise (pink noise, mains hum at 50/100 Hz, soft knocks; seed 0) at -35 and -20 dBFS.

Personal models are trained here once per speaker (``personalize_speaker`` with the defaults
of the CLI on a copy of the folder) and cached under ``~/.cache/workbench/bench_live``; every
finished (system, speaker) is saved to ``docs/bench/live_cpu.partial.json`` so an interrupted
run resumes where it stopped. The file stays after a finished run: a later run measures again
only the rows of the workbench whose recognizer code changed (each row keeps a fingerprint of
``workbench/live``'s streaming modules, :data:`OUR_CODE`) and keeps the peer's rows (the peer
does not depend on our code); ``--fresh`` measures everything again. ``--quick``: one speaker, three phrases, 5 s of silence/noise,
a 2-step personal model (checks that everything runs; the figures mean nothing).
"""

from __future__ import annotations

import difflib
import json
import os
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench._common import RESULTS_DIR, defaults_tag, machine, write_result
from workbench.constants import FRAMES_PER_SECOND, HOP_LENGTH, SAMPLE_RATE, cache_dir

SAMPLES = Path(__file__).resolve().parent.parent / "sample_data"
SPEAKERS = ["sim-dysarthria-severe", "sim-als-like", "sim-parkinsonian", "sim-stutter", "sim-voice-tremor",
            "sim-accent", "real/real-allison"]
MODEL = "whisper-tiny.en"
GAP_S = 1.0  # silence between phrases
THREADS = 2  # "on 2 cores"
CACHE = Path(os.environ.get("WORKBENCH_BENCH_CACHE") or cache_dir() / "bench_live")
# the modules our streamed rows depend on: a row measured with other versions of them is measured again
OUR_CODE = ("decoders.py", "events.py", "policy.py", "stream.py", "vad.py")


def code_fingerprint() -> str:
    """SHA-256 (12 hex digits) of the streaming recognizer's modules (:data:`OUR_CODE`)."""
    import hashlib

    import workbench.live

    folder = Path(workbench.live.__file__).parent
    digest = hashlib.sha256()
    for name in OUR_CODE:
        digest.update(name.encode() + b"\0" + (folder / name).read_bytes())
    return digest.hexdigest()[:12]


def reusable_rows(done: dict[str, dict], fingerprint: str, defaults: str | None = None) -> dict[str, dict]:
    """The finished rows still valid: the peer's always, ours only when measured with the same code, and a
    personal model's only when it was trained with today's defaults (``defaults``:
    :func:`bench._common.defaults_tag`; a row that does not record them is measured again)."""
    return {k: r for k, r in done.items() if k.startswith("peer|") or (
        r.get("code") == fingerprint and (not k.startswith("personal|") or r.get("defaults") == defaults))}


# ---------------------------------------------------------------------------- inputs
def room_noise(seconds: float, seed: int = 0, level_dbfs: float = -35.0) -> np.ndarray:
    """Pink noise, mains hum (50 and 100 Hz) and soft knocks every ~5 s: a room where nobody speaks."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SAMPLE_RATE)
    spec = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    spec[1:] /= np.sqrt(freqs[1:])
    spec[0] = 0
    pink = np.fft.irfft(spec, n)
    t = np.arange(n) / SAMPLE_RATE
    x = pink / pink.std() + 0.3 * np.sin(2 * np.pi * 50 * t) + 0.15 * np.sin(2 * np.pi * 100 * t)
    for s in rng.integers(0, n - 800, size=max(1, int(seconds / 5))):
        x[s: s + 800] += 3 * rng.standard_normal(800) * np.exp(-np.arange(800) / 150)
    return (x * 10 ** (level_dbfs / 20) / np.sqrt(np.mean(x ** 2))).astype(np.float32)


def _speech_span(wav: np.ndarray, top_db: float = 35.0) -> tuple[float, float, np.ndarray]:
    """``(start_s, end_s, loud (F,))`` of a phrase: 10 ms frames within ``top_db`` of the loudest."""
    hop = HOP_LENGTH
    m = len(wav) // hop
    db = 10 * np.log10(np.mean(wav[: m * hop].reshape(m, hop).astype(np.float64) ** 2, axis=1) + 1e-12)
    loud = db > db.max() - top_db
    idx = np.flatnonzero(loud)
    return idx[0] / FRAMES_PER_SECOND, (idx[-1] + 1) / FRAMES_PER_SECOND, loud


def build_stream(wavs: list[np.ndarray], refs: list[str]) -> tuple[np.ndarray, list[dict]]:
    """The phrases joined with :data:`GAP_S` of silence, and per phrase its span and reference word ends."""
    from workbench.live.decoders import spread_words

    gap = np.zeros(int(GAP_S * SAMPLE_RATE), np.float32)
    parts, phrases, t = [gap], [], GAP_S
    for wav, ref in zip(wavs, refs, strict=True):
        s0, s1, loud = _speech_span(wav)
        words = spread_words(ref.split(), loud, 1 / FRAMES_PER_SECOND)
        ends = [t + w.end_s for w in words]
        if ends:
            ends[-1] = t + s1  # the last word ends where the speech ends
        phrases.append({"start": t, "end": t + len(wav) / SAMPLE_RATE, "ref": ref, "word_ends": ends,
                        "speech_end": t + s1})
        parts += [wav, gap]
        t += len(wav) / SAMPLE_RATE + GAP_S
    return np.concatenate(parts), phrases


# ---------------------------------------------------------------------------- scoring
def score_stream(commits: list[tuple[str, float, float, float]], phrases: list[dict]) -> dict[str, Any]:
    """Per phrase: the committed words whose middle falls in its span (gaps split evenly), their latency.

    Args:
        commits: ``(word, start_s, end_s, emitted_s)`` per committed word.
    """
    bounds = [p["start"] - GAP_S / 2 for p in phrases] + [float("inf")]
    hyps: list[list[tuple[str, float]]] = [[] for _ in phrases]
    for word, start, end, emitted in commits:
        mid = (start + end) / 2
        for i in range(len(phrases)):
            if bounds[i] <= mid < bounds[i + 1]:
                hyps[i].append((word, emitted))
                break
    lat, last = [], []
    for p, hyp in zip(phrases, hyps, strict=True):
        ref = p["ref"].split()
        sm = difflib.SequenceMatcher(a=ref, b=[w for w, _ in hyp], autojunk=False)
        for block in sm.get_matching_blocks():
            for k in range(block.size):
                i, j = block.a + k, block.b + k
                lat.append(hyp[j][1] - p["word_ends"][i])
                if i == len(ref) - 1:
                    last.append(hyp[j][1] - p["speech_end"])
    return {"hyps": [" ".join(w for w, _ in h) for h in hyps], "latencies": lat, "last_word_latencies": last}


def _quantiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"median": None, "p90": None, "n": 0}
    v = sorted(values)
    return {"median": statistics.median(v), "p90": float(np.percentile(v, 90)), "n": len(v)}


# ---------------------------------------------------------------------------- systems
def _speaker_data(name: str, n: int | None) -> tuple[list[np.ndarray], list[str]]:
    from workbench.corpus import SpeakerCorpus
    from workbench.dataset import examples_from_corpus
    from workbench.workflow import three_way_split

    corpus = SpeakerCorpus.open(SAMPLES / name)
    _, _, test = three_way_split(corpus, seed=0)
    examples = examples_from_corpus(corpus, test[:n] if n else test)
    from workbench.text import normalize_text

    return [e.wav for e in examples], [normalize_text(e.text) for e in examples]


def personal_model(name: str, quick: bool, backend) -> Path:
    """The speaker's personal Whisper tiny.en, trained once on a copy of the folder (cached under the
    training defaults of ``backend``, the caller's base model; a fresh one trains)."""
    from bench._common import personal_model_path
    from workbench.workflow import default_config, personalize_speaker
    from workbench.models import load_base_model

    tag = "quick" if quick else "full"
    out = personal_model_path(CACHE, name, MODEL, tag, backend)
    if out.is_file():
        return out
    backend = load_base_model(MODEL)
    work = CACHE / "work" / tag / Path(name).name  # the folder keeps the speaker's name
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(SAMPLES / name, work, ignore=shutil.ignore_patterns("submodels", "reports"))
    settings = {"max_steps": 2, "eval_every": 1} if quick else {}
    config = default_config(backend, seed=0, **settings)  # the CLI's defaults: step-based, the clock only a ceiling
    run = personalize_speaker(work, backend=backend, config=config, seed=0, progress=False)
    run.adapted.remove()
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(run.submodel_path, out)
    return out


def run_ours(backend, submodel: Path | None, wavs: list[np.ndarray], stream: np.ndarray,
             noises: dict[str, np.ndarray]) -> dict[str, Any]:
    """Offline transcripts, the stream's committed words and the noise results of one model."""
    from workbench.live import StreamingRecognizer

    rec = StreamingRecognizer(backend, submodel=submodel)
    try:
        offline = backend.transcribe(wavs)  # the personal LoRA is merged while rec lives: the same model
        commits = _feed(rec, stream, 0.1)
        stats = {"compute_s": rec.compute_s, "cpu_s": rec.cpu_s, "decodes": rec.decodes, "skipped_s": rec.skipped_s}
    finally:
        rec.close()
    noise_words = {}
    for kind, wav in noises.items():
        r = StreamingRecognizer(backend, submodel=submodel, warmup=False)
        try:
            noise_words[kind] = [w for w, *_ in _feed(r, wav, 0.1)]
        finally:
            r.close()
    return {"offline": offline, "commits": commits, "stats": stats, "noise_words": noise_words}


def _feed(rec, wav: np.ndarray, chunk_s: float) -> list[tuple[str, float, float, float]]:
    step = int(chunk_s * SAMPLE_RATE)
    events = []
    for s in range(0, len(wav), step):
        events += rec.feed(wav[s: s + step])
    events += rec.finish()
    out = []
    for e in events:
        if e.kind == "commit" and getattr(e, "words", ()):  # the recognizer's own word times
            out += [(w.text, w.start_s, w.end_s, e.emitted_s) for w in e.words]
        elif e.kind == "commit":
            words = e.text.split()
            span = (e.end_s - e.start_s) / max(1, len(words))
            out += [(w, e.start_s + k * span, e.start_s + (k + 1) * span, e.emitted_s) for k, w in enumerate(words)]
    return out


def peer_available() -> str | None:
    """None when the peer can run here, else why not."""
    from workbench._optional import has_module

    for mod, hint in (("faster_whisper", "pip install faster-whisper"),
                      ("whisperlivekit", "pip install --no-deps whisperlivekit==0.2.26 tiktoken")):
        if not has_module(mod):
            return f"{mod} is not installed ({hint})"
    return None


def run_peer(wavs: list[np.ndarray], stream: np.ndarray, noises: dict[str, np.ndarray]) -> dict[str, Any]:
    """whisper_streaming's OnlineASRProcessor (whisperlivekit) on faster-whisper tiny.en from the same wheel."""
    import logging

    from faster_whisper import WhisperModel
    from whisperlivekit.local_agreement.backends import FasterWhisperASR
    from whisperlivekit.local_agreement.online_asr import OnlineASRProcessor

    from workbench.models.whisper import weights as ww
    from workbench.text import normalize_text

    for name in ("whisperlivekit", "faster_whisper"):  # their per-chunk INFO lines
        logging.getLogger(name).setLevel(logging.WARNING)
    folder = ww._resource(ww.WHISPER_MODELS[MODEL].parts[0]).parent  # the CTranslate2 tiny.en in the wheel

    class ASR(FasterWhisperASR):
        def load_model(self, model_size=None, cache_dir=None, model_dir=None):
            return WhisperModel(str(model_dir), device="cpu", compute_type="float32", cpu_threads=THREADS)

    asr = ASR("en", model_dir=str(folder))
    asr.use_vad()  # whisper_streaming's --vad (silero in faster-whisper), its recommended setting
    asr.tokenizer, asr.confidence_validation = None, False
    asr.buffer_trimming, asr.buffer_trimming_sec = "segment", 15

    offline = [normalize_text(" ".join(s.text for s in asr.model.transcribe(w, language="en", beam_size=5,
                                                                            vad_filter=True)[0])) for w in wavs]

    def feed(wav: np.ndarray) -> tuple[list, dict]:
        proc = OnlineASRProcessor(asr)
        step, busy, compute, cpu0 = SAMPLE_RATE, 0.0, 0.0, time.process_time()
        out = []
        for s in range(0, len(wav), step):
            proc.insert_audio_chunk(wav[s: s + step])
            t0 = time.perf_counter()
            tokens, _ = proc.process_iter()
            dt = time.perf_counter() - t0
            compute += dt
            busy = max(busy, min(len(wav), s + step) / SAMPLE_RATE) + dt
            out += [(normalize_text(t.text), t.start, t.end, busy) for t in tokens]
        t0 = time.perf_counter()
        tokens, _ = proc.finish()
        dt = time.perf_counter() - t0
        busy = max(busy, len(wav) / SAMPLE_RATE) + dt
        out += [(normalize_text(t.text), t.start, t.end, busy) for t in tokens]
        words = [(w, a, b, e) for text, a, b, e in out for w in text.split()]
        return words, {"compute_s": compute + dt, "cpu_s": time.process_time() - cpu0}

    commits, stats = feed(stream)
    noise_words = {kind: [w for w, *_ in feed(wav)[0]] for kind, wav in noises.items()}
    return {"offline": offline, "commits": commits, "stats": stats, "noise_words": noise_words}


# ---------------------------------------------------------------------------- the run
def _summary(rows: dict[str, dict]) -> dict[str, Any]:
    from workbench.evaluate import wer

    refs, offline, streamed, lat, last = [], [], [], [], []
    audio_s = compute = cpu = 0.0
    noise: dict[str, int] = {}
    for r in rows.values():
        refs += r["refs"]
        offline += r["offline"]
        streamed += r["streamed"]
        lat += r["latencies"]
        last += r["last_word_latencies"]
        audio_s += r["audio_s"]
        compute += r["stats"]["compute_s"]
        cpu += r["stats"]["cpu_s"]
        for k, v in r["noise_words"].items():
            noise[k] = max(noise.get(k, 0), len(v))
    off, st = wer(refs, offline), wer(refs, streamed)
    return {"latency": _quantiles(lat), "last_word_latency": _quantiles(last), "offline_wer": off,
            "streaming_wer": st, "wer_ratio": st / off if off else None, "rtf": compute / audio_s,
            "cpu_rtf": cpu / audio_s, "audio_s": audio_s, "noise_words": noise}


def run(device: str, quick: bool, speakers: list[str] | None = None, peer: bool = True) -> dict[str, Any]:
    import torch

    from workbench.models import load_base_model

    torch.set_num_threads(THREADS)
    speakers = speakers or (SPEAKERS[-1:] if quick else SPEAKERS)
    n_phrases = 3 if quick else None
    noise_s = 5.0 if quick else 60.0
    noises = {"silence": np.zeros(int(noise_s * SAMPLE_RATE), np.float32),
              "room noise -35 dBFS": room_noise(noise_s, 0, -35.0), "room noise -20 dBFS": room_noise(noise_s, 1, -20.0)}
    partial_path = RESULTS_DIR / f"live_{device}{'_quick' if quick else ''}.partial.json"
    done: dict[str, dict] = json.loads(partial_path.read_text()) if partial_path.is_file() else {}
    fingerprint = code_fingerprint()
    backend = load_base_model(MODEL)
    defaults = defaults_tag(backend)
    kept = reusable_rows(done, fingerprint, defaults)
    if len(kept) < len(done):
        print(f"measuring again {len(done) - len(kept)} row(s) of the workbench made with other recognizer code "
              f"or other training defaults; keeping {len(kept)} (the peer's and those of this code)", flush=True)
    done = kept
    why_no_peer = peer_available() if peer else "left out (--no-peer)"
    systems = ["base", "personal"] + ([] if why_no_peer else ["peer"])
    for spk in speakers:
        wavs, refs = _speaker_data(spk, n_phrases)
        stream, phrases = build_stream(wavs, refs)
        for system in systems:
            key = f"{system}|{spk}"
            if key in done:
                continue
            t0 = time.perf_counter()
            if system == "peer":
                res = run_peer(wavs, stream, noises)
            else:
                res = run_ours(backend, personal_model(spk, quick, backend) if system == "personal" else None, wavs, stream,
                               noises)
            scored = score_stream(res["commits"], phrases)
            done[key] = {"refs": refs, "offline": res["offline"], "streamed": scored["hyps"],
                         "latencies": scored["latencies"], "last_word_latencies": scored["last_word_latencies"],
                         "audio_s": len(stream) / SAMPLE_RATE, "stats": res["stats"],
                         "noise_words": res["noise_words"], "seconds": time.perf_counter() - t0}
            if system != "peer":
                done[key]["code"] = fingerprint
            if system == "personal":
                done[key]["defaults"] = defaults
            RESULTS_DIR.mkdir(parents=True, exist_ok=True)
            partial_path.write_text(json.dumps(done))
            print(f"{system:8s} {spk:22s} done in {done[key]['seconds']:.0f} s", flush=True)
    result: dict[str, Any] = {"machine": machine(device), "model": MODEL, "threads": THREADS, "speakers": speakers,
                              "training_defaults": defaults,
                              "noise_s": noise_s, "gap_s": GAP_S, "quick": quick,
                              "peer": "whisperlivekit 0.2.26 OnlineASRProcessor (LocalAgreement-2, VAD on, 1 s "
                                      "chunks, beam 5) on faster-whisper tiny.en (the same weights)",
                              "peer_missing": why_no_peer, "systems": {}}
    for system in systems:
        rows = {spk: done[f"{system}|{spk}"] for spk in speakers if f"{system}|{spk}" in done}
        result["systems"][system] = {"overall": _summary(rows),
                                     "speakers": {s: _summary({s: r}) for s, r in rows.items()},
                                     "examples": [{"ref": r, "offline": o, "streamed": h} for row in rows.values()
                                                  for r, o, h in list(zip(row["refs"], row["offline"],
                                                                          row["streamed"], strict=True))[:2]]}
    return result


def main(argv: list[str] | None = None) -> dict:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--fresh", action="store_true",
                        help="measure every row again (by default the peer's rows, and ours made with the same "
                             "recognizer code, are kept)")
    parser.add_argument("--no-peer", action="store_true", help="measure the workbench alone")
    parser.add_argument("--speakers", nargs="+", default=None, help=f"sample speakers (default: {' '.join(SPEAKERS)})")
    args = parser.parse_args(argv)
    partial = RESULTS_DIR / f"live_{args.device}{'_quick' if args.quick else ''}.partial.json"
    if args.fresh and partial.is_file():
        partial.unlink()
    t0 = time.perf_counter()
    result = run(args.device, args.quick, args.speakers, peer=not args.no_peer)
    result["wall_s"] = time.perf_counter() - t0
    path = write_result(f"live_{args.device}" + ("_quick" if args.quick else ""), result)
    if args.quick:  # a check that it runs: nothing to resume later (a full run's rows stay for the next run)
        partial.unlink(missing_ok=True)
    print(f"wrote {path}")
    for name, s in result["systems"].items():
        o = s["overall"]
        lat = o["latency"]
        print(f"{name:8s} latency median {lat['median']} p90 {lat['p90']}  WER stream {o['streaming_wer']:.3f} "
              f"offline {o['offline_wer']:.3f}  RTF {o['rtf']:.2f} (CPU {o['cpu_rtf']:.2f})  noise {o['noise_words']}")
    return result


if __name__ == "__main__":
    main()
