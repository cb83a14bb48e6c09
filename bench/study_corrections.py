"""Do corrections made during use teach the personal model? (issue 25, item 3)

For one sample speaker and Whisper tiny.en, on the speaker's fixed test phrases
(``three_way_split`` seed 0, never trained on), three conditions per training seed:

- **A**: personalize on the first ``--prompted`` (25) prompted takes;
- **C**: personalize on the first ``prompted + used`` (50) prompted takes;
- **B**: *use* the personal model of A live: the next ``--used`` (25) prompted recordings are
  streamed through :class:`workbench.live.StreamingRecognizer` with 1 s pauses between them,
  each committed caption line is corrected with its reference and saved with
  :func:`workbench.live.save_correction` (the caption's audio span, marked as coming from use);
  then personalize again on the A takes plus those corrections. A phrase that got no caption at
  all cannot be corrected by a user and is skipped (counted).

What the user says during use is new speech, not the recordings they made when prompted: by
default (``--use-audio new``) each used phrase is said again by the same simulated speaker (its
voice and profile from ``speaker.json``, a new utterance seed), so B trains on other renditions of
C's phrases. ``--use-audio same`` streams the prompted recordings themselves: after silence trimming
the corrected takes are then those recordings sample for sample, and B trains exactly as C does
(the Submodel weights are equal), which checks that a correction loses nothing of the audio. Every stage works on its own copy of the speaker folder (under
``~/.cache/workbench/study_corrections``) and is saved to ``docs/bench/study_corrections.partial.json``
when done, so an interrupted run resumes at the next stage. ``--quick``: 12 + 4 takes, one seed,
2 training steps (checks that it runs; the figures mean nothing).

    python -m bench.study_corrections [--speaker sim-dysarthria-severe] [--seeds 0 1 2] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench._common import Partial, defaults_tag, machine, run_and_write
from workbench.constants import SAMPLE_RATE, cache_dir

SAMPLES = Path(__file__).resolve().parent.parent / "sample_data"
MODEL = "whisper-tiny.en"
WORK = Path(os.environ.get("WORKBENCH_BENCH_CACHE") or cache_dir()) / "study_corrections"
GAP_S = 1.0
MAX_STEPS = 120  # the default Whisper run converges in 20-70 steps (docs/results.md); early stopping ends it sooner


def _fresh_copy(speaker: str, name: str) -> Path:
    work = WORK / name / Path(speaker).name  # the folder keeps the speaker's name
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(SAMPLES / speaker, work, ignore=shutil.ignore_patterns("submodels", "reports"))
    return work


def _personalize(folder: Path, backend, *, seed: int, max_train: int, quick: bool) -> dict[str, Any]:
    from workbench.workflow import default_config, finish, prepare, train

    # Step-based, so that the figures do not depend on how busy the machine is: early stopping on the
    # validation recordings, at most MAX_STEPS steps, no clock (a run's time is reported beside it).
    settings = {"max_steps": 2, "eval_every": 1} if quick else {"max_steps": MAX_STEPS}
    config = default_config(backend, time_limit_s=None, seed=seed, **settings)
    plan = prepare(folder, backend=backend, config=config, seed=0, max_train=max_train)  # seed 0: the split
    train(plan, progress=False)
    run = finish(plan)
    run.adapted.remove()
    return {"wer": run.comparison.wer_after, "wer_before": run.comparison.wer_before,
            "train_takes": len(plan.train) + len(plan.valid), "submodel": str(run.submodel_path),
            "steps": run.train_result.steps, "stopped": run.train_result.stopped_reason, "best_step": run.train_result.best_step}


def new_rendition(source, utt) -> np.ndarray:
    """``utt``'s phrase said again by the simulated speaker of ``source`` (its voice and profile from
    ``speaker.json``), with another utterance seed: ``(samples,)`` float32 at 16 kHz."""
    from workbench.simulate import Profile, synthesize

    meta = json.loads((source.root / "speaker.json").read_text())["profile"]
    profile = Profile.parse(meta["profile_spec"], seed=int(meta["seed"]))
    return synthesize(utt.prompt, meta["voice"], profile, seed=int(utt.extra["seed"]) + 1)


def use_and_correct(folder: Path, backend, submodel: str, used: list, source, *, use_audio: str = "new") -> dict[str, Any]:
    """Stream ``used`` takes (from ``source``, a SpeakerCorpus; ``use_audio="new"``: a new rendition of
    each, see :func:`new_rendition`) through the personal model; save each caption line corrected
    with its reference as a take from use in ``folder``."""
    from workbench.evaluate import wer
    from workbench.live import StreamingRecognizer, save_correction
    from workbench.text import normalize_text

    gap = np.zeros(int(GAP_S * SAMPLE_RATE), np.float32)
    rec = StreamingRecognizer(backend, submodel=submodel, keep_s=30.0)
    saved, skipped, refs, hyps = 0, 0, [], []
    try:
        for utt in used:
            wav = new_rendition(source, utt) if use_audio == "new" else source.load_audio(utt)
            t0 = rec.now_s
            events = []
            for chunk in (wav, gap):
                for s in range(0, len(chunk), SAMPLE_RATE // 10):
                    events += rec.feed(chunk[s: s + SAMPLE_RATE // 10])
            line = [e for e in events if e.kind == "commit" and e.start_s >= t0 - 0.2]
            ref = normalize_text(utt.prompt)
            refs.append(ref)
            hyps.append(" ".join(e.text for e in line))
            if not line:  # nothing on screen to correct
                skipped += 1
                continue
            span = rec.audio(max(t0, line[0].start_s - 0.3), min(rec.now_s, line[-1].end_s + 0.4))
            save_correction(folder, utt.prompt, span, caption=hyps[-1])
            saved += 1
    finally:
        rec.close()
    return {"saved": saved, "skipped": skipped, "caption_wer": wer(refs, hyps)}


def run(speaker: str, seeds: list[int], prompted: int, used_n: int, quick: bool, use_audio: str = "new") -> dict[str, Any]:
    import torch

    from workbench.corpus import SpeakerCorpus
    from workbench.live.corrections import use_counts
    from workbench.models import load_base_model
    from workbench.workflow import three_way_split

    torch.set_num_threads(2)
    backend = load_base_model(MODEL)
    # resumable; both kinds of use audio are kept in one file (a result shows the other one too)
    partial = Partial("study_corrections" + ("_quick" if quick else ""),
                      {"speaker": speaker, "prompted": prompted, "used": used_n, "quick": quick,
                       "defaults": defaults_tag(backend)})
    done = partial.runs
    source = SpeakerCorpus.open(SAMPLES / speaker)
    _, _, test = three_way_split(source, seed=0)
    test_ids = {t.utt_id for t in test}
    rest = [u for u in source.utterances() if u.utt_id not in test_ids]  # in the order max_train cuts
    if len(rest) < prompted + used_n:
        raise SystemExit(f"{speaker} has {len(rest)} takes outside its test phrases; need {prompted + used_n}")
    used = rest[prompted: prompted + used_n]  # the max_train cap takes the first `prompted` of rest
    tag = speaker.replace("/", "_") + ("-quick" if quick else "")

    def stage(key: str, fn) -> dict:
        def timed() -> dict:
            t0 = time.perf_counter()
            row = {**fn(), "seconds": time.perf_counter() - t0}
            print(f"{key}: {row}", flush=True)
            return row

        return partial.run(key, timed)

    for seed in seeds:
        a = stage(f"A|{seed}", lambda: _personalize(_fresh_copy(speaker, f"{tag}-A{seed}"), backend, seed=seed,
                                                    max_train=prompted, quick=quick))
        stage(f"C|{seed}", lambda: _personalize(_fresh_copy(speaker, f"{tag}-C{seed}"), backend, seed=seed,
                                                max_train=prompted + used_n, quick=quick))

        def b_stage() -> dict:
            folder = _fresh_copy(speaker, f"{tag}-B{seed}")
            use = use_and_correct(folder, backend, a["submodel"], used, source, use_audio=use_audio)
            corpus = SpeakerCorpus.open(folder)
            use["kept_out"] = use_counts(corpus.utterances(), [], three_way_split(corpus, seed=0)[2])["kept_out"]
            return {**_personalize(folder, backend, seed=seed, max_train=prompted, quick=quick), "use": use}

        stage(f"B|{seed}" if use_audio == "new" else f"B-same|{seed}", b_stage)
    b = "B" if use_audio == "new" else "B-same"
    names = {"A": f"A: {prompted} prompted takes", b: f"B: {prompted} prompted + corrections from use"
             + ("" if use_audio == "new" else " (the prompted recordings streamed)"),
             "C": f"C: {prompted + used_n} prompted takes"}
    conditions = {}
    for c, label in names.items():
        wers = [done[f"{c}|{s}"]["wer"] for s in seeds]
        conditions[label] = {"wer": wers, "mean": float(np.mean(wers)),
                             "train_takes": [done[f"{c}|{s}"]["train_takes"] for s in seeds]}
    other = "B-same" if b == "B" else "B"
    if all(f"{other}|{s}" in done for s in seeds):  # the other kind of use audio, measured before: shown too
        wers = [done[f"{other}|{s}"]["wer"] for s in seeds]
        conditions[f"B: {prompted} prompted + corrections from use" + (" (the prompted recordings streamed)" if other == "B-same" else "")] = {
            "wer": wers, "mean": float(np.mean(wers)), "train_takes": [done[f"{other}|{s}"]["train_takes"] for s in seeds]}
    uses = [done[f"{b}|{s}"]["use"] for s in seeds]
    return {"machine": machine("cpu"), "speaker": speaker, "model": MODEL, "seeds": seeds, "prompted": prompted,
            "used": used_n, "use_audio": use_audio, "test_phrases": len(test), "quick": quick, "conditions": conditions,
            "base_wer": done[f"A|{seeds[0]}"]["wer_before"],
            "use_caption_wer": float(np.mean([u["caption_wer"] for u in uses])),
            "corrections_saved": [u["saved"] for u in uses], "captions_missed": [u["skipped"] for u in uses],
            "kept_out": sum(u["kept_out"] for u in uses), "_partial": partial}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speaker", default="sim-dysarthria-severe")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--prompted", type=int, default=25)
    parser.add_argument("--used", type=int, default=25)
    parser.add_argument("--use-audio", choices=["new", "same"], default="new",
                        help="what is said during use: new renditions of the phrases (default) or the prompted recordings")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.prompted, args.used = args.seeds[:1], 12, 4  # the trainer needs 10 recordings
    result, _ = run_and_write("study_corrections" + ("_quick" if args.quick else ""),
                              lambda: run(args.speaker, args.seeds, args.prompted, args.used, args.quick, args.use_audio))
    for name, row in result["conditions"].items():
        print(f"{name}: {', '.join(f'{100 * w:.1f} %' for w in row['wer'])} (mean {100 * row['mean']:.1f} %)")
    return result


if __name__ == "__main__":
    main()
