"""The built-in model as a supernet (TODM, "Train Once Deploy Many"): one set of weights, many sizes.

A :class:`Supernet` wraps a full :class:`~workbench.models.tiny.TinyConformerCTC` and runs any
of its subnetworks by slicing the shared weights (the "first units" of every dimension):

* **depth**: the first ``depth`` conformer blocks, then the CTC head;
* **ffn**: the first ``ffn`` hidden units of both FFNs of a block;
* **heads**: the first ``heads`` attention heads (the head width stays fixed, 36 in the shipped model);
* **conv**: the first ``conv`` channels of the conv module (GLU halves, depthwise conv, its LayerNorm).

The encoder width ``D`` (the adapter sites' ``(B, T', D)``), the subsampling and the head are
shared by every size. A subnetwork is a :class:`SubnetChoice`; :meth:`Supernet.extract` copies its
slice into a plain, smaller ``TinyConformerCTC`` whose outputs equal ``Supernet.forward(..., choice)``
(same code path, same values). Each size is its own base model: its config names the size, its
backend is called ``workbench-tiny-<size>``, and its weight fingerprint differs, so a personal
adapter binds to one size.

Named sizes of :data:`DEFAULT_SPACE` (parameters counted with the shipped d = 144):

=========  =====  ====  =====  ====  ==========
size       depth  ffn   heads  conv  parameters
=========  =====  ====  =====  ====  ==========
small      4      288   2      72    ~1.0 M
medium     6      432   3      108   ~2.2 M
large      8      576   4      144   3.97 M (the shipped architecture)
=========  =====  ====  =====  ====  ==========

Adaptive dropout (TODM): a subnetwork trains with ``p = p_max * params(choice) / params(largest)``
(:meth:`Supernet.dropout_for`); off, every size uses ``p_max``.

>>> space = DEFAULT_SPACE
>>> space.parse("small")
SubnetChoice(depth=4, ffn=288, heads=2, conv=72)
>>> space.parse("depth=6,ffn=432,heads=3,conv=108").name
'medium'
>>> space.parse("depth=6,ffn=288,heads=2,conv=144").name
'd6-f288-h2-c144'
"""

from __future__ import annotations

import dataclasses
import re

import torch
import torch.nn.functional as F
from torch import nn

from workbench.errors import ModelSizeError
from workbench.models.tiny import RotaryMHSA, TinyBackend, TinyConfig, TinyConformerCTC

__all__ = ["DEFAULT_SPACE", "SIZES_HOWTO", "SIZE_NAMES", "SearchSpace", "SubnetChoice", "Supernet", "installed_sizes",
           "size_dir"]

SIZE_NAMES = ("small", "medium", "large")
#: how to make the sizes (said whenever none is installed)
SIZES_HOWTO = ("make them with: python recipes/train_supernet.py --mode supernet --resume (recipes/todm/README.md "
               "gives the commands and the compute), then copy the run's small/, medium/ and large/ folders to "
               "workbench/data/models/tiny-small, tiny-medium and tiny-large")
_FIELDS = ("depth", "ffn", "heads", "conv")


