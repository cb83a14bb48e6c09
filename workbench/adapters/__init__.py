"""Adapters: small trainable modules in a frozen base model; five families, one interface.

Each family is one module with a config dataclass and a banked ``nn.Module``:

- ``residual``: bottleneck residual adapter after each encoder block;
- ``conv``: ConvAdapter (padding-aware 1-D convs + squeeze-excitation);
- ``lora``: LoRA on the encoder's attention/FFN linear layers (mergeable);
- ``hra``: Hierarchical Recurrent Adapter (shared controller + per-speaker heads),
  optionally in a learned speaker-embedding space;
- ``vector``: per-speaker element-wise scalings around linear layers ((IA)^3 or
  rank-1 FLoRA; mergeable), the cheapest to serve in mixed batches.

:func:`inject` places them into a frozen backend and returns the :class:`Adapted`
handle (the base model with adapters injected). One speaker's trained adapter
weights, saved with their metadata, are a **Submodel** (:mod:`workbench.adapters.io`);
a :class:`SubmodelBank` serves many speakers' Submodels in one forward pass.
"""

from workbench.adapters.adapted import REGISTRY, Adapted, config_from_dict, inject, load_submodel
from workbench.adapters.bank import SubmodelBank, warm_start
from workbench.adapters.base import AdapterConfig
from workbench.adapters.conv import ConvAdapterConfig
from workbench.adapters.hra import HRAConfig
from workbench.adapters.lora import LoRAConfig
from workbench.adapters.residual import ResidualConfig
from workbench.adapters.vector import VectorConfig

__all__ = [
    "REGISTRY",
    "Adapted",
    "AdapterConfig",
    "ConvAdapterConfig",
    "HRAConfig",
    "LoRAConfig",
    "ResidualConfig",
    "SubmodelBank",
    "VectorConfig",
    "config_from_dict",
    "inject",
    "load_submodel",
    "warm_start",
]
