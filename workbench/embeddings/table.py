"""The table every later step reads: :class:`UtteranceEmbeddings`, vectors with their labels."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from workbench.errors import EmbeddingError

__all__ = ["UtteranceEmbeddings"]


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

        return load_audio(path, max_s=None)
