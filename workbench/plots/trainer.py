"""Figures for personalization: the live training curve, WER before/after, and the report's figures."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from workbench._optional import has_module
from workbench.plots._base import new_axes

__all__ = ["plot_training_curve", "plot_wer_before_after", "report_figures"]


def plot_training_curve(history: Sequence[dict], *, ax: Any = None, title: str = "Personalization",
                        loss_name: str | None = None) -> Any:
    """Training loss (left axis) and validation ASR word error rate (right axis) against step.

    Args:
        history: the trainer's history: dicts with ``kind`` "step" (``step``, ``loss``,
            ``loss_name``) or "eval" (``step``, ``wer``).
        loss_name: what the loss is, e.g. "CTC" or "cross-entropy" (Whisper); default: the
            history's own ``loss_name`` (:attr:`workbench.trainer.Trainer.loss_name`), else none.
    """
    if loss_name is None:
        loss_name = next((h["loss_name"] for h in history if h.get("kind") == "step" and h.get("loss_name")), None)
    fig, ax = new_axes(ax, figsize=(7.0, 3.2))
    steps = [h["step"] for h in history if h.get("kind") == "step"]
    losses = [h["loss"] for h in history if h.get("kind") == "step"]
    evals = [(h["step"], 100 * h["wer"]) for h in history if h.get("kind") == "eval"]
    ax.plot(steps, losses, color="#6c757d", lw=1.2, label="training loss")
    ax.set_xlabel("training step")
    ax.set_ylabel(f"training loss ({loss_name})" if loss_name else "training loss")
    ax.grid(alpha=0.3)
    right = ax.twinx()
    if evals:
        xs, ys = zip(*evals, strict=True)
        right.plot(xs, ys, "o-", color="#d62828", lw=1.8, label="validation WER")
        best = min(range(len(ys)), key=ys.__getitem__)
        late = xs[best] > (min(xs) + max(xs)) / 2  # in the right half: the label goes left, inside the axes
        right.annotate(f"best {ys[best]:.0f}%", (xs[best], ys[best]), textcoords="offset points",
                       xytext=(-4 if late else 4, 8), ha="right" if late else "left", color="#d62828", fontsize=9)
        right.set_ylim(0, max(100.0, max(ys) * 1.05))
    right.set_ylabel("ASR word error rate on validation (%)", color="#d62828")
    ax.set_title(title, loc="left")  # the legend sits at the right of the same line
    lines = ax.get_lines() + right.get_lines()
    # above the axes, beside the title: inside, it covered the curves wherever they ran
    ax.legend(lines, [ln.get_label() for ln in lines], loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=2,
              fontsize=8, frameon=False, borderaxespad=0.2)
    return fig


def plot_wer_before_after(before: float, after: float, *, interval: tuple[float, float] | None = None,
                          ax: Any = None, label: str = "") -> Any:
    """Two bars: ASR word error rate of the base and the personal model (fractions in, % shown).

    Args:
        interval: optional (low, high) of the WER *drop* (fractions), drawn on the "after" bar.
    """
    fig, ax = new_axes(ax, figsize=(4.0, 3.2))
    vals = [100 * before, 100 * after]
    bars = ax.bar(["base model", "personal model"], vals, color=["#adb5bd", "#2a9d8f"], width=0.6)
    tops = list(vals)  # where each bar's drawing ends: its value label goes above that
    if interval is not None:  # the drop's interval [lo, hi] puts "after" in [before - hi, before - lo]
        lo, hi = interval
        diff = before - after
        yerr = [[100 * max(0.0, hi - diff)], [100 * max(0.0, diff - lo)]]
        ax.errorbar([1], [vals[1]], yerr=yerr, fmt="none", ecolor="black", capsize=6, lw=1.2)
        tops[1] += yerr[1][0]
    # the labels sit above the error bar, not across it, and inside the axes (room = 12 % of the top)
    top = max(100.0, max(tops) * 1.15 + 4)
    for b, v, t in zip(bars, vals, tops, strict=True):
        ax.annotate(f"{v:.0f}%", (b.get_x() + b.get_width() / 2, t), xytext=(0, 3), textcoords="offset points",
                    ha="center", va="bottom", fontsize=11)
    ax.set_ylim(0, top)
    ax.set_ylabel("ASR word error rate (%)")
    ax.set_title(label or "Word errors: before and after", fontsize=10)
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def report_figures(comparison: Any, history: Sequence[dict] | None = None) -> list[Any]:
    """The figures of the HTML report (:func:`workbench.report.write_report`'s ``figures``).

    The WER before and after (with the interval of its drop) and, given the trainer's
    ``history``, the training curve. Without matplotlib: none (the report is written without them).

    Args:
        comparison: a :class:`~workbench.metrics.Comparison` on the held-out recordings.
    """
    if not has_module("matplotlib"):
        return []
    interval = (comparison.interval["diff_low"], comparison.interval["diff_high"])
    figures = [plot_wer_before_after(comparison.wer_before, comparison.wer_after, interval=interval)]
    if history:
        figures.append(plot_training_curve(history))
    return figures
