"""Speaker folders: per-utterance embeddings of every ``ok`` take, cached on disk (:func:`embed_corpora`).

The cache is ``<speaker>/embeddings/<source>[-L<layer>]-<fingerprint12>.npz``,
keyed by the sha1 of each utterance's float32 samples (:func:`audio_hash`) and
by the weights' fingerprint; writes are atomic and a damaged cache is recomputed.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from workbench.embeddings.sources import _check_source, _source_tag, embed_utterances
from workbench.embeddings.table import UtteranceEmbeddings
from workbench.errors import EmbeddingError

if TYPE_CHECKING:  # pragma: no cover
    from workbench.corpus import SpeakerCorpus
    from workbench.models import ASRBackend

    # a folder of speaker folders, one speaker folder, a SpeakerCorpus, or a list of these
    Speakers = str | os.PathLike | SpeakerCorpus | Iterable[str | os.PathLike | SpeakerCorpus]

__all__ = ["audio_hash", "embed_corpora", "speaker_profile"]

log = logging.getLogger(__name__)

_CACHE_VERSION = 1


def audio_hash(wav: np.ndarray) -> str:
    """sha1 hex digest of the float32 samples (the cache key of an utterance)."""
    return hashlib.sha1(np.ascontiguousarray(wav, dtype=np.float32).tobytes()).hexdigest()


class _Cache:
    """``hash -> vector`` for one speaker and one (source, weights); an ``.npz`` on disk."""

    def __init__(self, path: Path | None, meta: dict[str, Any]) -> None:
        self.path, self.meta = path, {**meta, "version": _CACHE_VERSION}
        self.table: dict[str, np.ndarray] = {}
        self.dirty = False
        if path is not None and path.is_file():
            try:
                with np.load(path, allow_pickle=False) as z:
                    stored = json.loads(str(z["meta"]))
                    hashes, vectors = z["hashes"], z["vectors"]
                if stored != self.meta or vectors.ndim != 2 or len(hashes) != len(vectors) \
                        or vectors.shape[1] != meta["dim"] or not np.isfinite(vectors).all():
                    raise ValueError("metadata or shapes do not match")
                self.table = {str(h): v for h, v in zip(hashes, vectors, strict=True)}
            # a damaged cache is recomputed, never trusted: unreadable or truncated (OSError, EOFError,
            # BadZipFile), not our layout (KeyError, TypeError) or not matching (ValueError, also bad JSON)
            except (OSError, EOFError, zipfile.BadZipFile, KeyError, TypeError, ValueError) as err:
                log.info("ignoring embedding cache %s (%s); recomputing", path, err)
                self.table, self.dirty = {}, True

    def get(self, key: str) -> np.ndarray | None:
        return self.table.get(key)

    def put(self, key: str, vector: np.ndarray) -> None:
        self.table[key] = np.asarray(vector, dtype=np.float32)
        self.dirty = True

    def save(self) -> None:
        if self.path is None or not self.dirty:
            return
        from workbench._atomic import write_bytes_atomic

        keys = sorted(self.table)
        buf = io.BytesIO()
        np.savez(buf, meta=np.array(json.dumps(self.meta, sort_keys=True)), hashes=np.array(keys, dtype="<U40"),
                 vectors=np.stack([self.table[k] for k in keys]).astype(np.float32))
        try:
            write_bytes_atomic(self.path, buf.getvalue())
            self.dirty = False
        except OSError as err:  # a read-only speaker folder: embeddings still work, uncached
            log.info("could not write embedding cache %s (%s)", self.path, err)


def speaker_profile(info: Mapping[str, Any] | SpeakerCorpus) -> str:
    """The profile name of a speaker (``"typical"``, ``"dysarthria-severe"``, ...) or ``"unknown"``.

    Reads ``speaker.json``'s ``profile``: a string, or a dict with ``name`` or
    ``profile_spec`` (what :mod:`workbench.simulate` writes).
    """
    if not isinstance(info, Mapping):
        info = info.info
    prof = info.get("profile")
    if isinstance(prof, str) and prof:
        return prof
    if isinstance(prof, Mapping):
        for key in ("name", "profile_spec"):
            if isinstance(prof.get(key), str) and prof[key]:
                return prof[key]
    return "unknown"



def _as_corpora(speakers: Speakers) -> list[SpeakerCorpus]:
    from workbench.corpus import SpeakerCorpus, list_speakers

    items = [speakers] if isinstance(speakers, (str, os.PathLike, SpeakerCorpus)) else list(speakers)
    out: list[SpeakerCorpus] = []
    for item in items:
        if isinstance(item, SpeakerCorpus):
            out.append(item)
        elif (Path(item) / "speaker.json").is_file():
            out.append(SpeakerCorpus.open(item))
        else:
            found = list_speakers(item)
            if not found:
                raise EmbeddingError(f"'{item}' holds no speaker folders (folders with a speaker.json)")
            out.extend(found)
    if not out:
        raise EmbeddingError("no speakers given: pass a folder of speaker folders, or SpeakerCorpus objects")
    return out


def embed_corpora(
    speakers: Speakers,
    source: str = "dvector",
    *,
    backend: ASRBackend | None = None,
    layer: int = -1,
    cache: bool | str | os.PathLike = True,
    max_per_speaker: int | None = None,
    seed: int = 0,
    batch_size: int = 16,
    threads: int | None = None,
) -> UtteranceEmbeddings:
    """Embed every ``ok`` take of some speaker folders, using and filling the cache.

    Args:
        speakers: a folder of speaker folders (e.g. ``"sample_data"``), one
            speaker folder, a :class:`~workbench.corpus.SpeakerCorpus`, or a list of these.
        source (str, default ``"dvector"``): ``"dvector"`` or ``"encoder"`` (see :func:`embed_utterances`).
        backend: the base model, for ``"encoder"``.
        layer (int, default -1): encoder block, for ``"encoder"``.
        cache (default True): True caches in each speaker folder
            (``<speaker>/embeddings/``); a path caches under ``<path>/<speaker_id>/``
            instead (for read-only folders); False never reads or writes a cache.
        max_per_speaker (int | None): embed a seeded random subset of at most this
            many takes per speaker (kept in recording order).
        seed (int, default 0): chooses that subset.
        batch_size (int, default 16): utterances per forward pass.
        threads (int | None): torch threads, see :func:`embed_utterances`.

    Returns:
        :class:`UtteranceEmbeddings` in speaker order, then recording order.
    """
    source = _check_source(source)
    stem, meta = _source_tag(source, backend, layer)
    rng = np.random.default_rng(seed)
    rows: dict[str, list] = {k: [] for k in ("vectors", "speaker_ids", "utt_ids", "texts", "profiles", "sessions",
                                             "audio_paths")}
    for corpus in _as_corpora(speakers):
        utts = corpus.utterances()
        if max_per_speaker is not None and len(utts) > max_per_speaker:
            keep = np.sort(rng.choice(len(utts), size=int(max_per_speaker), replace=False))
            utts = [utts[i] for i in keep]
        if not utts:
            continue
        if cache is False:
            path = None
        elif cache is True:
            path = corpus.root / "embeddings" / f"{stem}.npz"
        else:
            path = Path(cache) / corpus.speaker_id / f"{stem}.npz"
        store = _Cache(path, meta)
        waves = [corpus.load_audio(u) for u in utts]
        keys = [audio_hash(w) for w in waves]
        todo = [i for i, k in enumerate(keys) if store.get(k) is None]
        if todo:
            new = embed_utterances([waves[i] for i in todo], source, backend=backend, layer=layer,
                                   batch_size=batch_size, threads=threads)
            for i, v in zip(todo, new, strict=True):
                store.put(keys[i], v)
            store.save()
        profile = speaker_profile(corpus.info)
        for u, k in zip(utts, keys, strict=True):
            rows["vectors"].append(store.get(k))
            rows["speaker_ids"].append(corpus.speaker_id)
            rows["utt_ids"].append(u.utt_id)
            rows["texts"].append(u.transcript or u.prompt)
            rows["profiles"].append(profile)
            rows["sessions"].append(str(u.extra.get("session") or u.created[:10] or "?"))
            rows["audio_paths"].append(corpus.root / u.audio_path)
    if not rows["vectors"]:
        raise EmbeddingError("these speaker folders have no usable ('ok') takes to embed")
    return UtteranceEmbeddings(vectors=np.stack(rows.pop("vectors")), source=source, **rows)
