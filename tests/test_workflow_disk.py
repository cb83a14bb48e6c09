"""``personalize_speaker`` on a folder it cannot write finds out before training (issue 16:
it trained, then died at save time with an OSError traceback)."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from conftest import make_speechlike
from test_corpus_hostile import _as_unprivileged

import workbench.corpus.folder as corpus_module
import workbench.workflow as workflow
from workbench.corpus import SpeakerCorpus
from workbench.errors import CorpusError, TrainingError
from workbench.trainer import Trainer

PROMPTS = ["turn on the light", "good morning", "call my sister", "close the door"]


def _speaker(parent: Path) -> Path:
    corpus = SpeakerCorpus.create(parent, "spk-w", prompts=PROMPTS)
    for i, p in enumerate(PROMPTS * 2):
        corpus.add_take(make_speechlike(1.0, seed=i), prompt=p)
    return corpus.root


@pytest.fixture
def no_training(monkeypatch):
    """Fail the test if a model is loaded or training starts."""

    def refuse(*args, **kwargs):
        raise AssertionError("the folder should have been checked before this")

    monkeypatch.setattr(Trainer, "fit", refuse)
    import workbench.models.loading as loading

    monkeypatch.setattr(loading, "load_base_model", refuse)


@pytest.mark.parametrize(("code", "words"), [(errno.EROFS, "read-only"), (errno.ENOSPC, "the disk is full")])
def test_read_only_or_full_speaker_folder_is_refused_before_training(tmp_path, monkeypatch, no_training, code, words):
    root = _speaker(tmp_path)

    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(corpus_module.tempfile, "mkstemp", fail)
    with pytest.raises(CorpusError, match=f"{words}.*Nothing was trained") as exc:
        workflow.personalize_speaker(root, progress=False)
    assert exc.value.__cause__ is None
    assert not (root / "submodels").exists() and not (root / "reports").exists()


def test_a_report_folder_elsewhere_is_checked_too(tmp_path, no_training):
    root = _speaker(tmp_path)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(TrainingError, match="cannot"):
        workflow.personalize_speaker(root, progress=False, report_dir=blocker / "reports")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork (POSIX)")
def test_a_real_read_only_speaker_folder_is_refused_before_training():
    base = Path(tempfile.mkdtemp())
    try:
        root = _speaker(base)
        for path in [base, *base.rglob("*")]:
            path.chmod(0o555 if path.is_dir() else 0o444)

        def attempt() -> str:
            try:
                workflow.personalize_speaker(root, progress=False)
            except CorpusError as err:
                return str(err)
            return "no error"

        said = _as_unprivileged(attempt)
        assert "may not write there" in said and "Nothing was trained" in said, said
    finally:
        for path in [base, *base.rglob("*")]:
            path.chmod(0o755)
        shutil.rmtree(base)
