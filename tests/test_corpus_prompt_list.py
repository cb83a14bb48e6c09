"""Uploading many recordings with the speaker's own prompts.txt (issue 24 A8).

A plain prompt list (no file names) is matched to the recordings in the order of their
file names; a list that cannot be matched says what each line must look like; a take
that fails the quality check is named, with the reason.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from workbench.corpus import SpeakerCorpus, import_files, import_folder, match_transcripts
from workbench.errors import CorpusError

SAMPLE = Path(__file__).resolve().parent.parent / "sample_data" / "sim-accent"
LINES = [json.loads(x) for x in (SAMPLE / "manifest.jsonl").read_text().splitlines() if x.strip()]


def _recordings(n: int) -> list[tuple[str, bytes]]:
    """``rec-1.flac`` ... ``rec-<n>.flac`` (numbered as a recorder app names them: 1, 2, ... 10, 11)."""
    return [(f"rec-{i + 1}.flac", (SAMPLE / u["audio_path"]).read_bytes()) for i, u in enumerate(LINES[:n])]


def _prompts(n: int) -> list[str]:
    """The sentences said in ``_recordings(n)``, with capitals and full stops as a prompt list has them,
    several starting with the same word (read as a repeated file name before)."""
    return [("The " if i % 3 == 0 else "") + u["transcript"].capitalize() + "." for i, u in enumerate(LINES[:n])]


@pytest.fixture
def corpus(tmp_path) -> SpeakerCorpus:
    return SpeakerCorpus.create(tmp_path, "spk-1", simulated=True)


def test_a_plain_prompt_list_is_matched_in_file_name_order(corpus) -> None:
    prompts = _prompts(12)
    files = _recordings(12)[::-1] + [("prompts.txt", "\n".join(prompts).encode())]  # upload order does not matter
    report = import_files(corpus, files)
    assert len(report.added) == 12, report.message
    said = {u.extra["source_file"]: u.transcript for u in corpus.utterances()}
    assert [said[f"rec-{i + 1}.flac"] for i in range(12)] == prompts  # rec-2 before rec-10
    assert "order of their file names" in report.message and "rec-1: 'The" in report.message
    assert corpus.summary()["n_prompts"] == 12


def test_a_folder_import_takes_a_prompt_list_too(tmp_path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name, data in _recordings(3):
        (src / name).write_bytes(data)
    (src / "prompts.txt").write_text("\n".join(_prompts(3)) + "\n")
    corpus = import_folder(src, src / "prompts.txt", tmp_path, "spk-2")
    assert sorted(u.transcript for u in corpus.utterances()) == sorted(_prompts(3))


def test_a_list_that_cannot_be_matched_says_what_each_line_must_be(corpus) -> None:
    files = _recordings(3) + [("prompts.txt", "\n".join(_prompts(5)).encode())]
    with pytest.raises(CorpusError, match="5 sentences without file names for 3 recordings.*start each line "
                                          "with the recording's file name.*one sentence per recording"):
        import_files(corpus, files)
    mixed = "rec-1 The tap is dripping\nThe cat sat\nrec-2 hello there\nThe dog ran\n"
    with pytest.raises(CorpusError, match="line 4: 'The'.*not the name of a recording; each line must start "
                                          "with the recording's file name"):
        import_files(corpus, _recordings(2) + [("t.txt", mixed.encode())])
    assert corpus.utterances(None) == []  # nothing saved


def test_file_names_that_match_no_recording_are_not_read_as_sentences() -> None:
    """A transcript with ids of other files is a mismatch to report, not a prompt list."""
    texts, note = match_transcripts("a01 good morning\na02 thank you", ids=["b01", "b02"])
    assert texts == {"a01": "good morning", "a02": "thank you"} and note == ""


def test_the_take_that_failed_the_quality_check_is_named(corpus) -> None:
    buf = io.BytesIO()
    sf.write(buf, np.zeros(16000, dtype=np.float32), 16000, format="WAV")
    files = [*_recordings(2), ("quiet-take.wav", buf.getvalue()),
             ("t.txt", b"rec-1 the tap is dripping\nrec-2 will it rain tomorrow\nquiet-take good morning\n")]
    report = import_files(corpus, files)
    assert len(report.added) == 2 and len(report.rejected) == 1
    assert "1 more was saved but did not pass the quality check" in report.message
    assert "quiet-take.wav: " in report.message and "more were" not in report.message
