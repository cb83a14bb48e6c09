"""A self-contained HTML report (plots embedded) plus a CSV, for a clinician to file.

The report holds: the speaker and data summary, ASR word error rate before and
after with its interval, the worst and best utterances with word alignments,
the figures it is given, the adapter details, and the "not a medical device"
notice. It has no external links or scripts: it opens offline in any browser.

This module draws nothing: the caller that can (a front end with matplotlib)
renders the figures, e.g. :func:`workbench.plots.report_figures` (the WER before and
after, the training curve), and passes them in; without figures the report has none.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from workbench._atomic import write_atomic_with, write_bytes_atomic
from workbench.metrics import METRIC_LABEL, Comparison

__all__ = ["NOTICE", "report_stem", "write_report"]

NOTICE = ("Not a medical device. These figures are ASR word error rates: how often an automatic speech "
          "recogniser misrecognised words in these recordings. They are not a clinical intelligibility score "
          "and do not measure how well listeners understand the speaker.")

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:980px;margin:2em auto;color:#222;padding:0 1em}
h1{font-size:1.6em} h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}
.notice{background:#fff8e1;border-left:4px solid #f9a825;padding:.6em 1em}
.big{font-size:1.5em} table{border-collapse:collapse;width:100%;font-size:.92em}
td,th{border-bottom:1px solid #eee;padding:4px 6px;text-align:left;vertical-align:top}
.kv td:first-child{color:#555;width:30%} img{max-width:100%}
.sim{background:#e3f2fd;border-left:4px solid #1e88e5;padding:.4em 1em}
"""


# Clearer labels for the callers' data keys ("training minutes" read as minutes spent training).
_LABELS = {"training minutes": "minutes of training audio", "minutes": "minutes of training audio",
           "utterances": "training utterances", "validation_utterances": "validation utterances"}


def report_stem(name: str, speaker_id: str) -> str:
    """The report's file name without extension: it always names the speaker.

    >>> report_stem("report-20240501-101500", "spk-017")
    'report-spk-017-20240501-101500'
    >>> report_stem("report", "spk-017")
    'report-spk-017'
    """
    if speaker_id and speaker_id in name:
        return name
    head, sep, rest = name.partition("-")
    return f"{head}-{speaker_id}{sep}{rest}" if speaker_id else name


def _consent_ids(speaker: dict) -> str:
    ids = [str(c.get("consent_id")) for c in speaker.get("consent", []) or [] if isinstance(c, dict)
           and c.get("consent_id")]
    return ", ".join(dict.fromkeys(ids)) or "none recorded"


def _png(fig: Any) -> str:
    """An ``<img>`` with the figure inside it: PNG ``bytes`` as they are, else ``fig.savefig`` (matplotlib)."""
    if isinstance(fig, bytes | bytearray):
        data = bytes(fig)
    else:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
        data = buf.getvalue()
    return "<img alt='plot' src='data:image/png;base64," + base64.b64encode(data).decode() + "'>"


def _kv(rows: dict[str, Any]) -> str:
    def text(v: Any) -> str:  # 430,080 parameters, not 430080 (a bool is an int too: keep True/False)
        return f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v)

    return "<table class='kv'>" + "".join(
        f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(text(v))}</td></tr>" for k, v in rows.items()) + "</table>"


def write_report(out_dir: str | Path, *, speaker: dict, comparison: Comparison, adapter: dict | None = None,
                 data: dict | None = None, name: str = "report", figures: Sequence[Any] = ()) -> tuple[Path, Path]:
    """Write ``<name>.html`` and ``<name>.csv`` into ``out_dir``, ``<name>`` with the speaker id in it.

    Args:
        speaker: speaker.json content (id, display name, simulated flag, profile...).
        comparison: :func:`workbench.metrics.compare` result on held-out utterances.
        adapter: adapter details (family, parameter report, training time, ...).
        data: training data summary (utterances, minutes, ...).
        name: the file name without extension; the speaker id is added after its first
            word when it does not contain it (``report-<stamp>`` -> ``report-<id>-<stamp>``).
        figures: shown under the result, in order: matplotlib Figures (anything with
            ``savefig``) or PNG ``bytes``, embedded in the page; none: no figures.
    Returns:
        ``(html_path, csv_path)``, both written atomically and private to the user (mode 0600).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sid = str(speaker.get("speaker_id", "speaker"))
    name = report_stem(name, sid)
    csv_path = write_atomic_with(out / f"{name}.csv", comparison.to_csv)  # private (0600) like the report
    improved = [u for u in comparison.best(5) if u.change > 0]
    plots = "".join(_png(fig) for fig in figures)
    simulated = ("<p class='sim'>This speaker is <b>simulated</b> (synthetic speech for teaching and testing), "
                 "not a real person.</p>" if speaker.get("simulated") else "")
    headline = (f"<p class='big'>{100 * comparison.wer_before:.1f}% &rarr; <b>{100 * comparison.wer_after:.1f}%</b>"
                f" ASR word error rate</p><p>{html.escape(comparison.summary())}</p>")
    body = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Personalization report: {html.escape(sid)}</title><style>{_CSS}</style></head><body>
<h1>Personalization report: {html.escape(sid)}</h1>
<p class="notice">{html.escape(NOTICE)}</p>{simulated}
<h2>Result</h2>{headline}{plots}
<h2>Speaker and data</h2>{_kv({"speaker id": sid, "description": speaker.get("display_name", ""),
                              "consent record": _consent_ids(speaker),
                              "simulated": bool(speaker.get("simulated")),
                              **{_LABELS.get(k, k): v for k, v in (data or {}).items()}})}
<h2>Utterances with the most errors after personalization</h2>{comparison.to_html_table(comparison.worst(5))}
<h2>Utterances that improved most</h2>{comparison.to_html_table(improved) if improved else
                                       "<p>None of the held-out utterances has fewer word errors after "
                                       "personalization.</p>"}
<h2>Adapter</h2>{_kv(adapter or {})}
<h2>All held-out utterances</h2>{comparison.to_html_table()}
<p style="color:#777;font-size:.85em">Metric: {html.escape(METRIC_LABEL)}. Written
{_dt.datetime.now().strftime("%Y-%m-%d %H:%M")} by the atypical-speech personalization workbench.
Per-utterance figures: {html.escape(csv_path.name)}.</p></body></html>"""
    html_path = out / f"{name}.html"
    write_bytes_atomic(html_path, body.encode("utf-8"))
    return html_path, csv_path
