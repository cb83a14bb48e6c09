"""``--format onnx``: the built-in CTC model with its personal adapter, as one ONNX graph for ONNX Runtime.

The graph takes raw audio and returns CTC log-probabilities::

    waveform (B, S) float32, 16 kHz   lengths (B,) int64 samples
        -> log_probs (B, T', 29) float32, out_lengths (B,) int64 encoder frames (40 ms each)

so a user needs no feature code: the log-mel frontend is inside the graph. ONNX has no
complex numbers, so the STFT is written as a strided convolution with the Hann-windowed DFT
basis (the same frames, window and zero padding as ``torch.stft(center=True)``), followed by
the model's own filterbank, log and per-utterance normalization. ``vocab.json`` beside it
lists the 29 symbols (0 is the CTC blank).

**Adapters.** A LoRA adapter is merged into the weights and a plain model is exported; the
other families (residual, ConvAdapter, HRA) are exported as they run, inside the graph (the
tracer records the adapter hooks). Either way the graph is run in ONNX Runtime at export, and
the export is refused unless its log-probabilities equal the adapted model's to float32
rounding. Whisper to ONNX is not offered: its decoder loop needs a search outside the graph,
and the ct2 and ggml exports already cover Whisper.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from workbench.export.merge import MERGEABLE, Verification, compare_outputs, fresh_merged_model, how_merged, \
    merged_state_dict, probe_waveforms

if TYPE_CHECKING:
    from workbench.adapters import Adapted

__all__ = ["OPSET", "OnnxCTC", "write_onnx"]

OPSET = 17
FILE_NAME = "model.onnx"


class OnnxCTC(nn.Module):
    """The built-in model as an export-friendly module: waveform -> CTC log-probabilities.

    Args:
        model: a :class:`~workbench.models.tiny.TinyConformerCTC` (merged, or with adapter hooks).
    """

    def __init__(self, model: nn.Module) -> None:
        from workbench.features import HOP_LENGTH, N_FFT

        super().__init__()
        self.model = model
        fe = model.frontend
        self.n_fft, self.hop, self.normalize = N_FFT, HOP_LENGTH, fe.normalize
        win = fe.window.detach().float().cpu()
        left = (N_FFT - win.shape[0]) // 2  # torch.stft centres a shorter window in n_fft
        window = F.pad(win, (left, N_FFT - win.shape[0] - left))
        k = torch.arange(N_FFT // 2 + 1, dtype=torch.float64)[:, None]
        n = torch.arange(N_FFT, dtype=torch.float64)[None, :]
        angle = 2 * math.pi * k * n / N_FFT
        basis = torch.cat([torch.cos(angle), -torch.sin(angle)]) * window.double()  # (2 * 257, 512)
        self.register_buffer("basis", basis.float()[:, None, :], persistent=False)  # (514, 1, 512)
        self.register_buffer("fbank", fe.fbank.detach().float().clone(), persistent=False)  # (257, 80)

    def forward(self, waveform: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        from workbench.features import LOG_FLOOR, normalize_per_utterance

        keep = torch.arange(waveform.shape[1], device=waveform.device)[None, :] < lengths[:, None]
        wav = waveform * keep.to(waveform.dtype)  # samples past a true end are exact zeros
        half = self.n_fft // 2
        spec = F.conv1d(F.pad(wav[:, None, :], (half, half)), self.basis, stride=self.hop)  # (B, 514, T)
        bins = self.basis.shape[0] // 2
        power = spec[:, :bins].square() + spec[:, bins:].square()  # (B, 257, T)
        feats = torch.log(torch.matmul(power.transpose(1, 2), self.fbank) + LOG_FLOOR)  # (B, T, 80)
        flens = 1 + torch.div(lengths, self.hop, rounding_mode="floor")
        mask = (torch.arange(feats.shape[1], device=feats.device)[None, :] < flens[:, None])[..., None]
        feats = normalize_per_utterance(feats, flens) if self.normalize else feats * mask.to(feats.dtype)
        enc, out_lengths = self.model.encode_features(feats, flens)
        return F.log_softmax(self.model.head(enc), dim=-1), out_lengths


def _export(module: nn.Module, path: Path) -> None:
    import warnings

    wav = torch.from_numpy(probe_waveforms((1.2, 0.8))[0])[None].repeat(2, 1)
    lens = torch.tensor([wav.shape[1], wav.shape[1] // 2])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes about shapes it records as dynamic
        torch.onnx.export(module, (wav, lens), str(path), dynamo=False, opset_version=OPSET,
                          input_names=["waveform", "lengths"], output_names=["log_probs", "out_lengths"],
                          dynamic_axes={"waveform": {0: "batch", 1: "samples"}, "lengths": {0: "batch"},
                                        "log_probs": {0: "batch", 1: "frames"}, "out_lengths": {0: "batch"}})


def write_onnx(adapted: Adapted, folder: Path, quantization: str | None) -> tuple[dict[str, str], list[str], Verification]:
    """Export the built-in model with the speaker's adapter to ``folder/model.onnx``; run and check it."""
    import numpy as np

    from workbench._atomic import write_bytes_atomic
    from workbench._optional import require
    from workbench.features import pad_waveforms
    from workbench.text import BLANK_ID, VOCAB

    require("onnx", extra="export", purpose="export to ONNX")
    ort = require("onnxruntime", extra="export", purpose="check the ONNX export in ONNX Runtime")
    backend = adapted.backend
    merged = adapted.config.family in MERGEABLE
    model = fresh_merged_model(adapted, merged_state_dict(adapted)) if merged else backend.model
    path = folder / FILE_NAME
    params = list(adapted.adapters.parameters())
    trainable = [p.requires_grad for p in params]
    try:
        for p in params:  # the tracer records adapter weights as constants
            p.requires_grad_(False)
        with torch.no_grad():
            _export(OnnxCTC(model).eval(), path)
    finally:
        for p, flag in zip(params, trainable, strict=True):
            p.requires_grad_(flag)
    wavs = probe_waveforms((2.5, 1.3))
    wav, lens = pad_waveforms(wavs)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got, got_lens = session.run(None, {"waveform": wav.numpy(), "lengths": lens.numpy()})

    def live() -> Tensor:
        lp, n = backend.log_probs(backend.featurize(wavs))
        return torch.cat([lp[i, : int(n[i])] for i in range(len(wavs))])

    with torch.no_grad():
        ref_lens = backend.encode(backend.featurize(wavs))[1]
    if [int(x) for x in got_lens] != [int(x) for x in ref_lens]:
        from workbench.errors import ExportError

        raise ExportError(f"the ONNX graph gives {list(got_lens)} frames where the model gives {ref_lens.tolist()}; "
                          "nothing was written. Please report this as a bug")
    exported = np.concatenate([got[i, : int(got_lens[i])] for i in range(len(wavs))])
    verification = compare_outputs(adapted, live, exported, probe="the CTC log-probabilities of two probe signals "
                                   "(2.5 s and 1.3 s, one batch) in ONNX Runtime", what="ONNX graph")
    # frame_seconds: the old name of frame_s, still written for an app that reads it (goes in the next release)
    vocab = {"blank_id": BLANK_ID, "symbols": list(VOCAB), "frame_s": 0.04, "frame_seconds": 0.04, "sample_rate": 16000}
    write_bytes_atomic(folder / "vocab.json", (json.dumps(vocab, indent=1) + "\n").encode())
    how = (f"adapter merged into the weights ({how_merged(adapted.config.family)}), plain model exported" if merged else
           f"the {adapted.config.family} adapter is not linear in the weights, so it is part of the graph")
    files = {FILE_NAME: "the graph: 16 kHz audio in, CTC log-probabilities out (log-mel frontend inside)",
             "vocab.json": "the 29 output symbols (0 is the CTC blank)"}
    return files, [f"- format: ONNX (opset {OPSET}), float32; {how}. Checked in ONNX Runtime "
                   f"{ort.__version__} at export."], verification
