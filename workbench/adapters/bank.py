"""SubmodelBank: many speakers' Submodels stacked, served in one forward pass.

Every per-speaker parameter already has a leading speaker dimension (see
:mod:`workbench.adapters.base`), so a bank is one :class:`Adapted` with
``num_speakers = N`` plus the list of speaker ids that name its rows. A batch
whose examples each belong to a different speaker costs one forward pass: each
example's weights are gathered by its row index and applied with batched
matmuls (the Lingvo/Praxis design), never a loop over speakers.

Shared parameters (HRA's controller, the embedding-space generator) exist once.
Stacking single-speaker Submodels into a bank therefore requires their shared
parameters to be identical; otherwise the error says which ones differ.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from workbench.adapters.adapted import Adapted, fitting_config, inject
from workbench.adapters.base import AdapterConfig
from workbench.adapters.io import check_base, read_submodel
from workbench.errors import AdapterError

if TYPE_CHECKING:  # annotations only: the base models sit above the adapters
    from workbench.models import ASRBackend

__all__ = ["SubmodelBank", "warm_start"]


def _layout_key(config: dict) -> dict:
    return {k: v for k, v in config.items() if k != "num_speakers"}


class SubmodelBank:
    """``N`` speakers' Submodels on one frozen backend.

    Args:
        backend: the frozen base model.
        config: adapter config; its ``num_speakers`` is replaced by ``len(speaker_ids)``.
        speaker_ids: one de-identified id per row, unique.
    """

    def __init__(self, backend: ASRBackend, config: AdapterConfig, speaker_ids: Sequence[str]) -> None:
        ids = [str(s) for s in speaker_ids]
        if not ids:
            raise AdapterError("a Submodel bank needs at least one speaker")
        if len(set(ids)) != len(ids):
            dup = sorted({s for s in ids if ids.count(s) > 1})
            raise AdapterError(f"speaker ids must be unique in a bank; repeated: {dup[:5]}")
        self.speaker_ids = ids
        self.adapted: Adapted = inject(backend, config.replace(num_speakers=len(ids)))

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_files(cls, backend: ASRBackend, paths: Sequence[str | Path]) -> SubmodelBank:
        """Stack Submodel files (each one or more speakers) into one bank."""
        if not paths:
            raise AdapterError("no Submodel files given")
        loaded = []
        for p in paths:
            tensors, meta = read_submodel(p)
            check_base(meta, base_model=backend.name, base_fingerprint=backend.fingerprint(), what=str(p))
            fitting_config(backend, meta, tensors, Path(p).name)  # before anything is allocated
            loaded.append((Path(p), tensors, meta))
        first = loaded[0][2]
        for p, _, meta in loaded[1:]:
            if _layout_key(meta["config"]) != _layout_key(first["config"]):
                raise AdapterError(f"{p.name} is a {meta['family']} adapter with settings {meta['config']}, "
                                   f"unlike {loaded[0][0].name} ({first['config']}); a bank holds one layout")
        ids = [sid for _, _, meta in loaded for sid in meta["speaker_ids"]]
        bank = cls(backend, fitting_config(backend, first, loaded[0][1], loaded[0][0].name), ids)
        bank.adapted.load_state_dict(bank._stack([(p, t) for p, t, _ in loaded]))
        return bank

    def _stack(self, items: list[tuple[Path, dict[str, Tensor]]]) -> dict[str, Tensor]:
        per = self.adapted.per_speaker_keys()
        out: dict[str, Tensor] = {}
        first_path, first = items[0]
        for key in first:
            if key in per:
                out[key] = torch.cat([t[key] for _, t in items], dim=0)
            else:
                for p, t in items[1:]:
                    if key not in t or not torch.equal(t[key], first[key]):
                        raise AdapterError(
                            f"{p.name} and {first_path.name} were trained with different shared weights "
                            f"({key}); a bank shares them. Train these speakers together, or with the "
                            "shared part frozen (HRA: train_controller=False from one shared controller)")
                out[key] = first[key]
        return out

    # ------------------------------------------------------------------ rows
    @property
    def num_speakers(self) -> int:
        return len(self.speaker_ids)

    def index(self, speaker_ids: Sequence[str]) -> Tensor:
        """Row indices ``(B,)`` of the given speaker ids (clear error for an unknown id)."""
        pos = {s: i for i, s in enumerate(self.speaker_ids)}
        missing = [s for s in speaker_ids if s not in pos]
        if missing:
            raise AdapterError(f"speaker(s) {missing[:5]} are not in this bank; it holds {self.num_speakers} "
                               f"speakers, e.g. {self.speaker_ids[:3]}")
        return torch.tensor([pos[s] for s in speaker_ids], dtype=torch.long)

    def transcribe(self, waveforms: list, speaker_ids: Sequence[str], **kwargs: Any) -> list[str]:
        """Transcribe a mixed batch: ``waveforms[i]`` with speaker ``speaker_ids[i]``'s Submodel."""
        return self.adapted.transcribe(waveforms, speakers=self.index(speaker_ids).tolist(), **kwargs)

    def _rows(self, rows: Tensor) -> dict[str, Tensor]:
        per = self.adapted.per_speaker_keys()
        return {k: (v.index_select(0, rows) if k in per else v).clone() for k, v in self.adapted.state_dict().items()}

    def _rebuild(self, ids: list[str], state: dict[str, Tensor]) -> None:
        backend, config = self.adapted.backend, self.adapted.config
        self.adapted.remove()
        self.speaker_ids = ids
        self.adapted = inject(backend, config.replace(num_speakers=len(ids)))
        self.adapted.load_state_dict(state)

    def add_speakers(self, path: str | Path) -> list[str]:
        """Append the speaker row(s) of a Submodel file; returns the added ids."""
        tensors, meta = read_submodel(path)
        backend = self.adapted.backend
        check_base(meta, base_model=backend.name, base_fingerprint=backend.fingerprint(), what=str(path))
        fitting_config(backend, meta, tensors, Path(path).name)
        if _layout_key(meta["config"]) != _layout_key(self.adapted.config.to_dict()):
            raise AdapterError(f"{Path(path).name} has adapter settings {meta['config']}, but this bank uses "
                               f"{self.adapted.config.to_dict()}")
        clash = sorted(set(meta["speaker_ids"]) & set(self.speaker_ids))
        if clash:
            raise AdapterError(f"speaker(s) {clash[:5]} are already in the bank; remove them first to replace them")
        current = self.adapted.state_dict()
        state = self._stack([(Path("bank"), current), (Path(path), tensors)])
        self._rebuild(self.speaker_ids + list(meta["speaker_ids"]), state)
        return list(meta["speaker_ids"])

    def remove_speaker(self, speaker_id: str) -> None:
        if self.num_speakers == 1:
            raise AdapterError("cannot remove the last speaker of a bank")
        keep = [i for i, s in enumerate(self.speaker_ids) if s != speaker_id]
        if len(keep) == self.num_speakers:
            self.index([speaker_id])  # raises the unknown-speaker error
        self._rebuild([self.speaker_ids[i] for i in keep], self._rows(torch.tensor(keep)))

    def export_speaker(self, speaker_id: str, path: str | Path, **metadata: Any) -> Path:
        """Write one speaker's Submodel (its rows plus the shared weights) to ``path``."""
        from workbench.adapters.io import write_submodel

        rows = self.index([speaker_id])
        config = self.adapted.config.replace(num_speakers=1).to_dict()
        return write_submodel(path, self._rows(rows), config=config, base_model=self.adapted.backend.name,
                              base_fingerprint=self.adapted.base_fingerprint, speaker_ids=[speaker_id], **metadata)

    def save(self, path: str | Path, **metadata: Any) -> Path:
        """Write the whole bank to one Submodel file."""
        return self.adapted.save(path, speaker_ids=self.speaker_ids, **metadata)


