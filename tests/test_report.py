"""The HTML/CSV report: its file names, its labels, the "improved most" list and the consent id."""

from __future__ import annotations

import re

import pytest

from workbench.evaluate import compare
from workbench.report import report_stem, write_report

SPEAKER = {"speaker_id": "spk-017", "display_name": "adult, group B", "simulated": False,
           "consent": [{"consent_id": "consent-2024-05", "text": "", "given_by": "speaker"}]}


def _comparison():
    refs = ["call my sister now", "good morning", "a cup of tea please", "open the door"]
    before = ["call my sister now", "good evening", "a cup of tea", "often the floor"]
    after = ["call my sister now", "good evening", "a cup of tea please", "open the floor"]
    return compare(refs, before, after, utt_ids=["same-0", "same-1", "better-2", "better-3"])


def _section(page: str, title: str) -> str:
    start = page.index(title)
    end = page.find("<h2>", start)
    return page[start:end if end != -1 else None]


@pytest.mark.filterwarnings("ignore")
def test_the_report_names_the_speaker_and_says_what_its_figures_are(tmp_path) -> None:
    html_path, csv_path = write_report(tmp_path, speaker=SPEAKER, comparison=_comparison(),
                                       data={"training utterances": 12, "training minutes": "1.4"},
                                       name="report-20240501-101500")
    assert html_path.name == "report-spk-017-20240501-101500.html"
    assert csv_path.name == "report-spk-017-20240501-101500.csv" and csv_path.is_file()
    page = html_path.read_text()
    assert "<td>description</td><td>adult, group B</td>" in page and "<td>name</td>" not in page
    assert "<td>minutes of training audio</td><td>1.4</td>" in page and "training minutes" not in page
    assert "<td>consent record</td><td>consent-2024-05</td>" in page
    improved = _section(page, "Utterances that improved most")
    assert set(re.findall(r"<td>((?:same|better)-\d)</td>", improved)) == {"better-2", "better-3"}


@pytest.mark.filterwarnings("ignore")
def test_no_improved_utterances_are_said_so_and_names_are_kept(tmp_path) -> None:
    refs = ["good morning", "open the door"]
    cmp_ = compare(refs, refs, ["good evening", "open the door"], utt_ids=["u0", "u1"])
    html_path, _ = write_report(tmp_path, speaker={"speaker_id": "sim-accent"}, comparison=cmp_,
                                data={"minutes": 0.5}, name="report-sim-accent-20240501-101500")
    page = html_path.read_text()
    assert html_path.name == "report-sim-accent-20240501-101500.html"  # already named: unchanged
    assert "None of the held-out utterances has fewer word errors" in _section(page, "improved most")
    assert "<td>consent record</td><td>none recorded</td>" in page
    assert "<td>minutes of training audio</td><td>0.5</td>" in page


def test_report_stem() -> None:
    assert report_stem("report-20240501-101500", "spk-1") == "report-spk-1-20240501-101500"
    assert report_stem("report", "spk-1") == "report-spk-1"
    assert report_stem("summary-spk-1", "spk-1") == "summary-spk-1"


def test_the_results_page_lists_old_and_new_report_names_newest_first(tmp_path) -> None:
    pytest.importorskip("panel")
    from workbench.app_pages.results import report_files

    folder = tmp_path / "reports"
    folder.mkdir()
    for name in ("report-20240101-090000.csv", "report-spk-017-20250101-090000.csv",
                 "report-spk-017-20240601-090000.csv", "report-x.csv", "notes.csv"):
        (folder / name).write_text("")
    assert [p.name for p in report_files(tmp_path)] == [
        "report-spk-017-20250101-090000.csv", "report-spk-017-20240601-090000.csv", "report-20240101-090000.csv"]
