"""Shared helpers for the plot modules: lazy matplotlib and figure/axes creation."""

from __future__ import annotations

from typing import Any

from workbench._optional import require

__all__ = ["new_axes", "new_figure"]


def new_figure(figsize: tuple[float, float] = (8.0, 3.0)) -> Any:
    """A pyplot-free ``matplotlib.figure.Figure`` (thread-safe, shows inline in Jupyter)."""
    figure = require("matplotlib.figure", extra="ui", purpose="draw plots")
    return figure.Figure(figsize=figsize, layout="constrained")


def new_axes(ax: Any = None, figsize: tuple[float, float] = (8.0, 3.0)) -> tuple[Any, Any]:
    """``(figure, ax)``: the given axes and their figure, or a new figure with one axes."""
    if ax is not None:
        return ax.figure, ax
    fig = new_figure(figsize)
    return fig, fig.add_subplot(1, 1, 1)
