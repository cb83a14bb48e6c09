"""Speaker folders under hostile conditions (issue 16): full and read-only disks, prompts
without words, broken characters, line separators, missing audio, leftover temp files.

Tests run as root, where ``chmod`` does not stop writes, so read-only and full disks are
simulated by making the system calls fail with ``EROFS``/``ENOSPC``; one test also drops
to an unprivileged user in a forked child to meet a real permission error.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import make_speechlike
from _disk import fail_atomic_writes, read_only_open  # noqa: E402

from workbench.corpus import MISSING, SpeakerCorpus, import_folder
from workbench.errors import CorpusError

PROMPTS = ["turn on the light", "good morning", "call my sister"]


def _corpus(root: Path) -> SpeakerCorpus:
    return SpeakerCorpus.create(root, "spk-h", prompts=PROMPTS)


def _files(corpus: SpeakerCorpus) -> list[str]:
    return sorted(p.relative_to(corpus.root).as_posix() for p in corpus.root.rglob("*") if p.is_file())


# --------------------------------------------------------------------------- #
# Full and read-only disks
# --------------------------------------------------------------------------- #


def test_full_disk_on_add_take_is_a_plain_error_and_leaves_nothing(speaker_root, monkeypatch):
    corpus = _corpus(speaker_root)
    first = corpus.add_take(make_speechlike(1.0), prompt=PROMPTS[0])
    before, manifest = _files(corpus), (corpus.root / "manifest.jsonl").read_bytes()
    fail_atomic_writes(monkeypatch, errno.ENOSPC)
    with pytest.raises(CorpusError, match="the disk is full. Free some space") as exc:
        corpus.add_take(make_speechlike(1.0, seed=1), prompt=PROMPTS[1])
    assert "'good morning' was not saved; the takes saved before are safe" in str(exc.value)
    assert exc.value.__cause__ is None  # no OSError traceback attached
    monkeypatch.undo()
    assert _files(corpus) == before and (corpus.root / "manifest.jsonl").read_bytes() == manifest
    assert [u.utt_id for u in corpus.utterances()] == [first.utt_id]


def test_full_disk_during_the_manifest_line_takes_back_the_line_and_the_audio(speaker_root, monkeypatch):
    corpus = _corpus(speaker_root)
    corpus.add_take(make_speechlike(1.0), prompt=PROMPTS[0])
    before, manifest = _files(corpus), (corpus.root / "manifest.jsonl").read_bytes()
    real_write = os.write

    def half_then_full(fd, data):  # only the manifest is written with os.write
        if len(data) > 10:
            return real_write(fd, bytes(data)[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(CorpusError, match="the disk is full"):
        corpus.add_take(make_speechlike(1.0, seed=1), prompt=PROMPTS[1])
    monkeypatch.undo()
    assert (corpus.root / "manifest.jsonl").read_bytes() == manifest  # no half line
    assert _files(corpus) == before  # no audio file without its line
    assert corpus.problems() == []


@pytest.mark.parametrize("action", ["add_take", "set_prompts", "set_status", "add_consent"])
def test_read_only_folder_writes_are_plain_errors(speaker_root, monkeypatch, action):
    corpus = _corpus(speaker_root)
    utt = corpus.add_take(make_speechlike(1.0), prompt=PROMPTS[0])
    before = {p: (corpus.root / p).read_bytes() for p in _files(corpus)}
    read_only_open(monkeypatch)
    calls = {
        "add_take": lambda: corpus.add_take(make_speechlike(1.0, seed=2), prompt=PROMPTS[1]),
        "set_prompts": lambda: corpus.set_prompts(["a new prompt"]),
        "set_status": lambda: corpus.set_status(utt.utt_id, "skipped"),
        "add_consent": lambda: corpus.add_consent("consent-1"),
    }
    with pytest.raises(CorpusError, match="read-only.*Copy the folder to a place you can write to") as exc:
        calls[action]()
    assert exc.value.__cause__ is None
    monkeypatch.undo()
    assert {p: (corpus.root / p).read_bytes() for p in _files(corpus)} == before


def test_create_on_a_read_only_disk_leaves_no_half_folder(speaker_root, monkeypatch):
    fail_atomic_writes(monkeypatch, errno.EROFS)
    with pytest.raises(CorpusError, match="read-only.*The speaker folder 'spk-h' was not created"):
        _corpus(speaker_root)
    monkeypatch.undo()
    assert list(speaker_root.iterdir()) == []
    assert _corpus(speaker_root).prompts() == PROMPTS  # and it can be made once the disk is writable


def test_check_writable_finds_a_full_disk_before_the_work(speaker_root, monkeypatch):
    corpus = _corpus(speaker_root)
    before = _files(corpus)
    corpus.check_writable("submodels", "reports")  # fine, and leaves nothing (not even the folders)
    assert _files(corpus) == before and not (corpus.root / "submodels").exists()
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
    with pytest.raises(CorpusError, match=r"spk-h/submodels': the disk is full.*Nothing was trained"):
        corpus.check_writable("submodels", what="Nothing was trained.")
    monkeypatch.setattr(os, "write", real_write)
    assert not any(p.name.startswith(".write-check") for p in corpus.root.iterdir())


def test_full_disk_stops_an_import_plainly_and_a_rerun_goes_on(tmp_path, speaker_root, monkeypatch):
    import soundfile as sf

    src = tmp_path / "src"
    src.mkdir()
    for name in ("a1", "a2"):
        sf.write(src / f"{name}.wav", make_speechlike(1.0), 16_000)
    (tmp_path / "t.txt").write_text("a1 good morning\na2 turn on the light\n")
    real = SpeakerCorpus.add_take
    calls = []

    def second_fails(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            fail_atomic_writes(monkeypatch, errno.ENOSPC)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(SpeakerCorpus, "add_take", second_fails)
    with pytest.raises(CorpusError, match=r"stopped at a2.wav: .*disk is full.*The 1 files imported before it"):
        import_folder(src, tmp_path / "t.txt", speaker_root, "spk-i")
    monkeypatch.undo()
    again = import_folder(src, tmp_path / "t.txt", speaker_root, "spk-i", exist_ok=True)
    assert again.last_import.added == ["a2"] and again.last_import.already_present == ["a1.wav"]


def _as_unprivileged(fn) -> str:
    """Run ``fn`` as user ``nobody`` in a forked child (root ignores permissions); returns what it said."""
    if os.geteuid() != 0:
        return fn()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.setgid(65534)
            os.setuid(65534)
            said = fn()
        except BaseException as err:  # noqa: BLE001 - reported to the parent
            said = f"{type(err).__name__}: {err}"
        os.write(write_end, said.encode("utf-8", "replace"))
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as fh:
        said = fh.read().decode()
    os.waitpid(pid, 0)
    return said


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork (POSIX)")
def test_a_real_permission_error_is_plain(speaker_root):
    base = Path(tempfile.mkdtemp())  # in /tmp: the unprivileged user can reach it
    try:
        corpus = SpeakerCorpus.create(base, "spk-ro", prompts=PROMPTS)
        for path in [base, *base.rglob("*")]:
            path.chmod(0o555 if path.is_dir() else 0o444)

        def attempt() -> str:
            opened = SpeakerCorpus.open(corpus.root)
            try:
                opened.check_writable("submodels", what="Nothing was trained.")
            except CorpusError as err:
                checked = str(err)
            else:
                checked = "no error"
            try:
                opened.add_take(make_speechlike(1.0), prompt=PROMPTS[0])
            except CorpusError as err:
                return f"{checked}\n{err}"
            return f"{checked}\nno error"

        said = _as_unprivileged(attempt)
        assert "may not write there" in said and "Nothing was trained." in said, said
        assert "was not saved" in said or "Nothing was changed" in said, said
        assert corpus.utterances() == []
    finally:
        for path in [base, *base.rglob("*")]:
            path.chmod(0o755)
        shutil.rmtree(base)


# --------------------------------------------------------------------------- #
# Prompts without words, broken characters, line separators
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("prompt", ["   ", "!!!", "...", "?!"])
def test_wordless_prompts_are_refused_before_anything_is_written(speaker_root, prompt):
    corpus = _corpus(speaker_root)
    before = _files(corpus)
    with pytest.raises(CorpusError, match="has no words that can be scored"):
        corpus.add_take(make_speechlike(1.0), prompt=prompt)
    with pytest.raises(CorpusError, match="transcript '!!!' has no words"):
        corpus.add_take(make_speechlike(1.0), prompt=PROMPTS[0], transcript="!!!")
    assert _files(corpus) == before
    if prompt.strip():
        with pytest.raises(CorpusError, match=r"Prompt 2 .* has no words"):
            corpus.set_prompts(["hello there", prompt])
        assert corpus.prompts() == PROMPTS


def test_wordless_takes_already_stored_are_left_out_with_a_reason(speaker_root):
    corpus = _corpus(speaker_root)
    good = corpus.add_take(make_speechlike(1.0), prompt=PROMPTS[0])
    old = corpus.add_take(make_speechlike(1.0, seed=1), prompt=PROMPTS[1])
    # as an older version stored it: the prompt '!!!' with status ok
    line = json.loads(old.to_json()) | {"prompt": "!!!", "transcript": "!!!"}
    with open(corpus.root / "manifest.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps(line) + "\n")
    (corpus.root / "prompts.txt").write_text("turn on the light\n!!!\n", encoding="utf-8")
    with pytest.warns(UserWarning, match="no words to score"):
        reopened = SpeakerCorpus.open(corpus.root)
    assert [u.utt_id for u in reopened.utterances()] == [good.utt_id]  # not trained on, not scored
    assert {u.utt_id: u.status for u in reopened.utterances(None)}[old.utt_id] == "rejected"
    assert any("'!!!' has no words to score" in p for p in reopened.problems())
    assert reopened.prompts() == ["turn on the light"]
    assert any(p.startswith("prompts.txt line 2: '!!!'") for p in reopened.problems())
    reopened.set_prompts(reopened.prompts() + ["a new one"])  # a list with an old wordless line stays editable


def test_line_separators_inside_a_prompt_are_spaces(speaker_root):
    corpus = _corpus(speaker_root)
    corpus.set_prompts(["turn on\u2028the light", "good\u2029morning", "call my\x85sister"])
    assert corpus.prompts() == ["turn on the light", "good morning", "call my sister"]
    utt = corpus.add_take(make_speechlike(1.0), prompt="turn on\u2028the light")
    assert utt.prompt == "turn on the light" and corpus.utterances()[0].prompt == "turn on the light"
    (corpus.root / "prompts.txt").write_text("one\u2028two\nthree\n", encoding="utf-8")  # an older file
    assert corpus.prompts() == ["one two", "three"]
    with pytest.raises(CorpusError, match="line break"):
        corpus.set_prompts(["one\ntwo"])


def test_a_lone_surrogate_is_refused_before_the_audio_is_written(speaker_root):
    corpus = _corpus(speaker_root)
    before = _files(corpus)
    with pytest.raises(CorpusError, match=r"broken character \(U\+D800"):
        corpus.add_take(make_speechlike(1.0), prompt="hello \ud800there")
    with pytest.raises(CorpusError, match=r"details contain a broken character \(U\+DC80"):
        corpus.add_take(make_speechlike(1.0), prompt=PROMPTS[0], extra={"note": "caf\udc80"})
    with pytest.raises(CorpusError, match="broken character"):
        corpus.set_prompts(["fine", "bro\udfffken"])
    assert _files(corpus) == before and corpus.prompts() == PROMPTS


# --------------------------------------------------------------------------- #
# Missing audio, leftover temporary files
# --------------------------------------------------------------------------- #


def test_a_take_without_its_audio_is_listed_as_missing(speaker_root):
    corpus = _corpus(speaker_root)
    kept = corpus.add_take(make_speechlike(1.0), prompt=PROMPTS[0])
    gone = corpus.add_take(make_speechlike(1.0, seed=1), prompt=PROMPTS[1])
    audio = (corpus.root / gone.audio_path).read_bytes()
    (corpus.root / gone.audio_path).unlink()
    assert [u.utt_id for u in corpus.utterances()] == [kept.utt_id]
    assert [u.utt_id for u in corpus.utterances(MISSING)] == [gone.utt_id]
    assert corpus.summary()["n_missing"] == 1 and corpus.summary()["n_ok"] == 1
    corpus.set_status(gone.utt_id, "skipped")  # the advice in the message works
    assert corpus.utterances(MISSING)[0].status == MISSING  # still missing: the file is gone
    corpus.set_status(gone.utt_id, "ok")
    (corpus.root / gone.audio_path).write_bytes(audio)  # restored from a backup
    assert [u.utt_id for u in corpus.utterances()] == [kept.utt_id, gone.utt_id]
    line = json.loads(gone.to_json()) | {"status": MISSING}  # never a stored status
    with open(corpus.root / "manifest.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps(line) + "\n")
    assert any("status must be one of ok, rejected, skipped; got 'missing'" in p for p in corpus.problems())


def test_leftover_temp_files_are_removed_on_open_and_reported(speaker_root):
    corpus = _corpus(speaker_root)
    corpus.add_take(make_speechlike(1.0), prompt=PROMPTS[0])
    (corpus.root / "audio" / ".00002-abc.flac.k2j4x.tmp").write_bytes(b"fLaC half")
    (corpus.root / ".manifest.jsonl.zz9.tmp").write_bytes(b"{")
    (corpus.root / "audio" / "notes.tmp").write_bytes(b"someone's file")  # not ours: kept
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        reopened = SpeakerCorpus.open(corpus.root)
    assert any("removed 2 unfinished temporary file(s)" in str(w.message) and ".manifest.jsonl.zz9.tmp"
               in str(w.message) for w in said)
    assert any("audio/notes.tmp has no manifest line" in str(w.message) for w in said)  # an orphan, kept
    assert not (corpus.root / "audio" / ".00002-abc.flac.k2j4x.tmp").exists()
    assert (corpus.root / "audio" / "notes.tmp").exists()
    assert not any("unfinished" in p for p in reopened.problems())
    with warnings.catch_warnings(record=True) as heard:
        warnings.simplefilter("always")
        assert len(SpeakerCorpus.open(corpus.root).utterances()) == 1
    assert not any("removed" in str(w.message) for w in heard)  # nothing left to remove


def test_leftover_temp_files_in_a_read_only_folder_are_reported(speaker_root, monkeypatch):
    corpus = _corpus(speaker_root)
    (corpus.root / "audio" / ".x.flac.abc.tmp").write_bytes(b"half")
    read_only_open(monkeypatch)
    with pytest.warns(UserWarning, match="1 problem"):
        reopened = SpeakerCorpus.open(corpus.root)
    assert any(p.startswith("audio/.x.flac.abc.tmp is an unfinished file") for p in reopened.problems())
    assert (corpus.root / "audio" / ".x.flac.abc.tmp").exists()
    assert isinstance(np.asarray(reopened.utterances()), np.ndarray)
