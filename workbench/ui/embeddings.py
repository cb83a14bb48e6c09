"""Speaker-embedding explorer: hover an utterance to read it, click to hear it, pick a speaker to highlight.

The logic lives in :class:`EmbeddingExplorer` (no widgets needed, testable);
:meth:`EmbeddingExplorer.widget` builds the view: a small SVG scatter drawn in
the page (an anywidget; hover and click come back as messages, so nothing but
the point coordinates and colours is synced), a speaker menu, the hovered
utterance's text, a player and the selected speaker's nearest speakers.

>>> import numpy as np
>>> from workbench.embeddings import UtteranceEmbeddings
>>> emb = UtteranceEmbeddings(np.eye(4, 3, dtype=np.float32), ["a", "a", "b", "b"], ["1", "2", "3", "4"],
...     ["hi", "yes", "no", "ok"], ["typical"] * 2 + ["stutter"] * 2, ["2026-01-01"] * 4, [None] * 4, "dvector")
>>> ex = EmbeddingExplorer(emb)
>>> ex.hover(2)["text"]
'no'
>>> ex.select("b"); ex.faded()
[True, True, False, False]
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np

from workbench.embeddings import (
    Projection,
    UtteranceEmbeddings,
    fit_projection,
    nearest_speakers,
    speaker_embeddings,
)
from workbench.errors import EmbeddingError, WorkbenchError

__all__ = ["EmbeddingExplorer"]

_ATYPICAL_SHAPE, _TYPICAL_SHAPE, _UNKNOWN_SHAPE = "triangle", "circle", "square"


class EmbeddingExplorer:
    """View state over per-utterance embeddings: their 2-D map, the selected speaker, the hovered utterance.

    Args:
        embeddings: :class:`~workbench.embeddings.UtteranceEmbeddings` (e.g. from
            :func:`~workbench.embeddings.embed_corpora`).
        method (str, default ``"pca"``): map, see :func:`~workbench.embeddings.fit_projection`.
        seed (int, default 0): map randomness (t-SNE/UMAP).
        projection: an already fitted 2-D :class:`~workbench.embeddings.Projection` of these embeddings.
        threads (int | None): threads for t-SNE/UMAP, see :func:`~workbench.embeddings.fit_projection`.
    """

    def __init__(self, embeddings: UtteranceEmbeddings, *, method: str = "pca", seed: int = 0,
                 projection: Projection | None = None, threads: int | None = None) -> None:
        if len(embeddings) == 0:
            raise EmbeddingError("nothing to explore: the embeddings are empty")
        self.embeddings = embeddings
        self.projection = projection or fit_projection(embeddings.vectors, method, 2, seed=seed, threads=threads)
        if self.projection.points.shape != (len(embeddings), 2):
            raise EmbeddingError(f"the projection has {self.projection.points.shape} points; need "
                                 f"({len(embeddings)}, 2)")
        self.points = self.projection.points  # (N, 2)
        self.selected: str | None = None
        self.hovered: int | None = None
        self.speaker_ids, self.speaker_vectors = speaker_embeddings(embeddings)

    @property
    def speakers(self) -> list[str]:
        return list(self.speaker_ids)

    def _check(self, index: int) -> int:
        i = int(index)
        if not 0 <= i < len(self.embeddings):
            raise EmbeddingError(f"there is no utterance {index}; the map holds {len(self.embeddings)}")
        return i

    def select(self, speaker_id: str | None) -> None:
        """Highlight one speaker (None: all)."""
        if speaker_id is not None and speaker_id not in self.speaker_ids:
            raise EmbeddingError(f"speaker {speaker_id!r} is not in this map; it has {self.speaker_ids[:5]}")
        self.selected = speaker_id

    def info(self, index: int) -> dict[str, Any]:
        """What to show for utterance ``index``: speaker, profile, text, session, utterance id."""
        i = self._check(index)
        e = self.embeddings
        return {"index": i, "speaker_id": e.speaker_ids[i], "profile": e.profiles[i], "text": e.texts[i],
                "session": e.sessions[i], "utt_id": e.utt_ids[i]}

    def hover(self, index: int | None) -> dict[str, Any] | None:
        """The pointer is over utterance ``index`` (None: over nothing); returns its :meth:`info`."""
        if index is None:
            self.hovered = None
            return None
        info = self.info(index)
        self.hovered = info["index"]
        return info

    def nearest_point(self, x: float, y: float) -> int:
        """Index of the utterance nearest to map coordinates ``(x, y)``."""
        return int(np.argmin(np.sum((self.points - np.array([x, y])) ** 2, axis=1)))

    def audio(self, index: int) -> np.ndarray:
        """``(S,)`` float32 16 kHz audio of utterance ``index``."""
        return self.embeddings.load_audio(self._check(index))

    def faded(self) -> list[bool]:
        """Per utterance: drawn faded (another speaker is selected)."""
        return [self.selected is not None and s != self.selected for s in self.embeddings.speaker_ids]

    def nearest(self, k: int = 3) -> list[tuple[str, float]]:
        """The selected speaker's ``k`` nearest other speakers (cosine distance); [] when none is selected."""
        if self.selected is None:
            return []
        v = self.speaker_vectors[self.speaker_ids.index(self.selected)]
        return nearest_speakers(v, (self.speaker_ids, self.speaker_vectors), k, exclude=[self.selected])

    def scatter_data(self) -> dict[str, list]:
        """What the page draws: points scaled to [0, 1] (y up), hex colours, shapes, fade flags."""
        from matplotlib import colormaps
        from matplotlib.colors import to_hex

        p = self.points
        lo, span = p.min(0), np.ptp(p, axis=0)
        span = np.where(span > 0, span, 1.0)
        scaled = ((p - lo) / span).round(4).tolist()
        cmap = colormaps["tab10" if len(self.speaker_ids) <= 10 else "tab20"]
        color = {s: to_hex(cmap(i % cmap.N)) for i, s in enumerate(self.speaker_ids)}
        shape = {"typical": _TYPICAL_SHAPE, "unknown": _UNKNOWN_SHAPE}
        return {"points": scaled, "colors": [color[s] for s in self.embeddings.speaker_ids],
                "shapes": [shape.get(p, _ATYPICAL_SHAPE) for p in self.embeddings.profiles],
                "faded": self.faded()}

    def figure(self) -> Any:
        """A static matplotlib map with the selected speaker highlighted."""
        from workbench.plots import plot_embedding_scatter

        lab = np.array(self.embeddings.speaker_ids)
        centers = np.stack([self.points[lab == s].mean(0) for s in self.speaker_ids])
        return plot_embedding_scatter(self.points, self.embeddings.speaker_ids, profiles=self.embeddings.profiles,
                                      highlight=self.selected, speaker_points=(self.speaker_ids, centers))

    def widget(self, *, width: int = 560, height: int = 420) -> Any:
        """The ipywidgets view (needs ``pip install 'workbench[ui]'``)."""
        from workbench._optional import require
        from workbench.ui._render import wav_bytes

        w = require("ipywidgets", extra="ui", purpose="show the embedding explorer")
        scatter = _scatter_class()(width=width, height=height, **self.scatter_data())
        menu = w.Dropdown(options=[("all speakers", None)] + [(s, s) for s in self.speaker_ids],
                          description="speaker")
        text = w.HTML("<i>Point at an utterance to read it; click to hear it.</i>")
        near = w.HTML()
        player = w.Audio(format="wav", autoplay=True, loop=False)

        def show(info: dict[str, Any] | None) -> None:
            if info is not None:
                text.value = (f"<b>{_esc(info['speaker_id'])}</b> ({_esc(info['profile'])}, session "
                              f"{_esc(info['session'])}): “{_esc(info['text'])}”")

        def on_select(change: dict) -> None:
            self.select(change["new"])
            scatter.faded = self.faded()
            rows = self.nearest(3)
            near.value = "" if not rows else "Nearest speakers: " + ", ".join(
                f"{_esc(s)} ({d:.3f})" for s, d in rows)

        def on_message(content: dict) -> None:
            kind, index = content.get("type"), content.get("index")
            if kind == "hover":
                show(self.hover(index))
            elif kind == "click" and index is not None:
                show(self.hover(index))
                try:
                    player.value = wav_bytes(self.audio(index))
                except WorkbenchError as err:  # a missing or unreadable file must not break the view
                    text.value += f"<br><span style='color:#b00'>cannot play it: {_esc(str(err))}</span>"

        menu.observe(on_select, names="value")
        scatter.on_event(on_message)
        box = w.VBox([menu, scatter, text, player, near])
        box.scatter, box.menu, box.text, box.player, box.near = scatter, menu, text, player, near  # for tests
        return box


