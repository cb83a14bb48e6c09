"""The word list's bound study (bench/study_vocabulary.py): its grid, its lists, the choice rule and its table.

No model and no audio: rows are built with bench_vocabulary's own scoring from hand-written transcripts,
or the rule is given pooled scores directly.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from workbench.decode_bias import BiasConfig

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(not (ROOT / "bench" / "_common.py").is_file(),
                                reason="bench/ is only in the source checkout")

MACHINE = {"cpu": "test CPU", "cores": 2, "torch_threads": 2, "torch": "2.13", "python": "3.11", "device": "cpu"}
PROVENANCE = {"date": "2026-12-06T17:00:00+00:00", "commit": "0123456789abcdef", "uncommitted_changes": False}
A, B, LOUD, WILD = ("bonus 3, margin 3, floor 0.02", "bonus 4, margin 2, floor 0.02", "bonus 4, margin 4, floor 0.005",
                    "bonus 4, margin 3, floor 0.005")
DEFAULT = "bonus {bonus:g}, margin {margin:g}, floor {floor:g}".format(**vars(BiasConfig()))  # as the study names it
CAUTIOUS = "bonus 2, margin 2, floor 0.02"  # the most cautious bound of the grids below: the rule's reference


def _configs(*names: str) -> dict[str, dict[str, float]]:
    out = {}
    for n in names:
        b, m, f = (float(part.split()[1]) for part in n.split(", "))
        out[n] = {"bonus": b, "margin": m, "floor": f, "prompt": True}
    return out


def _cell(name_errors: int, other_errors: int, no_name_insertions: int, insertions: int | None = None) -> dict:
    """Pooled scores over 20 listed words and 100 other words."""
    return {"name_words": 20, "name_errors": name_errors, "name_wer": name_errors / 20, "other_words": 100,
            "other_errors": other_errors, "other_wer": other_errors / 100, "no_name_phrases": 10,
            "false_insertions_no_name": no_name_insertions,
            "false_insertions": no_name_insertions if insertions is None else insertions}


def test_the_grid_holds_the_default_and_the_lists_differ_from_the_benchmark_s() -> None:
    import numpy as np

    from bench import bench_vocabulary
    from bench.study_vocabulary import NAMES, TEMPLATES, grid, key
    from workbench.decode_bias import BiasConfig

    every = grid()
    assert len(every) <= 20 and len({key(c) for c in every}) == len(every)
    assert key(every[0]) == key(BiasConfig()) and all(c.prompt for c in every)
    assert [key(c) for c in grid(quick=True)] == [key(BiasConfig()), "bonus 4, margin 4, floor 0.005"]
    assert len(NAMES) == 10 and not set(NAMES) & set(bench_vocabulary.NAMES)
    assert not set(TEMPLATES) & set(bench_vocabulary.TEMPLATES)
    said = []
    wavs, texts = bench_vocabulary.name_phrases(lambda t, seed: said.append((t, seed)) or np.zeros(4, np.float32),
                                                None, NAMES, TEMPLATES)
    assert len(set(texts)) == 40 == len(wavs) and texts[0] == "ring rosalind" and said[0] == ("ring Rosalind", 2000)
    assert bench_vocabulary.name_phrases(lambda t, s: t, 3)[1] == ["call priya", "is margaret coming today",
                                                                    "tell oliver i said hello"]  # unchanged


def test_the_rule_takes_the_lowest_name_wer_among_admissible_bounds_and_the_smaller_bonus_on_a_tie() -> None:
    from bench.study_vocabulary import SEP, choose

    pooled = {"personal": _cell(16, 20, 0), "personal" + SEP + CAUTIOUS: _cell(8, 20, 1),
              "personal" + SEP + A: _cell(6, 21, 1),  # other words +1.0 point: still within
              "personal" + SEP + B: _cell(6, 19, 0),  # the same name WER as A, a larger bonus
              "personal" + SEP + LOUD: _cell(2, 20, 2, 5),  # best names, but one insertion more than the reference
              "personal" + SEP + WILD: _cell(3, 22, 0)}  # other words +2 points
    grid = _configs(A, B, LOUD, WILD, CAUTIOUS)  # the reference is the most cautious, wherever it is listed
    out = choose(pooled, grid)
    assert out["chosen"] == A and out["reference"] == CAUTIOUS
    assert out["admissible"] == [A, B, CAUTIOUS]
    assert set(out["rejected"]) == {LOUD, WILD}
    assert "false insertions" in out["rejected"][LOUD][0] and "most cautious bound's 1" in out["rejected"][LOUD][0]
    assert "other-word WER 22.0 %" in out["rejected"][WILD][0]
    # a bound that is worse on names is never chosen over a better admissible one, whatever its bonus
    pooled["personal" + SEP + B] = _cell(5, 19, 0)
    assert choose(pooled, grid)["chosen"] == B


def test_the_rule_judges_the_base_model_on_its_own_scores() -> None:
    """The base model's bound: the same rule on the base model's rows, whatever the personal models did."""
    from bench.study_vocabulary import SEP, choices

    overall = {"personal": _cell(16, 20, 0), "base": _cell(19, 50, 0)}
    for name, personal, base in ((CAUTIOUS, _cell(8, 20, 0), _cell(9, 50, 3)),
                                 (DEFAULT, _cell(6, 20, 0), _cell(8, 55, 7)),  # base: other words +5, 4 more
                                 (B, _cell(7, 20, 0), _cell(8, 50, 3))):
        overall["personal" + SEP + name], overall["base" + SEP + name] = personal, base
    out = choices({"overall": overall, "grid": _configs(CAUTIOUS, DEFAULT, B)})
    assert out["chosen"] == DEFAULT and out["base"]["chosen"] == B
    assert out["base"]["reference"] == CAUTIOUS and set(out["base"]["rejected"]) == {DEFAULT}
    assert len(out["base"]["rejected"][DEFAULT]) == 2  # both conditions fail, and both are said


def test_no_bound_is_chosen_when_none_is_admissible() -> None:
    from bench.study_vocabulary import SEP, choose

    pooled = {"personal": _cell(16, 20, 0), "personal" + SEP + DEFAULT: _cell(8, 25, 0),
              "personal" + SEP + LOUD: _cell(2, 20, 1)}
    out = choose(pooled, _configs(DEFAULT, LOUD))
    assert out["chosen"] is None and out["admissible"] == [] and set(out["rejected"]) == {DEFAULT, LOUD}


def _row(transcripts: dict[str, list[str]], refs: list[str], named: list[bool]) -> dict:
    from bench.bench_vocabulary import word_scores
    from bench.study_vocabulary import NAMES
    from workbench.vocabulary import boost_words

    listed = set(boost_words(NAMES))
    return {"submodel": "x.safetensors", "training": {"steps": 2}, "n_phrases": len(refs),
            "n_with_listed": sum(named), "seconds": 1.0, "examples": [],
            "systems": {k: word_scores(refs, h, listed, named) for k, h in transcripts.items()}}


def _result(quick: bool = False) -> dict:
    from bench.bench_vocabulary import overall_scores
    from bench.study_vocabulary import NAMES, SEP, TEMPLATES, choices

    refs = ["ring rosalind", "where is tobias now", "i want some water", "turn on the light"]
    named = [True, True, False, False]
    hyps = {"base": ["ring ross", "where is to bias now", "i want some water", "turn on the light"],
            "personal": ["ring ross", "where is tobias now", "i want some water", "turn on the light"],
            "base" + SEP + DEFAULT: ["ring rosalind", "where is tobias now", "i want some water", "turn on the light"],
            "personal" + SEP + DEFAULT: ["ring rosalind", "where is tobias now", "i want some water",
                                         "turn on the light"],
            "base" + SEP + LOUD: ["ring rosalind", "where is tobias now", "i want some water pepper",
                                  "turn on the light"],
            "personal" + SEP + LOUD: ["ring rosalind", "where is tobias now", "i want some water",
                                      "turn on the light pepper"]}
    rows = {"dev-accent": _row(hyps, refs, named), "dev-stutter": _row(hyps, refs, named)}
    pooled = overall_scores(rows)
    grid = _configs(DEFAULT, LOUD)
    return {"machine": MACHINE, **PROVENANCE, "model": "whisper-tiny.en", "threads": 2, "quick": quick,
            "command": "python -m bench.study_vocabulary" + (" --quick" if quick else ""), "names": NAMES,
            "templates": TEMPLATES, "grid": grid, "default": DEFAULT, "other_words_points": 0.01,
            "speakers": rows, "overall": pooled, "wall_s": 120.0, **choices({"overall": pooled, "grid": grid})}


def test_the_table_shows_every_bound_the_rejections_and_the_choice() -> None:
    from bench.summarize_words import results_md_words, study_vocabulary_section

    r = _result()
    assert r["chosen"] == DEFAULT and LOUD in r["rejected"]
    text = "\n".join(study_vocabulary_section(lambda name: r if name == "study_vocabulary_cpu" else None))
    assert "### Choosing the word list's bound" in text and "QUICK RUN" not in text
    assert "| personal, no list | 50.0 % | 0.0 % | — | 0 / 0 | — |" in text  # "ross" for rosalind
    assert (f"| **{DEFAULT} (default when the study ran) (current default)** | 0.0 % | 0.0 % | +0.0 pts | 0 / 0 "
            "| yes |") in text
    assert (f"| {LOUD} | 0.0 % | 8.3 % | +8.3 pts | 2 / 2 | other-word WER 8.3 % is more than 1 point "
            "above 0.0 % without the list; 2 false insertions in phrases without listed words, more than the "
            "most cautious bound's 0 |") in text
    assert f"Chosen: **{DEFAULT}** (the default when the study ran: kept)." in text
    assert f"grid's most cautious bound ({DEFAULT}) for the same model" in text
    # the base model's own bound: its table and verdict (the test grid lacks today's BASE_BOUND: not adopted)
    assert "| base, no list | 100.0 % | 8.3 % | — | 0 / 0 | — |" in text  # "to bias" for tobias
    assert f"| **{DEFAULT}** | 0.0 % | 0.0 % | -8.3 pts | 0 / 0 | yes |" in text
    assert (f"Base model: **{DEFAULT}** (not adopted: the current base model's bound (`BASE_BOUND`) is "
            "bonus 2, margin 2, floor 0.02).") in text
    assert "| dev-accent | 50.0 % | 0.0 % | 0.0 % | 0.0 % | 0 / 0 |" in text
    assert "Rosalind" in text and "\"ring …\"" in text and "Run started 2026-12-06 17:00:00 UTC" in text
    assert "### Choosing the word list's bound" in results_md_words(lambda n: r if "study_vocabulary" in n else None)


def test_a_quick_run_is_marked_and_nothing_is_presented_as_chosen() -> None:
    from bench.summarize_words import study_vocabulary_section

    r = _result(quick=True)
    text = "\n".join(study_vocabulary_section(lambda name: r if name.startswith("study_vocabulary") else None))
    assert "QUICK RUN" in text and "Nothing chosen (quick run)." in text
    assert "Chosen:" not in text and "**bonus" not in text


def test_not_measured_yet_without_the_file_and_a_foreign_file_is_refused() -> None:
    from bench.summarize_words import results_md_words, study_vocabulary_section

    text = "\n".join(study_vocabulary_section(lambda name: None))
    assert "Not measured yet: run `python -m bench.study_vocabulary`" in text
    assert "Not measured yet: run `python -m bench.study_vocabulary`" in results_md_words(lambda name: None)
    foreign = "\n".join(study_vocabulary_section(lambda name: {"quick": False, "speakers": {}}))
    assert "is not this study's result" in foreign


def test_the_study_writes_its_result_from_saved_speakers(tmp_path, monkeypatch) -> None:
    """``main`` end to end with the speakers already in the partial file: nothing is trained or decoded."""
    import json

    import bench._common
    import bench.study_vocabulary as sv
    import workbench.models
    from bench._common import Partial

    r = _result(quick=True)
    import torch

    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # the test process keeps its threads
    monkeypatch.setattr(bench._common, "RESULTS_DIR", tmp_path)
    monkeypatch.setattr(sv, "make_speakers", lambda out, only: [tmp_path / s for s in only])
    monkeypatch.setattr(workbench.models, "load_base_model", lambda name: None)
    monkeypatch.setattr(sv, "grid", lambda quick: [_bias(DEFAULT), _bias(LOUD)])
    monkeypatch.setattr(sv, "QUICK", {**sv.QUICK, "speakers": 1})
    settings = {"model": sv.MODEL, "quick": True, "names": sv.NAMES, "templates": sv.TEMPLATES,
                "grid": r["grid"], "phrases": sv.QUICK["phrases"]}
    saved = Partial("study_vocabulary_cpu_quick", settings, out_dir=tmp_path)
    saved.run("dev-dysarthria-severe", lambda: r["speakers"]["dev-accent"])
    out = sv.main(["--quick", "--threads", "1"])
    written = json.loads((tmp_path / "study_vocabulary_cpu_quick.json").read_text())
    assert written["chosen"] == out["chosen"] == DEFAULT and written["quick"] is True
    assert list(written["speakers"]) == ["dev-dysarthria-severe"] and written["dev_speakers"][0]["seed"] == 301
    assert not (tmp_path / "study_vocabulary_cpu_quick.partial.json").exists()


def _bias(name: str):
    from workbench.decode_bias import BiasConfig

    c = _configs(name)[name]
    return BiasConfig(margin=c["margin"], floor=c["floor"], bonus=c["bonus"], prompt=True)


def test_the_table_says_whether_the_choice_was_adopted() -> None:
    """The study's default is the one when it ran; the table compares its choice with today's."""
    from bench.summarize_words import study_vocabulary_section

    def text(r: dict) -> str:
        return "\n".join(study_vocabulary_section(lambda name: r if name == "study_vocabulary_cpu" else None))

    ran_with_loud = {**_result(), "default": LOUD}  # the study ran under another default and chose today's
    assert f"Chosen: **{DEFAULT}**, adopted as the default (it was {LOUD} when the study ran)." in text(ran_with_loud)
    assert f"| {LOUD} (default when the study ran) |" in text(ran_with_loud)
    other = {**_result(), "chosen": LOUD}  # a choice that is not today's default
    assert f"Chosen: **{LOUD}** (not adopted: the current default is {DEFAULT})." in text(other)


def test_rechoose_applies_today_s_rule_to_a_stored_result_without_decoding(tmp_path, monkeypatch) -> None:
    """A result chosen by the earlier rule (personal models only, against the default when it ran) gets both
    models' choices again; its scores stay as measured, and the table then shows the base model's bound."""
    import json

    import bench.study_vocabulary as sv
    from bench._common import write_result
    from bench.summarize_words import study_vocabulary_section

    old = {k: v for k, v in _result().items() if k not in ("base", "reference")}
    old["rejected"][LOUD] = ["2 false insertions in phrases without listed words, more than the default's 0"]
    before = "\n".join(study_vocabulary_section(lambda name: old if name == "study_vocabulary_cpu" else None))
    assert "Base model:" not in before and f"no more than those of the default when the study ran ({DEFAULT})" in before
    write_result("study_vocabulary_cpu", old, out_dir=tmp_path)
    monkeypatch.setattr(sv, "provenance", lambda: {"date": "2026-12-07T02:00:00+00:00", "commit": "abc",
                                                   "uncommitted_changes": False})
    path = sv.rechoose(out_dir=tmp_path)
    new = json.loads(path.read_text())
    assert new["overall"] == json.loads(json.dumps(old["overall"])) and new["rechosen"]["commit"] == "abc"
    assert new["chosen"] == DEFAULT, new["chosen"]
    assert new["base"]["chosen"] == DEFAULT, new["base"]
    assert "most cautious bound" in new["rejected"][LOUD][-1], new["rejected"]
    after = "\n".join(study_vocabulary_section(lambda name: new if name == "study_vocabulary_cpu" else None))
    assert "Base model: **" in after
    with pytest.raises(SystemExit, match="does not exist"):
        sv.rechoose("study_vocabulary_cpu_quick", out_dir=tmp_path)
    write_result("study_vocabulary_cpu_quick", {"quick": True}, out_dir=tmp_path)
    with pytest.raises(SystemExit, match="not this study's result"):
        sv.rechoose("study_vocabulary_cpu_quick", out_dir=tmp_path)
