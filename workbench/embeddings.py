"""Speaker embeddings: where a speaker sits among others, and which speakers are nearest.

Three sources behind one function, :func:`embed_utterances`:

- ``"dvector"``: a pretrained GE2E speaker encoder (Wan et al. 2018) trained on
  real speech. Its weights ship inside the ``resemblyzer`` wheel
  (``resemblyzer/pretrained.pt``, 17 MB), so it works offline. We do **not**
  import ``resemblyzer`` (its ``webrtcvad`` dependency imports ``pkg_resources``,
  which setuptools >= 81 no longer has): the weights file is located with
  ``importlib.util.find_spec`` and the small network (3-layer LSTM 40 -> 256,
  Linear 256 -> 256, ReLU, L2 norm) is rebuilt here and loaded with
  ``torch.load(weights_only=True)``. The frontend matches ``resemblyzer.audio``:
  40-band mel *power* spectrogram (not log), 25 ms window, 10 ms hop, 16 kHz;
  partial utterances of 160 frames (1.6 s) every 77 frames (rate 1.3 per second,
  ~50 % overlap), the last one kept if it is at least 75 % covered; the
  utterance embedding is the L2-normalized mean of the partial embeddings.
  Checked against ``resemblyzer.VoiceEncoder.embed_utterance`` on 40 sample_data
  utterances given the same (preprocessed) audio: max abs difference 2.6e-7 per
  coordinate, cosine similarity >= 0.9999999. Preprocessing differs on purpose:
  resemblyzer's ``preprocess_wav`` raises the volume to -30 dBFS (we do the
  same) and shortens long silences with webrtcvad; we shorten them with a 30 ms
  energy detector (no webrtcvad) and the same smoothing and dilation. On all
  640 sample_data utterances the two pipelines agree to cosine 0.994 on average
  (0.93 at worst) and give the same speaker-identification accuracy (99.2 %).
- ``"encoder"``: mean and standard deviation over the **true** frames of one
  encoder block of the base ASR model (:meth:`ASRBackend.frame_outputs`),
  ``(2 * hidden_size,)``.
- ``"learned"``: the Submodels' learned speaker vectors ``z_s`` (HRA in the
  embedding space), one per *speaker*, not per utterance:
  :func:`learned_speaker_vectors`.

Per-utterance embeddings of speaker folders (:func:`embed_corpora`) are cached
in ``<speaker>/embeddings/<source>[-L<layer>]-<fingerprint12>.npz``, keyed by the
sha1 of each utterance's float32 samples and by the weights' fingerprint; writes
are atomic and a damaged cache is recomputed.

Distances are **cosine distances** (``1 - cos``, in [0, 2]) everywhere.
Projections to 2-D/3-D: PCA (numpy, always available), t-SNE (scikit-learn,
``pip install 'workbench[embed]'``) and UMAP (``pip install umap-learn``).
PCA and UMAP place new points with :meth:`Projection.transform`; t-SNE cannot.

The core import pulls in none of resemblyzer, scikit-learn, umap or matplotlib.

>>> import numpy as np
>>> x = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
>>> speaker_id_accuracy(x, ["a", "a", "b", "b"], n_folds=2).accuracy
1.0
>>> [s for s, _ in nearest_speakers(np.array([1.0, 0.05]), {"a": x[0], "b": x[2]}, k=2)]
['a', 'b']
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import importlib.util
import io
import json
import logging
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from workbench._optional import has_module, require
from workbench.errors import MissingDependencyError, WorkbenchError

if TYPE_CHECKING:  # pragma: no cover
    from workbench.corpus import SpeakerCorpus
    from workbench.models.base import ASRBackend

__all__ = [
    "DVECTOR_DIM",
    "EmbeddingError",
    "ProfileDistance",
    "Projection",
    "SOURCES",
    "SpeakerIdResult",
    "UtteranceEmbeddings",
    "audio_hash",
    "cosine_distances",
    "dvector_fingerprint",
    "dvector_weights_path",
    "embed_corpora",
    "embed_utterances",
    "fit_projection",
    "learned_speaker_vectors",
    "nearest_speakers",
    "profile_separation",
    "session_embeddings",
    "speaker_embeddings",
    "speaker_id_accuracy",
    "speaker_profile",
    "warm_start_z",
]

log = logging.getLogger(__name__)

SOURCES = ("dvector", "encoder", "learned")
SAMPLE_RATE = 16_000  # Hz, every waveform here
DVECTOR_DIM = 256
PREPROCESS_VERSION = 1  # bump when the d-vector preprocessing changes: old caches are then ignored
_CACHE_VERSION = 1

# GE2E frontend and partials, as in resemblyzer/hparams.py
_N_FFT = 400  # 25 ms window
_HOP = 160  # 10 ms hop
_N_MELS = 40
_PARTIAL_FRAMES = 160  # 1.6 s per partial utterance
_PARTIAL_RATE = 1.3  # partials per second -> a step of 77 frames (~50 % overlap)
_MIN_COVERAGE = 0.75  # keep the last partial if at least this much of it is audio
_NORM_DBFS = -30.0  # volume normalization target (increase only)
# long-silence shortening, as resemblyzer.audio.trim_long_silences but energy-based
_VAD_WINDOW = 480  # 30 ms at 16 kHz
_VAD_AVERAGE = 8  # windows in the moving average
_VAD_MAX_SILENCE = 6  # windows of silence kept around speech (dilation)
_VAD_RANGE_DB = 40.0  # a window is speech if within this many dB of the loudest window
_LSTM_CHUNK = 256  # partials per LSTM call (bounds memory: 256 x 160 x 256 floats per layer)


@contextlib.contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    """Run torch ops with ``n`` intra-op threads (None: leave torch's setting alone)."""
    if n is None or int(n) == torch.get_num_threads():
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, int(n)))
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def _thread_limit(n: int | None) -> Iterator[None]:
    """Limit OpenMP/BLAS pools (threadpoolctl, a scikit-learn dependency) to ``n`` threads; None: no change."""
    if n is None or not has_module("threadpoolctl"):
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=max(1, int(n))), _torch_threads(n):
        yield


