"""The browser recorder in a real headless Chromium with a fake microphone.

A tiny local page (served from a temp folder on 127.0.0.1, a secure context)
imports ``recorder.js`` as an ES module and hands it a fake anywidget model that
behaves like anywidget's front-end model (get/set/save_changes/on/off/send, with
``send(content, callbacks, buffers)``). Playwright drives Debian's
``/usr/bin/chromium`` with ``--use-fake-device-for-media-stream``; the messages
the page sends are fed to the Python :class:`BrowserRecorder`, which must
rebuild a 16 kHz take of the recorded length. Never downloads a browser.

Skipped when chromium or playwright is missing, unless ``WORKBENCH_REQUIRE_BROWSER=1``.
"""

from __future__ import annotations

import base64
import functools
import http.server
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from _browser import ARGS, CHROMIUM, require_browser

pytestmark = pytest.mark.browser

SR = 16_000

PAGE = """<!doctype html>
<meta charset="utf-8">
<title>workbench recorder test</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="recorder.css">
<div id="root"></div>
<script type="module">
  import widget from "./recorder.js";
  // A stand-in for anywidget's front-end model (the AFM contract of @anywidget/types).
  const state = { max_s: 60, chunk_s: 1, disabled: false };
  const handlers = {};
  const sent = [];
  const emit = (name, ...args) => { for (const cb of [...(handlers[name] || [])]) cb(...args); };
  const b64 = (b) => {
    const bytes = b instanceof ArrayBuffer ? new Uint8Array(b) : new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
    let s = "";
    for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    return btoa(s);
  };
  const model = {
    get: (key) => state[key],
    set: (key, value) => { const old = state[key]; state[key] = value; if (old !== value) emit(`change:${key}`, model, value); },
    save_changes: () => {},
    on: (name, cb) => { (handlers[name] ||= []).push(cb); },
    off: (name, cb) => {
      if (!name) { for (const k of Object.keys(handlers)) delete handlers[k]; return; }
      handlers[name] = cb ? (handlers[name] || []).filter((f) => f !== cb) : [];
    },
    send: (content, callbacks, buffers) => {
      sent.push({ content: JSON.parse(JSON.stringify(content)), buffers: (buffers || []).map(b64), t: performance.now() });
    },
    widget_manager: {},
  };
  window.wb = { sent, model, state, deliver: (msg) => emit("msg:custom", msg, []) };
  const def = typeof widget === "function" ? await widget() : widget;
  if (def.initialize) await def.initialize({ model, experimental: {} });
  window.wb.cleanup = await def.render({ model, el: document.getElementById("root"), experimental: {} });
  window.wb.ready = true;
</script>
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The page, recorder.js and recorder.css served on 127.0.0.1 (a free port)."""
    require_browser()
    from workbench.ui import recorder as recmod

    root = tmp_path_factory.mktemp("recorder_page")
    static = Path(recmod.__file__).parent / "static"
    for name in ("recorder.js", "recorder.css"):
        shutil.copy(static / name, root / name)
    (root / "index.html").write_text(PAGE, encoding="utf-8")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/index.html"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser(site):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, site):
    context = browser.new_context()
    pages = []

    def open_page(init_script: str | None = None):
        p = context.new_page()
        errors: list[str] = []
        p.on("pageerror", lambda exc: errors.append(str(exc)))
        p.errors = errors
        if init_script:
            p.add_init_script(init_script)
        p.goto(site)
        p.wait_for_function("window.wb && window.wb.ready", timeout=10_000)
        pages.append(p)
        return p

    yield open_page
    context.close()


def record(p, seconds: float) -> tuple[list[dict], float]:
    """Click Record, wait until audio flows, record ``seconds``, Stop; returns (messages, measured s)."""
    p.click(".wb-rec-record")
    p.wait_for_function("document.getElementById('root').dataset.state === 'recording'",
                        polling=5, timeout=10_000)  # poll every 5 ms: the start time is what we measure
    t0 = time.monotonic()
    time.sleep(seconds)
    p.click(".wb-rec-stop")
    t1 = time.monotonic()
    p.wait_for_function("window.wb.sent.some((m) => m.content.type === 'stop')", timeout=10_000)
    return p.evaluate("window.wb.sent"), t1 - t0


