"""One rule for file modes (issue 24, B17): personal models, reports and their CSV are private to the
user (0600), whatever the umask; the CSV was 0644 while the Submodel and the HTML were 0600."""

from __future__ import annotations

import os
import stat

import pytest
import torch

from workbench._atomic import PRIVATE_MODE, write_atomic_with
from workbench.adapters.io import write_submodel
from workbench.evaluate import compare
from workbench.report import write_report


@pytest.fixture(params=[0o022, 0o000], ids=["umask 022", "umask 000"])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_report_html_and_csv_are_private(tmp_path, umask) -> None:
    comparison = compare(["turn on the light", "good morning"], ["turn of the light", "good morning"],
                         ["turn on the light", "good morning"], utt_ids=["u1", "u2"])
    html_path, csv_path = write_report(tmp_path / "reports", speaker={"speaker_id": "spk-1"}, comparison=comparison)
    assert _mode(html_path) == PRIVATE_MODE and _mode(csv_path) == PRIVATE_MODE
    assert "turn of the light" in csv_path.read_text()
    assert [p.name for p in (tmp_path / "reports").iterdir() if p.name.startswith(".")] == []  # no temporary file


def test_a_submodel_file_is_private(tmp_path, umask) -> None:
    path = write_submodel(tmp_path / "lora.safetensors", {"w": torch.zeros(2)}, config={"family": "lora"},
                          base_model="workbench-tiny", base_fingerprint="0" * 64, speaker_ids=["spk-1"])
    assert _mode(path) == PRIVATE_MODE


def test_a_writer_that_fails_leaves_nothing(tmp_path) -> None:
    def fail(path):
        path.write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        write_atomic_with(tmp_path / "x.csv", fail)
    assert list(tmp_path.iterdir()) == []


def test_a_speaker_folder_is_private_file_by_file(tmp_path, umask) -> None:
    """Issue 24 review: manifest.jsonl and .lock were made 0644 while the recordings were 0600."""
    from _models import noise_waves

    from workbench.corpus import SpeakerCorpus

    corpus = SpeakerCorpus.create(tmp_path, "spk-1", prompts=["good morning", "call my sister"])
    corpus.add_take(noise_waves(1, seed=1, lo=16000, hi=17000)[0] * 3, prompt="good morning")
    files = [p for p in corpus.root.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {".lock", "manifest.jsonl", "speaker.json", "prompts.txt"}
    assert any(p.suffix == ".flac" for p in files)
    assert {p.relative_to(corpus.root).as_posix(): oct(_mode(p)) for p in files} == \
        {p.relative_to(corpus.root).as_posix(): oct(PRIVATE_MODE) for p in files}


def test_a_speaker_folder_made_before_the_rule_becomes_private_when_written(tmp_path) -> None:
    """A folder from an earlier version (manifest and lock 0644) is made private at the next write."""
    from _models import noise_waves

    from workbench.corpus import SpeakerCorpus

    corpus = SpeakerCorpus.create(tmp_path, "spk-1", prompts=["good morning"])
    for name in ("manifest.jsonl", ".lock"):
        os.chmod(corpus.root / name, 0o644)
    SpeakerCorpus.open(corpus.root).add_take(noise_waves(1, seed=2, lo=16000, hi=17000)[0] * 3,
                                              prompt="good morning")
    assert _mode(corpus.root / "manifest.jsonl") == PRIVATE_MODE and _mode(corpus.root / ".lock") == PRIVATE_MODE
