"""The recorders' Python side, with no microphone and no browser.

Chunk reassembly (order, duplicates, gaps), int16 -> float conversion, the
browser widget's message handler, the sounddevice path with a fake stream, the
no-PortAudio / no-input-device paths, and the upload fallback.
"""

from __future__ import annotations

import sys
import threading
import time
import types
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ipywidgets")
pytest.importorskip("anywidget")

import workbench.ui.kernel_recorder as recmod
from conftest import make_speechlike
from workbench.audio import Recording, float_to_pcm16, pcm16_to_float
from workbench.errors import AudioError, MicrophoneError
from workbench.takes import ChunkAssembler
from workbench.ui._render import wav_bytes
from workbench.ui.kernel_recorder import InputDevice, KernelRecorder, list_input_devices
from workbench.ui.recorder import BrowserRecorder, Recorder, load_upload, recorder

SR = 16_000


def pcm_chunks(wav: np.ndarray, chunk: int = SR) -> list[bytes]:
    """What the page sends: int16 little-endian bytes, ``chunk`` samples per message."""
    pcm = float_to_pcm16(wav).astype("<i2")
    return [pcm[i:i + chunk].tobytes() for i in range(0, pcm.size, chunk)]


def messages(wav: np.ndarray, take: str = "t1", chunk: int = SR) -> list[tuple[dict, list]]:
    """The page's message sequence for one take: start, chunks, stop."""
    chunks = pcm_chunks(wav, chunk)
    out: list[tuple[dict, list]] = [({"type": "start", "take": take, "rate": SR, "input_rate": 48000}, [])]
    out += [({"type": "chunk", "take": take, "seq": i, "n": len(c) // 2}, [memoryview(c)])
            for i, c in enumerate(chunks)]
    out.append(({"type": "stop", "take": take, "chunks": len(chunks), "samples": wav.size, "reason": "button"}, []))
    return out


# --------------------------------------------------------------------------- chunk reassembly


def test_int16_to_float_conversion_is_exact():
    pcm = np.array([0, 1, -1, 16384, -16384, 32767, -32768], dtype="<i2")
    asm = ChunkAssembler("t")
    asm.add(0, pcm[:3].tobytes())
    asm.add(1, memoryview(pcm[3:].tobytes()))
    wav = asm.finish(n_chunks=2, n_samples=7)
    assert wav.dtype == np.float32
    np.testing.assert_array_equal(wav, pcm.astype(np.float32) / 32768.0)
    assert wav.min() == -1.0 and wav.max() < 1.0
    np.testing.assert_array_equal(wav, pcm16_to_float(pcm))
    np.testing.assert_array_equal(float_to_pcm16(wav), pcm)  # round trip


def test_out_of_order_chunks_are_put_back_in_order():
    wav = make_speechlike(3.5)
    chunks = pcm_chunks(wav, 4000)
    asm = ChunkAssembler("t")
    order = np.random.default_rng(0).permutation(len(chunks))
    for i in order:
        assert asm.add(int(i), chunks[i]) is True
    out = asm.finish(n_chunks=len(chunks), n_samples=wav.size)
    np.testing.assert_allclose(out, wav, atol=1 / 32768 + 1e-7)
    assert asm.n_samples == wav.size and asm.n_chunks == len(chunks)


def test_identical_duplicates_are_ignored_but_different_ones_refused():
    chunks = pcm_chunks(make_speechlike(2.0), SR)
    asm = ChunkAssembler("t")
    assert asm.add(0, chunks[0])
    assert asm.add(0, chunks[0]) is False
    assert asm.add(1, chunks[1])
    assert asm.duplicates == 1
    assert asm.finish(n_chunks=2).size == 2 * SR
    with pytest.raises(AudioError, match="arrived twice with different sound"):
        asm.add(1, chunks[0])


@pytest.mark.parametrize("drop, n_chunks, words", [
    ([1], None, "piece 2 of 4 missing"),
    ([1, 2], None, "pieces 2, 3 of 4 missing"),
    ([3], 4, "piece 4 of 4 missing"),  # lost at the end: only the stop message can tell
])
def test_missing_chunks_are_a_plain_error(drop, n_chunks, words):
    chunks = pcm_chunks(make_speechlike(4.0), SR)
    asm = ChunkAssembler("t")
    for i, c in enumerate(chunks):
        if i not in drop:
            asm.add(i, c)
    assert asm.missing(4) == drop
    with pytest.raises(AudioError, match=words) as err:
        asm.finish(n_chunks=n_chunks)
    assert "Record again" in str(err.value)


def test_bad_chunks_are_refused():
    asm = ChunkAssembler("t", max_s=1.0)
    with pytest.raises(AudioError, match="even number"):
        asm.add(0, b"\x00\x01\x02")
    with pytest.raises(AudioError, match="invalid number"):
        asm.add(-1, b"\x00\x00")
    with pytest.raises(AudioError, match="invalid number"):
        asm.add(True, b"\x00\x00")
    with pytest.raises(AudioError, match="longer than the 1 s limit"):
        asm.add(0, bytes(2 * SR + 2))
    asm.add(0, bytes(20))
    asm.add(1, bytes(20))
    with pytest.raises(AudioError, match="more pieces than were sent"):
        asm.finish(n_chunks=1)
    with pytest.raises(AudioError, match="incomplete"):
        asm.finish(n_chunks=2, n_samples=25)


# --------------------------------------------------------------------------- the browser widget's kernel side


@pytest.fixture
def browser(monkeypatch):
    rec = BrowserRecorder()
    sent: list[dict] = []
    monkeypatch.setattr(rec, "send", lambda content, buffers=None: sent.append(content))
    rec.sent = sent
    return rec


def _no_audio_in_state(widget) -> None:
    state = widget.get_state()
    assert not any(isinstance(v, (bytes, bytearray, memoryview)) for v in state.values())
    _, _, buffers = __import__("ipywidgets").widgets.widget._remove_buffers(state)
    assert buffers == []


def test_browser_take_arrives_as_16k_float_and_nothing_is_left_behind(browser):
    wav = make_speechlike(2.5)
    got: list[Recording] = []
    browser.on_recording(got.append)
    msgs = messages(wav)
    # out of order, with a duplicate, as a flaky connection might deliver them
    chunk_msgs = msgs[1:-1]
    shuffled = [chunk_msgs[2], chunk_msgs[0], chunk_msgs[1], chunk_msgs[0]]
    result = None
    for content, buffers in [msgs[0], *shuffled, msgs[-1]]:
        result = browser.handle_message(content, buffers)
    assert result is got[0]
    rec = got[0]
    assert rec.sample_rate == SR and rec.audio.dtype == np.float32
    assert rec.audio.size == wav.size
    np.testing.assert_allclose(rec.audio, wav, atol=1 / 32768 + 1e-7)
    assert browser.report is not None and browser.report.ok
    assert browser.sent[-1] == {"type": "result", "take": "t1", "ok": True,
                                "message": "Good recording.", "seconds": 2.5}
    # the audio trait is clear: nothing synced holds audio, and the chunks are dropped
    assert browser.receiving is False and browser._assembler is None
    _no_audio_in_state(browser)


def test_browser_handler_through_the_comm_callback(browser):
    """The comm calls ``_on_custom_msg(widget, content, buffers)``: the same path as the real kernel."""
    wav = make_speechlike(1.2)
    for content, buffers in messages(wav, chunk=SR // 2):
        browser._on_custom_msg(browser, content, buffers)
    assert browser.recording is not None and browser.recording.audio.size == wav.size


def test_browser_missing_chunk_is_reported_and_nothing_delivered(browser):
    got: list[Recording] = []
    errors: list[tuple[str, str]] = []
    browser.on_recording(got.append)
    browser.on_error(lambda code, msg: errors.append((code, msg)))
    msgs = messages(make_speechlike(3.0))
    for content, buffers in msgs[:2] + msgs[3:]:  # chunk 1 lost
        browser.handle_message(content, buffers)
    assert got == []
    assert errors and errors[0][0] == "transfer" and "piece 2 of 3 missing" in errors[0][1]
    assert browser.sent[-1]["ok"] is False and "Record again" in browser.sent[-1]["message"]
    assert browser._assembler is None


def test_browser_ignores_chunks_of_an_abandoned_take(browser):
    wav = make_speechlike(1.0)
    old = messages(wav, take="old")
    new = messages(wav, take="new")
    browser.handle_message(*old[0])
    browser.handle_message(*new[0])  # a new take starts: the old one is abandoned
    browser.handle_message(*old[1])  # a late chunk of the old take
    for content, buffers in new[1:]:
        browser.handle_message(content, buffers)
    assert browser.recording is not None and browser.recording.audio.size == wav.size
    assert browser.handle_message(*old[-1]) is None  # the old take's stop does nothing


def test_browser_error_and_bad_rate(browser):
    errors: list[tuple[str, str]] = []
    browser.on_error(lambda code, msg: errors.append((code, msg)))
    text = "The browser blocked the microphone ... https:// ... localhost"
    browser.handle_message({"type": "error", "code": "insecure", "message": text})
    assert browser.error == text and errors == [("insecure", text)]
    browser.handle_message({"type": "start", "take": "x", "rate": 48000})
    assert "48000" in browser.error and browser.sent[-1]["ok"] is False


def test_a_callback_error_is_shown_in_the_page(browser):
    from workbench.errors import CorpusError

    def refuse(rec):
        raise CorpusError("Ask for consent before recording.")

    browser.on_recording(refuse)
    for content, buffers in messages(make_speechlike(1.0)):
        browser.handle_message(content, buffers)
    assert browser.sent[-1]["ok"] is False and browser.sent[-1]["message"].startswith("Ask for consent")


def test_page_messages_mention_the_secure_context_rule():
    js = (Path(recmod.__file__).parent / "static" / "recorder.js").read_text()
    start = js.index("insecure:")
    insecure = js[start:js.index("denied:")]
    assert "https://" in insecure and "localhost" in insecure and "secure" in insecure
    assert "chunk_s" in js and "model.send" in js


# --------------------------------------------------------------------------- the kernel microphone, faked


class FakeStream:
    """Stands in for ``sounddevice.InputStream``: the test plays PortAudio's audio thread."""

    def __init__(self, *, samplerate, device, channels, dtype, blocksize, callback, refuse=()):
        if samplerate in refuse:
            raise RuntimeError(f"Invalid sample rate {samplerate}")
        self.samplerate, self.device, self.channels = samplerate, device, channels
        self.dtype, self.blocksize, self.callback = dtype, blocksize, callback
        self.started = self.closed = False

    def start(self):
        self.started = True

    def stop(self):
        self.started = False

    def close(self):
        self.closed = True

    def feed(self, wav: np.ndarray, status: str = "") -> None:
        """Deliver ``wav`` in blocks from another thread, as PortAudio does."""
        def run():
            for i in range(0, wav.size, self.blocksize):
                block = wav[i:i + self.blocksize].reshape(-1, 1).copy()
                self.callback(block, block.shape[0], None, status)
        t = threading.Thread(target=run)
        t.start()
        t.join()


class Factory:
    def __init__(self, refuse=()):
        self.streams: list[FakeStream] = []
        self.refuse = refuse

    def __call__(self, **kwargs):
        stream = FakeStream(**kwargs, refuse=self.refuse)
        self.streams.append(stream)
        return stream


def fake_sounddevice(devices, default=(1, 0)):
    played = []
    return types.SimpleNamespace(
        query_devices=lambda: devices,
        query_hostapis=lambda: [{"name": "ALSA"}],
        default=types.SimpleNamespace(device=list(default)),
        InputStream=Factory(),
        play=lambda wav, rate, blocking=False: played.append((wav, rate)),
        played=played,
    )


DEVICES = [
    {"name": "HDMI output", "max_input_channels": 0, "max_output_channels": 2, "default_samplerate": 48000.0, "hostapi": 0},
    {"name": "USB headset mic", "max_input_channels": 1, "max_output_channels": 0, "default_samplerate": 48000.0, "hostapi": 0},
    {"name": "Built-in microphone", "max_input_channels": 2, "max_output_channels": 0, "default_samplerate": 44100.0, "hostapi": 0},
]


def test_device_list_has_input_devices_only():
    devices = list_input_devices(fake_sounddevice(DEVICES, default=(1, 0)))
    assert [d.name for d in devices] == ["USB headset mic", "Built-in microphone"]
    assert [d.index for d in devices] == [1, 2]
    assert devices[0].is_default and devices[0].label == "USB headset mic (ALSA) - default"
    rec = KernelRecorder(sounddevice=fake_sounddevice(DEVICES, default=(1, 0)))
    assert rec.device.index == 1
    assert rec.select("built-in").index == 2
    with pytest.raises(MicrophoneError, match="no input device 0"):
        rec.select(0)  # an output device is not offered


def test_kernel_recording_with_a_fake_stream():
    factory = Factory()
    rec = KernelRecorder(devices=[InputDevice(3, "fake mic")], stream_factory=factory)
    kept: list[Recording] = []
    rec.on_take(kept.append)
    wav = make_speechlike(2.0)
    rec.start()
    assert rec.recording
    stream = factory.streams[-1]
    assert stream.started and stream.samplerate == SR and stream.device == 3 and stream.channels == 1
    assert stream.blocksize == 1600  # 0.1 s blocks: the meter moves ~10 times a second
    stream.feed(wav[:16_000])
    assert rec.seconds == pytest.approx(1.0)
    last = wav[14_400:16_000]
    assert rec.level_dbfs == pytest.approx(10 * np.log10(np.mean(last.astype(np.float64) ** 2)), abs=1e-6)
    stream.feed(wav[16_000:])
    take = rec.stop()
    assert not rec.recording and stream.closed
    assert take.sample_rate == SR and take.audio.size == wav.size
    np.testing.assert_array_equal(take.audio, wav)
    assert rec.report.ok and rec.message == "Good recording."
    assert kept == []  # not until Keep
    assert rec.keep() is take and kept == [take] and rec.take is None
    with pytest.raises(AudioError, match="no take to keep"):
        rec.keep()


def test_kernel_redo_quality_message_and_limit():
    factory = Factory()
    rec = KernelRecorder(devices=[InputDevice(0, "fake mic")], stream_factory=factory, max_s=1.0)
    kept: list[Recording] = []
    rec.on_take(kept.append)
    rec.start()
    factory.streams[-1].feed(make_speechlike(1.5, amp=0.005), status="input overflow")
    assert rec.full
    take = rec.stop()
    assert take.audio.size == SR  # cut at max_s
    assert not rec.report.ok and "Too quiet" in rec.message
    assert rec.message.startswith("Stopped at the 1 s limit.") and "computer was busy" in rec.message
    rec.redo()
    assert rec.take is None and kept == []


def test_kernel_auto_keep_and_native_rate_fallback():
    factory = Factory(refuse=(SR,))  # a device that only opens at its own rate
    rec = KernelRecorder(devices=[InputDevice(0, "fake mic", default_rate=48000.0)], stream_factory=factory,
                         auto_keep=True)
    kept: list[Recording] = []
    rec.on_take(kept.append)
    rec.start()
    stream = factory.streams[-1]
    assert stream.samplerate == 48000 and stream.blocksize == 4800
    t = np.arange(3 * 48000) / 48000
    stream.feed((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32))
    rec.stop()
    assert len(kept) == 1 and kept[0].sample_rate == SR
    assert abs(kept[0].audio.size - 3 * SR) <= 1


def test_kernel_play_uses_the_sounddevice_module():
    sd = fake_sounddevice(DEVICES)
    rec = KernelRecorder(sounddevice=sd)
    rec.start()
    sd.InputStream.streams[-1].feed(make_speechlike(1.0))
    take = rec.stop()
    rec.play()
    assert sd.played[0][0] is take.audio and sd.played[0][1] == SR


def test_no_sounddevice_says_so_and_offers_the_browser(monkeypatch):
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # import sounddevice -> ImportError
    with pytest.raises(MicrophoneError) as err:
        KernelRecorder()
    assert err.value.reason == "no_sounddevice"
    assert "pip install 'workbench[ui]'" in str(err.value) and "browser recorder" in str(err.value)
    rec = recorder()
    assert rec.kernel is None and rec.source == "browser" and "browser recorder" in rec.kernel_problem


def test_no_portaudio_says_so_and_offers_the_browser(monkeypatch):
    real_import = recmod.importlib.import_module

    def fail(name, *args, **kwargs):
        if name == "sounddevice":
            raise OSError("PortAudio library not found")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(recmod.importlib, "import_module", fail)
    with pytest.raises(MicrophoneError) as err:
        list_input_devices()
    assert err.value.reason == "no_portaudio" and "libportaudio2" in str(err.value)
    rec = Recorder()
    assert rec.source == "browser" and "PortAudio" in rec.kernel_problem
    view = rec.widget()
    assert any(isinstance(c, BrowserRecorder) for c in view.children)
    assert "PortAudio" in view.children[0].value  # the notice, in plain words, first
    with pytest.raises(MicrophoneError):
        Recorder(prefer="kernel")


def test_no_input_device(monkeypatch):
    only_outputs = fake_sounddevice(DEVICES[:1])
    with pytest.raises(MicrophoneError) as err:
        KernelRecorder(sounddevice=only_outputs)
    assert err.value.reason == "no_input"
    assert str(err.value).startswith("No microphone was found by the kernel. If Jupyter runs on another computer")
    rec = Recorder(sounddevice=only_outputs)
    assert rec.source == "browser" and rec.kernel_problem.startswith("No microphone was found by the kernel.")


def test_recorder_prefers_the_kernel_microphone_and_delivers_every_source():
    factory = Factory()
    got: list[tuple[int, str]] = []
    rec = Recorder(devices=[InputDevice(0, "fake mic")], stream_factory=factory, auto_keep=True)
    rec.on_recording(lambda r: got.append((r.audio.size, rec.last_source)))
    assert rec.source == "kernel" and rec.kernel_problem is None
    rec.kernel.start()
    factory.streams[-1].feed(make_speechlike(1.0))
    rec.kernel.stop()
    for content, buffers in messages(make_speechlike(1.5)):
        rec.browser.handle_message(content, buffers)
    rec.receive_upload(({"name": "take.wav", "content": memoryview(wav_bytes(make_speechlike(0.8)))},))
    assert got == [(SR, "kernel"), (24_000, "browser"), (12_800, "upload")]
    assert rec.message == "take.wav: Good recording."
    with pytest.raises(ValueError, match="prefer must be one of"):
        Recorder(prefer="phone")


def test_kernel_widget_record_stop_keep():
    factory = Factory()
    rec = KernelRecorder(devices=[InputDevice(0, "fake mic"), InputDevice(1, "other mic")], stream_factory=factory)
    kept: list[Recording] = []
    rec.on_take(kept.append)
    view = rec.widget()
    picker, bar, message, player, decide = view.children
    record, stop, meter, _clock = bar.children
    keep, _redo = decide.children
    picker.value = 1
    assert rec.device.name == "other mic"
    record.click()
    assert rec.recording and stop.disabled is False and record.disabled
    factory.streams[-1].feed(make_speechlike(1.1, tail_s=0.0))  # ends mid-syllable: the meter shows it
    deadline = time.monotonic() + 2
    while meter.value <= -60 and time.monotonic() < deadline:  # the meter thread updates ~10x/s
        time.sleep(0.02)
    assert meter.value > -60
    stop.click()
    assert not rec.recording and "Good recording." in message.value
    assert bytes(player.value[:4]) == b"RIFF" and decide.layout.display == ""
    keep.click()
    assert len(kept) == 1 and len(player.value) == 0 and decide.layout.display == "none"


def test_upload_fallback(monkeypatch):
    wav = make_speechlike(1.0)
    rec, name = load_upload(({"name": "a.wav", "content": memoryview(wav_bytes(wav))},))
    assert name == "a.wav" and rec.sample_rate == SR and rec.audio.size == wav.size
    rec7, _ = load_upload({"b.wav": {"content": wav_bytes(wav), "metadata": {}}})  # ipywidgets 7 shape
    assert rec7.audio.size == wav.size
    with pytest.raises(AudioError, match="No file was uploaded"):
        load_upload(())
    with pytest.raises(AudioError, match="notes.txt"):
        load_upload(({"name": "notes.txt", "content": b"hello, not audio"},))

    monkeypatch.setitem(sys.modules, "sounddevice", None)
    got: list[Recording] = []
    r = Recorder(got.append, prefer="upload")
    view = r.widget()
    upload = next(c for c in _walk(view) if type(c).__name__ == "FileUpload")
    upload.value = ({"name": "a.wav", "type": "audio/wav", "size": 1, "content": memoryview(wav_bytes(wav)),
                     "last_modified": __import__("datetime").datetime.now()},)
    assert len(got) == 1 and got[0].audio.size == wav.size
    assert upload.value == ()  # the file's bytes do not stay in the widget state


def _walk(widget):
    yield widget
    for child in getattr(widget, "children", ()):
        yield from _walk(child)
