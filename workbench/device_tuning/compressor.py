"""The learned compressor between the device part and the server part of a split model.

Device side: hidden states ``h (B, T', D)`` after the first ``k`` encoder blocks are stacked
``stride`` frames at a time (``(B, ceil(T'/s), s*D)``), squeezed by a small MLP to ``dims``
values, bounded by ``tanh`` and quantized to ``2**bits`` uniform levels in ``[-1, 1]``: integer
symbols ``(B, ceil(T'/s), dims)``. The rounding passes gradients straight through (STE), so the
compressor trains end to end through the frozen server part.

Server side: symbols are mapped back to their levels and expanded by a second MLP to
``(B, T', D)``, which feeds encoder block ``k``.

Temporal context (``context = c``, an odd kernel size; 0: none): each MLP's hidden layer gets a
residual convolution over ``c`` neighbouring symbol frames, so a symbol frame can code what its
neighbours do not already say and the expander can smooth across frames. The convolutions start
at zero: a compressor with context starts as the one without (``--init`` from a trained one).
The server expands only the symbol frames it received (zeros beyond them); training masks the same
frames (``valid``), so the two agree at the boundary.

A linear compressor (``linear = 1``: a transform coder) has no MLP and no ``tanh``: one linear map
to ``dims`` coefficients, each rounded to an integer (``0`` is symbol ``2**(bits-1)``; the rest are
clipped to the ``2**bits`` symbols), and its linear inverse on the server. It is fitted in closed
form (:mod:`workbench.device_tuning.transform`: principal components in the base model's own
sensitivity metric) and may then be trained as the MLP ones are. With ``hidden = w`` and ``context
= c`` it also has a restoration network on the server: three convolutions (``c`` frames each,
width ``w``) over the inverse's frames ``(B, frames, D)``, added to them. It undoes what the
rounding lost where the neighbouring frames tell; it starts at zero (the compressor starts as the
linear one) and changes neither the symbols nor the bit rate.

Each symbol position has its own probability table (``tables (dims, 2**bits)``, counted on the
training voices), which the range coder (:mod:`workbench.device_tuning.entropy`) uses to spend
about the entropy of the symbols on the wire, not ``bits`` each.

>>> import torch
>>> c = Compressor(d_model=8, dims=3, bits=2, stride=2).eval()
>>> sym = c.encode(torch.zeros(1, 5, 8))
>>> tuple(sym.shape), int(sym.max()) < 4
((1, 3, 3), True)
>>> tuple(c.decode(sym, 5).shape)
(1, 5, 8)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import torch
from torch import nn

from workbench._atomic import write_bytes_atomic
from workbench.device_tuning.entropy import check_tables, count_tables
from workbench.device_tuning.wire import MAX_BITS
from workbench.errors import WorkbenchError, WireFormatError

__all__ = ["SHIPPED_DIR", "Compressor", "CompressorConfig", "check_compressor_base", "default_compressor",
           "load_compressor", "save_compressor"]

SHIPPED_DIR = Path(__file__).resolve().parents[1] / "data" / "compressors"
_RATE_REACH = 2  # levels each side of a value that its soft assignment reaches (rate_bits)


@dataclasses.dataclass(frozen=True)
class CompressorConfig:
    """Sizes of a compressor (what the wire header carries, plus the MLP width)."""

    d_model: int
    dims: int = 16  # symbols per symbol frame
    bits: int = 3  # bits per symbol before entropy coding (a linear compressor's first components need 9)
    stride: int = 2  # encoder frames per symbol frame
    hidden: int = 256  # MLP width on both sides (linear: the server's restoration network's; 0: none)
    context: int = 0  # kernel size (symbol frames, odd) of the residual temporal convolutions; 0: none
    # (linear: of the restoration network's, in frames)
    table_context: int = 0  # 1: symbol tables conditioned on the previous frame's symbol; 0: per position
    linear: int = 0  # 1: a linear transform coder (integer coefficients, no MLP: hidden and context 0)

    def __post_init__(self) -> None:
        if not 1 <= self.bits <= MAX_BITS:
            raise WorkbenchError(f"bits must be 1 to {MAX_BITS}, got {self.bits}")
        if not 1 <= self.stride <= 8:
            raise WorkbenchError(f"stride must be 1 to 8, got {self.stride}")
        if not 1 <= self.dims <= 1024:
            raise WorkbenchError(f"dims must be 1 to 1024, got {self.dims}")
        if self.context and not (self.context % 2 == 1 and 3 <= self.context <= 15):
            raise WorkbenchError(f"context must be 0 or an odd kernel size 3 to 15, got {self.context}")
        if self.table_context not in (0, 1):
            raise WorkbenchError(f"table_context must be 0 or 1, got {self.table_context}")
        if self.linear not in (0, 1):
            raise WorkbenchError(f"linear must be 0 or 1, got {self.linear}")
        if self.linear and bool(self.hidden) != bool(self.context):
            raise WorkbenchError("a linear compressor has no MLP; its restoration network needs both a width "
                                 f"(hidden) and a kernel size (context), or neither: got {self.hidden} and {self.context}")
        if not (self.linear and not self.hidden) and not 1 <= self.hidden <= 8192:
            raise WorkbenchError(f"hidden must be 1 to 8192, got {self.hidden}")

    @property
    def table_shape(self) -> tuple[int, ...]:
        """``(dims, levels)``, or ``(dims, levels + 1, levels)`` conditioned on the previous frame."""
        levels = 2 ** self.bits
        return (self.dims, levels + 1, levels) if self.table_context else (self.dims, levels)

    def nominal_bits_per_second(self, frames_per_second: float) -> float:
        """Bits per second before entropy coding (``dims * bits`` per symbol frame)."""
        return frames_per_second / self.stride * self.dims * self.bits


class Compressor(nn.Module):
    """Bottleneck + quantizer (device) and expander (server). See the module docstring."""

    def __init__(self, d_model: int, dims: int = 16, bits: int = 3, stride: int = 2, hidden: int = 256,
                 context: int = 0, table_context: int = 0, linear: int = 0) -> None:
        super().__init__()
        self.config = CompressorConfig(d_model, dims, bits, stride, hidden, context, table_context, linear)
        s_d = stride * d_model
        if linear:
            self.down, self.up = nn.Linear(s_d, dims), nn.Linear(dims, s_d)
            if hidden:
                conv = lambda i, o: nn.Conv1d(i, o, context, padding=context // 2)  # noqa: E731
                self.restoration = nn.Sequential(conv(d_model, hidden), nn.GELU(), conv(hidden, hidden), nn.GELU(),
                                             conv(hidden, d_model))
                nn.init.zeros_(self.restoration[-1].weight)
                nn.init.zeros_(self.restoration[-1].bias)
        else:
            self.down = nn.Sequential(nn.LayerNorm(s_d), nn.Linear(s_d, hidden), nn.GELU(), nn.Linear(hidden, dims))
            self.up = nn.Sequential(nn.Linear(dims, hidden), nn.GELU(), nn.Linear(hidden, s_d))
        if context and not linear:
            self.down_context, self.up_context = (nn.Conv1d(hidden, hidden, context, padding=context // 2)
                                                  for _ in range(2))
            for conv in (self.down_context, self.up_context):
                nn.init.zeros_(conv.weight)
                nn.init.zeros_(conv.bias)
        levels = 2 ** bits
        self.register_buffer("tables", torch.full(self.config.table_shape, 1.0 / levels))

    @classmethod
    def from_config(cls, config: CompressorConfig) -> Compressor:
        return cls(*dataclasses.astuple(config))

    @property
    def levels(self) -> int:
        return 2 ** self.config.bits

    # -- device side ----------------------------------------------------------
    def _stack(self, h: torch.Tensor) -> torch.Tensor:
        """``(B, T', D)`` -> ``(B, ceil(T'/s), s*D)`` (zero-padded at the end)."""
        b, t, d = h.shape
        s = self.config.stride
        pad = (-t) % s
        if pad:
            h = torch.cat([h, h.new_zeros(b, pad, d)], dim=1)
        return h.reshape(b, (t + pad) // s, s * d)

    @staticmethod
    def _sent(x: torch.Tensor, valid: torch.Tensor, per: int = 1) -> torch.Tensor:
        """``(B, T)`` bool: which of the ``T`` frames of ``x (B, T, ...)`` lie in the first ``valid (B,)``
        symbol frames sent, ``per`` frames each."""
        return torch.arange(x.shape[1], device=x.device)[None, :] < valid.to(x.device)[:, None] * per

    @staticmethod
    def _with_context(conv: nn.Conv1d, x: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """``x + conv(x)`` over the symbol frames of ``x (B, T_s, hidden)``; the convolution reads
        zeros after the first ``valid (B,)`` frames of each row (None: reads them all)."""
        seen = x
        if valid is not None:
            seen = x * Compressor._sent(x, valid)[..., None]
        return x + conv(seen.transpose(1, 2)).transpose(1, 2)

    def _bounded(self, h: torch.Tensor) -> torch.Tensor:
        """The values the quantizer rounds, ``(B, T_s, dims)``: in ``[-1, 1]`` (MLP), or the
        coefficients in symbol steps (linear: unbounded; :meth:`_position` clips them)."""
        if self.config.linear:
            return self.down(self._stack(h))
        x = self.down[:3](self._stack(h))
        if self.config.context:
            x = self._with_context(self.down_context, x)
        return torch.tanh(self.down[3](x))

    def _position(self, z: torch.Tensor) -> torch.Tensor:
        """Values ``z`` -> their (fractional) symbol positions in ``[0, levels - 1]``."""
        if self.config.linear:
            return (z + self.levels // 2).clamp(0, self.levels - 1)
        return (z + 1) * 0.5 * (self.levels - 1)

    def encode(self, h: torch.Tensor) -> torch.Tensor:
        """Hidden states ``(B, T', D)`` -> integer symbols ``(B, ceil(T'/s), dims)`` in ``[0, 2**bits)``."""
        return torch.round(self._position(self._bounded(h))).long()

    # -- server side ----------------------------------------------------------
    def dequantize(self, symbols: torch.Tensor) -> torch.Tensor:
        """Symbols -> their levels (float): in ``[-1, 1]`` (MLP), or the integer coefficients (linear)."""
        if self.config.linear:
            return symbols.float() - self.levels // 2
        return symbols.float() * (2.0 / (self.levels - 1)) - 1.0

    def expand(self, z: torch.Tensor, frames: int, valid: torch.Tensor | None = None) -> torch.Tensor:
        """Levels ``(B, T_s, dims)`` -> hidden states ``(B, frames, D)``. ``valid (B,)``: the symbol
        frames of each row the server receives; with context, the frames after them are zeros to
        the convolution, as they are to a server that expands only those (None: all)."""
        b, ts, _ = z.shape
        if self.config.linear:
            out = self.up(z).reshape(b, ts * self.config.stride, self.config.d_model)
            return (self._restored(out, valid) if self.config.hidden else out)[:, :frames]
        x = self.up[:2](z)
        if self.config.context:
            x = self._with_context(self.up_context, x, valid)
        out = self.up[2](x).reshape(b, ts * self.config.stride, self.config.d_model)
        return out[:, :frames]

    def _restored(self, x: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
        """A linear compressor's frames ``x (B, F, D)`` plus its restoration network's correction;
        the network reads zeros after the first ``valid (B,)`` symbol frames, as a server that
        expands only those does at its edge: each convolution's input is masked, as each pads with
        zeros there (None: reads them all)."""
        keep = None if valid is None else self._sent(x, valid, self.config.stride)[:, None, :].to(x.dtype)  # (B, 1, F)
        y = x.transpose(1, 2)
        for layer in self.restoration:
            y = layer(y if keep is None or not isinstance(layer, nn.Conv1d) else y * keep)
        return x + y.transpose(1, 2)

    def decode(self, symbols: torch.Tensor, frames: int, valid: torch.Tensor | None = None) -> torch.Tensor:
        """Integer symbols ``(B, T_s, dims)`` -> hidden states ``(B, frames, D)`` (``valid``: :meth:`expand`)."""
        return self.expand(self.dequantize(symbols), frames, valid)

    # -- training ------------------------------------------------------------
    def forward(self, h: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """What the server sees, differentiably: ``(B, T', D) -> (B, T', D)`` through the
        quantizer with straight-through gradients (``valid``: :meth:`expand`)."""
        z = self._bounded(h)
        q = self.dequantize(torch.round(self._position(z)))
        return self.expand(z + (q - z).detach(), h.shape[1], valid)

    def unrounded(self, h: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, T', D) -> (B, T', D)`` through the bottleneck without the rounding: set against
        :meth:`forward`, what the quantizer costs apart from the bottleneck (a diagnosis: this is
        not what the wire carries)."""
        return self.expand(self._bounded(h), h.shape[1], valid)

    def rate_bits(self, h: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """A differentiable estimate of the bits per symbol the range coder will spend on ``h (B, T', D)``:
        each value is softly assigned to its ``2 * _RATE_REACH + 1`` nearest levels (a Gaussian of half
        a level's spacing; the levels beyond carry under ``e**-8`` of it), and the cross-entropy of
        those assignments against their mean over the counted symbol frames is returned. ``valid
        (B,)``: the symbol frames of each row that are sent (None: all), the only ones counted. Adding
        it to the loss teaches the compressor to use predictable symbols (rate-distortion)."""
        u = self._position(self._bounded(h))  # (B, T_s, dims), in symbol steps
        if valid is not None:
            u = u[self._sent(u, valid)]
        u = u.reshape(-1, self.config.dims)  # (N, dims)
        offsets = torch.arange(-_RATE_REACH, _RATE_REACH + 1, device=u.device)
        near = torch.round(u.detach()).long()[..., None] + offsets  # (N, dims, K) candidate symbols
        inside = (near >= 0) & (near < self.levels)
        logit = (-2.0 * (u[..., None] - near) ** 2).masked_fill(~inside, float("-inf"))  # sigma = 1/2 step
        dims = self.config.dims
        q = torch.softmax(logit, dim=-1).permute(1, 0, 2).reshape(dims, -1)  # (dims, N*K)
        near = near.clamp(0, self.levels - 1).permute(1, 0, 2).reshape(dims, -1)
        counts = torch.zeros(dims, self.levels, device=u.device, dtype=q.dtype).scatter_add(1, near, q)
        p = (counts / max(1, u.shape[0])).clamp_min(1e-6)  # (dims, levels): the symbols' mean assignment
        return -(q * torch.log2(p).gather(1, near)).sum() / max(1, u.numel())

    @torch.no_grad()
    def fit_tables(self, symbols: list[torch.Tensor], *, prior: float = 0.5) -> None:
        """Count the symbol tables over ``symbols`` (each recording's ``(T_s, dims)``; per previous
        symbol with ``table_context``): :func:`~workbench.device_tuning.entropy.count_tables`."""
        probs = count_tables([s.cpu().numpy() for s in symbols], self.config.dims, self.levels,
                             conditioned=bool(self.config.table_context), prior=prior)
        self.tables.copy_(torch.from_numpy(probs))

    def identity(self) -> bytes:
        """8 bytes naming this compressor: sha256 of its sizes, weights and tables."""
        sizes = dataclasses.astuple(self.config)
        if not self.config.linear:
            sizes = sizes[:7]  # the sizes compressors had before linear ones: older files keep their ids
        if not (self.config.context or self.config.table_context or self.config.linear):
            sizes = sizes[:5]  # ... and before context and table_context
        h = hashlib.sha256(repr(sizes).encode())
        for name, t in sorted(self.state_dict().items()):
            h.update(name.encode())
            h.update(t.detach().cpu().float().contiguous().numpy().tobytes())
        return h.digest()[:8]


def save_compressor(comp: Compressor, path: str | Path, *, split_layer: int, base_fingerprint: str,
                    card: dict | None = None) -> Path:
    """Write ``comp`` (safetensors) with its sizes, split layer, base model and a card in the metadata."""
    from safetensors.torch import save

    meta = {"format": "workbench-compressor", "config": json.dumps(dataclasses.asdict(comp.config)),
            "split_layer": str(int(split_layer)), "base_fingerprint": str(base_fingerprint),
            "card": json.dumps(card or {})}
    data = save({k: v.detach().cpu().contiguous() for k, v in comp.state_dict().items()}, metadata=meta)
    write_bytes_atomic(path, data)
    return Path(path)


_MAX_META_CHARS = 65_536  # a card or config longer than this is not one the workbench wrote


def _expected_shapes(config: CompressorConfig) -> dict[str, tuple[int, ...]]:
    """The tensor shapes a compressor of ``config`` has, computed without allocating its weights."""
    with torch.device("meta"):
        comp = Compressor.from_config(config)
    return {k: tuple(v.shape) for k, v in comp.state_dict().items()}


def _read_meta(meta: dict[str, str]) -> tuple[CompressorConfig, int, str, dict]:
    """The checked ``(config, split_layer, base_fingerprint, card)`` of a compressor file's metadata."""
    for key in ("config", "card"):
        if len(meta.get(key, "")) > _MAX_META_CHARS:
            raise ValueError(f"{key} is {len(meta[key]):,} characters long")
    try:
        cfg = json.loads(meta["config"])
        card = json.loads(meta.get("card", "{}"))
    except RecursionError:  # nesting thousands deep
        raise ValueError("nested too deeply") from None
    if isinstance(cfg, dict):  # written before compressors had these
        cfg = {"context": 0, "table_context": 0, "linear": 0, **cfg}
    if not isinstance(cfg, dict) or set(cfg) != {f.name for f in dataclasses.fields(CompressorConfig)}:
        raise ValueError("unexpected fields")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in cfg.values()):
        raise ValueError("sizes must be whole numbers")
    if not 1 <= cfg["d_model"] <= 4096 or not 0 <= cfg["hidden"] <= 8192:
        raise ValueError("sizes out of range")
    if not isinstance(card, dict):
        raise ValueError("the card is not a set of named values")
    split_layer = int(meta["split_layer"])
    if not 0 <= split_layer <= 255:  # 0: a Whisper split that sends log-mel
        raise ValueError(f"split layer {split_layer}")
    fingerprint = str(meta["base_fingerprint"])
    if len(fingerprint) > 128:
        raise ValueError("the base model fingerprint is too long")
    return CompressorConfig(**cfg), split_layer, fingerprint, card


