"""The therapist app in a real headless Chromium: the whole workflow by clicking.

The app is served in a subprocess on a free 127.0.0.1 port with a small random
base model and tiny training settings, over a temporary data folder. Playwright
drives Debian's ``/usr/bin/chromium`` (never a downloaded browser) with a fake
microphone that plays a sample recording in a loop. Every request the page
makes is recorded (and anything not on this computer is blocked); the test
fails if one leaves localhost. Screenshots of each page go to a temp folder
(printed; ``WORKBENCH_SCREENSHOTS=DIR`` chooses it).

Skipped when chromium or playwright is missing, unless ``WORKBENCH_REQUIRE_BROWSER=1``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
from _browser import ARGS, CHROMIUM, free_port, nav, require_browser, shot, stop_process, wait_listening

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
SAMPLE = ROOT / "sample_data"
SPEAKER = "sim-accent"  # the sample speaker whose files are uploaded
LOCAL_HOSTS = {"127.0.0.1", "localhost"}

SERVER = """
import sys
sys.path.insert(0, sys.argv[4])
from _models import tiny_backend
from workbench.adapters import ResidualConfig
from workbench.app import serve
from workbench.trainer import TrainConfig

def config(minutes):
    return TrainConfig(adapter=ResidualConfig(bottleneck=4), max_steps=100000, time_limit_s=60.0 * minutes,
                       eval_every=2, batch_size=4, min_utterances=4, specaugment=None, patience=0)

serve(sys.argv[1], port=int(sys.argv[2]), password=sys.argv[3] or None, show=False,
      backend_factory=lambda name: tiny_backend(), train_config=config, decoder="greedy")
"""


class Server:
    """The app in a subprocess; ``url`` once it accepts connections."""

    def __init__(self, data: Path, password: str = "") -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(data), str(self.port), password, str(TESTS)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"})
        if not wait_listening(self.proc, self.port):
            self.stop()
            raise AssertionError(f"the app did not start:\n{self.output()}")

    def output(self) -> str:
        if self.proc.poll() is None:
            return "(still running)"
        return self.proc.stdout.read() if self.proc.stdout else ""

    def stop(self) -> None:
        stop_process(self.proc)


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    out = Path(os.environ.get("WORKBENCH_SCREENSHOTS") or tmp_path_factory.mktemp("app-screenshots"))
    out.mkdir(parents=True, exist_ok=True)
    print(f"\nApp screenshots: {out}")
    return out


@pytest.fixture(scope="module")
def fake_mic(tmp_path_factory) -> Path:
    """A WAV for Chromium's fake microphone: one sample sentence twice, with pauses (it loops)."""
    import soundfile as sf

    from workbench.audio import load_audio

    first = min((SAMPLE / "sim-typical-espeak" / "audio").glob("*.flac"))
    w = load_audio(first)
    w = 0.5 * w / np.abs(w).max()
    pause = np.zeros(int(0.4 * 16_000), np.float32)
    path = tmp_path_factory.mktemp("mic") / "speech.wav"
    sf.write(path, np.concatenate([pause, w, pause, w, pause]), 16_000, subtype="PCM_16")
    return path


@pytest.fixture
def browser(fake_mic):
    require_browser(panel=True)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM,
                              args=[*ARGS, f"--use-file-for-fake-audio-capture={fake_mic}"])
        try:
            yield b
        finally:
            b.close()


class NetworkLog:
    """Every request and websocket of a browser context; non-local ones are blocked and remembered."""

    def __init__(self, context) -> None:
        self.urls: list[str] = []
        self.external: list[str] = []
        context.route("**/*", self._route)
        context.on("request", lambda r: self.urls.append(r.url))
        context.on("page", lambda page: page.on("websocket", lambda ws: self._check(ws.url)))

    def _check(self, url: str) -> bool:
        parsed = urlparse(url)
        ok = parsed.scheme in ("data", "blob", "about") or parsed.hostname in LOCAL_HOSTS
        if not ok:
            self.external.append(url)
        return ok

    def _route(self, route) -> None:
        if self._check(route.request.url):
            route.continue_()
        else:
            route.abort()


