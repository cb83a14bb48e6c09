"""workbench.audio: loading, saving, quality checks, trimming."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import SR, make_speechlike, make_tone
from _disk import fail_atomic_writes  # noqa: E402
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from workbench import _optional
from workbench.audio import (
    PROBLEM_CODES,
    Problem,
    QualityReport,
    Recording,
    check_quality,
    float_to_pcm16,
    load_audio,
    pcm16_to_float,
    play,
    read_audio,
    resample,
    save_audio,
    to_mono,
    trim_silence,
)
from workbench.errors import AudioError, MissingDependencyError


def _with_nans(x: np.ndarray) -> np.ndarray:
    y = x.copy()
    y[100:110] = np.nan
    y[200] = np.inf
    return y


def _ten_minutes() -> np.ndarray:
    x = np.zeros(600 * SR, dtype=np.float32)
    x[::7] = 0.05  # cheap "noise", not silent
    return x


# name -> (wav, sample_rate, code, severity, words that must be in the message)
_CASES = {
    "empty": (
        np.zeros(0, np.float32),
        SR,
        "empty",
        "error",
        ["Nothing was recorded", "microphone"],
    ),
    "0.1 s": (
        make_tone(0.1),
        SR,
        "too_short",
        "error",
        ["Too short (0.10 s)", "at least 0.5 s", "record again"],
    ),
    "silent": (
        np.zeros(SR, np.float32),
        SR,
        "silent",
        "error",
        ["Silent (digital silence)", "not muted"],
    ),
    "almost silent": (
        (10 ** (-70 / 20) * np.random.default_rng(0).standard_normal(SR)).astype(
            np.float32
        ),
        SR,
        "silent",
        "error",
        ["Silent (-70 dBFS)"],
    ),
    "clipped": (
        np.clip(10 * make_speechlike(1.0), -1, 1),
        SR,
        "clipped",
        "error",
        ["Clipped (", "% of samples at full scale", "further away"],
    ),
    "NaN": (
        _with_nans(make_speechlike(1.0)),
        SR,
        "nonfinite",
        "error",
        ["11 samples", "not numbers (NaN or infinity)", "record again"],
    ),
    "stereo": (
        np.stack([make_speechlike(1.0), make_speechlike(1.0, seed=1)], axis=1),
        SR,
        "stereo",
        "warning",
        ["Stereo recording (2 channels)", "mixed to mono"],
    ),
    "8 kHz": (
        make_speechlike(1.0, sample_rate=8000),
        8000,
        "wrong_rate",
        "warning",
        ["8000 Hz", "telephone quality", "converted to 16000 Hz"],
    ),
    "48 kHz": (
        make_speechlike(1.0, sample_rate=48000),
        48000,
        "wrong_rate",
        "warning",
        ["48000 Hz", "converted to 16000 Hz automatically"],
    ),
    "4 kHz": (
        make_speechlike(1.0, sample_rate=4000),
        4000,
        "wrong_rate",
        "error",
        ["4000 Hz is too low", "at least 8000 Hz"],
    ),
    "10 minutes": (
        _ten_minutes(),
        SR,
        "too_long",
        "error",
        ["Too long (600.0 s; the limit is 30 s)", "one prompt per take"],
    ),
    "too quiet": (
        make_speechlike(1.0, amp=0.4 / 150, noise_dbfs=-110),
        SR,
        "too_quiet",
        "error",
        ["Too quiet (-57 dBFS)", "microphone closer (15-45 cm)"],
    ),
    "a bit quiet": (
        make_speechlike(1.0, amp=0.4 / 20, noise_dbfs=-110),
        SR,
        "too_quiet",
        "warning",
        ["Too quiet (-40 dBFS)"],
    ),
    "too loud": (
        make_speechlike(1.0, amp=0.995),
        SR,
        "too_loud",
        "warning",
        ["Very loud (peak at 99% of full scale)"],
    ),
    "noisy": (
        make_speechlike(1.0, noise_dbfs=-25),
        SR,
        "noisy",
        "warning",
        ["Background noise is high", "signal-to-noise ratio", "quieter room"],
    ),
    "long silence": (
        make_speechlike(4.0, lead_s=2.5),
        SR,
        "long_silence",
        "warning",
        ["Long silence (2.5 s before the speech)", "trimmed automatically"],
    ),
    "3-D array": (
        np.zeros((2, 2, 2), np.float32),
        SR,
        "bad_shape",
        "error",
        ["unexpected shape (2, 2, 2)"],
    ),
    "not numbers": (np.array(["a", "b"]), SR, "not_audio", "error", ["not audio"]),
    "rate is 0": (
        make_speechlike(1.0),
        0,
        "wrong_rate",
        "error",
        ["sample rate 0 is not valid", "16000"],
    ),
}


@pytest.mark.parametrize("name", list(_CASES))
def test_check_quality_reports_problem_with_plain_message(name: str) -> None:
    wav, sample_rate, code, severity, words = _CASES[name]
    report = check_quality(wav, sample_rate)
    found = [p for p in report.problems if p.code == code]
    assert found, f"{name}: expected {code!r}, got {report.codes}"
    problem = found[0]
    assert problem.severity == severity
    for w in words:
        assert w.lower() in problem.message.lower(), (w, problem.message)
    assert problem.message in report.message
    assert report.ok == (not any(p.severity == "error" for p in report.problems))
    assert code in PROBLEM_CODES
    if severity == "error":
        assert not report.ok


def test_good_take_has_no_problems() -> None:
    report = check_quality(make_speechlike(2.0))
    assert report.problems == [] and report.ok
    assert report.message == "Good recording."
    assert report.duration_s == pytest.approx(2.0)
    assert (
        0.15 < report.leading_silence_s < 0.3 and 0.1 < report.trailing_silence_s < 0.3
    )
    assert 0.5 < report.speech_s < 1.6
    assert report.snr_db > 30 and -20 < report.speech_dbfs < -5


def test_warnings_keep_take_ok_and_errors_come_first() -> None:
    stereo = np.stack([make_speechlike(1.0)] * 2, axis=1)
    assert check_quality(stereo).ok
    report = check_quality(_with_nans(make_speechlike(0.2)), 48000)
    severities = [p.severity for p in report.problems]
    assert severities == sorted(severities, key=lambda s: s != "error")
    assert {"nonfinite", "too_short", "wrong_rate"} <= set(report.codes)


def test_int16_input_is_scaled() -> None:
    x = make_speechlike(1.0)
    report = check_quality(float_to_pcm16(x))
    assert report.ok and report.peak == pytest.approx(float(np.abs(x).max()), abs=1e-4)


def test_report_round_trips_through_json() -> None:
    report = check_quality(np.clip(10 * make_speechlike(1.0), -1, 1), 22050)
    d = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    back = QualityReport.from_dict(d)
    assert back.problems == report.problems
    assert back.to_dict() == report.to_dict()
    assert d["ok"] is False


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    wav=hnp.arrays(
        dtype=st.sampled_from(
            [np.float32, np.float64, np.int16, np.int32, np.uint8, np.float16, np.bool_]
        ),
        shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=40),
    ),
    sample_rate=st.one_of(
        st.sampled_from([16000, 8000, 48000, 4000, 0, -1]),
        st.floats(allow_nan=True),
        st.integers(),
    ),
)
def test_check_quality_never_raises(wav: np.ndarray, sample_rate: object) -> None:
    report = check_quality(wav, sample_rate)  # type: ignore[arg-type]
    json.dumps(report.to_dict(), allow_nan=False)
    assert all(p.code in PROBLEM_CODES for p in report.problems)
    assert isinstance(report.message, str) and report.message


# --------------------------------------------------------------------------- #
# loading
# --------------------------------------------------------------------------- #


def _assert_plain(exc: pytest.ExceptionInfo[AudioError]) -> None:
    assert (
        exc.value.__cause__ is None and exc.value.__suppress_context__
    )  # no soundfile traceback attached


def test_not_audio_bytes_and_files(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="is not an audio file we can read") as exc:
        load_audio(b"this is certainly not audio, just some text" * 10)
    _assert_plain(exc)
    bad = tmp_path / "x.wav"
    bad.write_bytes(b"RIFF\x00\x00garbage" + bytes(range(256)))
    with pytest.raises(AudioError) as exc:
        load_audio(bad)
    assert str(exc.value).startswith(
        "'x.wav' is not an audio file we can read (WAV, FLAC, OGG, MP3 or AIFF). "
        "If it came from a phone app, export it as WAV and try again."
    )
    _assert_plain(exc)


def test_missing_empty_and_folder(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="'nope.wav' was not found"):
        load_audio(tmp_path / "nope.wav")
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(AudioError, match=r"'empty.wav' is empty \(0 bytes\)"):
        load_audio(tmp_path / "empty.wav")
    with pytest.raises(AudioError, match="is a folder"):
        load_audio(tmp_path)
    header_only = tmp_path / "header.wav"
    sf.write(header_only, np.zeros(0, np.float32), SR)
    with pytest.raises(AudioError, match="contains no sound"):
        load_audio(header_only)


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".ogg"])
def test_save_load_round_trip(tmp_path: Path, suffix: str) -> None:
    x = make_speechlike(1.0)
    path = save_audio(tmp_path / f"take{suffix}", x)
    y = load_audio(path)
    assert y.dtype == np.float32 and y.shape == x.shape
    if suffix == ".ogg":  # lossy: compare waveforms loosely
        assert np.corrcoef(x, y)[0, 1] > 0.95
    else:
        assert np.max(np.abs(x - y)) <= 1.0 / 32768 + 1e-6
    assert load_audio(path.read_bytes()).shape == x.shape  # bytes of the same file


def test_load_mixes_and_resamples(tmp_path: Path) -> None:
    left, right = make_speechlike(1.0, sample_rate=48000), make_speechlike(1.0, sample_rate=48000, seed=1)
    path = tmp_path / "stereo48k.wav"
    sf.write(path, np.stack([left, right], axis=1), 48000, subtype="FLOAT")
    y = load_audio(path)
    assert y.shape == (SR,)
    raw, rate = read_audio(path)
    assert rate == 48000 and raw.shape == (48000, 2)
    expected = resample((left + right) / 2, 48000)
    assert np.allclose(y, expected, atol=1e-5)


def test_raw_pcm(tmp_path: Path) -> None:
    x = make_speechlike(0.5, sample_rate=8000)
    pcm = float_to_pcm16(x).astype("<i2").tobytes()
    y = load_audio(pcm, sample_rate=8000)
    assert y.shape == (SR // 2,)
    path = tmp_path / "take.pcm"
    path.write_bytes(pcm)
    assert np.array_equal(load_audio(path, sample_rate=8000), y)
    with pytest.raises(
        AudioError, match=r"raw PCM without a header.*sample_rate=16000"
    ):
        load_audio(path)
    with pytest.raises(AudioError, match="even number of bytes"):
        load_audio(pcm[:-1], sample_rate=8000)
    wav = save_audio(tmp_path / "take.wav", x, 8000)
    with pytest.raises(AudioError, match="sample_rate only describes raw PCM"):
        load_audio(wav, sample_rate=16000)


def test_max_s_refuses_a_longer_recording(tmp_path: Path) -> None:
    path = save_audio(tmp_path / "long.flac", make_tone(3.0))
    with pytest.raises(AudioError, match=r"0.1 minutes long; the limit is 0.0 minutes"):
        load_audio(path, max_s=1)
    assert load_audio(path, max_s=None).shape == (3 * SR,)
    with pytest.raises(AudioError, match="minutes long"):
        load_audio(b"\x00\x00" * 3 * SR, sample_rate=SR, max_s=1)


@pytest.mark.parametrize("orig", [8000, 22050, 44100, 48000])
def test_resample_length(orig: int) -> None:
    y = resample(make_tone(1.0, sample_rate=orig, freq=300), orig)
    assert y.dtype == np.float32 and abs(y.size - SR) <= 1
    assert abs(np.sqrt(np.mean(y**2)) - 0.3 / np.sqrt(2)) < 0.01  # level kept
    same = make_tone(0.1)
    assert np.array_equal(resample(same, SR), same)
    with pytest.raises(AudioError, match="positive whole number"):
        resample(same, 0)


# --------------------------------------------------------------------------- #
# saving
# --------------------------------------------------------------------------- #


def test_atomic_save_leaves_no_temp_file(tmp_path: Path) -> None:
    save_audio(tmp_path / "a" / "take.flac", make_tone(0.5))
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["take.flac"]


def test_interrupted_save_keeps_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "take.flac"
    old = make_tone(0.5, freq=300)
    save_audio(path, old)
    before = path.read_bytes()

    def crash(*args: object, **kwargs: object) -> None:
        raise OSError("simulated power cut")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(AudioError, match="simulated power cut. Check that the disk"):
        save_audio(path, make_tone(0.7, freq=500))
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["take.flac"]
    assert load_audio(path).shape == old.shape


def test_save_refuses_bad_audio_and_clips(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="not numbers"):
        save_audio(tmp_path / "a.wav", _with_nans(make_tone(0.5)))
    with pytest.raises(AudioError, match="no samples"):
        save_audio(tmp_path / "a.wav", np.zeros(0, np.float32))
    with pytest.raises(AudioError, match=r"\.flac \(recommended\)"):
        save_audio(tmp_path / "a.mp3", make_tone(0.5))
    assert not any(tmp_path.iterdir())
    loud = 4 * make_tone(0.5)
    y = load_audio(save_audio(tmp_path / "loud.wav", loud))
    assert np.abs(y).max() <= 1.0 and np.abs(y).max() > 0.99


# --------------------------------------------------------------------------- #
# trimming, conversions, Recording, play
# --------------------------------------------------------------------------- #


def test_trim_silence_keeps_speech_with_padding() -> None:
    x = make_speechlike(3.0, lead_s=1.0, tail_s=1.0)
    y = trim_silence(x, pad_s=0.1)
    assert 1.0 * SR <= y.size <= 1.4 * SR
    start = int(np.flatnonzero(x == y[0])[0])
    assert np.array_equal(x[start : start + y.size], y)  # a contiguous slice
    assert (
        0.85 * SR <= start <= 0.95 * SR
    )  # speech starts at 1.0 s, minus 0.1 s padding
    assert trim_silence(x, pad_s=0.3).size >= y.size + int(0.39 * SR)


def test_trim_silence_edge_cases() -> None:
    assert trim_silence(np.zeros(0, np.float32)).size == 0
    zeros = np.zeros(SR, np.float32)
    assert np.array_equal(
        trim_silence(zeros), zeros
    )  # nothing to keep apart: unchanged
    click = np.zeros(SR, np.float32)
    click[8000] = 0.5
    assert 0 < trim_silence(click).size < SR  # never empty for non-silent input
    with pytest.raises(AudioError, match="NaN"):
        trim_silence(_with_nans(make_tone(0.5)))


@settings(max_examples=100, deadline=None)
@given(hnp.arrays(np.int16, st.integers(0, 500)))
def test_pcm16_round_trip(samples: np.ndarray) -> None:
    as_float = pcm16_to_float(samples.astype("<i2").tobytes())
    assert as_float.dtype == np.float32 and np.all(np.abs(as_float) <= 1.0)
    assert np.array_equal(float_to_pcm16(as_float), samples)
    assert np.array_equal(pcm16_to_float(samples), as_float)


def test_to_mono_layouts() -> None:
    a, b = make_tone(0.1), make_tone(0.1, freq=300)
    expected = (a + b) / 2
    assert np.allclose(to_mono(np.stack([a, b], axis=1)), expected)  # (n, channels)
    assert np.allclose(to_mono(np.stack([a, b], axis=0)), expected)  # (channels, n)
    assert np.array_equal(to_mono(a[:, None]), a)
    with pytest.raises(AudioError, match="shape"):
        to_mono(np.zeros((2, 2, 2)))
    with pytest.raises(AudioError, match="Cannot tell the channels apart"):
        to_mono(np.zeros((100, 100)))


def test_recording() -> None:
    rec = Recording(
        float_to_pcm16(make_speechlike(1.0, sample_rate=8000)), sample_rate=8000, text="hello"
    )
    assert rec.audio.dtype == np.float32 and rec.duration_s == pytest.approx(1.0)
    assert rec.quality().codes == ["wrong_rate"]
    up = rec.resampled()
    assert up.sample_rate == SR and up.audio.size == SR and up.text == "hello"
    assert up.quality().ok and up.quality().problems == []


def test_problem_severity_is_checked() -> None:
    with pytest.raises(ValueError, match="severity"):
        Problem("x", "fatal", "msg")  # type: ignore[arg-type]


def test_play() -> None:
    if not _optional.has_module("IPython"):
        with pytest.raises(MissingDependencyError, match=r"workbench\[ui\]"):
            play(make_tone(0.1))
        return
    player = play(
        Recording(3 * make_tone(0.1))
    )  # loud input is clipped, not normalized
    assert player.rate == SR if hasattr(player, "rate") else True
    assert player.data[:4] == b"RIFF"


# --------------------------------------------------------------------------- #
# Issue 16: full disks, read-only folders, one suffix list, cut-off files
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(("code", "words"), [(28, "the disk is full"), (30, "read-only")])
def test_save_on_a_full_or_read_only_disk_is_a_plain_error_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, words: str
) -> None:
    # before: soundfile's own write callback failed and raised a bare AssertionError
    fail_atomic_writes(monkeypatch, code)
    with pytest.raises(AudioError, match=words) as exc:
        save_audio(tmp_path / "take.flac", make_tone(0.5))
    assert "take.flac" in str(exc.value) and "Nothing was saved" in str(exc.value)
    _assert_plain(exc)
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind


def test_mp3_is_read_like_the_other_formats(tmp_path: Path) -> None:
    from workbench.audio import AUDIO_SUFFIXES

    if "MP3" not in sf.available_formats():
        pytest.skip("this libsndfile cannot decode MP3 (needs 1.1 or newer)")
    assert ".mp3" in AUDIO_SUFFIXES
    path = tmp_path / "take.mp3"
    sf.write(path, make_speechlike(1.0), SR, format="MP3")
    assert abs(load_audio(path).size - SR) < 0.1 * SR


def test_cut_off_wav_is_read_with_a_warning(tmp_path: Path) -> None:
    full = save_audio(tmp_path / "full.wav", make_tone(2.0))
    cut = tmp_path / "cut.wav"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 4])
    with pytest.warns(UserWarning, match=r"'cut.wav' looks cut off: it holds 0.5 s, only 25 %"):
        x = load_audio(cut)
    assert x.size == pytest.approx(SR / 2, abs=200)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_audio(full)  # a whole file: no warning


def test_too_long_advice_works_on_the_command_line(tmp_path: Path) -> None:
    path = save_audio(tmp_path / "long.flac", make_tone(3.0))
    with pytest.raises(AudioError) as exc:
        load_audio(path, max_s=1)
    message = str(exc.value)
    assert "sox LONG.wav piece.wav trim 0 60 : newfile : restart" in message
    assert message.index("sox") < message.index("max_s=None")  # the Python hint comes last
