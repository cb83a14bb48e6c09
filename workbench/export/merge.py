"""Fold a speaker's adapter into the base weights, and check the result against the adapted model.

**Which families merge.** LoRA adds ``(alpha/r) B A x`` to a linear layer's output, which is
the same as adding ``(alpha/r) B A`` to its weight; the vector family (IA3, rank-1 FLoRA,
:mod:`workbench.adapters.vector`) scales a linear layer's input and/or output element-wise,
``y = b * (W (a * x) + bias)``, which is the layer ``W' = diag(b) W diag(a)``,
``bias' = b * bias``. :meth:`workbench.adapters.Adapted.merge` folds either into the weights
exactly (and refuses NaN); the check below confirms it to float32 rounding on every export.
The residual, ConvAdapter and HRA families put a
non-linear module (LayerNorm, ReLU/GELU, a sigmoid gate, a recurrent controller) after an
encoder block; no change of the base weights reproduces it, so their models cannot become a
plain Whisper checkpoint. They can still be exported as a graph that contains the adapter:
ONNX, for the built-in model (:mod:`workbench.export.onnx`).

**The check.** The merged weights are loaded into a fresh copy of the base architecture (no
hooks, nothing of the workbench left), run on a fixed probe, and compared with the adapted
model on the same probe; the export is refused unless they agree to float32 rounding
(:data:`RTOL` of the largest output). How far the adapter moves the base model's outputs is
reported too, so a reader can see that the comparison is not trivially met.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor, nn

from workbench.errors import ExportError

if TYPE_CHECKING:
    from workbench.adapters import Adapted

__all__ = ["MERGEABLE", "RTOL", "Verification", "check_family", "compare_outputs", "fresh_merged_model",
           "how_merged", "merged_state_dict", "merged_whisper", "probe_waveforms", "whisper_probe"]

MERGEABLE = ("lora", "vector")  # families whose update folds into the linear layers' weights (Adapted.merge)
RTOL = 1e-4  # largest allowed difference, relative to the largest output (float32 rounding through the net)
_WHISPER_FORMATS = ("hf", "ct2", "ggml")


@dataclasses.dataclass(frozen=True)
class Verification:
    """How the exported model's outputs compare with the adapted model's on the probe.

    Attributes:
        max_diff: largest absolute difference, exported vs adapted.
        scale: largest absolute output of the adapted model (the tolerance is ``RTOL * scale``).
        adapter_effect: largest absolute difference, adapted vs base model alone.
        probe: what was compared, in words.
    """

    max_diff: float
    scale: float
    adapter_effect: float
    probe: str

    @property
    def tolerance(self) -> float:
        return RTOL * max(1.0, self.scale)

    def describe(self) -> str:
        return (f"largest difference {self.max_diff:.1e} on {self.probe} (allowed {self.tolerance:.1e}, float32 "
                f"rounding); the adapter itself moves these outputs by up to {self.adapter_effect:.1e}")


def check_family(family: str, fmt: str, kind: str) -> None:
    """Refuse, in words, a format this adapter family and base model cannot go to.

    Args:
        family: the adapter family (``"lora"``, ``"residual"``, ``"conv"``, ``"hra"``).
        fmt: ``"hf"``, ``"ct2"``, ``"ggml"`` or ``"onnx"``.
        kind: the base model's kind, ``"whisper"`` or ``"built-in"``.
    """
    from workbench.export.formats import FORMATS

    if kind == "built-in" and fmt != "onnx":
        raise ExportError(f"this personal model is on the built-in model, and {fmt} ({FORMATS[fmt]}) is a format for "
                          "Whisper models; export it with --format onnx (ONNX Runtime)")
    if kind == "whisper" and fmt == "onnx":
        raise ExportError("--format onnx is for the built-in model; for a Whisper personal model use --format ct2 "
                          "(faster-whisper), ggml (whisper.cpp) or hf (transformers)")
    if fmt in _WHISPER_FORMATS and family not in MERGEABLE:
        raise ExportError(
            f"a {family} adapter cannot be exported to {fmt} ({FORMATS[fmt]}): it is a small network placed after "
            "each encoder block, not a change of the model's weights, so it cannot be folded into the plain Whisper "
            "model that faster-whisper, whisper.cpp and transformers run. None of ct2, ggml or hf can hold it (only "
            "LoRA and vector adapters can be merged); the built-in model's adapters of every family export to onnx. "
            "To take this "
            "speaker's Whisper model anywhere, train a LoRA adapter: workbench personalize SPEAKER_DIR --family lora")


def how_merged(family: str) -> str:
    """How ``family``'s update went into the weights, in the model card's words.

    >>> how_merged("vector")
    'vector scalings merged: diag(b) W diag(a), b * bias'
    """
    return "vector scalings merged: diag(b) W diag(a), b * bias" if family == "vector" else \
        "LoRA merged: W + alpha/r · B A"


def merged_state_dict(adapted: Adapted) -> dict[str, Tensor]:
    """The base model's ``state_dict`` with the (one-speaker) LoRA or vector update folded into its weights.

    Uses :meth:`Adapted.merge` (which refuses NaN/inf) and :meth:`Adapted.unmerge` (which
    restores the exact base weights), so the live model is unchanged afterwards.
    """
    if adapted.config.family not in MERGEABLE:
        raise ExportError(f"a {adapted.config.family} adapter cannot be merged into the base weights (only LoRA and "
                          "vector adapters can)")
    adapted.merge(0)
    try:
        return {k: v.detach().clone() for k, v in adapted.backend.module.state_dict().items()}
    finally:
        adapted.unmerge()


def fresh_merged_model(adapted: Adapted, state: dict[str, Tensor]) -> nn.Module:
    """A new instance of the base architecture holding ``state``: no hooks, no adapter modules."""
    from workbench.models.tiny import TinyBackend, TinyConformerCTC

    backend = adapted.backend
    if isinstance(backend, TinyBackend):
        model = TinyConformerCTC(backend.model.cfg, fbank=backend.model.frontend.fbank.detach().clone())
    else:
        model = type(backend.model)(backend.model.config)
    model.load_state_dict(state, strict=True)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def compare_outputs(adapted: Adapted, run: Callable[[], Tensor], exported: Tensor | np.ndarray,
                    probe: str, what: str) -> Verification:
    """Check ``exported`` outputs against the adapted model's, refusing the export if they differ.

    Args:
        adapted: the adapted model (hooks live).
        run: computes the live backend's output on the probe (the adapted model; the base
            model alone inside ``adapted.disabled()``).
        exported: the exported model's output on the same probe.
        probe: what the probe is, in words.
        what: the exported model, in words, for the message.
    """
    with torch.no_grad():
        ref = run().float()
        with adapted.disabled():
            base = run().float()
    got = torch.as_tensor(np.asarray(exported)).float()
    if got.shape != ref.shape:
        raise ExportError(f"the {what} gives outputs of shape {tuple(got.shape)}, the personal model "
                          f"{tuple(ref.shape)}; the export was not written. Please report this as a bug")
    v = Verification(max_diff=float((got - ref).abs().max()), scale=float(ref.abs().max()),
                     adapter_effect=float((ref - base).abs().max()), probe=probe)
    if not math.isfinite(v.max_diff) or v.max_diff > v.tolerance:
        raise ExportError(f"the {what} does not reproduce the personal model: {v.describe()}. Nothing was written; "
                          "please report this as a bug")
    return v


def probe_waveforms(seconds: tuple[float, ...] = (2.5, 1.3), seed: int = 0) -> list[np.ndarray]:
    """Deterministic speech-like test signals (harmonics with a moving pitch, plus noise), 16 kHz float32."""
    rng = np.random.default_rng(seed)
    out = []
    for s in seconds:
        t = np.arange(int(s * 16000)) / 16000.0
        f0 = 120 + 40 * np.sin(2 * np.pi * 0.7 * t)
        phase = 2 * np.pi * np.cumsum(f0) / 16000.0
        voice = sum(np.sin(k * phase) / k for k in range(1, 12)) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t) ** 2)
        out.append((0.1 * voice + 0.01 * rng.standard_normal(t.size)).astype(np.float32))
    return out


def whisper_probe(adapted: Adapted) -> tuple[Tensor, Tensor]:
    """``(input_features (1, 80, 3000), decoder_input_ids (1, L))``: a probe signal padded to 30 s, and the
    decoding prompt followed by a short sentence (teacher forcing)."""
    backend = adapted.backend
    feats = backend.processor.feature_extractor(probe_waveforms((2.5,)), sampling_rate=16000,
                                                return_tensors="pt")["input_features"]
    ids = backend.prompt_ids + backend.target_ids("the quick brown fox jumps over the lazy dog")
    return feats, torch.tensor([ids])


def merged_whisper(adapted: Adapted) -> tuple[nn.Module, Verification]:
    """A plain ``WhisperForConditionalGeneration`` with the speaker's adapter merged in, checked on the probe.

    The check runs the full model (encoder on a 30 s window, decoder teacher-forced on the
    prompt and a sentence) and compares every logit. The base model's generation settings
    (special tokens, suppressed tokens) are copied over.
    """
    import copy

    model = fresh_merged_model(adapted, merged_state_dict(adapted))
    feats, ids = whisper_probe(adapted)
    live = adapted.backend.model
    with torch.no_grad():
        got = model(input_features=feats, decoder_input_ids=ids).logits
    verification = compare_outputs(adapted, lambda: live(input_features=feats, decoder_input_ids=ids).logits, got,
                                   probe=f"every logit of a 2.5 s probe signal and a {ids.shape[1]}-token decoder "
                                         "input", what="merged Whisper model")
    model.generation_config = copy.deepcopy(live.generation_config)
    return model, verification
