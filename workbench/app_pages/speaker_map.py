"""Speakers map page: where the open speaker sits among the others, and the nearest speakers.

Uses :mod:`workbench.embeddings` (speaker embeddings, a PCA map, cosine
nearest neighbours) on the speaker folders of the data folder; embeddings are
cached in each speaker folder, so a second map is quick. The work runs in a
background thread; the page shows a note instead when the embeddings module is
not installed.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from typing import Any

import panel as pn

from workbench.app_pages.common import (
    AppContext,
    SessionState,
    esc,
    html_pane,
    in_session,
    message_html,
)
from workbench.errors import WorkbenchError

__all__ = ["SpeakerMapPage", "embeddings_available"]

_log = logging.getLogger(__name__)
_SOURCES = {"Voice (speaker encoder)": "dvector", "How the base model hears them": "encoder"}
_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
            "#17becf")
_PER_SPEAKER = 20  # recordings per speaker in the map: enough for a stable centre, quick to compute


def embeddings_available() -> bool:
    try:
        return importlib.util.find_spec("workbench.embeddings") is not None
    except (ImportError, ValueError):
        return False


def _figure(result: dict[str, Any], current: str) -> Any:
    from bokeh.models import ColumnDataSource, HoverTool
    from bokeh.plotting import figure

    fig = figure(height=460, sizing_mode="stretch_width", toolbar_location="right", tools="pan,wheel_zoom,reset",
                 title="Each dot is one recording; the big circle is the speaker's centre",
                 x_axis_label="map direction 1", y_axis_label="map direction 2")
    for i, sid in enumerate(result["ids"]):
        colour = _PALETTE[i % len(_PALETTE)]
        rows = [j for j, s in enumerate(result["utt_speakers"]) if s == sid]
        src = ColumnDataSource({"x": [result["utt_xy"][j][0] for j in rows],
                                "y": [result["utt_xy"][j][1] for j in rows],
                                "speaker": [sid] * len(rows), "text": [result["texts"][j] for j in rows]})
        mine = sid == current
        fig.scatter("x", "y", source=src, size=9 if mine else 6, alpha=0.8 if mine else 0.45, color=colour,
                    legend_label=sid + (" (open)" if mine else ""))
        cx, cy = result["speaker_xy"][i]
        fig.scatter([cx], [cy], size=24 if mine else 16, color=colour, line_color="black",
                    line_width=3 if mine else 1, fill_alpha=0.9)
    fig.add_tools(HoverTool(tooltips=[("speaker", "@speaker"), ("said", "@text")]))
    fig.legend.click_policy = "hide"
    fig.legend.label_text_font_size = "9pt"
    fig.add_layout(fig.legend[0], "right")
    return fig


def compute_map(ctx: AppContext, current: str, source: str) -> dict[str, Any]:
    """Embeddings of every speaker folder, a 2-D PCA map, and the open speaker's nearest speakers."""
    from workbench.corpus import list_speakers
    from workbench.embeddings import (
        embed_corpora,
        fit_projection,
        nearest_speakers,
        speaker_embeddings,
    )

    corpora = [c for c in list_speakers(ctx.data_dir) if c.utterances()]
    if len(corpora) < 2:
        raise WorkbenchError("The map needs at least two speakers with recordings in the data folder.")
    backend = ctx.backend_factory(ctx.default_model) if source == "encoder" else None
    emb = embed_corpora(corpora, source, backend=backend, max_per_speaker=_PER_SPEAKER)
    ids, centres = speaker_embeddings(emb)
    proj = fit_projection(emb.vectors, "pca", dim=2)
    nearest = (nearest_speakers(centres[ids.index(current)], (ids, centres), k=3, exclude=[current])
               if current in ids else [])
    return {"ids": ids, "utt_speakers": list(emb.speaker_ids), "texts": list(emb.texts),
            "utt_xy": proj.points.tolist(), "speaker_xy": proj.transform(centres).tolist(), "nearest": nearest}


class SpeakerMapPage(pn.viewable.Viewer):
    """Draw the map on request (it can take a minute the first time)."""

    def __init__(self, ctx: AppContext, state: SessionState, **params: Any) -> None:
        super().__init__(**params)
        self.ctx, self.state = ctx, state
        self.available = embeddings_available()
        self.source = pn.widgets.Select(name="Compare speakers by", options=_SOURCES, width=320)
        self.draw = pn.widgets.Button(name="Draw the map", button_type="primary", width=200,
                                      disabled=not self.available)
        self.status = html_pane("")
        self.plot = pn.Column(sizing_mode="stretch_width")
        self.nearest = html_pane("")
        self.result: dict[str, Any] | None = None
        self._busy = threading.Lock()
        self.draw.on_click(lambda _: self.start())
        if not self.available:
            self.status.object = message_html(
                "The speakers map is not available in this installation yet (the speaker-embedding module "
                "is missing). Everything else works without it.", None)

    def compute(self) -> str | None:
        """Compute the map into :attr:`result`; returns the problem in plain words, or None."""
        with self._busy:
            try:
                self.result = compute_map(self.ctx, self.state.speaker_id, self.source.value)
            except WorkbenchError as err:
                self.result = None
                return str(err)
            except Exception as err:  # noqa: BLE001 - top of the map's thread: any failure (sklearn, torch, a bug)
                # must reach the page and the log; a narrower catch would leave "Computing the map…" forever
                _log.exception("speakers map failed")
                self.result = None
                return f"The map could not be drawn ({type(err).__name__}: {err})."
        return None

    def run(self) -> dict[str, Any] | None:
        """Compute and show the map, blocking (:meth:`start` does it in a thread)."""
        self.show(self.compute())
        return self.result

    def show(self, error: str | None = None) -> None:
        """Put the last result (or ``error``) on the page."""
        self.draw.disabled = False
        if error is not None or self.result is None:
            self.status.object = message_html(error or "The map could not be drawn.", False)
            return
        self.plot.objects = [pn.pane.Bokeh(_figure(self.result, self.state.speaker_id), sizing_mode="stretch_width")]
        self.status.object = ""
        if self.result["nearest"]:
            items = "".join(f"<li><b>{esc(s)}</b> (distance {d:.2f})</li>" for s, d in self.result["nearest"])
            self.nearest.object = (f"<h3>Nearest to {esc(self.state.speaker_id)}</h3><ol>{items}</ol>"
                                   "<p>Distance 0 means the same voice; 1 means unrelated.</p>")
        else:
            self.nearest.object = "<p>Open a speaker with recordings to see who is nearest to them.</p>"

    def start(self) -> None:
        """Compute the map in a background thread; the page is updated on the session's event loop."""
        if not self.available or self._busy.locked():
            return
        self.draw.disabled = True
        self.status.object = message_html("Computing the map… the first time can take a minute.", None)
        outcome: dict[str, str | None] = {}
        show = in_session(lambda: self.show(outcome.get("error")))

        def work() -> None:
            outcome["error"] = self.compute()
            show()

        threading.Thread(target=work, name="workbench-map", daemon=True).start()

    def __panel__(self) -> Any:
        return pn.Column(
            html_pane("<h2>Speakers map</h2><p>Speakers whose recordings sound alike are close together. "
                      "This is a picture of similarity, not a diagnosis.</p>"),
            pn.Row(self.source, pn.Column(pn.Spacer(height=18), self.draw)), self.status, self.plot, self.nearest,
            sizing_mode="stretch_width", css_classes=["wb-page", "wb-map"],
        )
