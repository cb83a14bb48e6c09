"""Server-side task heads on the representation at the split (Device Tuning's multi-task part).

The server restores the hidden states ``h (T', D)`` after encoder block ``k`` from the wire
(:meth:`SplitModel.restore`). Speech recognition is the rest of the frozen model. The heads here
read the same restored states. Each one pools over the **true** frames only (padding never
counts) and ends in a linear layer:

- :class:`SpeakerHead`: pooled -> a unit vector of :data:`~workbench.embeddings.DVECTOR_DIM`.
  It is trained to match the d-vector of the raw audio (cosine loss,
  :func:`speaker_loss`). The d-vector is the GE2E encoder of :mod:`workbench.embeddings.dvector`.
- :class:`AtypicalityHead`: pooled -> one of :data:`PROFILE_CLASSES`, plus a severity in
  ``[0, 1]`` (:func:`atypicality_loss`). It is trained on speakers simulated with
  :mod:`workbench.simulate`. Its outputs are a research output on simulated speakers, never a
  clinical score (:data:`RESEARCH_LABEL`).

Pooling is attentive statistics pooling (Okabe et al. 2018: attention-weighted mean and standard
deviation) or plain mean + std over the true frames. The heads are small, trained with the
compressor and the backend frozen, and cost nothing on the device.

>>> import torch
>>> head = AtypicalityHead(d_model=8, hidden=16)
>>> logits, severity = head(torch.zeros(2, 5, 8), torch.tensor([5, 3]))
>>> tuple(logits.shape), tuple(severity.shape)
((2, 7), (2,))
>>> profile_class("parkinsonian:1.0+articulation:0.5"), profile_class("typical")
('parkinsonian', 'typical')
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from workbench.embeddings.dvector import DVECTOR_DIM

__all__ = [
    "PROFILE_CLASSES",
    "PROFILE_TEMPLATES",
    "RESEARCH_LABEL",
    "AttentivePool",
    "AtypicalityHead",
    "HeadTraining",
    "PooledHead",
    "SpeakerHead",
    "atypicality_loss",
    "atypicality_metrics",
    "equal_error_rate",
    "frame_mask",
    "head_outputs",
    "masked_mean_std",
    "pad_items",
    "profile_class",
    "profile_label",
    "restored",
    "speaker_loss",
    "speaker_metrics",
    "train_head",
]

RESEARCH_LABEL = "research output on simulated speakers, never a clinical score"

#: The classes of simulated atypicality profiles the atypicality head tells apart.
PROFILE_CLASSES = ("typical", "accent", "als-like", "dysarthria", "parkinsonian", "stutter", "tremor")

#: How a speaker of each class is simulated at severity ``s`` in [0.3, 1]: a
#: :meth:`workbench.simulate.Profile.parse` spec. A preset with ``:s`` scales all of its
#: severities by ``s``. ``typical`` has severity 0.
PROFILE_TEMPLATES = {
    "typical": "typical",
    "accent": "accent:{s:.2f}",
    "als-like": "als-like:{s:.2f}",
    "dysarthria": "dysarthria-severe:{s:.2f}",
    "parkinsonian": "parkinsonian:{s:.2f}",
    "stutter": "dysfluency:{s:.2f}",
    "tremor": "tremor:{s:.2f}",
}


def profile_label(spec: str) -> tuple[str, float]:
    """The class in :data:`PROFILE_CLASSES` and the severity in [0, 1] of a profile spec, e.g. of
    a sample speaker's ``profile_spec``.

    The first term that names a class decides: a preset (``dysarthria-mild`` and
    ``dysarthria-severe`` -> ``dysarthria``), ``dysfluency`` -> ``stutter``, ``tremor``,
    ``accent``. Its ``:value`` is the severity (1 for a preset without one, 0.6 for a bare
    dimension, as :meth:`Profile.parse` reads them). No such term: ``("typical", 0.0)``.

    >>> profile_label("slow:0.6+tremor:0.9+breathy:0.7"), profile_label("als-like")
    (('tremor', 0.9), ('als-like', 1.0))
    """
    for term in str(spec).lower().replace(" ", "").split("+"):
        name, _, value = term.partition(":")
        if name.startswith("dysarthria"):
            cls = "dysarthria"
        elif name in ("dysfluency", "stutter"):
            cls = "stutter"
        elif name in PROFILE_CLASSES and name != "typical":
            cls = name
        else:
            continue
        preset = name not in ("dysfluency", "tremor", "accent")
        return cls, float(value) if value else (1.0 if preset else 0.6)
    return "typical", 0.0


def profile_class(spec: str) -> str:
    """The class of a profile spec (:func:`profile_label` without the severity)."""
    return profile_label(spec)[0]


# -- pooling over true frames -------------------------------------------------------------------
def frame_mask(lengths: torch.Tensor, frames: int) -> torch.Tensor:
    """``(B, frames)`` bool, True on true frames (``t < lengths[b]``)."""
    return torch.arange(frames, device=lengths.device)[None] < lengths[:, None]


def masked_mean_std(x: torch.Tensor, lengths: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean and std of ``x (B, T, D)`` over true frames (optionally ``weights (B, T)`` summing to 1
    over them) -> ``(B, 2D)``. Padded frames never count, whatever they hold."""
    true = frame_mask(lengths, x.shape[1])
    mask = true.to(x.dtype)
    if weights is None:
        weights = mask / mask.sum(1, keepdim=True).clamp(min=1)
    else:
        weights = weights.masked_fill(~true, 0.0)
    x = x.masked_fill(~true[..., None], 0.0)  # padding may hold anything, even NaN: it never enters
    mean = torch.einsum("bt,btd->bd", weights, x)
    var = torch.einsum("bt,btd->bd", weights, (x - mean[:, None]) ** 2)
    return torch.cat([mean, torch.sqrt(var.clamp(min=1e-6))], dim=-1)


