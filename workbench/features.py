"""Log-mel frontend for the built-in model: librosa filterbank + ``torch.stft``.

Conventions (one everywhere):

* waveforms are 16 kHz mono float32, lengths are in **samples**;
* features are ``(B, T, 80)`` log-mel frames, lengths are in **frames**;
* 25 ms window (``win_length=400``, ``n_fft=512``), 10 ms hop (``constants.HOP_LENGTH``, 160 samples);
* a frame exists for every full hop: ``T = 1 + S // hop`` (``center=True`` STFT
  with zero padding of ``n_fft // 2`` on both sides of the *true* signal).

Nothing depends on padding. Each utterance is framed as if it were alone: the
STFT of a padded row only differs from the unpadded one in frames whose window
reaches past the true end, so :func:`log_mel` zeroes the samples past each true
length *and* re-applies the reflection-free zero padding per row before framing.
Because we use ``center=True`` with ``pad_mode="constant"`` (zeros), the frames
``< 1 + S_i // hop`` of a zero-padded row are exactly the frames of the row alone.

Normalisation: **per-utterance mean/variance over true frames only** (per mel
bin). Chosen over a global mean/var stored with the model because a personal
recording's microphone gain and channel vary far more than our synthetic
training data; per-utterance CMVN removes the channel offset for free and keeps
the model independent of corpus statistics. Padded frames are set to 0.

>>> import numpy as np
>>> wav, lens = pad_waveforms([np.zeros(16000, np.float32), np.zeros(8000, np.float32)])
>>> feats, flens = LogMel()(wav, lens)
>>> tuple(feats.shape), flens.tolist()
((2, 101, 80), [101, 51])
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from workbench.constants import HOP_LENGTH, SAMPLE_RATE

__all__ = [
    "HOP_LENGTH",
    "LogMel",
    "N_FFT",
    "N_MELS",
    "SAMPLE_RATE",
    "WIN_LENGTH",
    "frame_lengths",
    "log_mel",
    "mel_filterbank",
    "normalize_per_utterance",
    "pad_waveforms",
]

N_FFT = 512  # 32 ms FFT
WIN_LENGTH = 400  # 25 ms Hann window
N_MELS = 80
LOG_FLOOR = 1e-6  # added to mel power before log: -13.8 in silence


def pad_waveforms(waveforms: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad a list of 1-D waveforms into a batch.

    Args:
        waveforms: list of ``(S_i,)`` float arrays (16 kHz mono).

    Returns:
        ``wav (B, S_max)`` float32 and ``lengths (B,)`` int64 in samples.
    """
    lengths = torch.tensor([int(np.asarray(w).shape[-1]) for w in waveforms], dtype=torch.long)
    smax = int(lengths.max()) if len(waveforms) else 0
    wav = torch.zeros(len(waveforms), smax, dtype=torch.float32)
    for i, w in enumerate(waveforms):
        wav[i, : lengths[i]] = torch.from_numpy(np.ascontiguousarray(w, dtype=np.float32).reshape(-1))
    return wav, lengths


def frame_lengths(wav_lengths: torch.Tensor, hop: int = HOP_LENGTH) -> torch.Tensor:
    """Number of frames for each true length in samples: ``1 + S // hop``."""
    return 1 + torch.div(wav_lengths, hop, rounding_mode="floor")


def mel_filterbank(sample_rate: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS) -> torch.Tensor:
    """Slaney-normalised librosa mel filterbank as ``(n_fft // 2 + 1, n_mels)``."""
    import librosa

    fb = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=20.0, fmax=sample_rate / 2)
    return torch.from_numpy(fb.T.astype(np.float32).copy())


