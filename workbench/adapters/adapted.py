"""Injecting adapters into a frozen backend, and the handle that manages them.

:func:`inject` places one adapter family at a backend's adapter sites (the
outputs of its encoder blocks) or, for LoRA, on its encoder linear layers,
through forward hooks: the base model's code and weights are untouched, for the
built-in model and the transformers backends alike. It returns an
:class:`Adapted` handle that routes speakers, enables/disables, merges where the
maths allows, reports parameters and round-trips the adapter weights.

The linear families (LoRA, vector) are served cheaply: LoRA layers that read the
same input share one shrink matmul (:mod:`workbench.adapters.fused`). On the base
models listed in :data:`REORDERED_SUMS`, two paths that reorder the float32 sums go
further: a batch whose examples all belong to one speaker runs on that speaker's
merged weights (a cached copy swapped in for the batch,
:mod:`workbench.adapters.merge_cache`), and a mixed batch's LoRA linears run expand
first (:meth:`LoRAAdapter.linear_forward`). Elsewhere (Whisper) the delta is added
after the frozen linear, in PEFT's order, so that a routed batch gives PEFT's outputs
to within 1e-4 (issue 30).

>>> from workbench.adapters import ResidualConfig, inject            # doctest: +SKIP
>>> adapted = inject(load_base_model("tiny"), ResidualConfig())       # doctest: +SKIP
>>> loss = adapted.loss(batch, texts); loss.backward()                # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from workbench.adapters.attention import ForwardHandle, lean_attention, lean_attention_modules
from workbench.adapters.base import AdapterConfig, SiteAdapter
from workbench.adapters.conv import ConvAdapter, ConvAdapterConfig
from workbench.adapters.fused import FusedShrink, shrink_groups
from workbench.adapters.hra import HierarchicalRecurrentAdapter, HRAConfig
from workbench.adapters.linear import LinearAdapter, swap_params
from workbench.adapters.lora import LoRAAdapter, LoRAConfig
from workbench.adapters.merge_cache import MergeCache
from workbench.adapters.residual import ResidualAdapter, ResidualConfig
from workbench.adapters.vector import VectorAdapter, VectorConfig, vector_role
from workbench.errors import AdapterError

if TYPE_CHECKING:  # annotations only: the base models sit above the adapters
    from workbench.models.base import ASRBackend, Batch

__all__ = ["LINEAR_FAMILIES", "REGISTRY", "REORDERED_SUMS", "Adapted", "config_from_dict", "fitting_config", "inject", "layout_shapes",
           "load_submodel"]

# family name -> (config class, module class)
REGISTRY: dict[str, tuple[type[AdapterConfig], type[SiteAdapter]]] = {
    "conv": (ConvAdapterConfig, ConvAdapter),
    "hra": (HRAConfig, HierarchicalRecurrentAdapter),
    "lora": (LoRAConfig, LoRAAdapter),
    "residual": (ResidualConfig, ResidualAdapter),
    "vector": (VectorConfig, VectorAdapter),
}
#: ``ASRBackend.model_type`` s whose served LoRA/vector sums may be reordered for speed (merged weights for one
#: speaker, expand first for a mixed batch). Measured against PEFT (bench/bench_peers.py): on the built-in
#: model the reordered sums equal PEFT's (largest difference 0 to 1e-5) and serve 64 speakers 2.61x PEFT
#: instead of 1.89x (runs minutes apart, 2-core CPU); on Whisper, whose activations reach ~240, they parted
#: from PEFT's logits by 2e-4 to 4e-4 while PEFT's order gave 0 to 5e-5 at the same speed (1.65x at 64).
REORDERED_SUMS = frozenset({"ctc"})
LINEAR_FAMILIES = ("lora", "vector")  # families placed on linear layers: their update merges into the weights

_ATTENTION_WORDS = ("attn", "attention", "q_proj", "k_proj", "v_proj", "out_proj", "qkv")


def config_from_dict(data: dict[str, Any]) -> AdapterConfig:
    """Rebuild a config from :meth:`AdapterConfig.to_dict` output (strict: unknown keys are an error)."""
    data = dict(data)
    family = data.pop("family", None)
    if family not in REGISTRY:
        raise AdapterError(f"unknown adapter family {family!r}; known families: {sorted(REGISTRY)}")
    cls = REGISTRY[family][0]
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise AdapterError(f"unknown {family} adapter settings {unknown}; known: {sorted(known)}")
    return cls(**data)


def _is_attention(name: str) -> bool:
    return any(w in name.lower() for w in _ATTENTION_WORDS)


class Adapted:
    """The base model with adapters injected: one handle over both. Create with :func:`inject`.

    Attributes:
        backend: the frozen :class:`~workbench.models.base.ASRBackend`.
        config: the adapter config (``num_speakers`` rows per per-speaker parameter).
        adapters: ``nn.ModuleDict`` of the adapter modules (their ``state_dict`` is
            the adapter weights only).
        base_fingerprint: the backend's weight fingerprint at injection time.
    """

    def __init__(self, backend: ASRBackend, config: AdapterConfig) -> None:
        self.backend = backend
        self.config = config
        self.adapters = nn.ModuleDict()
        self.base_fingerprint = backend.fingerprint()
        self._enabled = True
        self._hooks: list[Any] = []
        self._removed = False  # set by remove(): the hooks are gone for good
        self._linears: dict[str, nn.Linear] = {}
        self._speaker_index: Tensor | None = None
        self._state: dict = {}
        self._merged: int | None = None  # the speaker row folded into the base weights, if any
        self._fused: dict[str, FusedShrink] = {}  # LoRA key -> its shared-input shrink group
        self._merge_cache = MergeCache()  # one speaker's merged weights, for one-speaker batches
        self._fast_row: int | None = None  # the route's one speaker, served from merged copies when cached
        self._swapped: dict[str, dict[str, Tensor]] = {}  # key -> base tensors while a merged copy is in
        self._epoch = 0  # routed forward passes so far (a fused shrink is never reused across them)
        self._reorder = backend.model_type in REORDERED_SUMS  # merged copies and expand first allowed
        backend.freeze()
        device = backend.device
        self._inject(config)
        self.adapters.to(device)
        # transformers' Whisper attention without its avoidable copies while the adapters are on (off: its own)
        self._hooks += [lean_attention(m, lambda: self._enabled) for m in lean_attention_modules(backend.model)]

    # ------------------------------------------------------------------ injection
    def _inject(self, config: AdapterConfig) -> None:
        self.adapters, targets = _build_modules(self.backend, config)
        for key, target, site in targets:
            adapter = self.adapters[key]
            if config.family in LINEAR_FAMILIES:
                self._linears[key] = target
                if adapter.scales_input:
                    self._hooks.append(target.register_forward_pre_hook(self._input_hook(key, adapter)))
                self._hooks.append(target.register_forward_hook(self._linear_hook(key, adapter)))
                if self._reorder and isinstance(adapter, LoRAAdapter) and type(target).forward is nn.Linear.forward:
                    target.forward = functools.partial(self._lora_forward, key, adapter, target)
                    self._hooks.append(ForwardHandle(target))
            else:
                self._hooks.append(target.register_forward_hook(self._site_hook(site, adapter), with_kwargs=True))
        if config.family == "lora":
            names = {id(lin): name for name, lin in self.backend.linear_layers()}
            key_of = {names[id(lin)]: key for key, lin in self._linears.items()}
            for group in shrink_groups(list(key_of)):
                members = [self.adapters[key_of[n]] for n in group]
                if len({a.lora_a.shape[2] for a in members}) == 1:  # one input width
                    fused = FusedShrink(members)
                    self._fused.update({key_of[n]: fused for n in group})

    def _site_hook(self, site: int, adapter: SiteAdapter):
        def hook(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
            if not self.enabled:
                return None
            if site == 0:
                self._state = {}  # a new forward pass starts at the first site
            x = output[0] if isinstance(output, tuple) else output
            mask = self.backend.site_frame_mask(args, kwargs, x)
            y = adapter(x, mask, self._speaker_index, self._state)
            return (y, *output[1:]) if isinstance(output, tuple) else y

        return hook

    def _input_hook(self, key: str, adapter: LinearAdapter):
        def pre_hook(module: nn.Module, args: tuple) -> tuple | None:
            if not self.enabled or adapter.merged_speaker is not None or key in self._swapped:
                return None
            return (adapter.transform_input(args[0], self._speaker_index), *args[1:])

        return pre_hook

    def _linear_hook(self, key: str, adapter: LinearAdapter):
        def hook(module: nn.Module, args: tuple, output: Tensor) -> Tensor | None:
            if not self.enabled or adapter.merged_speaker is not None or self._expands(key, adapter, args[0]):
                return None
            if key in self._swapped:  # this batch's speaker is merged into the weights
                if torch.is_grad_enabled() and any(p.requires_grad for p in adapter.parameters()):
                    raise AdapterError("this batch is served from merged weights, so no gradient can reach the "
                                       "adapter; enter route() with gradients enabled to train")
                return None
            fused = self._fused.get(key)
            shrunk = None
            if fused is not None and adapter.fusable:
                shrunk = fused.shrunk(adapter, args[0], self._speaker_index, self._epoch)
            return adapter.transform_output(output, args[0], self._speaker_index, shrunk)

        return hook

    def _expands(self, key: str, adapter: LinearAdapter, x: Tensor) -> bool:
        """Whether LoRA layer ``key`` serves input ``x`` expand first (:meth:`LoRAAdapter.linear_forward`):
        a routed mixed bank, inference, adapters on, neither merged nor swapped for a merged copy."""
        return (self._reorder and self._speaker_index is not None and self.enabled and not torch.is_grad_enabled()
                and isinstance(adapter, LoRAAdapter) and adapter.merged_speaker is None and adapter.fusable
                and key not in self._swapped and adapter.lora_a.shape[0] > 1 and x.dtype == adapter.lora_a.dtype)

    def _lora_forward(self, key: str, adapter: LoRAAdapter, linear: nn.Linear, x: Tensor) -> Tensor:
        """The forward of LoRA layer ``key``'s linear (its forward hook then adds nothing more)."""
        if not self._expands(key, adapter, x):
            return nn.Linear.forward(linear, x)
        fused = self._fused.get(key)
        shrunk = None if fused is None else fused.shrunk(adapter, x, self._speaker_index, self._epoch)
        return adapter.linear_forward(linear, x, self._speaker_index, shrunk)

    # ------------------------------------------------------------------ routing and forward
    @property
    def num_speakers(self) -> int:
        return self.config.num_speakers

    @contextlib.contextmanager
    def route(self, speaker_index: Tensor | list[int] | None) -> Iterator[None]:
        """Route the examples of forward passes inside the block to speaker rows.

        Args:
            speaker_index: ``(B,)`` ints in ``[0, num_speakers)``; None means row 0
                for every example (allowed only when there is one speaker).
        """
        prev, prev_fast = self._speaker_index, self._fast_row
        self._speaker_index = self._check_index(speaker_index)
        self._epoch += 1
        try:
            self._set_fast(self._one_row(self._speaker_index))
            yield
        finally:
            self._speaker_index = prev
            self._set_fast(prev_fast)
            for fused in self._fused.values():
                fused.forget()
            for adapter in self.adapters.values():
                if isinstance(adapter, LoRAAdapter):
                    adapter.forget()

    def _one_row(self, index: Tensor | None) -> int | None:
        """The speaker row of a one-speaker batch that may be served from merged weights, else None:
        linear families, inference only (no gradients, no live dropout), adapters on and not merged already."""
        if (not self._reorder or not self._linears or self._merged is not None or not self.enabled
                or torch.is_grad_enabled()):
            return None
        if any(isinstance(m, nn.Dropout) and m.training and m.p > 0 for m in self.adapters.modules()):
            return None
        if index is None:
            return 0
        if not index.numel():
            return None
        first = int(index[0])
        return first if bool((index == first).all()) else None

    def _set_fast(self, row: int | None) -> None:
        """Serve ``row`` from its cached merged weights (when the cache has them), or nobody (None)."""
        for key, old in self._swapped.items():
            swap_params(self._linears[key], old)
        self._swapped = {}
        self._fast_row = row
        if row is None or not self.enabled:
            return
        tensors = self._merge_cache.get(dict(self.adapters.items()), self._linears, row)
        if tensors is not None:
            self._swapped = {key: swap_params(self._linears[key], tensors[key]) for key in self._linears}

    def _check_index(self, index: Tensor | list[int] | None) -> Tensor | None:
        if index is None:
            if self.num_speakers > 1:
                raise AdapterError(f"this bank holds {self.num_speakers} speakers: say which speaker each example is")
            return None
        index = torch.as_tensor(index, dtype=torch.long, device=self.backend.device)
        if index.dim() != 1:
            raise AdapterError(f"speaker index must be 1-D (one per example), got shape {tuple(index.shape)}")
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= self.num_speakers):
            raise AdapterError(f"speaker index out of range [0, {self.num_speakers}): {index.tolist()[:8]}")
        if self._merged is not None and self.enabled and index.numel() and bool((index != self._merged).any()):
            others = sorted(set(index.tolist()) - {self._merged})
            raise AdapterError(f"speaker row {self._merged} is merged into the base weights, so rows {others[:5]} "
                               "cannot be served now; call unmerge() first to serve a mixed batch")
        return index

    def loss(self, batch: Batch, targets: list[str]) -> Tensor:
        """Training loss through the adapters, routed by ``batch.speaker_index``."""
        with self.route(batch.speaker_index):
            return self.backend.loss(batch, targets)

    def log_probs(self, batch: Batch) -> tuple[Tensor, Tensor]:
        with self.route(batch.speaker_index):
            return self.backend.log_probs(batch)

    def transcribe(self, waveforms: list, *, speakers: list[int] | None = None, **kwargs: Any) -> list[str]:
        """Batched transcription; ``speakers[i]`` is the row for ``waveforms[i]``."""
        if self._removed:  # its hooks are gone: it would give the base model's words
            raise AdapterError("this personal model was taken out of the base model (remove() or the end of a "
                               "personalization), so it cannot transcribe: load it again from its file with "
                               "load_submodel(backend, path)")
        if speakers is not None and len(speakers) != len(waveforms):
            raise AdapterError(f"{len(speakers)} speakers for {len(waveforms)} waveforms: give one per waveform")
        if speakers is None:
            self._check_index(None)
        return self.backend.transcribe(waveforms, speakers=speakers, route=self.route, **kwargs)

    # ------------------------------------------------------------------ switches
    @property
    def enabled(self) -> bool:
        return self._enabled

    @enabled.setter
    def enabled(self, on: bool) -> None:
        # while LoRA is merged, "off" must put the exact base weights back (see LoRAAdapter.show_base)
        self._enabled = bool(on)
        self._set_fast(self._fast_row)  # a merged copy is swapped out while off, back in when on again
        for key, lin in self._linears.items():
            self.adapters[key].show_base(lin, not self._enabled)

    def enable(self) -> Adapted:
        self.enabled = True
        return self

    def disable(self) -> Adapted:
        """Turn the adapters off: the backend computes exactly the base model (merged or not)."""
        self.enabled = False
        return self

    @contextlib.contextmanager
    def disabled(self) -> Iterator[None]:
        """Inside the block the backend computes exactly the base model, even while LoRA is merged."""
        prev, self.enabled = self.enabled, False
        try:
            yield
        finally:
            self.enabled = prev

    def merge(self, speaker: int = 0, *, safe: bool = True) -> Adapted:
        """Fold speaker ``speaker``'s LoRA update into the base weights (inference speed-up).

        While merged, only row ``speaker`` can be served (routing another row raises), and
        each adapted linear's base weight is kept once more in memory so that
        :meth:`unmerge` and :meth:`disabled` give the base model exactly.
        """
        if self.config.family not in LINEAR_FAMILIES:
            raise AdapterError(
                f"{self.config.family} adapters are non-linear, so they cannot be merged into the base weights; "
                "only LoRA and vector adapters can. Keep them unmerged (the overhead is small)")
        self._set_fast(None)
        if self._merged is not None:
            raise AdapterError(f"speaker row {self._merged} is already merged; call unmerge() first")
        if not self.enabled:
            raise AdapterError("the adapters are disabled; enable() them before merging")
        if not 0 <= int(speaker) < self.num_speakers:
            raise AdapterError(f"cannot merge speaker row {speaker}: this adapter has rows 0 to {self.num_speakers - 1}")
        done = []
        try:
            for key, lin in self._linears.items():
                self.adapters[key].merge_into(lin, int(speaker), safe=safe)
                done.append(key)
        except AdapterError:
            for key in done:
                self.adapters[key].unmerge_from(self._linears[key])
            raise
        self._merged = int(speaker)
        return self

    def unmerge(self) -> Adapted:
        """Put the exact base weights back (kept at merge time)."""
        self._set_fast(None)
        for key, lin in self._linears.items():
            self.adapters[key].unmerge_from(lin)
        self._merged = None
        return self

    def remove(self) -> ASRBackend:
        """Unmerge and remove every hook; returns the plain backend."""
        self.unmerge()
        self._merge_cache.clear()
        for h in self._hooks:
            h.remove()
        self._hooks.clear()
        self._removed = True
        return self.backend

    # ------------------------------------------------------------------ parameters
    def train(self, mode: bool = True) -> Adapted:
        self.adapters.train(mode)
        return self

    def eval(self) -> Adapted:
        return self.train(False)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.adapters.parameters() if p.requires_grad]

    def per_speaker_parameters(self) -> list[nn.Parameter]:
        seen, out = set(), []
        for m in self.adapters.values():
            for p in m.per_speaker_parameters().values():
                if id(p) not in seen:
                    seen.add(id(p))
                    out.append(p)
        return out

    def parameter_report(self) -> dict[str, Any]:
        """Parameter counts: per speaker, shared, and as a percentage of the base model."""
        per = sum(p.numel() for p in self.per_speaker_parameters()) // self.num_speakers
        total = sum(p.numel() for p in self.adapters.parameters())
        shared = total - per * self.num_speakers
        base = self.backend.num_parameters()
        return {
            "family": self.config.family,
            "per_speaker": per,
            "shared": shared,
            "base": base,
            "per_speaker_percent": 100.0 * per / base,
            "shared_percent": 100.0 * shared / base,
            "trainable": sum(p.numel() for p in self.trainable_parameters()),
            "num_speakers": self.num_speakers,
        }

    def per_speaker_keys(self) -> set[str]:
        """``state_dict`` keys whose tensors have a leading speaker dimension."""
        return {f"{key}.{name}" for key, m in self.adapters.items() for name in m.per_speaker_names}

    def save(self, path: str | Path, *, speaker_ids: list[str], specaugment: dict | None = None,
             training: dict | None = None, metrics: dict | None = None) -> Path:
        """Write the adapter weights and metadata to a Submodel file (safetensors)."""
        from workbench.adapters.io import write_submodel

        if len(speaker_ids) != self.num_speakers:
            raise AdapterError(f"{len(speaker_ids)} speaker ids for {self.num_speakers} adapter rows")
        if self._merged is not None:
            raise AdapterError("unmerge the adapters before saving them")
        return write_submodel(path, self.state_dict(), config=self.config.to_dict(), base_model=self.backend.name,
                              base_fingerprint=self.base_fingerprint, speaker_ids=speaker_ids,
                              specaugment=specaugment, training=training, metrics=metrics)

    def load(self, path: str | Path) -> dict[str, Any]:
        """Load a Submodel file written for this base model and layout; returns its metadata."""
        from workbench.adapters.io import check_base, read_submodel

        tensors, meta = read_submodel(path)
        check_base(meta, base_model=self.backend.name, base_fingerprint=self.base_fingerprint)
        if meta["config"] != self.config.to_dict():
            raise AdapterError(f"{getattr(path, 'name', path)} holds a {meta['family']} adapter with settings "
                               f"{meta['config']}, but this one is {self.config.to_dict()}; "
                               "inject the file's own config (see load_submodel)")
        self.load_state_dict(tensors)
        return meta

    def state_dict(self) -> dict[str, Tensor]:
        """Adapter weights only (never the base model's)."""
        return {k: v.detach() for k, v in self.adapters.state_dict().items()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Load adapter weights; names and shapes must match exactly (clear error otherwise)."""
        own = self.adapters.state_dict()
        missing = sorted(set(own) - set(state))
        extra = sorted(set(state) - set(own))
        if missing or extra:
            raise AdapterError(
                f"these adapter weights do not fit this adapter layout: missing {missing[:3]}, unexpected "
                f"{extra[:3]} — it was made for another adapter family, size or base model")
        wrong = [(k, tuple(state[k].shape), tuple(v.shape)) for k, v in own.items() if state[k].shape != v.shape]
        if wrong:
            k, got, want = wrong[0]
            raise AdapterError(f"adapter weight {k!r} has shape {got} but this layout needs {want} "
                               f"({len(wrong)} mismatched tensors): was it trained with another config?")
        self._set_fast(None)
        self.adapters.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})


def _chosen_sites(backend: ASRBackend, config: AdapterConfig) -> list[tuple[str, nn.Module]]:
    sites = backend.adapter_sites()
    if not sites:
        raise AdapterError(f"the base model {backend.name!r} exposes no adapter sites")
    if config.top_layers > len(sites):
        raise AdapterError(f"top_layers={config.top_layers} but {backend.name!r} has {len(sites)} blocks")
    return sites[-config.top_layers:] if config.top_layers else sites


def _build_modules(backend: ASRBackend,
                   config: AdapterConfig) -> tuple[nn.ModuleDict, list[tuple[str, nn.Module, int]]]:
    """The adapter modules for ``config`` on ``backend`` and where each attaches.

    Returns:
        ``(modules, targets)``: ``targets`` lists ``(key in modules, the backend module to hook,
        site index)``: encoder blocks for site adapters (HRA: one shared module, key
        ``"hra"``), ``nn.Linear`` layers for LoRA. Nothing is hooked here, so the same
        call under ``torch.device("meta")`` gives the layout without allocating it.
    """
    modules, targets = nn.ModuleDict(), []
    if config.family in LINEAR_FAMILIES:
        blocks = tuple(name + "." for name, _ in _chosen_sites(backend, config))
        blocks += ("decoder.",) if config.decoder else ()  # seq2seq backends (Whisper) list decoder linears too
        for name, lin in backend.linear_layers():
            module = _linear_adapter(config, name, lin) if name.startswith(blocks) else None
            if module is not None:
                key = name.replace(".", "_")
                modules[key] = module
                targets.append((key, lin, 0))
        if not targets:
            what = f"{config.targets} linear layers" if config.family == "lora" else f"linear layers for {config.mode}"
            raise AdapterError(f"no {what} found in {backend.name!r} for the {config.family} adapter")
        return modules, targets
    sites = _chosen_sites(backend, config)
    module_cls, dim = REGISTRY[config.family][1], backend.hidden_size
    if config.family == "hra":
        modules["hra"] = module_cls(dim, config, site=0, num_sites=len(sites))
    for i, (name, block) in enumerate(sites):
        key = "hra" if config.family == "hra" else name.replace(".", "_")
        if key not in modules:
            modules[key] = module_cls(dim, config, site=i, num_sites=len(sites))
        targets.append((key, block, i))
    return modules, targets


def _linear_adapter(config: AdapterConfig, name: str, lin: nn.Linear) -> LinearAdapter | None:
    """The adapter this linear-family ``config`` places on the linear layer ``name``, or None."""
    if isinstance(config, LoRAConfig):
        if config.targets == "all" or (config.targets == "attention") == _is_attention(name):
            return LoRAAdapter(lin.in_features, lin.out_features, config)
        return None
    role = vector_role(name, lin, config.mode)
    return None if role is None else VectorAdapter(lin.in_features, lin.out_features, config, role)


def layout_shapes(backend: ASRBackend, config: AdapterConfig) -> dict[str, tuple[int, ...]]:
    """``state_dict`` key -> shape of the adapter ``config`` would inject, **without allocating it**.

    The modules are built for one speaker on the meta device (no memory, no loop over
    speakers); per-speaker tensors then get ``config.num_speakers`` rows.
    """
    try:
        with torch.device("meta"):
            modules, _ = _build_modules(backend, config.replace(num_speakers=1))
    except AdapterError:
        raise
    except (TypeError, ValueError, RuntimeError, OverflowError) as err:
        raise AdapterError(f"these {config.family} adapter settings cannot be built on {backend.name!r} "
                           f"({err}); choose other settings") from None
    per = {f"{key}.{name}" for key, m in modules.items() for name in m.per_speaker_names}
    return {k: ((config.num_speakers, *v.shape[1:]) if k in per else tuple(v.shape))
            for k, v in modules.state_dict().items()}


def fitting_config(backend: ASRBackend, meta: dict[str, Any], tensors: dict[str, Tensor], what: str) -> AdapterConfig:
    """The config in a Submodel file's metadata, checked against its tensors **before** anything is built.

    The metadata is untrusted: a file whose settings say ``rank = 1000000`` while its
    weights have rank 4 would otherwise allocate gigabytes. The settings are checked for
    type and size (:meth:`AdapterConfig._check_field_types`), then the layout they
    describe (:func:`layout_shapes`, computed without memory) must match the stored
    tensors' names and shapes exactly.

    Args:
        meta, tensors: from :func:`workbench.adapters.io.read_submodel`.
        what: the file's name, for messages.
    """
    from workbench.adapters.io import _DAMAGED

    try:
        config = config_from_dict(meta["config"])
    except (AdapterError, TypeError) as err:  # TypeError: e.g. a value the dataclass cannot take
        raise AdapterError(f"{what}: its adapter settings are not valid ({err}); {_DAMAGED}") from None
    if config.num_speakers != len(meta["speaker_ids"]):
        raise AdapterError(f"{what}: the settings say {config.num_speakers} speakers but the file names "
                           f"{len(meta['speaker_ids'])}; {_DAMAGED}")
    want = layout_shapes(backend, config)
    missing, extra = sorted(set(want) - set(tensors)), sorted(set(tensors) - set(want))
    if missing or extra:
        raise AdapterError(f"{what}: its {config.family} settings need weights it does not hold (missing "
                           f"{missing[:2]}, unexpected {extra[:2]}); it was made for another adapter layout or base "
                           f"model, or {_DAMAGED}")
    wrong = [(k, tuple(tensors[k].shape), shape) for k, shape in want.items() if tuple(tensors[k].shape) != shape]
    if wrong:
        k, got, need = wrong[0]
        raise AdapterError(f"{what}: its settings ({_settings(meta['config'])}) do not match its stored weights: "
                           f"{k!r} is {got} but the settings need {need} ({len(wrong)} tensors differ); {_DAMAGED}")
    return config


def _settings(config: dict) -> str:
    text = ", ".join(f"{k}={v!r}" for k, v in config.items() if k != "family")
    return text if len(text) <= 160 else text[:159] + "…"


def load_submodel(backend: ASRBackend, path: str | Path) -> tuple[Adapted, dict[str, Any]]:
    """Inject the adapter described in a Submodel file and load its weights.

    Returns:
        ``(adapted, metadata)``. Refuses a file made for another base model.
    """
    from workbench.adapters.io import check_base, read_submodel

    tensors, meta = read_submodel(path)
    check_base(meta, base_model=backend.name, base_fingerprint=backend.fingerprint())
    adapted = inject(backend, fitting_config(backend, meta, tensors, Path(path).name))
    adapted.window = meta["window"]  # Whisper decodes on the window it was trained on (WhisperBackend.encoding_window)
    try:
        adapted.load_state_dict(tensors)
    except AdapterError:
        adapted.remove()
        raise
    return adapted, meta


def inject(backend: ASRBackend, config: AdapterConfig) -> Adapted:
    """Place the adapters described by ``config`` into ``backend`` (frozen) and return the handle.

    A backend carries at most one live injection: call :meth:`Adapted.remove`
    before injecting another family.
    """
    if getattr(backend, "_adapted", None) is not None and backend._adapted._hooks:
        raise AdapterError("this base model already has adapters injected; call .remove() on them first")
    adapted = Adapted(backend, config)
    backend._adapted = adapted
    return adapted
