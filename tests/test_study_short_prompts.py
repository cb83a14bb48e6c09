"""The short-training-prompt study (bench/study_short_prompts.py): its prompt lists, pooling and table.

No model and no audio: the rows are built with the study's own scoring from hand-written transcripts.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(not (ROOT / "bench" / "_common.py").is_file(),
                                reason="bench/ is only in the source checkout")

MACHINE = {"cpu": "test CPU", "cores": 2, "torch_threads": 2, "torch": "2.13", "python": "3.11", "device": "cpu"}


def test_the_training_prompts_share_no_phrase_and_no_word_with_the_test_phrases() -> None:
    from bench.study_short_prompts import overlap, training_prompts
    from workbench.prompts import list_prompt_sets, load_prompts
    from workbench.text import normalize_text

    assert "short_commands" in list_prompt_sets()
    train, test = load_prompts("short_commands"), load_prompts("short_phrases")
    assert len(train) >= 24 and len(set(train)) == len(train)
    assert all(1 <= len(p.split()) <= 3 for p in train) and all(normalize_text(p) == p for p in train)
    assert {len(p.split()) for p in train[:12]} == {1, 2, 3}  # the default twelve: words, pairs and a triple
    assert overlap(train, test) == {"phrases": [], "words": []}
    assert training_prompts(12) == train[:12]


def test_a_test_phrase_in_the_training_list_is_refused(monkeypatch) -> None:
    import workbench.prompts
    from bench.study_short_prompts import training_prompts

    lists = {"short_commands": ["tissue", "Help me!", "sit up"], "short_phrases": ["yes", "help me"]}
    monkeypatch.setattr(workbench.prompts, "load_prompts", lambda name: lists[name])
    with pytest.raises(SystemExit, match="help me"):
        training_prompts(1)  # even when the first prompts are clean: the whole list is checked
    lists["short_commands"] = ["tissue", "sit up now please"]
    with pytest.raises(SystemExit, match="one to three words"):
        training_prompts(1)
    with pytest.raises(SystemExit, match="between 1 and 2"):
        training_prompts(3)


def _row(speaker: str, seed: int, short: list[tuple[str, str, str, str]],
         sentences: list[tuple[str, str, str, str]]) -> dict:
    """``(reference, base, personal, personal+short)`` transcripts -> a (speaker, seed) row of the study."""
    from bench.bench_short_phrases import _scores
    from bench.study_short_prompts import SYSTEMS

    row: dict = {"speaker": speaker, "seed": seed, "base_identical": True}
    for part, quads in (("short", short), ("sentences", sentences)):
        refs, *hyps = (list(t) for t in zip(*quads, strict=True))
        row[part] = {s: _scores(refs, h) for s, h in zip(SYSTEMS, hyps, strict=True)}
    return row


SENT = [("i would like some water", "i like water", "i would like some water", "i would like some water")]
RUNS = {
    "sim-a|seed 0": _row("sim-a", 0, [("yes", "yes", "", "yes"), ("help me", "help", "help", "help me")], SENT),
    "sim-a|seed 1": _row("sim-a", 1, [("yes", "yes", "yes", "yes"), ("help me", "help", "help", "help")], SENT),
    "sim-b|seed 0": _row("sim-b", 0, [("stop", "top", "stop", "stop stop")],
                         [("good night", "good night", "good night", "good light")]),
}


def test_seeds_and_speakers_are_pooled_by_words_not_by_mean_of_rates() -> None:
    from bench.study_short_prompts import summarize

    per, overall = summarize(RUNS)
    a = per["sim-a"]
    assert a["seeds"] == [0, 1] and a["base_identical"]
    assert a["short"]["personal"]["errors"] == 2 + 1 and a["short"]["personal"]["words"] == 6
    assert a["short"]["personal+short"]["wer"] == pytest.approx(1 / 6)
    assert overall["short"]["base"]["wer"] == pytest.approx((2 + 1) / 7)  # sim-a 2 errors in 6 words, sim-b 1 in 1
    assert overall["sentences"]["personal+short"]["wer"] == pytest.approx(1 / 12)


def _result(quick: bool = False) -> dict:
    from bench.study_short_prompts import summarize

    per, overall = summarize(RUNS)
    return {"machine": MACHINE, "date": "2026-12-06T17:00:00+00:00", "commit": "0123456789abcdef",
            "uncommitted_changes": False, "model": "whisper-tiny.en", "threads": 2, "quick": quick, "seeds": 2,
            "n_short": 2, "training_prompts": ["tissue", "sit up"], "test_phrases": 48, "shared_phrases": [],
            "shared_words": [], "command": "python -m bench.study_short_prompts --seeds 2", "speakers": per,
            "overall": overall, "runs": RUNS, "wall_s": 1200.0}


def test_the_study_table_has_a_row_per_speaker_and_all() -> None:
    from bench.summarize_words import results_md_words, short_prompts_section

    text = "\n".join(short_prompts_section(lambda name: _result() if name == "study_short_prompts_cpu" else None))
    assert "| speaker | short: base | short: personal | short: personal + short prompts | sentences: personal | " \
           "sentences: personal + short prompts |" in text
    assert "| sim-a | 33.3 % | 50.0 % | 16.7 % (-33.3 pts) | 0.0 % | 0.0 % (+0.0 pts) |" in text
    assert "| sim-b | 100.0 % | 0.0 % | 100.0 % (+100.0 pts) | 0.0 % | 50.0 % (+50.0 pts) |" in text
    assert "| **all** | 42.9 % | 42.9 % | 28.6 % (-14.3 pts) | 0.0 % | 8.3 % (+8.3 pts) |" in text
    assert "lowered the short-phrase errors for 1 of 2 speakers (sim-a)" in text
    assert '("tissue", "sit up")' in text and "2 seeds per speaker" in text and "words shared: none" in text
    assert "`python -m bench.study_short_prompts --seeds 2`" in text and "in 20 min" in text
    assert "Not measured on sim-dysarthria-severe" in text and "real/real-allison" not in text
    assert "QUICK RUN" not in text and "Check failed" not in text
    quick = "\n".join(short_prompts_section(lambda name: _result(quick=True) if "study" in name else None))
    assert "QUICK RUN" in quick
    assert "### Short training prompts (study)" in results_md_words(lambda name: _result() if "study" in name else None)


def test_without_the_study_file_the_section_says_not_measured_yet() -> None:
    from bench.summarize_words import results_md_words, short_prompts_section

    assert short_prompts_section(lambda name: None) == [
        "### Short training prompts (study)", "",
        "Not measured yet: run `python -m bench.study_short_prompts` (writes docs/bench/study_short_prompts_cpu.json), "
        "then `python -m bench.summarize`.", ""]
    assert "Not measured yet: run `python -m bench.study_short_prompts`" in results_md_words(lambda name: None)
