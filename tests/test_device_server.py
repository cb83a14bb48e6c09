"""The clinic's server (Ray Serve) and the device client; the server side of Submodels."""

from __future__ import annotations

import concurrent.futures as cf
import json
import socket
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from workbench.adapters import LoRAConfig, SubmodelBank
from workbench.device_tuning import Compressor, SplitModel
from workbench.device_tuning.compressor import save_compressor
from workbench.errors import AdapterError, ServerError, WireFormatError, WorkbenchError
from workbench.models import load_base_model

pytest.importorskip("constriction")

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "sim-typical-espeak"


def _clips(n: int = 8) -> list[np.ndarray]:
    rows = [json.loads(line) for line in (SAMPLE / "manifest.jsonl").read_text().splitlines()]
    return [sf.read(SAMPLE / r["audio_path"], dtype="float32")[0] for r in rows if r["status"] == "ok"][:n]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A compressor file (untrained, tables counted on the sample) and a two-speaker bank file."""
    d = tmp_path_factory.mktemp("server")
    backend = load_base_model("tiny").freeze()
    torch.manual_seed(0)
    comp = Compressor(backend.hidden_size, dims=16, bits=3, stride=2)
    split = SplitModel(backend, 4, comp)
    comp.fit_tables([comp.encode(h[None])[0] for h, *_ in split.device_hidden(_clips())])
    cpath = save_compressor(comp, d / "comp.safetensors", split_layer=4, base_fingerprint=backend.fingerprint())
    bank = SubmodelBank(backend, LoRAConfig(top_layers=4), ["spk-a", "spk-b"])
    with torch.no_grad():
        for p in bank.adapted.trainable_parameters():
            p.add_(torch.randn_like(p) * 0.3)  # non-zero rows: a Submodel that changes the output
    bpath = bank.save(d / "bank.submodel")
    bank.adapted.remove()
    return cpath, bpath


def test_core_routes_each_speaker_to_its_row_in_one_batch(files):
    from workbench.device_tuning.server import ServerCore

    cpath, bpath = files
    core = ServerCore(str(cpath), [str(bpath)])
    clips = _clips(6)
    speakers = ["spk-a", "spk-b", "", "spk-a", "nobody", "spk-b"]
    msgs = [core.parse(m.to_bytes()) for w, s in zip(clips, speakers) for m in core.split.encode([w], speaker=s)]
    out = core.transcribe(msgs)
    assert [o["speaker"] for o in out] == speakers
    assert [o["submodel"] for o in out] == [True, True, False, True, False, True]
    hidden = core.split.restore(msgs)
    for i, s in enumerate(speakers):  # each answer equals that speaker alone
        if s in ("spk-a", "spk-b"):
            alone = core.split.transcribe_hidden([hidden[i]], adapted=core.bank.adapted, rows=core.bank.index([s]).tolist())
        else:
            with core.bank.adapted.disabled():
                alone = core.split.transcribe_hidden([hidden[i]])
        assert out[i]["text"] == alone[0]
    with core.bank.adapted.disabled():
        base = [core.split.transcribe_hidden([hidden[i]])[0] for i in (0, 1, 3, 5)]
    assert base != [out[i]["text"] for i in (0, 1, 3, 5)]  # the Submodels change what the server hears
    assert core.info()["speakers"] == ["spk-a", "spk-b"]


def test_core_refuses_bad_messages_and_unknown_speakers(files):
    from workbench.device_tuning.server import ServerCore

    cpath, bpath = files
    core = ServerCore(str(cpath), [str(bpath)], base_fallback=False)
    good = core.split.encode(_clips(1), speaker="spk-a")[0].to_bytes()
    with pytest.raises(WireFormatError):
        core.parse(good[:-3])
    with pytest.raises(WireFormatError):
        core.parse(b"GET / HTTP/1.1\r\n" * 5)
    other = SplitModel(core.split.backend, 4, Compressor(core.split.backend.hidden_size, 16, 3, 2))
    with pytest.raises(WireFormatError, match="compressor"):
        core.parse(other.encode(_clips(1))[0].to_bytes())
    with pytest.raises(AdapterError, match="nobody"):
        core.parse(core.split.encode(_clips(1), speaker="nobody")[0].to_bytes())
    assert core.authorized(None)
    core.token = "s3cret"
    assert not core.authorized(None) and not core.authorized("Bearer wrong") and core.authorized("Bearer s3cret")


def test_non_local_address_needs_a_token(files):
    from workbench.device_tuning.server import serve_asr

    with pytest.raises(WorkbenchError, match="token"):
        serve_asr(files[0], host="0.0.0.0", blocking=False)


def test_client_says_when_the_server_is_not_there(files):
    from workbench.device_tuning.client import DeviceClient

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = DeviceClient(f"http://127.0.0.1:{port}/asr", files[0], timeout_s=5)
    with pytest.raises(ServerError, match="could not be reached"):
        client.transcribe(_clips(1)[0])


def test_ray_serve_batches_concurrent_mixed_speakers(files):
    """A local Ray Serve instance on 127.0.0.1: concurrent requests form mixed batches; bad ones get 400."""
    pytest.importorskip("ray.serve")
    import urllib.request

    from ray import serve

    from workbench.device_tuning.client import DeviceClient
    from workbench.device_tuning.server import serve_asr

    cpath, bpath = files
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = serve_asr(cpath, [bpath], port=port, blocking=False, num_cpus=2, batch_wait_timeout_s=0.05)
    try:
        client = DeviceClient(url, cpath, timeout_s=60)
        assert client.server_info()["speakers"] == ["spk-a", "spk-b"]
        clips = _clips(8)
        speakers = ["spk-a", "spk-b", ""]
        with cf.ThreadPoolExecutor(16) as ex:
            res = list(ex.map(lambda i: client.transcribe(clips[i % 8], speaker=speakers[i % 3]), range(24)))
        assert len(res) == 24 and all("text" in r for r in res)
        assert max(r["batch_size"] for r in res) > 1
        assert all(r["bytes_sent"] < 1000 for r in res)
        req = urllib.request.Request(url, data=b"not a message" * 10, method="POST")
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=30)
        assert err.value.code == 400 and "magic" in json.loads(err.value.read())["error"]
    finally:
        import ray

        serve.shutdown()
        ray.shutdown()
