"""Training a compressor for a Whisper split by distillation from the unsplit model.

The device part and the server part are frozen; only the compressor learns. The teacher is
the unsplit model on the same recording (the device's states passed unchanged); the student is
the server part on the compressor's round trip (quantized with straight-through gradients).
The loss of a batch is

    KL(teacher || student) of the decoder's next-token distributions, mean over tokens,
        under teacher forcing of the unsplit model's own transcript (its greedy decoding)
    + state_weight * squared error of the top encoder states (after Whisper's final layer norm),
        mean over the audio's true frames, in units of the teacher states' variance
    + rate_weight * estimated bits per symbol sent (:meth:`Compressor.rate_bits` over the symbol
        frames that go on the wire: at ``k = 0`` only the audio's, :meth:`WhisperSplit.compressor_input`)

Training is counted in steps (a cosine schedule over ``max_steps`` after a linear warm-up), the
batch order is a function of the seed and the step, and :meth:`WhisperCompressorTrainer.save`
writes everything a later run needs (compressor, optimizer moments, step) as safetensors + JSON:
a run resumed from a checkpoint takes the same steps as one that was never stopped (tested).
Batches hold recordings of one encoding-window size (Whisper batches share a window).
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from workbench._atomic import write_bytes_atomic
from workbench.device_tuning.whisper_split import WhisperSplit
from workbench.errors import WorkbenchError
from workbench.models.base import CachedFeatures

__all__ = ["DistillItem", "WhisperCompressorTrainer", "WhisperDistillSettings", "distill_items", "state_loss",
           "token_kl"]


@dataclasses.dataclass
class WhisperDistillSettings:
    """Settings of :class:`WhisperCompressorTrainer` (steps, not seconds: a run is the same on any machine)."""

    max_steps: int = 4000
    batch_size: int = 8
    lr: float = 2e-3
    warmup_steps: int = 100
    weight_decay: float = 1e-4
    state_weight: float = 1.0  # x squared error of the top encoder states (teacher-variance units)
    rate_weight: float = 0.0  # x estimated bits per symbol: trades accuracy for fewer bits sent
    grad_clip: float = 5.0
    seed: int = 0
    bf16: bool = False  # the student's frozen encoder and decoder in bfloat16 (autocast): ~1.6x faster on a CPU
    # with AVX512-BF16 or AMX and on GPUs, much slower on other CPUs; the teacher and the compressor stay float32

    def lr_at(self, step: int) -> float:
        """The learning rate of step ``step`` (0-based): linear warm-up, then cosine to 0 at ``max_steps``."""
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        span = max(1, self.max_steps - self.warmup_steps)
        return self.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - self.warmup_steps) / span)))


@dataclasses.dataclass(frozen=True)
class DistillItem:
    """One training recording: the device's states ``(F, width)`` (its whole window), its true
    frames, its length in samples (16 kHz) and the unsplit model's transcript of it."""

    hidden: torch.Tensor
    frames: int
    samples: int
    text: str


def distill_items(split: WhisperSplit, waveforms: Sequence[np.ndarray], *, batch_size: int = 8,
                  on_progress: Callable[[int], None] | None = None) -> list[DistillItem]:
    """The device part's states of each recording and the unsplit model's transcript (the teacher's
    targets), computed once: both are frozen."""
    out: list[DistillItem] = []
    for s in range(0, len(waveforms), batch_size):
        items = split.device_hidden(waveforms[s:s + batch_size])
        hidden, samples = [it.features for it in items], [it.samples for it in items]
        saved, split.compressor = split.compressor, None
        try:  # the identity split is the unsplit model (tests/test_device_tuning_whisper.py)
            texts = split.transcribe_hidden(hidden, samples=samples)
        finally:
            split.compressor = saved
        out += [DistillItem(it.features, it.length, it.samples, t) for it, t in zip(items, texts, strict=True)]
        if on_progress is not None:
            on_progress(len(out))
    return out


