"""``workbench transcribe --server URL [--model whisper-tiny.en]`` says what it sent (issue 28)."""

from __future__ import annotations

import http.server
import json
import re
import threading

import pytest
import soundfile as sf
import torch

from workbench import cli
from workbench.device_tuning import Compressor
from workbench.device_tuning.compressor import default_compressor, load_compressor, save_compressor
from workbench.device_tuning import split_for
from workbench.errors import WorkbenchError
from workbench.models import load_base_model

pytest.importorskip("constriction")

from _models import hf_whisper_dir, noise_waves  # noqa: E402

SUMMARY = re.compile(r"^sent (\d+) bytes for ([\d.]+) s of audio \(([\d.]+) kbit/s\) to (\S+)", re.M)


class _Core(http.server.BaseHTTPRequestHandler):
    """The server's core (:class:`ServerCore`) behind a plain HTTP server: Ray is not needed here."""

    core = None

    def _send(self, status: int, out: dict) -> None:
        body = json.dumps(out).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802
        self._send(200, self.core.info())

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        try:
            out = self.core.transcribe([self.core.parse(body)])[0]
        except WorkbenchError as err:
            return self._send(400, {"error": str(err)})
        return self._send(200, out)

    def log_message(self, *args):
        pass


def _serve(core):
    handler = type("Handler", (_Core,), {"core": core})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}/asr"


def _files(tmp_path, waves) -> list[str]:
    paths = []
    for i, w in enumerate(waves):
        paths.append(str(tmp_path / f"take{i}.wav"))
        sf.write(paths[-1], w, 16000, subtype="FLOAT")
    return paths


def _run(capsys, argv) -> tuple[int, str, str]:
    rc = cli.main(argv)
    out = capsys.readouterr()
    return rc, out.out, out.err


def _check_summary(err: str, url: str, messages: list[bytes], waves) -> None:
    found = SUMMARY.findall(err)
    assert len(found) == 1, err
    n, s, r, where = found[0]
    seconds = sum(len(w) for w in waves) / 16000
    assert int(n) == sum(len(m) for m in messages)  # every byte that left, headers included
    assert float(s) == pytest.approx(seconds, abs=0.005)
    assert float(r) == pytest.approx(8 * int(n) / seconds / 1000, abs=0.005)
    assert where == url


def test_whisper_split_transcribe_prints_what_it_sent(tmp_path, capsys):
    from workbench.device_tuning.server import ServerCore

    wdir = hf_whisper_dir(tmp_path / "whisper")
    backend = load_base_model(wdir).freeze()
    waves = noise_waves(2, seed=7, lo=8000, hi=24000)
    split = split_for(backend, 1)
    torch.manual_seed(0)
    split.compressor = Compressor(split.width, dims=6, bits=3, stride=2, hidden=16).eval()
    split.compressor.fit_tables([split.compressor.encode(it.features[None])[0] for it in split.device_hidden(waves)])
    cpath = save_compressor(split.compressor, tmp_path / "w.safetensors", split_layer=1,
                            base_fingerprint=backend.fingerprint())
    httpd, url = _serve(ServerCore(str(cpath), model=wdir))
    try:
        rc, out, err = _run(capsys, ["transcribe", *_files(tmp_path, waves), "--server", url, "--model", wdir,
                                     "--compressor", str(cpath)])
    finally:
        httpd.shutdown()
    assert rc == 0
    _check_summary(err, url, [m.to_bytes() for m in split.encode(waves)], waves)
    assert "ignored" not in err  # --model is the device part's model now, not ignored
    texts = split.transcribe(waves)
    assert all(t in out for t in texts if t)


def test_built_in_split_transcribe_prints_what_it_sent(tmp_path, capsys):
    from workbench.device_tuning.server import ServerCore

    cpath = default_compressor()
    waves = noise_waves(3, seed=8, lo=8000, hi=24000)
    httpd, url = _serve(ServerCore(str(cpath)))
    try:
        rc, _out, err = _run(capsys, ["transcribe", *_files(tmp_path, waves), "--server", url])
    finally:
        httpd.shutdown()
    assert rc == 0
    comp, meta = load_compressor(cpath)
    split = split_for(load_base_model("tiny").freeze(), meta["split_layer"], comp)
    _check_summary(err, url, [m.to_bytes() for m in split.encode(waves)], waves)


def test_a_whisper_device_with_the_built_in_compressor_gets_a_plain_message(tmp_path, capsys):
    wdir = hf_whisper_dir(tmp_path / "whisper")
    files = _files(tmp_path, noise_waves(1, seed=9))
    rc, _out, err = _run(capsys, ["transcribe", *files, "--server", "http://127.0.0.1:9/asr", "--model", wdir,
                                  "--compressor", str(default_compressor())])
    assert rc == 2 and "was trained for another base model" in err and "Traceback" not in err
    rc, _out, err = _run(capsys, ["transcribe", *files, "--server", "http://127.0.0.1:9/asr", "--model", wdir])
    assert rc == 2 and "No compressor for whisper is shipped" in err and "--compressor" in err
