"""workbench.corpus: speaker folders that never lose a recording."""

from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from _corpus_helpers import PROMPTS, _corpus, _manifest_lines
from conftest import SR, make_speechlike, make_tone
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.corpus import (
    SpeakerCorpus,
    Utterance,
    import_folder,
    list_speakers,
    validate_speaker_id,
)
from workbench.errors import AudioError, CorpusError



# --------------------------------------------------------------------------- #
# basics
# --------------------------------------------------------------------------- #


def test_create_add_list_reload(speaker_root: Path) -> None:
    corpus = _corpus(
        speaker_root,
        display_name="Speaker A",
        notes="mild dysarthria",
        simulated=True,
        profile={"rate": 0.8},
    )
    assert corpus.root == speaker_root / "spk-001" and corpus.speaker_id == "spk-001"
    takes = [make_speechlike(1.0 + 0.25 * i, seed=i) for i in range(3)]
    added = [corpus.add_take(x, prompt=PROMPTS[i]) for i, x in enumerate(takes)]
    assert [u.status for u in added] == ["ok"] * 3
    assert len({u.utt_id for u in added}) == 3
    assert added[0].utt_id.startswith("00001-") and added[2].utt_id.startswith("00003-")
    assert (
        added[1].duration_s == pytest.approx(1.25) and added[1].transcript == PROMPTS[1]
    )
    assert (
        added[1].quality["ok"] is True
        and added[1].audio_path == f"audio/{added[1].utt_id}.flac"
    )

    again = SpeakerCorpus.open(corpus.root)
    assert again.utterances() == added
    for utt, x in zip(added, takes):
        y = again.load_audio(utt.utt_id)
        assert y.shape == x.shape and np.max(np.abs(y - x)) <= 1 / 32768 + 1e-6
    info = again.info
    assert (
        info["display_name"] == "Speaker A"
        and info["simulated"] is True
        and info["profile"] == {"rate": 0.8}
    )
    assert again.prompts() == PROMPTS
    summary = again.summary()
    assert summary["n_ok"] == 3 and summary["n_rejected"] == 0
    assert summary["minutes_ok"] == pytest.approx(3.75 / 60, abs=1e-3)
    assert (summary["n_prompts"], summary["n_prompts_recorded"]) == (10, 3)
    assert again.problems() == []
    assert [c.speaker_id for c in list_speakers(speaker_root)] == ["spk-001"]


def test_rejected_takes_are_kept(speaker_root: Path) -> None:
    corpus = _corpus(speaker_root)
    short = corpus.add_take(make_tone(0.1), prompt=PROMPTS[0])
    clipped = corpus.add_take(
        np.clip(10 * make_speechlike(1.0), -1, 1), prompt=PROMPTS[1]
    )
    assert short.status == clipped.status == "rejected"
    assert "too_short" in [p["code"] for p in short.quality["problems"]]
    assert (corpus.root / short.audio_path).is_file()  # nothing lost
    assert corpus.utterances() == []
    assert [u.utt_id for u in corpus.utterances("rejected")] == [
        short.utt_id,
        clipped.utt_id,
    ]
    assert corpus.load_audio(short).shape == (1600,)
    corpus.set_status(clipped.utt_id, "ok")  # the therapist overrides the check
    assert [u.utt_id for u in corpus.utterances()] == [clipped.utt_id]
    assert corpus.summary()["n_rejected"] == 1
    forced = corpus.add_take(make_tone(0.1), prompt=PROMPTS[2], status="skipped")
    assert forced.status == "skipped" and corpus.utterances("skipped") == [forced]


