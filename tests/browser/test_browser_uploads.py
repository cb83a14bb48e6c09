"""Uploads on the Record page in a real headless Chromium: one too big is refused and the session lives on.

Before the fix, Panel's file input sent the whole file in one websocket message; one
over the server's message limit closed the connection: the page still looked alive,
and the next take was not saved. Here the server runs with a 4 MB message limit and a
6 MB file limit (the real ones are 16 MB and 100 MB: the same behaviour, smaller files):

- an 8 MB recording is refused in the page with a message, before anything is sent;
- a 5 MB one, larger than one message, arrives in pieces and is saved;
- a normal take afterwards is saved too.

Skipped when chromium or playwright is missing, unless ``WORKBENCH_REQUIRE_BROWSER=1``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _browser import ARGS, CHROMIUM, free_port, nav, require_browser, stop_process, wait_listening

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "sample_data" / "sim-accent"
MB = 1024 * 1024

SERVER = """
import sys
sys.path.insert(0, sys.argv[3])
import workbench.app
from workbench.app_pages.upload_input import FileUpload
workbench.app._MAX_MESSAGE = 4 * 1024 * 1024
FileUpload.max_file_bytes = 6 * 1024 * 1024
from _models import tiny_backend
from workbench.app import serve
serve(sys.argv[1], port=int(sys.argv[2]), show=False, backend_factory=lambda name: tiny_backend())
"""


def _wav(path: Path, megabytes: float) -> Path:
    """A 48 kHz stereo 16-bit WAV of about ``megabytes``: a sample sentence repeated."""
    import soundfile as sf

    from workbench.audio import load_audio, resample

    speech = resample(load_audio(min((SAMPLE / "audio").glob("*.flac"))), 16_000, 48_000)
    n = int(megabytes * MB / 4)  # 2 channels x 2 bytes
    mono = np.resize(np.concatenate([speech, np.zeros(24_000, np.float32)]), n)
    sf.write(path, np.stack([mono, mono], axis=1) * 0.5, 48_000, subtype="PCM_16")
    return path


def _takes(data: Path) -> list[dict]:
    manifest = data / "spk-001" / "manifest.jsonl"
    return [json.loads(x) for x in manifest.read_text().splitlines() if x.strip()] if manifest.exists() else []


def test_a_too_big_upload_is_refused_and_the_next_takes_are_saved(tmp_path) -> None:
    require_browser(panel=True)
    from playwright.sync_api import expect, sync_playwright

    from workbench.corpus import SpeakerCorpus

    data = tmp_path / "data"
    corpus = SpeakerCorpus.create(data, "spk-001", prompts=["hello there", "good morning", "call my sister"])
    corpus.add_consent("consent-1", text="for this speaker only", given_by="speaker")
    big, medium = _wav(tmp_path / "all-day.wav", 8), _wav(tmp_path / "long-take.wav", 5)
    assert big.stat().st_size > 6 * MB > medium.stat().st_size > 4 * 4 / 3 * MB * 0.9
    small = min((SAMPLE / "audio").glob("*.flac"))
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(data), str(port), str(ROOT / "tests")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"})
    try:
        assert wait_listening(proc, port), "the app did not start"
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.set_default_timeout(30_000)
            page.goto(f"http://127.0.0.1:{port}/?speaker=spk-001")
            nav(page, "Record")
            expect(page.get_by_role("heading", name="Record: spk-001")).to_be_visible()
            single = page.get_by_label("Recording of the sentence on screen")

            single.set_input_files(str(big))
            expect(page.get_by_text("all-day.wav is 8.0 MB; one file can be at most 6.0 MB")).to_be_visible()
            assert _takes(data) == []

            single.set_input_files(str(medium))  # more than one websocket message: sent in pieces
            expect(page.get_by_text("1 of 3 recorded")).to_be_visible(timeout=60_000)
            assert [t["extra"]["source"] for t in _takes(data)] == ["upload"]

            page.get_by_role("button", name="Next →").click()
            expect(page.get_by_text("Sentence 2 of 3")).to_be_visible()
            single.set_input_files(str(small))
            expect(page.get_by_text("2 of 3 recorded")).to_be_visible()
            assert len(_takes(data)) == 2 and not errors, errors
            browser.close()
    finally:
        stop_process(proc)
