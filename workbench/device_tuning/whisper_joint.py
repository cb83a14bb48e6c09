"""Joint multi-task training of a Whisper split's compressor: ASR distillation plus the server's task heads.

:class:`~workbench.device_tuning.whisper_train.WhisperCompressorTrainer` trains the compressor
for speech recognition only, and the heads (:mod:`workbench.device_tuning.heads`) were trained
afterwards on the frozen compressor. Here the compressor and both heads learn together, so the
symbols keep what the tasks need, not only what the recognizer needs. The loss of a batch is

    the distillation loss (token KL + top encoder states + rate; :mod:`whisper_train`)
    + speaker_weight * (1 - cos(speaker head(restored states), the raw audio's d-vector))
    + profile_weight * (cross-entropy of the simulated profile class + squared error of its severity)

The heads read the **restored** states (the compressor's straight-through round trip, exactly
what the server holds) over the audio's true frames. A recording without a d-vector or a profile
label (the real recordings, the pretraining voices) counts for the terms it has; each head's term
is the mean over the recordings of the batch that have its label. The atypicality head's output
is a research output on simulated speakers, never a clinical score.

Checkpoints hold the compressor, both heads and the optimizer (``comp.*``, ``speaker.*``,
``profile.*``): a resumed run takes the same steps as an unbroken one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from workbench.device_tuning.heads import PROFILE_CLASSES, AtypicalityHead, SpeakerHead
from workbench.device_tuning.whisper_split import WhisperSplit
from workbench.device_tuning.whisper_train import DistillItem, WhisperCompressorTrainer, WhisperDistillSettings
from workbench.errors import WorkbenchError

__all__ = ["JointItem", "WhisperJointSettings", "WhisperJointTrainer", "joint_items"]


@dataclasses.dataclass
class WhisperJointSettings(WhisperDistillSettings):
    """:class:`WhisperDistillSettings` plus the task heads' weights and width."""

    speaker_weight: float = 1.0  # x (1 - cosine to the d-vector)
    profile_weight: float = 1.0  # x (class cross-entropy + severity squared error)
    head_hidden: int = 128


@dataclasses.dataclass(frozen=True)
class JointItem(DistillItem):
    """A :class:`DistillItem` with the task labels it has: the raw audio's d-vector ``(256,)`` or
    None, the profile class (an index of :data:`PROFILE_CLASSES`, or -1: none) and its severity."""

    dvector: torch.Tensor | None = None
    profile: int = -1
    severity: float = 0.0


def joint_items(items: Sequence[DistillItem], dvectors: Sequence[np.ndarray | None] | None = None,
                profiles: Sequence[tuple[str, float] | None] | None = None) -> list[JointItem]:
    """Attach task labels to distillation items: per item a d-vector (or None) and a
    ``(class name, severity)`` (or None; :func:`~workbench.device_tuning.heads.profile_label`)."""
    out = []
    for i, it in enumerate(items):
        d = None if dvectors is None or dvectors[i] is None else torch.as_tensor(np.asarray(dvectors[i]),
                                                                                  dtype=torch.float32)
        prof = None if profiles is None else profiles[i]
        if prof is not None and prof[0] not in PROFILE_CLASSES:
            raise WorkbenchError(f"unknown profile class {prof[0]!r}; the classes are {', '.join(PROFILE_CLASSES)}")
        out.append(JointItem(it.hidden, it.frames, it.samples, it.text, d,
                             -1 if prof is None else PROFILE_CLASSES.index(prof[0]),
                             0.0 if prof is None else float(prof[1])))
    return out


class WhisperJointTrainer(WhisperCompressorTrainer):
    """Trains ``split.compressor`` and two server-side heads together (see the module docstring).

    Args:
        split: a :class:`WhisperSplit` with a compressor.
        items: :class:`JointItem` (:func:`joint_items`); some must carry each task's label.
        settings: :class:`WhisperJointSettings`.

    Attributes:
        speaker: the :class:`SpeakerHead` on the restored states.
        profile: the :class:`AtypicalityHead` on the restored states.
    """

    def __init__(self, split: WhisperSplit, items: Sequence[JointItem],
                 settings: WhisperJointSettings = WhisperJointSettings()) -> None:
        if not any(isinstance(it, JointItem) and it.dvector is not None for it in items):
            raise WorkbenchError("Joint training needs recordings with d-vectors (the speaker head's targets).")
        if not any(isinstance(it, JointItem) and it.profile >= 0 for it in items):
            raise WorkbenchError("Joint training needs recordings of simulated speakers with a profile label.")
        torch.manual_seed(settings.seed)
        width = split.width
        self.speaker = SpeakerHead(width, hidden=settings.head_hidden).to(split.backend.device)
        self.profile = AtypicalityHead(width, hidden=settings.head_hidden).to(split.backend.device)
        super().__init__(split, items, settings)

    def parts(self) -> dict[str, torch.nn.Module]:
        return {"comp": self.comp, "speaker": self.speaker, "profile": self.profile}

    def losses(self, idx: Sequence[int]) -> dict[str, torch.Tensor]:
        """``{"loss", "kl", "state", "rate", "speaker", "profile"}`` of the recordings ``idx``; a
        head's term is 0 when no recording of the batch has its label."""
        out, restored, lens = self._distill(idx)
        st, its = self.settings, [self.items[i] for i in idx]
        x = restored.float()
        zero = torch.zeros((), device=x.device)
        has_d = [j for j, it in enumerate(its) if it.dvector is not None]
        speaker = zero
        if has_d:
            target = torch.stack([its[j].dvector for j in has_d]).to(x.device)
            pred = self.speaker(x[has_d], lens[has_d])
            speaker = (1 - F.cosine_similarity(pred, target, dim=-1)).mean()
        has_p = [j for j, it in enumerate(its) if it.profile >= 0]
        profile = zero
        if has_p:
            logits, sev = self.profile(x[has_p], lens[has_p])
            cls = torch.tensor([its[j].profile for j in has_p], device=x.device)
            sev_t = torch.tensor([its[j].severity for j in has_p], device=x.device, dtype=sev.dtype)
            profile = F.cross_entropy(logits, cls) + F.mse_loss(sev, sev_t)
        out["speaker"], out["profile"] = speaker, profile
        out["loss"] = out["loss"] + st.speaker_weight * speaker + st.profile_weight * profile
        return out
