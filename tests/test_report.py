"""The HTML/CSV report: its file names, its labels, the "improved most" list, the consent id,
the figures it is given, its CSV columns, that it is self-contained, and escaping."""

from __future__ import annotations

import base64
import csv
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


# --------------------------------------------------------------------------- figures, CSV, self-contained, escaping

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(40))  # the bytes are embedded as they are


class FakeFigure:
    """Stands for a matplotlib Figure: the report only calls ``savefig(buffer, format="png", ...)``."""

    def __init__(self, payload: bytes) -> None:
        self.payload, self.calls = payload, []

    def savefig(self, buf, **kwargs) -> None:
        self.calls.append(kwargs)
        buf.write(self.payload)


def _images(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r"<img alt='plot' src='data:image/png;base64,([^']+)'>", page)]


def test_figures_are_embedded_in_order_under_the_result(tmp_path) -> None:
    fig = FakeFigure(b"\x89PNG second")
    html_path, _ = write_report(tmp_path, speaker=SPEAKER, comparison=_comparison(), figures=[PNG, fig])
    page = html_path.read_text()
    assert _images(page) == [PNG, b"\x89PNG second"]
    assert fig.calls and fig.calls[0]["format"] == "png"
    assert _images(_section(page, "Result</h2>")) == [PNG, b"\x89PNG second"]  # shown with the result


def test_no_figures_no_images(tmp_path) -> None:
    page = write_report(tmp_path, speaker=SPEAKER, comparison=_comparison())[0].read_text()
    assert "<img" not in page and "data:image" not in page
    assert "<h2>Result</h2>" in page and "ASR word error rate" in page  # the rest is all there


def test_the_view_side_figures_are_the_wer_bars_and_the_training_curve(tmp_path) -> None:
    pytest.importorskip("matplotlib")
    from workbench.plots import report_figures

    history = [{"kind": "step", "step": 1, "loss": 3.0}, {"kind": "eval", "step": 1, "wer": 0.5},
               {"kind": "step", "step": 2, "loss": 2.0}, {"kind": "eval", "step": 2, "wer": 0.4}]
    comparison = _comparison()
    assert len(report_figures(comparison)) == 1 and len(report_figures(comparison, history)) == 2
    page = write_report(tmp_path, speaker=SPEAKER, comparison=comparison,
                        figures=report_figures(comparison, history))[0].read_text()
    assert [img[:8] for img in _images(page)] == [b"\x89PNG\r\n\x1a\n"] * 2


def test_the_page_is_self_contained(tmp_path) -> None:
    page = write_report(tmp_path, speaker=SPEAKER, comparison=_comparison(), figures=[PNG])[0].read_text()
    assert page.startswith("<!doctype html>") and "<style>" in page and page.rstrip().endswith("</html>")
    assert not re.search(r"(src|href)=['\"](?!data:)", page)  # no file or link outside the page
    assert "<script" not in page.lower() and "<link" not in page.lower()
    assert "Not a medical device" in page


def test_the_csv_has_one_row_per_held_out_utterance(tmp_path) -> None:
    comparison = _comparison()
    html_path, csv_path = write_report(tmp_path, speaker=SPEAKER, comparison=comparison)
    with csv_path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["utt_id", "reference", "before", "after", "ref_words", "errors_before", "errors_after",
                             "wer_before", "wer_after"]
    assert [r["utt_id"] for r in rows] == [u.utt_id for u in comparison.utterances]
    better = next(r for r in rows if r["utt_id"] == "better-2")
    assert (better["reference"], better["after"], better["errors_after"]) == ("a cup of tea please",) * 2 + ("0",)
    assert csv_path.name in html_path.read_text()  # the page names its CSV


def test_hostile_text_is_shown_as_text(tmp_path) -> None:
    hostile = "<script>alert('x')</script>"
    speaker = {"speaker_id": "spk-<b>1",  # ids are checked by the corpus; no '/' here: it names the file "display_name": hostile,
               "consent": [{"consent_id": "<img src=x onerror=alert(1)>"}]}
    refs = ["call <script>alert(1)</script> now", "good <b>morning</b>"]
    cmp_ = compare(refs, ["call <img src=x onerror=alert(1)> now", "good morning"], refs,
                   utt_ids=["<script>u0</script>", "u1\" onmouseover=\"alert(1)"])
    html_path, csv_path = write_report(tmp_path, speaker=speaker, comparison=cmp_, data={hostile: hostile},
                                       adapter={"file": "<a href='http://x'>x</a>"}, name="report")
    page = html_path.read_text()
    assert "<script" not in page.lower() and "<img src=x" not in page and "<a href" not in page
    assert "<b>1" not in page and '" onmouseover="' not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page  # the description, as text
    assert "&lt;script&gt;u0&lt;/script&gt;" in page and "spk-&lt;b&gt;1" in page
    assert "<title>Personalization report: spk-&lt;b&gt;1</title>" in page
    with csv_path.open(newline="", encoding="utf-8") as f:  # the CSV keeps the ids as they are
        assert [r["utt_id"] for r in csv.DictReader(f)] == ["<script>u0</script>", 'u1" onmouseover="alert(1)']


def test_large_numbers_have_thousands_separators(tmp_path) -> None:
    """Issue 24 A14: the report's adapter table said "430080" parameters per speaker."""
    html_path, _ = write_report(tmp_path, speaker=SPEAKER, comparison=_comparison(),
                                adapter={"parameters per speaker": 430080, "training steps": 42, "merged": True},
                                name="report-20240501-101500")
    page = html_path.read_text()
    assert "<td>parameters per speaker</td><td>430,080</td>" in page and "430080" not in page
    assert "<td>training steps</td><td>42</td>" in page and "<td>merged</td><td>True</td>" in page
