"""Issue 27's short-phrase and word-list tables (bench/summarize_words.py) on small synthetic results.

The results are built with the benchmarks' own scoring (``_scores``, ``word_scores``,
``overall_scores``) from hand-written transcripts, so the tables read the fields the benchmarks write.
No model, no audio: a second.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(not (ROOT / "bench" / "_common.py").is_file(),
                                reason="bench/ is only in the source checkout")

MACHINE = {"cpu": "test CPU", "cores": 2, "torch_threads": 2, "torch": "2.13", "python": "3.11", "device": "cpu"}
PROVENANCE = {"date": "2026-12-06T17:00:00+00:00", "commit": "0123456789abcdef", "uncommitted_changes": False}


def _short_row(short: list[tuple[str, str, str]], sentences: list[tuple[str, str, str]]) -> dict:
    """``(reference, base, personal)`` transcripts -> a speaker's row of bench_short_phrases."""
    from bench.bench_short_phrases import _scores

    row: dict = {"source": "short_phrases.txt, synthesized in its voice", "submodel": "x.safetensors"}
    for part, triples in (("short", short), ("sentences", sentences)):
        refs, base, pers = (list(t) for t in zip(*triples, strict=True))
        row[part] = {"base": _scores(refs, base), "personal": _scores(refs, pers),
                     "personal (no cut)": _scores(refs, pers)}
    return row


def _short_result(rows: dict, quick: bool = False) -> dict:
    from bench.bench_short_phrases import overall_scores

    return {"machine": MACHINE, **PROVENANCE, "model": "whisper-tiny.en", "threads": 2, "quick": quick,
            "max_short_words": 3, "speakers": rows, "overall": overall_scores(rows), "wall_s": 600.0}


SENTENCES = [("i would like some water", "i like water", "i would like some water")]
BETTER = _short_row([("yes", "yes", "yes"), ("no", "", "no"), ("help me", "help me", "help me")], SENTENCES)
WORSE = _short_row([("yes", "yes", "yes yes"), ("stop", "stop", "stop")], SENTENCES)


def _loader(**files: dict):
    return lambda name: files.get(name)


def test_the_short_phrase_table_has_a_row_per_speaker_and_names_a_regression() -> None:
    from bench.summarize_words import short_phrases_section, words_targets

    result = _short_result({"sim-a": BETTER, "sim-b": WORSE})
    text = "\n".join(short_phrases_section(_loader(short_phrases_cpu=result)))
    assert "| sim-a | 3 (4) | 25.0 % | 0.0 % | -25.0 pts | 0.0 % | 1 / 0 | 0 / 0 | 40.0 % | 0.0 % | no |" in text
    assert "| sim-b | 2 (2) | 0.0 % | 50.0 % | +50.0 pts | 50.0 % | 0 / 0 | 0 / 1 | 40.0 % | 0.0 % | **yes** |" in text
    assert "| **all** | 5 (6) | 16.7 % | 16.7 % | +0.0 pts |" in text
    assert "**Missed**: the personal model is worse than the base model on short phrases for sim-b " \
           "(0.0 % → 50.0 %, +1 word errors); 1 of 2 speakers have no regression." in text
    assert "Run started 2026-12-06 17:00:00 UTC at commit 0123456789, in 10 min. Machine: test CPU" in text
    assert "Fewer than 40 short phrases: sim-a (3: " in text
    assert "Not measured on sim-dysarthria-severe" in text  # the benchmark's speakers that the result lacks
    (row,) = [t for t in words_targets(_loader(short_phrases_cpu=result)) if t[0].startswith("Short phrases")]
    assert row[3] is False and "worse on 1 of 2 speakers (sim-b)" in row[2]