@dataclasses.dataclass(frozen=True)
class SubnetChoice:
    """One subnetwork: how many of each kind of unit it keeps (always the first ones)."""

    depth: int  # conformer blocks
    ffn: int  # FFN hidden units per FFN
    heads: int  # attention heads (fixed head width)
    conv: int  # conv-module channels

    def spec(self) -> str:
        """``"depth=4,ffn=288,heads=2,conv=72"`` (what :meth:`SearchSpace.parse` reads back)."""
        return ",".join(f"{f}={getattr(self, f)}" for f in _FIELDS)

    @property
    def name(self) -> str:
        """The size's name in :data:`DEFAULT_SPACE` (``"small"`` ...), else ``"d4-f288-h2-c72"``."""
        return DEFAULT_SPACE.name_of(self)

    @classmethod
    def parse(cls, value: str | SubnetChoice, space: SearchSpace | None = None) -> SubnetChoice:
        """A size name or spec checked against ``space`` (default :data:`DEFAULT_SPACE`).

        Raises:
            ModelSizeError: not a valid size; the message lists the valid ones.
        """
        return (space or DEFAULT_SPACE).parse(value)


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """The valid values of each dimension, and the named sizes (name, choice) in it."""

    depths: tuple[int, ...] = (4, 6, 8)
    ffns: tuple[int, ...] = (288, 432, 576)
    heads: tuple[int, ...] = (2, 3, 4)
    convs: tuple[int, ...] = (72, 108, 144)
    sizes: tuple[tuple[str, SubnetChoice], ...] = (
        ("small", SubnetChoice(4, 288, 2, 72)),
        ("medium", SubnetChoice(6, 432, 3, 108)),
        ("large", SubnetChoice(8, 576, 4, 144)),
    )

    def __post_init__(self) -> None:
        for vals in (self.depths, self.ffns, self.heads, self.convs):
            if not vals or list(vals) != sorted(set(vals)) or vals[0] <= 0:
                raise ValueError(f"search-space values must be positive, distinct and ascending: {vals}")
        for name, choice in self.sizes:
            self.validate(choice, what=f"named size {name!r}")

    @classmethod
    def single(cls, cfg: TinyConfig, name: str | None = None) -> SearchSpace:
        """A space holding only the whole model of ``cfg`` (for training one size alone)."""
        c = SubnetChoice(cfg.num_layers, cfg.ffn_dim, cfg.num_heads, cfg.conv_dim)
        return cls((c.depth,), (c.ffn,), (c.heads,), (c.conv,), ((name or cfg.size or "full", c),))

    @property
    def largest(self) -> SubnetChoice:
        return SubnetChoice(self.depths[-1], self.ffns[-1], self.heads[-1], self.convs[-1])

    @property
    def smallest(self) -> SubnetChoice:
        return SubnetChoice(self.depths[0], self.ffns[0], self.heads[0], self.convs[0])

    @property
    def size_names(self) -> tuple[str, ...]:
        return tuple(n for n, _ in self.sizes)

    def name_of(self, choice: SubnetChoice) -> str:
        for name, c in self.sizes:
            if c == choice:
                return name
        return f"d{choice.depth}-f{choice.ffn}-h{choice.heads}-c{choice.conv}"

    def _valid_text(self) -> str:
        return (f"valid sizes are {', '.join(self.size_names)}; or give each part as "
                f"'depth=D,ffn=F,heads=H,conv=C' with depth one of {_join(self.depths)}, ffn one of "
                f"{_join(self.ffns)}, heads one of {_join(self.heads)}, conv one of {_join(self.convs)}")

    def validate(self, choice: SubnetChoice, *, what: str = "this size") -> SubnetChoice:
        """``choice`` if each of its values is in the space, else :class:`ModelSizeError`."""
        for field, vals in zip(_FIELDS, (self.depths, self.ffns, self.heads, self.convs), strict=True):
            if getattr(choice, field) not in vals:
                raise ModelSizeError(f"{what} has {field}={getattr(choice, field)}, which the built-in model "
                                     f"does not offer: {self._valid_text()}.")
        return choice

    def parse(self, value: str | SubnetChoice) -> SubnetChoice:
        """A :class:`SubnetChoice` from a size name (``"small"``), a spec or a choice, validated."""
        if isinstance(value, SubnetChoice):
            return self.validate(value)
        text = str(value).strip().lower()
        for name, c in self.sizes:
            if text == name:
                return c
        parts = dict(re.findall(r"(\w+)\s*=\s*(\d+)", text))
        if set(parts) != set(_FIELDS) or len(re.findall(r"=", text)) != len(_FIELDS):
            raise ModelSizeError(f"{str(value)!r} is not a size of the built-in model: {self._valid_text()}.")
        return self.validate(SubnetChoice(**{f: int(parts[f]) for f in _FIELDS}), what=repr(str(value)))

    def sample(self, generator: torch.Generator) -> SubnetChoice:
        """A random choice, each dimension drawn uniformly and independently."""
        pick = [vals[int(torch.randint(len(vals), (1,), generator=generator))]
                for vals in (self.depths, self.ffns, self.heads, self.convs)]
        return SubnetChoice(*pick)


def _join(vals: tuple[int, ...]) -> str:
    return "/".join(str(v) for v in vals)


DEFAULT_SPACE = SearchSpace()


def _sizes_root():
    from workbench.models.tiny import default_model_dir

    return default_model_dir().parent


