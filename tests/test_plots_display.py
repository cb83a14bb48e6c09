"""Every figure the plot functions return shows as an image in Jupyter, not as the text
``<Figure size 800x300 with 1 Axes>`` (they are made without pyplot, so IPython's inline
backend never registers its PNG printer for them)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("matplotlib")
pytest.importorskip("IPython")

from IPython.core.formatters import DisplayFormatter  # noqa: E402
from test_plots_embeddings import utterance_embeddings  # noqa: E402

from workbench import plots  # noqa: E402
from workbench.augment import POLICIES  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


def _figures() -> dict[str, object]:
    feats = torch.randn(120, 80)
    history = [{"kind": "eval", "step": 0, "wer": 0.8}, {"kind": "step", "step": 1, "loss": 3.0},
               {"kind": "step", "step": 2, "loss": 2.5}, {"kind": "eval", "step": 2, "wer": 0.6}]
    ids = ["sim-a", "sim-b", "sim-c"]
    return {
        "plot_spectrogram": plots.plot_spectrogram(feats),
        "plot_masks": plots.plot_masks(feats, torch.zeros(120, dtype=torch.bool), torch.zeros(80, dtype=torch.bool)),
        "plot_augment_grid": plots.plot_augment_grid(feats, POLICIES["librispeech_adaptive"], n=2),
        "plot_training_curve": plots.plot_training_curve(history),
        "plot_wer_before_after": plots.plot_wer_before_after(0.6, 0.3, interval=(0.1, 0.4)),
        "plot_embedding_scatter": plots.plot_embedding_scatter(np.random.default_rng(1).standard_normal((6, 2)),
                                                               ["a", "a", "b", "b", "c", "c"]),
        "plot_embedding_map": plots.plot_embedding_map(utterance_embeddings()),
        "plot_speaker_trajectory": plots.plot_speaker_trajectory(np.array([[0.0, 0.0], [1.0, 0.5]]), ["s1", "s2"]),
        "plot_similarity_heatmap": plots.plot_similarity_heatmap(ids, np.eye(3) + 0.1),
        "plot_nearest_speakers": plots.plot_nearest_speakers([("sim-a", 0.1), ("sim-b", 0.3)]),
        "new_figure": _own_figure(),
        "report_figures": plots.report_figures(_comparison(), history)[-1],  # the training curve of the report
    }


def _comparison() -> object:
    from types import SimpleNamespace

    return SimpleNamespace(wer_before=0.6, wer_after=0.3, interval={"diff_low": 0.1, "diff_high": 0.4})


def _own_figure() -> object:
    fig = plots.new_figure((3.0, 2.0))
    fig.add_subplot(1, 1, 1).plot([0, 1, 2], [1, 3, 2])
    return fig


def test_every_plot_function_is_covered() -> None:
    assert set(_figures()) == set(plots.__all__)


def test_every_returned_figure_displays_as_a_png_in_ipython() -> None:
    formatter = DisplayFormatter()  # what a Jupyter kernel asks of a cell's value, pyplot never imported
    for name, fig in _figures().items():
        data, _ = formatter.format(fig)
        assert "image/png" in data, f"{name} shows only as {data.get('text/plain')!r}"
        png = data["image/png"]
        png = png if isinstance(png, bytes) else __import__("base64").b64decode(png)
        assert png.startswith(PNG) and len(png) > 2000, name


def test_a_figure_drawn_into_given_axes_is_that_figure() -> None:
    fig = plots.new_figure()
    ax = fig.add_subplot(1, 1, 1)
    assert plots.plot_wer_before_after(0.5, 0.4, ax=ax) is fig
    assert DisplayFormatter().format(fig)[0]["image/png"]
