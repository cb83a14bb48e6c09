"""Names and personal vocabulary (issue 27 item 6): Whisper tiny.en with and without a speaker's word list.

A therapist lists the names a person uses (family, places, a dog); decoding then favours
them within a bound (:class:`workbench.decode_bias.VocabularyBias`). For each sample speaker:

- **Simulated speakers**: the list is ten invented names (``NAMES``). Phrases *with* names are
  ``TEMPLATES`` x ``NAMES`` (40), synthesized in the speaker's own voice and profile (its
  ``speaker.json``; fixed seeds), never trained on. Phrases *without* them are the speaker's
  own recorded test phrases (``three_way_split``, seed 0: never trained on).
- **The real voice** (``real/real-allison``, telephone-system prompts): names cannot be
  synthesized in a real voice, so its list is its domain vocabulary: the words of its prompt list
  that the everyday prompt list never uses ("conference", "extension", ...), as a therapist would
  list a person's own words. Phrases with and without them are its test phrases that hold one or not.
- **Systems**: the base model and the speaker's personal model (bench_live's Whisper tiny.en
  personal models, trained once per speaker with the CLI's defaults, cached), each without the
  list and with it in three ways (:mod:`workbench.decode_bias`): ``+bias`` (the bounded logit
  bias alone), ``+prompt`` (the words in Whisper's previous-text prompt alone) and
  ``+prompt+bias`` (both); ``+list`` is the default (what ``--vocabulary`` does). Greedy search,
  one recording at a time. The personal models were trained without a prompt: ``personal+prompt``
  measures whether they suffer from one.
- **Reported**, word by word from the alignment (:func:`workbench.evaluate.align_words`):
  *name WER* (substitutions and deletions of listed words / listed words said), *other-word WER*
  (substitutions and deletions of every other word, plus every insertion / other words said),
  and *false insertions*: listed words in the output that were not said (in phrases without
  names, and in all phrases).

``--quick``: one speaker, 6 phrases with names and 6 without, the cached personal model if there is
one: it checks that everything runs; the figures mean little.

Full run (quiet machine): ``python -m bench.bench_vocabulary``  (writes docs/bench/vocabulary_cpu.json, the
file ``bench/summarize_words.py`` reads; ``--speakers``, ``--phrases`` or a bound's setting add a tag to the name)
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from bench._common import machine, write_result
from bench.bench_short_phrases import MODEL, SAMPLES, THREADS, personal_model_file, provenance, speaker_synthesizer
from bench.bench_short_phrases import test_phrases, transcribe_pair

SPEAKERS = ["sim-dysarthria-severe", "sim-als-like", "sim-parkinsonian", "sim-stutter", "sim-voice-tremor",
            "sim-accent", "real/real-allison"]
NAMES = ["Priya", "Margaret", "Oliver", "Jamal", "Hannah", "Siobhan", "Okafor", "Buster", "Greenfield", "Brighton"]
TEMPLATES = ["call {}", "is {} coming today", "tell {} i said hello", "we are going to see {} tomorrow"]
MAX_DOMAIN_WORDS = 40


def name_phrases(say, n: int | None, names: list[str] = NAMES,
                 templates: list[str] = TEMPLATES) -> tuple[list[np.ndarray], list[str]]:
    """Every template with every name, synthesized; in an order where the first few phrases already
    cover different names and templates (phrase i: name i mod 10, template (i + 3 * (i // 10)) mod 4).
    ``names`` and ``templates``: another list (bench/study_vocabulary.py's; default: this benchmark's)."""
    from workbench.text import normalize_text

    count = len(templates) * len(names)
    texts = [templates[(i + 3 * (i // len(names))) % len(templates)].format(names[i % len(names)])
             for i in range(count)][:n]
    assert n is not None or len(set(texts)) == count
    return [say(t, 2000 + i) for i, t in enumerate(texts)], [normalize_text(t) for t in texts]


def domain_words(name: str) -> list[str]:
    """A real speaker's own words: those of its prompt list that the everyday list never uses."""
    from workbench.corpus import SpeakerCorpus
    from workbench.prompts import load_prompts, prompt_vocabulary

    everyday = prompt_vocabulary(load_prompts("everyday"))
    own = prompt_vocabulary(SpeakerCorpus.open(SAMPLES / name).prompts())
    return sorted(w for w in own - everyday if len(w) > 3)[:MAX_DOMAIN_WORDS]


def word_scores(refs: list[str], hyps: list[str], listed: set[str], has_names: list[bool]) -> dict[str, Any]:
    """Name WER, other-word WER and false insertions of listed words (see the module docstring)."""
    from workbench.evaluate import align_words

    c = {"name_words": 0, "name_errors": 0, "other_words": 0, "other_errors": 0, "false_insertions": 0,
         "false_insertions_no_name": 0, "no_name_phrases": 0}
    for ref, hyp, named in zip(refs, hyps, has_names, strict=True):
        said = ref.split()
        c["no_name_phrases"] += not named
        for step in align_words(ref, hyp):
            if step.op in ("sub", "del", "ok"):
                key = "name" if step.ref in listed else "other"
                c[f"{key}_words"] += 1
                c[f"{key}_errors"] += step.op != "ok"
            else:
                c["other_errors"] += 1
            if step.hyp in listed and step.hyp not in said:
                c["false_insertions"] += 1
                c["false_insertions_no_name"] += not named
    c["name_wer"] = c["name_errors"] / max(1, c["name_words"])
    c["other_wer"] = c["other_errors"] / max(1, c["other_words"])
    return c


def speaker_sets(spk: str, n: int | None) -> tuple[list[str], list[np.ndarray], list[str], list[bool], str]:
    """``(entries, waveforms, references, has_listed_word, how)`` for one speaker."""
    from workbench.vocabulary import boost_words

    say = speaker_synthesizer(spk)
    if say is None:  # the real voice: its own domain words, its test phrases
        entries = domain_words(spk)
        wavs, refs = test_phrases(spk)
        listed = set(boost_words(entries))
        named = [bool(set(r.split()) & listed) for r in refs]
        if n:
            keep = [i for i in range(len(refs)) if named[i]][:n] + [i for i in range(len(refs)) if not named[i]][:n]
            wavs, refs, named = [wavs[i] for i in keep], [refs[i] for i in keep], [named[i] for i in keep]
        return entries, wavs, refs, named, "its domain words; its test phrases"
    n_wavs, n_refs = name_phrases(say, n)
    o_wavs, o_refs = test_phrases(spk, n)
    listed = set(boost_words(NAMES))
    named = [True] * len(n_refs) + [bool(set(r.split()) & listed) for r in o_refs]
    return NAMES, n_wavs + o_wavs, n_refs + o_refs, named, "names synthesized in its voice; its test phrases"


def list_decoders(backend, entries: list[str], config=None) -> dict[str, Any]:
    """The ways a word list can steer decoding, by system suffix: ``+bias``, ``+prompt``,
    ``+prompt+bias`` (with ``config``'s bound; its ``prompt`` is set per way) and ``+list``
    (the defaults: :class:`~workbench.decode_bias.BiasConfig` for the personal model,
    :data:`~workbench.decode_bias.BASE_BOUND` for the base model)."""
    import dataclasses

    from workbench.decode_bias import BiasConfig

    config = config or BiasConfig()
    ways = {"+bias": dataclasses.replace(config, prompt=False),
            "+prompt": dataclasses.replace(config, prompt=True, bonus=0.0),
            "+prompt+bias": dataclasses.replace(config, prompt=True), "+list": None}
    return {k: backend.vocabulary_bias(entries, c) for k, c in ways.items()}


def transcribe_ways(backend, submodel, wavs: list[np.ndarray], decoders: dict[str, Any]) -> dict[str, list[str]]:
    """Base and personal transcripts without the list and with each decoder; a decoder with the
    same settings as one already run reuses its transcripts (greedy search is deterministic)."""
    hyps: dict[str, list[str]] = {}
    hyps["base"], hyps["personal"] = transcribe_pair(backend, submodel, wavs)
    done: dict[str, str] = {}
    for way, dec in decoders.items():
        bounds = repr((dec.config, dec.base_config))
        same = done.get(bounds)
        if same is None:
            hyps["base" + way], hyps["personal" + way] = transcribe_pair(backend, submodel, wavs, decoder=dec)
            done[bounds] = way
        else:
            hyps["base" + way], hyps["personal" + way] = hyps["base" + same], hyps["personal" + same]
    return hyps


def run(device: str, quick: bool, speakers: list[str] | None = None, config=None,
        phrases: int | None = None, threads: int = THREADS) -> dict[str, Any]:
    """``config``: the bound (:class:`~workbench.decode_bias.BiasConfig`; None: the default);
    ``phrases``: phrases with and without listed words per speaker (None: 6 in quick mode, else all);
    ``threads``: torch threads (the scores do not depend on them)."""
    import torch

    from workbench.models import load_base_model
    from workbench.vocabulary import boost_words

    started = provenance()  # the code this run imported: its commit when it started
    torch.set_num_threads(threads)
    speakers = speakers or (SPEAKERS[:1] if quick else SPEAKERS)
    n = phrases or (6 if quick else None)
    backend = load_base_model(MODEL)
    rows: dict[str, dict] = {}
    for spk in speakers:
        t0 = time.perf_counter()
        submodel = personal_model_file(spk, quick, backend)
        entries, wavs, refs, named, how = speaker_sets(spk, n)
        listed = set(boost_words(entries))
        decoders = list_decoders(backend, entries, config)
        hyps = transcribe_ways(backend, submodel, wavs, decoders)
        rows[spk] = {"how": how, "entries": entries, "submodel": submodel.name, "n_phrases": len(refs),
                     "n_with_listed": sum(named), "decoders": {k: repr(d) for k, d in decoders.items()},
                     "systems": {k: word_scores(refs, h, listed, named) for k, h in hyps.items()},
                     "examples": [{"ref": r, **{k: h[i] for k, h in hyps.items()}}
                                  for i, r in enumerate(refs) if named[i]][:8],
                     "seconds": time.perf_counter() - t0}
        for k, s in rows[spk]["systems"].items():
            print(f"{spk:22s} {k:14s} names {s['name_wer']:.3f} ({s['name_words']})  other {s['other_wer']:.3f} "
                  f"({s['other_words']})  false insertions {s['false_insertions']} "
                  f"({s['false_insertions_no_name']} in phrases without)", flush=True)
    return {"machine": machine(device), **started, "model": MODEL, "threads": threads, "quick": quick,
            "names": NAMES, "templates": TEMPLATES, "speakers": rows, "overall": overall_scores(rows)}


def overall_scores(rows: dict[str, dict]) -> dict[str, dict]:
    """Every speaker's phrases together: system -> :func:`word_scores`' fields (counts summed, rates
    recomputed from them)."""
    overall = {}
    for k in next(iter(rows.values()))["systems"]:
        cells = [r["systems"][k] for r in rows.values()]
        tot = {f: sum(c[f] for c in cells) for f in ("name_words", "name_errors", "other_words", "other_errors",
                                                      "false_insertions", "false_insertions_no_name",
                                                      "no_name_phrases")}
        tot["name_wer"] = tot["name_errors"] / max(1, tot["name_words"])
        tot["other_wer"] = tot["other_errors"] / max(1, tot["other_words"])
        overall[k] = tot
    return overall


def main(argv: list[str] | None = None) -> dict:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--speakers", nargs="+", default=None, help=f"sample speakers (default: {' '.join(SPEAKERS)})")
    parser.add_argument("--margin", type=float, default=None, help="the bias's margin in nats (default: BiasConfig's)")
    parser.add_argument("--bonus", type=float, default=None, help="the bias's bonus in nats (default: BiasConfig's)")
    parser.add_argument("--floor", type=float, default=None, help="the bias's probability floor (default: BiasConfig's)")
    parser.add_argument("--phrases", type=int, default=None,
                        help="phrases with and without listed words per speaker (default: 6 with --quick, else all)")
    parser.add_argument("--threads", type=int, default=THREADS,
                        help=f"torch threads (default {THREADS}; 1 to run beside another job: the WERs do not change)")
    args = parser.parse_args(argv)
    from workbench.decode_bias import BiasConfig

    given = {k: getattr(args, k) for k in ("margin", "bonus", "floor") if getattr(args, k) is not None}
    t0 = time.perf_counter()
    result = run(args.device, args.quick, args.speakers, BiasConfig(**given), args.phrases, args.threads)
    result["wall_s"] = time.perf_counter() - t0
    tag = "".join(f"_{k}{v:g}" for k, v in given.items())  # a sweep keeps every setting's file
    tag += f"_n{args.phrases}" if args.phrases else ""
    tag += "_" + "_".join(s.replace("/", "-") for s in args.speakers) if args.speakers else ""
    path = write_result(f"vocabulary_{args.device.split(':')[0]}{tag}" + ("_quick" if args.quick else ""), result)
    print(f"wrote {path}")
    for k, s in result["overall"].items():
        print(f"{k:14s} name WER {s['name_wer']:.3f}  other WER {s['other_wer']:.3f}  false insertions "
              f"{s['false_insertions']} ({s['false_insertions_no_name']} in {s['no_name_phrases']} phrases without)")
    return result


if __name__ == "__main__":
    main()
