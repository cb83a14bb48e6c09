"""Live captions views (workbench.ui.live and the app's Live captions page), driven from Python.

The recognizer is the real one (workbench.live) over the shipped built-in model, fed the sample
speaker's recordings as the browser recorder sends them (numbered 0.5 s pieces of 16-bit audio).
The same page in a real browser with a fake microphone: tests/browser/test_live_captions_browser.py.
"""

from __future__ import annotations

import json
import shutil
import types
from pathlib import Path

import numpy as np
import pytest

pn = pytest.importorskip("panel")

from workbench.app_pages import jobs  # noqa: E402
from workbench.app_pages.common import AppContext  # noqa: E402
from workbench.app_pages.live import _LIVE_ESM, LivePage  # noqa: E402
from workbench.app_pages.shell import WorkbenchApp  # noqa: E402
from workbench.audio import float_to_pcm16, load_audio  # noqa: E402
from workbench.errors import AdapterError, WorkbenchError  # noqa: E402
from workbench.live import CaptionEvent, from_use  # noqa: E402
from workbench.live import open_recognizer as real_open  # noqa: E402
from workbench.ui.live import MIC_LOST_MESSAGE, BrowserStream, LiveCaptions, LiveFeeder, stream_file  # noqa: E402

pytestmark = [pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")]

SAMPLE = Path(__file__).resolve().parent.parent / "sample_data" / "sim-typical-espeak"
SID = SAMPLE.name


def speech(n: int = 3) -> tuple[np.ndarray, list[str]]:
    """The first ``n`` sample recordings with 1.2 s pauses (longer than the recognizer's 0.8 s phrase end), and
    their prompts."""
    lines = [json.loads(x) for x in (SAMPLE / "manifest.jsonl").read_text().splitlines()[:n]]
    pause = np.zeros(int(1.2 * 16000), np.float32)
    wav = np.concatenate([np.concatenate([load_audio(SAMPLE / u["audio_path"]), pause]) for u in lines])
    return np.concatenate([pause, wav]), [u["prompt"] for u in lines]


def manifest(folder: Path) -> list[dict]:
    return [json.loads(x) for x in (folder / "manifest.jsonl").read_text().splitlines() if x.strip()]


@pytest.fixture
def app(tmp_path) -> WorkbenchApp:
    data = tmp_path / "data"
    shutil.copytree(SAMPLE, data / SID)
    app = WorkbenchApp(AppContext(data_dir=data))
    app.state.speaker_id = SID
    return app


def live(app: WorkbenchApp) -> LivePage:
    page = app.pages["Live captions"]
    page.load(wait=True)
    page._opened()
    assert page.captions is not None
    return page


def send(stream: BrowserStream, wav: np.ndarray, *, take: str = "t1", stop: str | None = "button") -> LiveFeeder:
    """What recorder.js sends: start, numbered 0.5 s chunks of little-endian int16, stop."""
    stream.handle_message({"type": "start", "take": take, "rate": 16000, "input_rate": 48000})
    feeder = stream.feeder
    assert feeder is not None
    pcm = float_to_pcm16(wav).tobytes()
    step = 2 * 8000
    for seq, i in enumerate(range(0, len(pcm), step)):
        stream.handle_message({"type": "chunk", "take": take, "seq": seq, "n": len(pcm[i:i + step]) // 2},
                              [pcm[i:i + step]])
    if stop is not None:
        stream.handle_message({"type": "stop", "take": take, "chunks": seq + 1, "samples": len(wav), "reason": stop})
        assert feeder.join(120)
    return feeder


# --------------------------------------------------------------------------- the page


def test_page_is_in_the_sidebar_and_says_there_is_no_personal_model(app) -> None:
    assert "Live captions" in app.nav.options
    page = live(app)
    assert "No personal model yet" in page.about.object and "built-in model" in page.about.object
    assert page.recorder is not None and not page.recorder.disabled  # Start is possible once loaded
    assert page.recorder.chunk_s == 0.5
    assert "Start captions" in _LIVE_ESM and "Finishing the captions" in _LIVE_ESM


def test_captions_say_it_back_and_a_correction_lands_as_a_take(app, tmp_path) -> None:
    page = live(app)
    answers: list[dict] = []
    page.stream.reply = answers.append
    wav, prompts = speech(3)
    send(page.stream, wav)
    page.refresh()
    lines = page.captions.lines
    assert len(lines) >= 2, [line.text for line in lines]  # the pauses start new lines
    heard = " ".join(line.text for line in lines)
    assert sum(w in heard.split() for w in " ".join(prompts).split()) >= 6, heard  # the real model hears words
    assert "wb-captions" in page.view.object and lines[-1].text[1:] in page.view.object
    assert answers[-1]["ok"] and "Captions stopped" in answers[-1]["message"]

    page.say_back(wait=True)
    assert page.player.visible and page.player.object.dtype == np.int16 and page.player.object.size > 8000
    assert page.player.sample_rate in (16000, 22050, 32000, 48000)
    assert "Saying" in page.message.object

    folder = tmp_path / "data" / SID
    before = len(manifest(folder))
    first = lines[0]
    page.pick.value = first.number
    page.fix.value = prompts[0]
    utt = page.correct()
    assert utt is not None and from_use(utt)
    rows = manifest(folder)
    assert len(rows) == before + 1 and rows[-1]["prompt"] == prompts[0] and rows[-1]["extra"]["source"] == "use"
    assert (folder / rows[-1]["audio_path"]).is_file() and 0.5 < rows[-1]["duration_s"] < 4.0
    assert first.corrected == prompts[0] and "Saved line" in page.message.object
    assert "wb-fixed" in page.captions.html()


def test_microphone_gone_mid_stream_keeps_the_captions(app) -> None:
    page = live(app)
    answers: list[dict] = []
    page.stream.reply = answers.append
    wav, _ = speech(2)
    send(page.stream, wav, stop="ended")  # recorder.js: the track ended (unplugged)
    page.refresh()
    assert page.captions.lines, "the captions heard before the microphone went are kept"
    assert answers[-1]["ok"] is False and answers[-1]["message"] == MIC_LOST_MESSAGE
    assert "microphone stopped" in page.message.object
    # the next Start goes on in the same captions
    n = len(page.captions.lines)
    send(page.stream, wav, take="t2")
    assert len(page.captions.lines) > n


def test_correction_with_no_words_or_during_training_writes_nothing(app, tmp_path, monkeypatch) -> None:
    page = live(app)
    wav, _ = speech(1)
    send(page.stream, wav)
    page.refresh()
    folder = tmp_path / "data" / SID
    before = manifest(folder)
    page.pick.value = page.captions.lines[0].number
    page.fix.value = "  ?! "
    assert page.correct() is None
    assert "no words" in page.message.object and manifest(folder) == before

    fake = types.SimpleNamespace(running=True)
    monkeypatch.setattr(jobs, "job_for", lambda path: fake if Path(path).name == SID else None)
    page.fix.value = "check my email please"
    assert page.correct() is None
    assert "training run is using" in page.message.object and manifest(folder) == before
    assert page.captions.lines[0].corrected is None  # the line waits to be saved again
    fake.running = False
    assert page.correct() is not None and len(manifest(folder)) == len(before) + 1


def test_a_personal_model_that_cannot_be_used_falls_back_to_the_base_model(app, monkeypatch) -> None:
    calls = []

    def opener(folder, model):
        calls.append(folder)
        if folder is not None:
            raise AdapterError("this personal model was made for base model 'whisper-base', which is not installed")
        return real_open(None, "tiny")

    monkeypatch.setattr(LivePage, "open_recognizer", staticmethod(opener))
    page = live(app)
    assert calls[0] is not None and calls[1] is None
    assert "cannot be used" in page.about.object and "whisper-base" in page.about.object
    assert "#fff8e1" in page.about.object  # shown as a notice, not as the personal model


def test_a_personal_model_for_another_base_is_said(app, monkeypatch) -> None:
    def opener(folder, model):
        rec, _ = real_open(None, "tiny")
        return rec, ("Base model: the built-in model.\nThe personal model p.safetensors was made for base model "
                     "'whisper-tiny.en', not 'tiny', so the base model captions alone.")

    monkeypatch.setattr(LivePage, "open_recognizer", staticmethod(opener))
    page = live(app)
    assert "was made for base model" in page.about.object and "#fff8e1" in page.about.object


def test_no_speaker_open(tmp_path) -> None:
    (tmp_path / "d").mkdir()
    page = WorkbenchApp(AppContext(data_dir=tmp_path / "d")).pages["Live captions"]
    page.on_show()
    assert "First choose or create a speaker" in page.header.object and page.captions is None
    page.say_back(wait=True)
    assert "Open a speaker" in page.message.object


# --------------------------------------------------------------------------- the shared pieces


class ScriptedRecognizer:
    """Gives back scripted events, one list per feed; audio() returns silence of the asked length."""

    def __init__(self, script):
        self.script, self.fed, self.status, self.now_s = list(script), 0, "keeping up", 30.0

    def feed(self, chunk):
        self.fed += len(chunk)
        return self.script.pop(0) if self.script else []

    def finish(self):
        return []

    def audio(self, start_s, end_s):
        return np.zeros(int((end_s - start_s) * 16000), np.float32)


def ev(kind, text, start, end):
    return CaptionEvent(kind, text, start, end, end + 0.5)


def test_lines_break_at_pauses_and_at_the_word_limit() -> None:
    caps = LiveCaptions(ScriptedRecognizer([]), max_line_words=4)
    caps.add([ev("partial", "check my", 0.0, 0.6), ev("commit", "check", 0.0, 0.4), ev("partial", "my", 0.5, 0.6),
              ev("commit", "my email please", 0.5, 1.5), ev("partial", "", 1.5, 1.5),
              ev("commit", "the toilet", 2.1, 2.6)])  # after a closed phrase and a 0.6 s gap: new line
    assert [line.text for line in caps.lines] == ["check my email please", "the toilet"]
    caps.add([ev("commit", "needs flushing now", 2.7, 3.6)])  # 4 words at most
    assert [line.text for line in caps.lines] == ["check my email please", "the toilet", "needs flushing now"]
    assert caps.partial == "" and [line.number for line in caps.lines] == [1, 2, 3]
    with pytest.raises(WorkbenchError, match="no longer on screen"):
        caps.line(9)
    html = caps.html()
    assert html.count("wb-line") == 3 and "The toilet" in html


def test_nothing_committed_yet_is_a_plain_message() -> None:
    caps = LiveCaptions(ScriptedRecognizer([]))
    with pytest.raises(WorkbenchError, match="no committed caption yet"):
        caps.say_back()
    with pytest.raises(WorkbenchError, match="no committed caption yet"):
        caps.correct(1, "hello")
    assert "Captions appear here" in caps.html()


def test_feeder_decodes_a_backlog_at_once_and_bounds_it() -> None:
    import threading

    gate = threading.Event()

    class Slow(ScriptedRecognizer):
        def feed(self, chunk):
            gate.wait(10)  # decoding stalls: the pieces pile up
            return super().feed(chunk)

    rec = Slow([])
    caps = LiveCaptions(rec)
    updates = []
    feeder = LiveFeeder(caps, lambda: updates.append(1), max_backlog_s=1.0)
    for _ in range(40):  # 4 s while the decoder is stuck: at most 1 s waits, the rest is dropped and said
        feeder.put(np.zeros(1600, np.float32))
    gate.set()
    feeder.end()
    assert feeder.join(10)
    assert rec.fed + round(feeder.dropped_s * 16000) == 40 * 1600
    assert rec.fed <= 16000 + 1600 and feeder.dropped_s >= 2.4
    assert len(updates) <= 3 and "could not keep up" in caps.message  # the backlog went in one or two feeds


def test_browser_stream_ignores_other_takes_and_counts_lost_pieces() -> None:
    caps = LiveCaptions(ScriptedRecognizer([]))
    answers: list[dict] = []
    stream = BrowserStream(lambda: LiveFeeder(caps), answers.append)
    stream.handle_message({"type": "start", "take": "a", "rate": 16000})
    piece = float_to_pcm16(np.zeros(800, np.float32)).tobytes()
    stream.handle_message({"type": "chunk", "take": "a", "seq": 0}, [piece])
    stream.handle_message({"type": "chunk", "take": "a", "seq": 2}, [piece])  # piece 1 was lost
    stream.handle_message({"type": "chunk", "take": "old", "seq": 3}, [piece])  # a late piece of another take
    feeder = stream.feeder
    stream.handle_message({"type": "stop", "take": "a", "chunks": 3, "samples": 2400, "reason": "button"})
    assert feeder.join(10) and caps.recognizer.fed == 1600
    assert "1 piece(s) of audio did not arrive" in answers[-1]["message"]
    stream.handle_message({"type": "start", "take": "b", "rate": 44100})
    assert stream.feeder is None and "44100" in answers[-1]["message"]


def test_stream_file_faster_than_real_time_with_the_real_recognizer() -> None:
    rec, _ = real_open(SAMPLE, "tiny")
    wav, prompts = speech(2)
    caps = stream_file(LiveCaptions(rec), wav)
    assert len(caps.lines) >= 2
    assert "please" in caps.text.split()


def test_notebook_widget_with_a_fake_kernel_microphone() -> None:
    pytest.importorskip("ipywidgets")
    from workbench.ui.live import live_widget

    wav, _ = speech(2)

    class FakeStream:
        def __init__(self, *, callback, blocksize, **_):
            self.callback, self.blocksize = callback, blocksize

        def start(self):
            for i in range(0, len(wav), self.blocksize):
                self.callback(wav[i:i + self.blocksize, None], self.blocksize, None, None)

        def stop(self):
            pass

        def close(self):
            pass

    rec, description = real_open(SAMPLE, "tiny")
    caps = LiveCaptions(rec, description)
    box = live_widget(caps, source="kernel", stream_factory=FakeStream)
    start, stop = box.children[1].children
    start.click()
    stop.click()
    feeder_done = [t for t in __import__("threading").enumerate() if t.name == "workbench-live-captions"]
    for t in feeder_done:
        t.join(60)
    assert caps.lines and "wb-captions" in box.children[3].value
    assert "No personal model yet" in box.children[0].value


def test_notebook_widget_says_when_the_kernel_microphone_goes_away() -> None:
    pytest.importorskip("ipywidgets")
    import time

    from workbench.ui.live import live_widget

    wav, _ = speech(1)

    class Unplugged:
        """Delivers one phrase, then nothing more (as when the microphone is pulled out)."""

        def __init__(self, *, callback, blocksize, **_):
            self.callback, self.blocksize, self.active = callback, blocksize, True

        def start(self):
            for i in range(0, len(wav), self.blocksize):
                self.callback(wav[i:i + self.blocksize, None], self.blocksize, None, None)
            self.active = False

        def stop(self):
            raise RuntimeError("PortAudio: device unavailable")

        def close(self):
            pass

    rec, description = real_open(SAMPLE, "tiny")
    caps = LiveCaptions(rec, description)
    box = live_widget(caps, source="kernel", stream_factory=Unplugged)
    start, stop = box.children[1].children
    start.click()
    deadline = time.monotonic() + 30
    while caps.message != MIC_LOST_MESSAGE and time.monotonic() < deadline:
        time.sleep(0.1)
    assert caps.message == MIC_LOST_MESSAGE and not start.disabled and stop.disabled
    for t in [t for t in __import__("threading").enumerate() if t.name == "workbench-live-captions"]:
        t.join(60)
    assert caps.lines, "what was captioned before is kept"


def test_notebook_widget_with_the_browser_microphone() -> None:
    pytest.importorskip("ipywidgets")
    pytest.importorskip("anywidget")
    from workbench.ui.live import live_widget

    rec, description = real_open(SAMPLE, "tiny")
    caps = LiveCaptions(rec, description)
    box = live_widget(caps, source="browser")
    mic = box.children[1]
    assert mic.chunk_s == 0.5 and isinstance(mic.protocol, BrowserStream)
    wav, _ = speech(2)
    feeder = send(mic.protocol, wav)
    assert feeder.join(60) and len(caps.lines) >= 2