def _upload_set(tmp: Path, n: int, skip: int = 0) -> list[Path]:
    """``n`` FLAC files of the sample speaker and a transcripts.txt naming them."""
    rows = [json.loads(x) for x in (SAMPLE / SPEAKER / "manifest.jsonl").read_text().splitlines() if x.strip()]
    rows = rows[skip:skip + n]
    files = [SAMPLE / SPEAKER / r["audio_path"] for r in rows]
    transcript = tmp / "transcripts.txt"
    transcript.write_text("".join(f"{Path(r['audio_path']).stem} {r['transcript']}\n" for r in rows))
    return [*files, transcript]


def test_the_whole_workflow_by_clicking(browser, shots, tmp_path) -> None:
    from playwright.sync_api import expect

    data = tmp_path / "data"
    data.mkdir()
    for other in ("sim-typical-espeak", "sim-dysarthria-severe"):  # neighbours for the speakers map
        shutil.copytree(SAMPLE / other, data / other)
    server = Server(data)
    try:
        context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
        net = NetworkLog(context)
        page = context.new_page()
        errors: list[str] = []
        console: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: console.append(m.text))
        page.set_default_timeout(30_000)
        page.goto(server.url + "/")
        expect(page.get_by_text("Speech Workbench").first).to_be_visible()
        expect(page.get_by_role("heading", name="Speakers")).to_be_visible()
        shot(page, shots / "01-speakers.png")

        # 1. create a speaker (a traversal attempt first)
        page.get_by_label("Speaker code (de-identified, no names)").fill("../../etc")
        page.get_by_label("Consent record id").fill("consent-2024-05")
        page.get_by_label("How many sentences").fill("6")
        page.get_by_role("button", name="Create speaker").click()
        expect(page.get_by_text("is not allowed").first).to_be_visible()
        page.get_by_label("Speaker code (de-identified, no names)").fill("spk-017")
        page.get_by_role("button", name="Create speaker").click()
        expect(page.get_by_text("Speaker spk-017 is ready")).to_be_visible()
        assert (data / "spk-017" / "speaker.json").is_file() and not (tmp_path / "etc").exists()
        shot(page, shots / "02-speaker-created.png")

        # 2. record 3 prompts with the fake microphone (uploads if this installation has no recorder)
        page.get_by_role("button", name="Start recording").click()
        expect(page.get_by_role("heading", name="Record: spk-017")).to_be_visible()
        has_mic = page.locator(".wb-recorder").count() > 0
        singles = _upload_set(tmp_path, 3, skip=60)[:3]
        for i in range(3):
            expect(page.get_by_text(f"Sentence {i + 1} of 6")).to_be_visible()
            if has_mic:
                page.locator(".wb-rec-record").click()
                expect(page.locator(".wb-rec-stop")).to_be_enabled()
                page.wait_for_timeout(2600)
                page.locator(".wb-rec-stop").click()
            else:
                page.get_by_label("Recording of the sentence on screen").set_input_files(str(singles[i]))
            expect(page.get_by_text(f"{i + 1} of 6 recorded")).to_be_visible()
            if i == 0:
                shot(page, shots / "03-record-take.png")
                if has_mic:  # one play control for the take: the recorder's own
                    expect(page.locator(".wb-rec-play")).to_be_enabled()
                    assert page.locator("audio:visible").count() == 0
            page.get_by_role("button", name="Next →").click()
        expect(page.get_by_text("3 of 6 recorded")).to_be_visible()
        if has_mic:
            takes = [json.loads(x) for x in (data / "spk-017" / "manifest.jsonl").read_text().splitlines()]
            assert {t["extra"]["source"] for t in takes} == {"browser"} and all(t["status"] == "ok" for t in takes)

        # 3. upload the rest from sample_data (12 recordings + their transcripts)
        page.locator("input[type=file][multiple]").set_input_files([str(p) for p in _upload_set(tmp_path, 12)])
        expect(page.get_by_text("Added 12 recordings")).to_be_visible()
        shot(page, shots / "04-record-uploaded.png")

        # 4. train for a few seconds, 5. stop
        nav(page, "Personalize")
        expect(page.get_by_role("heading", name="Personalize: spk-017")).to_be_visible()
        page.get_by_role("button", name="▶ Train").click()
        expect(page.get_by_text("Training the personal model: step")).to_be_visible(timeout=60_000)
        page.wait_for_timeout(3000)
        shot(page, shots / "05-personalize-training.png")
        page.get_by_role("button", name="■ Stop").click()
        expect(page.get_by_text("Finished (stopped by user)")).to_be_visible(timeout=90_000)
        expect(page.get_by_role("button", name="See the results →")).to_be_visible()
        shot(page, shots / "06-personalize-done.png")
        # both charts drew from explicit ranges (an empty or all-equal series left Bokeh's empty)
        assert not [m for m in console if "could not set initial ranges" in m], console[:5]

        # 6. see the results and download the report
        page.get_by_role("button", name="See the results →").click()
        expect(page.get_by_role("heading", name="Results: spk-017")).to_be_visible()
        expect(page.get_by_text("Base model:")).to_be_visible()
        expect(page.get_by_text("Each recording kept aside")).to_be_visible()
        expect(page.get_by_text("Not a medical device")).to_be_visible()
        with page.expect_download() as info:
            page.get_by_role("button", name="Download the report (HTML)").click()
        report = tmp_path / "report.html"
        info.value.save_as(report)
        text = report.read_text()
        assert "Not a medical device" in text and "spk-017" in text
        # try a phrase (uploaded, so the run does not depend on the microphone again)
        phrase = _upload_set(tmp_path, 1, skip=40)[0]
        page.get_by_label("Or upload a recording (WAV, FLAC or OGG)").set_input_files(str(phrase))
        expect(page.get_by_text("Personal model heard")).to_be_visible(timeout=60_000)
        shot(page, shots / "07-results.png")

        # the speakers map
        nav(page, "Speakers map")
        expect(page.get_by_role("heading", name="Speakers map")).to_be_visible()
        draw = page.get_by_role("button", name="Draw the map")
        if draw.is_enabled():
            draw.click()
            expect(page.get_by_text("Nearest to spk-017")).to_be_visible(timeout=120_000)
        shot(page, shots / "08-speakers-map.png")

        # back to the list: the new speaker is there with its personal model
        nav(page, "Speakers")
        expect(page.locator("table.wb-table").get_by_text("spk-017")).to_be_visible()
        assert not errors, errors
        assert net.urls and not net.external, f"requests left localhost: {net.external}"
        context.close()
    finally:
        server.stop()


def test_with_a_password_the_app_needs_a_login(browser, shots, tmp_path) -> None:
    from playwright.sync_api import expect

    server = Server(tmp_path / "data", password="correct-horse-battery")
    try:
        context = browser.new_context(viewport={"width": 1000, "height": 700})
        net = NetworkLog(context)
        page = context.new_page()
        page.set_default_timeout(30_000)
        page.goto(server.url + "/")
        assert "/login" in page.url
        expect(page.get_by_label("Password")).to_be_visible()
        assert page.get_by_role("heading", name="Speakers").count() == 0
        page.screenshot(path=shots / "00-login.png")
        page.get_by_label("Password").fill("wrong-password")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_text("Wrong password")).to_be_visible()
        page.get_by_label("Password").fill("correct-horse-battery")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("heading", name="Speakers")).to_be_visible()
        assert not net.external, f"requests left localhost: {net.external}"
        context.close()
    finally:
        server.stop()