def normalize_per_utterance(feats: torch.Tensor, lengths: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Mean/variance-normalise each utterance per bin over its true frames.

    Args:
        feats: ``(B, T, F)``.
        lengths: ``(B,)`` true lengths in frames.

    Returns:
        ``(B, T, F)``; frames ``>= lengths[b]`` are 0.
    """
    t = feats.shape[1]
    mask = (torch.arange(t, device=feats.device)[None, :] < lengths[:, None]).unsqueeze(-1)  # (B, T, 1)
    n = lengths.clamp(min=1).to(feats.dtype)[:, None, None]
    x = feats.masked_fill(~mask, 0.0)
    mean = x.sum(1, keepdim=True) / n
    var = ((x - mean).masked_fill(~mask, 0.0) ** 2).sum(1, keepdim=True) / n
    return ((x - mean) / torch.sqrt(var + eps)).masked_fill(~mask, 0.0)


def log_mel(
    wav: torch.Tensor,
    wav_lengths: torch.Tensor,
    fbank: torch.Tensor,
    window: torch.Tensor,
    *,
    n_fft: int = N_FFT,
    hop: int = HOP_LENGTH,
    normalize: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-mel features of a zero-padded batch.

    Args:
        wav: ``(B, S)`` float waveforms, 16 kHz.
        wav_lengths: ``(B,)`` true lengths in samples.
        fbank: ``(n_fft // 2 + 1, n_mels)`` filterbank.
        window: ``(win_length,)`` analysis window.

    Returns:
        ``feats (B, T, n_mels)`` and ``frame_lengths (B,)`` (``1 + S_i // hop``).
    """
    s = wav.shape[1]
    keep = torch.arange(s, device=wav.device)[None, :] < wav_lengths[:, None]
    wav = wav.masked_fill(~keep, 0.0)  # samples past the true end must be exact zeros
    spec = torch.stft(
        wav,
        n_fft=n_fft,
        hop_length=hop,
        win_length=window.shape[0],
        window=window,
        center=True,
        pad_mode="constant",
        return_complex=True,
    )  # (B, n_fft//2+1, T)
    power = spec.real.square() + spec.imag.square()
    mel = torch.matmul(power.transpose(1, 2), fbank)  # (B, T, n_mels)
    feats = torch.log(mel + LOG_FLOOR)
    flens = frame_lengths(wav_lengths, hop)
    t = min(feats.shape[1], int(flens.max()) if flens.numel() else 0)
    feats = feats[:, :t]
    if normalize:
        feats = normalize_per_utterance(feats, flens)
    else:
        mask = torch.arange(t, device=feats.device)[None, :] < flens[:, None]
        feats = feats.masked_fill(~mask.unsqueeze(-1), 0.0)
    return feats, flens


class LogMel(nn.Module):
    """``nn.Module`` wrapper of :func:`log_mel`; the filterbank is a (non-persistent) buffer.

    ``forward(wav (B, S), wav_lengths (B,)) -> (feats (B, T, 80), frame_lengths (B,))``.

    Args:
        n_mels: mel bins.
        normalize: per-utterance CMVN over true frames.
        fbank: a precomputed ``(n_fft // 2 + 1, n_mels)`` filterbank (model files store it,
            because librosa's first ``filters.mel`` call costs ~1.4 s of imports).
    """

    def __init__(self, n_mels: int = N_MELS, normalize: bool = True, fbank: torch.Tensor | None = None) -> None:
        super().__init__()
        self.n_mels = n_mels
        self.normalize = normalize
        if fbank is None:
            fbank = mel_filterbank(n_mels=n_mels)
        elif tuple(fbank.shape) != (N_FFT // 2 + 1, n_mels):
            raise ValueError(f"fbank must be ({N_FFT // 2 + 1}, {n_mels}), got {tuple(fbank.shape)}")
        self.register_buffer("fbank", fbank.float(), persistent=False)
        self.register_buffer("window", torch.hann_window(WIN_LENGTH), persistent=False)

    def forward(self, wav: torch.Tensor, wav_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return log_mel(wav, wav_lengths, self.fbank, self.window, normalize=self.normalize)
