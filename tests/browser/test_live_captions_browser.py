"""The Live captions page in a real headless Chromium, with a fake microphone playing a sample speaker.

The app runs in a subprocess over a copy of a shipped simulated speaker, with its real models
(the built-in model hears simulated voices; the voice is the best one installed). Chromium's
fake microphone plays three of the speaker's recordings with pauses, in a loop
(``--use-file-for-fake-audio-capture``). The test checks the three things a person does there:
the captions appear, *Say it back* plays audio made on the server, and a correction lands in the
speaker folder as a take from use; then the microphone goes away mid-stream (its track ends) and
the page says so, keeping the captions. Nothing may leave this computer. A screenshot of the page
goes to a temp folder (printed; ``WORKBENCH_SCREENSHOTS=DIR`` chooses it).

Skipped when chromium or playwright is missing, unless ``WORKBENCH_REQUIRE_BROWSER=1``.
"""

from __future__ import annotations

import json
import os
import re
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
SPEAKER = ROOT / "sample_data" / "sim-typical-espeak"
SID = SPEAKER.name
SERVER = "import sys\nfrom workbench.app import serve\nserve(sys.argv[1], port=int(sys.argv[2]), show=False)\n"


def _rows(folder: Path) -> list[dict]:
    return [json.loads(x) for x in (folder / "manifest.jsonl").read_text().splitlines() if x.strip()]


@pytest.fixture(scope="module")
def mic_file(tmp_path_factory) -> tuple[Path, list[str]]:
    """Three recordings of the speaker with 1 s pauses (Chromium loops the file), and their prompts."""
    import soundfile as sf

    from workbench.audio import load_audio

    rows = _rows(SPEAKER)[:3]
    pause = np.zeros(16_000, np.float32)
    parts = [pause]
    for row in rows:
        parts += [load_audio(SPEAKER / row["audio_path"]), pause]
    path = tmp_path_factory.mktemp("mic") / "speaker.wav"
    sf.write(path, np.concatenate(parts), 16_000, subtype="PCM_16")
    return path, [row["prompt"] for row in rows]


def test_live_captions_say_it_back_and_a_correction(mic_file, tmp_path) -> None:
    require_browser(panel=True)
    from playwright.sync_api import expect, sync_playwright

    wav, prompts = mic_file
    data = tmp_path / "data"
    shutil.copytree(SPEAKER, data / SID)
    before = len(_rows(data / SID))
    shots = Path(os.environ.get("WORKBENCH_SCREENSHOTS") or tmp_path / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    print(f"\nLive captions screenshots: {shots}")
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(data), str(port)], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    external: list[str] = []

    def route(r) -> None:
        url = urlparse(r.request.url)
        if url.scheme in ("data", "blob", "about") or url.hostname in ("127.0.0.1", "localhost"):
            r.continue_()
        else:
            external.append(r.request.url)
            r.abort()

    try:
        assert wait_listening(server, port), server.stdout.read() if server.poll() is not None else "no answer"
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=[
                *ARGS, f"--use-file-for-fake-audio-capture={wav}", "--autoplay-policy=no-user-gesture-required"])
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            context.route("**/*", route)
            # keep the page's microphone streams reachable, so the test can make one go away (unplugged)
            context.add_init_script("(() => { const md = navigator.mediaDevices; if (!md) return;"
                                    " const get = md.getUserMedia.bind(md); window.__wbStreams = [];"
                                    " md.getUserMedia = async (c) => { const s = await get(c);"
                                    " window.__wbStreams.push(s); return s; }; })()")
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.set_default_timeout(30_000)
            page.goto(f"http://127.0.0.1:{port}/?speaker={SID}")
            nav(page, "Live captions")
            expect(page.get_by_role("heading", name=f"Live captions: {SID}")).to_be_visible()
            expect(page.get_by_text("No personal model yet")).to_be_visible(timeout=60_000)
            start = page.locator(".wb-rec-record")
            expect(start).to_have_text("● Start captions")
            expect(start).to_be_enabled(timeout=60_000)  # once the model is loaded

            # 1. the captions appear while the fake microphone plays
            start.click()
            expect(page.get_by_text("Listening…")).to_be_visible()
            lines = page.locator(".wb-captions .wb-line[data-line]")
            expect(lines.nth(1)).to_be_visible(timeout=60_000)  # two committed lines: a pause split them
            page.wait_for_timeout(2500)
            expect(page.get_by_text("● Listening ·")).to_be_visible()
            shot(page, shots / "live-captions-listening.png")
            page.locator(".wb-rec-stop").click()
            expect(page.get_by_text("Captions stopped after")).to_be_visible(timeout=30_000)
            heard = " ".join(lines.all_inner_texts()).lower().split()
            words = set(" ".join(prompts).split())
            assert len(words & set(heard)) >= 3, heard
            shot(page, shots / "live-captions.png")

            # 2. say it back: the server makes the sound, the page plays it
            page.get_by_role("button", name="Say it back").click()
            audio = page.locator("audio")
            expect(audio).to_have_count(1, timeout=30_000)
            expect(audio).to_have_attribute("src", re.compile(r"^data:audio/wav;base64,.{20000}"), timeout=30_000)
            src = audio.get_attribute("src") or audio.evaluate("a => a.src")
            assert src.startswith("data:audio/") and len(src) > 20_000, src[:80]
            page.wait_for_timeout(1500)
            played = audio.evaluate("a => ({t: a.currentTime, paused: a.paused, ended: a.ended, d: a.duration})")
            assert played["d"] > 0.3 and (played["t"] > 0 or played["ended"]), played
            expect(page.get_by_text("Saying:")).to_be_visible()

            # 3. correct the first line: it lands in the speaker folder as a take from use
            first = lines.first.get_attribute("data-line")
            page.locator("select").select_option(index=page.locator("select option").count() - 1)
            box = page.get_by_label("It should say")  # typed as a person types (a fill() of the text already there
            picked = page.locator("select option:checked").inner_text().split(". ", 1)[1]
            expect(box).to_have_value(picked)  # the page has put the picked line in the box: now type over it
            box.select_text()  # sends no key events, and the click that follows it was lost)
            box.press_sequentially(prompts[0], delay=20)
            expect(box).to_have_value(prompts[0])
            page.get_by_role("button", name="Save correction").click()
            expect(page.get_by_text("as a take from use")).to_be_visible(timeout=30_000)
            rows = _rows(data / SID)
            assert len(rows) == before + 1, rows[-1]
            assert rows[-1]["extra"]["source"] == "use" and rows[-1]["prompt"] == prompts[0]
            assert (data / SID / rows[-1]["audio_path"]).is_file() and first is not None
            shot(page, shots / "live-captions-corrected.png")

            # 4. the microphone goes away mid-stream: a plain message, and the captions stay
            n_lines = lines.count()
            start.click()
            expect(page.get_by_text("Listening…")).to_be_visible()
            page.wait_for_timeout(1500)
            page.evaluate("() => window.__wbStreams.at(-1).getAudioTracks()"
                          ".forEach(t => t.dispatchEvent(new Event('ended')))")
            expect(page.get_by_text("The microphone stopped (was it unplugged").first).to_be_visible(timeout=30_000)
            expect(start).to_be_enabled()
            assert lines.count() >= n_lines and lines.first.inner_text().strip()
            shot(page, shots / "live-captions-mic-lost.png")
            assert not errors, errors
            assert not external, f"requests left localhost: {external}"
            context.close()
            browser.close()
    finally:
        stop_process(server)
