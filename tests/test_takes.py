"""The browser recorder's take protocol as a plain class: no widget, no comm, no Panel.

The views (``ui/recorder.BrowserRecorder``, ``app_pages/recorder.PanelRecorder``) only
carry messages; what a take becomes and what the page is told is decided here, and a
take that a callback saves is checked once, by the corpus.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import make_speechlike
from workbench.audio import Recording, check_quality, float_to_pcm16
from workbench.constants import SAMPLE_RATE
from workbench.corpus import SpeakerCorpus
from workbench.errors import CorpusError
from workbench.takes import TakeProtocol, hand_over, received_message


def send_take(protocol: TakeProtocol, wav: np.ndarray, take: str = "t1") -> Recording | None:
    """The page's messages for one take, one second per chunk; returns what ``stop`` returns."""
    pcm = float_to_pcm16(wav).astype("<i2")
    chunks = [pcm[i:i + SAMPLE_RATE].tobytes() for i in range(0, pcm.size, SAMPLE_RATE)]
    protocol.handle_message({"type": "start", "take": take, "rate": SAMPLE_RATE})
    for seq, chunk in enumerate(chunks):
        protocol.handle_message({"type": "chunk", "take": take, "seq": seq}, [chunk])
    return protocol.handle_message({"type": "stop", "take": take, "chunks": len(chunks), "samples": pcm.size})


def test_the_protocol_imports_without_any_view_package() -> None:
    code = ("import json, sys, workbench.takes; "
            "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'ipywidgets', 'anywidget', 'panel', 'traitlets', 'IPython', 'bokeh'})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_a_take_nobody_saves_is_checked_by_the_protocol() -> None:
    sent: list[dict] = []
    got: list[Recording] = []
    protocol = TakeProtocol(sent.append)
    protocol.on_recording(got.append)  # returns None: it does not save the take
    rec = send_take(protocol, make_speechlike(1.5))
    assert rec is got[0] and rec.sample_rate == SAMPLE_RATE and protocol.recording is rec
    assert protocol.report is not None and protocol.report.ok
    assert sent[-1] == {"type": "result", "take": "t1", "ok": True, "message": "Good recording.", "seconds": 1.5}
    assert not protocol.receiving and protocol.assembler is None


def test_the_report_of_the_saving_callback_is_shown_and_the_take_is_not_checked_again(monkeypatch) -> None:
    decided = check_quality(make_speechlike(1.5, amp=0.004), SAMPLE_RATE)  # too quiet: what a corpus decided
    assert not decided.ok

    def no_second_check(self):
        raise AssertionError("the take was checked again")

    monkeypatch.setattr(Recording, "quality", no_second_check)
    sent: list[dict] = []
    protocol = TakeProtocol(sent.append)
    protocol.on_recording(lambda rec: decided)
    send_take(protocol, make_speechlike(1.5))
    assert protocol.report is decided
    assert sent[-1]["ok"] is False and sent[-1]["message"] == decided.message
    protocol.show_quality = False  # a caller that shows the report itself: the page only says it arrived
    send_take(protocol, make_speechlike(1.5), take="t2")
    assert sent[-1]["message"] == received_message(protocol.recording) and sent[-1]["ok"] is False


def test_a_prompt_session_decides_once_through_the_corpus(tmp_path, monkeypatch) -> None:
    """What the app's Record page does: the callback saves the take and returns add_take's report."""
    from workbench.ui.session import PromptSession

    corpus = SpeakerCorpus.create(tmp_path, "spk01", prompts=["Good morning.", "Thank you."])
    session = PromptSession(corpus, consent_id="c1")
    monkeypatch.setattr(Recording, "quality", lambda self: pytest.fail("the recorder checked the take itself"))
    sent: list[dict] = []
    protocol = TakeProtocol(sent.append)
    protocol.on_recording(lambda rec: session.record(rec, source="browser").quality_report)
    send_take(protocol, np.clip(make_speechlike(1.5) * 30, -1, 1))  # clipped: saved, not usable
    [utt] = corpus.utterances(None)
    assert utt.status == "rejected" and utt.extra["source"] == "browser"
    assert sent[-1]["ok"] is False and "Clipped" in sent[-1]["message"]
    assert protocol.report == utt.quality_report


def test_a_refusing_callback_is_explained_in_the_page() -> None:
    sent: list[dict] = []
    protocol = TakeProtocol(sent.append)

    def refuse(rec: Recording) -> None:
        raise CorpusError("Ask for consent before recording.")

    protocol.on_recording(refuse)
    send_take(protocol, make_speechlike(1.0))
    assert sent[-1]["ok"] is False and sent[-1]["message"] == "Ask for consent before recording."


def test_a_closed_protocol_answers_nobody() -> None:
    sent: list[dict] = []
    got: list[Recording] = []
    errors: list[tuple[str, str]] = []
    protocol = TakeProtocol(sent.append, max_s=5.0)
    protocol.on_recording(got.append)
    protocol.on_error(lambda code, message: errors.append((code, message)))
    protocol.handle_message({"type": "start", "take": "t", "rate": SAMPLE_RATE})
    protocol.close()
    assert not protocol.receiving
    send_take(protocol, make_speechlike(1.0))
    protocol.handle_message({"type": "error", "code": "denied", "message": "No microphone."})
    assert sent == [] and got == [] and errors == []
    assert protocol.recording is not None and protocol.error == "No microphone."


def test_hand_over_returns_the_last_report_a_callback_gave() -> None:
    take = Recording(make_speechlike(1.0), SAMPLE_RATE)
    first, last = take.quality(), check_quality(make_speechlike(1.0, amp=0.004), SAMPLE_RATE)
    assert hand_over(take, [lambda r: None]) is None
    assert hand_over(take, [lambda r: first, lambda r: "not a report", lambda r: last]) is last