def installed_sizes() -> list[str]:
    """The named sizes shipped in the package (folders ``workbench/data/models/tiny-<size>``), small first."""
    return [n for n in DEFAULT_SPACE.size_names if (_sizes_root() / f"tiny-{n}" / "model.safetensors").is_file()]


def size_dir(size: str):
    """The folder of a shipped size (``"small"`` ...), checked.

    Raises:
        ModelSizeError: not a size name (the valid ones are listed), or not installed.
    """
    name = str(size).strip().lower()
    if name not in DEFAULT_SPACE.size_names:
        raise ModelSizeError(f"{str(size)!r} is not a size of the built-in model; valid sizes are "
                             f"{', '.join(DEFAULT_SPACE.size_names)}")
    folder = _sizes_root() / f"tiny-{name}"
    if not (folder / "model.safetensors").is_file():
        have = installed_sizes()
        raise ModelSizeError(f"the {name!r} size of the built-in model is not installed "
                             f"({'installed: ' + ', '.join(have) if have else 'no sizes are installed yet'}); "
                             f"{SIZES_HOWTO}")
    return folder


class _FeatureForward(nn.Module):
    """``(feats (B, T, 80), lengths) -> (log_probs (B, T', V) fp32, enc_lengths)`` of a model."""

    def __init__(self, model: TinyConformerCTC) -> None:
        super().__init__()
        self.model = model

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        enc, lens = self.model.encode_features(feats, lengths)
        return F.log_softmax(self.model.head(enc).float(), dim=-1), lens


def _set_dropout(module: nn.Module, p: float) -> None:
    for m in module.modules():
        if isinstance(m, nn.Dropout):
            m.p = p
        elif isinstance(m, RotaryMHSA):
            m.attn_dropout = p


