"""Checks of an embedding space: speaker identification by nearest centroid, and profile separation."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

from workbench.embeddings.search import _reference_table, _vectors_and_labels, cosine_distances, speaker_embeddings
from workbench.embeddings.table import UtteranceEmbeddings
from workbench.errors import EmbeddingError

__all__ = ["ProfileDistance", "SpeakerIdResult", "profile_separation", "speaker_id_accuracy"]


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
    embeddings: UtteranceEmbeddings | np.ndarray,
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
    embeddings: UtteranceEmbeddings | np.ndarray,
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
