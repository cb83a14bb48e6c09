"""The built-in base model "workbench-tiny": a compact Conformer-CTC over 80 log-mel.

Architecture (sizes from :class:`TinyConfig`)::

    wav (B, S) -> LogMel (B, T, 80), per-utterance CMVN over true frames
      -> Conv2d subsampling 4x (two 3x3 stride-2 convs, ReLU, padding re-zeroed
         after each) -> Linear -> (B, T/4, D)
      -> N x ConformerBlock (macaron FFN/2, rotary MHSA with key-padding mask,
         conv module with LayerNorm and zeroed padding, FFN/2, LayerNorm)
      -> Linear -> CTC over 29 characters (blank, space, a-z, ')

Why these choices (measured on the 2-core CPU, see ``recipes/README.md``):

* Rotary position embeddings instead of Transformer-XL relative attention:
  relative, length-agnostic, and cheap with ``scaled_dot_product_attention``.
* LayerNorm in the conv module instead of BatchNorm: no statistics over padding,
  and a batch gives the same result as its items one by one.
* Narrow (32-channel) subsampling convs: on a CPU, a 144-channel 2-D conv
  costs as much as the whole encoder.

Every block sits in ``model.blocks`` (an ``nn.ModuleList``); an adapter wraps
or hooks a block's output ``(B, T', D)``. Blocks take ``(x, mask)`` where
``mask (B, T')`` is True on true frames and return the new ``x``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from workbench.constants import SAMPLE_RATE
from workbench.errors import WorkbenchError
from workbench.features import LogMel
from workbench.models.base import MAX_TRAIN_S, ASRBackend, Batch, CachedFeatures, check_waveforms
from workbench.models.tiny_files import _FBANK_KEY, ARCHITECTURE, TinyConfig, checked_config
from workbench.text import BLANK_ID, encode

__all__ = [
    "ARCHITECTURE",
    "ConformerBlock",
    "TinyBackend",
    "TinyConfig",
    "TinyConformerCTC",
    "ctc_loss",
    "default_model_dir",
    "is_tiny_dir",
    "load_tiny",
    "save_tiny",
]

def _lengths_to_mask(lengths: torch.Tensor, t: int) -> torch.Tensor:
    return torch.arange(t, device=lengths.device)[None, :] < lengths[:, None]  # (B, T) True = real frame


class ConvSubsampling(nn.Module):
    """``(B, T, F)`` -> ``(B, T', D)`` with ``T' = ceil(ceil(T/2)/2)``; padding re-zeroed after each conv."""

    def __init__(self, n_mels: int, channels: int, d_model: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=2, padding=1)
        f = (n_mels - 1) // 2 + 1
        f = (f - 1) // 2 + 1
        self.out = nn.Linear(channels * f, d_model)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.unsqueeze(1)  # (B, 1, T, F)
        for conv in (self.conv1, self.conv2):
            x = F.relu(conv(x))
            lengths = torch.div(lengths - 1, 2, rounding_mode="floor") + 1
            x = x * _lengths_to_mask(lengths, x.shape[2])[:, None, :, None]
        b, c, t, f = x.shape
        return self.out(x.permute(0, 2, 1, 3).reshape(b, t, c * f)), lengths


def _rotary(t: int, dim: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    inv = 1.0 / (10000 ** (torch.arange(0, dim, 2, device=device, dtype=torch.float32) / dim))
    ang = torch.arange(t, device=device, dtype=torch.float32)[:, None] * inv[None, :]  # (T, dim/2)
    return ang.cos(), ang.sin()


def _apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    x1, x2 = x[..., 0::2], x[..., 1::2]  # (B, H, T, dim/2)
    return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)


class FeedForward(nn.Module):
    def __init__(self, d: int, mult: int, dropout: float, *, hidden: int | None = None) -> None:
        super().__init__()
        hidden = d * mult if hidden is None else hidden
        self.norm = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, hidden)
        self.fc2 = nn.Linear(hidden, d)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(F.silu(self.fc1(self.norm(x))))))


class RotaryMHSA(nn.Module):
    """Multi-head self-attention with rotary positions and a key-padding mask.

    ``heads`` heads of ``head_dim`` (default ``d // heads``) units each: q/k/v are ``heads * head_dim`` wide.
    """

    def __init__(self, d: int, heads: int, dropout: float, *, head_dim: int | None = None) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = d // heads if head_dim is None else head_dim
        inner = heads * self.head_dim
        self.norm = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * inner)
        self.proj = nn.Linear(inner, d)
        self.drop = nn.Dropout(dropout)
        self.attn_dropout = dropout

    def forward(self, x: torch.Tensor, mask: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        b, t, _ = x.shape
        q, k, v = self.qkv(self.norm(x)).view(b, t, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k = _apply_rotary(q, *rope), _apply_rotary(k, *rope)  # (B, H, T, hd)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask[:, None, None, :], dropout_p=self.attn_dropout if self.training else 0.0
        )
        return self.drop(self.proj(y.transpose(1, 2).reshape(b, t, self.heads * self.head_dim)))


class ConvModule(nn.Module):
    """Pointwise -> GLU -> depthwise (padding zeroed) -> LayerNorm -> SiLU -> pointwise.

    The GLU output and the depthwise conv have ``channels`` (default ``d``) channels.
    """

    def __init__(self, d: int, kernel: int, dropout: float, *, channels: int | None = None) -> None:
        super().__init__()
        c = d if channels is None else channels
        self.norm = nn.LayerNorm(d)
        self.pw1 = nn.Linear(d, 2 * c)
        self.dw = nn.Conv1d(c, c, kernel, padding=kernel // 2, groups=c)
        self.norm2 = nn.LayerNorm(c)
        self.pw2 = nn.Linear(c, d)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        y = F.glu(self.pw1(self.norm(x)), dim=-1)
        y = y.masked_fill(~mask[..., None], 0.0)  # padding must not leak into the depthwise conv
        y = self.dw(y.transpose(1, 2)).transpose(1, 2)
        return self.drop(self.pw2(F.silu(self.norm2(y))))


class ConformerBlock(nn.Module):
    """Macaron conformer block: ``x + FFN/2, + MHSA, + Conv, + FFN/2, LayerNorm``.

    ``forward(x (B, T', D), mask (B, T') bool, rope) -> (B, T', D)``; this output is the adapter site.
    """

    def __init__(self, cfg: TinyConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.ff1 = FeedForward(d, cfg.ff_mult, cfg.dropout, hidden=cfg.ffn_dim)
        self.attn = RotaryMHSA(d, cfg.num_heads, cfg.dropout, head_dim=cfg.attn_head_dim)
        self.conv = ConvModule(d, cfg.conv_kernel, cfg.dropout, channels=cfg.conv_dim)
        self.ff2 = FeedForward(d, cfg.ff_mult, cfg.dropout, hidden=cfg.ffn_dim)
        self.norm = nn.LayerNorm(d)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x = x + 0.5 * self.ff1(x)
        x = x + self.attn(x, mask, rope)
        x = x + self.conv(x, mask)
        x = x + 0.5 * self.ff2(x)
        return self.norm(x)


class TinyConformerCTC(nn.Module):
    """Frontend + encoder + CTC head. ``forward(wav, wav_lengths) -> (log_probs (B,T',V), lengths)``."""

    def __init__(self, cfg: TinyConfig, *, fbank: torch.Tensor | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.frontend = LogMel(cfg.n_mels, fbank=fbank)
        self.subsample = ConvSubsampling(cfg.n_mels, cfg.subsample_channels, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList([ConformerBlock(cfg) for _ in range(cfg.num_layers)])
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size)

    def encode_features(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``feats (B, T, 80)``, frame lengths -> ``enc (B, T', D)``, ``enc_lengths (B,)``."""
        x, lens = self.subsample(feats, lengths)
        return self.run_blocks(self.drop(x), lens)

    def run_blocks(self, x: torch.Tensor, lengths: torch.Tensor, *, start: int = 0,
                   stop: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Blocks ``start .. stop-1`` on hidden states ``x (B, T', D)`` with lengths in encoder frames."""
        stop = len(self.blocks) if stop is None else stop
        if not 0 <= start <= stop <= len(self.blocks):
            raise WorkbenchError(f"encoder blocks {start}..{stop} are outside 0..{len(self.blocks)}")
        mask = _lengths_to_mask(lengths, x.shape[1])
        rope = _rotary(x.shape[1], self.cfg.attn_head_dim, x.device)
        for block in self.blocks[start:stop]:
            x = block(x, mask, rope)
        return x, lengths

    def forward(self, wav: torch.Tensor, wav_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats, flens = self.frontend(wav, wav_lengths)
        enc, lens = self.encode_features(feats, flens)
        return F.log_softmax(self.head(enc), dim=-1), lens


def ctc_loss(log_probs: torch.Tensor, lengths: torch.Tensor, targets: list[str]) -> torch.Tensor:
    """Mean over utterances of the CTC loss divided by target length (chars + 1).

    Args:
        log_probs: ``(B, T', V)``; lengths ``(B,)`` in encoder frames.
        targets: B transcripts (normalised with :func:`workbench.text.normalize_text`).
    """
    ids = [encode(t) for t in targets]
    if len(ids) != log_probs.shape[0]:
        raise ValueError(f"{len(ids)} targets for a batch of {log_probs.shape[0]} utterances")
    tl = torch.tensor([len(i) for i in ids], dtype=torch.long)
    flat = torch.tensor([c for i in ids for c in i], dtype=torch.long)
    loss = F.ctc_loss(
        log_probs.transpose(0, 1).float(), flat, lengths.cpu(), tl, blank=BLANK_ID, reduction="none", zero_infinity=True
    )
    return (loss / (tl.to(loss.device) + 1)).mean()


class TinyBackend(ASRBackend):
    """:class:`ASRBackend` around :class:`TinyConformerCTC`."""

    sample_rate = SAMPLE_RATE
    supports_frozen_prefix = True

    def __init__(self, model: TinyConformerCTC, *, name: str | None = None, card: dict | None = None) -> None:
        self.model = model
        self.module = model
        # a supernet size is its own base model: "workbench-tiny-small" (adapters bind to it)
        self.name = name or (ARCHITECTURE if model.cfg.size is None else f"{ARCHITECTURE}-{model.cfg.size}")
        self.config = model.cfg
        self.hidden_size = model.cfg.d_model
        self.num_layers = model.cfg.num_layers
        self.card = card or {}
        self._fingerprint = None

    def featurize(self, waveforms: list[np.ndarray]) -> Batch:
        """Batch of log-mel features ``(B, T, 80)`` with frame lengths; validates inputs (no chunking)."""
        from workbench.features import pad_waveforms

        wavs = check_waveforms(waveforms, sample_rate=self.sample_rate, max_s=MAX_TRAIN_S)
        wav, wl = pad_waveforms(wavs)
        dev = self.device
        with torch.set_grad_enabled(False):
            feats, flens = self.model.frontend(wav.to(dev), wl.to(dev))
        return Batch(feats, flens, wl)

    def encode(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """``enc (B, T', D)``, lengths; resumes after block ``batch.start_layer`` when the
        features are already hidden states (frozen-prefix caching, the device/server split)."""
        if not batch.start_layer:
            return self.model.encode_features(batch.features, batch.lengths)
        return self.run_blocks(batch.features, batch.lengths, start=batch.start_layer)

    def run_blocks(self, x: torch.Tensor, lengths: torch.Tensor, *, start: int = 0,
                   stop: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Blocks ``start .. stop-1`` on hidden states ``x (B, T', D)`` (:meth:`TinyConformerCTC.run_blocks`)."""
        return self.model.run_blocks(x, lengths, start=start, stop=stop)

    def cache_features(self, waveforms: list[np.ndarray], *, frozen_layers: int = 0) -> list[CachedFeatures]:
        """Per-waveform log-mel ``(T_i, 80)`` or, with ``frozen_layers = k``, the hidden states
        ``(T'_i, D)`` after the subsampling and the first ``k`` blocks (each computed alone)."""
        if not frozen_layers:
            return super().cache_features(waveforms)
        if not 0 < frozen_layers <= self.num_layers:
            raise WorkbenchError(f"frozen_layers must be in [0, {self.num_layers}], got {frozen_layers}")
        out = []
        with torch.no_grad():
            for w in waveforms:
                batch = self.featurize([w])
                x, lens = self.model.subsample(batch.features, batch.lengths)
                x, lens = self.run_blocks(self.model.drop(x), lens, stop=frozen_layers)
                n = int(lens[0])
                out.append(CachedFeatures(x[0, :n].detach().clone(), n, int(batch.waveform_lengths[0]), frozen_layers))
        return out

    def log_probs(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        enc, lens = self.encode(batch)
        return F.log_softmax(self.model.head(enc), dim=-1), lens

    def loss_from_log_probs(self, log_probs: torch.Tensor, lengths: torch.Tensor,
                            targets: list[str]) -> torch.Tensor:
        return ctc_loss(log_probs, lengths, targets)

    def adapter_sites(self) -> list[tuple[str, nn.Module]]:
        return [(f"blocks.{i}", b) for i, b in enumerate(self.model.blocks)]

    def output_layer(self) -> nn.Module:
        return self.model.head

    def site_frame_mask(self, args: tuple, kwargs: dict, output: torch.Tensor) -> torch.Tensor | None:
        """Blocks are called as ``block(x, mask, rope)``: the mask is the second argument."""
        return args[1] if len(args) > 1 else kwargs.get("mask")

    def linear_layers(self) -> list[tuple[str, nn.Linear]]:
        return [
            (f"blocks.{i}.{n}", m)
            for i, b in enumerate(self.model.blocks)
            for n, m in b.named_modules()
            if isinstance(m, nn.Linear)
        ]


def default_model_dir() -> Path:
    """``workbench/data/models/tiny`` inside the installed package."""
    return Path(__file__).resolve().parent.parent / "data" / "models" / "tiny"


def is_tiny_dir(path: Path) -> bool:
    """True when ``path/config.json`` says it is the built-in architecture (its content is checked on loading)."""
    try:
        card = json.loads((Path(path) / "config.json").read_text())
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(card, dict) and card.get("architecture") == ARCHITECTURE


def save_tiny(model: TinyConformerCTC, path: str | Path, *, fp16: bool = False, extra: dict | None = None) -> None:
    """Write ``model.safetensors`` and ``config.json`` to ``path``.

    fp32 by default (16 MB for 4 M parameters): loading then needs no conversion and
    stays well under a second; ``fp16=True`` halves the file at ~1e-3 relative error.
    """
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    sd = {k: (v.half() if fp16 and v.is_floating_point() else v).contiguous().cpu() for k, v in model.state_dict().items()}
    sd[_FBANK_KEY] = model.frontend.fbank.float().contiguous().cpu()  # fp32: features must not change
    save_file(sd, str(path / "model.safetensors"), metadata={"architecture": ARCHITECTURE})
    cfg = {"architecture": ARCHITECTURE, "config": dataclasses.asdict(model.cfg), **(extra or {})}
    (path / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")


def load_tiny(path: str | Path | None = None, *, device: str = "cpu") -> TinyBackend:
    """Load the built-in model (or a directory written by :func:`save_tiny`), frozen, in eval mode.

    Weights stored in fp16 are upcast to fp32 for CPU inference/training. ``config.json`` is
    checked against the weights' header before anything is built
    (:func:`workbench.models.tiny_files.checked_config`): a folder from elsewhere may lie.

    Raises:
        WorkbenchError: no weights file; ModelImportError: the files are damaged or do not match.
    """
    from safetensors.torch import load_file

    path = Path(path) if path is not None else default_model_dir()
    wfile = path / "model.safetensors"
    if not wfile.is_file():
        raise WorkbenchError(
            f"no weights at {wfile}. The built-in model ships with the package; reinstall it, "
            "or train one with: python recipes/pretrain_tiny.py --out DIR"
        )
    cfg, meta = checked_config(path)
    sd = {k: (v if v.dtype == torch.float32 else v.float()) for k, v in load_file(str(wfile), device=device).items()}
    fbank = sd.pop(_FBANK_KEY, None)
    # (a "meta" device build would skip the random init but imports torch._decomp: seconds, not ms)
    model = TinyConformerCTC(cfg, fbank=fbank if fbank is not None else None).to(device)
    missing = set(model.state_dict()) - set(sd)
    if missing:
        raise WorkbenchError(f"weights at {wfile} miss {len(missing)} tensors, e.g. {sorted(missing)[:3]}; retrain or reinstall")
    model.load_state_dict(sd, strict=True, assign=True)  # assign: no copy of 4 M weights
    model.frontend.window = torch.hann_window(model.frontend.window.shape[0], device=device)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return TinyBackend(model, card=meta)
