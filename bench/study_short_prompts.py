"""Short training prompts (issue 27 item 7): do short takes close the personal model's short-phrase gap?

bench_short_phrases found that the personal Whisper tiny.en gains much less on one- to three-word
phrases than on sentences (e.g. sim-stutter: short 57.5 -> 50.0 %, sentences 40.7 -> 8.8 %). The
sample speakers recorded only ``everyday.txt`` (two to seven words, none of one), so the personal
model never saw a short take. This study asks whether a few short takes fix that. For each
simulated sample speaker and seed, two personal models are trained the way bench_live and
bench_short_phrases train theirs (the CLI's defaults, :func:`workbench.workflow.default_config`:
step-based with early stopping, the clock only a ceiling; the speaker's split, seed 0), with the
training seed ``seed``:

- **personal**: the speaker's usual training recordings;
- **personal + short prompts**: the same, plus ``--n-short`` takes of
  ``workbench/data/prompts/short_commands.txt`` (the first N, in file order) synthesized in the
  speaker's own voice and profile exactly as bench_short_phrases synthesizes its test phrases
  (:func:`bench.bench_short_phrases.speaker_synthesizer`; per-prompt seeds 2000 + i), silence
  trimmed as every recording is when it is loaded. They join the TRAINING part only: the
  validation takes (early stopping, the checkpoint kept) and the test phrases are unchanged.

Both are scored, with the base model, on the 48 short test phrases (``short_phrases.txt``,
synthesized as in bench_short_phrases) and on the speaker's test sentences, with bench_short_phrases'
decoding (:func:`~bench.bench_short_phrases.transcribe_pair`: greedy search, one recording at a time,
the end-of-speech-aware cut on). The training list shares no phrase and no word with the test list
(checked here before anything runs, and reported): the 48 test phrases are never trained on, and
nothing is chosen on them. The real voice is left out (it cannot be synthesized).

Every finished (speaker, seed) is saved at once (``docs/bench/study_short_prompts_cpu.partial.json``,
:class:`bench._common.Partial`): an interrupted run goes on where it stopped, and a rerun with more
``--seeds`` trains only the new seeds. ``--quick``: one speaker, 2 training steps, 8 short phrases and
6 sentences: it checks that everything runs; the figures mean nothing.

Full run (quiet machine): ``python -m bench.study_short_prompts``  (writes
docs/bench/study_short_prompts_cpu.json, read by ``bench/summarize_words.py``; ``--speakers`` writes
``study_short_prompts_cpu_<speakers>.json`` beside it)
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._common import Partial, defaults_tag, machine, write_result
from bench.bench_short_phrases import MODEL, SAMPLES, THREADS, _scores, provenance, short_set, speaker_synthesizer, \
    transcribe_pair
from bench.bench_short_phrases import SPEAKERS as ALL_SPEAKERS
from bench.bench_short_phrases import test_phrases as sentence_set  # (not a pytest test: renamed)

SPEAKERS = [s for s in ALL_SPEAKERS if s.startswith("sim-")]  # a real voice cannot be synthesized
TRAIN_LIST, TEST_LIST = "short_commands", "short_phrases"
SYSTEMS = ("base", "personal", "personal+short")  # the row keys of every part
TRAIN_SEED0 = 2000  # per-prompt synthesis seeds of the training prompts (the test phrases use 1000 + i)
QUICK = {"speakers": 1, "short": 8, "sentences": 6, "settings": {"max_steps": 2, "eval_every": 1}}
COMMAND = "python -m bench.study_short_prompts"


# ---------------------------------------------------------------------------- the prompts
def overlap(train: list[str], test: list[str]) -> dict[str, list[str]]:
    """Phrases (:func:`workbench.text.prompt_key`) and words the training and test prompts share.

    >>> overlap(["sit up", "tissue"], ["help me", "sit down", "tissue"])
    {'phrases': ['tissue'], 'words': ['sit', 'tissue']}
    """
    from workbench.text import normalize_text, prompt_key

    words = lambda ps: {w for p in ps for w in normalize_text(p).split()}  # noqa: E731
    return {"phrases": sorted({prompt_key(p) for p in train} & {prompt_key(p) for p in test}),
            "words": sorted(words(train) & words(test))}


def training_prompts(n: int) -> list[str]:
    """The first ``n`` prompts of ``short_commands.txt``, refused if one is a test phrase or too long."""
    from workbench.prompts import load_prompts

    prompts = load_prompts(TRAIN_LIST)
    if not 1 <= n <= len(prompts):
        raise SystemExit(f"--n-short must be between 1 and {len(prompts)} (the prompts of {TRAIN_LIST}.txt), "
                         f"got {n}")
    shared = overlap(prompts, load_prompts(TEST_LIST))["phrases"]
    if shared:
        raise SystemExit(f"{TRAIN_LIST}.txt holds test phrases of {TEST_LIST}.txt ({', '.join(shared)}): the "
                         "test phrases must never be trained on; take them out of the training list")
    long = [p for p in prompts if not 1 <= len(p.split()) <= 3]
    if long:
        raise SystemExit(f"{TRAIN_LIST}.txt must hold prompts of one to three words; these are not: {long}")
    return prompts[:n]


def short_takes(name: str, prompts: list[str]) -> list:
    """The training ``prompts`` said by a simulated speaker: :class:`~workbench.dataset.Example` s
    (``wav (n,)`` float32 at 16 kHz, silence trimmed as :func:`~workbench.dataset.examples_from_corpus`
    trims every recording it loads)."""
    from workbench.audio import trim_silence
    from workbench.dataset import Example

    say = speaker_synthesizer(name)
    if say is None:
        raise SystemExit(f"{name} is not a simulated speaker: its voice cannot be synthesized (choose from "
                         f"{', '.join(SPEAKERS)})")
    out = []
    for i, text in enumerate(prompts):
        wav = say(text, TRAIN_SEED0 + i)
        trimmed = trim_silence(wav)
        out.append(Example(wav=trimmed if trimmed.size else wav, text=text, utt_id=f"short-command-{i:03d}"))
    return out


# ---------------------------------------------------------------------------- one model
def train_personal(name: str, backend, seed: int, extra: list, settings: dict[str, Any], keep: Path) -> dict[str, Any]:
    """Train a personal model on a copy of the speaker's folder, the CLI's way, with ``extra``
    examples added to its training part; the Submodel is copied to ``keep``. Returns its training
    facts (steps, seconds, why it stopped, the takes it learned from)."""
    from workbench.trainer import Trainer
    from workbench.workflow import default_config, finish, prepare, train

    with tempfile.TemporaryDirectory(prefix="study_short_prompts-") as tmp:
        work = Path(tmp) / Path(name).name  # the folder keeps the speaker's name
        shutil.copytree(SAMPLES / name, work, ignore=shutil.ignore_patterns("submodels", "reports"))
        config = default_config(backend, seed=seed, **settings)  # as bench_live: the CLI's defaults
        plan = prepare(work, backend=backend, config=config, seed=0)  # the split of bench_live's models
        try:
            if extra:  # the same plan, its trainer rebuilt on the training takes + the short takes
                plan.release()
                plan = dataclasses.replace(plan, train=[*plan.train, *extra], trainer=Trainer(
                    backend, [*plan.train, *extra], plan.valid, plan.config, decoder=plan.decoder))
            result = train(plan, progress=False)
            run = finish(plan)
        finally:
            plan.release()
        keep.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(run.submodel_path, keep)
    return {"submodel": keep.name, "train_takes": len(plan.train), "short_takes": len(extra),
            "valid_takes": len(plan.valid), "steps": result.steps, "best_step": result.best_step,
            "seconds": result.seconds, "stopped": result.stopped_reason, "cut_short": result.cut_short}


def measure(name: str, seed: int, backend, inputs: dict[str, Any], settings: dict[str, Any],
            keep_dir: Path) -> dict[str, Any]:
    """One (speaker, seed): both personal models trained and scored on the short phrases and sentences."""
    t0 = time.perf_counter()
    tag = f"{Path(name).name}-seed{seed}"
    training = {"personal": train_personal(name, backend, seed, [], settings, keep_dir / f"{tag}-personal.safetensors"),
                "personal+short": train_personal(name, backend, seed, inputs["extra"], settings,
                                                 keep_dir / f"{tag}-personal+short.safetensors")}
    row: dict[str, Any] = {"speaker": name, "seed": seed, "training": training}
    hyps: dict[str, dict[str, list[str]]] = {}
    same_base = True
    for part in ("short", "sentences"):
        wavs, refs = inputs[part]
        base, pers = transcribe_pair(backend, keep_dir / training["personal"]["submodel"], wavs)
        base2, pers_short = transcribe_pair(backend, keep_dir / training["personal+short"]["submodel"], wavs)
        same_base &= base == base2  # the base model, heard under either adapter switched off: a check of the setup
        hyps[part] = {"base": base, "personal": pers, "personal+short": pers_short}
        row[part] = {s: _scores(refs, hyps[part][s]) for s in SYSTEMS}
    row["base_identical"] = same_base
    refs = inputs["short"][1]
    row["examples"] = [{"ref": r, **{s: hyps["short"][s][i] for s in SYSTEMS}} for i, r in enumerate(refs[:8])]
    row["seconds"] = time.perf_counter() - t0
    return row


# ---------------------------------------------------------------------------- pooling
def pooled(cells: list[dict[str, Any]]) -> dict[str, Any]:
    """``_scores`` cells together: total errors over total reference words (not a mean of WERs).

    >>> pooled([{"wer": 0.5, "errors": 1, "words": 2, "empty": 0, "doubled": 0, "n": 2},
    ...         {"wer": 0.0, "errors": 0, "words": 2, "empty": 1, "doubled": 0, "n": 1}])["wer"]
    0.25
    """
    out = {k: sum(c[k] for c in cells) for k in ("errors", "words", "empty", "doubled", "n")}
    return {"wer": out["errors"] / max(1, out["words"]), **out}


def pool(rows: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """``{part: {system: pooled cell}}`` over ``rows`` (several seeds, several speakers)."""
    return {part: {s: pooled([r[part][s] for r in rows]) for s in SYSTEMS} for part in ("short", "sentences")}


def summarize(runs: dict[str, dict[str, Any]]) -> tuple[dict[str, dict], dict[str, dict]]:
    """``(per speaker, overall)``: each speaker's seeds pooled, and every run pooled."""
    speakers: dict[str, list] = {}
    for row in runs.values():
        speakers.setdefault(row["speaker"], []).append(row)
    per = {spk: {**pool(rows), "seeds": sorted(r["seed"] for r in rows),
                 "base_identical": all(r["base_identical"] for r in rows)} for spk, rows in speakers.items()}
    return per, pool(list(runs.values()))


