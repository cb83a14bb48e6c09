"""Short phrases (issue 27 item 7): base vs personal Whisper tiny.en on one- to three-word phrases.

"Yes", "no", "help", a name: what many patients say most, and where a fine-tuned Whisper
is known to say near nothing (jumon/whisper-finetuning #17). For each sample speaker:

- **Short phrases**: the 48 phrases of ``workbench/data/prompts/short_phrases.txt``,
  synthesized for the simulated speaker (its own voice, profile and speaker seed from
  ``speaker.json``; per-phrase seeds fixed), so none was ever trained on. For the real voice,
  what its recordings offer: its test phrases (``three_way_split``, seed 0) of at most three words.
- **Sentences**: the speaker's own test phrases (never trained on), for comparison: is the
  personal model worse on short phrases than on sentences?
- **Systems**: the base model and the speaker's personal model (the Whisper tiny.en personal
  models of ``bench/bench_live.py``, trained once per speaker with the CLI's defaults and cached;
  the same files), greedy search, one recording at a time as a user would.
- **Reported**: WER, and how many phrases came out empty (the known failure), per speaker and over all;
  ``personal (no cut)`` is the personal model without the end-of-speech-aware cut of repeats
  (:mod:`workbench.speech_budget`), and ``doubled`` counts transcripts that hold a whole short
  phrase twice ("yes yes"), the personal model's failure on sim-als-like.

``--quick``: one speaker, 8 short phrases, 6 sentences, and the cached personal model if there is one
(else a 2-step one): it checks that everything runs; the figures mean little.

Full run (quiet machine): ``python -m bench.bench_short_phrases``  (writes docs/bench/short_phrases_cpu.json,
the file ``bench/summarize_words.py`` reads; ``--speakers`` writes ``short_phrases_cpu_<speakers>.json`` beside it)
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench._common import machine, run_and_write

SAMPLES = Path(__file__).resolve().parent.parent / "sample_data"
SPEAKERS = ["sim-dysarthria-severe", "sim-als-like", "sim-parkinsonian", "sim-stutter", "sim-voice-tremor",
            "sim-accent", "real/real-allison"]
MODEL = "whisper-tiny.en"
THREADS = 2  # "on 2 cores"
MAX_SHORT_WORDS = 3


# ---------------------------------------------------------------------------- shared with bench_vocabulary
def provenance() -> dict[str, Any]:
    """When and from which code a result was measured: ``date`` (UTC, ISO 8601), ``commit`` (git HEAD)
    and ``uncommitted_changes`` (whether tracked files under bench/ or workbench/ differed from it);
    None where git cannot tell (not a checkout)."""
    import datetime
    import subprocess

    out: dict[str, Any] = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                           "commit": None, "uncommitted_changes": None}
    root = SAMPLES.parent
    try:
        git = ["git", "-C", str(root)]
        out["commit"] = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                                       timeout=30).stdout.strip()
        changed = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no", "--", "bench", "workbench"],
                                 capture_output=True, text=True, check=True, timeout=30).stdout
        out["uncommitted_changes"] = bool(changed.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def speaker_synthesizer(name: str):
    """``say(text, seed) -> (n,) float32 at 16 kHz`` in a simulated sample speaker's own voice and
    profile (its ``speaker.json``), or None for a real speaker."""
    from workbench.simulate import synthesize
    from workbench.simulate.profiles import Profile

    info = json.loads((SAMPLES / name / "speaker.json").read_text())
    sim = info.get("profile") if info.get("simulated") else None
    if not sim:
        return None
    profile = Profile.from_dict(sim["profile"])
    voice = sim["voice"]
    return lambda text, seed: synthesize(text, voice, profile, seed=seed)


def personal_model_file(name: str, quick: bool, backend) -> Path:
    """The speaker's personal Whisper tiny.en (bench_live's, trained once and cached; ``backend``: the
    caller's base model); in quick mode the full one when it is cached, else a 2-step one."""
    from bench._common import personal_model_path
    from bench.bench_live import CACHE, personal_model

    full = personal_model_path(CACHE, name, MODEL, "full", backend)
    return full if quick and full.is_file() else personal_model(name, quick, backend)