class EmbeddingError(WorkbenchError, ValueError):
    """Embeddings cannot be computed or compared as asked (wrong source, shapes, too few points)."""


# --------------------------------------------------------------------------- #
# d-vectors: the GE2E network from resemblyzer's weights
# --------------------------------------------------------------------------- #


def dvector_weights_path() -> Path:
    """Path of ``pretrained.pt`` inside the installed ``resemblyzer`` package (never imported).

    Raises:
        MissingDependencyError: resemblyzer is not installed, or its wheel lacks the weights.
    """
    spec = None
    try:
        spec = importlib.util.find_spec("resemblyzer")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            "d-vector speaker embeddings need the optional package 'resemblyzer' (its pretrained speaker "
            "encoder ships inside the wheel). Install it with: pip install 'workbench[embed]' — or use "
            "source='encoder', which needs only the base model")
    for location in spec.submodule_search_locations:
        path = Path(location) / "pretrained.pt"
        if path.is_file():
            return path
    raise MissingDependencyError(
        f"resemblyzer is installed at {list(spec.submodule_search_locations)} but its pretrained.pt is missing; "
        "reinstall it: pip install --force-reinstall --no-deps resemblyzer")


class _GE2E(nn.Module):
    """resemblyzer's VoiceEncoder network: ``(P, 160, 40)`` mel partials -> ``(P, 256)`` unit vectors."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(_N_MELS, 256, 3, batch_first=True)
        self.linear = nn.Linear(256, DVECTOR_DIM)

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        _, (hidden, _) = self.lstm(mels)  # hidden: (3, P, 256); the last layer's final state
        raw = torch.relu(self.linear(hidden[-1]))
        return raw / torch.linalg.vector_norm(raw, dim=1, keepdim=True).clamp_min(1e-12)


@functools.lru_cache(maxsize=1)
def _dvector_model() -> _GE2E:
    path = dvector_weights_path()
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        state = checkpoint["model_state"]
        model = _GE2E()
        model.load_state_dict({k: v for k, v in state.items() if k.startswith(("lstm.", "linear."))})
    except Exception as err:  # noqa: BLE001 - any damage to the file reads the same to a person
        raise MissingDependencyError(
            f"resemblyzer's speaker encoder weights at {path} could not be loaded ({type(err).__name__}: {err}); "
            "reinstall the package: pip install --force-reinstall --no-deps resemblyzer") from None
    return model.eval().requires_grad_(False)


@functools.lru_cache(maxsize=1)
def dvector_fingerprint() -> str:
    """sha256 of the d-vector weights file plus the preprocessing version (cache key)."""
    h = hashlib.sha256(f"ge2e-preprocess-v{PREPROCESS_VERSION}".encode())
    with open(dvector_weights_path(), "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@functools.lru_cache(maxsize=1)
def _mel_basis() -> torch.Tensor:
    """``(201, 40)`` Slaney mel filterbank of ``librosa.feature.melspectrogram``'s defaults."""
    librosa = require("librosa", extra="core", purpose="compute d-vector features")
    fb = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=_N_FFT, n_mels=_N_MELS)  # (40, 201)
    return torch.from_numpy(np.ascontiguousarray(fb.T, dtype=np.float32))


