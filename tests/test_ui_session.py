"""A whole prompt session fed with recordings (no microphone): progress, redo, skip, consent,
and every take on disk right after each step."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

pytest.importorskip("ipywidgets")
pytest.importorskip("anywidget")

from conftest import SR, make_speechlike
from workbench.audio import Recording, float_to_pcm16
from workbench.corpus import SpeakerCorpus
from workbench.errors import CorpusError
from workbench.ui.recorder import Recorder
from workbench.ui.session import PromptSession

PROMPTS = ["Good morning.", "Could I have a glass of water?", "Thank you very much."]


def on_disk(root) -> list[dict]:
    """The manifest as a fresh process would read it (the kernel could die right now)."""
    corpus = SpeakerCorpus.open(root)
    lines = [json.loads(x) for x in (root / "manifest.jsonl").read_text().splitlines() if x.strip()]
    for line in lines:
        assert (root / line["audio_path"]).is_file()
    latest = {u.utt_id: u for u in corpus.utterances(None)}
    return [latest[k].to_dict() for k in latest]


@pytest.fixture
def corpus(speaker_root):
    return SpeakerCorpus.create(speaker_root, "spk01", prompts=PROMPTS)


def test_consent_is_asked_once_and_stored_with_every_take(corpus):
    session = PromptSession(corpus)
    with pytest.raises(CorpusError, match="Ask for consent"):
        session.record(make_speechlike(1.0))
    assert corpus.utterances(None) == []  # nothing saved without consent
    session.give_consent("consent-2024-05", text="Recordings for a personal model", given_by="speaker")
    consent = corpus.info["consent"]
    assert [c["consent_id"] for c in consent] == ["consent-2024-05"]
    assert consent[0]["given_by"] == "speaker"
    utt = session.record(make_speechlike(1.0))
    assert utt.consent_id == "consent-2024-05"
    # a resumed session with the same id reuses the record instead of failing
    again = PromptSession(SpeakerCorpus.open(corpus.root), consent_id="consent-2024-05")
    assert again.consent_id == "consent-2024-05" and len(corpus.info["consent"]) == 1
    with pytest.raises(CorpusError):
        session.give_consent("not a valid id!")


def test_a_full_session(corpus):
    root = corpus.root
    session = PromptSession(corpus, consent_id="consent-01")
    assert (session.index, session.prompt, session.progress) == (0, PROMPTS[0], (0, 3))
    assert session.progress_text == "0 of 3 recorded"

    # prompt 1: a good take, saved at once
    good1 = make_speechlike(1.5, seed=1)
    utt1 = session.record(good1)
    assert utt1.status == "ok" and session.ok is True and session.message.startswith("Saved (1.5 s).")
    assert [(u["prompt"], u["status"]) for u in on_disk(root)] == [(PROMPTS[0], "ok")]
    assert session.progress == (1, 3) and session.index == 0  # recording does not move on by itself
    assert session.next() == 1 and session.prompt == PROMPTS[1]

    # prompt 2: too quiet -> kept as rejected, not counted; then a good one
    quiet = session.record(make_speechlike(1.5, amp=0.004, seed=2))
    assert quiet.status == "rejected" and session.ok is False
    assert "not usable" in session.message and "Too quiet" in session.message
    assert session.status() == "rejected" and session.progress == (1, 3)
    utt2 = session.record(make_speechlike(2.0, seed=3))
    assert utt2.status == "ok" and session.progress == (2, 3)
    assert {u["utt_id"]: u["status"] for u in on_disk(root)} == {
        utt1.utt_id: "ok", quiet.utt_id: "rejected", utt2.utt_id: "ok"}

    # redo: the good take is set aside at once (kept on disk), then replaced
    assert session.redo().utt_id == utt2.utt_id
    assert session.progress == (1, 3) and session.status() == "rejected"
    assert {u["utt_id"]: u["status"] for u in on_disk(root)}[utt2.utt_id] == "rejected"
    utt2b = session.record(make_speechlike(2.0, seed=4))
    assert utt2b.status == "ok" and session.progress == (2, 3)

    # recording again without redo replaces the good take too
    utt2c = session.record(make_speechlike(1.8, seed=5))
    assert utt2c.extra["replaces"] == [utt2b.utt_id] and "replaces the earlier take" in session.message
    status = {u["utt_id"]: u["status"] for u in on_disk(root)}
    assert status[utt2b.utt_id] == "rejected" and status[utt2c.utt_id] == "ok"
    # ... but a failed retry leaves the good take in use
    session.record(make_speechlike(1.0, amp=0.004, seed=6))
    assert session.status() == "recorded" and "earlier good take is still used" in session.message

    # prompt 3: skipped; every prompt is then done
    session.next()
    assert session.skip() == 2  # the last prompt: nothing left to go to
    assert session.progress_text == "2 of 3 recorded, 1 skipped"
    assert session.finished and session.statuses() == ["recorded", "recorded", "skipped"]
    assert "All 3 prompts are done" in session.message

    # earlier takes can be listened to again, exactly as saved (16-bit FLAC)
    takes = session.takes()
    assert [t.prompt for t in takes].count(PROMPTS[1]) == 5
    back = session.audio(utt1)
    assert back.dtype == np.float32 and back.size == good1.size
    np.testing.assert_allclose(back, float_to_pcm16(good1) / 32768.0, atol=1e-6)
    assert session.back() == 1 and session.go(0) == 0
    with pytest.raises(CorpusError, match="no prompt 3"):
        session.go(3)

    # every take carries its prompt index, source and consent
    for u in on_disk(root):
        assert u["consent_id"] == "consent-01" and u["extra"]["source"] == "program"
        assert u["prompt"] == PROMPTS[u["extra"]["prompt_index"]]
    assert corpus.summary()["n_prompts_recorded"] == 2


def test_skip_marks_unusable_takes_and_resume_starts_at_the_first_open_prompt(corpus):
    session = PromptSession(corpus, consent_id="c1")
    session.record(make_speechlike(1.2))
    session.next()
    bad = session.record(make_speechlike(1.0, amp=0.004))
    session.skip()
    assert {u.utt_id: u.status for u in corpus.utterances(None)}[bad.utt_id] == "skipped"
    assert session.index == 2 and session.message.startswith("Skipped prompt 2.")
    # the kernel dies here: a new session on the same folder resumes at prompt 3
    resumed = PromptSession(SpeakerCorpus.open(corpus.root), consent_id="c1")
    assert resumed.index == 2 and resumed.statuses() == ["recorded", "skipped", "todo"]
    # a prompt skipped before any take is remembered by this session only
    resumed.skip()
    assert resumed.statuses()[2] == "skipped" and resumed.finished
    assert PromptSession(SpeakerCorpus.open(corpus.root), consent_id="c1").index == 2


def test_prompts_and_recordings_in_other_forms(speaker_root):
    empty = SpeakerCorpus.create(speaker_root, "spk02")
    with pytest.raises(CorpusError, match="no prompts"):
        PromptSession(empty)
    session = PromptSession(empty, prompts=["One.", "Two."], consent_id="c1")
    assert empty.prompts() == ["One.", "Two."]  # stored as the corpus's list
    rec48 = Recording(make_speechlike(1.5, sample_rate=48000), 48000)
    utt = session.record(rec48, source="upload")
    assert utt.duration_s == pytest.approx(1.5, abs=1e-3) and utt.extra["source"] == "upload"
    assert session.audio(utt).size == int(1.5 * SR)  # resampled to 16 kHz on saving


def test_widget_asks_consent_then_saves_browser_takes(corpus, monkeypatch):
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # this kernel has no microphone
    session = PromptSession(corpus)
    rec = Recorder(auto_keep=True)
    view = session.widget(recorder=rec)
    consent_box, work = view.children
    assert consent_box.layout.display == "" and work.layout.display == "none"
    cid, text, given_by, save = consent_box.children[1:5]
    cid.value, text.value, given_by.value = "consent-7", "Recordings for a personal model", "guardian"
    save.click()
    assert session.consent_id == "consent-7"
    assert consent_box.layout.display == "none" and work.layout.display == ""
    _where, prompt = work.children[:2]
    assert "Good morning." in prompt.value and "font-size" in prompt.value

    # a take from the browser: the page's messages, as the comm delivers them
    sent = []
    monkeypatch.setattr(rec.browser, "send", lambda content, buffers=None: sent.append(content))
    pcm = float_to_pcm16(make_speechlike(1.5)).astype("<i2")
    rec.browser.handle_message({"type": "start", "take": "a", "rate": SR})
    for i in range(2):
        rec.browser.handle_message({"type": "chunk", "take": "a", "seq": i},
                                   [pcm[i * SR:(i + 1) * SR].tobytes()])
    rec.browser.handle_message({"type": "stop", "take": "a", "chunks": 2, "samples": pcm.size})
    assert sent[-1]["ok"] is True
    [utt] = corpus.utterances()
    assert utt.extra["source"] == "browser" and utt.consent_id == "consent-7"
    progress_row = work.children[2]
    assert progress_row.children[0].value == 1 and progress_row.children[1].value == "1 of 3 recorded"

    # Next, then play the earlier take
    buttons = work.children[5].children
    next(b for b in buttons if b.description == "Next").click()
    assert session.index == 1 and "Could I have" in prompt.value
    earlier, play = work.children[6].children
    player = work.children[7]
    assert earlier.value == utt.utt_id
    play.click()
    assert bytes(player.value[:4]) == b"RIFF"
    next(b for b in buttons if b.description == "Skip").click()  # moving on clears the player
    assert len(player.value) == 0 and session.index == 2


def test_widget_follows_the_session_when_code_drives_it(corpus, monkeypatch):
    """Run All in notebook 01: the widget is shown, then a cell moves the session on; the view must show
    the session's prompt (a take recorded from the widget goes to that prompt)."""
    monkeypatch.setitem(sys.modules, "sounddevice", None)
    session = PromptSession(corpus, consent_id="c1")
    view = session.widget(recorder=Recorder(auto_keep=True))
    where, prompt = view.children[1].children[:2]
    assert PROMPTS[0] in prompt.value
    session.record(make_speechlike(1.2))
    session.go(2)
    assert PROMPTS[2] in prompt.value and "Prompt 3 of 3" in where.value
    progress_row = view.children[1].children[2]
    assert progress_row.children[1].value == "1 of 3 recorded"
    session.skip()  # back to the first open prompt
    assert session.index == 1 and PROMPTS[1] in prompt.value
    assert "Skipped prompt 3" in view.children[1].children[4].value