def load_compressor(path: str | Path) -> tuple[Compressor, dict]:
    """Read a compressor file; it is untrusted and checked before anything is built.

    Checked in order: the metadata (sizes in range, JSON of sane depth and length), the tensor
    names, shapes and types from the safetensors header (before any weight is read, so a file
    that claims huge sizes allocates nothing), then the weights (finite) and the symbol tables
    (probabilities the range coder can use: :func:`~workbench.device_tuning.entropy.check_tables`).

    Returns:
        the compressor (eval mode) and ``{"split_layer", "base_fingerprint", "card"}``.

    Raises:
        WireFormatError: the file is missing, damaged, not a compressor, or fails a check above.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    bad = f"{path.name} is not a usable compressor file"
    redo = "use the shipped compressor or train one again (recipes/train_compressor.py)"
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("format") != "workbench-compressor":
                raise WireFormatError(f"{bad}: it was not written by the workbench.")
            try:
                config, split_layer, fingerprint, card = _read_meta(meta)
            except (KeyError, ValueError, TypeError, WorkbenchError) as err:
                raise WireFormatError(f"{bad}: its metadata is damaged ({err}); {redo}.") from None
            want = _expected_shapes(config)
            got = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
            if want != got:
                raise WireFormatError(f"{bad}: its weights do not match the sizes it claims; {redo}.")
            tensors = {k: f.get_tensor(k) for k in want}
    except (OSError, SafetensorError, ValueError) as err:
        raise WireFormatError(f"{bad} ({err}).") from None
    for key, t in tensors.items():
        if not t.is_floating_point() or not bool(torch.isfinite(t).all()):
            raise WireFormatError(f"{bad}: its weight {key!r} is not finite numbers (NaN, infinity or integers), "
                                  f"so every transcript would be garbage; {redo}.")
    problem = check_tables(tensors["tables"].double().numpy())
    if problem:
        raise WireFormatError(f"{bad}: its symbol tables are not probabilities the coder can use ({problem}); {redo}.")
    with torch.device("meta"):  # the file's tensors become the weights: nothing is allocated twice
        comp = Compressor.from_config(config)
    comp.load_state_dict({k: v.float() for k, v in tensors.items()}, assign=True)
    return comp.eval(), {"split_layer": split_layer, "base_fingerprint": fingerprint, "card": card}


def check_compressor_base(compressor_path: str | Path, meta: dict, backend) -> None:
    """Refuse a compressor trained for another base model than ``backend`` (plain :class:`WireFormatError`)."""
    if meta["base_fingerprint"] != backend.fingerprint():
        raise WireFormatError(
            f"The compressor {Path(compressor_path).name} was trained for another base model than {backend.name}: "
            f"use the compressor made for {backend.name} on both the device and the server, or train one "
            f"({_recipe(backend.name)}).")


def _recipe(model: str) -> str:
    return "recipes/train_whisper_compressor.py" if "whisper" in model.lower() else "recipes/train_compressor.py"


def default_compressor(model: str = "tiny") -> Path:
    """The shipped compressor for base model ``model`` (``workbench/data/compressors/<model>-k*.safetensors``)."""
    name = str(model).rstrip("/").rsplit("/", 1)[-1]
    files = sorted(SHIPPED_DIR.glob(f"{name}-k*.safetensors"))
    if not files:
        raise WorkbenchError(f"No compressor for {name} is shipped in {SHIPPED_DIR}: train one with "
                             f"{_recipe(name)} and pass it with --compressor.")
    return files[0]
