"""workbench.plots.trainer: the training curve, WER before/after, the report's figures.

Each function returns a Figure, draws into a given ``ax=``, and labels what it shows.
"""

from __future__ import annotations

import pytest

pytest.importorskip("matplotlib")

from matplotlib.figure import Figure

from workbench.evaluate import compare
from workbench.plots import _base
from workbench.plots import trainer as plots

HISTORY = [{"kind": "eval", "step": 0, "wer": 0.8}, {"kind": "step", "step": 1, "loss": 3.0, "loss_name": "CTC"},
           {"kind": "step", "step": 2, "loss": 2.5, "loss_name": "CTC"}, {"kind": "eval", "step": 2, "wer": 0.4},
           {"kind": "step", "step": 3, "loss": 2.0, "loss_name": "CTC"}, {"kind": "eval", "step": 3, "wer": 0.5}]


def _texts(ax) -> list[str]:
    return [t.get_text() for t in ax.texts]


def test_training_curve_has_loss_left_wer_right_and_marks_the_best_step() -> None:
    fig = plots.plot_training_curve(HISTORY, title="spk-001")
    assert isinstance(fig, Figure)
    ax, right = fig.axes
    assert ax.get_title(loc="left") == "spk-001"
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("training step", "training loss (CTC)")
    assert right.get_ylabel() == "ASR word error rate on validation (%)"
    (loss,) = ax.get_lines()
    assert list(loss.get_xdata()) == [1, 2, 3] and list(loss.get_ydata()) == [3.0, 2.5, 2.0]
    (wer,) = right.get_lines()
    assert list(wer.get_ydata()) == [80.0, 40.0, 50.0]
    assert [t.get_text() for t in right.texts] == ["best 40%"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["training loss", "validation WER"]


def test_training_curve_before_any_evaluation_draws_the_loss_only() -> None:
    fig = plots.plot_training_curve([h for h in HISTORY if h["kind"] == "step"])
    ax, right = fig.axes
    assert len(ax.get_lines()) == 1 and len(right.get_lines()) == 0 and len(right.texts) == 0
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["training loss"]


def test_the_loss_axis_names_the_backends_own_loss() -> None:
    """Issue 24 A14: the axis said "training loss (CTC)" for Whisper too."""
    whisper = [{**h, "loss_name": "cross-entropy"} if h["kind"] == "step" else h for h in HISTORY]
    assert plots.plot_training_curve(whisper).axes[0].get_ylabel() == "training loss (cross-entropy)"
    unnamed = [{k: v for k, v in h.items() if k != "loss_name"} for h in HISTORY]  # e.g. an old checkpoint
    assert plots.plot_training_curve(unnamed).axes[0].get_ylabel() == "training loss"
    assert plots.plot_training_curve(unnamed, loss_name="CTC").axes[0].get_ylabel() == "training loss (CTC)"


def _boxes(fig):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw_without_rendering()
    return renderer


@pytest.mark.parametrize("best_at", [0, 3, 6])
def test_the_curves_labels_collide_with_nothing(best_at) -> None:
    """Issue 24 A14: "best N%" ran into the right axis' numbers, and the legend covered the curves."""
    import numpy as np

    history = [{"kind": "step", "step": s, "loss": 3.0 / s, "loss_name": "CTC"} for s in range(1, 61)]
    history += [{"kind": "eval", "step": 10 * k, "wer": 0.3 if k == best_at else 0.9 - 0.01 * k} for k in range(7)]
    fig = plots.plot_training_curve(sorted(history, key=lambda h: h["step"]), title="Live personalization")
    renderer = _boxes(fig)
    ax, right = fig.axes
    frame = ax.get_window_extent(renderer)
    (best,) = right.texts
    box = best.get_window_extent(renderer)
    assert frame.x0 <= box.x0 and box.x1 <= frame.x1  # inside the axes, not over the tick labels
    legend = ax.get_legend().get_window_extent(renderer)
    assert legend.y0 >= frame.y1 - 1  # above the axes: it covers no curve
    assert not legend.overlaps(ax._left_title.get_window_extent(renderer))
    points = np.vstack([line.get_xydata() for line in ax.get_lines()])
    assert not any(legend.contains(*ax.transData.transform(p)) for p in points)


@pytest.mark.parametrize("before,after,interval", [(0.95, 0.88, (-0.02, 0.2)), (0.3, 0.25, (-0.1, 0.15)),
                                                   (0.6, 0.3, (0.1, 0.4)), (1.3, 1.2, (-0.3, 0.5))])
def test_the_bar_labels_collide_with_nothing(before, after, interval) -> None:
    """Issue 24 A14: the "after" label was drawn across the error bar of the drop."""
    fig = plots.plot_wer_before_after(before, after, interval=interval)
    (ax,) = fig.axes
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw_without_rendering()
    labels = [t.get_window_extent(renderer) for t in ax.texts]
    (bar,) = ax.collections
    (segment,) = bar.get_segments()
    (x, low), (_, high) = sorted(ax.transData.transform(segment), key=lambda p: p[1])  # the whisker, in pixels
    caps = [ax.transData.transform(xy)[1] for line in ax.get_lines() for xy in line.get_xydata()]
    frame = ax.get_window_extent(renderer)
    title = ax.title.get_window_extent(renderer)
    for box in labels:
        if box.x0 <= x <= box.x1:  # above the bar: clear of the whisker and its caps
            assert box.y0 > max(high, *caps) + 1
        assert not box.overlaps(title) and frame.y0 <= box.y0 and box.y1 <= frame.y1
    assert not labels[0].overlaps(labels[1])


def test_wer_bars_show_percentages_and_the_interval_of_the_drop() -> None:
    fig = plots.plot_wer_before_after(0.6, 0.3, interval=(0.1, 0.4), label="spk-001")
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    assert [p.get_height() for p in ax.patches] == pytest.approx([60.0, 30.0])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["base model", "personal model"]
    assert _texts(ax) == ["60%", "30%"]
    assert (ax.get_ylabel(), ax.get_title()) == ("ASR word error rate (%)", "spk-001")
    (bar,) = ax.collections  # the error bar on "after": from before - hi (20%) to before - lo (50%)
    (segment,) = bar.get_segments()
    assert sorted(segment[:, 1]) == pytest.approx([20.0, 50.0])
    assert ax.get_ylim()[1] >= 100.0


def test_wer_bars_without_an_interval_and_above_100_percent() -> None:
    (ax,) = plots.plot_wer_before_after(1.4, 0.9).axes
    assert len(ax.collections) == 0 and ax.get_title() == "Word errors: before and after"
    assert ax.get_ylim()[1] >= 140.0  # insertions can push WER past 100 %: the bar still fits


@pytest.mark.parametrize("draw", [lambda ax: plots.plot_training_curve(HISTORY, ax=ax),
                                  lambda ax: plots.plot_wer_before_after(0.5, 0.4, ax=ax)])
def test_each_draws_into_the_given_axes_and_returns_its_figure(draw) -> None:
    fig = _base.new_figure()
    ax = fig.add_subplot(1, 1, 1)
    assert draw(ax) is fig
    assert ax.get_lines() or ax.patches


def test_report_figures_are_the_bars_and_with_a_history_the_curve(monkeypatch) -> None:
    refs = ["turn on the light", "good morning", "call my sister", "close the door"]
    comparison = compare(refs, ["turn the light", "morning", "call sister", "close door"], refs, seed=0)
    (bars,) = plots.report_figures(comparison)
    assert [t.get_text() for t in bars.axes[0].get_xticklabels()] == ["base model", "personal model"]
    assert len(bars.axes[0].collections) == 1  # the interval of the drop
    bars, curve = plots.report_figures(comparison, HISTORY)
    assert curve.axes[0].get_xlabel() == "training step"
    monkeypatch.setattr(plots, "has_module", lambda name: False)
    assert plots.report_figures(comparison, HISTORY) == []  # no matplotlib: the report goes without figures