def to_python(sent: list[dict]):
    """Feed the page's messages to a BrowserRecorder, as the comm would; returns (take, replies, recorder)."""
    from workbench.ui.recorder import BrowserRecorder

    rec = BrowserRecorder()
    replies: list[dict] = []
    rec.send = lambda content, buffers=None: replies.append(content)
    got = []
    rec.on_recording(got.append)
    for m in sent:
        rec.handle_message(m["content"], [base64.b64decode(b) for b in m["buffers"]])
    return (got[0] if got else None), replies, rec


def test_a_recording_reaches_the_kernel_at_16k_with_the_right_length(page):
    p = page()
    sent, seconds = record(p, 2.0)
    kinds = [m["content"]["type"] for m in sent]
    assert kinds[0] == "start" and kinds[-1] == "stop" and set(kinds[1:-1]) == {"chunk"}, kinds
    start, stop = sent[0]["content"], sent[-1]["content"]
    assert start["rate"] == SR
    chunks = [m for m in sent if m["content"]["type"] == "chunk"]
    assert [c["content"]["seq"] for c in chunks] == list(range(len(chunks)))
    assert all(0 < c["content"]["n"] <= SR for c in chunks)  # 1 s = 32 KB a message, far under 10 MB
    assert all(len(base64.b64decode(c["buffers"][0])) == 2 * c["content"]["n"] for c in chunks)

    take, replies, rec = to_python(sent)
    assert take is not None, rec.error
    assert take.sample_rate == SR and take.audio.dtype == np.float32
    assert take.audio.size == stop["samples"]
    assert abs(take.duration_s - seconds) <= 0.3, (take.duration_s, seconds)
    assert abs(take.duration_s - stop["elapsed"]) <= 0.15, (take.duration_s, stop["elapsed"])  # page clock
    assert float(np.max(np.abs(take.audio))) > 0.01  # the fake microphone's beeps, not silence
    assert float(np.sqrt(np.mean(take.audio.astype(np.float64) ** 2))) > 1e-4
    assert rec._assembler is None  # nothing kept after delivery
    print(f"\nbrowser take: {take.duration_s:.3f} s recorded over {seconds:.3f} s measured "
          f"({stop['elapsed']:.3f} s by the page's clock); "
          f"input {start['input_rate']} Hz via {start['method']}; {len(chunks)} chunks; "
          f"peak {np.max(np.abs(take.audio)):.3f}; rms {np.sqrt(np.mean(take.audio ** 2)):.4f}")

    # the kernel's answer shows in the page
    assert replies[-1]["type"] == "result" and replies[-1]["take"] == start["take"]
    p.evaluate("(m) => window.wb.deliver(m)", replies[-1])
    assert p.inner_text(".wb-rec-status") == replies[-1]["message"]
    assert p.errors == []


def test_the_page_stops_at_max_s_and_the_script_processor_fallback_works(page):
    # no AudioWorklet (older browsers, strict CSP): the ScriptProcessor path must give the same result
    p = page("delete window.AudioWorkletNode;")
    p.evaluate("window.wb.model.set('max_s', 1)")
    p.click(".wb-rec-record")
    p.wait_for_function("window.wb.sent.some((m) => m.content.type === 'stop')", timeout=10_000)
    sent = p.evaluate("window.wb.sent")
    assert sent[0]["content"]["method"] == "scriptprocessor"
    assert sent[-1]["content"]["reason"] == "limit"
    take, replies, _ = to_python(sent)
    assert take is not None and take.audio.size == SR  # exactly max_s at 16 kHz
    assert float(np.max(np.abs(take.audio))) > 0.01
    assert replies[-1]["message"].startswith("Stopped at the 1 s limit.")
    assert p.errors == []


@pytest.mark.parametrize("script, code, words", [
    ("Object.defineProperty(window, 'isSecureContext', {get: () => false});", "insecure",
     ["secure context", "https://", "localhost", "upload"]),
    ("navigator.mediaDevices.getUserMedia = () => Promise.reject(new DOMException('denied', 'NotAllowedError'));",
     "denied", ["allow the microphone", "https://", "localhost"]),
    ("navigator.mediaDevices.getUserMedia = () => Promise.reject(new DOMException('none', 'NotFoundError'));",
     "no_device", ["found no microphone"]),
])
def test_browser_errors_are_plain_and_reach_the_kernel(page, script, code, words):
    p = page(script)
    p.click(".wb-rec-record")
    p.wait_for_selector(f'#root[data-error="{code}"]', state="attached", timeout=10_000)
    text = p.inner_text(".wb-rec-status")
    for w in words:
        assert w in text
    sent = p.evaluate("window.wb.sent")
    assert [m["content"]["type"] for m in sent] == ["error"]
    errors = []
    _, _, rec = to_python([])
    rec.on_error(lambda c, m: errors.append((c, m)))
    rec.handle_message(sent[0]["content"], [])
    assert errors == [(code, text)] and rec.error == text
    assert p.is_enabled(".wb-rec-record")  # the person can try again