class Supernet(nn.Module):
    """Shared weights of every size: a full ``TinyConformerCTC`` run with sliced weights.

    Args:
        model: the full model (its parameters are the supernet's; they are trained in place).
        space: the search space; its largest choice must be the whole ``model``.
        adaptive_dropout: scale the dropout by the subnetwork's share of the parameters.
        dropout_max: the largest subnetwork's dropout (default ``model.cfg.dropout``).
    """

    def __init__(self, model: TinyConformerCTC, space: SearchSpace | None = None, *,
                 adaptive_dropout: bool = True, dropout_max: float | None = None) -> None:
        super().__init__()
        self.model = model
        self.space = space or DEFAULT_SPACE
        cfg = model.cfg
        full = SubnetChoice(cfg.num_layers, cfg.ffn_dim, cfg.num_heads, cfg.conv_dim)
        if self.space.largest != full:
            raise ModelSizeError(f"the search space's largest size ({self.space.largest.spec()}) is not the whole "
                                 f"model ({full.spec()}); build the supernet from a model of that size")
        self.adaptive_dropout = adaptive_dropout
        self.dropout_max = cfg.dropout if dropout_max is None else float(dropout_max)
        self._skeletons: dict[SubnetChoice, _FeatureForward] = {}

    @classmethod
    def from_tiny(cls, path=None, space: SearchSpace | None = None, **options) -> Supernet:
        """A supernet initialised from a built-in model folder (default: the shipped model), trainable."""
        from workbench.models.tiny import load_tiny

        model = load_tiny(path).model
        for p in model.parameters():
            p.requires_grad_(True)
        return cls(model.train(), space, **options)

    # ---------------------------------------------------------------- sizes
    def sub_config(self, choice: SubnetChoice | str) -> TinyConfig:
        """The plain model's config for ``choice`` (its dropout follows :meth:`dropout_for`)."""
        choice = self.space.parse(choice)
        return dataclasses.replace(self._shape_config(choice), dropout=self.dropout_for(choice))

    def _shape_config(self, choice: SubnetChoice) -> TinyConfig:
        cfg = self.model.cfg
        return dataclasses.replace(cfg, num_layers=choice.depth, ff_hidden=choice.ffn, num_heads=choice.heads,
                                   head_dim=cfg.attn_head_dim, conv_channels=choice.conv,
                                   size=self.space.name_of(choice), dropout=0.0)

    def _skeleton(self, choice: SubnetChoice, *, cached: bool = True) -> _FeatureForward:
        """A hollow model of the choice's shape, cached (``cached=False``: a new one, e.g. to hook
        adapters into without touching the supernet's own runs): its code runs the slices.

        Its parameters are zero-stride views of one number (no memory); a meta-device build
        would cost ~4 s once (``torch.hann_window`` on meta imports the decompositions).
        """
        sk = self._skeletons.get(choice) if cached else None
        if sk is None:
            sk = _FeatureForward(TinyConformerCTC(self._shape_config(choice),
                                                  fbank=torch.zeros(self.model.frontend.fbank.shape)))
            for p in sk.parameters():
                p.data = torch.zeros(()).expand(p.shape)
            if cached:
                self._skeletons[choice] = sk
        return sk

    def num_parameters(self, choice: SubnetChoice | str | None = None) -> int:
        """Parameters of the plain model of ``choice`` (default: the largest)."""
        choice = self.space.largest if choice is None else self.space.parse(choice)
        return sum(p.numel() for p in self._skeleton(choice).parameters())

    def dropout_for(self, choice: SubnetChoice | str) -> float:
        """``p_max * params(choice) / params(largest)`` with adaptive dropout, else ``p_max``."""
        if not self.adaptive_dropout:
            return self.dropout_max
        return self.dropout_max * self.num_parameters(choice) / self.num_parameters(self.space.largest)

    def sliced_parameters(self, choice: SubnetChoice | str) -> dict[str, torch.Tensor]:
        """``{name in the plain model: tensor}``: the choice's slices (differentiable, contiguous)."""
        choice = self.space.parse(choice)
        cfg = self.model.cfg
        full = dict(self.model.named_parameters())
        out = {}
        for name, p in self._skeleton(choice).model.named_parameters():
            w = full[name]
            rest = tuple(w.shape[1:])
            if name.endswith(("attn.qkv.weight", "attn.qkv.bias")):  # rows are [q | k | v] x heads x head_dim
                t = w.reshape(3, cfg.num_heads, cfg.attn_head_dim, *rest)[:, : choice.heads].reshape(p.shape)
            elif name.endswith(("conv.pw1.weight", "conv.pw1.bias")):  # rows are the two GLU halves
                t = w.reshape(2, cfg.conv_dim, *rest)[:, : choice.conv].reshape(p.shape)
            else:
                t = w[tuple(slice(0, n) for n in p.shape)]
            out[name] = t.contiguous()
        return out

    # ---------------------------------------------------------------- running
    def forward_features(self, feats: torch.Tensor, lengths: torch.Tensor, choice: SubnetChoice | str | None = None,
                         *, dropout: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``feats (B, T, 80)``, frame lengths -> ``(log_probs (B, T', V) fp32, lengths (B,))`` of ``choice``.

        ``dropout`` overrides :meth:`dropout_for` (it acts only in training mode).
        """
        choice = self.space.largest if choice is None else self.space.parse(choice)
        sk = self._skeleton(choice)
        _set_dropout(sk, self.dropout_for(choice) if dropout is None else dropout)
        sk.train(self.training)
        params = {f"model.{k}": v for k, v in self.sliced_parameters(choice).items()}
        return torch.func.functional_call(sk, params, (feats, lengths))

    def forward(self, wav: torch.Tensor, wav_lengths: torch.Tensor, choice: SubnetChoice | str | None = None,
                *, dropout: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``wav (B, S)`` at 16 kHz, sample lengths -> ``(log_probs (B, T', V), lengths)`` of ``choice``."""
        feats, flens = self.model.frontend(wav, wav_lengths)
        return self.forward_features(feats, flens, choice, dropout=dropout)

    # ---------------------------------------------------------------- deploying
    def extract(self, choice: SubnetChoice | str) -> TinyConformerCTC:
        """A plain model holding a copy of ``choice``'s slices; same outputs as ``forward(..., choice)``."""
        choice = self.space.parse(choice)
        model = TinyConformerCTC(self.sub_config(choice), fbank=self.model.frontend.fbank.detach().clone().cpu())
        with torch.no_grad():
            sd = {k: v.detach().clone() for k, v in self.sliced_parameters(choice).items()}
        model.load_state_dict(sd, strict=True)
        device = self.model.head.weight.device
        return model.to(device).train(self.training)

    def backend(self, choice: SubnetChoice | str) -> TinyBackend:
        """The extracted size as a frozen backend in eval mode (named ``workbench-tiny-<size>``)."""
        return TinyBackend(self.extract(choice).eval()).freeze()
