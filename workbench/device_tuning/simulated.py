"""Simulated speakers with task labels, for the split's task heads and joint training.

:func:`simulated_speakers` draws ``per_class`` random espeak voices for every profile class of
:data:`~workbench.device_tuning.heads.PROFILE_TEMPLATES` (severity uniform in [0.3, 1], 0 for
``typical``), synthesizes ``utts`` everyday phrases per speaker with :mod:`workbench.simulate`
and computes each recording's d-vector (the speaker head's target). The set is cached under
``~/.cache/workbench/device_tuning_tasks/`` by its settings, so the recipe and the benchmarks
that ask for the same set share one synthesis. The profiles are simulated: the atypicality head
trained on them is a research output on simulated speakers, never a clinical score.

Each item is ``{"wav" (S,) float32 16 kHz, "text", "speaker", "profile", "severity", "dvector" (256,),
"voice", "profile_spec", "seed"}``.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from workbench._deprecated import upgrade_keys

__all__ = ["heldout_speakers", "simulated_speakers"]


def _synth_job(job: tuple) -> tuple[int, Any, str | None]:
    idx, text, voice, profile, seed = job
    import torch

    torch.set_num_threads(1)
    from workbench import simulate
    from workbench.errors import WorkbenchError

    try:
        wav = simulate.synthesize(text, voice, profile, seed=seed)
    except (WorkbenchError, OSError) as exc:  # one failing voice must not stop the set
        return idx, None, f"{type(exc).__name__}: {exc}"
    return idx, (np.clip(wav, -1, 1) * 32767).astype(np.int16), None


def simulated_speakers(per_class: int, utts: int, seed: int = 0, *, cache: Path | None = None,
                       workers: int = 2, log=print) -> tuple[list[dict], dict]:
    """``per_class`` random espeak voices per profile class, ``utts`` phrases each (cached).

    Returns:
        the items (module docstring) and ``{"cache", "speakers", "utterances", "synth_s"}``.
    """
    from multiprocessing import get_context

    import torch

    from workbench import simulate
    from workbench.constants import cache_dir
    from workbench.device_tuning.heads import PROFILE_TEMPLATES
    from workbench.embeddings import dvector_fingerprint, embed_utterances
    from workbench.prompts import load_prompts
    from workbench.text import normalize_text

    phrases = sorted({normalize_text(p) for p in load_prompts("everyday") if normalize_text(p)})
    key = hashlib.sha256(json.dumps([per_class, utts, seed, len(phrases), PROFILE_TEMPLATES, "v1",
                                     dvector_fingerprint()]).encode()).hexdigest()[:12]
    path = (cache or cache_dir() / "device_tuning_tasks") / f"sim-{key}.pt"
    if path.exists():
        data = upgrade_keys(torch.load(path, weights_only=False), {"synth_seconds": "synth_s"})  # an older cache
        log(f"   loaded {len(data['items'])} simulated utterances from {path}")
    else:
        rng = np.random.default_rng(seed)
        speakers, jobs = [], []
        for cls, template in PROFILE_TEMPLATES.items():
            for i in range(per_class):
                voice = simulate.random_voice(rng, engines=["espeak"])  # one engine: no engine-class shortcut
                sev = 0.0 if cls == "typical" else float(rng.uniform(0.3, 1.0))
                spec = template.format(s=sev)
                spk = {"speaker": f"{cls}-{i:02d}", "profile": cls, "severity": round(sev, 2), "voice": voice.spec(),
                       "profile_spec": spec, "seed": int(rng.integers(1 << 30))}
                speakers.append(spk)
                profile = simulate.Profile.parse(spec, seed=spk["seed"])
                for _ in range(utts):
                    jobs.append((len(jobs), phrases[int(rng.integers(len(phrases)))], voice, profile,
                                 int(rng.integers(1 << 30))))
        owner = [s for s in speakers for _ in range(utts)]
        t0 = time.perf_counter()
        with get_context("fork").Pool(max(1, min(workers, os.cpu_count() or 1))) as pool:
            done = sorted(pool.imap_unordered(_synth_job, jobs, chunksize=8))
        items = []
        for (idx, pcm, err), job in zip(done, jobs, strict=True):
            if err is None and 0.3 * 16000 < len(pcm) < 12 * 16000:
                items.append({**owner[idx], "pcm": pcm, "text": job[1]})
            elif err:
                log(f"   synthesis failed: {err}")
        wavs = [it["pcm"].astype(np.float32) / 32767 for it in items]
        dvec = embed_utterances(wavs, "dvector", threads=1)
        data = {"items": items, "dvectors": dvec, "speakers": speakers, "synth_s": time.perf_counter() - t0}
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(data, path)
        log(f"   synthesized {len(items)} utterances of {len(speakers)} speakers in {data['synth_s']:.0f} s "
            f"-> {path}")
    items = [{**{k: v for k, v in it.items() if k != "pcm"}, "wav": it["pcm"].astype(np.float32) / 32767,
              "dvector": d} for it, d in zip(data["items"], data["dvectors"], strict=True)]
    return items, {"cache": str(path), "speakers": len(data["speakers"]), "utterances": len(items),
                   "synth_s": round(float(data["synth_s"]), 1)}


def heldout_speakers(items: list[dict], per_class: int) -> set[str]:
    """``per_class`` speakers of every profile class (the last ones by name) held out from training."""
    by: dict[str, list[str]] = {}
    for it in items:
        by.setdefault(it["profile"], [])
        if it["speaker"] not in by[it["profile"]]:
            by[it["profile"]].append(it["speaker"])
    return {s for spk in by.values() for s in sorted(spk)[len(spk) - min(per_class, len(spk) - 1):]}
