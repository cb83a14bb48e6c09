"""Training examples, a feature cache and a speaker-mixing batch sampler.

The base model's frontend is frozen and deterministic, so each utterance is
featurized once (alone, so nothing depends on the batch it later lands in) and
training batches are padded from the cache: on a laptop CPU that removes the
STFT from every step.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from workbench.augment import speed_perturb
from workbench.constants import SAMPLE_RATE
from workbench.errors import AudioError, CorpusError

if TYPE_CHECKING:  # annotations only: the corpus and the backends are above this module
    from workbench.corpus import SpeakerCorpus, Utterance
    from workbench.models import ASRBackend, Batch

__all__ = ["Example", "FeatureCache", "examples_from_corpus", "left_out_note", "speaker_mixed_batches",
           "with_speed_perturbation"]


@dataclasses.dataclass(frozen=True)
class Example:
    """One utterance: ``wav (S,)`` float32 at 16 kHz, its transcript, its speaker row."""

    wav: np.ndarray
    text: str
    speaker: int = 0  # row in a Submodel bank (0 for a single speaker's Submodel)
    utt_id: str = ""

    @property
    def seconds(self) -> float:
        return len(self.wav) / SAMPLE_RATE


def examples_from_corpus(corpus: SpeakerCorpus, utterances: Sequence[Utterance] | None = None, *,
                         speaker: int = 0) -> list[Example]:
    """Load the audio of ``utterances`` (default: all usable ones) of a SpeakerCorpus,
    with leading/trailing silence trimmed (the quality check promises it).

    Raises:
        CorpusError: a take cannot be read (which, and what to do); or nothing to load
            because no take of the speaker is usable (every one rejected: the quality
            check's findings, :meth:`~workbench.corpus.SpeakerCorpus.usable_problem`).
    """
    from workbench.audio import trim_silence

    utts = corpus.utterances() if utterances is None else list(utterances)
    if not utts:  # nothing to load: say why when it is because no take of the speaker is usable
        problem = corpus.usable_problem()
        if problem is not None:
            raise CorpusError(problem)
    out = []
    for u in utts:
        try:
            wav = corpus.load_audio(u)
        except (AudioError, CorpusError) as err:  # a damaged or missing file: say which take, and what to do
            raise CorpusError(f"recording {u.utt_id} of speaker {corpus.speaker_id} cannot be read ({err}); "
                              "mark it rejected or record it again") from None
        trimmed = trim_silence(wav)
        out.append(Example(wav=trimmed if trimmed.size else wav, text=u.transcript or u.prompt, speaker=speaker,
                           utt_id=u.utt_id))
    return out


class FeatureCache:
    """Frontend features of a fixed list of examples, computed once (by the backend).

    Args:
        backend: an :class:`~workbench.models.base.ASRBackend`.
        examples: the utterances to cache.
        frozen_layers: also run the first ``k`` (frozen, adapter-free) encoder layers once
            and cache their output, for backends with ``supports_frozen_prefix``.
        skip_unusable: leave out the examples the backend refuses (e.g. a take longer than it
            trains on) instead of failing on the first; :attr:`left_out` lists them with why.

    Attributes:
        examples: the examples cached (without those left out), in the given order.
        items: one :class:`~workbench.models.base.CachedFeatures` per example.
        lengths: each item's true length along time (its ``length``: frames or samples).
        left_out: ``(example, why)`` for each example left out, ``why`` in plain words.
    """

    def __init__(self, backend: ASRBackend, examples: Sequence[Example], *, frozen_layers: int = 0,
                 skip_unusable: bool = False) -> None:
        self.backend = backend
        self.examples = list(examples)
        self.left_out: list[tuple[Example, str]] = []
        # one at a time (or in one shared window): features identical to any batch (tested per backend)
        try:
            self.items = backend.cache_features([ex.wav for ex in self.examples], frozen_layers=frozen_layers)
        except AudioError:
            if not skip_unusable:
                raise
            self.examples = self._usable(backend, self.examples, frozen_layers)
            self.items = backend.cache_features([ex.wav for ex in self.examples], frozen_layers=frozen_layers) \
                if self.examples else []
        self.lengths = [int(it.length) for it in self.items]

    def _usable(self, backend: ASRBackend, examples: list[Example], frozen_layers: int) -> list[Example]:
        """The examples the backend accepts alone; the others go to :attr:`left_out` (only after a refusal:
        the usual path featurizes each recording once)."""
        kept = []
        for ex in examples:
            try:
                backend.cache_features([ex.wav], frozen_layers=frozen_layers)
            except AudioError as err:  # "waveform 0 is 45.0 s long; ... at most 30 s — cut it ...": about this take
                why = str(err).split(" — ")[0]
                self.left_out.append((ex, why[len("waveform 0 "):] if why.startswith("waveform 0 ") else why))
            else:
                kept.append(ex)
        return kept

    def __len__(self) -> int:
        return len(self.examples)

    def batch(self, indices: Sequence[int]) -> tuple[Batch, list[str]]:
        """Padded :class:`~workbench.models.base.Batch` (with speaker rows) and transcripts."""
        batch = self.backend.collate([self.items[i] for i in indices], [self.examples[i].speaker for i in indices])
        return batch, [self.examples[i].text for i in indices]


def with_speed_perturbation(examples: Sequence[Example], factors: Sequence[float]) -> list[Example]:
    """``examples`` followed by a copy of each at every speed in ``factors`` (same text,
    speaker and utterance id); the training set grows ``1 + len(factors)`` times."""
    out = list(examples)
    for factor in factors:
        out += [dataclasses.replace(e, wav=speed_perturb(e.wav, factor)) for e in examples]
    return out


def left_out_note(originals: Sequence[Example], train: FeatureCache, valid: FeatureCache) -> str:
    """The takes two feature caches left out (``skip_unusable``), named with their sentence and why, and
    what to do; "" when none. ``train`` may hold speed-changed copies of ``originals``, counted apart."""
    mine = {id(e) for e in originals}
    takes = [(ex, why) for ex, why in train.left_out if id(ex) in mine] + valid.left_out
    copies = sum(id(ex) not in mine for ex, _ in train.left_out)
    named = [f"take {ex.utt_id} ({ex.text!r}) {why}" if why.startswith("is ") else
             f"take {ex.utt_id} ({ex.text!r}): {why}" for ex, why in takes[:10]]
    more = f" (and {len(takes) - 10} more)" if len(takes) > 10 else ""
    note = (f"{len(takes)} recording{'s were' if len(takes) != 1 else ' was'} left out of training: "
            f"{'; '.join(named)}{more}. Record {'them' if len(takes) != 1 else 'it'} again as shorter takes, one "
            "sentence each (on the Record page, Record again sets the old take aside).") if takes else ""
    if copies:
        note += (f" {copies} slowed-down cop{'ies' if copies != 1 else 'y'} of long takes (speed perturbation) "
                 f"{'were' if copies != 1 else 'was'} left out too.")
    return note.strip()


def speaker_mixed_batches(speakers: Sequence[int], batch_size: int, *, generator: torch.Generator) -> list[list[int]]:
    """One epoch of batches in which every batch mixes speakers as evenly as it can.

    Each speaker's utterances are shuffled, then dealt round-robin across speakers
    (in a shuffled speaker order) and cut into batches, so a batch of size B holds
    about ``min(B, #speakers)`` different speakers.

    Returns:
        list of index lists covering every example exactly once.
    """
    by_speaker: dict[int, list[int]] = {}
    for i, s in enumerate(speakers):
        by_speaker.setdefault(int(s), []).append(i)
    queues = []
    for s in sorted(by_speaker):
        idx = by_speaker[s]
        perm = torch.randperm(len(idx), generator=generator).tolist()
        queues.append([idx[p] for p in perm])
    order = torch.randperm(len(queues), generator=generator).tolist()
    queues = [queues[o] for o in order]
    dealt: list[int] = []
    while any(queues):
        for q in queues:
            if q:
                dealt.append(q.pop())
    return [dealt[i: i + batch_size] for i in range(0, len(dealt), batch_size)]
