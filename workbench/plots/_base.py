"""Shared helpers for the plot modules: lazy matplotlib and figure/axes creation.

Figures are made without pyplot, so IPython's inline backend (which registers its
PNG printer only when pyplot is imported) would show them as the text
``<Figure size 800x300 with 1 Axes>``. :func:`new_figure` therefore returns a small
``Figure`` subclass that renders itself as a PNG (``_repr_png_``) wherever IPython
displays it: JupyterLab, the classic notebook, VS Code, nbclient.
"""

from __future__ import annotations

import functools
import io
from typing import Any

from workbench._optional import require

__all__ = ["figure_png_bytes", "new_axes", "new_figure"]

_DPI = 100  # what the inline backend uses by default (figure.dpi)


def figure_png_bytes(fig: Any, dpi: int = _DPI) -> bytes:
    """PNG bytes of a matplotlib Figure, cropped to what is drawn (as Jupyter's inline backend does)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", facecolor="white")
    return buf.getvalue()


@functools.cache
def _figure_class() -> type:
    figure = require("matplotlib.figure", extra="ui", purpose="draw plots")

    class Figure(figure.Figure):
        """A pyplot-free matplotlib Figure that IPython shows as an image."""

        def _repr_png_(self) -> bytes:
            return figure_png_bytes(self)

    Figure.__module__ = __name__
    Figure.__qualname__ = "Figure"
    return Figure


def new_figure(figsize: tuple[float, float] = (8.0, 3.0)) -> Any:
    """A pyplot-free ``matplotlib.figure.Figure`` (thread-safe) that shows as a PNG in Jupyter.

    Args:
        figsize: (width, height) in inches.

    >>> fig = new_figure((4.0, 2.0))
    >>> fig._repr_png_()[:4] == b"\\x89PNG"
    True
    """
    return _figure_class()(figsize=figsize, layout="constrained")


def new_axes(ax: Any = None, figsize: tuple[float, float] = (8.0, 3.0)) -> tuple[Any, Any]:
    """``(figure, ax)``: the given axes and their figure, or a new figure with one axes."""
    if ax is not None:
        return ax.figure, ax
    fig = new_figure(figsize)
    return fig, fig.add_subplot(1, 1, 1)
