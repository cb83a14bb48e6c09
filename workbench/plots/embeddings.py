"""Figures for speaker embeddings: maps, a speaker's trajectory, similarities, nearest speakers.

Distances are cosine distances (``1 - cos``, 0 = same direction), as in
:mod:`workbench.embeddings`. Typical (control) speakers are drawn as circles,
atypical ones as triangles, speakers of unknown profile as squares.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from workbench.plots._base import new_axes, new_figure

__all__ = [
    "plot_embedding_map",
    "plot_embedding_scatter",
    "plot_nearest_speakers",
    "plot_similarity_heatmap",
    "plot_speaker_trajectory",
]

_TYPICAL = "typical"
_METHOD_NAMES = {"pca": "PCA", "tsne": "t-SNE", "umap": "UMAP"}


def _marker(profile: str | None) -> str:
    if profile is None or profile == "unknown":
        return "s"
    return "o" if profile == _TYPICAL else "^"


def _palette(names: Sequence[str]) -> dict[str, Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if len(names) <= 10 else "tab20"]
    return {n: cmap(i % cmap.N) for i, n in enumerate(names)}


def _short(name: str) -> str:
    return name.removeprefix("sim-")


def _axes_for(points: np.ndarray, ax: Any, figsize: tuple[float, float]) -> tuple[Any, Any]:
    if points.shape[1] == 3:
        if ax is not None:
            if getattr(ax, "name", "") != "3d":
                raise ValueError("3-D points need 3-D axes: fig.add_subplot(projection='3d'), or pass ax=None")
            return ax.figure, ax
        fig = new_figure(figsize)
        return fig, fig.add_subplot(1, 1, 1, projection="3d")
    if points.shape[1] != 2:
        raise ValueError(f"points must be (N, 2) or (N, 3); got shape {points.shape}")
    return new_axes(ax, figsize)


def plot_embedding_scatter(
    points: np.ndarray,
    speaker_ids: Sequence[str],
    *,
    profiles: Sequence[str] | Mapping[str, str] | None = None,
    color_by: str = "speaker",
    highlight: str | None = None,
    speaker_points: tuple[Sequence[str], np.ndarray] | None = None,
    ax: Any = None,
    title: str = "Speaker embeddings",
) -> Any:
    """Scatter of utterances (small marks) and speakers (large marks) in a 2-D or 3-D map.

    Args:
        points: ``(N, 2)`` or ``(N, 3)`` projected utterance embeddings
            (:func:`workbench.embeddings.fit_projection`).
        speaker_ids: ``N`` speaker ids.
        profiles: per-utterance profiles (``N``) or ``{speaker_id: profile}``;
            sets the marker (typical ``o``, atypical ``^``) and ``color_by="profile"``.
        color_by (str, default ``"speaker"``): ``"speaker"`` or ``"profile"``.
        highlight: a speaker id to emphasize (others fade).
        speaker_points: ``(ids, (S, 2|3))`` speaker positions, drawn large and labelled.
    """
    pts = np.asarray(points, dtype=float)
    if len(pts) != len(speaker_ids):
        raise ValueError(f"{len(pts)} points but {len(speaker_ids)} speaker ids")
    if color_by not in ("speaker", "profile"):
        raise ValueError(f"color_by must be 'speaker' or 'profile', got {color_by!r}")
    fig, ax = _axes_for(pts, ax, (6.5, 5.0))
    ids = [str(s) for s in speaker_ids]
    if isinstance(profiles, Mapping):
        prof_of = {s: str(profiles.get(s, "unknown")) for s in ids}
    elif profiles is not None:
        if len(profiles) != len(ids):
            raise ValueError(f"{len(profiles)} profiles but {len(ids)} points")
        prof_of = dict(zip(ids, (str(p) for p in profiles), strict=True))
    else:
        prof_of = {}
    if color_by == "profile" and not prof_of:
        raise ValueError("color_by='profile' needs profiles")
    speakers = list(dict.fromkeys(ids))
    if highlight is not None and highlight not in speakers:
        raise ValueError(f"speaker {highlight!r} is not in this map; it has {speakers[:5]}")
    keys = list(dict.fromkeys(prof_of[s] for s in speakers)) if color_by == "profile" else speakers
    colors = _palette(keys)
    lab = np.array(ids)
    for s in speakers:
        sel = lab == s
        key = prof_of[s] if color_by == "profile" else s
        faded = highlight is not None and s != highlight
        kw = {"color": colors[key], "marker": _marker(prof_of.get(s)), "alpha": 0.12 if faded else 0.7,
              "s": 14 if faded else (40 if s == highlight else 22), "linewidths": 0}
        ax.scatter(*pts[sel].T, **kw)
    if speaker_points is not None:
        sp_ids, sp = list(speaker_points[0]), np.asarray(speaker_points[1], dtype=float)
        for s, p in zip(sp_ids, sp, strict=True):
            key = prof_of.get(s, "unknown") if color_by == "profile" else s
            faded = highlight is not None and s != highlight
            ax.scatter(*p, color=colors.get(key, "grey"), marker=_marker(prof_of.get(s)), s=160,
                       edgecolors="black", linewidths=1.5 if s == highlight else 0.8, alpha=0.3 if faded else 1.0,
                       zorder=3)
            if not faded:
                ax.text(*p, " " + _short(s), fontsize=8, zorder=4)
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=colors[k], marker="o", ls="", label=_short(k)) for k in keys]
    if prof_of:
        handles += [Line2D([], [], color="black", marker="o", ls="", mfc="none", label="typical"),
                    Line2D([], [], color="black", marker="^", ls="", mfc="none", label="atypical")]
    ax.legend(handles=handles, fontsize=7, loc="best", framealpha=0.8)
    ax.set_title(title)
    ax.set_xlabel("dimension 1")
    ax.set_ylabel("dimension 2")
    if pts.shape[1] == 3:
        ax.set_zlabel("dimension 3")
    return fig


def plot_embedding_map(
    embeddings: Any,
    *,
    method: str = "pca",
    dim: int = 2,
    color_by: str = "speaker",
    highlight: str | None = None,
    seed: int = 0,
    threads: int | None = None,
    ax: Any = None,
) -> Any:
    """Project :class:`~workbench.embeddings.UtteranceEmbeddings` and draw utterances and speakers.

    Speakers are placed at the mean of their utterances' points (this works
    for t-SNE too, which cannot place new points). ``method``, ``dim``, ``seed``
    and ``threads`` go to :func:`workbench.embeddings.fit_projection`.
    """
    from workbench.embeddings import fit_projection

    proj = fit_projection(embeddings.vectors, method, dim, seed=seed, threads=threads)
    lab = np.array(embeddings.speaker_ids)
    speakers = embeddings.speakers
    centers = np.stack([proj.points[lab == s].mean(0) for s in speakers])
    names = {"dvector": "d-vectors", "encoder": "base-model encoder statistics"}
    title = f"{names.get(embeddings.source, embeddings.source)}, {_METHOD_NAMES.get(method, method)} map"
    return plot_embedding_scatter(proj.points, embeddings.speaker_ids, profiles=embeddings.profiles,
                                  color_by=color_by, highlight=highlight, speaker_points=(speakers, centers),
                                  ax=ax, title=title)


def plot_speaker_trajectory(
    session_points: np.ndarray,
    sessions: Sequence[str],
    *,
    background: np.ndarray | None = None,
    speaker: str = "",
    zoom: bool = False,
    ax: Any = None,
) -> Any:
    """One speaker across recording sessions: points joined by arrows, in session order.

    Args:
        session_points: ``(K, 2)`` the speaker's per-session positions in a map
            (e.g. ``projection.transform(session_embeddings(...)[1])``).
        sessions: ``K`` session labels (dates), same order.
        background: optional ``(M, 2)`` other points (other speakers), drawn grey.
        zoom (bool, default False): frame the sessions (with a margin) instead of the whole map.
    """
    pts = np.asarray(session_points, dtype=float)
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) != len(sessions):
        raise ValueError(f"session_points must be (K, 2) with K = {len(sessions)} sessions; got {pts.shape}")
    fig, ax = new_axes(ax, figsize=(6.0, 4.5))
    if background is not None:
        bg = np.asarray(background, dtype=float)
        ax.scatter(bg[:, 0], bg[:, 1], color="#ced4da", s=12, linewidths=0, label="other speakers")
    ax.plot(pts[:, 0], pts[:, 1], color="#1d3557", lw=1.0, alpha=0.6)
    for a, b in itertools.pairwise(pts):
        ax.annotate("", xy=b, xytext=a, arrowprops={"arrowstyle": "->", "color": "#1d3557", "lw": 1.5})
    shade = np.linspace(0.35, 1.0, len(pts))
    ax.scatter(pts[:, 0], pts[:, 1], c=shade, cmap="Blues", vmin=0, vmax=1, s=70, edgecolors="#1d3557", zorder=3,
               label="sessions (darker = later)")
    for k, (p, s) in enumerate(zip(pts, sessions, strict=True)):  # alternate sides: close sessions stay legible
        ax.annotate(str(s), p, textcoords="offset points", xytext=(6, 6) if k % 2 == 0 else (6, -12), fontsize=8)
    if zoom:
        lo, hi = pts.min(0), pts.max(0)
        margin = np.maximum(0.6 * (hi - lo).max(), 1e-3)
        ax.set_xlim(lo[0] - margin, hi[0] + margin)
        ax.set_ylim(lo[1] - margin, hi[1] + margin)
    ax.set_title(f"{_short(speaker) or 'Speaker'} across sessions")
    ax.set_xlabel("dimension 1")
    ax.set_ylabel("dimension 2")
    ax.legend(fontsize=8, loc="best")
    return fig


def plot_similarity_heatmap(
    speaker_ids: Sequence[str], vectors: np.ndarray, *, ax: Any = None, title: str = "Speaker similarity"
) -> Any:
    """Cosine similarity between speakers (1 = same direction), with the values written in.

    Args:
        speaker_ids: ``S`` ids.
        vectors: ``(S, D)`` speaker embeddings (:func:`workbench.embeddings.speaker_embeddings`).
    """
    from workbench.embeddings import cosine_distances

    v = np.asarray(vectors, dtype=float)
    if len(v) != len(speaker_ids):
        raise ValueError(f"{len(speaker_ids)} ids but {len(v)} vectors")
    sim = 1.0 - cosine_distances(v)
    n = len(speaker_ids)
    fig, ax = new_axes(ax, figsize=(1.2 + 0.6 * n, 0.8 + 0.55 * n))
    im = ax.imshow(sim, cmap="viridis", vmin=min(0.0, float(sim.min())), vmax=1.0)
    names = [_short(s) for s in speaker_ids]
    ax.set_xticks(range(n), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n), names, fontsize=8)
    if n <= 16:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, f"{sim[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="black" if sim[i, j] > 0.6 else "white")
    fig.colorbar(im, ax=ax, label="cosine similarity", shrink=0.8)
    ax.set_title(title)
    return fig


def plot_nearest_speakers(
    neighbours: Sequence[tuple[str, float]],
    *,
    query: str = "this speaker",
    profiles: Mapping[str, str] | None = None,
    ax: Any = None,
) -> Any:
    """Horizontal bars: the nearest speakers and their cosine distances, nearest on top.

    Args:
        neighbours: ``[(speaker_id, distance), ...]`` from :func:`workbench.embeddings.nearest_speakers`.
        profiles: optional ``{speaker_id: profile}``: typical speakers grey, atypical teal.
    """
    if not neighbours:
        raise ValueError("no neighbours to draw")
    fig, ax = new_axes(ax, figsize=(5.5, 0.6 + 0.45 * len(neighbours)))
    names = [_short(s) for s, _ in neighbours][::-1]
    dist = [float(d) for _, d in neighbours][::-1]
    prof = profiles or {}
    colors = ["#adb5bd" if prof.get(s) == _TYPICAL else "#2a9d8f" for s, _ in neighbours][::-1]
    bars = ax.barh(names, dist, color=colors)
    for b, d in zip(bars, dist, strict=True):
        ax.text(b.get_width(), b.get_y() + b.get_height() / 2, f" {d:.3f}", va="center", fontsize=8)
    ax.set_xlim(0, max(dist) * 1.25 if max(dist) > 0 else 1.0)
    ax.set_xlabel("cosine distance (0 = most alike)")
    ax.set_title(f"Nearest speakers to {_short(query)}", fontsize=10)
    ax.spines[["top", "right"]].set_visible(False)
    return fig