# ---------------------------------------------------------------------------- the study
def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from workbench.constants import cache_dir
    from workbench.models import load_base_model
    from workbench.prompts import load_prompts

    started = provenance()
    torch.set_num_threads(args.threads)
    speakers = args.speakers or (SPEAKERS[: QUICK["speakers"]] if args.quick else SPEAKERS)
    prompts = training_prompts(args.n_short)
    n_short, n_sent = (QUICK["short"], QUICK["sentences"]) if args.quick else (None, None)
    settings = QUICK["settings"] if args.quick else {}
    shared = overlap(prompts, load_prompts(TEST_LIST))
    print(f"training prompts ({len(prompts)}): {', '.join(prompts)}; words shared with the test phrases: "
          f"{', '.join(shared['words']) or 'none'}", flush=True)
    name = result_name(args)
    backend = load_base_model(MODEL)
    # seeds trained with other defaults are not pooled with these; the thread count changes the speed,
    # not what is learned, so each run records its own instead
    partial = Partial(name, {"model": MODEL, "training_prompts": prompts, "quick": args.quick,
                             "train_settings": settings, "short_tests": n_short, "sentences": n_sent,
                             "defaults": defaults_tag(backend)}, fresh=args.fresh)
    keep_dir = cache_dir() / "study_short_prompts" / name
    for spk in speakers:
        todo = [k for k in range(args.seeds) if f"{spk}|seed {k}" not in partial]
        if not todo:
            continue
        s_wavs, s_refs, _ = short_set(spk, n_short)
        inputs = {"short": (s_wavs, s_refs), "sentences": sentence_set(spk, n_sent),
                  "extra": short_takes(spk, prompts)}
        for seed in todo:
            row = partial.run(f"{spk}|seed {seed}", lambda s=spk, k=seed: {
                **measure(s, k, backend, inputs, settings, keep_dir), "threads": args.threads})
            print(f"{spk:22s} seed {seed}  short: base {row['short']['base']['wer']:.3f} personal "
                  f"{row['short']['personal']['wer']:.3f} +short {row['short']['personal+short']['wer']:.3f}  "
                  f"sentences: personal {row['sentences']['personal']['wer']:.3f} +short "
                  f"{row['sentences']['personal+short']['wer']:.3f}  ({row['seconds']:.0f} s)", flush=True)
    runs = {k: partial.runs[k] for s in speakers for k in (f"{s}|seed {i}" for i in range(args.seeds))}
    per, overall = summarize(runs)
    test_prompts = load_prompts(TEST_LIST)
    return {"machine": machine("cpu"), **started, "model": MODEL, "threads": args.threads, "quick": args.quick,
            "seeds": args.seeds, "n_short": len(prompts), "training_prompts": prompts,
            "test_phrases": len(test_prompts[:n_short] if n_short else test_prompts),
            "shared_phrases": shared["phrases"], "shared_words": shared["words"],
            "train_settings": settings or "the CLI's defaults (workflow.default_config)",
            "command": command(args), "speakers": per, "overall": overall, "runs": runs, "_partial": partial}


