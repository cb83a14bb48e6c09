"""Speaker embeddings: where a speaker sits among others, and which speakers are nearest.

Three sources behind one function, :func:`embed_utterances`:

- ``"dvector"``: a pretrained GE2E speaker encoder (Wan et al. 2018) trained on
  real speech, rebuilt from the weights inside the ``resemblyzer`` wheel without
  importing it; checked against resemblyzer (see :mod:`.dvector`).
- ``"encoder"``: mean and standard deviation over the **true** frames of one
  encoder block of the base ASR model (:meth:`ASRBackend.frame_outputs`),
  ``(2 * hidden_size,)``.
- ``"learned"``: the Submodels' learned speaker vectors ``z_s`` (HRA in the
  embedding space), one per *speaker*, not per utterance:
  :func:`learned_speaker_vectors`.

Where each part lives:

- :mod:`.dvector`: the d-vector network, its frontend and preprocessing.
- :mod:`.sources`: :func:`embed_utterances` and encoder pooling.
- :mod:`.table`: :class:`UtteranceEmbeddings`, vectors with speaker, text, profile and session labels.
- :mod:`.cache`: :func:`embed_corpora`, per-utterance embeddings of speaker folders,
  cached in ``<speaker>/embeddings/<source>[-L<layer>]-<fingerprint12>.npz``.
- :mod:`.search`: per-speaker and per-session vectors, learned ``z``, cosine
  distances, :func:`nearest_speakers` and :func:`warm_start_z`.
- :mod:`.evaluation`: :func:`speaker_id_accuracy` and :func:`profile_separation`.
- :mod:`.projection`: 2-D/3-D maps, PCA (numpy, always available), t-SNE
  (scikit-learn, ``pip install 'workbench[embed]'``) and UMAP (``pip install umap-learn``).

Distances are **cosine distances** (``1 - cos``, in [0, 2]) everywhere.
The core import pulls in none of resemblyzer, scikit-learn, umap or matplotlib.

>>> import numpy as np
>>> x = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
>>> speaker_id_accuracy(x, ["a", "a", "b", "b"], n_folds=2).accuracy
1.0
>>> [s for s, _ in nearest_speakers(np.array([1.0, 0.05]), {"a": x[0], "b": x[2]}, k=2)]
['a', 'b']
"""

from __future__ import annotations

from workbench.embeddings.cache import audio_hash, embed_corpora, speaker_profile
from workbench.embeddings.dvector import DVECTOR_DIM, dvector_fingerprint, dvector_weights_path
from workbench.embeddings.evaluation import ProfileDistance, SpeakerIdResult, profile_separation, speaker_id_accuracy
from workbench.embeddings.projection import Projection, fit_projection
from workbench.embeddings.search import (
    cosine_distances,
    learned_speaker_vectors,
    nearest_speakers,
    session_embeddings,
    speaker_embeddings,
    warm_start_z,
)
from workbench.embeddings.sources import SOURCES, embed_utterances
from workbench.embeddings.table import UtteranceEmbeddings
from workbench.errors import EmbeddingError

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

