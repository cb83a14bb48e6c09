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
    import workbench.models as models

    monkeypatch.setattr(models, "load_base_model", refuse)


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


# ---------------------------------------------------------------- a disk that is (nearly) full (issue 24, B8)
B8_PROMPTS = ["turn on the light", "call my sister", "i am hungry", "good morning", "open the door",
              "where is my phone", "thank you very much", "i need some help", "close the window",
              "what time is it", "please pass the salt", "see you tomorrow"]


def _b8_speaker(parent: Path) -> Path:
    from _models import noise_waves

    corpus = SpeakerCorpus.create(parent, "spk-full", prompts=B8_PROMPTS, simulated=True)
    for i, w in enumerate(noise_waves(24, seed=7, lo=12000, hi=20000)):
        corpus.add_take(w * 3, prompt=B8_PROMPTS[i % len(B8_PROMPTS)])
    return corpus.root


def _b8_run(root: Path):
    from _models import tiny_backend

    from workbench.adapters import ResidualConfig
    from workbench.trainer import TrainConfig

    config = TrainConfig(adapter=ResidualConfig(bottleneck=4), max_steps=3, time_limit_s=None, eval_every=2,
                         batch_size=4, min_utterances=4)
    return workflow.personalize_speaker(root, backend=tiny_backend(), config=config, progress=False)


def _full_under(monkeypatch, *folders: Path) -> None:
    """Once training has finished (the disk filled up during the run), creating a file under any of
    ``folders`` fails as on a full disk (ENOSPC); elsewhere it works."""
    import workbench._atomic as atomic

    real_mkstemp, real_fit, full = atomic.tempfile.mkstemp, Trainer.fit, []

    def mkstemp(*args, **kwargs):
        where = Path(kwargs.get("dir") or ".").resolve()
        if full and any(where == f.resolve() or f.resolve() in where.parents for f in folders):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_mkstemp(*args, **kwargs)

    def fit(self, *args, **kwargs):
        result = real_fit(self, *args, **kwargs)
        full.append(True)
        return result

    monkeypatch.setattr(atomic.tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(Trainer, "fit", fit)


@pytest.fixture
def keep_here(tmp_path, monkeypatch):
    """Where a Submodel that could not be saved is kept (instead of the system's temporary folder)."""
    import workbench._disk as disk

    folder = tmp_path / "kept"
    monkeypatch.setattr(disk, "_keep_folders", lambda: [folder])
    return folder


def test_a_few_hundred_kb_free_is_refused_before_training(tmp_path, monkeypatch) -> None:
    import workbench._disk as disk

    root = _b8_speaker(tmp_path)
    monkeypatch.setattr(disk, "free_bytes", lambda folder: 300_000)  # the probe: the 64 KB test passed

    def refuse(*args, **kwargs):
        raise AssertionError("training started on a disk without room for its results")

    monkeypatch.setattr(Trainer, "fit", refuse)
    with pytest.raises(TrainingError, match=r"not enough room.*0\.3 MB free.*Nothing was trained") as err:
        _b8_run(root)
    assert err.value.__cause__ is None
    assert not list((root / "submodels").glob("*.safetensors")) if (root / "submodels").exists() else True


def test_the_estimate_is_what_a_run_writes(tmp_path) -> None:
    """The estimate covers the files a real run writes (it must not be far below them)."""
    import workbench._disk as disk

    root = _b8_speaker(tmp_path)
    run = _b8_run(root)
    est = disk.run_output_bytes(run.adapted, held_out=len(run.comparison.utterances))
    assert run.submodel_path.stat().st_size <= est["submodel"]
    assert run.report_html.stat().st_size + run.report_csv.stat().st_size <= est["report"]


def test_a_disk_that_fills_during_training_keeps_the_trained_model(tmp_path, monkeypatch, keep_here) -> None:
    from workbench.adapters.io import read_submodel

    root = _b8_speaker(tmp_path)
    _full_under(monkeypatch, root)
    with pytest.raises(TrainingError, match="the disk is full. It was trained, and it was kept at") as err:
        _b8_run(root)
    assert err.value.__cause__ is None and "workbench report" in str(err.value)
    kept = list(keep_here.glob("*.safetensors"))
    assert len(kept) == 1 and str(kept[0]) in str(err.value)
    tensors, meta = read_submodel(kept[0])  # a complete Submodel: move it back and it works
    assert meta["speaker_ids"] == ["spk-full"] and tensors
    assert not (root / "submodels").exists() or not list((root / "submodels").iterdir())


def test_when_nothing_can_be_kept_it_says_so(tmp_path, monkeypatch, keep_here) -> None:
    root = _b8_speaker(tmp_path)
    _full_under(monkeypatch, root, keep_here.parent)
    with pytest.raises(TrainingError, match="could not be kept anywhere else.*recordings are safe") as err:
        _b8_run(root)
    assert err.value.__cause__ is None


def test_a_full_disk_at_the_report_says_the_model_was_saved(tmp_path, monkeypatch) -> None:
    root = _b8_speaker(tmp_path)
    _full_under(monkeypatch, root / "reports")
    with pytest.raises(TrainingError, match="the disk is full.*personal model itself was saved") as err:
        _b8_run(root)
    assert err.value.__cause__ is None and "workbench report" in str(err.value)
    assert len(list((root / "submodels").glob("*.safetensors"))) == 1