class AttentivePool(nn.Module):
    """Attentive statistics pooling: ``(B, T, D), lengths -> (B, 2D)``; padded frames get weight 0."""

    def __init__(self, dim: int, hidden: int = 64) -> None:
        super().__init__()
        self.score = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        s = self.score(x).squeeze(-1).masked_fill(~frame_mask(lengths, x.shape[1]), float("-inf"))
        return masked_mean_std(x, lengths, torch.softmax(s, dim=1))


class PooledHead(nn.Module):
    """Frames ``(B, T', D)`` -> LayerNorm -> Linear(D, hidden) -> GELU -> pooling -> Linear(2*hidden, out).

    Args:
        pooling: ``"attentive"`` (:class:`AttentivePool`) or ``"mean_std"`` (:func:`masked_mean_std`).
    """

    def __init__(self, d_model: int, out: int, hidden: int = 128, pooling: str = "attentive") -> None:
        super().__init__()
        if pooling not in ("attentive", "mean_std"):
            raise ValueError(f"pooling must be 'attentive' or 'mean_std', got {pooling!r}")
        self.frames = nn.Sequential(nn.LayerNorm(d_model), nn.Linear(d_model, hidden), nn.GELU())
        self.pool = AttentivePool(hidden) if pooling == "attentive" else None
        self.out = nn.Linear(2 * hidden, out)

    def pooled(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``(B, 2*hidden)`` statistics over the true frames."""
        h = self.frames(x)
        return self.pool(h, lengths) if self.pool is not None else masked_mean_std(h, lengths)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.out(self.pooled(x, lengths))


class SpeakerHead(PooledHead):
    """Speaker embedding from the representation: ``(B, T', D), lengths -> (B, 256)`` unit vectors,
    trained to match the raw audio's d-vectors (:func:`speaker_loss`)."""

    def __init__(self, d_model: int, hidden: int = 128, pooling: str = "attentive", dim: int = DVECTOR_DIM) -> None:
        super().__init__(d_model, dim, hidden, pooling)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return F.normalize(super().forward(x, lengths), dim=-1)


class AtypicalityHead(nn.Module):
    """Simulated atypicality profile and severity from the representation.

    This is a research output on simulated speakers, never a clinical score: it was trained on
    synthetic TTS voices with simulated profiles (:mod:`workbench.simulate`) and says nothing about
    a real person's speech.

    ``forward(x (B, T', D), lengths) -> (logits (B, len(PROFILE_CLASSES)), severity (B,) in [0, 1])``.
    """

    label = RESEARCH_LABEL

    def __init__(self, d_model: int, hidden: int = 128, pooling: str = "attentive",
                 classes: Sequence[str] = PROFILE_CLASSES) -> None:
        super().__init__()
        self.classes = tuple(classes)
        self.trunk = PooledHead(d_model, len(self.classes) + 1, hidden, pooling)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.trunk(x, lengths)
        return out[:, :-1], torch.sigmoid(out[:, -1])

    @torch.no_grad()
    def describe(self, x: torch.Tensor, lengths: torch.Tensor) -> list[dict]:
        """One ``{"profile", "probability", "severity", "label"}`` per utterance; ``label`` says
        this is a research output on simulated speakers, never a clinical score."""
        logits, sev = self(x, lengths)
        p = torch.softmax(logits, -1)
        return [{"profile": self.classes[int(i)], "probability": float(p[b, i]), "severity": float(sev[b]),
                 "label": RESEARCH_LABEL} for b, i in enumerate(p.argmax(-1))]


def speaker_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean ``1 - cos(pred, target)`` over the batch; both ``(B, D)``."""
    return (1 - F.cosine_similarity(pred, target, dim=-1)).mean()


def atypicality_loss(out: tuple[torch.Tensor, torch.Tensor], target: tuple[torch.Tensor, torch.Tensor],
                     severity_weight: float = 1.0) -> torch.Tensor:
    """Cross-entropy on the class plus ``severity_weight`` x squared error on the severity.

    ``out`` is the head's ``(logits (B, C), severity (B,))``; ``target`` is ``(class ids (B,), severity (B,))``.
    """
    logits, sev = out
    cls, sev_t = target
    return F.cross_entropy(logits, cls) + severity_weight * F.mse_loss(sev, sev_t.to(sev.dtype))


# -- training -----------------------------------------------------------------------------------
def restored(compressor: nn.Module | None, hidden: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """What the server sees: each ``(T'_i, D)`` through the compressor's quantized round trip
    (``decode(encode(h))``, the same states :meth:`SplitModel.restore` gives from the wire), or
    unchanged with ``compressor=None`` (the uncompressed representation)."""
    if compressor is None:
        return [h.float() for h in hidden]
    compressor.eval()
    with torch.no_grad():
        return [compressor.decode(compressor.encode(h[None].float()), h.shape[0])[0] for h in hidden]


def pad_items(items: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(T_i, D)`` tensors -> zero-padded ``(B, T_max, D)`` and lengths ``(B,)``."""
    lens = torch.tensor([int(x.shape[0]) for x in items])
    out = torch.zeros(len(items), int(lens.max()), items[0].shape[1])
    for i, x in enumerate(items):
        out[i, : x.shape[0]] = x.float()
    return out, lens


@dataclasses.dataclass
class HeadTraining:
    """Budget of :func:`train_head`: ``max_steps`` (the same for compared heads) and a wall-clock cap."""

    max_steps: int = 400
    seconds: float = 600.0
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-3
    seed: int = 0


def _collate_targets(targets, idx: Sequence[int]):
    """A batch of targets: rows of a tensor, of each tensor of a tuple, or a list of
    variable-length ``(T_i, F)`` tensors padded (``(padded, lengths)``)."""
    if isinstance(targets, tuple):
        return tuple(t[list(idx)] for t in targets)
    if isinstance(targets, list):
        return pad_items([targets[i] for i in idx])
    return targets[list(idx)]


def train_head(head: nn.Module, feats: Sequence[torch.Tensor], targets,
               loss_fn: Callable, settings: HeadTraining | None = None,
               on_step: Callable[[dict], None] | None = None) -> list[dict]:
    """Train ``head`` in place on frames ``feats`` (each ``(T_i, D)``) and their targets.

    Args:
        targets: a tensor with one row per item, a tuple of such tensors (the atypicality
            head's ``(class ids, severities)``), or a list of ``(T_i, F)`` tensors (sequence
            targets, given to ``loss_fn`` padded as ``(B, T_max, F), lengths``).
        loss_fn: ``loss_fn(head(x, lengths), targets_of_the_batch) -> scalar``.

    Returns:
        the per-step history ``[{"step", "loss", "seconds"}]``; the head is left in eval mode.
    """
    settings = settings or HeadTraining()
    rng = random.Random(settings.seed)
    torch.manual_seed(settings.seed)
    opt = torch.optim.AdamW(head.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    order = list(range(len(feats)))
    history: list[dict] = []
    head.train()
    start = time.perf_counter()
    step = 0
    while step < settings.max_steps and time.perf_counter() - start < settings.seconds:
        rng.shuffle(order)
        for s in range(0, len(order), settings.batch_size):
            if step >= settings.max_steps or time.perf_counter() - start >= settings.seconds:
                break
            for g in opt.param_groups:  # cosine over the step budget
                g["lr"] = settings.lr * 0.5 * (1 + math.cos(math.pi * step / settings.max_steps))
            idx = order[s:s + settings.batch_size]
            x, lens = pad_items([feats[i] for i in idx])
            loss = loss_fn(head(x, lens), _collate_targets(targets, idx))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(head.parameters(), 5.0)
            opt.step()
            step += 1
            rec = {"step": step, "loss": loss.item(), "seconds": time.perf_counter() - start}
            history.append(rec)
            if on_step is not None:
                on_step(rec)
    head.eval()
    return history


@torch.no_grad()
def head_outputs(head: nn.Module, feats: Sequence[torch.Tensor], batch_size: int = 64):
    """The head's outputs on every item (eval mode), concatenated over batches (a tensor, or a
    tuple of tensors for the atypicality head)."""
    head.eval()
    outs = []
    for s in range(0, len(feats), batch_size):
        outs.append(head(*pad_items(feats[s:s + batch_size])))
    if isinstance(outs[0], tuple):
        return tuple(torch.cat(parts) for parts in zip(*outs))
    return torch.cat(outs)


# -- metrics ------------------------------------------------------------------------------------
def equal_error_rate(scores: np.ndarray, same: np.ndarray) -> float:
    """EER of verification scores (higher = same speaker): where false accepts = false rejects.

    >>> equal_error_rate(np.array([0.9, 0.8, 0.1, 0.2]), np.array([True, True, False, False]))
    0.0
    """
    scores, same = np.asarray(scores, float), np.asarray(same, bool)
    if same.all() or not same.any():
        raise ValueError("the EER needs both same-speaker and different-speaker pairs")
    order = np.argsort(-scores, kind="stable")
    s = same[order]
    far = np.concatenate([[0.0], np.cumsum(~s) / (~s).sum()])  # accepting the top i pairs
    frr = np.concatenate([[1.0], 1 - np.cumsum(s) / s.sum()])
    i = int(np.argmin(np.abs(far - frr)))
    return float((far[i] + frr[i]) / 2)


def speaker_metrics(embeddings: np.ndarray, speakers: Sequence[str]) -> dict[str, float]:
    """Speaker embeddings of held-out speakers: ``eer`` over all utterance pairs (cosine) and
    ``nearest_speaker_accuracy`` (nearest centroid of the speaker's other utterances, cross-validated,
    :func:`workbench.embeddings.speaker_id_accuracy`)."""
    from workbench.embeddings import speaker_id_accuracy

    x = np.asarray(embeddings, dtype=np.float64)
    x = x / np.linalg.norm(x, axis=1, keepdims=True).clip(min=1e-12)
    lab = np.asarray(speakers)
    iu = np.triu_indices(len(x), k=1)
    scores = (x @ x.T)[iu]
    same = (lab[:, None] == lab[None])[iu]
    return {"eer": equal_error_rate(scores, same),
            "nearest_speaker_accuracy": speaker_id_accuracy(x, list(speakers), n_folds=3).accuracy,
            "speakers": len(set(speakers)), "utterances": len(x)}


def atypicality_metrics(out: tuple[torch.Tensor, torch.Tensor], classes: torch.Tensor,
                        severities: torch.Tensor) -> dict[str, float | str]:
    """``profile_accuracy`` and ``severity_mae`` of the atypicality head on held-out voices,
    labelled a research output on simulated speakers, never a clinical score."""
    logits, sev = out
    return {"profile_accuracy": float((logits.argmax(-1) == classes).float().mean()),
            "severity_mae": float((sev - severities.to(sev.dtype)).abs().mean()),
            "chance_accuracy": float(torch.bincount(classes).max() / len(classes)),
            "utterances": len(classes), "label": RESEARCH_LABEL}