def token_kl(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean over real tokens (``labels != -100``) of ``KL(teacher || student)``; logits ``(B, L, V)``."""
    mask = labels != -100
    t = F.log_softmax(teacher.float(), dim=-1)
    s = F.log_softmax(student.float(), dim=-1)
    kl = (t.exp() * (t - s)).sum(-1)
    return (kl * mask).sum() / mask.sum().clamp(min=1)


def state_loss(student: torch.Tensor, teacher: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Mean squared error over true frames of states ``(B, T, D)``, divided by the teacher's variance there."""
    mask = (torch.arange(student.shape[1], device=student.device)[None] < lengths[:, None]).float()[..., None]
    n = mask.sum().clamp(min=1) * student.shape[2]
    mean = (teacher * mask).sum() / n
    var = (((teacher - mean) ** 2) * mask).sum() / n
    return (((student - teacher) ** 2) * mask).sum() / n / var.clamp(min=1e-8)


class WhisperCompressorTrainer:
    """Trains ``split.compressor`` in place on :func:`distill_items` (see the module docstring).

    Args:
        split: a :class:`WhisperSplit` with a compressor.
        items: the training recordings (:func:`distill_items`).
        settings: :class:`WhisperDistillSettings`.
    """

    def __init__(self, split: WhisperSplit, items: Sequence[DistillItem],
                 settings: WhisperDistillSettings = WhisperDistillSettings()) -> None:
        if split.compressor is None:
            raise WorkbenchError("Training a compressor needs a split with one: WhisperSplit(backend, k, Compressor(...)).")
        if not items:
            raise WorkbenchError("No training recordings: give the compressor recordings to learn from.")
        self.split, self.items, self.settings = split, list(items), settings
        self.backend, self.comp = split.backend, split.compressor
        self.backend.freeze()
        self.backend.module.eval()
        torch.manual_seed(settings.seed)
        self.opt = torch.optim.AdamW(self.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
        self.step = 0
        by_window: dict[int, list[int]] = {}
        for i, it in enumerate(self.items):
            by_window.setdefault(int(it.hidden.shape[0]), []).append(i)
        self._groups = [by_window[k] for k in sorted(by_window)]
        self._chunks_per_epoch = sum(math.ceil(len(g) / settings.batch_size) for g in self._groups)

    def parts(self) -> dict[str, torch.nn.Module]:
        """What this trainer trains, by checkpoint prefix (the compressor; a joint trainer adds its heads)."""
        return {"comp": self.comp}

    def parameters(self) -> list[torch.nn.Parameter]:
        return [p for part in self.parts().values() for p in part.parameters()]

    def _mode(self, training: bool) -> None:
        for part in self.parts().values():
            part.train(training)

    # -- the data order: a function of (seed, step) ---------------------------------------------
    def _epoch(self, epoch: int) -> list[list[int]]:
        rng = random.Random(self.settings.seed * 1_000_003 + epoch)
        chunks = []
        for g in self._groups:
            g = list(g)
            rng.shuffle(g)
            chunks += [g[i:i + self.settings.batch_size] for i in range(0, len(g), self.settings.batch_size)]
        rng.shuffle(chunks)
        return chunks

    def batch_indices(self, step: int) -> list[int]:
        """The recordings of step ``step`` (0-based)."""
        return self._epoch(step // self._chunks_per_epoch)[step % self._chunks_per_epoch]

    # -- the loss --------------------------------------------------------------------------------
    def losses(self, idx: Sequence[int]) -> dict[str, torch.Tensor]:
        """``{"loss", "kl", "state", "rate"}`` of the recordings ``idx`` (one window size)."""
        return self._distill(idx)[0]

    def _distill(self, idx: Sequence[int]) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        """The distillation losses, the restored states ``(B, F, width)`` (through the quantizer,
        straight-through) and the true frames ``(B,)`` of the recordings ``idx``."""
        b, comp, st = self.backend, self.comp, self.settings
        its = [self.items[i] for i in idx]
        batch = b.collate([CachedFeatures(it.hidden, it.frames, it.samples, self.split.split_layer) for it in its],
                          [0] * len(its))
        dec_in, labels = b.decoder_io([it.text for it in its])
        dec_in, labels = dec_in.to(b.device), labels.to(b.device)
        with torch.no_grad():
            enc_t, lens = b.encode(batch)
            logits_t = b.forced_logits(enc_t, dec_in)
        h = batch.features
        rate = (comp.rate_bits(*self.split.compressor_input(h.float(), [it.samples for it in its]))
                if st.rate_weight else torch.zeros((), device=h.device))  # the symbol frames sent, only
        restored = self.split.round_trip(comp, h.float(), [it.samples for it in its])
        batch.features = restored.to(h.dtype)
        with torch.autocast(torch.device(b.device).type, dtype=torch.bfloat16, enabled=st.bf16):
            enc_s, _ = b.encode(batch)
            logits_s = b.forced_logits(enc_s, dec_in)
        kl = token_kl(logits_s, logits_t, labels)
        states = state_loss(enc_s.float(), enc_t.float(), lens)
        loss = kl + st.state_weight * states + st.rate_weight * rate
        return {"loss": loss, "kl": kl, "state": states, "rate": rate}, restored, batch.lengths

    @torch.no_grad()
    def evaluate(self, items: Sequence[int] | None = None) -> dict[str, float]:
        """Mean losses over ``items`` (default: every training recording), batches of one window."""
        was = self.comp.training
        self._mode(False)
        wanted = set(range(len(self.items))) if items is None else set(items)
        total: dict[str, float] = {}
        n = 0
        try:
            for g in self._groups:
                mine = [i for i in g if i in wanted]
                for s in range(0, len(mine), self.settings.batch_size):
                    chunk = mine[s:s + self.settings.batch_size]
                    for k, v in self.losses(chunk).items():
                        total[k] = total.get(k, 0.0) + float(v) * len(chunk)
                    n += len(chunk)
        finally:
            self._mode(was)
        return {k: v / max(1, n) for k, v in total.items()}

    # -- training ----------------------------------------------------------------------------------
    def train(self, steps: int | None = None, on_step: Callable[[dict], None] | None = None) -> list[dict]:
        """Run ``steps`` more steps (default: up to ``max_steps``); returns their records."""
        st = self.settings
        end = st.max_steps if steps is None else min(st.max_steps, self.step + steps)
        self._mode(True)
        history = []
        while self.step < end:
            for g in self.opt.param_groups:
                g["lr"] = st.lr_at(self.step)
            out = self.losses(self.batch_indices(self.step))
            if not torch.isfinite(out["loss"]):
                raise WorkbenchError(f"The compressor's loss became {float(out['loss'])} at step {self.step + 1}: "
                                     "lower the learning rate (--lr) and resume from the last checkpoint.")
            self.opt.zero_grad(set_to_none=True)
            out["loss"].backward()
            torch.nn.utils.clip_grad_norm_(self.parameters(), st.grad_clip)
            self.opt.step()
            self.step += 1
            rec = {"step": self.step, "lr": st.lr_at(self.step - 1), **{k: float(v.detach()) for k, v in out.items()}}
            history.append(rec)
            if on_step is not None:
                on_step(rec)
        self._mode(False)
        return history

    def fit_tables(self) -> None:
        """Count the symbol frequencies on every training recording (for the range coder)."""
        with torch.no_grad():
            self.comp.eval()
            dev = self.comp.tables.device
            self.comp.fit_tables([self.split.coded_symbols(it.hidden.to(dev), it.samples).cpu() for it in self.items])

    # -- checkpoints --------------------------------------------------------------------------------
    def save(self, path: str | Path, *, extra: dict | None = None) -> Path:
        """Write the compressor, the optimizer's moments and the step (safetensors + JSON, atomic)."""
        from safetensors.torch import save

        params = self.parameters()
        tensors = {f"{name}.{k}": v.detach().cpu().contiguous()
                   for name, part in self.parts().items() for k, v in part.state_dict().items()}
        for i, p in enumerate(params):
            for key, value in self.opt.state.get(p, {}).items():
                tensors[f"opt.{i}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
        meta = {"format": "workbench-compressor-checkpoint", "step": str(self.step),
                "settings": json.dumps(dataclasses.asdict(self.settings)), "config": json.dumps(
                    dataclasses.asdict(self.comp.config)), "split_layer": str(self.split.split_layer),
                "extra": json.dumps(extra or {})}
        write_bytes_atomic(path, save(tensors, metadata=meta))
        return Path(path)

    def load(self, path: str | Path) -> dict:
        """Continue from a checkpoint :meth:`save` wrote for the same compressor sizes and split;
        returns its ``extra``. Refuses (plainly) one made for other sizes, split or settings."""
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("format") != "workbench-compressor-checkpoint":
                raise WorkbenchError(f"{Path(path).name} is not a compressor training checkpoint.")
            mine = {"config": dataclasses.asdict(self.comp.config), "split_layer": self.split.split_layer,
                    "settings": dataclasses.asdict(self.settings)}
            # through the dataclasses: fields added since the checkpoint was written take their defaults
            try:
                theirs = {"config": dataclasses.asdict(type(self.comp.config)(**json.loads(meta["config"]))),
                          "split_layer": int(meta["split_layer"]),
                          "settings": dataclasses.asdict(type(self.settings)(**json.loads(meta["settings"])))}
            except (TypeError, WorkbenchError):  # a field this workbench does not know, or a size out of range
                raise WorkbenchError(f"{Path(path).name} was written by another version of the workbench: start a "
                                     "new run in another folder.") from None
            if mine != theirs:
                diff = [k for k in mine if mine[k] != theirs[k]]
                raise WorkbenchError(f"{Path(path).name} was written by a run with other {' and '.join(diff)}: "
                                     "resume with the same settings, or start a new run in another folder.")
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        for name, part in self.parts().items():
            part.load_state_dict({k[len(name) + 1:]: v for k, v in tensors.items() if k.startswith(name + ".")})
        params = self.parameters()
        self.opt.state.clear()
        for k, v in tensors.items():
            if k.startswith("opt."):
                _, i, key = k.split(".", 2)
                param = params[int(i)]
                self.opt.state.setdefault(param, {})[key] = v if key == "step" else v.to(param.device)
        self.step = int(meta["step"])
        return json.loads(meta.get("extra", "{}"))
