"""Matplotlib figures. Every function takes ``ax=None`` and returns the Figure.

Figures are built with :class:`matplotlib.figure.Figure` directly (no pyplot
state), so they can be drawn from a background thread. Without pyplot, Jupyter
would print them as text (``<Figure size 800x300 with 1 Axes>``), so every figure
returned here renders itself as a PNG; build your own with :func:`new_figure`. matplotlib is an optional dependency (``pip install 'workbench[ui]'``),
imported only when a plot is made.
"""

from workbench.plots._base import new_figure
from workbench.plots.augment import plot_augment_grid, plot_masks, plot_spectrogram
from workbench.plots.embeddings import (
    plot_embedding_map,
    plot_embedding_scatter,
    plot_nearest_speakers,
    plot_similarity_heatmap,
    plot_speaker_trajectory,
)
from workbench.plots.trainer import plot_training_curve, plot_wer_before_after, report_figures

__all__ = [
    "new_figure",
    "plot_augment_grid",
    "plot_embedding_map",
    "plot_embedding_scatter",
    "plot_masks",
    "plot_nearest_speakers",
    "plot_similarity_heatmap",
    "plot_speaker_trajectory",
    "plot_spectrogram",
    "plot_training_curve",
    "plot_wer_before_after",
    "report_figures",
]
