"""Speaker embeddings: time to embed 100 utterances per source, and what the embeddings show.

Timing: 100 sample_data utterances (every speaker, ~4.5 min of audio), loaded
once; each source is timed **interleaved** (``compare_calls``) with torch at 1
thread and at its default thread count, because on a 2-core machine shared
with other work every extra thread is a barrier that waits for a busy core.
The batched d-vector path is also compared with one call per utterance
(resemblyzer's ``embed_utterance`` loop). Target: < 5 s per 100 utterances.

Quality (not with ``--quick``): nearest-centroid speaker identification on
held-out utterances of all 640 sample_data takes (5 folds), per source; cosine
distances between speakers, typical vs atypical groups; and, when espeak-ng is
installed, a small study with **several simulated speakers per profile**
(each with its own espeak voice) to test whether atypical speakers of the same
profile sit closer to each other than to typical speakers.

Run: ``python -m bench.bench_embeddings [--quick] [--device cpu] [--no-profiles]``
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from bench._common import bench_main, compare_calls, machine
from workbench.constants import SAMPLE_RATE

if TYPE_CHECKING:
    from workbench.models import ASRBackend

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DATA = ROOT / "sample_data"
# coarser groups for sample_data, where every profile has one speaker
GROUPS = {"typical": "typical", "dysarthria-severe": "dysarthria-like", "als-like": "dysarthria-like",
          "parkinsonian": "dysarthria-like"}
STUDY_PROFILES = ("typical", "dysarthria-severe", "parkinsonian")


def _group(profile: str) -> str:
    head = profile.split("+")[0].split(":")[0]  # "parkinsonian:1.0+articulation:0.5" -> "parkinsonian"
    if head in GROUPS:
        return GROUPS[head]
    if "tremor" in profile and "slow" in profile:  # sim-voice-tremor: voice-dominant dysarthria-like
        return "dysarthria-like"
    return profile  # accent, stutter: one speaker each, so no within-profile distance


def _encoder_backend() -> tuple[Any, str]:
    """The shipped base model, or (until its weights exist) a random one of the same size."""
    from workbench.models import load_base_model
    from workbench.models.tiny import TinyBackend, TinyConfig, TinyConformerCTC, default_model_dir

    if (default_model_dir() / "model.safetensors").is_file():
        return load_base_model("tiny"), "shipped workbench-tiny weights"
    torch.manual_seed(0)
    backend = TinyBackend(TinyConformerCTC(TinyConfig()).eval(), name="random-tiny").freeze()
    return backend, "RANDOM weights (shipped weights not built yet): same compute, meaningless features"


def _waves(n: int) -> list[np.ndarray]:
    """``n`` sample_data takes spread evenly over the speakers (deterministic)."""
    from workbench.corpus import list_speakers

    corpora = list_speakers(SAMPLE_DATA)
    per = -(-n // len(corpora))
    out = []
    for c in corpora:
        utts = c.utterances()
        step = max(1, len(utts) // per)
        out += [c.load_audio(u) for u in utts[::step][:per]]
    return out[:n]


def timing(waves: list[np.ndarray], backend: ASRBackend, *, repeat: int, dvector: bool) -> dict[str, Any]:
    from workbench import embeddings as E
    from workbench.embeddings import dvector as dv

    default_threads = torch.get_num_threads()
    fns = {}
    for threads in sorted({1, default_threads}):
        if dvector:
            fns[f"dvector_t{threads}"] = lambda t=threads: E.embed_utterances(waves, "dvector", threads=t)
        fns[f"encoder_t{threads}"] = lambda t=threads: E.embed_utterances(waves, "encoder", backend=backend,
                                                                          threads=t)
    if dvector:
        fns["dvector_loop_t1"] = lambda: [E.embed_utterances([w], "dvector", threads=1) for w in waves]
    times = compare_calls(fns, repeat=repeat, warmup=1)
    audio_s = sum(len(w) for w in waves) / SAMPLE_RATE
    n = len(waves)
    out: dict[str, Any] = {"utterances": n, "audio_s": audio_s, "default_threads": default_threads,
                           "times_s": times}
    for src in ("dvector", "encoder"):
        if f"{src}_t1" not in times:
            continue
        # the summarizer reads keys ending in _s_per_100: the 1-thread figure (see the module docstring)
        out[f"{src}_s_per_100"] = 100 * times[f"{src}_t1"] / n
        out[f"{src}_s_per_100_default_threads"] = 100 * times[f"{src}_t{default_threads}"] / n
        out[f"{src}_x_realtime"] = audio_s / times[f"{src}_t1"]
    if dvector:
        out["dvector_batched_vs_loop"] = times["dvector_loop_t1"] / times["dvector_t1"]
        dv._dvector_model.cache_clear()
        t0 = time.perf_counter()
        dv._dvector_model()
        out["dvector_load_s"] = time.perf_counter() - t0
    return out


def _distances(table: Any, groups: dict[str, str]) -> dict[str, Any]:
    from workbench import embeddings as E

    ids, s = E.speaker_embeddings(table)
    d = E.cosine_distances(s)
    rows = E.profile_separation((ids, s), groups)
    return {"speakers": ids, "groups": [groups[i] for i in ids], "distance_matrix": d.round(4).tolist(),
            "separation": [vars(r) for r in rows]}


def quality(backend: ASRBackend, weights: str, *, dvector: bool) -> dict[str, Any]:
    from workbench import embeddings as E

    out: dict[str, Any] = {"encoder_weights": weights}
    sources = (["dvector"] if dvector else []) + ["encoder"]
    for src in sources:
        t0 = time.perf_counter()
        table = E.embed_corpora(SAMPLE_DATA, src, backend=backend, cache=False, threads=1)
        secs = time.perf_counter() - t0
        res = {"utterances": len(table), "embed_s": secs}
        for std in (False, True):
            r = E.speaker_id_accuracy(table, standardize=std)
            res["standardized" if std else "raw"] = {"accuracy": r.accuracy, "per_speaker": r.per_speaker}
        groups = {s: _group(p) for s, p in table.speaker_profiles().items()}
        res["distances"] = _distances(table, groups)
        res["distances_standardized"] = _distances(table.standardized(), groups)
        out[src] = res
        print(f"  {src}: speaker id {100 * res['raw']['accuracy']:.1f}% (standardized "
              f"{100 * res['standardized']['accuracy']:.1f}%) on {len(table)} utterances, {secs:.0f} s")
        for kind in ("distances", "distances_standardized"):
            for row in res[kind]["separation"]:
                print(f"    {kind}: {row['profile']}: within {row['within']:.3f} vs to typical "
                      f"{row['to_typical']:.3f} -> {'closer' if row['closer'] else 'NOT closer'}")
    out["learned"] = "not measured: needs a Submodel bank trained on the sample_data speakers (HRA embedding space)"
    return out


def _study_draw(backend: ASRBackend, *, dvector: bool, n_per_speaker: int, speakers_per_profile: int,
                seed: int) -> dict[str, Any]:
    """One draw of voices: ``speakers_per_profile`` speakers per profile, each its own espeak base voice."""
    from workbench import embeddings as E
    from workbench.simulate import random_voice, simulate_speaker

    rng = np.random.default_rng(seed)
    voices, used = [], set()
    while len(voices) < speakers_per_profile * len(STUDY_PROFILES):
        v = random_voice(rng, engines=["espeak"])
        if v.name not in used:  # a different base voice for every speaker
            used.add(v.name)
            voices.append(v)
    out: dict[str, Any] = {"seed": seed, "speakers": {}}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        k = 0
        for prof in STUDY_PROFILES:
            for j in range(speakers_per_profile):
                sid = f"study-{prof}-{j}"
                simulate_speaker(tmp, speaker_id=sid, voice=voices[k], profile=prof, n=n_per_speaker,
                                 seed=seed * 100 + k, progress=False)
                out["speakers"][sid] = {"profile": prof, "voice": voices[k].spec()}
                k += 1
        out["simulate_s"] = time.perf_counter() - t0
        for src in (["dvector"] if dvector else []) + ["encoder"]:
            table = E.embed_corpora(tmp, src, backend=backend, cache=False, threads=1)
            groups = {s: out["speakers"][s]["profile"] for s in table.speakers}
            out[src] = {"raw": _distances(table, groups), "standardized": _distances(table.standardized(), groups),
                        "speaker_id_accuracy": E.speaker_id_accuracy(table).accuracy}
            for kind in ("raw", "standardized"):
                for row in out[src][kind]["separation"]:
                    print(f"  study seed {seed} {src} ({kind}): {row['profile']}: within {row['within']:.3f} vs "
                          f"to typical {row['to_typical']:.3f} -> {'closer' if row['closer'] else 'NOT closer'}")
    return out


def profile_study(backend: ASRBackend, *, dvector: bool, n_per_speaker: int = 16, speakers_per_profile: int = 4,
                  seeds: tuple[int, ...] = (7, 8, 9)) -> dict[str, Any]:
    """Several simulated speakers per profile, each with its own espeak voice; several voice draws.

    Returns per draw the distances, and per source/profile how many draws had
    ``within < to_typical`` (voices are random, so one draw can go either way).
    """
    draws = [_study_draw(backend, dvector=dvector, n_per_speaker=n_per_speaker,
                         speakers_per_profile=speakers_per_profile, seed=s) for s in seeds]
    summary: dict[str, Any] = {}
    for src in (["dvector"] if dvector else []) + ["encoder"]:
        for kind in ("raw", "standardized"):
            for prof in STUDY_PROFILES[1:]:
                rows = [r for d in draws for r in d[src][kind]["separation"] if r["profile"] == prof]
                summary[f"{src}/{kind}/{prof}"] = {
                    "closer_in_draws": sum(r["closer"] for r in rows), "draws": len(rows),
                    "within_mean": float(np.mean([r["within"] for r in rows])),
                    "to_typical_mean": float(np.mean([r["to_typical"] for r in rows]))}
    for key, v in summary.items():
        print(f"  study {key}: closer in {v['closer_in_draws']}/{v['draws']} draws; mean within "
              f"{v['within_mean']:.3f} vs to typical {v['to_typical_mean']:.3f}")
    return {"n_per_speaker": n_per_speaker, "speakers_per_profile": speakers_per_profile,
            "profiles": list(STUDY_PROFILES), "draws": draws, "summary": summary}


def run(device: str = "cpu", quick: bool = False, profiles: bool = True) -> dict[str, Any]:
    from workbench._optional import has_module

    if device != "cpu":
        raise SystemExit("this benchmark measures the CPU (the target is < 5 s per 100 utterances on it)")
    dvector = has_module("resemblyzer")
    if not dvector:
        print("resemblyzer is not installed: d-vectors are skipped (pip install 'workbench[embed]')")
    backend, weights = _encoder_backend()
    waves = _waves(20 if quick else 100)
    result: dict[str, Any] = {"machine": machine(device), "encoder_weights": weights, "dvector": dvector}
    try:
        result["load_average"] = [round(x, 2) for x in os.getloadavg()]  # 1/5/15 min: how busy the machine was
    except OSError:
        pass
    result.update(timing(waves, backend, repeat=1 if quick else 3, dvector=dvector))
    for src in ("dvector", "encoder"):
        if f"{src}_s_per_100" in result:
            print(f"{src}: {result[f'{src}_s_per_100']:.2f} s per 100 utterances at 1 thread, "
                  f"{result[f'{src}_s_per_100_default_threads']:.2f} s at {result['default_threads']} threads "
                  f"({result[f'{src}_x_realtime']:.0f}x real time); target < 5 s")
    if dvector:
        print(f"d-vector batched vs one call per utterance: {result['dvector_batched_vs_loop']:.1f}x; "
              f"weights load {1e3 * result['dvector_load_s']:.0f} ms")
    if not quick:
        result["quality"] = quality(backend, weights, dvector=dvector)
        if profiles and shutil.which("espeak-ng"):
            result["profile_study"] = profile_study(backend, dvector=dvector)
        elif profiles:
            print("espeak-ng is not installed: the same-profile study is skipped")
    return result


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    profiles = "--no-profiles" not in argv
    argv = [a for a in argv if a != "--no-profiles"]
    bench_main(__doc__, lambda device, quick: run(device, quick, profiles), "embeddings", argv)


if __name__ == "__main__":
    main()
