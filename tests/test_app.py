"""The Panel app's logic without a browser: pages driven through their Python methods.

Training uses a small random model (``tests/_models.py``) with tiny settings.
The HTTP-level checks (login required, no external resources in the page)
start the real server in a subprocess on a free 127.0.0.1 port.
"""

from __future__ import annotations

import argparse
import base64
import http.cookiejar
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest

pn = pytest.importorskip("panel")

from _models import tiny_backend

from conftest import make_speechlike
from workbench.adapters import ResidualConfig
from workbench.app import (
    add_serve_arguments,
    check_address,
    read_password,
    serve,
    serve_cli,
)
from workbench.app_pages import jobs
from workbench.app_pages.common import AppContext, inside_data_dir, speaker_path
from workbench.app_pages.recorder import PanelRecorder, recorder_available
from workbench.app_pages.shell import WorkbenchApp
from workbench.audio import Recording
from workbench.corpus import SpeakerCorpus
from workbench.errors import CorpusError, ServerError, WorkbenchError
from workbench.trainer import TrainConfig

pytestmark = [pytest.mark.filterwarnings("ignore:the held-out set has only"),
              pytest.mark.filterwarnings("ignore::PendingDeprecationWarning"), pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_data" / "sim-accent"


def tiny_config(minutes: float) -> TrainConfig:
    return TrainConfig(adapter=ResidualConfig(bottleneck=4), max_steps=100_000, time_limit_s=60.0 * minutes,
                       eval_every=2, batch_size=4, min_utterances=4, specaugment=None, patience=0)


@pytest.fixture
def ctx(tmp_path) -> AppContext:
    return AppContext(data_dir=tmp_path / "data", backend_factory=lambda name: tiny_backend(),
                      train_config=tiny_config, decoder="greedy")


@pytest.fixture
def app(ctx) -> WorkbenchApp:
    ctx.data_dir.mkdir(parents=True, exist_ok=True)
    return WorkbenchApp(ctx)


def sample_files(n: int) -> list[tuple[str, bytes]]:
    """``n`` FLAC files of one sample speaker and a transcript file naming them."""
    lines = [json.loads(x) for x in (SAMPLE / "manifest.jsonl").read_text().splitlines() if x.strip()][:n]
    files = [(Path(u["audio_path"]).name, (SAMPLE / u["audio_path"]).read_bytes()) for u in lines]
    transcript = "".join(f"{Path(u['audio_path']).stem} {u['transcript']}\n" for u in lines)
    return files + [("transcripts.txt", transcript.encode())]


def create(app: WorkbenchApp, sid: str = "spk-001", consent: str = "consent-1", n: int = 12) -> str | None:
    page = app.pages["Speakers"]
    page.new_id.value, page.consent_id.value, page.n_prompts.value = sid, consent, n
    return page.create()


def tree(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")}


# --------------------------------------------------------------------------- speakers


def test_create_speaker_with_consent_and_open_it(app, ctx) -> None:
    assert create(app) == "spk-001"
    corpus = SpeakerCorpus.open(ctx.data_dir / "spk-001")
    assert len(corpus.prompts()) == 12
    assert [c["consent_id"] for c in corpus.info["consent"]] == ["consent-1"]
    assert app.state.speaker_id == "spk-001"
    page = app.pages["Speakers"]
    assert "spk-001" in page.table.object and page.choose.options == ["spk-001"]
    assert "ready" in page.create_message.object and page.go_record.visible
    # a second speaker, then open the first again
    assert create(app, "spk-002", consent="c-2") == "spk-002"
    assert page.open("spk-001") and app.state.speaker_id == "spk-001"
    assert "spk-001" in app.speaker_badge.object
    # the same id twice is refused
    assert create(app, "spk-001") is None and "already exists" in page.create_message.object
    # a new window with no speaker open shows a real choice, not a blank one
    fresh = WorkbenchApp(ctx).pages["Speakers"]
    assert fresh.choose.value == "spk-001"
    fresh.open_button.clicks += 1
    assert fresh.state.speaker_id == "spk-001"


def test_own_sentences_and_missing_consent(app, ctx) -> None:
    page = app.pages["Speakers"]
    page.new_id.value = "spk-own"
    page.prompt_set.value = "own"
    assert page.own_prompts.visible and not page.n_prompts.visible
    page.own_prompts.value = "Good morning\n\nCall my sister\n"
    assert page.create() is None and "consent" in page.create_message.object
    page.consent_id.value = "bad id/../x"
    assert page.create() is None and "not allowed" in page.create_message.object
    assert not (ctx.data_dir / "spk-own").exists()
    page.consent_id.value = "consent-7"
    assert page.create() == "spk-own"
    assert SpeakerCorpus.open(ctx.data_dir / "spk-own").prompts() == ["Good morning", "Call my sister"]


@pytest.mark.parametrize("bad", ["../evil", "a/b", "..", ".hidden", "x" * 65, "con", "spk 1", "..\\evil", "spk\x00"])
def test_bad_speaker_ids_are_refused(app, ctx, tmp_path, bad) -> None:
    before = tree(tmp_path)
    assert create(app, bad) is None
    assert "not allowed" in app.pages["Speakers"].create_message.object
    assert not app.pages["Speakers"].open(bad)
    assert tree(tmp_path) == before  # nothing written anywhere
    assert app.state.speaker_id == ""


def test_path_traversal_is_refused_everywhere(app, ctx, tmp_path) -> None:
    outside = tmp_path / "outside"
    SpeakerCorpus.create(tmp_path, "outside", prompts=["hello there"])
    (ctx.data_dir / "sneaky").symlink_to(outside)  # a link out of the data folder
    for sid in ("../outside", "sneaky", "/etc", "%2e%2e"):
        with pytest.raises(CorpusError):
            speaker_path(ctx, sid)
        assert not app.pages["Speakers"].open(sid)
    with pytest.raises(CorpusError):
        inside_data_dir(ctx, ctx.data_dir / ".." / "outside" / "speaker.json")
    assert "sneaky" not in app.pages["Speakers"].choose.options
    # a report name from the page is checked too
    assert create(app) == "spk-001"
    results = app.pages["Results"]
    results.load()
    for name in ("../../outside/speaker.json", "report-20240101-000000.csv/../../x", "/etc/passwd"):
        with pytest.raises(CorpusError):
            results._report_path(name)


def test_open_from_the_page_address_is_validated(app, monkeypatch) -> None:
    assert create(app) == "spk-001"
    fresh = WorkbenchApp(app.ctx)
    monkeypatch.setattr(pn.state, "_session_args", {"speaker": [b"../../etc"]}, raising=False)
    monkeypatch.setattr(type(pn.state), "session_args", property(lambda self: self._session_args), raising=False)
    fresh.open_from_url()
    assert fresh.state.speaker_id == "" and "not allowed" in fresh.pages["Speakers"].open_message.object
    monkeypatch.setattr(pn.state, "_session_args", {"speaker": [b"spk-001"]}, raising=False)
    fresh.open_from_url()
    assert fresh.state.speaker_id == "spk-001"


# --------------------------------------------------------------------------- record


def test_record_takes_move_through_prompts(app, ctx) -> None:
    create(app)
    app.go("Record")
    page = app.pages["Record"]
    assert page.work.visible and not page.consent_box.visible
    first = page.session.prompt
    assert first in page.prompt.object and "1 of 12" in page.where.object
    utt = page.take(Recording(make_speechlike(1.5), 16_000), source="browser")
    assert utt.status == "ok" and utt.consent_id == "consent-1" and utt.prompt == first
    assert "1 of 12 recorded" in page.progress_text.object
    assert not page.player.visible  # the browser recorder plays its own take: one play control
    page._act("next")
    assert "2 of 12" in page.where.object
    page._act("skip")
    assert "3 of 12" in page.where.object
    page._act("back")
    page._act("back")
    page._act("redo")  # the first take is set aside
    assert SpeakerCorpus.open(ctx.data_dir / "spk-001").summary()["n_ok"] == 0
    with pytest.raises(WorkbenchError):
        page.take(Recording(np.full(800, np.nan, np.float32), 16_000), source="browser")
    assert "cannot be saved" in page.message.object


def test_consent_is_asked_when_missing(app, ctx) -> None:
    SpeakerCorpus.create(ctx.data_dir, "spk-nc", prompts=["hello there", "good morning"])
    assert app.pages["Speakers"].open("spk-nc")
    page = app.pages["Record"]
    assert page.consent_box.visible and not page.work.visible
    page.consent_id.value = "consent-9"
    assert page.give_consent()
    assert page.work.visible and page.session.consent_id == "consent-9"


@pytest.mark.skipif(not recorder_available(), reason="the browser recorder (workbench/ui/recorder.py) is missing")
def test_browser_recorder_messages_become_a_saved_take(app, ctx) -> None:
    """What the page's recorder sends (base64 chunks through Panel) is reassembled and saved."""
    create(app)
    page = app.pages["Record"]
    sent: list[dict] = []
    page.recorder._send_msg = sent.append  # the answer to the page
    pcm = (make_speechlike(2.0) * 32767).astype("<i2").tobytes()
    chunks = [pcm[i:i + 32000] for i in range(0, len(pcm), 32000)]
    page.recorder._handle_msg({"content": {"type": "start", "take": "t1", "rate": 16000}, "buffers": []})
    for seq, c in enumerate(chunks):
        page.recorder._handle_msg({"content": {"type": "chunk", "take": "t1", "seq": seq},
                                   "buffers": [base64.b64encode(c).decode()]})
    page.recorder._handle_msg({"content": {"type": "stop", "take": "t1", "chunks": len(chunks),
                                           "samples": len(pcm) // 2}, "buffers": []})
    assert sent and sent[-1]["type"] == "result" and sent[-1]["ok"], sent
    utts = SpeakerCorpus.open(ctx.data_dir / "spk-001").utterances()
    assert len(utts) == 1 and utts[0].extra["source"] == "browser" and abs(utts[0].duration_s - 2.0) < 0.01
    # a damaged piece is reported, never saved
    page.recorder._handle_msg({"content": {"type": "start", "take": "t2", "rate": 16000}, "buffers": []})
    page.recorder._handle_msg({"content": {"type": "chunk", "take": "t2", "seq": 0}, "buffers": ["%%%"]})
    assert sent[-1]["ok"] is False
    assert len(SpeakerCorpus.open(ctx.data_dir / "spk-001").utterances(None)) == 1
    assert "__wbRender" in PanelRecorder._esm and "https://" not in PanelRecorder._esm.split("// ---- workbench")[1]


def test_upload_many_recordings_with_their_transcripts(app, ctx, tmp_path) -> None:
    create(app, n=3)
    page = app.pages["Record"]
    outside_before = {p for p in tree(tmp_path) if not p.startswith("data")}
    files = sample_files(12)
    files.append(("../../../evil.flac", files[0][1]))  # a hostile name is only text
    files.append(("notes.docx", b"x"))
    report = page.add_files(files)
    assert len(report.added) == 12 and "evil.flac" in report.unmatched
    assert any("notes.docx" in u for u in report.unreadable)
    corpus = SpeakerCorpus.open(ctx.data_dir / "spk-001")
    assert len(corpus.utterances()) == 12 and len(corpus.prompts()) == 3 + report.new_prompts
    assert all(u.consent_id == "consent-1" and u.extra["source"] == "upload" for u in corpus.utterances())
    assert {p.name for p in (corpus.root / "audio").iterdir()} == {Path(u.audio_path).name for u in corpus.utterances()}
    assert {p for p in tree(tmp_path) if not p.startswith("data")} == outside_before  # nothing written elsewhere
    assert not list(tmp_path.parent.glob("evil*"))
    assert "Added 12 recordings" in page.upload_message.object
    # the same files again are skipped; a missing transcript file is explained
    again = page.add_files(files[:12] + [files[12]])
    assert again is not None and len(again.already_present) == 12
    assert page.add_files(files[:2]) is None and "transcript file" in page.upload_message.object


def test_upload_one_recording_for_the_prompt_on_screen(app, ctx) -> None:
    create(app)
    page = app.pages["Record"]
    assert page.upload_one.receive([("take.flac", (SAMPLE / "audio" / "00001-4cccfd.flac").read_bytes())])
    assert SpeakerCorpus.open(ctx.data_dir / "spk-001").summary()["n_ok"] == 1
    page.upload_one.receive([("take.mp3", b"ID3 not really")])
    assert "not a WAV" in page.message.object


# --------------------------------------------------------------------------- personalize and results


@pytest.fixture
def trained_ready(app, ctx):
    """A speaker with 16 recordings from sample data, open in ``app``."""
    create(app, n=3)
    app.pages["Record"].add_files(sample_files(16))
    app.go("Personalize")
    return app


def _wait(cond, timeout: float = 90.0) -> None:
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            raise AssertionError("timed out")
        time.sleep(0.05)


def test_training_starts_stops_and_a_second_run_is_refused(trained_ready, ctx) -> None:
    app = trained_ready
    page = app.pages["Personalize"]
    assert not page.train.disabled and "kept aside" in page.data.object and "decide when to stop" in page.data.object
    job = page.start()
    assert job is not None and job.running and page.train.disabled
    other = WorkbenchApp(ctx)  # another browser window on the same speaker
    assert other.pages["Speakers"].open("spk-001")
    other_page = other.pages["Personalize"]
    assert other_page.job is job  # it sees the run in progress
    assert other_page.start() is None and "already running" in other_page.message.object
    with pytest.raises(jobs.TrainingBusyError):
        jobs.start_training(ctx.data_dir / "spk-001", backend_factory=ctx.backend_factory, model="tiny",
                            config=tiny_config(1), decoder="greedy")
    _wait(lambda: job.snapshot()["step"] >= 2)
    third = WorkbenchApp(ctx)  # training one speaker does not hold up recording another
    assert create(third, "spk-002", consent="c-2") == "spk-002"
    t0 = time.monotonic()
    assert third.pages["Record"].take(Recording(make_speechlike(1.2), 16_000), source="browser").status == "ok"
    assert time.monotonic() - t0 < 5 and job.running
    page.poll()
    assert page.charts.visible and page.progress.value > 0 and "step" in page.status.object
    assert len(page.loss_source.data["step"]) >= 2 and not page.stop_button.disabled
    page.stop()
    assert job.join(120) and job.phase == "done", job.error
    page.poll()
    assert "stopped by user" in page.status.object
    assert job.run.report_html.is_file() and job.run.submodel_path.is_file()
    assert job.run.report_html.resolve().is_relative_to(ctx.data_dir)
    assert page.see_results.visible and "before" in page.result.object
    assert not page.train.disabled and page.stop_button.disabled
    page.see_results.clicks += 1
    assert app.state.page == "Results"

    results = app.pages["Results"]
    assert results.comparison is not None and len(results.choose.options) == 1
    assert "Base model" in results.summary.object and "Not a medical device" in results.summary.object
    assert "personal model heard" in results.table.object
    assert Path(results.download_html.file).resolve().is_relative_to(ctx.data_dir)
    assert results.download_html.visible and results.download_csv.filename.endswith(".csv")
    # a random model's run rarely beats the base model, so it is the personal model only when chosen (issue 24 A6)
    assert results.use_run(job.run.submodel_path.name), results.pick_message.object
    out = results.try_phrase(make_speechlike(1.2))
    assert out is not None and set(out) >= {"base", "personal"} and "Personal model heard" in results.try_answer.object


def test_too_few_recordings_cannot_train(app, ctx) -> None:
    create(app, n=3)
    app.pages["Record"].add_files(sample_files(3))
    page = app.pages["Personalize"]
    page.load()
    assert page.train.disabled and "Not enough recordings" in page.data.object


def test_a_failed_run_is_explained(app, ctx) -> None:
    def broken(name):
        raise WorkbenchError("The base model 'tiny' has no weights yet.")

    create(app, n=3)
    app.pages["Record"].add_files(sample_files(8))
    ctx.backend_factory = broken
    page = app.pages["Personalize"]
    page.load()
    job = page.start()
    assert job.join(30) and job.phase == "failed"
    page.poll()
    assert "no weights yet" in page.result.object and not page.train.disabled


def test_results_without_reports_and_the_map_note(app, monkeypatch) -> None:
    results = app.pages["Results"]
    assert "choose a speaker" in results.header.object
    create(app)
    results.load()
    assert "No results yet" in results.summary.object and not results.download_html.visible
    with pytest.raises(WorkbenchError, match="no personal model"):
        results.tester.transcribe(make_speechlike(1.0))
    from workbench.app_pages import speaker_map

    mapped = speaker_map.SpeakerMapPage(app.ctx, app.state)
    if mapped.available:  # one speaker without recordings: a plain message, no map
        assert mapped.run() is None and "at least two speakers" in mapped.status.object
    monkeypatch.setattr(speaker_map, "embeddings_available", lambda: False)
    page = speaker_map.SpeakerMapPage(app.ctx, app.state)
    assert page.draw.disabled and "not available" in page.status.object


# --------------------------------------------------------------------------- security


def test_address_rules() -> None:
    check_address("127.0.0.1", None)
    check_address("localhost", None)
    check_address("::1", None)
    for address in ("0.0.0.0", "192.168.1.20", "::"):
        with pytest.raises(ServerError, match="password"):
            check_address(address, None)
        check_address(address, "a-long-password")
    with pytest.raises(ServerError, match="too short"):
        check_address("0.0.0.0", "short")


def test_serving_on_all_addresses_without_password_refuses_to_start(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("WORKBENCH_PASSWORD", raising=False)
    with pytest.raises(ServerError, match="Refusing to listen on 0.0.0.0"):
        serve(tmp_path / "d", address="0.0.0.0", show=False, verbose=False)
    assert not (tmp_path / "d").exists()  # refused before anything happened
    parser = add_serve_arguments(argparse.ArgumentParser())
    args = parser.parse_args(["--address", "0.0.0.0", "--data", str(tmp_path / "d"), "--no-browser"])
    with pytest.raises(ServerError, match="--password-file"):
        serve_cli(args)


def test_password_sources(tmp_path) -> None:
    f = tmp_path / "pw.txt"
    f.write_text("correct-horse\nignored\n")
    assert read_password(f, env={}) == "correct-horse"
    assert read_password(None, env={"WORKBENCH_PASSWORD": "from-env-123"}) == "from-env-123"
    assert read_password(None, env={}) is None
    f.write_text("\n")
    with pytest.raises(ServerError, match="empty"):
        read_password(f, env={})
    with pytest.raises(ServerError, match="Cannot read"):
        read_password(tmp_path / "missing.txt", env={})


SERVER = """
import sys
from workbench.app import serve
serve(sys.argv[1], port=int(sys.argv[2]), password=sys.argv[3] or None, show=False)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(data: Path, password: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(data), str(port), password],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    url = f"http://127.0.0.1:{port}"
    t0 = time.monotonic()
    while time.monotonic() - t0 < 60:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc, url
        except OSError:
            if proc.poll() is not None:
                raise AssertionError(proc.stdout.read())
            time.sleep(0.2)
    proc.kill()
    raise AssertionError("the app did not start")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def test_with_a_password_unauthenticated_requests_are_refused(tmp_path) -> None:
    proc, url = _start(tmp_path / "data", "a-long-password")
    try:
        bare = urllib.request.build_opener(_NoRedirect)
        with pytest.raises(urllib.error.HTTPError) as err:
            bare.open(url + "/", timeout=30)
        assert err.value.code in (302, 303) and "/login" in err.value.headers["Location"]
        with pytest.raises(urllib.error.HTTPError) as err:  # the websocket needs the login too
            bare.open(urllib.request.Request(url + "/ws", headers={"Upgrade": "websocket"}), timeout=30)
        assert err.value.code in (302, 303, 401, 403)
        login = urllib.request.urlopen(url + "/login", timeout=30).read().decode()
        assert 'type="password"' in login and not re.search(r"(src|href)=[\"']https?://", login)

        jar = http.cookiejar.CookieJar()
        browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        wrong = browser.open(url + "/login", data=urllib.parse.urlencode(
            {"username": "workbench", "password": "nope-nope"}).encode(), timeout=30).read().decode()
        assert "Wrong password" in wrong and not any(c.name == "user" for c in jar)
        page = browser.open(url + "/login", data=urllib.parse.urlencode(
            {"username": "workbench", "password": "a-long-password"}).encode(), timeout=60).read().decode()
        assert "Speech Workbench" in page and "bokeh" in page.lower()
        # every script and stylesheet of the app comes from the app itself
        assert not re.search(r"(src|href)=[\"']https?://(?!127\.0\.0\.1)", page), re.findall(r"https?://[^\"' ]+", page)
    finally:
        proc.terminate()
        proc.wait(10)


def test_the_progress_bar_is_never_empty_once_a_step_is_done(tmp_path) -> None:
    job = jobs.TrainingJob(tmp_path / "spk", backend_factory=None, model="tiny", config=tiny_config(60))
    assert job.fraction == 0.0
    job._on_start({"max_steps": 100_000, "time_limit_s": 3600.0})
    job._on_step({"step": 1, "loss": 3.0, "elapsed_s": 0.001})  # a fast first step: 1e-5 of the budget
    assert 0.0 < job.fraction < 0.01
    job._set(phase="done", finished_at=time.time())
    assert job.fraction == 1.0
