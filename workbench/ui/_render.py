"""Helpers shared by the widgets: figures to PNG bytes, waveforms to WAV bytes, error text to HTML."""

from __future__ import annotations

import html
import io
from typing import Any

import numpy as np

from workbench.constants import SAMPLE_RATE

__all__ = ["error_html", "figure_png", "wav_bytes"]


def figure_png(fig: Any, dpi: int = 90) -> bytes:
    """PNG bytes of a matplotlib Figure (for an ``ipywidgets.Image``)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def wav_bytes(wav: np.ndarray, sample_rate: int = SAMPLE_RATE) -> bytes:
    """16-bit WAV bytes of a float waveform in [-1, 1] (for an ``ipywidgets.Audio``)."""
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.clip(np.asarray(wav, dtype=np.float32), -1.0, 1.0), sample_rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def error_html(message: str) -> str:
    """A plain-language error message as red inline HTML (escaped), for an ``ipywidgets.HTML``."""
    return f"<span style='color:#b00020'>{html.escape(message)}</span>"
