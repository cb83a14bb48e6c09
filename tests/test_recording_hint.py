"""The Record page's estimate of what more recordings buy (workbench/recording_hint.py), from a crafted table."""

from __future__ import annotations

import copy
import json
import math

import pytest

from workbench import recording_hint
from workbench.recording_hint import RecordingHintError, hint_text, load_table, page_hint, parse_table

TABLE = {
    "format": 1, "source": "docs/bench/data_efficiency_cpu.json", "command": "python -m bench.bench_data_efficiency",
    "measured": "2026-12-06", "machine": "test CPU, 2 cores", "speakers": ["sim-a", "sim-b"], "seeds": 2,
    "test_fraction": 0.25,
    "models": {
        "whisper-tiny.en": [
            {"recordings": 10, "relative_reduction": 0.31, "wer_before": 0.5, "wer_after": 0.345, "runs": 4},
            {"recordings": 25, "relative_reduction": 0.47, "wer_before": 0.5, "wer_after": 0.265, "runs": 4},
            {"recordings": 50, "relative_reduction": 0.49, "wer_before": 0.5, "wer_after": 0.255, "runs": 4}],
        "tiny": [
            {"recordings": 10, "relative_reduction": 0.12, "wer_before": 0.6, "wer_after": 0.53, "runs": 4},
            {"recordings": 25, "relative_reduction": 0.30, "wer_before": 0.6, "wer_after": 0.42, "runs": 4},
            {"recordings": 50, "relative_reduction": 0.52, "wer_before": 0.6, "wer_after": 0.29, "runs": 4}]},
}


def test_the_sentence_gives_the_measured_sizes_and_the_takes_still_worth_making() -> None:
    table = parse_table(TABLE)
    text = hint_text(0, table, "whisper-tiny.en")
    assert text.startswith("With 10 recordings to learn from, expect about 31 % fewer word errors; with 25, "
                           "about 47 %; with 50, about 49 %.")
    assert "14 more recordings (14 in all" in text  # 10 to learn from = 14 takes with a quarter kept for testing
    assert "Measured on 2 simulated speakers (2026-12-06)." in text
    # with 14 takes (10 to learn from) the next 5-point gain is at 25: 34 takes in all
    assert "20 more recordings (34 in all" in hint_text(14, table, "whisper-tiny.en")
    # with 34 (25 to learn from), 50 adds only 2 points: not worth it
    assert "expected to add little" in hint_text(34, table, "whisper-tiny.en")
    # the built-in model still gains 22 points from 25 to 50
    assert "33 more recordings (67 in all" in hint_text(34, table, "tiny")
    assert "more recordings than the largest size measured (50)" in hint_text(80, table, "tiny")
    assert hint_text(10, table, "another-model") is None


def test_no_table_shipped_means_the_page_says_nothing(tmp_path) -> None:
    assert load_table(tmp_path / "none.json") is None
    assert page_hint({"simulated": True}, 12, path=tmp_path / "none.json") == ""


@pytest.mark.parametrize("damage", [
    lambda t: t.update(format=2),
    lambda t: t.pop("models"),
    lambda t: t["models"].update({"tiny": []}),
    lambda t: t["models"]["tiny"][1].update(recordings=10),  # sizes must increase
    lambda t: t["models"]["tiny"][0].update(relative_reduction=math.nan),
    lambda t: t["models"]["tiny"][0].update(relative_reduction="0.3"),
    lambda t: t["models"]["tiny"][0].update(recordings=True),
    lambda t: t["models"]["tiny"][0].update(runs=0),
    lambda t: t.update(speakers=[]),
    lambda t: t.update(test_fraction=1.5),
    lambda t: t.update(source=""),
])
def test_a_damaged_table_is_refused_in_words(damage, tmp_path) -> None:
    table = copy.deepcopy(TABLE)
    damage(table)
    with pytest.raises(RecordingHintError, match="is damaged: .* No estimate is shown"):
        parse_table(table)
    path = tmp_path / "recording_hint.json"
    path.write_text(json.dumps(table))  # NaN is written as NaN, which json reads back
    shown = page_hint({"simulated": True}, 12, path=path)
    assert "damaged" in shown and "expect about" not in shown


def test_a_file_that_is_not_json_is_refused(tmp_path) -> None:
    path = tmp_path / "recording_hint.json"
    path.write_bytes(b"\xff\xfe not json")
    with pytest.raises(RecordingHintError, match="cannot be read as JSON"):
        load_table(path)


def test_the_page_hint_follows_the_speaker_kind(tmp_path) -> None:
    path = tmp_path / "recording_hint.json"
    path.write_text(json.dumps(TABLE))
    assert "about 12 %" in page_hint({"simulated": True}, 0, path=path)  # a simulated speaker: the built-in model


def test_the_benchmark_writes_a_table_the_app_accepts() -> None:
    from bench.bench_data_efficiency import hint_table, summarize

    rows = [{"model": m, "size": n, "speaker": s, "seed": 0, "wer_before": 0.5, "wer_after": 0.5 - 0.01 * n,
             "relative_reduction": 0.02 * n, "train_utterances": n - 2}
            for m in ("tiny", "whisper-tiny.en") for n in (10, 25) for s in ("sim-a", "sim-b")]
    result = {"machine": {"cpu": "test CPU", "cores": 2, "torch": "2"}, "measured": "2026-12-06",
              "command": "python -m bench.bench_data_efficiency", "speakers": ["sim-a", "sim-b"], "seeds": 1,
              "summary": summarize(rows)}
    table = parse_table(hint_table(result, source="docs/bench/data_efficiency_cpu.json"))
    assert [p.recordings for p in table.models["tiny"]] == [10, 25]
    assert table.models["tiny"][1].relative_reduction == pytest.approx(0.5)
    assert "with 25, about 50 %" in hint_text(0, table, "tiny")


def test_the_record_page_shows_the_hint_only_with_a_table(tmp_path, monkeypatch) -> None:
    pytest.importorskip("panel")
    from _models import tiny_backend

    from workbench.app_pages.common import AppContext
    from workbench.app_pages.shell import WorkbenchApp

    (tmp_path / "data").mkdir()
    app = WorkbenchApp(AppContext(data_dir=tmp_path / "data", backend_factory=lambda name: tiny_backend(),
                                  decoder="greedy"))
    page = app.pages["Speakers"]
    page.new_id.value, page.consent_id.value, page.n_prompts.value = "spk-001", "consent-1", 20
    assert page.create() == "spk-001"
    record = app.pages["Record"]
    monkeypatch.setattr(recording_hint, "HINT_FILE", tmp_path / "absent.json")
    record.refresh()
    assert "wb-hint" not in record.progress_text.object  # nothing measured: nothing said
    path = tmp_path / "recording_hint.json"
    path.write_text(json.dumps(TABLE))
    monkeypatch.setattr(recording_hint, "HINT_FILE", path)
    record.refresh()
    assert "wb-hint" in record.progress_text.object and "more recordings (14 in all" in record.progress_text.object
    path.write_text("{}")
    record.refresh()
    assert "damaged" in record.progress_text.object
