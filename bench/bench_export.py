"""Exported personal models, run by their own engines: do they say what the workbench says, and how fast?

For one sample speaker's personal Whisper tiny.en model (LoRA) and one built-in-model
personal model, every export format is written with ``workbench export`` and run by its
engine on the speaker's **test phrases** (the recordings the adapter never trained on), one
recording at a time, greedy, with the model card's decoding settings:

- ``ct2`` int8 and float32 in faster-whisper (``beam_size=1``, ``temperature=0``, no
  timestamps, no previous text, ``max_new_tokens`` from the duration; faster-whisper always
  encodes 30 s and pads its log-mel with zeros, so the card gives it the recording followed by
  30 s of silence and ``clip_timestamps=[0, 30]``), and in CTranslate2 directly with the workbench's encoding window
  (the model card's snippet, :func:`workbench.export.ct2.window_transcriber`);
- ``ggml`` float16 in whisper.cpp (pywhispercpp; the same settings, ``audio_ctx`` = the window);
- ``hf`` in transformers' ``pipeline("automatic-speech-recognition")`` (always 30 s);
- ``onnx`` (built-in model) in ONNX Runtime with greedy CTC decoding.

Two personal Whisper models of the same speaker are measured: the default one, trained on the
workbench's short window (``window="auto"``), and one trained on Whisper's 30 s window
(``workbench personalize --window full``: what faster-whisper and transformers encode), trained
here for a fixed number of steps (:data:`FULL_STEPS`, not a time budget, so the model does not
depend on how busy the machine is). For the full-window model every engine runs with its plain
30 s defaults (no window cut, no ``audio_ctx``), as its model card says, and CTranslate2 directly
gets 30 s of audio and silence. The int8 rows are the
cost of quantization (CTranslate2's int8 weights against the float32 ones), not of the export.
whisper.cpp runs float16 weights only (a float32 file aborts it, see workbench.export.ggml); the
row "workbench, weights rounded to float16" is the workbench's own path on the merged weights
rounded as the ggml file rounds them, to tell the cost of float16 from whisper.cpp's own.

The workbench stops a transcript when it starts to loop; the engines do not, so each engine's
text is also given the same loop cut (re-tokenized, :func:`workbench.export.card.cut_loops`,
as the model card shows); both figures are kept (``*_raw``: the engine's own text).

Each is compared with the workbench's own path, ``workbench transcribe --adapter FILE``
(the same functions, in process, one recording at a time) on the same audio files: the share
of transcripts that are identical after the workbench's text normalization (goal >= 95 %)
and the corpus WER against the prompts (goal: within 1 point). The real-time factor (compute
seconds / audio seconds, 2 threads for every engine, after a warm-up recording) is measured
in interleaved rounds. The workbench trains and decodes Whisper on the audio plus a margin
(``window="auto"``), not on 30 s; its ``window="full"`` path is listed too, as the reference
for engines that always encode 30 s.

The personal models are trained once, on copies of the sample speakers in the workbench
cache (``bench-export/``), unless ``--speaker``/``--builtin-speaker`` name speaker folders
that already hold one (the full-window model: ``bench-export/full-<steps>steps/``; ``--quick``
trains :data:`QUICK_FULL_STEPS` steps there instead). ``python -m bench.bench_export [--quick]``;
writes docs/bench/export.json.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench._common import machine, write_result

THREADS = 2
GOAL_IDENTICAL, GOAL_WER_POINTS = 0.95, 1.0
FULL_STEPS = 50  # the full-window model's training steps (the auto-window model took 53 in its 2 minutes)
QUICK_FULL_STEPS = 10  # --quick: one check on the validation recordings (eval_every), to see that it runs
_ROOT = Path(__file__).resolve().parent.parent


def _personal_speaker(name: str, model: str, work: Path, minutes: float) -> Path:
    """A copy of sample speaker ``name`` with a personal model on ``model`` (trained once, then reused)."""
    from workbench.workflow import personal_submodel

    folder = work / name
    if folder.is_dir() and personal_submodel(folder) is not None:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(_ROOT / "sample_data" / name, folder)
    from workbench.models import load_base_model
    from workbench.workflow import default_config, personalize_speaker

    backend = load_base_model(model)
    print(f"training a personal {model} model for {name} ({minutes:g} min, once; reused from {work})", flush=True)
    personalize_speaker(folder, backend=backend, config=default_config(backend, time_limit_s=60 * minutes, seed=0),
                        progress=False)
    if personal_submodel(folder) is None:
        raise SystemExit(f"the personal model of {name} did not beat the base model; nothing to export")
    return folder


def _full_window_model(name: str, model: str, work: Path, steps: int) -> Path:
    """A personal ``model`` for sample speaker ``name`` trained on Whisper's 30 s window for ``steps`` steps
    (trained once in ``work/full-<steps>steps/<name>``, then reused); returns its Submodel file."""
    from workbench.adapters.io import read_submodel

    folder = work / f"full-{steps}steps" / name
    done = sorted((folder / "submodels").glob("*.safetensors")) if folder.is_dir() else []
    if done and read_submodel(done[-1])[1]["window"] == "full":
        return done[-1]
    shutil.rmtree(folder, ignore_errors=True)
    folder.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(_ROOT / "sample_data" / name, folder)
    from workbench.models import load_base_model
    from workbench.workflow import default_config, personalize_speaker

    backend = load_base_model(model)
    print(f"training a full-window personal {model} model for {name} ({steps} steps, once; reused from {folder})",
          flush=True)
    run = personalize_speaker(folder, backend=backend, window="full", progress=False,
                              config=default_config(backend, time_limit_s=None, max_steps=steps, seed=0))
    run.adapted.remove()
    return run.submodel_path


def _test_phrases(folder: Path, limit: int | None, path: Path | None = None) -> tuple[list[np.ndarray], list[str], Path]:
    """The speaker's recordings its personal model (or the Submodel ``path``) never trained or validated on, as
    files on disk read by ``workbench transcribe`` (no trimming), with their prompts, and the Submodel file."""
    from workbench.adapters.io import read_submodel
    from workbench.corpus import SpeakerCorpus
    from workbench.workflow import personal_submodel

    path = path or personal_submodel(folder).path
    meta = read_submodel(path)[1]
    seen = set(meta["training"].get("utt_ids", [])) | set(meta["training"].get("valid_utt_ids", []))
    corpus = SpeakerCorpus.open(folder)
    utts = [u for u in corpus.utterances() if u.utt_id not in seen][:limit]
    return [corpus.load_audio(u) for u in utts], [u.transcript or u.prompt for u in utts], path


def _workbench_path(submodel: Path, *, window: str | None = None, float16: bool = False) -> Callable[[np.ndarray], str]:
    """``workbench transcribe --adapter FILE`` in process: the file's base model, its adapter (decoded on the window
    it was trained on), greedy. ``window``: another window instead; ``float16``: the adapter merged and every
    weight the ggml file stores in float16 rounded to float16 (what whisper.cpp computes with)."""
    import torch

    from workbench.adapters import load_submodel
    from workbench.adapters.io import read_submodel
    from workbench.models import load_base_model

    backend = load_base_model(read_submodel(submodel)[1]["base_model"])
    adapted, _ = load_submodel(backend, submodel)
    if window is not None:
        adapted.window = window
    if float16:
        from workbench.export.ggml import _KEEP_F32, ggml_name

        adapted.merge(0)
        with torch.no_grad():
            for key, t in backend.model.state_dict(keep_vars=True).items():
                name = ggml_name(key)
                if name is not None and t.dim() >= 2 and name not in _KEEP_F32:
                    t.copy_(t.half().float())
    return lambda wav: adapted.transcribe([wav])[0]


def _prompt(submodel: Path) -> list[int]:
    """The Whisper decoding prompt of the Submodel's base model."""
    from workbench.adapters.io import read_submodel
    from workbench.models import load_base_model

    return list(load_base_model(read_submodel(submodel)[1]["base_model"]).prompt_ids)


