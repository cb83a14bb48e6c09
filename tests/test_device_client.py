"""The device client against things that are not the clinic's server (issue 24 B12): plain errors."""

from __future__ import annotations

import http.server
import json
import threading
from pathlib import Path

import pytest

from workbench.errors import ServerError

pytest.importorskip("constriction")

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "sim-typical-espeak"

# path -> (status, content type, body, bytes actually sent or None for all)
ANSWERS = {
    "/html": (200, "text/html", b"<!doctype html><html><body>Welcome to nginx!</body></html>", None),
    "/list": (200, "application/json", b"[1, 2, 3]", None),
    "/empty": (200, "application/json", b"{}", None),
    "/cut": (200, "application/json", json.dumps({"text": "hello there", "speaker": ""}).encode(), 9),
    "/deep": (200, "application/json", b"[" * 100_000 + b"]" * 100_000, None),
    "/proxy-error": (502, "text/html", b"<html>Bad Gateway</html>", None),
    "/text-not-str": (200, "application/json", b'{"text": ["a"], "fingerprint": 1, "speakers": "x"}', None),
}


class _Handler(http.server.BaseHTTPRequestHandler):
    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        status, ctype, body, sent = ANSWERS[self.path]
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body[:sent] if sent is not None else body)
        self.wfile.flush()
        self.close_connection = True

    do_GET = do_POST = _answer

    def log_message(self, *args) -> None:  # quiet
        pass


@pytest.fixture(scope="module")
def not_a_server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def clip():
    import soundfile as sf

    row = next(json.loads(line) for line in (SAMPLE / "manifest.jsonl").read_text().splitlines()
               if json.loads(line)["status"] == "ok")
    return SAMPLE / row["audio_path"], sf.read(SAMPLE / row["audio_path"], dtype="float32")[0]


@pytest.mark.parametrize("path,match", [
    ("/html", "not JSON: it starts '<!doctype html>"), ("/list", "a list, not a workbench answer"),
    ("/empty", "without 'text'"), ("/cut", "cut off"), ("/deep", "not JSON"),
    ("/proxy-error", r"\(502 Bad Gateway\) without a workbench answer"), ("/text-not-str", "without 'text'"),
])
def test_answers_that_are_not_the_clinic_server_give_a_plain_error(not_a_server, clip, path, match):
    from workbench.device_tuning.client import DeviceClient
    from workbench.device_tuning.compressor import default_compressor

    client = DeviceClient(not_a_server + path, default_compressor(), timeout_s=10)
    with pytest.raises(ServerError, match=match) as err:
        client.transcribe(clip[1])
    assert "serve-asr" in str(err.value) or "send it again" in str(err.value)
    if path in ("/empty", "/text-not-str"):
        with pytest.raises(ServerError, match="without 'fingerprint'"):
            client.server_info()


def test_transcribe_server_at_a_web_page_prints_one_plain_line(not_a_server, clip, capsys):
    from workbench.cli import main

    for path in ("/html", "/list", "/empty", "/cut"):
        rc = main(["transcribe", str(clip[0]), "--server", not_a_server + path])
        err = capsys.readouterr().err
        assert rc == 2 and "Traceback" not in err and "workbench transcribe:" in err, err
