"""The command line with files on disk (issue 16): ``workbench import``, ``transcribe`` of
short, silent, damaged, cut-off or long files, and ``record --create`` without PortAudio."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import SR, make_speechlike

from workbench.cli import main
from workbench.corpus import SpeakerCorpus


def _recordings(tmp_path: Path) -> tuple[Path, Path]:
    src = tmp_path / "recordings"
    src.mkdir()
    sf.write(src / "take 1.wav", make_speechlike(1.0), SR)
    sf.write(src / "b2.flac", make_speechlike(1.2, seed=1), SR)
    if "MP3" in sf.available_formats():
        sf.write(src / "c3.mp3", make_speechlike(1.1, seed=2), SR, format="MP3")
    text = tmp_path / "transcripts.txt"
    text.write_text("take 1 good morning\nb2\tturn on the light\nc3 call my sister\n", encoding="utf-8")
    return src, text


def test_import_command_makes_a_speaker_folder_and_reruns_cleanly(tmp_path, capsys):
    src, text = _recordings(tmp_path)
    target = tmp_path / "speakers" / "spk-imp"
    assert main(["import", str(src), str(text), str(target)]) == 0
    out = capsys.readouterr().out
    n = 3 if "MP3" in sf.available_formats() else 2
    assert f"Imported {n} good takes" in out and f"Speaker folder: {target}" in out
    corpus = SpeakerCorpus.open(target)
    assert sorted(u.prompt for u in corpus.utterances()) == sorted(
        ["good morning", "turn on the light", "call my sister"][:n])
    assert main(["import", str(src), str(text), str(target)]) == 0  # again: nothing new, nothing lost
    assert f"{n} files were already imported" in capsys.readouterr().out
    assert len(SpeakerCorpus.open(target).utterances()) == n


def test_import_command_reports_problems_plainly(tmp_path, capsys):
    src, text = _recordings(tmp_path)
    (src / "voice.m4a").write_bytes(b"\x00" * 10)
    target = tmp_path / "spk-x"
    assert main(["import", str(src), str(text), str(target)]) == 1  # partly imported
    captured = capsys.readouterr()
    assert "voice.m4a: this format is not supported; export it as WAV or FLAC" in captured.err
    bad = tmp_path / "bad.txt"
    bad.write_text("b2 !!!\n")
    assert main(["import", str(src), str(bad), str(tmp_path / "spk-y")]) == 2
    assert "has no words to score" in capsys.readouterr().err
    assert not (tmp_path / "spk-y").exists()  # checked before anything is written


@pytest.fixture(scope="module")
def _tiny_available():
    from workbench.models.tiny import default_model_dir

    if not (default_model_dir() / "config.json").is_file():
        pytest.skip("no shipped tiny model weights")


def test_transcribe_warns_about_short_silent_and_cut_off_files(tmp_path, capsys, _tiny_available):
    short = tmp_path / "short.wav"
    sf.write(short, np.zeros(int(0.1 * SR), np.float32), SR)  # 0.1 s of nothing
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(SR, np.float32), SR)
    full = tmp_path / "full.wav"
    sf.write(full, make_speechlike(2.0), SR, subtype="PCM_16")
    cut = tmp_path / "cut.wav"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    rc = main(["transcribe", "--model", "tiny", str(short), str(silent), str(cut)])
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0] == f"{short}\t" and lines[1] == f"{silent}\t"  # silence gives no made-up words
    assert rc == 1  # nothing could be transcribed in two of them
    assert f"nothing was recognised in {short}. Silent" in captured.err
    assert f"nothing was recognised in {silent}. Silent (digital silence)" in captured.err
    assert "'cut.wav' looks cut off" in captured.err


def test_transcribe_names_the_file_with_damaged_samples(tmp_path, capsys, _tiny_available):
    good = tmp_path / "good.wav"
    sf.write(good, make_speechlike(1.0), SR)
    nan = tmp_path / "nan.wav"
    x = make_speechlike(1.0)
    x[100:200] = np.nan
    sf.write(nan, x, SR, subtype="FLOAT")
    assert main(["transcribe", "--model", "tiny", str(good), str(nan)]) == 2
    err = capsys.readouterr().err
    assert f"{nan}: " in err and "not numbers" in err and "audio 1" not in err  # the file, not an index


def test_transcribe_of_a_long_file_gives_advice_a_cli_user_can_follow(tmp_path, capsys, _tiny_available):
    long = tmp_path / "long.flac"
    sf.write(long, np.zeros(601 * 8000, np.float32), 8000)  # 10 min 1 s
    assert main(["transcribe", "--model", "tiny", str(long)]) == 2
    err = capsys.readouterr().err
    assert "sox LONG.wav piece.wav trim 0 60 : newfile : restart" in err


def test_record_create_without_portaudio_writes_nothing(tmp_path, capsys, monkeypatch):
    pytest.importorskip("workbench.ui.kernel_recorder")
    import workbench.ui.kernel_recorder as recorder

    def no_portaudio():
        raise recorder.MicrophoneError(recorder.NO_PORTAUDIO_MESSAGE, reason="no_portaudio")

    monkeypatch.setattr(recorder, "_load_sounddevice", no_portaudio)
    target = tmp_path / "speakers" / "spk-new"
    assert main(["record", str(target), "--consent", "consent-1", "--create"]) == 2
    assert "PortAudio" in capsys.readouterr().err
    assert not target.exists() and not (tmp_path / "speakers").exists()