def _faster_whisper(folder: Path) -> Callable[[np.ndarray], str]:
    """faster-whisper as the model card runs it: the card's settings, and the recording followed by 30 s of
    silence with ``clip_timestamps=[0, 30]`` (faster-whisper pads its log-mel with zeros; this gives it the
    log-mel of silence that Whisper, transformers and the workbench encode)."""
    from faster_whisper import WhisperModel

    from workbench.export.card import max_new_tokens

    model = WhisperModel(str(folder), device="cpu", compute_type="default", cpu_threads=THREADS)

    def run(wav: np.ndarray) -> str:  # the recording and 30 s of silence, one window: the card's recipe
        segments, _ = model.transcribe(np.pad(wav, (0, 480_000)), clip_timestamps=[0, 30], beam_size=1,
                                       temperature=0.0, without_timestamps=True,
                                       condition_on_previous_text=False, vad_filter=False,
                                       max_new_tokens=max_new_tokens(len(wav) / 16000))
        return " ".join(s.text.strip() for s in segments)

    return run


def _ctranslate2(folder: Path, prompt: list[int], window: str) -> Callable[[np.ndarray], str]:
    """CTranslate2 directly with the model's trained window (the model card's snippet)."""
    from workbench.export.ct2 import window_transcriber

    return window_transcriber(folder, prompt, threads=THREADS, window=window)


