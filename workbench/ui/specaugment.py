"""SpecAugment explorer: sliders for a policy, new draws, and the masked audio.

The logic lives in :class:`SpecAugmentExplorer` (no widgets needed, testable);
:meth:`SpecAugmentExplorer.widget` builds the ipywidgets view over it. Playback
inverts the masked log-mel with Griffin-Lim (librosa) so a workshop can *hear*
what the model sees: masked cells take the utterance's own mean spectrum, which
is what the zero of per-utterance-normalized features means.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from workbench.augment import POLICIES, AugmentMasks, SpecAugmentPolicy, spec_augment
from workbench.constants import SAMPLE_RATE
from workbench.features import HOP_LENGTH, LOG_FLOOR, N_FFT, WIN_LENGTH, LogMel, pad_waveforms

__all__ = ["SpecAugmentExplorer", "masked_audio"]


def _raw_log_mel(wav: np.ndarray) -> torch.Tensor:
    """Unnormalized log-mel ``(T, 80)`` of one 16 kHz waveform."""
    batch, lengths = pad_waveforms([wav])
    feats, _ = LogMel(normalize=False)(batch, lengths)
    return feats[0]


def masked_audio(wav: np.ndarray, policy: SpecAugmentPolicy, *, seed: int = 0,
                 n_iter: int = 32) -> tuple[np.ndarray, AugmentMasks]:
    """What the model hears: ``wav`` after SpecAugment, resynthesized by Griffin-Lim.

    Args:
        wav: ``(S,)`` float32, 16 kHz.
        policy: SpecAugment policy; ``seed`` is the utterance's draw.
    Returns:
        ``(audio (S',) float32 at 16 kHz, AugmentMasks of batch size 1)``.
    """
    import librosa

    raw = _raw_log_mel(np.asarray(wav, dtype=np.float32))  # (T, F)
    mean, std = raw.mean(0, keepdim=True), raw.std(0, keepdim=True).clamp(min=1e-5)
    norm = ((raw - mean) / std)[None]
    out, masks = spec_augment(norm, torch.tensor([raw.shape[0]]), policy, seeds=torch.tensor([seed]),
                              return_masks=True)
    mel_power = (torch.exp(out[0] * std + mean) - LOG_FLOOR).clamp(min=0.0).numpy().T  # (F, T)
    audio = librosa.feature.inverse.mel_to_audio(
        mel_power, sr=SAMPLE_RATE, n_fft=N_FFT, hop_length=HOP_LENGTH, win_length=WIN_LENGTH,
        power=2.0, n_iter=n_iter, fmin=20.0, fmax=SAMPLE_RATE / 2)
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    return (audio / peak * 0.9 if peak > 0 else audio).astype(np.float32), masks


@dataclasses.dataclass
class SpecAugmentExplorer:
    """View state of the explorer: one recording, the slider values, the current draw."""

    wav: np.ndarray  # (S,) float32, 16 kHz
    policy: SpecAugmentPolicy = dataclasses.field(default_factory=lambda: POLICIES["librispeech_adaptive"])
    seed: int = 0
    n_draws: int = 4

    @property
    def features(self) -> torch.Tensor:
        """Per-utterance-normalized log-mel ``(T, 80)`` of the recording."""
        raw = _raw_log_mel(self.wav)
        return (raw - raw.mean(0)) / raw.std(0).clamp(min=1e-5)

    def set(self, **changes: Any) -> SpecAugmentPolicy:
        """Change policy fields (validated); e.g. ``set(adaptive_size=0.08)``."""
        self.policy = self.policy.replace(**changes, name="custom")
        return self.policy

    def resample(self) -> int:
        """Move to fresh draws; returns the new first seed."""
        self.seed += self.n_draws
        return self.seed

    def figure(self) -> Any:
        from workbench.plots import plot_augment_grid

        return plot_augment_grid(self.features, self.policy, n=self.n_draws, seed=self.seed)

    def audio(self) -> np.ndarray:
        """Griffin-Lim audio of the first draw."""
        return masked_audio(self.wav, self.policy, seed=self.seed)[0]

    def widget(self) -> Any:
        """The ipywidgets view: sliders, a 'New draws' button, the grid, and two players."""
        from workbench._optional import require
        from workbench.ui._render import figure_png, wav_bytes

        w = require("ipywidgets", extra="ui", purpose="show the SpecAugment explorer")
        p = self.policy
        sliders = {
            "adaptive_multiplicity": w.FloatSlider(value=p.adaptive_multiplicity, min=0, max=0.2, step=0.01,
                                                   description="p_M (masks/frame)"),
            "adaptive_size": w.FloatSlider(value=p.adaptive_size, min=0, max=0.2, step=0.01,
                                           description="p_S (width/len)"),
            "time_masks": w.IntSlider(value=p.time_masks, min=0, max=40, description="M_max"),
            "freq_width": w.IntSlider(value=p.freq_width, min=0, max=40, description="F (bins)"),
            "freq_masks": w.IntSlider(value=p.freq_masks, min=0, max=4, description="m_F"),
            "time_warp": w.IntSlider(value=p.time_warp, min=0, max=80, description="W (frames)"),
        }
        image = w.Image(format="png")
        message = w.HTML()
        original = w.Audio(value=wav_bytes(self.wav), format="wav", autoplay=False)
        masked = w.Audio(format="wav", autoplay=False)
        button = w.Button(description="New draws", icon="refresh")

        def redraw(*_: Any) -> None:
            try:
                self.set(**{k: s.value for k, s in sliders.items()})
            except ValueError as err:  # e.g. masks without a width: say so, keep the old draw
                message.value = f"<span style='color:#b00'>{err}</span>"
                return
            message.value = ""
            image.value = figure_png(self.figure())
            masked.value = wav_bytes(self.audio())

        for s in sliders.values():
            s.observe(redraw, names="value")
        button.on_click(lambda _: (self.resample(), redraw()))
        redraw()
        players = w.HBox([w.VBox([w.Label("original"), original]), w.VBox([w.Label("what the model hears"), masked])])
        return w.VBox([w.HBox([w.VBox(list(sliders.values())[:3]), w.VBox(list(sliders.values())[3:])]),
                       w.HBox([button, message]), image, players])
