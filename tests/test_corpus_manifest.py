"""The speaker corpus's manifest under damage and concurrency: corrupt lines, fuzzed lines, a crash while recording, two writers (split from test_corpus.py)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from _corpus_helpers import PROMPTS, _corpus, _manifest_lines
from conftest import SR, make_speechlike
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workbench.corpus import (
    MISSING,
    STATUSES,
    SpeakerCorpus,
    Utterance,
)
from workbench.errors import CorpusError



# --------------------------------------------------------------------------- #
# basics
# --------------------------------------------------------------------------- #


def _good_line(utt_id: str) -> str:
    return Utterance(
        utt_id=utt_id,
        audio_path=f"audio/{utt_id}.flac",
        prompt="p",
        duration_s=1.0,
        created="2024-01-01T00:00:00+00:00",
    ).to_json()


def test_corrupt_manifest_lines_are_skipped_and_reported(speaker_root: Path) -> None:
    corpus = _corpus(speaker_root)
    good = corpus.add_take(make_speechlike(1.0), prompt=PROMPTS[0])
    bad_lines = [
        b"\xff\xfe garbage \x00 bytes",
        (
            b'{"utt_id": "x1", "audio_path": "audio/x1.flac", "prompt": "p", "duration_s": "long", '
            b'"created": "2024-01-01T00:00:00+00:00", "status": "ok"}'
        ),
        json.dumps({"utt_id": "x2", "prompt": "p"}).encode(),
        _good_line("x3").replace('"duration_s":1.0', '"duration_s":NaN').encode(),
        _good_line("x4").replace("audio/x4.flac", "../../etc/passwd").encode(),
        b"[1, 2, 3]",
        b"",
        b"   ",
    ]
    with open(corpus.root / "manifest.jsonl", "ab") as fh:
        fh.write(
            b"\n".join(bad_lines)
            + b"\n"
            + _good_line("late").encode()
            + b"\n"
            + _good_line("cut")[:40].encode()
        )
    with pytest.warns(UserWarning, match=r"8 problem\(s\)") as record:
        reopened = SpeakerCorpus.open(corpus.root)
    assert (
        len([w for w in record if "problem(s)" in str(w.message)]) == 1
    )  # warned once
    assert [u.utt_id for u in reopened.utterances(None)] == [good.utt_id, "late"]
    problems = reopened.problems()
    assert problems[:6] == [
        "manifest line 2: not valid UTF-8 text (damaged bytes). Skipped.",
        "manifest line 3: duration_s must be a number of seconds >= 0, got 'long'. Skipped.",
        "manifest line 4: missing audio_path, duration_s, created, status. Skipped.",
        "manifest line 5: not valid JSON. Skipped.",
        (
            "manifest line 6: audio_path '../../etc/passwd' must be a relative path inside the speaker folder, "
            "e.g. 'audio/x.flac'. Skipped."
        ),
        "manifest line 7: expected a JSON object, got list. Skipped.",
    ]
    assert (
        problems[6]
        == "manifest line 11: cut off (the app probably stopped while saving); skipped."
    )
    assert problems[7].startswith("take 'late': its audio file audio/late.flac is missing; the take is listed as "
                                  "'missing' and not used. Restore the file")
    assert {u.utt_id: u.status for u in reopened.utterances(None)}["late"] == "missing"
    assert "late" not in [u.utt_id for u in reopened.utterances()]  # not listed as ok (issue 16)
    with pytest.raises(CorpusError, match="is missing"):
        reopened.load_audio("late")

    new = reopened.add_take(
        make_speechlike(1.0), prompt=PROMPTS[1]
    )  # starts on a fresh line
    assert _manifest_lines(reopened)[-1].decode() == new.to_json()
    assert [u.utt_id for u in reopened.utterances()][-1] == new.utt_id


def test_orphan_audio_is_reported_not_deleted(speaker_root: Path) -> None:
    corpus = _corpus(speaker_root)
    (corpus.root / "audio" / "lost.flac").write_bytes(b"x")
    (corpus.root / "audio" / ".lost.flac.123.tmp").write_bytes(
        b"x"
    )  # an interrupted save: reported, then removed on the next open (issue 16)
    assert corpus.problems() == [
        "audio/lost.flac has no manifest line (the app probably stopped while saving it); the file is kept.",
        "audio/.lost.flac.123.tmp is an unfinished file left by a save that was interrupted and holds no take of "
        "the manifest; it is removed when the folder is next opened where it can be written (or delete it yourself).",
    ]
    assert (corpus.root / "audio" / "lost.flac").exists()


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=8,
)
_VALID = json.loads(_good_line("base"))


def _mutated(draw_key: str, value: object) -> bytes:
    d = dict(_VALID)
    d[draw_key] = value
    return json.dumps(d).encode()


_LINES = st.one_of(
    st.binary(max_size=120),
    st.text(max_size=120).map(lambda s: s.encode("utf-8", "surrogatepass")),
    _JSON.map(lambda v: json.dumps(v).encode()),
    st.builds(_mutated, st.sampled_from(sorted(_VALID) + ["other"]), _JSON),
    st.builds(
        lambda s, k: s[:k], st.just(_good_line("half").encode()), st.integers(0, 200)
    ),
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(lines=st.lists(_LINES, max_size=6), end_newline=st.booleans())
def test_fuzz_manifest_never_raises(
    speaker_root: Path, lines: list[bytes], end_newline: bool
) -> None:
    root = speaker_root / "fuzz"
    if not root.exists():
        SpeakerCorpus.create(speaker_root, "fuzz")
    data = (
        _good_line("first").encode()
        + b"\n"
        + b"\n".join(lines)
        + (b"\n" if end_newline else b"")
    )
    (root / "manifest.jsonl").write_bytes(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        corpus = SpeakerCorpus.open(root)
    utts = corpus.utterances(None)
    assert all(isinstance(u, Utterance) and u.status in (*STATUSES, MISSING) for u in utts)
    assert "first" in [u.utt_id for u in utts]
    assert all(isinstance(p, str) for p in corpus.problems())
    corpus.split()
    corpus.summary()


_WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from workbench.corpus import SpeakerCorpus

    corpus = SpeakerCorpus.open(sys.argv[1])
    t = np.arange(48_000) / 16_000
    for i in range(10_000):
        x = (0.3 * np.sin(2 * np.pi * (150 + i) * t) * (np.sin(2 * np.pi * 3 * t) > 0)).astype(np.float32)
        corpus.add_take(x[: 16_000 + 1000 * (i % 30)], prompt=f"prompt {i % 7}")
    """
)


