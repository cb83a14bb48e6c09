"""workbench.metrics: WER/CER against jiwer on hand-made cases, alignments, bootstrap, reports;
workbench.evaluate, its former name, is the same functions."""

from __future__ import annotations

import csv

import jiwer
import pytest

from workbench.metrics import (
    METRIC_LABEL,
    AlignedWord,
    ErrorCounts,
    align_words,
    alignment_html,
    bootstrap_wer_difference,
    cer,
    compare,
    error_counts,
    wer,
)

CASES = [
    (["turn on the kitchen light"], ["turn of the kitchen light"]),
    (["a b c d"], ["a x c"]),
    (["hello there", "good morning"], ["hello hello there", "good"]),
    (["one two three"], [""]),
    (["please call my sister", "yes"], ["please call me sister now", "yes"]),
]


@pytest.mark.parametrize(("refs", "hyps"), CASES)
def test_wer_and_cer_match_jiwer_on_normalized_text(refs: list[str], hyps: list[str]) -> None:
    assert wer(refs, hyps) == pytest.approx(jiwer.wer(refs, hyps))
    assert cer(refs, hyps) == pytest.approx(jiwer.cer(refs, hyps))


def test_normalization_is_applied_to_both_sides() -> None:
    assert wer(["Turn ON the light!"], ["turn on, the light"]) == 0.0
    assert wer(["I'm 42"], ["i'm forty two"]) == 0.0
    assert wer(["it's"], ["its"]) == 1.0  # apostrophes inside words are kept


@pytest.mark.filterwarnings("ignore:.*no words to score")
def test_empty_references_and_hypotheses() -> None:
    assert wer([""], [""]) == 0.0
    assert wer(["", "a b"], ["", "a b"]) == 0.0
    # an empty reference cannot be scored: it is left out (issue 16), not counted as insertions
    assert error_counts([""], ["extra words"]) == ErrorCounts(0, 0, 0, 0)
    assert ErrorCounts(0, 0, 2, 0).rate == float("inf")  # undefined on an empty reference alone
    assert wer(["", "a b"], ["x", "a b"]) == 0.0
    assert wer(["a b"], [""]) == 1.0
    assert wer([], []) == 0.0
    with pytest.raises(ValueError, match="one hypothesis per reference"):
        wer(["a"], ["a", "b"])
    with pytest.raises(TypeError):
        wer("a b", "a b")


def test_corpus_level_not_mean_of_rates() -> None:
    refs = ["a", "b c d e f g h i j"]
    hyps = ["x", "b c d e f g h i j"]
    assert wer(refs, hyps) == pytest.approx(1 / 10)  # mean of rates would be 0.5


def test_align_words_ops() -> None:
    steps = align_words("please call my sister", "please call me sister now")
    assert steps == [AlignedWord("ok", "please", "please"), AlignedWord("ok", "call", "call"),
                     AlignedWord("sub", "my", "me"), AlignedWord("ok", "sister", "sister"),
                     AlignedWord("ins", "", "now")]
    assert [s.op for s in align_words("a b c", "a c")] == ["ok", "del", "ok"]


def test_alignment_html_escapes_and_has_legend() -> None:
    out = alignment_html("call my sister", "call me <b>", legend=True)
    assert "&rarr;" in out and "wb-legend" in out and "<b>b</b>" not in out.replace("&rarr;<b>", "")
    assert "substitution" in out and "deletion" in out


def test_bootstrap_interval_contains_observed_and_detects_no_change() -> None:
    refs = ["please and more words here"] * 40
    before = ["wrong and more words here" if i % 2 else r for i, r in enumerate(refs)]
    after = list(refs)
    res = bootstrap_wer_difference(refs, before, after, n_resamples=500)
    assert res["diff_low"] <= res["diff"] <= res["diff_high"]
    assert res["diff"] == pytest.approx(20 / 200)
    assert res["p_not_better"] == 0.0
    same = bootstrap_wer_difference(refs, before, before, n_resamples=200)
    assert same["diff"] == 0.0 and same["p_not_better"] == 1.0
    with pytest.raises(ValueError, match="empty"):
        bootstrap_wer_difference([], [], [])


def test_compare_tables_csv_and_summary(tmp_path) -> None:
    refs = ["turn on the light", "call my sister", "i am hungry"]
    before = ["turn of the lie", "cool me sister", "i am angry"]
    after = ["turn on the light", "call me sister", "i am hungry"]
    cmp_ = compare(refs, before, after, utt_ids=["u1", "u2", "u3"], n_resamples=200)
    assert cmp_.wer_before == pytest.approx(5 / 10) and cmp_.wer_after == pytest.approx(1 / 10)
    assert cmp_.relative_reduction == pytest.approx(0.8)
    assert METRIC_LABEL in cmp_.summary() and "80% fewer" in cmp_.summary()
    assert cmp_.worst(1)[0].utt_id == "u2"
    assert cmp_.best(1)[0].utt_id == "u1"
    rows = list(csv.DictReader(cmp_.to_csv(tmp_path / "r.csv").open()))
    assert [r["errors_before"] for r in rows] == ["2", "2", "1"]
    table = cmp_.to_html_table()
    assert table.count("<tr>") == 4 and "personal model heard" in table


# --------------------------------------------------------------------------- #
# Issue 16: references without words ("!!!", "   ") are left out, with a warning
# --------------------------------------------------------------------------- #


def test_wordless_references_are_left_out_of_every_rate_with_a_warning():
    refs = ["turn on the light", "!!!", "   ", "good morning"]
    hyps = ["turn of the light", "hello there", "okay", "good morning"]
    with pytest.warns(UserWarning, match=r"2 of 4 utterances were left out of the error rates.*'!!!', '   '"):
        assert wer(refs, hyps) == pytest.approx(1 / 6)  # before: (1 + 3) / 6 = 67 %, the "insertions" counted
    with pytest.warns(UserWarning, match="no words to score"):
        assert cer(refs, hyps) == pytest.approx(cer(["turn on the light", "good morning"],
                                                    ["turn of the light", "good morning"]))
    with pytest.warns(UserWarning, match=r"'u2'"):
        result = compare(refs, hyps, ["turn on the light", "x", "y", "good morning"],
                         utt_ids=["u1", "u2", "u3", "u4"], n_resamples=50)
    assert [u.utt_id for u in result.utterances] == ["u1", "u4"]
    assert result.wer_before == pytest.approx(1 / 6) and result.wer_after == 0.0
    assert result.interval["n"] == 2
    with pytest.warns(UserWarning):
        assert bootstrap_wer_difference(refs, hyps, refs, n_resamples=20)["n"] == 2


def test_scored_references_give_no_warning():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert wer(["hello there"], ["hello"]) == 0.5


def test_the_former_module_name_is_the_same_functions():
    import workbench.evaluate as former
    import workbench.metrics as metrics

    assert former.__all__ == metrics.__all__ and "alignment_legend" in metrics.__all__
    assert all(getattr(former, name) is getattr(metrics, name) for name in metrics.__all__)