def test_rerecord_and_status_supersede_earlier_lines(speaker_root: Path) -> None:
    corpus = _corpus(speaker_root)
    first = corpus.add_take(make_speechlike(1.0), prompt=PROMPTS[0], utt_id="p0")
    other = corpus.add_take(make_speechlike(1.0, seed=3), prompt=PROMPTS[1])
    second = corpus.add_take(
        make_speechlike(2.0, seed=1), prompt=PROMPTS[0], utt_id="p0"
    )
    assert (
        second.audio_path == "audio/p0.r2.flac"
        and (corpus.root / first.audio_path).is_file()
    )
    current = corpus.utterances(None)
    assert [u.utt_id for u in current] == [
        "p0",
        other.utt_id,
    ]  # order of first appearance
    assert current[0] == second and corpus.load_audio("p0").shape == (2 * SR,)
    corpus.set_status("p0", "rejected")
    corpus.set_status("p0", "rejected")  # no change: no new line
    assert len(_manifest_lines(corpus)) == 4
    assert [u.utt_id for u in corpus.utterances()] == [other.utt_id]
    with pytest.raises(CorpusError, match="There is no take 'nope'"):
        corpus.set_status("nope", "ok")
    with pytest.raises(
        CorpusError, match="status must be one of ok, rejected, skipped"
    ):
        corpus.set_status("p0", "great")


def test_add_take_mixes_resamples_and_records_quality(speaker_root: Path) -> None:
    corpus = _corpus(speaker_root)
    stereo48 = np.stack(
        [make_speechlike(1.5, sample_rate=48000), make_speechlike(1.5, sample_rate=48000, seed=2)], axis=1
    )
    utt = corpus.add_take(
        stereo48, prompt=PROMPTS[0], sample_rate=48000, transcript="prompt numbr 0"
    )
    assert utt.status == "ok" and utt.duration_s == pytest.approx(1.5)
    assert {p["code"] for p in utt.quality["problems"]} == {"stereo", "wrong_rate"}
    assert utt.transcript == "prompt numbr 0" and utt.prompt == PROMPTS[0]
    info = sf.info(str(corpus.root / utt.audio_path))
    assert (info.samplerate, info.channels, info.frames, info.subtype) == (
        SR,
        1,
        int(1.5 * SR),
        "PCM_16",
    )


@pytest.mark.parametrize(
    ("audio", "words"),
    [
        (np.zeros(0, np.float32), "Nothing was recorded"),
        (np.full(SR, np.nan, np.float32), "not numbers"),
    ],
)
def test_add_take_refuses_what_cannot_be_saved(
    speaker_root: Path, audio: np.ndarray, words: str
) -> None:
    corpus = _corpus(speaker_root)
    with pytest.raises(AudioError, match=f"This take cannot be saved. .*{words}"):
        corpus.add_take(audio, prompt=PROMPTS[0])
    assert (
        _manifest_lines(corpus) == [] and list((corpus.root / "audio").iterdir()) == []
    )


def test_add_take_argument_errors(speaker_root: Path) -> None:
    corpus = _corpus(speaker_root)
    x = make_speechlike(1.0)
    with pytest.raises(CorpusError, match="prompt must be text"):
        corpus.add_take(x, prompt=None)  # type: ignore[arg-type]
    with pytest.raises(CorpusError, match=r"Utterance id '\.\./x' is not allowed"):
        corpus.add_take(x, prompt="a", utt_id="../x")
    with pytest.raises(CorpusError, match="extra must be a dict of JSON values"):
        corpus.add_take(x, prompt="a", extra={"x": object()})
    with pytest.raises(CorpusError, match="status must be one of"):
        corpus.add_take(x, prompt="a", status="good")
    assert _manifest_lines(corpus) == []


def test_consent(speaker_root: Path) -> None:
    corpus = _corpus(speaker_root)
    with pytest.raises(CorpusError, match="Consent 'c1' is not recorded .*add_consent"):
        corpus.add_take(make_speechlike(1.0), prompt="a", consent_id="c1")
    corpus.add_consent("c1", text="research use", given_by="speaker")
    utt = corpus.add_take(make_speechlike(1.0), prompt="a", consent_id="c1")
    assert utt.consent_id == "c1"
    records = SpeakerCorpus.open(corpus.root).info["consent"]
    assert [(r["consent_id"], r["text"], r["given_by"]) for r in records] == [
        ("c1", "research use", "speaker")
    ]
    with pytest.raises(CorpusError, match="already recorded"):
        corpus.add_consent("c1")


