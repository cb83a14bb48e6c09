"""SpecAugment figures and the explorer's logic (no browser)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("matplotlib")

from workbench.augment import POLICIES, SpecAugmentPolicy  # noqa: E402
from workbench.plots import plot_augment_grid, plot_masks, plot_spectrogram  # noqa: E402


def _wav(seconds: float = 1.5) -> np.ndarray:
    t = np.arange(int(16000 * seconds)) / 16000
    return (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)


def test_plot_masks_draws_one_span_per_masked_run() -> None:
    feats = torch.randn(200, 80)
    tmask = torch.zeros(200, dtype=torch.bool)
    tmask[10:20] = True
    tmask[50:55] = True
    fmask = torch.zeros(80, dtype=torch.bool)
    fmask[5:9] = True
    fig = plot_masks(feats, tmask, fmask, title="x")
    ax = fig.axes[0]
    assert len(ax.patches) == 3  # two time runs + one frequency band
    assert "hidden" in ax.texts[0].get_text()


def test_plot_functions_accept_an_axes_and_return_its_figure() -> None:
    from matplotlib.figure import Figure

    fig = Figure()
    ax = fig.add_subplot(1, 1, 1)
    assert plot_spectrogram(torch.randn(50, 80), ax=ax, length=40) is fig
    with pytest.raises(ValueError, match="frames, mel bins"):
        plot_spectrogram(torch.randn(2, 50, 80))


def test_augment_grid_has_n_panels_and_is_reproducible() -> None:
    feats = torch.randn(300, 80)
    fig = plot_augment_grid(feats, POLICIES["librispeech_adaptive"], n=4, seed=3)
    assert len(fig.axes) == 4
    assert "seed 3" in fig.axes[0].get_title()


def test_explorer_logic_without_a_browser() -> None:
    pytest.importorskip("ipywidgets")
    from workbench.ui.specaugment import SpecAugmentExplorer, masked_audio

    wav = _wav()
    ex = SpecAugmentExplorer(wav, n_draws=2)
    assert ex.features.shape == (151, 80)
    ex.set(adaptive_size=0.1)
    assert ex.policy.adaptive_size == 0.1 and ex.policy.name == "custom"
    with pytest.raises(ValueError):
        ex.set(adaptive_size=2.0)
    assert ex.resample() == 2
    audio, masks = masked_audio(wav, POLICIES["conformer"], seed=1, n_iter=4)
    assert audio.dtype == np.float32 and np.isfinite(audio).all()
    assert abs(len(audio) - len(wav)) <= 160
    assert masks.time.any()
    # no augmentation: resynthesis keeps the loudness envelope of the original
    plain, _ = masked_audio(wav, SpecAugmentPolicy(freq_masks=0), n_iter=4)
    env = lambda a: np.abs(a[: len(wav) // 160 * 160]).reshape(-1, 160).mean(1)  # noqa: E731
    assert np.corrcoef(env(plain), env(wav[: len(plain)]))[0, 1] > 0.8


def test_explorer_widget_redraws_on_slider_change() -> None:
    pytest.importorskip("ipywidgets")
    from workbench.ui.specaugment import SpecAugmentExplorer

    ex = SpecAugmentExplorer(_wav(1.0), n_draws=2)
    view = ex.widget()
    image = view.children[2]
    first = image.value
    assert len(first) > 1000  # a PNG was drawn
    sliders = view.children[0].children[0].children
    sliders[1].value = 0.15  # p_S
    assert ex.policy.adaptive_size == 0.15
    assert image.value != first