def test_phrases(name: str, n: int | None = None) -> tuple[list[np.ndarray], list[str]]:
    """The speaker's test phrases (``three_way_split``, seed 0: never trained on): waveforms and texts."""
    from bench.bench_live import _speaker_data

    return _speaker_data(name, n)


def transcribe_pair(backend, submodel: Path, wavs: list[np.ndarray], decoder=None) -> tuple[list[str], list[str]]:
    """``(base, personal)`` transcripts, one recording at a time, with ``decoder`` (None, or a word-list bias)."""
    from workbench.adapters import load_submodel

    adapted, _ = load_submodel(backend, submodel)
    try:
        with adapted.disabled():
            base = [adapted.transcribe([w], decoder=decoder)[0] for w in wavs]
        personal = [adapted.transcribe([w], decoder=decoder)[0] for w in wavs]
    finally:
        adapted.remove()
    return base, personal


# ---------------------------------------------------------------------------- this benchmark
def short_set(name: str, n: int | None) -> tuple[list[np.ndarray], list[str], str]:
    """Short phrases for a speaker: synthesized (simulated speakers) or its short test phrases (real)."""
    from workbench.prompts import load_prompts
    from workbench.text import normalize_text

    say = speaker_synthesizer(name)
    if say is None:
        wavs, refs = test_phrases(name)
        keep = [i for i, r in enumerate(refs) if len(r.split()) <= MAX_SHORT_WORDS]
        return [wavs[i] for i in keep][:n], [refs[i] for i in keep][:n], "its test phrases of <= 3 words"
    phrases = load_prompts("short_phrases")[:n]
    return [say(p, 1000 + i) for i, p in enumerate(phrases)], [normalize_text(p) for p in phrases], \
        "short_phrases.txt, synthesized in its voice"


def _scores(refs: list[str], hyps: list[str]) -> dict[str, Any]:
    from workbench.evaluate import error_counts

    c = error_counts(refs, hyps)
    return {"wer": c.rate, "errors": c.errors, "words": c.ref_len, "empty": sum(not h.strip() for h in hyps),
            "doubled": sum(_doubled(r, h) for r, h in zip(refs, hyps, strict=True)), "n": len(refs)}