def warm_start(backend: ASRBackend, bank_file: str | Path, *, z: Tensor | None = None,
               train_shared: bool = False) -> Adapted:
    """A new speaker's Submodel that starts inside a trained speaker-embedding space.

    The bank file must hold an HRA bank in the embedding space (``space="embedding"``).
    The new speaker gets the bank's shared controller and generator and starts at
    ``z`` (default: the mean of the bank's speaker vectors; pass e.g. the mean of
    its nearest speakers' vectors, see ``workbench.embeddings``). With
    ``train_shared=False`` only ``z`` (``embed_dim`` numbers) is trained, which
    needs very few utterances.

    Returns:
        a one-speaker :class:`Adapted` ready for the :class:`~workbench.trainer.Trainer`.
    """
    tensors, meta = read_submodel(bank_file)
    check_base(meta, base_model=backend.name, base_fingerprint=backend.fingerprint(), what=str(bank_file))
    cfg = fitting_config(backend, meta, tensors, Path(bank_file).name)
    if cfg.family != "hra" or getattr(cfg, "space", "") != "embedding":
        raise AdapterError(f"{Path(bank_file).name} is a {cfg.family} bank without a speaker-embedding space; "
                           "warm starts need HRAConfig(space='embedding')")
    z_bank = tensors["hra.z"]
    start = z_bank.mean(0, keepdim=True) if z is None else torch.as_tensor(z, dtype=z_bank.dtype).reshape(1, -1)
    if start.shape[1] != z_bank.shape[1]:
        raise AdapterError(f"z has {start.shape[1]} numbers but this space has {z_bank.shape[1]}")
    adapted = inject(backend, cfg.replace(num_speakers=1, train_controller=train_shared))
    state = {k: v for k, v in tensors.items() if k != "hra.z"}
    state["hra.z"] = start
    adapted.load_state_dict(state)
    return adapted
