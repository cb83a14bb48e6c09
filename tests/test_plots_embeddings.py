"""workbench.plots.embeddings: speaker maps, a speaker's sessions, similarities, nearest speakers.

Each function returns a Figure, draws into a given ``ax=``, labels what it shows, and
refuses inputs that do not fit with a message that names them.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from matplotlib.figure import Figure

from workbench.embeddings import UtteranceEmbeddings
from workbench.plots import _base
from workbench.plots import embeddings as plots

IDS = ["sim-a", "sim-a", "sim-b", "sim-b", "sim-c", "sim-c"]
PROFILES = {"sim-a": "typical", "sim-b": "dysarthria", "sim-c": "stutter"}


def _points(dim: int = 2) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((len(IDS), dim))


def _legend(ax) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


def utterance_embeddings(seed: int = 0) -> UtteranceEmbeddings:
    """12 random 8-D d-vectors of 3 speakers (``sim-s0`` typical, the others dysarthria); also for
    ``test_plots_display.py``."""
    rng = np.random.default_rng(seed)
    n = 12
    speakers = [f"sim-s{i % 3}" for i in range(n)]
    return UtteranceEmbeddings(rng.standard_normal((n, 8)).astype(np.float32), speakers,
                               [f"u{i}" for i in range(n)], ["hello"] * n,
                               ["typical" if s == "sim-s0" else "dysarthria" for s in speakers],
                               ["2024-01-01"] * n, [None] * n, "dvector")


def test_scatter_draws_one_group_per_speaker_with_short_names_and_markers() -> None:
    fig = plots.plot_embedding_scatter(_points(), IDS, profiles=PROFILES)
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    assert len(ax.collections) == 3 and [len(c.get_offsets()) for c in ax.collections] == [2, 2, 2]
    assert _legend(ax) == ["a", "b", "c", "typical", "atypical"]
    assert (ax.get_title(), ax.get_xlabel(), ax.get_ylabel()) == ("Speaker embeddings", "dimension 1", "dimension 2")


def test_scatter_highlight_fades_the_others_and_speaker_points_are_labelled() -> None:
    centers = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 0.0]])
    (ax,) = plots.plot_embedding_scatter(_points(), IDS, highlight="sim-b",
                                         speaker_points=(["sim-a", "sim-b", "sim-c"], centers)).axes
    alphas = [c.get_alpha() for c in ax.collections[:3]]
    assert alphas[1] > alphas[0] and alphas[0] == alphas[2]
    assert [t.get_text() for t in ax.texts] == [" b"]  # faded speakers are not labelled


def test_scatter_coloured_by_profile_and_in_3d() -> None:
    (ax,) = plots.plot_embedding_scatter(_points(), IDS, profiles=PROFILES, color_by="profile").axes
    assert _legend(ax)[:3] == ["typical", "dysarthria", "stutter"]
    fig = plots.plot_embedding_scatter(_points(3), IDS, title="three")
    (ax3,) = fig.axes
    assert ax3.name == "3d" and ax3.get_zlabel() == "dimension 3" and ax3.get_title() == "three"


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"points": np.zeros((5, 2))}, "5 points but 6 speaker ids"),
    ({"points": np.zeros((6, 4))}, r"must be \(N, 2\) or \(N, 3\)"),
    ({"color_by": "age"}, "color_by must be 'speaker' or 'profile'"),
    ({"color_by": "profile"}, "color_by='profile' needs profiles"),
    ({"highlight": "sim-z"}, "speaker 'sim-z' is not in this map"),
    ({"profiles": ["typical"]}, "1 profiles but 6 points"),
])
def test_scatter_refuses_what_does_not_fit(kwargs, words) -> None:
    args = {"points": _points(), **kwargs}
    with pytest.raises(ValueError, match=words):
        plots.plot_embedding_scatter(args.pop("points"), IDS, **args)


def test_3d_points_need_3d_axes() -> None:
    ax = _base.new_figure().add_subplot(1, 1, 1)
    with pytest.raises(ValueError, match="3-D points need 3-D axes"):
        plots.plot_embedding_scatter(_points(3), IDS, ax=ax)


def test_embedding_map_projects_and_places_each_speaker_at_its_mean() -> None:
    emb = utterance_embeddings()
    (ax,) = plots.plot_embedding_map(emb).axes
    assert ax.get_title() == "d-vectors, PCA map"
    assert sorted(t.get_text() for t in ax.texts) == [" s0", " s1", " s2"]
    big = ax.collections[3:]  # after the 3 utterance groups: one large mark per speaker
    assert len(big) == 3 and all(c.get_sizes()[0] == 160 for c in big)


def test_trajectory_joins_sessions_in_order_and_zoom_frames_them() -> None:
    pts = np.array([[0.0, 0.0], [1.0, 0.5], [1.5, 2.0]])
    fig = plots.plot_speaker_trajectory(pts, ["2024-01", "2024-02", "2024-03"], speaker="sim-a",
                                        background=np.full((4, 2), 50.0), zoom=True)
    (ax,) = fig.axes
    arrows = [t for t in ax.texts if t.get_text() == ""]
    assert len(arrows) == 2  # one arrow between consecutive sessions
    assert [t.get_text() for t in ax.texts if t.get_text()] == ["2024-01", "2024-02", "2024-03"]
    assert ax.get_title() == "a across sessions"
    assert ax.get_xlim()[1] < 50  # zoomed on the sessions, not the far-away background
    assert "sessions (darker = later)" in _legend(ax)
    with pytest.raises(ValueError, match="K = 2 sessions"):
        plots.plot_speaker_trajectory(pts, ["2024-01", "2024-02"])


def test_similarity_heatmap_writes_each_cosine_similarity() -> None:
    vectors = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    fig = plots.plot_similarity_heatmap(["sim-a", "sim-b", "sim-c"], vectors)
    ax, bar = fig.axes  # the map and its colour bar
    values = [t.get_text() for t in ax.texts]
    assert len(values) == 9 and values[:3] == ["1.00", "0.00", "0.71"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]
    assert bar.get_ylabel() == "cosine similarity"
    with pytest.raises(ValueError, match="2 ids but 3 vectors"):
        plots.plot_similarity_heatmap(["sim-a", "sim-b"], vectors)


def test_nearest_speakers_are_bars_nearest_on_top_typical_grey() -> None:
    fig = plots.plot_nearest_speakers([("sim-a", 0.1), ("sim-b", 0.3)], query="sim-q", profiles={"sim-a": "typical"})
    (ax,) = fig.axes
    assert [p.get_width() for p in ax.patches] == pytest.approx([0.3, 0.1])  # drawn bottom-up
    assert [t.get_text() for t in ax.get_yticklabels()] == ["b", "a"]
    grey, teal = ax.patches[1].get_facecolor(), ax.patches[0].get_facecolor()
    assert grey != teal
    assert ax.get_title() == "Nearest speakers to q"
    assert ax.get_xlabel() == "cosine distance (0 = most alike)"
    with pytest.raises(ValueError, match="no neighbours"):
        plots.plot_nearest_speakers([])


@pytest.mark.parametrize("draw", [
    lambda ax: plots.plot_embedding_scatter(_points(), IDS, ax=ax),
    lambda ax: plots.plot_embedding_map(utterance_embeddings(), ax=ax),
    lambda ax: plots.plot_speaker_trajectory(np.array([[0.0, 0.0], [1.0, 1.0]]), ["s1", "s2"], ax=ax),
    lambda ax: plots.plot_similarity_heatmap(["a", "b"], np.eye(2), ax=ax),
    lambda ax: plots.plot_nearest_speakers([("a", 0.2)], ax=ax),
])
def test_each_draws_into_the_given_axes_and_returns_its_figure(draw) -> None:
    fig = _base.new_figure()
    ax = fig.add_subplot(1, 1, 1)
    assert draw(ax) is fig
    assert ax.collections or ax.patches or ax.images