def test_create_existing_and_open_errors(speaker_root: Path) -> None:
    corpus = _corpus(speaker_root)
    corpus.add_take(make_speechlike(1.0), prompt="a")
    with pytest.raises(CorpusError, match=r"already exists .*exist_ok=True"):
        _corpus(speaker_root)
    same = SpeakerCorpus.create(
        speaker_root, "spk-001", exist_ok=True, prompts=["other"]
    )
    assert same.prompts() == PROMPTS and len(same.utterances()) == 1  # opened unchanged
    with pytest.raises(CorpusError, match=r"No speaker folder at .*in the app \(workbench serve.*workbench record"):
        SpeakerCorpus.open(speaker_root / "nobody")
    with pytest.raises(
        CorpusError,
        match=r"not a speaker folder .*contains speaker folders \(spk-001\)",
    ):
        SpeakerCorpus.open(speaker_root)
    (speaker_root / "other").mkdir()
    (speaker_root / "other" / "notes.txt").write_text("x")
    with pytest.raises(CorpusError, match="is not a speaker folder"):
        SpeakerCorpus.create(speaker_root, "other")
    (corpus.root / "speaker.json").write_text("{broken")
    with pytest.raises(CorpusError, match=r"is damaged .*recordings .* are untouched"):
        SpeakerCorpus.open(corpus.root)
    with pytest.warns(UserWarning, match="Skipped speaker folder"):
        assert list_speakers(speaker_root) == []
    with pytest.raises(CorpusError, match="is not a folder"):
        list_speakers(speaker_root / "missing")


def test_prompts(speaker_root: Path) -> None:
    corpus = SpeakerCorpus.create(speaker_root, "spk-002")
    assert corpus.prompts() == []
    corpus.set_prompts(["  one ", "", "two"])
    assert corpus.prompts() == ["one", "two"]
    with pytest.raises(CorpusError, match="line break"):
        corpus.set_prompts(["a\nb"])
    with pytest.raises(CorpusError, match="not one string"):
        corpus.set_prompts("abc")


# --------------------------------------------------------------------------- #
# split
# --------------------------------------------------------------------------- #


def _fill(corpus: SpeakerCorpus, prompts: list[str], takes: int = 2) -> None:
    x = make_speechlike(0.6)
    for p in prompts:
        for _ in range(takes):
            corpus.add_take(x, prompt=p)


def test_split_is_deterministic_and_stratified(speaker_root: Path) -> None:
    corpus = _corpus(speaker_root)
    _fill(corpus, PROMPTS)
    corpus.add_take(
        make_speechlike(0.6), prompt="Prompt  number 3."
    )  # same text, other spelling
    train, test = corpus.split(test_fraction=0.2, seed=0)
    assert corpus.split(test_fraction=0.2, seed=0) == (train, test)
    assert len(train) + len(test) == 21

    def norm(u: Utterance) -> str:
        return " ".join(u.prompt.lower().rstrip(".").split())

    train_p, test_p = {norm(u) for u in train}, {norm(u) for u in test}
    assert not train_p & test_p and len(test_p) == 2
    splits = {
        tuple(sorted({norm(u) for u in corpus.split(seed=s)[1]})) for s in range(6)
    }
    assert len(splits) > 1  # the seed matters

    other = SpeakerCorpus.create(speaker_root, "spk-rev")
    _fill(other, PROMPTS[::-1], takes=1)  # recorded in another order
    assert {norm(u) for u in other.split(test_fraction=0.2, seed=0)[1]} == test_p