def _normalize_volume(wav: np.ndarray, target_dbfs: float = _NORM_DBFS) -> np.ndarray:
    """Raise (never lower) the level so the RMS is ``target_dbfs`` (resemblyzer's rule)."""
    rms = float(np.sqrt(np.mean(np.square(wav, dtype=np.float64))))
    if rms <= 0.0:
        return wav
    change_db = target_dbfs - 20.0 * np.log10(rms)
    return wav if change_db < 0 else (wav * 10 ** (change_db / 20.0)).astype(np.float32)


def _shorten_silences(wav: np.ndarray) -> np.ndarray:
    """Drop silences longer than ~0.2 s: 30 ms windows, speech within 40 dB of the loudest.

    Same smoothing (moving average of 8 windows, rounded) and dilation (7
    windows) as ``resemblyzer.audio.trim_long_silences``; an energy threshold
    replaces webrtcvad. All-silent input is returned unchanged.
    """
    n = len(wav) - len(wav) % _VAD_WINDOW
    if n == 0:
        return wav
    frames = wav[:n].reshape(-1, _VAD_WINDOW).astype(np.float64)
    db = 10.0 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    if db.max() <= -110.0:  # digital silence
        return wav
    flags = (db >= db.max() - _VAD_RANGE_DB).astype(np.float64)
    w = _VAD_AVERAGE
    padded = np.concatenate((np.zeros((w - 1) // 2), flags, np.zeros(w // 2)))
    csum = np.cumsum(padded)
    csum[w:] = csum[w:] - csum[:-w]
    mask = np.round(csum[w - 1:] / w).astype(bool)
    if mask.any():
        from scipy.ndimage import binary_dilation

        mask = binary_dilation(mask, np.ones(_VAD_MAX_SILENCE + 1))
    else:
        mask = flags.astype(bool)
    keep = np.repeat(mask, _VAD_WINDOW)
    out = wav[:n][keep]
    return out if out.size else wav


def _partial_starts(n_samples: int, rate: float = _PARTIAL_RATE, min_coverage: float = _MIN_COVERAGE) -> list[int]:
    """First mel frame of each partial utterance (``VoiceEncoder.compute_partial_slices``)."""
    n_frames = int(np.ceil((n_samples + 1) / _HOP))
    step = int(np.round((SAMPLE_RATE / rate) / _HOP))
    starts = list(range(0, max(1, n_frames - _PARTIAL_FRAMES + step + 1), step))
    coverage = (n_samples - starts[-1] * _HOP) / (_PARTIAL_FRAMES * _HOP)
    if coverage < min_coverage and len(starts) > 1:
        starts.pop()
    return starts


def _mel_partials(wav: np.ndarray) -> torch.Tensor:
    """``(P, 160, 40)`` mel-power partials of one preprocessed 16 kHz utterance."""
    starts = _partial_starts(len(wav))
    need = (starts[-1] + _PARTIAL_FRAMES) * _HOP
    x = torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32))
    if need >= len(wav):
        x = torch.nn.functional.pad(x, (0, need - len(wav)))
    spec = torch.stft(x, n_fft=_N_FFT, hop_length=_HOP, win_length=_N_FFT, window=torch.hann_window(_N_FFT),
                      center=True, pad_mode="constant", return_complex=True)  # (201, T)
    mel = (spec.abs() ** 2).T @ _mel_basis()  # (T, 40)
    return torch.stack([mel[s:s + _PARTIAL_FRAMES] for s in starts])


def _preprocess_dvector(wav: np.ndarray) -> np.ndarray:
    return _shorten_silences(_normalize_volume(wav))


@torch.inference_mode()
def _embed_dvector(waves: list[np.ndarray], preprocess: bool = True) -> np.ndarray:
    model = _dvector_model()
    parts, owner = [], []
    for i, w in enumerate(waves):
        p = _mel_partials(_preprocess_dvector(w) if preprocess else w)
        parts.append(p)
        owner += [i] * p.shape[0]
    mels = torch.cat(parts)
    partial = torch.cat([model(mels[s:s + _LSTM_CHUNK]) for s in range(0, mels.shape[0], _LSTM_CHUNK)])
    owner_t = torch.tensor(owner)
    sums = torch.zeros(len(waves), DVECTOR_DIM).index_add_(0, owner_t, partial)
    out = sums / torch.linalg.vector_norm(sums, dim=1, keepdim=True).clamp_min(1e-12)
    return out.numpy().astype(np.float32)


# --------------------------------------------------------------------------- #
# Encoder pooling
# --------------------------------------------------------------------------- #


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


# --------------------------------------------------------------------------- #
# Speaker folders: cached per-utterance embeddings
# --------------------------------------------------------------------------- #


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
            except Exception as err:  # noqa: BLE001 - a damaged cache is recomputed, never trusted
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


@dataclasses.dataclass
class UtteranceEmbeddings:
    """Per-utterance embeddings with what a plot or a widget needs to label them.

    Attributes:
        vectors: ``(N, D)`` float32.
        speaker_ids: ``N`` speaker ids.
        utt_ids: ``N`` utterance ids.
        texts: ``N`` transcripts (or prompts).
        profiles: ``N`` profile names of the speakers (:func:`speaker_profile`).
        sessions: ``N`` session labels (the take's ``extra["session"]``, else its recording date).
        audio_paths: ``N`` audio file paths (for playback), or None for in-memory audio.
        source: ``"dvector"`` or ``"encoder"``.
    """

    vectors: np.ndarray
    speaker_ids: list[str]
    utt_ids: list[str]
    texts: list[str]
    profiles: list[str]
    sessions: list[str]
    audio_paths: list[Path | None]
    source: str

    def __post_init__(self) -> None:
        self.vectors = np.asarray(self.vectors, dtype=np.float32)
        n = len(self.vectors)
        for name in ("speaker_ids", "utt_ids", "texts", "profiles", "sessions", "audio_paths"):
            if len(getattr(self, name)) != n:
                raise EmbeddingError(f"{name} has {len(getattr(self, name))} entries but there are {n} vectors")

    def __len__(self) -> int:
        return len(self.vectors)

    @property
    def speakers(self) -> list[str]:
        """Distinct speaker ids, in order of first appearance."""
        return list(dict.fromkeys(self.speaker_ids))

    def speaker_profiles(self) -> dict[str, str]:
        return dict(zip(self.speaker_ids, self.profiles, strict=True))

    def select(self, index: Sequence[int] | np.ndarray) -> UtteranceEmbeddings:
        """The rows ``index`` (ints, or a boolean mask of length N)."""
        idx = np.asarray(index)
        idx = np.flatnonzero(idx) if idx.dtype == bool else idx.astype(int)
        def pick(xs: list) -> list:
            return [xs[i] for i in idx]

        return UtteranceEmbeddings(self.vectors[idx], pick(self.speaker_ids), pick(self.utt_ids), pick(self.texts),
                                   pick(self.profiles), pick(self.sessions), pick(self.audio_paths), self.source)

    def standardized(self) -> UtteranceEmbeddings:
        """A copy with every dimension z-scored over these utterances.

        Encoder statistics share a large common offset, so their raw cosine
        distances are all near 0; after standardizing, distances measure how
        speakers differ *within this set* (so they change when the set changes).
        """
        x = self.vectors.astype(np.float64)
        z = (x - x.mean(0)) / (x.std(0) + 1e-8)
        return dataclasses.replace(self, vectors=z.astype(np.float32))

    def load_audio(self, i: int) -> np.ndarray:
        """``(S,)`` float32 16 kHz audio of row ``i``."""
        path = self.audio_paths[i]
        if path is None:
            raise EmbeddingError(f"utterance {self.utt_ids[i]!r} was embedded from memory; there is no file to play")
        from workbench.audio import load_audio

        return load_audio(path, max_seconds=None)


def _as_corpora(speakers: Any) -> list[SpeakerCorpus]:
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
    speakers: Any,
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


# --------------------------------------------------------------------------- #
# Per-speaker vectors
# --------------------------------------------------------------------------- #


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _vectors_and_labels(embeddings: Any, labels: Sequence[str] | None) -> tuple[np.ndarray, list[str]]:
    if isinstance(embeddings, UtteranceEmbeddings):
        return embeddings.vectors, list(embeddings.speaker_ids if labels is None else labels)
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2:
        raise EmbeddingError(f"expected an (N, D) array of embeddings, got shape {x.shape}")
    if labels is None or len(labels) != len(x):
        raise EmbeddingError(f"need one speaker label per embedding: {len(x)} embeddings, "
                             f"{'no' if labels is None else len(labels)} labels")
    return x, [str(s) for s in labels]


def speaker_embeddings(embeddings: Any, speaker_ids: Sequence[str] | None = None) -> tuple[list[str], np.ndarray]:
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


# --------------------------------------------------------------------------- #
# Checks: speaker identification and profile distances
# --------------------------------------------------------------------------- #


@dataclasses.dataclass
class SpeakerIdResult:
    """Nearest-centroid speaker identification on held-out utterances.

    Attributes:
        accuracy: fraction of utterances whose nearest centroid is their own speaker's.
        per_speaker: ``{speaker_id: accuracy}``.
        speakers: the speaker ids (order of ``confusion``).
        confusion: ``(S, S)`` int counts, rows true speaker, columns predicted.
        predictions: ``N`` predicted speaker ids.
    """

    accuracy: float
    per_speaker: dict[str, float]
    speakers: list[str]
    confusion: np.ndarray
    predictions: list[str]


def speaker_id_accuracy(
    embeddings: Any,
    labels: Sequence[str] | None = None,
    *,
    n_folds: int = 5,
    seed: int = 0,
    standardize: bool = False,
) -> SpeakerIdResult:
    """Identify each utterance's speaker by the nearest centroid of the *other* utterances.

    Cross-validation over ``n_folds`` folds, stratified per speaker: every
    utterance is held out once; centroids (mean of unit vectors) come from the
    other folds; the prediction is the centroid with the smallest cosine distance.

    Args:
        embeddings: :class:`UtteranceEmbeddings` or an ``(N, D)`` array with ``labels``.
        labels: ``N`` speaker ids.
        n_folds (int, default 5): folds (each speaker needs at least 2 utterances).
        seed (int, default 0): shuffles utterances into folds.
        standardize (bool, default False): z-score each dimension with the
            training folds' mean/std first (useful for ``"encoder"`` statistics,
            whose dimensions share a large common offset).
    """
    x, lab = _vectors_and_labels(embeddings, labels)
    speakers = list(dict.fromkeys(lab))
    lab_arr = np.array(lab)
    counts = {s: int((lab_arr == s).sum()) for s in speakers}
    few = [s for s, c in counts.items() if c < 2]
    if len(speakers) < 2 or few:
        raise EmbeddingError("speaker identification needs at least 2 speakers with at least 2 utterances each"
                             + (f"; {few[:5]} have fewer" if few else ""))
    rng = np.random.default_rng(seed)
    fold = np.empty(len(x), dtype=int)
    for s in speakers:
        idx = np.flatnonzero(lab_arr == s)
        fold[rng.permutation(idx)] = np.arange(len(idx)) % min(int(n_folds), len(idx))
    pred = np.empty(len(x), dtype=object)
    for f in np.unique(fold):
        test, train = fold == f, fold != f
        xt, xs = x[train], x[test]
        if standardize:
            mu, sd = xt.mean(0), xt.std(0) + 1e-8
            xt, xs = (xt - mu) / sd, (xs - mu) / sd
        ids, cent = speaker_embeddings(xt, lab_arr[train].tolist())
        pred[test] = np.array(ids, dtype=object)[np.argmin(cosine_distances(xs, cent), axis=1)]
    pos = {s: i for i, s in enumerate(speakers)}
    conf = np.zeros((len(speakers), len(speakers)), dtype=int)
    for t, p in zip(lab, pred, strict=True):
        conf[pos[t], pos[p]] += 1
    per = {s: float(conf[i, i] / conf[i].sum()) for i, s in enumerate(speakers)}
    return SpeakerIdResult(float(np.trace(conf) / len(x)), per, speakers, conf, [str(p) for p in pred])


@dataclasses.dataclass
class ProfileDistance:
    """Mean cosine distances of one atypical profile's speakers.

    Attributes:
        profile: the profile name.
        speakers: its speaker ids.
        within: mean distance between two different speakers of this profile.
        to_typical: mean distance from its speakers to the typical speakers.
        closer: ``within < to_typical``.
    """

    profile: str
    speakers: list[str]
    within: float
    to_typical: float
    closer: bool


def profile_separation(
    embeddings: Any,
    profiles: Mapping[str, str] | None = None,
    *,
    typical: str = "typical",
) -> list[ProfileDistance]:
    """Are atypical speakers of the same profile closer to each other than to typical speakers?

    Args:
        embeddings: :class:`UtteranceEmbeddings` (speaker means and profiles are
            taken from it), or an ``(ids, (N, D) speaker vectors)`` pair with ``profiles``.
        profiles: ``{speaker_id: profile}``; map profiles to coarser groups first
            to compare groups (e.g. all dysarthria-like profiles).
        typical (str, default ``"typical"``): the profile of the control speakers.

    Returns:
        one :class:`ProfileDistance` per non-typical profile with at least 2 speakers.
    """
    if isinstance(embeddings, UtteranceEmbeddings):
        profiles = embeddings.speaker_profiles() if profiles is None else profiles
        ids, mat = speaker_embeddings(embeddings)
    else:
        ids, mat = _reference_table(embeddings)
    if profiles is None:
        raise EmbeddingError("pass profiles={speaker_id: profile} for these speaker vectors")
    missing = [s for s in ids if s not in profiles]
    if missing:
        raise EmbeddingError(f"no profile for speaker(s) {missing[:5]}")
    d = cosine_distances(mat)
    typ = [i for i, s in enumerate(ids) if profiles[s] == typical]
    if not typ:
        raise EmbeddingError(f"no speaker has the profile {typical!r}, so there is nothing to compare with")
    out = []
    for prof in dict.fromkeys(profiles[s] for s in ids):
        members = [i for i, s in enumerate(ids) if profiles[s] == prof]
        if prof == typical or len(members) < 2:
            continue
        pairs = [d[i, j] for a, i in enumerate(members) for j in members[a + 1:]]
        within = float(np.mean(pairs))
        to_typ = float(d[np.ix_(members, typ)].mean())
        out.append(ProfileDistance(prof, [ids[i] for i in members], within, to_typ, within < to_typ))
    return out


# --------------------------------------------------------------------------- #
# Projections
# --------------------------------------------------------------------------- #


@dataclasses.dataclass
class Projection:
    """A fitted projection to 2-D or 3-D.

    Attributes:
        method: ``"pca"``, ``"tsne"`` or ``"umap"``.
        dim: 2 or 3.
        points: ``(N, dim)`` float64, the fitted points.
        explained_variance_ratio: PCA only, ``(dim,)``.
    """

    method: str
    dim: int
    points: np.ndarray
    explained_variance_ratio: np.ndarray | None = None
    _center: np.ndarray | None = dataclasses.field(default=None, repr=False)
    _scale: np.ndarray | None = dataclasses.field(default=None, repr=False)
    _components: np.ndarray | None = dataclasses.field(default=None, repr=False)
    _model: Any = dataclasses.field(default=None, repr=False)
    _n_features: int = dataclasses.field(default=0, repr=False)

    def _prepare(self, x: np.ndarray) -> np.ndarray:
        x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        if x.shape[1] != self._n_features:
            raise EmbeddingError(f"this projection was fitted on {self._n_features}-D embeddings; got {x.shape[1]}-D")
        if self._scale is not None:
            x = (x - self._center) / self._scale
        return x

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Place new points ``(M, D)`` -> ``(M, dim)`` without refitting (PCA and UMAP)."""
        if self.method == "tsne":
            raise EmbeddingError("t-SNE cannot place new points; refit with them included, or use method='pca' "
                                 "(or 'umap') to place new speakers in a fixed map")
        x = self._prepare(x)
        if self.method == "pca":
            return (x - self._components[0]) @ self._components[1:].T
        return np.asarray(self._model.transform(x), dtype=np.float64)


def fit_projection(
    x: np.ndarray,
    method: str = "pca",
    dim: int = 2,
    *,
    seed: int = 0,
    standardize: bool = False,
    perplexity: float | None = None,
    n_neighbors: int | None = None,
    threads: int | None = None,
) -> Projection:
    """Fit a 2-D or 3-D map of embeddings ``x (N, D)``.

    Args:
        x: ``(N, D)`` embeddings (utterances or speakers).
        method (str, default ``"pca"``): ``"pca"`` (numpy), ``"tsne"``
            (scikit-learn; cannot place new points) or ``"umap"`` (umap-learn).
        dim (int, default 2): 2 or 3.
        seed (int, default 0): t-SNE/UMAP randomness (PCA is deterministic; signs are fixed).
        standardize (bool, default False): z-score each dimension first (kept for ``transform``).
        perplexity: t-SNE perplexity (default ``min(30, (N - 1) / 3)``).
        n_neighbors: UMAP neighbours (default ``min(15, N - 1)``).
        threads (int | None): OpenMP/BLAS threads for t-SNE/UMAP (None: the
            libraries' default). On a busy 2-core machine, t-SNE of 640 points
            took 2.9 s with 1 thread and 44 s with 2 (threads waiting at barriers).
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise EmbeddingError(f"expected an (N, D) array, got shape {x.shape}")
    if dim not in (2, 3):
        raise EmbeddingError(f"dim must be 2 or 3, got {dim}")
    if method not in ("pca", "tsne", "umap"):
        raise EmbeddingError(f"unknown projection {method!r}; choose 'pca', 'tsne' or 'umap'")
    n = len(x)
    need = {"pca": 2, "tsne": 4, "umap": 4}[method]
    if n < need:
        raise EmbeddingError(f"a {method} map needs at least {need} points; got {n}")
    proj = Projection(method, dim, np.zeros((n, dim)), _n_features=x.shape[1])
    if standardize:
        proj._center, proj._scale = x.mean(0), x.std(0) + 1e-8
    xs = proj._prepare(x)
    if method == "pca":
        mean = xs.mean(0)
        _, s, vt = np.linalg.svd(xs - mean, full_matrices=False)
        comps = np.zeros((dim, x.shape[1]))
        k = min(dim, vt.shape[0])
        comps[:k] = vt[:k]
        signs = np.sign(comps[np.arange(dim), np.argmax(np.abs(comps), axis=1)])
        comps *= np.where(signs == 0, 1.0, signs)[:, None]  # deterministic orientation
        var = s**2
        ratio = np.zeros(dim)
        ratio[:k] = var[:k] / var.sum() if var.sum() > 0 else 0.0
        proj._components = np.vstack([mean, comps])
        proj.explained_variance_ratio = ratio
        proj.points = (xs - mean) @ comps.T
    elif method == "tsne":
        manifold = require("sklearn.manifold", extra="embed", purpose="draw a t-SNE map (or use method='pca')")
        perp = float(perplexity) if perplexity is not None else min(30.0, (n - 1) / 3.0)
        if not 0 < perp < n:
            raise EmbeddingError(f"t-SNE perplexity must be between 0 and the number of points ({n}); got {perp}")
        model = manifold.TSNE(n_components=dim, perplexity=perp, init="pca", random_state=int(seed))
        with _thread_limit(threads):
            proj.points = np.asarray(model.fit_transform(xs), dtype=np.float64)
    else:
        if not has_module("umap"):
            raise MissingDependencyError("UMAP maps need the optional package 'umap-learn': pip install umap-learn "
                                         "(or use method='pca', which can also place new points)")
        import umap

        model = umap.UMAP(n_components=dim, n_neighbors=int(n_neighbors or min(15, n - 1)), random_state=int(seed))
        with _thread_limit(threads):
            proj.points = np.asarray(model.fit_transform(xs), dtype=np.float64)
        proj._model = model
    return proj
