"""Choosing the word list's bound on development speakers (issue 27 item 6): margin, bonus and floor.

bench_vocabulary measures the word list on the sample speakers with :class:`workbench.decode_bias.BiasConfig`'s
defaults; those defaults must not be chosen on the phrases it reports. This study chooses them on the
six DEVELOPMENT speakers of bench/study_defaults.py (``DEV_SPEAKERS``: the sample speakers' profiles with
other voices, seeds and prompts; synthesized once into ``~/.cache/workbench/dev_speakers`` by
:func:`bench.study_defaults.make_speakers`), with another name list and other sentence templates:

- **Personal models**: each development speaker's personal Whisper tiny.en, trained once the CLI's way
  (:func:`bench.study_short_prompts.train_personal`: :func:`workbench.workflow.default_config`,
  step-based, early stopping; its ``three_way_split``, seed 0), cached in
  ``~/.cache/workbench/study_vocabulary/``.
- **Phrases with listed words**: every name of ``NAMES`` (ten invented names, none of bench_vocabulary's)
  in every template of ``TEMPLATES`` (40 phrases), synthesized in the speaker's own voice and profile as
  bench_vocabulary synthesizes its own (:func:`bench.bench_vocabulary.name_phrases`, its
  ``speaker.json``, fixed seeds). **Phrases without**: the speaker's own test phrases (never trained on).
- **The grid** (``GRID``): every ``BONUS`` x ``MARGIN`` x ``FLOOR`` (18 bounds, the current default among
  them), each with the list in Whisper's prompt too (``prompt=True``, as the default). Base and personal
  transcripts without the list are decoded once per speaker; each bound decodes base and personal once.
  Greedy search, one recording at a time (:func:`bench.bench_short_phrases.transcribe_pair`).
- **Scores**: bench_vocabulary's (:func:`bench.bench_vocabulary.word_scores`): name WER, other-word WER,
  false insertions of listed words in phrases without them and in all; per speaker and pooled over
  every speaker's phrases (:func:`bench.bench_vocabulary.overall_scores`).

**The rule** (:func:`choose`), on the pooled scores of one model, applied twice: to the personal models
(their bound: ``BiasConfig()``) and to the base model (its bound, used while no personal adapter is
active: ``decode_bias.BASE_BOUND``). A bound is *admissible* for a model when

1. its other-word WER is within 1 point (``OTHER_WORDS_POINTS``) of the same model without the list, and
2. its false insertions in phrases without listed words are no more than those of the grid's most
   cautious bound (:func:`most_cautious`: the smallest bonus, then margin, then the highest floor) for the
   same model.

The admissible bound with the lowest pooled name WER is chosen; ties go to the smaller bonus (then the
smaller margin, then the higher floor: the more cautious bound). None is chosen when none is admissible.
(Until 2026-12-07 the second condition compared with the default when the study ran, and only the personal
models were judged; on the stored run both give the same personal choice. ``--rechoose`` applies the rule
to a stored result again without decoding anything.)

Every finished speaker is saved at once (``docs/bench/study_vocabulary_cpu.partial.json``,
:class:`bench._common.Partial`); an interrupted study goes on where it stopped (``--fresh`` starts again).
``--quick``: one development speaker, 2 bounds, 4 phrases with names and 4 without, a 2-step personal
model: it checks that everything runs; the figures mean nothing and nothing is chosen from them.

Full run (quiet machine): ``python -m bench.study_vocabulary``  (writes docs/bench/study_vocabulary_cpu.json,
read by ``bench/summarize_words.py``); ``--rechoose`` applies the rule again to the stored file.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path
from typing import Any

from bench._common import Partial, machine, write_result
from bench.bench_short_phrases import MODEL, THREADS, provenance, speaker_synthesizer, transcribe_pair
from bench.bench_short_phrases import test_phrases as own_test_phrases  # (not a pytest test: renamed)
from bench.bench_vocabulary import NAMES as BENCH_NAMES
from bench.bench_vocabulary import name_phrases, overall_scores, word_scores
from bench.study_defaults import DEV_SPEAKERS, make_speakers
from bench.summarize_words import OTHER_WORDS_POINTS

NAMES = ["Rosalind", "Tobias", "Ngozi", "Declan", "Ingrid", "Rahul", "Winifred", "Pepper", "Harrogate", "Wexford"]
TEMPLATES = ["ring {}", "where is {} now", "please ask {} to wait for me", "i would like to visit {} next week"]
BONUS, MARGIN, FLOOR = (2.0, 3.0, 4.0), (2.0, 3.0, 4.0), (0.02, 0.005)
SEP = " @ "  # system key: "personal @ bonus 2, margin 2, floor 0.02"
QUICK = {"speakers": 1, "phrases": 4, "settings": {"max_steps": 2, "eval_every": 1}}
COMMAND = "python -m bench.study_vocabulary"
_EPS = 1e-12
assert not set(NAMES) & set(BENCH_NAMES)


def key(config) -> str:
    """A bound's name in the result file.

    >>> from workbench.decode_bias import BiasConfig
    >>> key(BiasConfig(bonus=3.0, margin=2.0, floor=0.005))
    'bonus 3, margin 2, floor 0.005'
    """
    return f"bonus {config.bonus:g}, margin {config.margin:g}, floor {config.floor:g}"


def grid(quick: bool = False) -> list:
    """The bounds tried (:class:`~workbench.decode_bias.BiasConfig`, the list in the prompt too): every
    ``BONUS`` x ``MARGIN`` x ``FLOOR``, the current default first; in quick mode the default and the
    boldest bound.

    >>> len(grid()), len(grid(quick=True)), key(grid()[0]) == key(grid(quick=True)[0])
    (18, 2, True)
    """
    from workbench.decode_bias import BASE_BOUND, BiasConfig

    default = BiasConfig()
    every = [BiasConfig(margin=m, floor=f, bonus=b, prompt=True) for b, m, f in itertools.product(BONUS, MARGIN, FLOOR)]
    for name, bound in (("personal default", default), ("base model's bound", BASE_BOUND)):
        if key(bound) not in {key(c) for c in every}:
            raise SystemExit(f"the {name} ({key(bound)}) is not in the grid; add its values to BONUS, MARGIN "
                             "and FLOOR in bench/study_vocabulary.py")
    ordered = [default, *(c for c in every if key(c) != key(default))]
    return [ordered[0], max(ordered, key=lambda c: (c.bonus, c.margin, -c.floor))] if quick else ordered


# ---------------------------------------------------------------------------- the rule
def most_cautious(configs: dict[str, dict[str, float]]) -> str:
    """The grid's most cautious bound: the smallest bonus, then the smallest margin, then the highest floor.

    >>> most_cautious({"a": {"bonus": 3, "margin": 2, "floor": 0.02}, "b": {"bonus": 2, "margin": 4, "floor": 0.005},
    ...                "c": {"bonus": 2, "margin": 4, "floor": 0.02}})
    'c'
    """
    return min(configs, key=lambda n: (configs[n]["bonus"], configs[n]["margin"], -configs[n]["floor"]))


def choose(pooled: dict[str, dict], configs: dict[str, dict[str, float]], system: str = "personal") -> dict[str, Any]:
    """The module docstring's rule for one model. ``pooled``: system -> :func:`~bench.bench_vocabulary.word_scores`
    fields (``system`` and ``system + SEP + name`` for each bound); ``configs``: name -> ``{"bonus", "margin",
    "floor"}``; ``system``: ``"personal"`` or ``"base"``.
    Returns ``{"chosen": name or None, "admissible": [names, best first], "rejected": {name: reasons},
    "reference": the most cautious bound's name}``."""
    plain = pooled[system]
    reference = most_cautious(configs)
    allowed = pooled[system + SEP + reference]["false_insertions_no_name"]
    admissible, rejected = [], {}
    for name in configs:
        c, why = pooled[system + SEP + name], []
        if c["other_wer"] - plain["other_wer"] > OTHER_WORDS_POINTS + _EPS:
            why.append(f"other-word WER {100 * c['other_wer']:.1f} % is more than {100 * OTHER_WORDS_POINTS:g} "
                       f"point above {100 * plain['other_wer']:.1f} % without the list")
        if c["false_insertions_no_name"] > allowed:
            why.append(f"{c['false_insertions_no_name']} false insertions in phrases without listed words, "
                       f"more than the most cautious bound's {allowed}")
        if why:
            rejected[name] = why
        else:
            admissible.append(name)
    # equal name WERs (the same errors over the same words) must compare equal, not by float noise
    admissible.sort(key=lambda n: (round(pooled[system + SEP + n]["name_wer"], 9), configs[n]["bonus"],
                                   configs[n]["margin"], -configs[n]["floor"]))
    return {"chosen": admissible[0] if admissible else None, "admissible": admissible, "rejected": rejected,
            "reference": reference}


def choices(result: dict[str, Any]) -> dict[str, Any]:
    """The rule for both models on a result's pooled scores: the personal choice at the top level (``chosen``,
    ``admissible``, ``rejected``, ``reference``) and the base model's under ``"base"``."""
    return {**choose(result["overall"], result["grid"], "personal"),
            "base": choose(result["overall"], result["grid"], "base")}


# ---------------------------------------------------------------------------- one speaker
def personal_model(speaker_dir: Path, backend, quick: bool) -> tuple[Path, dict[str, Any]]:
    """The development speaker's personal model (trained once the CLI's way, cached) and its training facts."""
    from bench._common import personal_model_path
    from bench.study_short_prompts import train_personal
    from workbench.constants import cache_dir

    keep = personal_model_path(cache_dir() / "study_vocabulary", speaker_dir.name, MODEL,
                               "quick" if quick else "full", backend)
    facts = keep.with_suffix(".json")
    if keep.is_file() and facts.is_file():
        return keep, json.loads(facts.read_text())
    training = train_personal(str(speaker_dir), backend, 0, [], QUICK["settings"] if quick else {}, keep)
    facts.write_text(json.dumps(training, indent=1))
    return keep, training


def speaker_row(speaker_dir: Path, backend, configs: list, n: int | None, quick: bool) -> dict[str, Any]:
    """One development speaker: the personal model, its phrases, every system's scores."""
    from workbench.decode_bias import BiasConfig
    from workbench.vocabulary import boost_words

    t0 = time.perf_counter()
    submodel, training = personal_model(speaker_dir, backend, quick)
    say = speaker_synthesizer(str(speaker_dir))  # an absolute path: the development speaker's own folder
    n_wavs, n_refs = name_phrases(say, n, NAMES, TEMPLATES)
    o_wavs, o_refs = own_test_phrases(str(speaker_dir), n)
    listed = set(boost_words(NAMES))
    named = [True] * len(n_refs) + [bool(set(r.split()) & listed) for r in o_refs]
    wavs, refs = n_wavs + o_wavs, n_refs + o_refs
    hyps: dict[str, list[str]] = {}
    hyps["base"], hyps["personal"] = transcribe_pair(backend, submodel, wavs)  # without the list: once
    for config in configs:
        decoder = backend.vocabulary_bias(NAMES, config)
        hyps["base" + SEP + key(config)], hyps["personal" + SEP + key(config)] = transcribe_pair(
            backend, submodel, wavs, decoder=decoder)
    systems = {k: word_scores(refs, h, listed, named) for k, h in hyps.items()}
    default = key(BiasConfig())
    return {"submodel": submodel.name, "training": training, "n_phrases": len(refs), "n_with_listed": sum(named),
            "systems": systems,
            "examples": [{"ref": r, "personal": hyps["personal"][i],
                          "personal (default)": hyps["personal" + SEP + default][i]}
                         for i, r in enumerate(refs) if named[i]][:6],
            "seconds": time.perf_counter() - t0}


# ---------------------------------------------------------------------------- the study
def result_name(args: argparse.Namespace) -> str:
    return "study_vocabulary_cpu" + ("_quick" if args.quick else "")


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from workbench.constants import cache_dir
    from workbench.decode_bias import BASE_BOUND, BiasConfig
    from workbench.models import load_base_model

    started = provenance()
    torch.set_num_threads(args.threads)
    configs = grid(args.quick)
    table = {key(c): {"bonus": c.bonus, "margin": c.margin, "floor": c.floor, "prompt": c.prompt} for c in configs}
    default = key(BiasConfig())
    ids = [s[0] for s in DEV_SPEAKERS][: QUICK["speakers"] if args.quick else None]
    n = QUICK["phrases"] if args.quick else None
    dirs = make_speakers(cache_dir() / "dev_speakers", only=ids)  # kept where already synthesized
    # the thread count changes the speed, not the transcripts: each row records its own
    partial = Partial(result_name(args), {"model": MODEL, "quick": args.quick, "names": NAMES,
                                          "templates": TEMPLATES, "grid": table, "phrases": n}, fresh=args.fresh)
    backend = load_base_model(MODEL)
    for d in dirs:
        row = partial.run(d.name, lambda d=d: {**speaker_row(d, backend, configs, n, args.quick),
                                               "threads": args.threads})
        p, pd = row["systems"]["personal"], row["systems"]["personal" + SEP + default]
        print(f"{d.name:22s} personal: names {p['name_wer']:.3f} other {p['other_wer']:.3f}; with the default "
              f"bound: names {pd['name_wer']:.3f} other {pd['other_wer']:.3f} ({row['seconds']:.0f} s)", flush=True)
    rows = {d.name: partial.runs[d.name] for d in dirs}
    pooled = overall_scores(rows)
    choice = choices({"overall": pooled, "grid": table})
    return {"machine": machine("cpu"), **started, "model": MODEL, "threads": args.threads, "quick": args.quick,
            "command": COMMAND + (" --quick" if args.quick else ""), "names": NAMES, "templates": TEMPLATES,
            "grid": table, "default": default, "base_default": key(BASE_BOUND),
            "other_words_points": OTHER_WORDS_POINTS,
            "dev_speakers": [dict(zip(("id", "profile", "voice", "seed"), s, strict=True)) for s in DEV_SPEAKERS
                             if s[0] in rows],
            "speakers": rows, "overall": pooled, **choice, "_partial": partial}


def rechoose(name: str = "study_vocabulary_cpu", out_dir: Path | None = None) -> Path:
    """Apply today's rule (:func:`choices`) to a stored result again: its scores are kept as measured, its
    choices replaced, and the commit that re-chose them recorded (``rechosen``)."""
    from bench._common import RESULTS_DIR

    path = (out_dir or RESULTS_DIR) / f"{name}.json"
    if not path.is_file():
        raise SystemExit(f"{path} does not exist: run `{COMMAND}` first")
    result = json.loads(path.read_text())
    if not all(k in result for k in ("overall", "grid")):
        raise SystemExit(f"{path} has no pooled scores or grid: it is not this study's result")
    result.update(choices(result), rechosen=provenance())
    return write_result(name, result, out_dir=out_dir)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=THREADS, help="torch threads (bench_vocabulary's: 2)")
    parser.add_argument("--quick", action="store_true",
                        help="checks that it runs: one speaker, 2 bounds, 4 + 4 phrases, a 2-step personal model")
    parser.add_argument("--fresh", action="store_true", help="forget the speakers of an interrupted study")
    parser.add_argument("--rechoose", action="store_true",
                        help="decode nothing: apply the rule again to the stored result (both models)")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error("--threads must be at least 1")
    if args.rechoose:
        path = rechoose(result_name(args))
        result = json.loads(path.read_text())
        print(f"rewrote the choices in {path}: personal {result['chosen']}, base model {result['base']['chosen']}")
        return result
    t0 = time.perf_counter()
    result = run(args)
    partial = result.pop("_partial")
    result["wall_s"] = time.perf_counter() - t0  # this session's time (speakers resumed from the partial file excluded)
    path = write_result(result_name(args), result)
    partial.done()
    print(f"wrote {path}")
    for name in result["grid"]:
        c = result["overall"]["personal" + SEP + name]
        print(f"{name:32s} names {100 * c['name_wer']:5.1f} %  other {100 * c['other_wer']:5.1f} %  false insertions "
              f"{c['false_insertions_no_name']} / {c['false_insertions']}"
              + ("  (rejected)" if name in result["rejected"] else ""))
    print(f"chosen: {result['chosen']}; base model: {result['base']['chosen']}"
          + (" (quick run: means nothing)" if args.quick else ""))
    return result


if __name__ == "__main__":
    main()
