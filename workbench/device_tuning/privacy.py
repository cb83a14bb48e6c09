"""What the device's stream gives away: two measurements, reported as measured, never assumed.

1. **Who is speaking.** :class:`SpeakerProbe` is a small classifier over the mean and std of
   the frames it reads. It is trained on some utterances of a set of known speakers and scored
   on **other** utterances of the same speakers (:func:`split_utterances`; the two sets never
   share an utterance). :func:`speaker_probes` runs the same probe, on the same split, on every
   representation: the compressed stream, raw log-mel and, to calibrate it, d-vectors (which
   are made to carry identity: a probe that cannot name the speaker from them is too weak to
   measure privacy). An eavesdropper who knows these speakers does about this well.
   The probe pools each utterance's mean and std, so it refuses features normalized per
   utterance (mean 0 and std 1 in every utterance carry nothing to pool): use raw log-mel.
2. **What was said, as audio.** :class:`InverseModel` maps the stream back to log-mel.
   :func:`mel_to_audio` turns that into a waveform with Griffin-Lim
   (``librosa.feature.inverse.mel_to_audio``), and the ASR model transcribes it. The WER of
   that audio says how intelligible a reconstruction is. The same runs on the uncompressed
   representation and on the true log-mel, for reference.

The stream as an eavesdropper holds it: :func:`wire_levels` gives the symbols of each message as
their levels ``(T_s, dims)`` in ``[-1, 1]``, at ``25 / stride`` frames per second for the
built-in model. No compressor weights are needed to read them.

Log-mel here follows :mod:`workbench.features`: 100 frames per second, 80 bins, log of the mel
power + 1e-6. The model reads it mean/variance-normalized per utterance, so the inverse model
predicts normalized log-mel. :func:`mel_to_audio` puts back an average level per bin
(:class:`MelStats`, counted on the attacker's training audio).

>>> import torch
>>> inv = InverseModel(in_dim=6, upsample=8, hidden=16)
>>> tuple(inv(torch.zeros(2, 5, 6), torch.tensor([5, 3])).shape)
(2, 40, 80)
>>> train, test = split_utterances(["a", "a", "a", "b", "b", "b"], test_per_speaker=1)
>>> len(train), len(test), set(train) & set(test)
(4, 2, set())
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from workbench.constants import SAMPLE_RATE
from workbench.device_tuning.heads import (
    HeadTraining,
    PooledHead,
    frame_mask,
    head_outputs,
    masked_mean_std,
    train_head,
)
from workbench.errors import WorkbenchError
from workbench.features import HOP_LENGTH, LOG_FLOOR, N_FFT, N_MELS, WIN_LENGTH

__all__ = [
    "InverseModel",
    "MelStats",
    "ProbeResult",
    "SpeakerProbe",
    "dvector_frames",
    "inverse_loss",
    "log_mels",
    "mel_to_audio",
    "probe_split",
    "reconstruct",
    "speaker_probe",
    "speaker_probes",
    "split_representations",
    "split_utterances",
    "strongest_probes",
    "train_inverse",
    "wire_levels",
]


# -- what is on the wire ------------------------------------------------------------------------
def wire_levels(compressor: nn.Module, hidden: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """The symbols the device sends for each ``(T'_i, D)``, as levels ``(ceil(T'_i/stride), dims)``
    in ``[-1, 1]``: what anyone who reads the messages holds (the range coding is lossless)."""
    compressor.eval()
    with torch.no_grad():
        return [compressor.dequantize(compressor.encode(h[None].float()))[0] for h in hidden]


# -- 1. speaker identification ------------------------------------------------------------------
def split_utterances(speakers: Sequence[str], test_per_speaker: int = 2, seed: int = 0) -> tuple[list[int], list[int]]:
    """Indices ``(train, test)``: ``test_per_speaker`` utterances of every speaker held out
    (at most all but one of its utterances), the rest for training. No index is in both."""
    rng = np.random.default_rng(seed)
    lab = np.asarray(speakers)
    train, test = [], []
    for s in dict.fromkeys(speakers):
        idx = np.flatnonzero(lab == s)
        if len(idx) < 2:
            raise WorkbenchError(f"speaker {s!r} has {len(idx)} utterance(s): the probe needs at least 2 per "
                                 "speaker (one to learn from, one to test on).")
        idx = rng.permutation(idx)
        n = min(test_per_speaker, len(idx) - 1)
        test += idx[:n].tolist()
        train += idx[n:].tolist()
    return sorted(train), sorted(test)


class SpeakerProbe(nn.Module):
    """Speaker classifier over pooled frames: ``(B, T, F), lengths -> (B, n_speakers)`` logits
    (mean + std over true frames -> LayerNorm -> Linear -> ReLU -> Dropout -> Linear)."""

    def __init__(self, in_dim: int, n_speakers: int, hidden: int = 256, dropout: float = 0.2) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(2 * in_dim), nn.Linear(2 * in_dim, hidden), nn.ReLU(),
                                 nn.Dropout(dropout), nn.Linear(hidden, n_speakers))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.net(masked_mean_std(x, lengths))


@dataclasses.dataclass
class ProbeResult:
    """How well the probe names the speaker of utterances it never saw (``accuracy``), next to
    ``chance`` (the largest speaker's share of the test set) and its training accuracy."""

    accuracy: float
    chance: float
    train_accuracy: float
    n_speakers: int
    n_train: int
    n_test: int
    steps: int

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def speaker_probe(feats: Sequence[torch.Tensor], speakers: Sequence[str], train_idx: Sequence[int],
                  test_idx: Sequence[int], settings: HeadTraining | None = None, hidden: int = 256,
                  kind: str = "mean_std") -> ProbeResult:
    """Train a :class:`SpeakerProbe` on ``feats[train_idx]`` and score it on ``feats[test_idx]``.

    Args:
        feats: ``(T_i, F)`` per utterance (wire levels, hidden states or log-mel).
        speakers: the speaker of each utterance.
        train_idx, test_idx: disjoint utterance indices (:func:`split_utterances`); every test
            speaker must be among the training speakers.
        kind: ``"mean_std"`` (:class:`SpeakerProbe`) or ``"attentive"`` (a per-frame layer, then
            attentive statistics pooling: :class:`~workbench.device_tuning.heads.PooledHead`).
    """
    if set(train_idx) & set(test_idx):
        raise WorkbenchError("the probe's test utterances must not be among its training utterances")
    _refuse_normalized(feats)
    names = sorted({speakers[i] for i in train_idx})
    pos = {s: i for i, s in enumerate(names)}
    if any(speakers[i] not in pos for i in test_idx):
        raise WorkbenchError("every test speaker must have training utterances")
    y = torch.tensor([pos.get(s, -1) for s in speakers])  # -1: a speaker the probe never trains on
    settings = settings or HeadTraining()
    with torch.random.fork_rng():  # the initial weights follow settings.seed, not what ran before
        torch.manual_seed(settings.seed)
        if kind == "attentive":
            probe = PooledHead(feats[0].shape[1], len(names), hidden, "attentive")
        elif kind == "mean_std":
            probe = SpeakerProbe(feats[0].shape[1], len(names), hidden)
        else:
            raise WorkbenchError(f"probe kind must be 'mean_std' or 'attentive', got {kind!r}")
    tr = [feats[i] for i in train_idx]
    hist = train_head(probe, tr, y[list(train_idx)], F.cross_entropy, settings)

    def acc(idx: Sequence[int]) -> float:
        logits = head_outputs(probe, [feats[i] for i in idx])
        return float((logits.argmax(-1) == y[list(idx)]).float().mean())

    test_y = y[list(test_idx)]
    return ProbeResult(accuracy=acc(test_idx), chance=float(torch.bincount(test_y).max() / len(test_y)),
                       train_accuracy=acc(train_idx), n_speakers=len(names), n_train=len(train_idx),
                       n_test=len(test_idx), steps=len(hist))


def _refuse_normalized(feats: Sequence[torch.Tensor], tol: float = 0.02) -> None:
    """Raise when every utterance of ``feats`` has mean 0 and std 1 in every dimension (features
    normalized per utterance): the probe's pooled mean and std would be the same for everyone,
    and it would report chance whoever speaks."""
    seen = 0
    for x in feats:
        if x.shape[0] < 2:
            return  # one frame per utterance (an embedding): nothing was normalized over time
        pooled = masked_mean_std(x[None].float(), torch.tensor([x.shape[0]]))[0]
        mean, std = pooled.chunk(2)
        if float(mean.abs().max()) > tol or float((std - 1).abs().max()) > tol:
            return
        seen += 1
    if seen:
        raise WorkbenchError(
            "these features are normalized per utterance (mean 0, std 1 in every dimension of every "
            "recording), so the speaker probe, which reads each recording's mean and std, would see the "
            "same numbers for every speaker and report chance. Give it raw log-mel (log_mels(...)[1]).")


def speaker_probes(representations: Mapping[str, Sequence[torch.Tensor]], speakers: Sequence[str], *,
                   test_per_speaker: int = 2, settings: HeadTraining | None = None, hidden: int = 256,
                   seed: int = 0) -> dict[str, ProbeResult]:
    """The same :func:`speaker_probe` on each representation of the same utterances, with one
    train/test split (:func:`split_utterances`) for all of them.

    Args:
        representations: name -> ``(T_i, F)`` per utterance, in the order of ``speakers``; include
            a calibration (``dvector_frames``) so the reader sees how strong the probe is.
        speakers: the speaker of each utterance.

    Returns:
        name -> :class:`ProbeResult`, in the order given; every probe starts from ``settings.seed``.
    """
    train_idx, test_idx = split_utterances(speakers, test_per_speaker=test_per_speaker, seed=seed)
    out = {}
    for name, feats in representations.items():
        if len(feats) != len(speakers):
            raise WorkbenchError(f"{name}: {len(feats)} utterances for {len(speakers)} speaker labels")
        out[name] = speaker_probe(feats, speakers, train_idx, test_idx, settings, hidden)
    return out


#: The probes :func:`strongest_probes` tries on every representation: ``name -> (kind, hidden, steps x)``
#: (``steps x`` multiplies the settings' ``max_steps``). Each one is also run on d-vectors, so its
#: strength on a representation known to carry identity is on record.
PROBE_FAMILY = {"mean+std MLP 256": ("mean_std", 256, 1.0), "mean+std MLP 1024, 2x steps": ("mean_std", 1024, 2.0),
                "frame layer + attentive pooling 256": ("attentive", 256, 1.0)}


def strongest_probes(representations: Mapping[str, Sequence[torch.Tensor]], speakers: Sequence[str], *,
                     test_per_speaker: int = 2, settings: HeadTraining | None = None, seed: int = 0,
                     family: Mapping[str, tuple[str, int, float]] | None = None) -> dict[str, dict]:
    """Every probe of ``family`` (default :data:`PROBE_FAMILY`) on every representation, one
    train/test split for all; per representation the strongest probe's result (accuracy on the
    held-out utterances: an attacker picks the best attack) and every probe's accuracy.

    Returns:
        name -> ``{"best": ProbeResult dict, "probe": the best probe's name, "accuracy_by_probe": {...}}``.
    """
    settings = settings or HeadTraining()
    train_idx, test_idx = split_utterances(speakers, test_per_speaker=test_per_speaker, seed=seed)
    out = {}
    for name, feats in representations.items():
        if len(feats) != len(speakers):
            raise WorkbenchError(f"{name}: {len(feats)} utterances for {len(speakers)} speaker labels")
        results = {}
        for probe, (kind, hidden, more) in (family or PROBE_FAMILY).items():
            st = dataclasses.replace(settings, max_steps=max(1, round(settings.max_steps * more)))
            results[probe] = speaker_probe(feats, speakers, train_idx, test_idx, st, hidden, kind)
        best = max(results, key=lambda k: (results[k].accuracy, -list(results).index(k)))
        out[name] = {"best": results[best].to_dict(), "probe": best,
                     "accuracy_by_probe": {k: r.accuracy for k, r in results.items()}}
    return out


def split_representations(split, waveforms: Sequence[np.ndarray]) -> dict[str, list[torch.Tensor]]:
    """What a split (with its compressor) exposes for each waveform, over the audio's own frames
    (a Whisper split's window silence left out): ``"wire symbols"`` (:func:`wire_levels`),
    ``"restored states"`` (what the server computes) and ``"raw log-mel"`` (:func:`log_mels`)."""
    from workbench.device_tuning.heads import restored

    compressor = split.compressor
    if compressor is None:
        raise WorkbenchError("the probe reads the wire symbols, so the split model needs a compressor: "
                             "split_for(backend, k, compressor)")
    hidden = [it.features[: it.length].detach().cpu() for it in split.device_hidden(waveforms)]
    return {"wire symbols": wire_levels(compressor, hidden), "restored states": restored(compressor, hidden),
            "raw log-mel": log_mels(waveforms)[1]}


def probe_split(split, waveforms: Sequence[np.ndarray], speakers: Sequence[str], *, test_per_speaker: int = 2,
                settings: HeadTraining | None = None, calibrate: bool = True) -> dict[str, ProbeResult]:
    """:func:`speaker_probes` on what a :class:`~workbench.device_tuning.SplitModel` (with its
    compressor) exposes, next to raw log-mel and, with ``calibrate``, d-vectors.

    Representations, in this order: ``"wire symbols"`` (what an eavesdropper reads,
    :func:`wire_levels`), ``"restored states"`` (what the server computes from them),
    ``"raw log-mel"`` (the audio's spectrum, :func:`log_mels`) and ``"d-vectors (calibration)"``
    (:func:`dvector_frames`). Notebook 08 and ``bench/bench_device_tuning_tasks.py --probes`` call this.

    Args:
        split: a SplitModel with a compressor.
        waveforms: ``(S_i,)`` float32 at 16 kHz.
        speakers: the speaker of each waveform (at least 2 utterances each).
    """
    reps = split_representations(split, waveforms)
    if calibrate:
        reps["d-vectors (calibration)"] = dvector_frames(waveforms)
    return speaker_probes(reps, speakers, test_per_speaker=test_per_speaker, settings=settings)


def dvector_frames(waveforms: Sequence[np.ndarray], threads: int | None = 1) -> list[torch.Tensor]:
    """One d-vector per 16 kHz waveform (:mod:`workbench.embeddings`, pretrained GE2E), as a
    ``(1, 256)`` "sequence" the probe reads: the calibration representation, made to carry
    identity. Needs ``pip install 'workbench[embed]'``."""
    from workbench.embeddings import embed_utterances

    vecs = embed_utterances(list(waveforms), "dvector", threads=threads)
    return [torch.as_tensor(v, dtype=torch.float32)[None] for v in vecs]


# -- 2. reconstruction --------------------------------------------------------------------------
class _Residual(nn.Module):
    def __init__(self, dim: int, kernel: int = 5) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.conv = nn.Conv1d(dim, dim, kernel, padding=kernel // 2)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        y = self.conv(self.norm(x).masked_fill(~mask[..., None], 0.0).transpose(1, 2)).transpose(1, 2)
        return x + F.gelu(y)


class InverseModel(nn.Module):
    """Stream frames back to normalized log-mel: ``(B, T, F), lengths -> (B, T * upsample, 80)``.

    Linear -> 3 residual conv blocks at the stream's rate -> each frame unfolds into
    ``upsample`` mel frames (a Linear to ``upsample * 80``; 4 x stride for the built-in model's
    25 Hz hidden states) -> one smoothing conv at 100 Hz. Frames past each true length are 0.
    Working at the stream's rate keeps a training step cheap on a CPU.
    """

    def __init__(self, in_dim: int, upsample: int, n_mels: int = N_MELS, hidden: int = 256, kernel: int = 5) -> None:
        super().__init__()
        self.upsample, self.n_mels = int(upsample), n_mels
        self.inp = nn.Linear(in_dim, hidden)
        self.blocks = nn.ModuleList([_Residual(hidden, kernel) for _ in range(3)])
        self.unfold = nn.Linear(hidden, self.upsample * n_mels)
        self.smooth = nn.Conv1d(n_mels, n_mels, 3, padding=1)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = frame_mask(lengths, x.shape[1])
        h = self.inp(x)
        for block in self.blocks:
            h = block(h, mask)
        b, t, _ = h.shape
        mel = self.unfold(h).reshape(b, t * self.upsample, self.n_mels)
        mask = mask.repeat_interleave(self.upsample, dim=1)[..., None]
        mel = mel.masked_fill(~mask, 0.0)
        mel = mel + self.smooth(mel.transpose(1, 2)).transpose(1, 2)
        return mel.masked_fill(~mask, 0.0)


def inverse_loss(pred: torch.Tensor, target: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Mean absolute error over the true log-mel frames; ``pred (B, T_p, 80)``, ``target`` is
    ``(log-mel (B, T, 80), lengths (B,))``. Predictions are cut or zero-padded to ``T``."""
    mel, lens = target
    t = mel.shape[1]
    pred = pred[:, :t] if pred.shape[1] >= t else F.pad(pred, (0, 0, 0, t - pred.shape[1]))
    mask = frame_mask(lens, t)[..., None].to(pred.dtype)
    return ((pred - mel).abs() * mask).sum() / (mask.sum() * mel.shape[2]).clamp(min=1)


def train_inverse(model: InverseModel, inputs: Sequence[torch.Tensor], mels: Sequence[torch.Tensor],
                  settings: HeadTraining | None = None) -> list[dict]:
    """Train ``model`` in place: stream frames ``inputs[i] (T_i, F)`` -> normalized log-mel ``mels[i]``."""
    return train_head(model, inputs, list(mels), inverse_loss, settings)


@torch.no_grad()
def reconstruct(model: InverseModel, inputs: Sequence[torch.Tensor], frames: Sequence[int]) -> list[torch.Tensor]:
    """Predicted normalized log-mel ``(frames[i], 80)`` for each stream ``inputs[i]``."""
    model.eval()
    out = []
    for x, n in zip(inputs, frames, strict=True):
        p = model(x[None].float(), torch.tensor([x.shape[0]]))[0]
        out.append(p[:n] if p.shape[0] >= n else F.pad(p, (0, 0, 0, n - p.shape[0])))
    return out


def log_mels(waveforms: Sequence[np.ndarray]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """``(normalized, raw)`` log-mel ``(T_i, 80)`` of each 16 kHz waveform, as the built-in model's
    frontend computes them (normalized = what the model reads; the speaker probe needs ``raw``)."""
    from workbench.features import LogMel, normalize_per_utterance, pad_waveforms

    front = LogMel(normalize=False)
    norm, raw = [], []
    with torch.no_grad():
        for w in waveforms:
            f, n = front(*pad_waveforms([w]))
            raw.append(f[0, : int(n[0])].clone())
            norm.append(normalize_per_utterance(f, n)[0, : int(n[0])].clone())
    return norm, raw


@dataclasses.dataclass
class MelStats:
    """Average per-bin mean and std ``(80,)`` of raw log-mel over a set of utterances: the level
    that per-utterance normalization removed, put back before Griffin-Lim."""

    mean: torch.Tensor
    std: torch.Tensor

    @classmethod
    def of(cls, raw: Sequence[torch.Tensor]) -> MelStats:
        return cls(torch.stack([r.mean(0) for r in raw]).mean(0), torch.stack([r.std(0) for r in raw]).mean(0))


def mel_to_audio(log_mel: torch.Tensor, stats: MelStats | None = None, *, n_iter: int = 32) -> np.ndarray:
    """Log-mel ``(T, 80)`` -> a 16 kHz waveform by Griffin-Lim, as ``librosa.feature.inverse.mel_to_audio``
    does it (with the frontend's FFT, window, hop and Slaney filterbank, and a fixed initial phase).

    Args:
        log_mel: raw log mel power (``stats=None``), or per-utterance normalized log-mel with the
            ``stats`` to de-normalize it by.
        n_iter: Griffin-Lim iterations.

    Returns:
        ``(S,)`` float32 with ``S = (T - 1) * 160``, peak at most 0.99.
    """
    import librosa

    x = log_mel.float()
    if stats is not None:
        x = x * stats.std + stats.mean
    power = (x.exp() - LOG_FLOOR).clamp(min=0.0).T.numpy().astype(np.float64)  # (80, T)
    # the two steps of librosa.feature.inverse.mel_to_audio, with a fixed initial phase (reproducible)
    stft = librosa.feature.inverse.mel_to_stft(power, sr=SAMPLE_RATE, n_fft=N_FFT, power=2.0, fmin=20.0,
                                               fmax=SAMPLE_RATE / 2)
    wav = librosa.griffinlim(stft, n_iter=n_iter, hop_length=HOP_LENGTH, win_length=WIN_LENGTH, n_fft=N_FFT,
                             center=True, pad_mode="constant", length=(x.shape[0] - 1) * HOP_LENGTH, random_state=0)
    wav = np.nan_to_num(wav.astype(np.float32))
    peak = float(np.abs(wav).max())
    return wav * (0.99 / peak) if peak > 0.99 else wav
