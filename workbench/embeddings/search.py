"""Per-speaker vectors and the nearest-speaker search: speaker means, sessions, learned ``z``, warm starts.

Distances are **cosine distances** (``1 - cos``, in [0, 2]) everywhere.

>>> import numpy as np
>>> cosine_distances(np.array([[1.0, 0.0]]), np.array([[1.0, 0.0], [0.0, 2.0]])).tolist()
[[0.0, 1.0]]
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from workbench.embeddings.table import UtteranceEmbeddings
from workbench.errors import EmbeddingError

__all__ = [
    "cosine_distances",
    "learned_speaker_vectors",
    "nearest_speakers",
    "session_embeddings",
    "speaker_embeddings",
    "warm_start_z",
]


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _vectors_and_labels(embeddings: UtteranceEmbeddings | np.ndarray, labels: Sequence[str] | None) -> tuple[np.ndarray, list[str]]:
    if isinstance(embeddings, UtteranceEmbeddings):
        return embeddings.vectors, list(embeddings.speaker_ids if labels is None else labels)
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2:
        raise EmbeddingError(f"expected an (N, D) array of embeddings, got shape {x.shape}")
    if labels is None or len(labels) != len(x):
        raise EmbeddingError(f"need one speaker label per embedding: {len(x)} embeddings, "
                             f"{'no' if labels is None else len(labels)} labels")
    return x, [str(s) for s in labels]


def speaker_embeddings(embeddings: UtteranceEmbeddings | np.ndarray, speaker_ids: Sequence[str] | None = None) -> tuple[list[str], np.ndarray]:
    """One vector per speaker: the mean of its unit-length utterance embeddings, L2-normalized.

    Args:
        embeddings: :class:`UtteranceEmbeddings`, or an ``(N, D)`` array with ``speaker_ids``.
        speaker_ids: ``N`` labels (ignored for :class:`UtteranceEmbeddings`).

    Returns:
        ``(ids, S)``: distinct ids in order of first appearance and ``(len(ids), D)`` float32.
    """
    x, labels = _vectors_and_labels(embeddings, speaker_ids)
    ids = list(dict.fromkeys(labels))
    lab = np.array(labels)
    u = _unit(x)
    return ids, _unit(np.stack([u[lab == s].mean(0) for s in ids])).astype(np.float32)


def session_embeddings(embeddings: UtteranceEmbeddings, speaker_id: str) -> tuple[list[str], np.ndarray]:
    """One vector per recording session of one speaker (sorted by session label), for trajectories.

    Returns:
        ``(sessions, V)`` with ``V`` ``(n_sessions, D)`` float32, unit length.
    """
    rows = [i for i, s in enumerate(embeddings.speaker_ids) if s == speaker_id]
    if not rows:
        raise EmbeddingError(f"speaker {speaker_id!r} is not in these embeddings; "
                             f"they hold {embeddings.speakers[:5]}")
    sub = embeddings.select(rows)
    ids, vecs = speaker_embeddings(sub.vectors, sub.sessions)
    order = sorted(range(len(ids)), key=lambda i: ids[i])
    return [ids[i] for i in order], vecs[order]


def learned_speaker_vectors(source: Any) -> tuple[list[str], np.ndarray]:
    """The learned Submodel-space vectors ``z_s`` of trained speakers.

    Args:
        source: a :class:`~workbench.adapters.SubmodelBank`, or the path of a
            Submodel file (or a list of paths) trained with
            ``HRAConfig(space="embedding")``. Files are stacked; they must share
            the generator (vectors from different generators are not comparable).

    Returns:
        ``(ids, Z)``: speaker ids and ``(N, embed_dim)`` float32.
    """
    if hasattr(source, "adapted") and hasattr(source, "speaker_ids"):
        adapters = source.adapted.adapters
        if "hra" not in adapters or not hasattr(adapters["hra"], "z"):
            raise EmbeddingError("this bank has no learned speaker space; train it with HRAConfig(space='embedding')")
        return list(source.speaker_ids), adapters["hra"].z.detach().cpu().numpy().astype(np.float32)
    from workbench.adapters.io import read_submodel

    paths = [source] if isinstance(source, (str, os.PathLike)) else list(source)
    if not paths:
        raise EmbeddingError("no Submodel files given")
    ids: list[str] = []
    zs, shared0, first = [], None, None
    for p in paths:
        tensors, meta = read_submodel(p)
        if "hra.z" not in tensors:
            raise EmbeddingError(f"{Path(p).name} is a {meta.get('family')} Submodel without a learned speaker "
                                 "space; train with HRAConfig(space='embedding')")
        shared = {k: v for k, v in tensors.items() if k != "hra.z"}
        if shared0 is None:
            shared0, first = shared, Path(p).name
        elif shared.keys() != shared0.keys() or any(not torch.equal(v, shared0[k]) for k, v in shared.items()):
            raise EmbeddingError(f"{Path(p).name} and {first} have different generators, so their speaker "
                                 "vectors are not comparable; use Submodels trained in one bank")
        ids += list(meta["speaker_ids"])
        zs.append(tensors["hra.z"].float().numpy())
    if len(set(ids)) != len(ids):
        raise EmbeddingError(f"speaker ids repeat across the files: {sorted({s for s in ids if ids.count(s) > 1})}")
    return ids, np.concatenate(zs).astype(np.float32)


# --------------------------------------------------------------------------- #
# Distances, nearest speakers, warm starts
# --------------------------------------------------------------------------- #


def cosine_distances(a: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """``(N, M)`` cosine distances ``1 - cos`` in [0, 2] between rows of ``a (N, D)`` and ``b (M, D)`` (default a)."""
    ua = _unit(np.atleast_2d(a))
    ub = ua if b is None else _unit(np.atleast_2d(b))
    if ua.shape[1] != ub.shape[1]:
        raise EmbeddingError(f"cannot compare {ua.shape[1]}-D with {ub.shape[1]}-D embeddings: use one source")
    return np.clip(1.0 - ua @ ub.T, 0.0, 2.0)


def _reference_table(reference: Any) -> tuple[list[str], np.ndarray]:
    if isinstance(reference, UtteranceEmbeddings):
        return speaker_embeddings(reference)
    if isinstance(reference, Mapping):
        if not reference:
            raise EmbeddingError("the reference table is empty")
        return [str(k) for k in reference], np.stack([np.asarray(v, dtype=np.float64) for v in reference.values()])
    if isinstance(reference, tuple) and len(reference) == 2 and not isinstance(reference[0], (str, os.PathLike)):
        ids, mat = list(reference[0]), np.atleast_2d(np.asarray(reference[1], dtype=np.float64))
        if len(ids) != len(mat):
            raise EmbeddingError(f"{len(ids)} speaker ids but {len(mat)} reference vectors")
        return ids, mat
    return learned_speaker_vectors(reference)


def nearest_speakers(
    embedding: np.ndarray, reference: Any, k: int = 3, *, exclude: Iterable[str] = ()
) -> list[tuple[str, float]]:
    """The ``k`` reference speakers nearest to ``embedding``, by cosine distance.

    Args:
        embedding: ``(D,)`` one speaker's (or utterance's) embedding.
        reference: the speakers to search: a ``{speaker_id: (D,) vector}`` mapping,
            an ``(ids, (N, D) matrix)`` pair, :class:`UtteranceEmbeddings` (speaker
            means), or a SubmodelBank / Submodel file(s) (learned ``z``; then
            ``embedding`` must be a ``z`` too).
        k (int, default 3): how many.
        exclude: speaker ids to leave out (e.g. the speaker itself).

    Returns:
        ``[(speaker_id, distance), ...]``, nearest first, at most ``k``.
    """
    ids, mat = _reference_table(reference)
    skip = set(exclude)
    keep = [i for i, s in enumerate(ids) if s not in skip]
    if not keep:
        raise EmbeddingError("no reference speakers left to compare with")
    e = np.asarray(embedding, dtype=np.float64).reshape(-1)
    if e.shape[0] != mat.shape[1]:
        raise EmbeddingError(f"the embedding has {e.shape[0]} numbers but the reference speakers have "
                             f"{mat.shape[1]}: compare embeddings of the same source (d-vector with d-vector, "
                             "learned z with a bank)")
    d = cosine_distances(e[None], mat[keep])[0]
    order = np.argsort(d, kind="stable")[: max(0, int(k))]
    return [(ids[keep[i]], float(d[i])) for i in order]


def warm_start_z(
    embedding: np.ndarray | None, reference_embeddings: Any, bank_z: Any, k: int = 3
) -> np.ndarray:
    """Where a new speaker's Submodel vector ``z`` should start.

    The distance-weighted mean (weights ``1 / distance``) of the ``z`` of the
    ``k`` trained speakers whose embeddings are nearest to the new speaker's.
    With ``embedding=None`` or ``k=0``: the mean ``z`` of the bank. Pass the
    result to :func:`workbench.adapters.warm_start` as ``z=``.

    Args:
        embedding: ``(D,)`` the new speaker's embedding (e.g. a d-vector from a few takes), or None.
        reference_embeddings: the trained speakers' embeddings in the same space
            as ``embedding`` (any form :func:`nearest_speakers` takes, not a bank).
        bank_z: the trained speakers' learned vectors: ``(ids, Z)`` from
            :func:`learned_speaker_vectors`, or a SubmodelBank / Submodel file(s).
        k (int, default 3): neighbours to average.

    Returns:
        ``(embed_dim,)`` float32.
    """
    z_ids, z = _reference_table(bank_z)
    z = np.atleast_2d(np.asarray(z, dtype=np.float64))
    if embedding is None or int(k) <= 0:
        return z.mean(0).astype(np.float32)
    ref_ids, ref = _reference_table(reference_embeddings)
    common = [i for i, s in enumerate(ref_ids) if s in set(z_ids)]
    if not common:
        raise EmbeddingError(f"none of the reference speakers ({ref_ids[:3]}...) is in the bank "
                             f"({z_ids[:3]}...); embed the bank's own speakers as references")
    near = nearest_speakers(embedding, ([ref_ids[i] for i in common], ref[common]), k=int(k))
    w = np.array([1.0 / max(d, 1e-6) for _, d in near])
    rows = np.stack([z[z_ids.index(s)] for s, _ in near])
    return ((w / w.sum()) @ rows).astype(np.float32)