def test_resampler_and_pcm_conversion_in_the_page(page):
    """The page's 16 kHz downsampler keeps speech-band tones, removes what would alias, and
    rounds to int16 exactly like workbench.audio.float_to_pcm16."""
    from workbench.audio import float_to_pcm16

    p = page()
    out = p.evaluate("""async () => {
      const { Resampler, toPcm16 } = await import("./recorder.js");
      const run = (inRate, freq) => {
        const r = new Resampler(inRate);
        const n = inRate;  // 1 s, pushed in render quanta of 128 samples
        const parts = [];
        for (let i = 0; i < n; i += 128) {
          const x = new Float32Array(Math.min(128, n - i));
          for (let j = 0; j < x.length; j++) x[j] = 0.5 * Math.sin(2 * Math.PI * freq * (i + j) / inRate);
          parts.push(...r.push(x));
        }
        parts.push(...r.flush());
        const mid = parts.slice(2000, parts.length - 2000);  // away from the edges
        const rms = Math.sqrt(mid.reduce((a, v) => a + v * v, 0) / mid.length);
        return { n: parts.length, rms };
      };
      const res = {};
      for (const rate of [44100, 48000, 96000]) {
        res[rate] = { pass: run(rate, 1000), edge: run(rate, 3400), alias: run(rate, 12000) };
      }
      const probe = [0, 0.5, -0.5, 1, -1, 1.5, -1.5, 1e-5, -1e-5, 0.25 / 32768, 0.75 / 32768];
      res.pcm = Array.from(new Int16Array(toPcm16(Float32Array.from(probe))));
      res.probe = probe;
      return res;
    }""")
    for rate in ("44100", "48000", "96000"):
        r = out[rate]
        assert r["pass"]["n"] == SR, rate  # exactly 1 s at 16 kHz
        assert r["pass"]["rms"] == pytest.approx(0.5 / np.sqrt(2), rel=0.01), rate
        assert r["edge"]["rms"] == pytest.approx(0.5 / np.sqrt(2), rel=0.01), rate
        assert r["alias"]["rms"] < 0.5 / np.sqrt(2) * 10 ** (-40 / 20), rate  # >= 40 dB below
    print("\nresampler rms (1 kHz, 3.4 kHz, 12 kHz -> alias dB): " + "; ".join(
        f"{k}: {out[k]['pass']['rms']:.4f}, {out[k]['edge']['rms']:.4f}, "
        f"{20 * np.log10(max(out[k]['alias']['rms'], 1e-12) / (0.5 / np.sqrt(2))):.0f} dB"
        for k in ("44100", "48000", "96000")))
    expected = float_to_pcm16(np.array(out["probe"], dtype=np.float32)).tolist()
    assert out["pcm"] == expected


def test_a_reset_clears_the_last_take_and_ignores_its_late_answer(page):
    """Issue 24 A11: after Next the page kept the previous take's message and Play button."""
    p = page()
    sent, _ = record(p, 0.6)
    take = sent[0]["content"]["take"]
    p.evaluate("(m) => window.wb.deliver(m)", {"type": "result", "take": take, "ok": False, "message": "too quiet"})
    assert p.inner_text(".wb-rec-status") == "too quiet" and p.is_enabled(".wb-rec-play")
    p.evaluate("() => window.wb.deliver({type: 'reset'})")
    assert p.inner_text(".wb-rec-status").startswith("Press Record") and not p.is_enabled(".wb-rec-play")
    p.evaluate("(m) => window.wb.deliver(m)", {"type": "result", "take": take, "ok": True, "message": "late"})
    assert p.inner_text(".wb-rec-status").startswith("Press Record")  # the cleared take's late answer
    assert p.errors == []
