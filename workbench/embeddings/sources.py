"""One function for the per-utterance sources: :func:`embed_utterances` (d-vectors or encoder pooling).

``"encoder"`` pools one encoder block of the base ASR model
(:meth:`ASRBackend.frame_outputs`): mean and standard deviation over the
**true** frames, ``(2 * hidden_size,)``. ``"dvector"`` is
:mod:`workbench.embeddings.dvector`. ``"learned"`` vectors belong to speakers,
not utterances (:func:`workbench.embeddings.search.learned_speaker_vectors`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from workbench.constants import SAMPLE_RATE
from workbench.embeddings._threads import _torch_threads
from workbench.embeddings.dvector import DVECTOR_DIM, _embed_dvector, dvector_fingerprint
from workbench.errors import EmbeddingError

if TYPE_CHECKING:  # pragma: no cover
    from workbench.models import ASRBackend

__all__ = ["SOURCES", "embed_utterances"]

SOURCES = ("dvector", "encoder", "learned")


def _layer_index(backend: ASRBackend, layer: int) -> int:
    n = len(backend.adapter_sites())
    if not -n <= int(layer) < n:
        raise EmbeddingError(f"layer {layer} does not exist: {backend.name} has {n} encoder blocks "
                             f"(0..{n - 1}, or -1 for the last)")
    return int(layer) % n


@torch.no_grad()
def _embed_encoder(waves: list[np.ndarray], backend: ASRBackend, layer: int, batch_size: int) -> np.ndarray:
    from workbench.models.base import MAX_CHUNK_S, split_long_waveform

    pieces, owner = [], []
    for i, w in enumerate(waves):  # featurize() refuses > 30 s: pool over 20 s pieces instead
        for p in split_long_waveform(w, SAMPLE_RATE, MAX_CHUNK_S):
            pieces.append(p)
            owner.append(i)
    dim = int(backend.hidden_size)
    s1 = np.zeros((len(waves), dim))
    s2 = np.zeros((len(waves), dim))
    count = np.zeros(len(waves))
    order = np.argsort([-len(p) for p in pieces], kind="stable")  # similar lengths share a batch
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        outs = backend.frame_outputs([pieces[i] for i in idx], layer=layer)
        for i, frames in zip(idx, outs, strict=True):
            f = frames.double().cpu().numpy()  # (T', D) true frames only
            s1[owner[i]] += f.sum(0)
            s2[owner[i]] += (f**2).sum(0)
            count[owner[i]] += f.shape[0]
    mean = s1 / count[:, None]
    std = np.sqrt(np.maximum(s2 / count[:, None] - mean**2, 0.0))
    return np.concatenate([mean, std], axis=1).astype(np.float32)


# --------------------------------------------------------------------------- #
# One function for the sources
# --------------------------------------------------------------------------- #


def _check_source(source: str) -> str:
    if source == "learned":
        raise EmbeddingError(
            "learned Submodel vectors belong to speakers, not utterances: use learned_speaker_vectors(bank) "
            "(or nearest_speakers(..., bank)) instead of embedding recordings")
    if source not in SOURCES:
        raise EmbeddingError(f"unknown embedding source {source!r}; choose one of {', '.join(SOURCES)}")
    return source


def embed_utterances(
    waveforms: Sequence[np.ndarray],
    source: str = "dvector",
    *,
    backend: ASRBackend | None = None,
    layer: int = -1,
    sample_rate: int = SAMPLE_RATE,
    batch_size: int = 16,
    preprocess: bool = True,
    threads: int | None = None,
) -> np.ndarray:
    """One embedding per utterance.

    Args:
        waveforms: list of ``(S_i,)`` float arrays at ``sample_rate`` Hz.
        source (str, default ``"dvector"``): ``"dvector"`` (pretrained GE2E,
            256-D, unit length; needs ``resemblyzer``) or ``"encoder"`` (mean and
            std over true frames of encoder block ``layer`` of ``backend``,
            ``2 * hidden_size``-D). ``"learned"`` vectors are per speaker: see
            :func:`learned_speaker_vectors`.
        backend: the base model, for ``"encoder"``.
        layer (int, default -1): encoder block for ``"encoder"`` (-1 = last).
        sample_rate (int, default 16000): rate of ``waveforms``; others are resampled.
        batch_size (int, default 16): utterances per forward pass (``"encoder"``).
        preprocess (bool, default True): ``"dvector"`` only: normalize the volume
            and shorten long silences first (as ``resemblyzer.preprocess_wav``).
        threads (int | None): torch intra-op threads for this call (None: torch's
            setting). On a 2-core machine shared with other work, ``threads=1``
            ran the d-vector LSTM 2.7x faster than 2 threads (every LSTM time
            step is a thread barrier); on an idle machine more threads help.

    Returns:
        ``(N, D)`` float32.

    Raises:
        EmbeddingError: unknown source, missing backend or bad layer.
        AudioError: empty batch, empty or non-finite waveform.
        MissingDependencyError: ``"dvector"`` without resemblyzer installed.
    """
    from workbench.models.base import check_waveforms

    source = _check_source(source)
    waves = check_waveforms(waveforms, sample_rate=sample_rate)
    if int(sample_rate) != SAMPLE_RATE:
        from workbench.audio import resample

        waves = [resample(w, int(sample_rate), SAMPLE_RATE) for w in waves]
    if source == "encoder" and backend is None:
        raise EmbeddingError("source='encoder' pools a base model's frames: pass backend=load_base_model('tiny') "
                             "(or any ASR backend)")
    with _torch_threads(threads):
        if source == "dvector":
            return _embed_dvector(waves, preprocess=preprocess)
        return _embed_encoder(waves, backend, _layer_index(backend, layer), max(1, int(batch_size)))


def _source_tag(source: str, backend: ASRBackend | None, layer: int) -> tuple[str, dict[str, Any]]:
    """Cache file stem and the metadata a cache must match."""
    if source == "dvector":
        fp = dvector_fingerprint()
        return f"dvector-{fp[:12]}", {"source": source, "fingerprint": fp, "dim": DVECTOR_DIM}
    if backend is None:
        raise EmbeddingError("source='encoder' pools a base model's frames: pass backend=load_base_model('tiny')")
    li = _layer_index(backend, layer)
    fp = backend.fingerprint()
    return (f"encoder-L{li}-{fp[:12]}",
            {"source": source, "fingerprint": fp, "model": backend.name, "layer": li, "dim": 2 * backend.hidden_size})
