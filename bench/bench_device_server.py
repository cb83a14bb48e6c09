"""The clinic's server under load: concurrent device clients with mixed speakers, on 127.0.0.1.

A local Ray Serve instance (``workbench.device_tuning.server``) with a compressor and a bank of 8
speakers (random LoRA rows: the cost of a Submodel, not its accuracy). ``--clients`` threads each
send one recording after another (a device that waits for its answer) for ``--seconds``; then one
client alone for the same time, for the throughput of one request at a time. Reports requests
served, p50/p95 latency, the batch sizes Ray Serve formed, errors (with the first few messages),
the wire's bit rate (the bytes sent, headers included, per second of audio), words per answer,
and how many answers under load differ from the same message's answer one at a time. Nothing
leaves the machine. ``--model`` picks the split:

- ``tiny`` (default): the built-in model, its shipped compressor, recordings of sim-typical-espeak;
  writes ``docs/bench/device_server_cpu.json``.
- ``whisper-tiny.en`` (issue 28): the Whisper split, LoRA in the server's encoder layers and the
  decoder, recordings of the real voice in ``sample_data/real``; writes
  ``device_server_whisper_cpu.json``. The compressor is ``--compressor``, else the shipped one, else
  the first trained by ``recipes/train_whisper_compressor.py`` in its output folder. Whisper decodes
  token by token, so its cost follows what it hears: an untrained compressor makes it decode noise,
  and the full run refuses one; ``--quick`` falls back to the ``--quick`` recipe's or an untrained
  one (plumbing only: its latencies mean nothing).

    OMP_NUM_THREADS=2 python -m bench.bench_device_server --model whisper-tiny.en
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import socket
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import torch

from bench._common import machine, write_result

REPO = Path(__file__).resolve().parents[1]
MODELS = {  # --model -> recordings, and the spread of the random LoRA rows (Whisper's decoder turns to
    # babble at 0.05: its answers must stay transcripts, as a trained Submodel's do, to cost what they cost)
    "tiny": {"clips": "sim-typical-espeak", "lora_std": 0.05, "result": "device_server"},
    "whisper-tiny.en": {"clips": "real/real-allison", "lora_std": 0.01, "result": "device_server_whisper"},
}
N_CLIPS, N_SPEAKERS = 12, 8


def _message(client, wav, speaker: str) -> bytes:
    """The bytes ``client.transcribe`` would send for ``wav`` (a Whisper split encodes the window the
    server names for ``speaker``), made once, outside the timing: devices do this part."""
    if hasattr(client.split, "window_for"):
        return client.split.encode([wav], speaker=speaker, window=client.window_for(speaker))[0].to_bytes()
    return client.split.encode([wav], speaker=speaker)[0].to_bytes()


def _load(client, messages: dict[Any, tuple[bytes, float]], clients: int, seconds: float) -> dict[str, Any]:
    """``clients`` threads send ``messages`` (key -> (wire bytes, seconds of audio)) one after another
    for ``seconds``; latency quantiles, batch sizes, errors, kbit/s and each key's answers."""
    from workbench.errors import ServerError

    keys = list(messages)
    stop = time.perf_counter() + seconds

    def device(k: int) -> dict[str, Any]:
        got: dict[str, Any] = {"lat": [], "batches": Counter(), "errors": [], "bytes": 0, "audio_s": 0.0,
                               "words": 0, "texts": []}
        j = k
        while time.perf_counter() < stop:
            key = keys[j % len(keys)]
            j += clients
            t0 = time.perf_counter()
            try:
                out = client._request(messages[key][0])
            except ServerError as err:
                got["errors"].append(str(err))
                continue
            got["lat"].append(time.perf_counter() - t0)
            got["batches"][out.get("batch_size", 1)] += 1
            got["bytes"] += len(messages[key][0])
            got["audio_s"] += messages[key][1]
            got["words"] += len(out["text"].split())
            got["texts"].append((key, out["text"]))
        return got

    t0 = time.perf_counter()
    with cf.ThreadPoolExecutor(clients) as ex:
        parts = list(ex.map(device, range(clients)))
    wall = time.perf_counter() - t0
    lat = [x for p in parts for x in p["lat"]]
    errors = [e for p in parts for e in p["errors"]]
    n, sent, audio = len(lat), sum(p["bytes"] for p in parts), sum(p["audio_s"] for p in parts)
    q = statistics.quantiles(lat, n=20) if n > 1 else [float("nan")] * 19
    return {"clients": clients, "seconds": wall, "requests": n, "errors": len(errors),
            "error_messages": sorted(set(errors))[:3], "per_s": n / wall,
            "p50_ms": 1000 * statistics.median(lat) if lat else None, "p95_ms": 1000 * q[18],
            "batch_sizes": dict(sorted(sum((p["batches"] for p in parts), Counter()).items())),
            "bytes_per_request": statistics.mean(len(m) for m, _ in messages.values()),
            "kbit_s": 8 * sent / audio / 1000 if audio else None,
            "words_per_answer": sum(p["words"] for p in parts) / n if n else None,
            "texts": [t for p in parts for t in p["texts"]]}


