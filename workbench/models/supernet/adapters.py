"""One personal adapter for every size: a LoRA of the supernet's largest size, sliced like the weights it adapts.

Every size of the built-in model's supernet (:mod:`workbench.models.supernet.model`) keeps the *first*
units of each dimension of the shared weights. A LoRA on a linear layer ``W (out, in)`` adds
``(alpha / r) B A`` with ``B (N, out, r)`` and ``A (N, r, in)``; its update is a matrix of ``W``'s
shape, so the adapter of the largest size is cut for a smaller one exactly as ``W`` is:

* ``B`` keeps the rows ``W`` keeps (the first heads of each of q, k and v in ``attn.qkv``; the
  first channels of each GLU half in ``conv.pw1``; the first units elsewhere);
* ``A`` keeps the columns ``W`` keeps (the first ``heads x head width`` of ``attn.proj``, the
  first FFN units of ``fc2``, the first conv channels of ``pw2``);
* blocks past the size's depth are dropped. The rank, scale and every other setting are unchanged.

The sliced update is then exactly the slice of the full update (each of its entries is the same
sum over the rank), so one personalization serves every device the patient owns.

**The supernet marker.** A Submodel file trained on a size that is the largest of
:data:`~workbench.models.supernet.model.DEFAULT_SPACE` can carry the metadata field ``supernet``:
``{"made_for": size, "sizes": {size name: weight fingerprint}}``, the fingerprints of every named
size *computed here by slicing its base model* (:func:`size_fingerprints`). A file is loaded onto
another size only when that size's own fingerprint is listed (:func:`load_for_size`); every other
base model is refused as before (:func:`workbench.adapters.io.check_base`). The marker is
untrusted metadata: it is checked for form by :mod:`workbench.adapters.io`, the sliced tensors
are checked against the size's layout before anything is built, and slicing only ever shrinks.

>>> from workbench.models.supernet.adapters import SLICEABLE_FAMILIES
>>> SLICEABLE_FAMILIES
('lora',)
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from workbench.errors import AdapterError
from workbench.models.supernet.model import DEFAULT_SPACE, SearchSpace, SubnetChoice, Supernet, _set_dropout
from workbench.models.tiny import TinyBackend, TinyConfig

if TYPE_CHECKING:
    from workbench.adapters.adapted import Adapted
    from workbench.adapters.base import AdapterConfig

__all__ = ["SLICEABLE_FAMILIES", "SandwichLoRA", "SupernetLoRA", "load_adapter", "load_for_size", "mark_supernet_adapter",
           "sandwich_adapter", "size_fingerprints",
           "slice_adapter", "slice_submodel_file", "supernet_marker"]

SLICEABLE_FAMILIES = ("lora",)
_KEY = re.compile(r"blocks_(\d{1,4})_(ff1_fc1|ff1_fc2|ff2_fc1|ff2_fc2|attn_qkv|attn_proj|conv_pw1|conv_pw2)"
                  r"\.(lora_a|lora_b)")


def _choice_of(cfg: TinyConfig) -> SubnetChoice:
    return SubnetChoice(cfg.num_layers, cfg.ffn_dim, cfg.num_heads, cfg.conv_dim)


def _slice_rows(t: Tensor, axis: int, layer: str, keep: int, head_dim: int) -> Tensor:
    """The first ``keep`` output units of ``t`` along ``axis``, as the supernet slices the weight's rows:
    ``attn_qkv`` rows are ``[q | k | v] x heads x head_dim``, ``conv_pw1`` rows the two GLU halves."""
    n = t.shape[axis]
    if keep == n:
        return t
    shape = list(t.shape)
    if layer == "attn_qkv":
        groups = (3, n // (3 * head_dim), head_dim)
        view = t.reshape(*shape[:axis], *groups, *shape[axis + 1:])
        out = view.narrow(axis + 1, 0, keep // (3 * head_dim))
    elif layer == "conv_pw1":
        view = t.reshape(*shape[:axis], 2, n // 2, *shape[axis + 1:])
        out = view.narrow(axis + 1, 0, keep // 2)
    else:
        return t.narrow(axis, 0, keep)
    return out.reshape(*shape[:axis], keep, *shape[axis + 1:])


def slice_adapter(tensors: dict[str, Tensor], config: AdapterConfig, target: TinyBackend,
                  *, what: str = "this adapter") -> dict[str, Tensor]:
    """The adapter weights ``tensors`` (of a larger size) cut for the size of ``target``.

    Args:
        tensors: ``{key: tensor}`` of a LoRA (``Adapted.state_dict()`` or a Submodel file's tensors):
            ``lora_a (N, r, in)`` and ``lora_b (N, out, r)`` per adapted linear layer.
        config: its settings (unchanged by slicing).
        target: the size to serve (a built-in-model backend).

    Returns:
        the sliced tensors (contiguous copies), in exactly the layout an adapter with ``config``
        has on ``target``; checked before anything is built.

    Raises:
        AdapterError: not a LoRA, an adapter on some layers only (``top_layers``), or weights that
            are not a larger size of ``target``'s supernet (in plain words).
    """
    return {k: v.contiguous().clone() for k, v in _cut(tensors, config, target, what).items()}


def _cut(tensors: dict[str, Tensor], config: AdapterConfig, target: TinyBackend, what: str) -> dict[str, Tensor]:
    """:func:`slice_adapter` as views of ``tensors`` (differentiable; no copy where a slice is contiguous)."""
    from workbench.adapters.adapted import layout_shapes

    if config.family not in SLICEABLE_FAMILIES:
        raise AdapterError(f"{what} is a {config.family} adapter; only a LoRA adapter can be cut for another size "
                           "of the built-in model. Train a LoRA adapter (the default) on the largest size, or "
                           "train this adapter on the size you want to use.")
    if getattr(config, "top_layers", 0):
        raise AdapterError(f"{what} adapts only the top {config.top_layers} blocks, which are different blocks in "
                           "each size; train a LoRA on every block (the default) to serve every size.")
    want = layout_shapes(target, config)
    head_dim = target.config.attn_head_dim
    out: dict[str, Tensor] = {}
    for key, t in tensors.items():
        m = _KEY.fullmatch(key)
        if m is None:
            raise AdapterError(f"{what} holds a weight {key[:60]!r} that no LoRA of the built-in model has; it "
                               "cannot be cut for another size")
        if key not in want:
            if int(m.group(1)) >= target.config.num_layers:
                continue  # a block the smaller size does not have
            raise AdapterError(f"{what} holds {key!r}, which this size's adapter does not have")
        need = want[key]
        if t.ndim != 3 or t.shape[0] != need[0] or any(h < w for h, w in zip(t.shape, need, strict=True)):
            raise AdapterError(f"{what}: {key} is {tuple(t.shape)}, smaller than or unlike the {tuple(need)} this "
                               "size needs; it was not trained on a larger size of this model")
        layer, part = m.group(2), m.group(3)
        if part == "lora_b":  # (N, out, r): W's rows
            if layer == "attn_qkv" and (t.shape[1] % (3 * head_dim) or need[1] % (3 * head_dim)):
                raise AdapterError(f"{what}: {key} does not hold whole attention heads of width {head_dim}")
            if layer == "conv_pw1" and (t.shape[1] % 2 or need[1] % 2):
                raise AdapterError(f"{what}: {key} does not hold two GLU halves")
            t = _slice_rows(t, 1, layer, need[1], head_dim)
        else:  # (N, r, in): W's columns
            t = t.narrow(2, 0, need[2])
        if tuple(t.shape) != need:
            raise AdapterError(f"{what}: {key} cannot be cut to {tuple(need)}")
        out[key] = t
    missing = sorted(set(want) - set(out))
    if missing:
        raise AdapterError(f"{what} has no weights for {missing[0]!r}; it was made for another adapter layout")
    return out


# ---------------------------------------------------------------------------- the marker
def size_fingerprints(backend: TinyBackend, space: SearchSpace | None = None) -> dict[str, str]:
    """``{size name: fingerprint}`` of every named size of ``space``, cut from ``backend``'s weights.

    ``backend`` must be the whole supernet (its shape is ``space.largest``). The sizes are
    extracted here, so the fingerprints are those the installed sizes have when they are truly
    slices of this model (fp16 files included: slicing commutes with the cast).

    Raises:
        ModelSizeError: ``backend`` is not the largest size of ``space``.
    """
    space = space or DEFAULT_SPACE
    sn = Supernet(backend.model, space)
    out = {}
    for name, _choice in space.sizes:
        model = sn.extract(name).eval()
        out[name] = TinyBackend(model).fingerprint()
    return out


def supernet_marker(backend: TinyBackend, space: SearchSpace | None = None) -> dict[str, Any] | None:
    """The ``supernet`` metadata of an adapter trained on ``backend``, or None when ``backend`` is not
    the largest size of ``space`` (an adapter of a smaller size serves only that size)."""
    space = space or DEFAULT_SPACE
    if not isinstance(backend, TinyBackend) or _choice_of(backend.config) != space.largest:
        return None
    sizes = size_fingerprints(backend, space)
    made_for = next((n for n, fp in sizes.items() if fp == backend.fingerprint()), None)
    if made_for is None:
        return None
    return {"made_for": made_for, "sizes": sizes}


def mark_supernet_adapter(path: str | Path, backend: TinyBackend, space: SearchSpace | None = None) -> bool:
    """Add the ``supernet`` marker to the Submodel file ``path`` trained on ``backend`` (rewritten atomically).

    Returns False (the file unchanged) when ``backend`` is not the supernet's largest size.
    """
    from workbench.adapters.io import check_base, read_submodel

    marker = supernet_marker(backend, space)
    if marker is None:
        return False
    tensors, meta = read_submodel(path)
    check_base(meta, base_model=backend.name, base_fingerprint=backend.fingerprint(), what=Path(path).name)
    _rewrite(path, tensors, meta, meta["base_model"], meta["base_fingerprint"], marker)
    return True


def _rewrite(path, tensors, meta, base_model, base_fingerprint, marker) -> Path:
    from workbench.adapters.io import write_submodel

    return write_submodel(path, tensors, config=meta["config"], base_model=base_model,
                          base_fingerprint=base_fingerprint, speaker_ids=meta["speaker_ids"],
                          specaugment=meta.get("specaugment"), training=meta.get("training"),
                          metrics=meta.get("metrics"), supernet=marker)


def _sliceable_to(meta: dict[str, Any], backend: TinyBackend) -> str | None:
    """The size name under which ``backend`` is listed in the file's supernet marker, else None."""
    marker = meta.get("supernet")
    if not isinstance(marker, dict) or not isinstance(backend, TinyBackend):
        return None
    fp = backend.fingerprint()
    return next((n for n, f in marker["sizes"].items() if f == fp), None)


def _sliced(backend: TinyBackend, path: str | Path) -> tuple[dict[str, Tensor], dict[str, Any], AdapterConfig]:
    """``(sliced tensors, metadata, config)`` of a supernet adapter file for ``backend`` (checked)."""
    from workbench.adapters.adapted import fitting_config
    from workbench.adapters.io import check_base, read_submodel

    name = Path(path).name
    tensors, meta = read_submodel(path)
    if meta["base_fingerprint"] == backend.fingerprint():
        return tensors, meta, fitting_config(backend, meta, tensors, name)
    size = _sliceable_to(meta, backend)
    if size is None:
        check_base(meta, base_model=backend.name, base_fingerprint=backend.fingerprint(), what=name)
        raise AdapterError(f"{name} was not made for this base model")  # check_base refused already
    if meta["supernet"]["sizes"].get(meta["supernet"]["made_for"]) != meta["base_fingerprint"]:
        raise AdapterError(f"{name}: its supernet marker does not name the base model it was trained on; the "
                           "file is damaged or was not written by the workbench — train the adapter again")
    from workbench.adapters.adapted import config_from_dict

    try:
        config = config_from_dict(meta["config"])
    except (AdapterError, TypeError) as err:
        raise AdapterError(f"{name}: its adapter settings are not valid ({err})") from None
    return slice_adapter(tensors, config, backend, what=name), meta, config


def load_for_size(backend: TinyBackend, path: str | Path) -> tuple[Adapted, dict[str, Any]]:
    """Load a Submodel file onto ``backend``: as it is when it was made for ``backend``; cut for
    ``backend``'s size when it is a supernet adapter whose marker lists ``backend``; refused otherwise.

    Returns:
        ``(adapted, metadata)``; ``metadata["sliced_for"]`` names the size when the file was cut.

    Raises:
        AdapterError: an adapter made for another base model or size (both named), or a damaged file.
    """
    from workbench.adapters.adapted import inject, load_submodel

    tensors, meta, config = _sliced(backend, path)
    if meta["base_fingerprint"] == backend.fingerprint():
        return load_submodel(backend, path)
    adapted = inject(backend, config)
    try:
        adapted.load_state_dict(tensors)
    except AdapterError:
        adapted.remove()
        raise
    meta = {**meta, "sliced_for": _sliceable_to(meta, backend)}
    return adapted, meta


def load_adapter(backend, path: str | Path) -> tuple[Adapted, dict[str, Any]]:
    """:func:`load_for_size` for a built-in-model backend, else
    :func:`~workbench.adapters.adapted.load_submodel` (what the command line loads ``--adapter`` with)."""
    from workbench.adapters.adapted import load_submodel

    if isinstance(backend, TinyBackend):
        return load_for_size(backend, path)
    return load_submodel(backend, path)


def slice_submodel_file(path: str | Path, backend: TinyBackend, out: str | Path) -> Path:
    """Write the supernet adapter ``path`` cut for ``backend``'s size to ``out``: a plain Submodel
    file of that size (its base model and fingerprint), the marker kept (``made_for`` that size)."""
    tensors, meta, _config = _sliced(backend, path)
    marker = meta.get("supernet")
    marker = {**marker, "made_for": _sliceable_to(meta, backend) or marker["made_for"]} if marker else None
    return _rewrite(out, tensors, meta, backend.name, backend.fingerprint(), marker)


# ---------------------------------------------------------------------------- running in the supernet
class _Pair(nn.Module):
    """The skeleton and the adapters under one root, so that one ``functional_call`` sets both."""

    def __init__(self, net: nn.Module, adapters: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.adapters = adapters

    def forward(self, *args):
        return self.net(*args)


class SupernetLoRA:
    """A LoRA of the supernet's largest size, run inside the supernet at any size (sliced on the fly).

    The supernet slices its weights and this adapter's weights with the same rule and runs the
    size's code with both (``torch.func.functional_call``); gradients reach the full adapter (to
    train it with the sandwich rule: every step samples sizes). Forward passes here always take
    the adapters' unmerged path (merged-weight serving is for plain backends).

    Args:
        supernet: the shared weights.
        adapted: a LoRA injected into the largest size's backend (``supernet.backend(largest)``
            or a loaded one of the same shape): its parameters are the full adapter.
    """

    def __init__(self, supernet: Supernet, adapted: Adapted) -> None:
        if adapted.config.family not in SLICEABLE_FAMILIES:
            raise AdapterError(f"only a LoRA adapter can run at every size, not {adapted.config.family}")
        self.supernet = supernet
        self.adapted = adapted
        self._injected: dict[SubnetChoice, tuple[_Pair, Adapted]] = {}

    def _at(self, choice: SubnetChoice) -> tuple[_Pair, Adapted]:
        """The choice's own hollow model with this adapter's layout injected (built once)."""
        from workbench.adapters.adapted import inject

        if choice not in self._injected:
            sk = self.supernet._skeleton(choice, cached=False)  # its own: the supernet's runs stay unadapted
            backend = TinyBackend(sk.model)
            backend._fingerprint = "supernet-skeleton"  # hollow weights: never saved, never compared
            sized = inject(backend, self.adapted.config)
            self._injected[choice] = (_Pair(sk, sized.adapters), sized)
        return self._injected[choice]

    def forward_features(self, feats: Tensor, lengths: Tensor,
                         choice: SubnetChoice | str | None = None) -> tuple[Tensor, Tensor]:
        """``feats (B, T, 80)``, frame lengths -> ``(log_probs (B, T', V), lengths)`` of ``choice`` with the adapter."""
        sn = self.supernet
        choice = sn.space.largest if choice is None else sn.space.parse(choice)
        pair, sized = self._at(choice)
        full = dict(self.adapted.adapters.named_parameters())
        sliced = _cut(full, self.adapted.config, sized.backend, "the supernet adapter")
        params = {f"net.model.{k}": v for k, v in sn.sliced_parameters(choice).items()}
        params.update({f"adapters.{k}": v for k, v in sliced.items()})
        _set_dropout(pair.net, sn.dropout_for(choice))
        pair.net.train(sn.training)
        with torch.enable_grad(), sized.route(None):
            return torch.func.functional_call(pair, params, (feats, lengths))



class SandwichLoRA:
    """A supernet adapter trained with the sandwich rule: one LoRA that serves every size.

    Each training step's loss is the mean CTC loss of every size in ``sizes`` (default: every named
    size of the search space), each run inside the supernet with the adapter cut for it
    (:class:`SupernetLoRA`: the same cut as :func:`slice_adapter`, gradients reaching the full
    adapter). Everything else is the largest size's :class:`~workbench.adapters.adapted.Adapted`
    (validation, checkpoints), so a :class:`~workbench.trainer.Trainer` takes it as its ``adapted``;
    :meth:`save` writes the largest size's file with the supernet marker.

    Args:
        supernet: the shared weights, frozen (the largest size's model: ``Supernet(backend.model)``).
        adapted: the LoRA injected into the largest size's backend: the adapter trained.
        sizes: the sizes whose losses are averaged (names or choices).
    """

    def __init__(self, supernet: Supernet, adapted: Adapted, sizes: list[str | SubnetChoice] | None = None) -> None:
        self._runner = SupernetLoRA(supernet, adapted)
        self._inner = adapted
        self.sizes = [supernet.space.parse(s) for s in (sizes or supernet.space.size_names)]
        supernet.eval()  # the base stays as it is deployed: no dropout; only the adapter trains

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def save(self, path: str | Path, **kwargs: Any) -> Path:
        """The largest size's Submodel file (:meth:`Adapted.save <workbench.adapters.adapted.Adapted.save>`'s
        arguments), marked as a supernet adapter: it serves every size."""
        out = self._inner.save(path, **kwargs)
        mark_supernet_adapter(out, self._inner.backend)
        return out

    def loss(self, batch, targets: list[str]) -> Tensor:
        """Mean over :attr:`sizes` of the CTC loss of ``batch`` (log-mel ``(B, T, 80)``) at that size."""
        from workbench.models.tiny import ctc_loss

        if batch.start_layer or batch.features.dim() != 3:
            raise AdapterError("the sandwich rule runs every size from the log-mel features; the batch holds "
                               "cached hidden states (an adapter on the top layers only): train every layer")
        losses = [ctc_loss(*self._runner.forward_features(batch.features, batch.lengths, c), targets)
                  for c in self.sizes]
        return torch.stack(losses).mean()


def sandwich_adapter(backend: Any, config: Any) -> SandwichLoRA | None:
    """The adapter a personalization on ``backend`` trains with the sandwich rule, or None (the trainer's own).

    A :class:`SandwichLoRA` when ``backend`` is the installed supernet's largest size (``--size
    large``, or ``auto`` picking it) and ``config`` trains a LoRA on every layer: the one adapter
    then serves every size (bench/bench_todm_sizes.py measures it against an adapter cut from a
    plain run and against each size's own). Its initial weights follow ``config.seed`` as the
    trainer's own do.
    """
    if not isinstance(backend, TinyBackend) or backend.config.size != DEFAULT_SPACE.size_names[-1]:
        return None
    if config.mode != "adapter" or config.adapter.family not in SLICEABLE_FAMILIES or config.adapter.top_layers:
        return None
    if _choice_of(backend.config) != DEFAULT_SPACE.largest:  # the marker's own test; its fingerprints come at save
        return None
    from workbench.adapters.adapted import inject

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        adapted = inject(backend, config.adapter)
    return SandwichLoRA(Supernet(backend.model), adapted)