def test_summary_counts_prompts_skipped_before_any_take(corpus):
    """Notebook 01's simulated speaker read 2 of 15 prompts and skips the rest: the counts must say so."""
    session = PromptSession(corpus, consent_id="c1")
    session.record(make_speechlike(1.2))
    session.next()
    session.skip()  # no take at all for prompt 2
    session.record(make_speechlike(1.0, amp=0.004))  # prompt 3: only an unusable take
    summary = session.summary()
    assert session.progress_text == "1 of 3 recorded, 1 skipped"
    assert (summary["n_prompts"], summary["n_recorded"], summary["n_skipped"], summary["n_rejected"],
            summary["n_todo"]) == (3, 1, 1, 1, 0)
    assert (summary["n_takes_ok"], summary["n_takes_rejected"], summary["n_takes_skipped"]) == (1, 1, 0)


def test_a_clipped_take_is_explained_once(corpus, monkeypatch):
    monkeypatch.setitem(sys.modules, "sounddevice", None)
    session = PromptSession(corpus, consent_id="c1")
    rec = Recorder(auto_keep=True)
    view = session.widget(recorder=rec)
    message = view.children[1].children[4]
    sent = []
    monkeypatch.setattr(rec.browser, "send", lambda content, buffers=None: sent.append(content))
    clipped = np.clip(make_speechlike(1.5) * 30, -1, 1)
    pcm = float_to_pcm16(clipped).astype("<i2")
    rec.browser.handle_message({"type": "start", "take": "a", "rate": SR})
    rec.browser.handle_message({"type": "chunk", "take": "a", "seq": 0}, [pcm.tobytes()])
    rec.browser.handle_message({"type": "stop", "take": "a", "chunks": 1, "samples": pcm.size})
    shown = [sent[-1]["message"], message.value]  # the recorder's line in the page, the session's message
    assert sum(text.count("Clipped") for text in shown) == 1
    assert "Clipped" in message.value and "not usable" in message.value
    assert sent[-1]["message"].startswith("Received 1.5 s")
    # an upload: the same
    from workbench.ui._render import wav_bytes
    rec.receive_upload(({"name": "loud.wav", "content": memoryview(wav_bytes(clipped))},))
    assert "Clipped" not in rec.message and "Clipped" in message.value
