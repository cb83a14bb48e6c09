"""Helpers shared by test_corpus.py and test_corpus_manifest.py: a speaker folder with ten prompts."""

from __future__ import annotations

from pathlib import Path

from workbench.corpus import SpeakerCorpus

PROMPTS = [f"prompt number {i}" for i in range(10)]


def _corpus(root: Path, speaker_id: str = "spk-001", **kwargs: object) -> SpeakerCorpus:
    return SpeakerCorpus.create(root, speaker_id, prompts=PROMPTS, **kwargs)  # type: ignore[arg-type]


def _manifest_lines(corpus: SpeakerCorpus) -> list[bytes]:
    return (corpus.root / "manifest.jsonl").read_bytes().splitlines()