def _whisper_cpp(folder: Path, window: str) -> Callable[[np.ndarray], str]:
    """whisper.cpp with the model card's settings: ``audio_ctx`` = the window for an auto-window model, its 30 s
    default (``audio_ctx=0``) for a full-window one."""
    from pywhispercpp.model import Model

    from workbench.export.card import max_new_tokens, window_s

    model = Model(str(folder / "ggml-model.bin"), n_threads=THREADS, print_progress=False, print_realtime=False,
                  context_params={"flash_attn": window != "full"})  # the card's setting

    def run(wav: np.ndarray) -> str:
        seconds = len(wav) / 16000
        segments = model.transcribe(wav, no_timestamps=True, temperature=0.0, temperature_inc=0.0,
                                    single_segment=True, no_context=True, max_tokens=max_new_tokens(seconds),
                                    audio_ctx=0 if window == "full" else 50 * window_s(seconds))
        return " ".join(s.text.strip() for s in segments)

    return run


def _transformers(folder: Path) -> Callable[[np.ndarray], str]:
    from transformers import pipeline

    from workbench.export.card import max_new_tokens

    asr = pipeline("automatic-speech-recognition", model=str(folder), device="cpu")
    return lambda wav: asr({"raw": wav, "sampling_rate": 16000}, return_timestamps=False,
                           generate_kwargs={"num_beams": 1, "do_sample": False,  # max_length: the card says why
                                            "max_length": max_new_tokens(len(wav) / 16000)})["text"]


def _onnxruntime(folder: Path) -> Callable[[np.ndarray], str]:
    import json

    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = THREADS, 1
    session = ort.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])
    symbols = json.loads((folder / "vocab.json").read_text())["symbols"]

    def run(wav: np.ndarray) -> str:
        lp, n = session.run(None, {"waveform": wav[None].astype(np.float32), "lengths": np.array([len(wav)])})
        best = lp[0, : int(n[0])].argmax(-1)
        return "".join(symbols[i] for j, i in enumerate(best) if i != 0 and (j == 0 or i != best[j - 1]))

    return run


def _rounds(fns: dict[str, Callable[[np.ndarray], str]], wavs: list[np.ndarray], rounds: int) -> tuple[dict, dict]:
    """Transcripts of every recording and each function's seconds per round, rounds interleaved."""
    from workbench.text import normalize_text

    for fn in fns.values():
        fn(wavs[0])  # warm-up
    texts: dict[str, list[str]] = {}
    seconds: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            out = [normalize_text(fn(w)) for w in wavs]
            seconds[name].append(time.perf_counter() - t0)
            texts.setdefault(name, out)
    return texts, seconds