def result_name(args: argparse.Namespace) -> str:
    """``study_short_prompts_cpu`` (the full run), ``_<speakers>`` for a chosen few, ``_quick``."""
    tag = "_" + "_".join(s.replace("/", "-") for s in args.speakers) if args.speakers else ""
    return f"study_short_prompts_cpu{tag}" + ("_quick" if args.quick else "")


def command(args: argparse.Namespace) -> str:
    """The command line that reproduces this run."""
    parts = [COMMAND]
    if args.seeds != 1:
        parts.append(f"--seeds {args.seeds}")
    if args.n_short != 12:
        parts.append(f"--n-short {args.n_short}")
    if args.threads != THREADS:
        parts.append(f"--threads {args.threads}")
    if args.speakers:
        parts.append("--speakers " + " ".join(args.speakers))
    if args.quick:
        parts.append("--quick")
    return " ".join(parts)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=1, help="training seeds per speaker (0, 1, ...)")
    parser.add_argument("--n-short", type=int, default=12,
                        help=f"short training prompts added (the first N of {TRAIN_LIST}.txt)")
    parser.add_argument("--speakers", nargs="+", default=None, choices=SPEAKERS, metavar="SPEAKER",
                        help=f"simulated sample speakers (default: {' '.join(SPEAKERS)})")
    parser.add_argument("--threads", type=int, default=THREADS, help="torch threads (bench_short_phrases': 2)")
    parser.add_argument("--quick", action="store_true",
                        help="checks that it runs: one speaker, 2 steps, 8 short phrases, 6 sentences")
    parser.add_argument("--fresh", action="store_true", help="forget the runs of an interrupted study")
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.threads < 1:
        parser.error("--seeds and --threads must be at least 1")
    t0 = time.perf_counter()
    result = run(args)
    partial = result.pop("_partial")
    result["wall_s"] = time.perf_counter() - t0  # this session's time (runs resumed from the partial file excluded)
    path = write_result(result_name(args), result)
    partial.done()
    print(f"wrote {path}")
    for part in ("short", "sentences"):
        cells = result["overall"][part]
        print(f"all speakers, {part:9s}: " + "  ".join(f"{s} {100 * cells[s]['wer']:.1f} %" for s in SYSTEMS))
    return result


if __name__ == "__main__":
    main()