def _differing(loaded: dict[str, Any], alone: dict[str, Any]) -> dict[str, int]:
    """Answers under load whose text is not the same message's answer one at a time (batching and
    mixing speakers must not change a transcript); only messages both runs reached are compared."""
    ref = dict(reversed(alone.pop("texts")))  # each message's first answer alone
    texts = loaded.pop("texts")
    both = [(k, t) for k, t in texts if k in ref]
    return {"compared": len(both), "differing": sum(t != ref[k] for k, t in both)}


def _compressor(model: str, backend, given: str | None, quick: bool, tmp: Path) -> tuple[Path, str]:
    """The compressor file to serve and where it came from (see the module docstring)."""
    from workbench.constants import cache_dir
    from workbench.device_tuning.compressor import default_compressor, load_compressor
    from workbench.errors import WorkbenchError

    if given:
        return Path(given), "given (--compressor)"
    try:
        return default_compressor(model), "shipped"
    except WorkbenchError:
        pass
    folders = {cache_dir() / "compressors": "trained", cache_dir() / "compressors" / "quick":
               "the --quick recipe's (plumbing only)"}
    for folder, origin in list(folders.items())[:2 if quick else 1]:
        for path in sorted(folder.glob(f"{model}-k*-*.safetensors"), key=lambda f: ("-joint" in f.stem, f.name)):
            if ".ckpt." in path.name or ".heads." in path.name:
                continue
            if load_compressor(path)[1]["base_fingerprint"] == backend.fingerprint():
                return path, f"{origin}, {folder}"
    if not quick:
        raise WorkbenchError(
            f"No trained compressor for {model} is shipped or in {cache_dir() / 'compressors'}: train one with "
            "'python recipes/train_whisper_compressor.py', or pass one with --compressor. (An untrained one makes "
            "Whisper decode noise, whose cost is not a transcript's.)")
    from workbench.device_tuning import Compressor, split_for
    from workbench.device_tuning.compressor import save_compressor

    k = 2 if backend.is_seq2seq else 4
    torch.manual_seed(0)
    comp = Compressor(split_for(backend, k).width, 16, 3, 2).eval()
    return save_compressor(comp, tmp / f"UNTRAINED-{model}-k{k}.safetensors", split_layer=k,
                           base_fingerprint=backend.fingerprint()), "UNTRAINED (plumbing only)"