def test_crash_while_recording_loses_at_most_the_last_take(speaker_root: Path) -> None:
    corpus = _corpus(speaker_root)
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(corpus.root)], stderr=subprocess.PIPE
    )
    manifest = corpus.root / "manifest.jsonl"
    deadline = time.monotonic() + 60
    try:
        while manifest.read_bytes().count(b"\n") < 6:
            assert proc.poll() is None, proc.stderr.read().decode()  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the writer made no progress"
            time.sleep(0.005)
        time.sleep(
            float(np.random.default_rng().uniform(0, 0.03))
        )  # land somewhere inside a take
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()  # type: ignore[union-attr]
    assert proc.returncode == -signal.SIGKILL

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        after = SpeakerCorpus.open(corpus.root)
    utts = after.utterances(None)
    assert len(utts) >= 6
    for utt in utts:
        assert after.load_audio(utt).size == round(utt.duration_s * SR)
    problems = after.problems()
    cut = [p for p in problems if "cut off" in p]
    orphans = [p for p in problems if "has no manifest line" in p]
    assert (
        len(cut) <= 1 and len(orphans) <= 1 and len(problems) == len(cut) + len(orphans)
    ), problems

    new = after.add_take(make_speechlike(1.0), prompt="after the crash")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = SpeakerCorpus.open(corpus.root)
    assert again.utterances(None)[-1] == new
    assert again.problems() == problems  # the new line parsed; nothing new broke


def test_two_writers_never_interleave(speaker_root: Path) -> None:
    _corpus(speaker_root)
    writers = [
        SpeakerCorpus.open(speaker_root / "spk-001") for _ in range(2)
    ]  # like two app sessions
    x = make_speechlike(0.6)
    errors: list[BaseException] = []

    def work(corpus: SpeakerCorpus) -> None:
        try:
            for i in range(8):
                corpus.add_take(x, prompt=f"p{i}")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in writers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    final = SpeakerCorpus.open(speaker_root / "spk-001")
    assert len(final.utterances()) == 16 and final.problems() == []
    assert len({u.utt_id for u in final.utterances()}) == 16
    assert sorted(int(u.utt_id.split("-")[0]) for u in final.utterances()) == list(
        range(1, 17)
    )  # counter under the lock


def test_utterance_json_round_trip_and_errors() -> None:
    utt = Utterance(
        "u1",
        "audio/u1.flac",
        "héllo",
        duration_s=1,
        extra={"k": [1, 2]},
        consent_id="c1",
    )
    assert utt.transcript == "héllo" and utt.created.endswith("+00:00")
    assert Utterance.from_json(utt.to_json()) == utt
    assert Utterance.from_json(utt.to_json().encode()) == utt
    with pytest.raises(CorpusError, match="manifest line 9: not valid JSON"):
        Utterance.from_json("{", line_no=9)
    with pytest.raises(CorpusError, match="manifest line 3: status must be one of"):
        Utterance.from_json(utt.to_json().replace('"ok"', '"meh"'), line_no=3)
    with pytest.raises(
        CorpusError, match="created 'yesterday' is not an ISO-8601 time"
    ):
        Utterance("u1", "audio/u1.flac", "p", created="yesterday")


def test_reading_never_creates_files(speaker_root: Path) -> None:
    corpus = _corpus(speaker_root)
    corpus.add_take(make_speechlike(1.0), prompt=PROMPTS[0])
    (corpus.root / ".lock").unlink()  # e.g. sample data checked out from git
    before = sorted(p.relative_to(corpus.root) for p in corpus.root.rglob("*"))
    reader = SpeakerCorpus.open(corpus.root)
    (
        reader.utterances(),
        reader.summary(),
        reader.split(),
        reader.problems(),
        reader.load_audio(reader.utterances()[0]),
    )
    assert sorted(p.relative_to(corpus.root) for p in corpus.root.rglob("*")) == before
    assert len({*reader.utterances(), *reader.utterances()}) == 1  # hashable