def test_split_small_corpora(speaker_root: Path) -> None:
    corpus = _corpus(speaker_root)
    assert corpus.split() == ([], [])
    _fill(corpus, ["only prompt"])
    train, test = corpus.split()
    assert len(train) == 2 and test == []
    _fill(corpus, ["second prompt"], takes=1)
    train, test = corpus.split(test_fraction=0.01)
    assert len({u.prompt for u in test}) == 1 and len({u.prompt for u in train}) == 1
    assert corpus.split(test_fraction=0.0)[1] == []
    with pytest.raises(CorpusError, match="below 1"):
        corpus.split(test_fraction=1.0)


# --------------------------------------------------------------------------- #
# import / export
# --------------------------------------------------------------------------- #


def _src(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    sf.write(src / "a1.wav", make_speechlike(1.0), SR)
    sf.write(src / "a2.flac", make_speechlike(1.2, sample_rate=44100, seed=1), 44100)
    sf.write(src / "short.wav", make_tone(0.1), SR)
    sf.write(src / "extra.wav", make_speechlike(1.0), SR)
    sf.write(src / "take 3.ogg", make_speechlike(1.0, seed=2), SR)
    (src / "broken.wav").write_bytes(b"not audio at all")
    (src / "voice.m4a").write_bytes(b"\x00" * 10)
    (src / "README.txt").write_text("ignored")
    return src


def test_import_folder_id_text_lines(tmp_path: Path, speaker_root: Path) -> None:
    src = _src(tmp_path)
    tx = tmp_path / "text"
    tx.write_text(
        "# id text\na1 the first sentence\na2  the second   sentence\nshort too short\n"
        "take 3 a third one\nbroken broken file\nzz no audio for this\n"
    )
    with pytest.warns(UserWarning, match="audio files have no transcript"):
        corpus = import_folder(
            src, tx, speaker_root, "spk-imp", display_name="Imported"
        )
    report = corpus.last_import
    assert report is not None
    assert report.added == ["a1", "a2", "take_3"] and report.rejected == ["short"]
    # "take 3 a third one" matches "take 3.ogg": the longest file name the line starts with (issue 16)
    assert report.unmatched_audio == ["extra.wav"]
    assert report.missing_audio == ["zz"]
    assert {u.utt_id: u.prompt for u in corpus.utterances()}["take_3"] == "a third one"
    assert [r.split(":")[0] for r in report.unreadable] == ["voice.m4a", "broken.wav"]
    assert "is not an audio file we can read" in report.unreadable[1]
    by_id = {u.utt_id: u for u in corpus.utterances(None)}
    assert by_id["a2"].prompt == "the second sentence" and by_id[
        "a2"
    ].duration_s == pytest.approx(1.2, abs=1e-3)
    assert "wrong_rate" in [p["code"] for p in by_id["a2"].quality["problems"]]
    assert by_id["short"].status == "rejected" and by_id["a1"].extra == {
        "source_file": "a1.wav"
    }
    assert corpus.prompts()[:2] == ["the first sentence", "the second sentence"]
    assert corpus.info["display_name"] == "Imported"

    with pytest.warns(UserWarning):
        again = import_folder(  # the module function is the API (no SpeakerCorpus.import_folder: issue 31)
            src, tx, speaker_root, "spk-imp", exist_ok=True
        )
    assert sorted(again.last_import.already_present) == [
        "a1.wav",
        "a2.flac",
        "short.wav",
        "take 3.ogg",
    ]  # type: ignore[union-attr]
    assert len(again.utterances(None)) == 4


def test_import_folder_csv(tmp_path: Path, speaker_root: Path) -> None:
    src = _src(tmp_path)
    tx = tmp_path / "transcripts.csv"
    tx.write_text(
        'ID,Text,speaker\na1,"Hello, world",x\ntake 3,"a third one",x\n',
        encoding="utf-8-sig",
    )
    with pytest.warns(UserWarning):
        corpus = import_folder(src, tx, speaker_root, "spk-csv")
    utts = {u.extra["source_file"]: u for u in corpus.utterances(None)}
    assert utts["a1.wav"].prompt == "Hello, world"
    assert utts["take 3.ogg"].utt_id == "take_3"  # made safe
    assert corpus.last_import.added == ["a1", "take_3"]  # type: ignore[union-attr]


def test_import_folder_bad_transcripts(tmp_path: Path, speaker_root: Path) -> None:
    src = _src(tmp_path)
    tx = tmp_path / "text"
    tx.write_text("a1 one\na2\na1 again\n")
    with pytest.raises(
        CorpusError,
        match=r"line 2: 'a2' has no text; line 3: 'a1' already appears on line 1",
    ):
        import_folder(src, tx, speaker_root, "spk-bad")
    assert not (speaker_root / "spk-bad").exists()  # checked before anything is written
    with pytest.raises(CorpusError, match="was not found"):
        import_folder(src, tmp_path / "none.txt", speaker_root, "spk-bad")
    with pytest.raises(CorpusError, match="unknown options"):
        tx.write_text("a1 one\n")
        import_folder(src, tx, speaker_root, "spk-bad", colour="red")


def test_export_zip(tmp_path: Path, speaker_root: Path) -> None:
    corpus = _corpus(speaker_root)
    utt = corpus.add_take(make_speechlike(1.0), prompt=PROMPTS[0])
    out = corpus.export_zip(tmp_path)
    assert out == tmp_path / "spk-001.zip"
    with zipfile.ZipFile(out) as zf:
        names = sorted(zf.namelist())
        assert names == sorted(
            [
                "spk-001/manifest.jsonl",
                "spk-001/prompts.txt",
                "spk-001/speaker.json",
                f"spk-001/{utt.audio_path}",
            ]
        )
        zf.extractall(tmp_path / "restored")
    restored = SpeakerCorpus.open(tmp_path / "restored" / "spk-001")
    assert restored.utterances() == [utt]
    assert corpus.export_zip(tmp_path / "x" / "named.zip").name == "named.zip"
    with pytest.raises(CorpusError, match="outside"):
        corpus.export_zip(corpus.root / "inside.zip")
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


# --------------------------------------------------------------------------- #
# ids
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    "bad",
    [
        "../x",
        "a/b",
        "a\\b",
        "",
        ".hidden",
        "con",
        "NUL",
        "com1.txt",
        "a\x00b",
        "x" * 65,
        "a..b",
        "-x",
        "end.",
        "é",
        17,
        None,
    ],
)
def test_bad_speaker_ids(bad: object, speaker_root: Path) -> None:
    with pytest.raises(CorpusError) as exc:
        validate_speaker_id(bad)  # type: ignore[arg-type]
    message = str(exc.value)
    assert f"Speaker id {bad!r} is not allowed" in message
    assert (
        "use letters, digits, '-' or '_'" in message.lower()
        and "e.g. 'spk-017'" in message
    )
    with pytest.raises(CorpusError):
        SpeakerCorpus.create(speaker_root, bad)  # type: ignore[arg-type]
    assert list(speaker_root.iterdir()) == []


@pytest.mark.parametrize(
    "good", ["spk-017", "A", "a.b_c-1", "x" * 64, "console", "com10"]
)
def test_good_speaker_ids(good: str) -> None:
    assert validate_speaker_id(good) == good


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.text(max_size=70), st.from_regex(r"[A-Za-z0-9._/\\-]{0,10}", fullmatch=True)
    )
)
def test_fuzz_speaker_ids_are_one_safe_path_component(speaker_id: str) -> None:
    parent = Path(tempfile.gettempdir()) / "wb-parent"
    try:
        sid = validate_speaker_id(speaker_id)
    except CorpusError as exc:
        assert repr(speaker_id) in str(exc)
        return
    assert sid == speaker_id and sid not in (".", "..")
    assert Path(parent, sid).resolve().parent == parent.resolve()
    assert Path(parent, sid).name == sid


# --------------------------------------------------------------------------- #
# damaged manifests and crashes
# --------------------------------------------------------------------------- #
