"""bench/bench_device_server.py's measurement, on a Whisper split (issue 28), without Ray: its load
loop against the server's core behind a plain HTTP server, and the choice of compressor."""

from __future__ import annotations

import pytest
import torch

from workbench.device_tuning import Compressor, split_for
from workbench.device_tuning.client import DeviceClient, summary_line
from workbench.device_tuning.compressor import save_compressor
from workbench.errors import WorkbenchError
from workbench.models import load_base_model

pytest.importorskip("transformers")
pytest.importorskip("constriction")

from _models import hf_whisper_dir, noise_waves  # noqa: E402
from test_device_tuning_whisper_cli import _serve  # noqa: E402 - the server's core over plain HTTP

from bench.bench_device_server import _compressor, _differing, _load, _message  # noqa: E402


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("server")
    wdir = hf_whisper_dir(tmp / "whisper")
    backend = load_base_model(wdir).freeze()
    waves = noise_waves(2, seed=5, lo=8000, hi=24000)
    split = split_for(backend, 1)
    torch.manual_seed(0)
    comp = Compressor(split.width, dims=6, bits=3, stride=2, hidden=16).eval()
    comp.fit_tables([comp.encode(c.features[None])[0] for c in split.device_hidden(waves)])
    cpath = save_compressor(comp, tmp / "w.safetensors", split_layer=1, base_fingerprint=backend.fingerprint())
    return wdir, backend, waves, cpath


def test_the_load_loop_counts_answers_bytes_and_agreement(setup):
    from workbench.device_tuning.server import ServerCore

    wdir, _, waves, cpath = setup
    httpd, url = _serve(ServerCore(str(cpath), model=wdir))
    try:
        client = DeviceClient(url, cpath, model=wdir)
        messages = {(i, ""): (_message(client, w, ""), len(w) / 16000) for i, w in enumerate(waves)}
        loaded = _load(client, messages, 2, 1.0)
        alone = _load(client, messages, 1, 0.5)
        single = _load(client, {(0, ""): messages[0, ""]}, 1, 0.3)
    finally:
        httpd.shutdown()
    assert loaded["errors"] == 0 and loaded["requests"] >= 2
    assert loaded["batch_sizes"] == {1: loaded["requests"]}  # the plain server answers one at a time
    # the bytes are what transcribe sends (the client's own encoding, header included) and the
    # bit rate is what its summary line says
    sent = [client.split.encode([w], window=client.window_for(""))[0].to_bytes() for w in waves]
    assert [m for m, _ in messages.values()] == sent
    printed = summary_line(len(sent[0]), len(waves[0]) / 16000)
    assert f"({single['kbit_s']:.2f} kbit/s)" in printed
    assert single["bytes_per_request"] == len(sent[0])
    agree = _differing(loaded, alone)
    assert agree["compared"] >= 1 and agree["differing"] == 0
    assert "texts" not in loaded and "texts" not in alone  # not written to the result file


def test_a_refused_message_is_counted_with_the_servers_reason(setup, tmp_path):
    from workbench.device_tuning.server import ServerCore

    wdir, backend, waves, cpath = setup
    other = Compressor(split_for(backend, 1).width, dims=4, bits=2, stride=2, hidden=16).eval()
    opath = save_compressor(other, tmp_path / "other.safetensors", split_layer=1,
                            base_fingerprint=backend.fingerprint())
    httpd, url = _serve(ServerCore(str(cpath), model=wdir))
    try:
        stranger = DeviceClient(url, opath, model=wdir)  # a device with another compressor than the server's
        out = _load(stranger, {(0, ""): (_message(stranger, waves[0], ""), len(waves[0]) / 16000)}, 1, 0.5)
    finally:
        httpd.shutdown()
    assert out["requests"] == 0 and out["errors"] >= 1
    assert out["error_messages"] and "compressor" in out["error_messages"][0]
    assert out["kbit_s"] is None and out["p50_ms"] is None


def test_the_full_run_refuses_an_untrained_whisper_compressor(setup, tmp_path, monkeypatch):
    _, backend, _, _ = setup
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("workbench.device_tuning.compressor.SHIPPED_DIR", tmp_path / "shipped")  # none shipped
    with pytest.raises(WorkbenchError, match="train_whisper_compressor.py"):
        _compressor("whisper-tiny.en", backend, None, False, tmp_path)
    path, origin = _compressor("whisper-tiny.en", backend, None, True, tmp_path)  # --quick: plumbing only
    assert "UNTRAINED" in origin and path.exists()
    quick = tmp_path / "cache" / "compressors" / "quick" / "whisper-tiny.en-k2-16x3s2.safetensors"
    quick.parent.mkdir(parents=True)
    quick.write_bytes(path.read_bytes())  # what 'train_whisper_compressor.py --quick' leaves: --quick only
    assert _compressor("whisper-tiny.en", backend, None, True, tmp_path)[0] == quick
    with pytest.raises(WorkbenchError, match="No trained compressor"):
        _compressor("whisper-tiny.en", backend, None, False, tmp_path)
    trained = tmp_path / "cache" / "compressors" / "whisper-tiny.en-k1-6x3s2.safetensors"
    trained.write_bytes(path.read_bytes())  # a compressor for this base in the recipe's folder
    assert _compressor("whisper-tiny.en", backend, None, False, tmp_path) == (trained, f"trained, {trained.parent}")


def test_the_summary_says_which_split_compressor_and_bit_rate():
    from bench.summarize_device_tuning import server_line

    run = {"clients": 20, "seconds": 60.2, "requests": 1200, "errors": 0, "per_s": 19.9, "p50_ms": 950.0,
           "p95_ms": 1400.0, "batch_sizes": {"1": 3, "12": 90}}
    built_in = {"speakers": 9, "start_s": 13.0, "throughput_ratio": 2.0, "load": run,
                "one_at_a_time": {**run, "clients": 1, "per_s": 9.95, "p50_ms": 100.0}}
    line = server_line(built_in)  # a result written before --model: read as it was
    assert line.startswith("The server (`bench/bench_device_server.py`, Ray Serve") and "kbit/s" not in line
    whisper = {**built_in, "model": "whisper-tiny.en", "clips": {"folder": "real/real-allison"},
               "compressor": {"file": "whisper-tiny.en-k2-16x3s2.safetensors", "split_layer": 2},
               "load": {**run, "kbit_s": 1.234}, "answers_vs_one_at_a_time": {"compared": 1100, "differing": 3}}
    line = server_line(whisper)
    for part in ("--model whisper-tiny.en", "whisper-tiny.en-k2-16x3s2.safetensors at k=2", "real/real-allison",
                 "1,200 requests", "0 errors", "batches of 1-12", "1.23 kbit/s on the wire", "2.00x",
                 "3 of 1100 answers"):
        assert part in line, part