def _doubled(ref: str, hyp: str) -> bool:
    """Whether ``hyp`` says the phrase ``ref`` twice or more in a row (and nothing else).

    >>> _doubled("yes", "yes yes"), _doubled("good night", "good night good night"), _doubled("no", "no")
    (True, True, False)
    """
    r, h = ref.split(), hyp.split()
    return bool(r) and len(h) >= 2 * len(r) and len(h) % len(r) == 0 and h == r * (len(h) // len(r))


def transcribe_uncut(backend, submodel: Path, wavs: list[np.ndarray]) -> list[str]:
    """The personal model's transcripts without the end-of-speech-aware cut (before it existed)."""
    from workbench.adapters import load_submodel

    adapted, _ = load_submodel(backend, submodel)
    backend.speech_cut = False
    try:
        return [adapted.transcribe([w])[0] for w in wavs]
    finally:
        backend.speech_cut = True
        adapted.remove()


def run(device: str, quick: bool, speakers: list[str] | None = None, threads: int = THREADS) -> dict[str, Any]:
    import torch

    from workbench.models import load_base_model

    started = provenance()  # the code this run imported: its commit when it started
    torch.set_num_threads(threads)
    speakers = speakers or (SPEAKERS[:1] if quick else SPEAKERS)
    n_short, n_sent = (8, 6) if quick else (None, None)
    backend = load_base_model(MODEL)
    rows: dict[str, dict] = {}
    for spk in speakers:
        t0 = time.perf_counter()
        submodel = personal_model_file(spk, quick, backend)
        s_wavs, s_refs, source = short_set(spk, n_short)
        l_wavs, l_refs = test_phrases(spk, n_sent)
        s_base, s_pers = transcribe_pair(backend, submodel, s_wavs)
        l_base, l_pers = transcribe_pair(backend, submodel, l_wavs)
        s_raw, l_raw = transcribe_uncut(backend, submodel, s_wavs), transcribe_uncut(backend, submodel, l_wavs)
        rows[spk] = {"source": source, "submodel": submodel.name,
                     "short": {"base": _scores(s_refs, s_base), "personal": _scores(s_refs, s_pers),
                               "personal (no cut)": _scores(s_refs, s_raw)},
                     "sentences": {"base": _scores(l_refs, l_base), "personal": _scores(l_refs, l_pers),
                                   "personal (no cut)": _scores(l_refs, l_raw)},
                     "changed_by_cut": [{"ref": r, "no cut": a, "cut": b}
                                        for r, a, b in zip(s_refs + l_refs, s_raw + l_raw, s_pers + l_pers,
                                                           strict=True) if a != b],
                     "examples": [{"ref": r, "base": b, "personal": p}
                                  for r, b, p in list(zip(s_refs, s_base, s_pers, strict=True))[:6]],
                     "seconds": time.perf_counter() - t0}
        r = rows[spk]
        print(f"{spk:22s} short: base {r['short']['base']['wer']:.3f} personal {r['short']['personal']['wer']:.3f} "
              f"(no cut {r['short']['personal (no cut)']['wer']:.3f}; empty {r['short']['base']['empty']}/"
              f"{r['short']['personal']['empty']} of {len(s_refs)}, doubled {r['short']['base']['doubled']}/"
              f"{r['short']['personal']['doubled']}/{r['short']['personal (no cut)']['doubled']})  "
              f"sentences: base {r['sentences']['base']['wer']:.3f} personal {r['sentences']['personal']['wer']:.3f} "
              f"(no cut {r['sentences']['personal (no cut)']['wer']:.3f})", flush=True)
    return {"machine": machine(device), **started, "model": MODEL, "threads": threads, "quick": quick,
            "max_short_words": MAX_SHORT_WORDS, "speakers": rows, "overall": overall_scores(rows)}


def overall_scores(rows: dict[str, dict]) -> dict[str, dict]:
    """Every speaker's phrases together, ``"<short|sentences>_<system>"`` -> ``_scores``' fields but
    the examples (the WER is total errors over total reference words, not a mean of speakers' WERs)."""
    overall = {}
    for part in ("short", "sentences"):
        for system in ("base", "personal", "personal (no cut)"):
            cells = [r[part][system] for r in rows.values()]
            words = sum(c["words"] for c in cells)
            overall[f"{part}_{system}"] = {"wer": sum(c["errors"] for c in cells) / max(1, words),
                                           "errors": sum(c["errors"] for c in cells), "words": words,
                                           "empty": sum(c["empty"] for c in cells),
                                           "doubled": sum(c["doubled"] for c in cells), "n": sum(c["n"] for c in cells)}
    return overall


def main(argv: list[str] | None = None) -> dict:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--speakers", nargs="+", default=None, help=f"sample speakers (default: {' '.join(SPEAKERS)})")
    parser.add_argument("--threads", type=int, default=THREADS,
                        help=f"torch threads (default {THREADS}; 1 to run beside another job: the WERs do not change)")
    args = parser.parse_args(argv)
    tag = "_" + "_".join(s.replace("/", "-") for s in args.speakers) if args.speakers else ""  # not the full run's
    result, _ = run_and_write(f"short_phrases_{args.device.split(':')[0]}{tag}" + ("_quick" if args.quick else ""),
                              lambda: run(args.device, args.quick, args.speakers, args.threads))
    for key, v in result["overall"].items():
        print(f"{key:28s} WER {v['wer']:.3f}  empty {v['empty']} of {v['n']}  doubled {v['doubled']}")
    return result


if __name__ == "__main__":
    main()