def _esc(s: Any) -> str:
    import html

    return html.escape(str(s))


_ESM = r"""
const NS = "http://www.w3.org/2000/svg";
function render({ model, el }) {
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("class", "wb-embed-map");
  svg.style.border = "1px solid #dee2e6";
  el.appendChild(svg);
  let marks = [];
  function draw() {
    const W = model.get("width"), H = model.get("height"), pad = 14;
    svg.setAttribute("width", W); svg.setAttribute("height", H);
    svg.replaceChildren();
    marks = [];
    const pts = model.get("points"), colors = model.get("colors"), shapes = model.get("shapes");
    const faded = model.get("faded");
    pts.forEach(([x, y], i) => {
      const cx = pad + x * (W - 2 * pad), cy = H - pad - y * (H - 2 * pad);
      const r = faded[i] ? 3 : 5;
      let m;
      if (shapes[i] === "triangle") {
        m = document.createElementNS(NS, "polygon");
        m.setAttribute("points", `${cx},${cy - r * 1.2} ${cx - r},${cy + r * 0.8} ${cx + r},${cy + r * 0.8}`);
      } else if (shapes[i] === "square") {
        m = document.createElementNS(NS, "rect");
        m.setAttribute("x", cx - r); m.setAttribute("y", cy - r);
        m.setAttribute("width", 2 * r); m.setAttribute("height", 2 * r);
      } else {
        m = document.createElementNS(NS, "circle");
        m.setAttribute("cx", cx); m.setAttribute("cy", cy); m.setAttribute("r", r);
      }
      m.setAttribute("fill", colors[i]);
      m.setAttribute("fill-opacity", faded[i] ? 0.15 : 0.8);
      m.setAttribute("data-index", i);
      m.style.cursor = "pointer";
      m.addEventListener("mouseenter", () => { m.setAttribute("stroke", "black"); model.send({ type: "hover", index: i }); });
      m.addEventListener("mouseleave", () => m.removeAttribute("stroke"));
      m.addEventListener("click", () => model.send({ type: "click", index: i }));
      svg.appendChild(m);
      marks.push(m);
    });
  }
  for (const name of ["points", "colors", "shapes", "faded", "width", "height"]) model.on(`change:${name}`, draw);
  draw();
}
export default { render };
"""


