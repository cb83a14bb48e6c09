"""`workbench record` in a terminal, with a fake microphone and scripted keys."""

from __future__ import annotations

import numpy as np

from workbench.audio import Recording
from workbench.corpus import SpeakerCorpus
from workbench.ui.terminal import record_in_terminal


class FakeMic:
    def __init__(self) -> None:
        self.message, self.n = "", 0

    def start(self) -> None:
        self.n += 1

    def stop(self) -> Recording:
        t = np.arange(16000) / 16000
        amp = 0.3 if self.n != 2 else 0.0  # the second take is silent: rejected, then redone
        self.message = "Good recording." if amp else "Silent"
        return Recording((amp * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32))

    def redo(self) -> None:
        pass

    def play(self, take) -> None:
        pass


def test_terminal_session_saves_each_take(tmp_path) -> None:
    keys = iter(["", "", "k",      # prompt 1: kept
                 "", "", "k",      # prompt 2: silent take -> saved as rejected, stays on prompt 2
                 "", "", "p", "k",  # prompt 2 again: play, keep
                 "", "", "s",      # prompt 3: skipped
                 "", "", "q"])     # quit
    said = []
    kept = record_in_terminal(tmp_path / "spk-1", consent_id="consent-1", create=True,
                              prompts=["one two", "three four", "five six", "seven eight"],
                              ask=lambda _: next(keys), say=said.append, recorder=FakeMic())
    corpus = SpeakerCorpus.open(tmp_path / "spk-1")
    assert kept == 2
    assert [u.prompt for u in corpus.utterances()] == ["one two", "three four"]
    assert len(corpus.utterances(status="rejected")) == 1
    assert all(u.consent_id == "consent-1" for u in corpus.utterances(None))
    assert any("Please say" in s for s in said)