def _compare(refs: list[str], texts: dict[str, list[str]], seconds: dict[str, list[float]], audio_s: float,
             ours: str, guard: Callable[[str], str] | None = None) -> dict[str, Any]:
    """Agreement with ``ours`` and WER of every engine; with ``guard`` (the workbench's loop cut applied to an
    engine's text), on the guarded text, and the engine's raw text as ``*_raw``."""
    from workbench.evaluate import wer

    base = texts[ours]
    rows = {}
    for name, raw in texts.items():
        hyps = [guard(t) for t in raw] if guard is not None and name != ours else raw
        same = sum(a == b for a, b in zip(hyps, base, strict=True))
        w = wer(refs, hyps)
        rows[name] = {"identical": same / len(hyps), "n": len(hyps), "wer": w,
                      "wer_points_vs_workbench": 100 * (w - wer(refs, base)),
                      "identical_raw": sum(a == b for a, b in zip(raw, base, strict=True)) / len(raw),
                      "wer_raw": wer(refs, raw),
                      "rtf": statistics.median(seconds[name]) / audio_s,
                      "rtf_rounds": [s / audio_s for s in seconds[name]],
                      "differences": [{"ref": r, "workbench": b, "engine": h}
                                      for r, b, h in zip(refs, base, hyps, strict=True) if b != h][:5]}
        if name != ours and not name.startswith("workbench"):
            rows[name]["met"] = (rows[name]["identical"] >= GOAL_IDENTICAL
                                 and abs(rows[name]["wer_points_vs_workbench"]) <= GOAL_WER_POINTS)
    return rows


def _loop_guard(submodel: Path) -> Callable[[str], str]:
    """The workbench's repetition guard on an engine's text: re-tokenized with the model's tokenizer, cut, decoded."""
    from workbench.adapters.io import read_submodel
    from workbench.export.card import cut_loops
    from workbench.models import load_base_model
    from workbench.text import normalize_text

    tok = load_base_model(read_submodel(submodel)[1]["base_model"]).tokenizer
    return lambda text: normalize_text(tok.decode(cut_loops(tok(" " + text, add_special_tokens=False).input_ids)))


def _export_row(r: Any) -> dict[str, Any]:
    return {"seconds": r.seconds, "max_diff": r.verification.max_diff, "adapter_effect": r.verification.adapter_effect,
            "mb": sum(p.stat().st_size for p in r.path.iterdir()) / 1e6}


def _whisper_part(folder: Path, submodel: Path | None, out: Path, limit: int | None, rounds: int) -> dict[str, Any]:
    """Every Whisper engine on one personal model's exports, against the workbench (the model's own window)."""
    from workbench.adapters.io import read_submodel
    from workbench.export import export_model

    wavs, refs, submodel = _test_phrases(folder, limit, submodel)
    window = read_submodel(submodel)[1]["window"]
    out = out / window
    exports = {}
    for fmt, q in (("ct2", "int8"), ("ct2", "float32"), ("ggml", "float16"), ("hf", "float32")):
        exports[f"{fmt} {q}"] = _export_row(export_model(submodel, fmt, out / f"{fmt}-{q}", quantization=q))
    prompt = _prompt(submodel)
    fns = {"workbench": _workbench_path(submodel),
           "workbench, weights rounded to float16 (as whisper.cpp's)": _workbench_path(submodel, float16=True)}
    if window == "auto":  # what the engines that encode 30 s would match: the workbench on 30 s
        fns["workbench on the full window (not what it was trained on)"] = _workbench_path(submodel, window="full")
    fns["ctranslate2 float32, its trained window"] = _ctranslate2(out / "ct2-float32", prompt, window)
    fns["ctranslate2 int8 (quantization cost), its trained window"] = _ctranslate2(out / "ct2-int8", prompt, window)
    fns.update({"faster-whisper float32": _faster_whisper(out / "ct2-float32"),
                "faster-whisper int8 (quantization cost)": _faster_whisper(out / "ct2-int8"),
                "whisper.cpp float16": _whisper_cpp(out / "ggml-float16", window),
                "transformers": _transformers(out / "hf-float32")})
    texts, seconds = _rounds(fns, wavs, rounds)
    audio_s = sum(len(w) for w in wavs) / 16000
    return {"speaker": folder.name, "submodel": submodel.name, "window": window, "recordings": len(wavs),
            "audio_s": audio_s, "exports": exports,
            "engines": _compare(refs, texts, seconds, audio_s, "workbench", _loop_guard(submodel))}