def test_no_regression_on_any_speaker_is_met() -> None:
    from bench.summarize_words import short_phrases_section, words_targets

    result = _short_result({"sim-a": BETTER})
    text = "\n".join(short_phrases_section(_loader(short_phrases_cpu=result)))
    assert "**Met**: the personal model regresses against the base model on short phrases on no speaker " \
           "(1 of 1 speakers at or below the base model's errors)." in text
    assert words_targets(_loader(short_phrases_cpu=result))[0][3] is True


def test_a_quick_run_is_marked_and_never_judged() -> None:
    from bench.summarize_words import short_phrases_section, words_targets

    result = _short_result({"sim-b": WORSE}, quick=True)
    text = "\n".join(short_phrases_section(_loader(short_phrases_cpu=result)))
    assert "QUICK RUN" in text and "Not judged (quick run)." in text and "Missed" not in text
    assert words_targets(_loader(short_phrases_cpu=result))[0][3] is None


# ---------------------------------------------------------------------------- vocabulary
def _vocab_row(refs: list[str], named: list[bool], hyps: dict[str, list[str]], listed: set[str]) -> dict:
    """Transcripts per system -> a speaker's row of bench_vocabulary."""
    from bench.bench_vocabulary import word_scores

    dec = "VocabularyBias(1 words, margin=2.0, floor=0.02, bonus=2.0, prompt=0 tokens)"
    return {"how": "names synthesized in its voice; its test phrases", "entries": sorted(listed),
            "submodel": "x.safetensors", "n_phrases": len(refs), "n_with_listed": sum(named),
            "decoders": {"+bias": dec, "+list": dec},
            "systems": {k: word_scores(refs, h, listed, named) for k, h in hyps.items()}, "examples": []}


def _vocab_result(rows: dict, quick: bool = False) -> dict:
    from bench.bench_vocabulary import overall_scores

    return {"machine": MACHINE, **PROVENANCE, "model": "whisper-tiny.en", "threads": 2, "quick": quick,
            "names": ["Priya"], "templates": ["call {}"], "speakers": rows, "overall": overall_scores(rows),
            "wall_s": 30.0}


LISTED = {"priya"}
# the list fixes the name and inserts nothing; the base model says a listed name that was not said
HALVED = _vocab_row(["call priya", "good morning"], [True, False], {
    "base": ["call maria", "good morning priya"], "base+bias": ["call priya", "good morning"],
    "base+list": ["call priya", "good morning"], "personal": ["call maria", "good morning"],
    "personal+bias": ["call priya", "good morning"], "personal+list": ["call priya", "good morning"]}, LISTED)
# the list changes nothing on the name
UNCHANGED = _vocab_row(["tell priya hello", "see you"], [True, False], {
    "base": ["tell maria hello", "see you"], "base+bias": ["tell maria hello", "see you"],
    "base+list": ["tell maria hello", "see you"], "personal": ["tell maria hello", "see you"],
    "personal+bias": ["tell maria hello", "see you"], "personal+list": ["tell maria hello", "see you"]}, LISTED)


def test_the_vocabulary_table_judges_names_and_other_words_per_speaker_and_overall() -> None:
    from bench.summarize_words import vocabulary_section, words_targets

    result = _vocab_result({"sim-a": HALVED, "sim-b": UNCHANGED})
    text = "\n".join(vocabulary_section(_loader(vocabulary_cpu=result)))
    assert "| sim-a | 1 / 1 | 100.0 % (1) | 0.0 % | met | 0.0 % (3) | 0.0 % | +0.0 pts | met |" in text
    assert "| sim-b | 1 / 1 | 100.0 % (1) | 100.0 % | **missed** | 0.0 % (4) | 0.0 % | +0.0 pts | met |" in text
    assert "| **all** | 2 / 2 | 100.0 % (2) | 50.0 % | met |" in text  # exactly halved over all speakers
    assert "names at least halved: met (100.0 % → 50.0 %); other words within 1 point: met (+0.0 pts); per " \
           "speaker, 1 of 2 meet both (missed: sim-b)." in text
    # false insertions, in phrases without listed words / in all phrases: base, base+list, personal, personal+list
    assert "| sim-a | 1 | 1 / 1 | 0 / 0 | 0 / 0 | 0 / 0 |" in text
    # every way, all speakers, against the same model without the list ('priya' said unasked is an other-word error)
    assert "| base | 100.0 % | — | 14.3 % | — | — | 1 / 1 |" in text
    assert "| base+bias | 50.0 % | met | 0.0 % | -14.3 pts | met | 0 / 0 |" in text
    assert "`+list`: the default (the same settings as `+bias`)" in text
    names, other = [t for t in words_targets(_loader(vocabulary_cpu=result)) if t[0].startswith("Word list")]
    assert names[3] is True and other[3] is True