def run(clients: int, seconds: float, *, model: str = "tiny", compressor: str | None = None,
        quick: bool = False) -> dict[str, Any]:
    import ray
    from ray import serve

    from workbench.adapters import LoRAConfig, SubmodelBank
    from workbench.corpus import SpeakerCorpus
    from workbench.device_tuning.client import DeviceClient
    from workbench.device_tuning.compressor import load_compressor
    from workbench.device_tuning.server import serve_asr
    from workbench.models import load_base_model

    spec = MODELS[model]
    backend = load_base_model(model).freeze()
    tmp = Path(tempfile.mkdtemp(prefix="bench-server-"))
    cpath, origin = _compressor(model, backend, compressor, quick, tmp)
    k = load_compressor(cpath)[1]["split_layer"]
    speakers = [f"spk-{i}" for i in range(N_SPEAKERS)]
    # the server's blocks only (and, on Whisper, the decoder): what serve-asr accepts
    config = LoRAConfig(top_layers=backend.num_layers - k, decoder=True) if backend.is_seq2seq \
        else LoRAConfig(top_layers=4)
    bank = SubmodelBank(backend, config, speakers)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in bank.adapted.trainable_parameters():
            p.add_(torch.randn_like(p) * spec["lora_std"])
    bpath = bank.save(tmp / "bank.safetensors")
    bank.adapted.remove()
    corpus = SpeakerCorpus.open(REPO / "sample_data" / spec["clips"])
    clips = [corpus.load_audio(u) for u in corpus.utterances()[:N_CLIPS]]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.perf_counter()
    url = serve_asr(cpath, [bpath], model=model, port=port, blocking=False, batch_wait_timeout_s=0.02)
    start_s = time.perf_counter() - t0
    try:
        client = DeviceClient(url, cpath, model=model, timeout_s=120)
        rate = backend.sample_rate
        messages = {(i, s): (_message(client, w, s), len(w) / rate)
                    for i, w in enumerate(clips) for s in speakers + [""]}  # "": the base model
        _load(client, {key: messages[key] for key in list(messages)[:2]}, 1, 3)  # warm-up
        loaded = _load(client, messages, clients, seconds)
        alone = _load(client, messages, 1, seconds)
    finally:
        serve.shutdown()
        ray.shutdown()
    return {"machine": machine("cpu"), "model": model, "quick": quick, "start_s": start_s,
            "compressor": {"file": cpath.name, "origin": origin, "split_layer": k},
            "clips": {"folder": spec["clips"], "n": len(clips), "audio_s": sum(len(w) for w in clips) / rate},
            "lora_std": spec["lora_std"], "load": loaded, "one_at_a_time": alone,
            "answers_vs_one_at_a_time": _differing(loaded, alone),
            "throughput_ratio": loaded["per_s"] / alone["per_s"] if alone["per_s"] else None,
            "speakers": len(speakers) + 1}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=sorted(MODELS), default="tiny", help="the split to serve (default: tiny)")
    p.add_argument("--compressor", help="the compressor file to serve (default: see the module docstring)")
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--quick", action="store_true", help="4 clients for 5 s")
    p.add_argument("--device", default="cpu")
    a = p.parse_args(argv)
    clients, seconds = (4, 5.0) if a.quick else (a.clients, a.seconds)
    result = run(clients, seconds, model=a.model, compressor=a.compressor, quick=a.quick)
    path = write_result(MODELS[a.model]["result"] + "_cpu" + ("_quick" if a.quick else ""), result)
    c = result["compressor"]
    print(f"{a.model}, compressor {c['file']} ({c['origin']}, k={c['split_layer']})")
    for k in ("load", "one_at_a_time"):
        r = result[k]
        print(f"{k}: {r['requests']} requests in {r['seconds']:.0f} s ({r['per_s']:.1f}/s), p50 {r['p50_ms'] or 0:.0f} ms, "
              f"p95 {r['p95_ms']:.0f} ms, errors {r['errors']}, {r['kbit_s'] or 0:.2f} kbit/s on the wire, "
              f"{r['words_per_answer'] or 0:.1f} words per answer, batch sizes {r['batch_sizes']}")
        for e in r["error_messages"]:
            print(f"   error: {e}")
    d = result["answers_vs_one_at_a_time"]
    print(f"throughput {result['throughput_ratio'] or 0:.2f}x one request at a time; {d['differing']} of "
          f"{d['compared']} answers under load differ from one at a time; Ray Serve started in "
          f"{result['start_s']:.0f} s; wrote {path}")
    return result


if __name__ == "__main__":
    main()