def run(quick: bool, speaker: Path | None, builtin_speaker: Path | None, rounds: int,
        full_steps: int = FULL_STEPS) -> dict[str, Any]:
    import torch

    from workbench.constants import cache_dir
    from workbench.export import export_model

    torch.set_num_threads(THREADS)
    work = cache_dir() / "bench-export"
    limit = 6 if quick else None
    rounds = 1 if quick else rounds
    full_steps = QUICK_FULL_STEPS if quick else full_steps
    result: dict[str, Any] = {"machine": machine("cpu"), "threads": THREADS, "quick": quick, "rounds": rounds,
                              "goals": {"identical": GOAL_IDENTICAL, "wer_points": GOAL_WER_POINTS},
                              "full_window_steps": full_steps}
    with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp:
        out = Path(tmp)
        # Whisper tiny.en, two personal models of one speaker: the default (auto window) and a full-window one
        folder = speaker or _personal_speaker("sim-dysarthria-severe", "whisper-tiny.en", work, 2.0)
        result["whisper"] = _whisper_part(folder, None, out, limit, rounds)
        full = _full_window_model("sim-dysarthria-severe", "whisper-tiny.en", work, full_steps)
        result["whisper_full"] = _whisper_part(full.parent.parent, full, out, limit, rounds)
        # the built-in model: onnx
        folder = builtin_speaker or _personal_speaker("sim-stutter", "tiny", work, 1.0)
        wavs, refs, submodel = _test_phrases(folder, limit)
        r = export_model(folder, "onnx", out / "onnx")
        fns = {"workbench": _workbench_path(submodel), "onnxruntime": _onnxruntime(out / "onnx")}
        texts, seconds = _rounds(fns, wavs, rounds)
        audio_s = sum(len(w) for w in wavs) / 16000
        result["builtin"] = {"speaker": folder.name, "submodel": submodel.name, "recordings": len(wavs),
                             "audio_s": audio_s, "exports": {"onnx float32": _export_row(r)},
                             "engines": _compare(refs, texts, seconds, audio_s, "workbench")}
    return result


def _print(result: dict[str, Any]) -> None:
    for part in ("whisper", "whisper_full", "builtin"):
        r = result[part]
        print(f"{r['speaker']} ({r['submodel']}, window {r.get('window', '-')}): {r['recordings']} test phrases, "
              f"{r['audio_s']:.0f} s of audio")
        for name, e in r["engines"].items():
            mark = "" if "met" not in e else ("  met" if e["met"] else "  MISSED")
            print(f"  {name:58s} identical {100 * e['identical']:5.1f} % (raw {100 * e['identical_raw']:5.1f} %)  "
                  f"WER {100 * e['wer']:5.1f} % ({e['wer_points_vs_workbench']:+.1f} pts; raw "
                  f"{100 * e['wer_raw']:5.1f} %)  RTF {e['rtf']:.3f}{mark}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"6 test phrases, one round, a full-window model of "
                        f"{QUICK_FULL_STEPS} steps")
    parser.add_argument("--device", default="cpu", help="cpu only (the engines are measured on the CPU)")
    parser.add_argument("--speaker", type=Path, default=None,
                        help="a speaker folder with a personal Whisper tiny.en model (default: train one on a copy of "
                             "sim-dysarthria-severe, once)")
    parser.add_argument("--builtin-speaker", type=Path, default=None,
                        help="a speaker folder with a personal built-in-model model (default: sim-stutter, once)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=THREADS, help=f"threads per engine (default {THREADS}; the "
                        "RTF figures are for the default)")
    parser.add_argument("--full-steps", type=int, default=FULL_STEPS,
                        help=f"training steps of the full-window personal model (default {FULL_STEPS}; --quick: "
                             f"{QUICK_FULL_STEPS})")
    args = parser.parse_args(argv)
    globals()["THREADS"] = args.threads  # every engine reads it when it is built
    t0 = time.perf_counter()
    result = run(args.quick, args.speaker, args.builtin_speaker, args.rounds, args.full_steps)
    result["wall_s"] = time.perf_counter() - t0
    path = write_result("export" + ("_quick" if args.quick else ""), result)
    _print(result)
    print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main()