def test_other_words_rising_by_more_than_a_point_misses() -> None:
    from bench.summarize_words import name_verdict, other_verdict, vocabulary_section

    noisy = _vocab_row(["call priya", "good morning"], [True, False], {
        "base": ["call maria", "good morning"], "base+list": ["call priya", "good morning"],
        "personal": ["call maria", "good morning"], "personal+list": ["call priya", "good morning to you"]}, LISTED)
    text = "\n".join(vocabulary_section(_loader(vocabulary_cpu=_vocab_result({"sim-a": noisy}))))
    assert "| sim-a | 1 / 1 | 100.0 % (1) | 0.0 % | met | 0.0 % (3) | 66.7 % | +66.7 pts | **missed** |" in text
    assert "other words within 1 point: **missed** (+66.7 pts)" in text
    assert other_verdict({"other_words": 100, "other_wer": 0.200}, {"other_words": 100, "other_wer": 0.210})
    assert not other_verdict({"other_words": 100, "other_wer": 0.200}, {"other_words": 100, "other_wer": 0.211})
    assert name_verdict({"name_words": 0, "name_wer": 0.0}, {"name_words": 0, "name_wer": 0.0}) is None
    assert not name_verdict({"name_words": 4, "name_wer": 0.5}, {"name_words": 4, "name_wer": 0.26})


def test_without_the_full_runs_it_says_not_measured_yet(tmp_path, monkeypatch) -> None:
    import bench._common
    import bench.summarize
    from bench.summarize_words import END, START, results_md_words, words_targets

    text = results_md_words(lambda name: None)
    assert "## Short phrases\n\nNot measured yet: run `python -m bench.bench_short_phrases`" in text
    assert "## Names and personal vocabulary\n\nNot measured yet: run `python -m bench.bench_vocabulary`" in text
    assert all(t[2].startswith("not run (opt-in") and t[3] is None for t in words_targets(lambda name: None))
    # through python -m bench.summarize: only the quick files are there, and they are not read as results
    out = tmp_path / "bench"
    out.mkdir()
    (out / "short_phrases_cpu_quick.json").write_text(json.dumps(_short_result({"sim-a": BETTER}, quick=True)))
    monkeypatch.setattr(bench._common, "RESULTS_DIR", out)
    monkeypatch.setattr(bench.summarize, "_SUFFIX", "")  # main(quick=True) sets it; restored after the test
    bench.summarize.main()
    results = (tmp_path / "results.md").read_text()
    block = results[results.index(START):results.index(END)]
    assert "Not measured yet: run `python -m bench.bench_short_phrases`" in block and "| sim-a |" not in block
    bench.summarize.main(quick=True)  # the smoke test's summary shows it, marked
    assert "QUICK RUN" in (out / "results_quick.md").read_text()


def test_a_run_records_when_and_at_which_commit() -> None:
    from bench.bench_short_phrases import provenance

    p = provenance()
    assert p["date"].endswith("+00:00") and set(p) == {"date", "commit", "uncommitted_changes"}
    if (ROOT / ".git").exists():
        assert len(p["commit"]) == 40 and isinstance(p["uncommitted_changes"], bool)