@functools.lru_cache(maxsize=1)
def _scatter_class() -> type:
    """The anywidget class, built on first use so importing this module needs no anywidget."""
    from workbench._optional import require

    anywidget = require("anywidget", extra="ui", purpose="show the embedding explorer")
    traitlets = require("traitlets", extra="ui", purpose="show the embedding explorer")

    class EmbeddingScatter(anywidget.AnyWidget):
        """SVG scatter in the page; hover/click arrive as ``{"type": "hover"|"click", "index": i}`` messages."""

        _esm = _ESM
        points = traitlets.List([]).tag(sync=True)  # (N, 2) in [0, 1]
        colors = traitlets.List([]).tag(sync=True)  # N hex colours
        shapes = traitlets.List([]).tag(sync=True)  # N of circle | triangle | square
        faded = traitlets.List([]).tag(sync=True)  # N bools
        width = traitlets.Int(560).tag(sync=True)
        height = traitlets.Int(420).tag(sync=True)

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self._handlers: list = []
            self.on_msg(lambda _w, content, _b: self.handle_message(content))

        def on_event(self, fn: Any) -> Any:
            """Call ``fn(content)`` for every hover/click message. Returns ``fn``."""
            self._handlers.append(fn)
            return fn

        def handle_message(self, content: Any, buffers: Sequence[Any] = ()) -> None:
            """One message from the page (what the comm delivers; tests call it directly)."""
            if not isinstance(content, dict) or content.get("type") not in ("hover", "click"):
                return
            index = content.get("index")
            if index is not None and not (isinstance(index, int) and 0 <= index < len(self.points)):
                return  # a stale page after the data changed: ignore
            for fn in self._handlers:
                fn(content)

    return EmbeddingScatter
