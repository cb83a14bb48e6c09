"""The clinic's server: Ray Serve holds every patient's Submodel and batches device requests.

One deployment (:class:`ASRServer`) owns the frozen server part of a split model, its compressor
and a :class:`~workbench.adapters.SubmodelBank`. Concurrent requests from different patients'
devices are gathered by Ray Serve's dynamic batching (``@serve.batch``) into one mixed-speaker
batch and run in one forward pass; each request's speaker id picks its row of the bank, and a
request without a speaker (or for a speaker the bank does not hold, when ``base_fallback``) is
served by the base model. Scaling out (replicas, machines) is Ray Serve's job.

HTTP: ``POST /asr`` with the wire message (:mod:`~workbench.device_tuning.wire`) as the body;
the answer is JSON ``{"text", "speaker", "submodel", "batch_size"}`` or ``{"error"}`` with status
400 (bad message), 401 (no token), 403 (wrong token), 404 (speaker not on this server), 408 (the
body took longer than ``body_timeout_s``), 413 (larger than any message for this compressor can
be), 500 (this message failed on the server; the others in its batch are answered). ``GET /asr``
returns what the server runs (model fingerprint, split, compressor, speakers) so a device can
check before sending.

Hostile input stays with its own request: each message is checked and its payload decoded
before it joins a batch, a message may claim at most ``MAX_TRAIN_S`` of speech and its payload
must be as long as that many frames need (:func:`~workbench.device_tuning.entropy.payload_bounds`),
and slow or oversized bodies are cut off before they are read in full.

It binds to 127.0.0.1 unless told otherwise; any other address needs a token, which clients send
as ``Authorization: Bearer <token>``. Ray's own services listen on 127.0.0.1 only. Needs
``pip install 'workbench[serve]'``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import hmac
import json
import logging
import os
import re
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from workbench._optional import require
from workbench.errors import AdapterError, WireFormatError, WorkbenchError

__all__ = ["BODY_TIMEOUT_S", "LOCAL_HOSTS", "ASRServer", "build_app", "check_port_free", "check_server_blocks",
           "serve_asr"]

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
ROUTE = "/asr"
BODY_TIMEOUT_S = 10.0  # seconds a request's body may take to arrive (a 3 kB message at 2G speed takes ~3 s)
READING_SLOTS = 192  # requests a replica accepts besides two full batches: bodies still arriving
_log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Parsed:
    """One checked device message and its decoded symbols ``(ceil(N/s), dims)``: what joins a batch."""

    message: Any  # a wire.Message
    symbols: np.ndarray

    @property
    def speaker(self) -> str:
        return self.message.speaker


class Refused(Exception):
    """A request answered with ``status`` and a plain ``message`` before it reaches a batch."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def check_server_blocks(top_layers: int, num_layers: int, split_layer: int, names: Sequence[str]) -> None:
    """Refuse Submodels with adapters on blocks the device runs: the server could apply only part of them.

    Blocks ``0 .. split_layer - 1`` run on the device with the base model; an adapter there
    (``top_layers`` 0 = every block, or more than ``num_layers - split_layer``) would be silently
    dropped, and every transcript would be worse than with the same Submodel on one computer.
    """
    first = 0 if top_layers == 0 else num_layers - top_layers
    if first >= split_layer:
        return
    files = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    k, last = split_layer, num_layers - 1
    raise AdapterError(
        f"{files} adapt encoder blocks {first}-{last}, but this server runs only blocks {k}-{last} (the device runs "
        f"blocks 0-{k - 1} with the base model), so the adapters on blocks {first}-{k - 1} would never be applied "
        f"and the transcripts would be worse than with the same Submodel on one computer. Serve Submodels trained "
        f"for the server: adapters on the top {num_layers - k} blocks only (top_layers={num_layers - k}; "
        "SplitModel.server_backend() trains them on what the server sees).")


def _check_compressor_base(compressor_path: str | Path, meta: dict[str, Any], backend: Any) -> None:
    """Refuse a compressor trained for another base model than ``backend``."""
    from workbench.device_tuning.compressor import check_compressor_base

    check_compressor_base(compressor_path, meta, backend)


def submodel_windows(submodels: Sequence[str | Path], default: str) -> dict[str, str]:
    """Speaker id -> the Whisper encoding window their Submodel was trained on, for those whose
    window is not ``default`` (the file's checked ``window``: :func:`workbench.adapters.io.read_submodel`)."""
    from workbench.adapters.io import read_submodel

    out: dict[str, str] = {}
    for path in submodels:
        meta = read_submodel(path)[1]
        window = meta.get("window", "auto")
        if window != default:
            out.update({sid: window for sid in meta["speaker_ids"]})
    return out


class ServerCore:
    """What the deployment does, without Ray: parse, check, batch-transcribe (also used by tests)."""

    def __init__(self, compressor_path: str, submodels: Sequence[str] = (), *, model: str = "tiny",
                 token: str | None = None, base_fallback: bool = True) -> None:
        from workbench.adapters import SubmodelBank
        from workbench.device_tuning.compressor import load_compressor
        from workbench.device_tuning import split_for
        from workbench.device_tuning.wire import HEADER_BYTES_V2, MAX_SPEAKER_BYTES
        from workbench.models import load_base_model

        backend = load_base_model(model).freeze()
        comp, meta = load_compressor(compressor_path)
        _check_compressor_base(compressor_path, meta, backend)
        self.split = split_for(backend, meta["split_layer"], comp)
        self.bank = SubmodelBank.from_files(backend, list(submodels)) if submodels else None
        if self.bank is not None:
            check_server_blocks(self.bank.adapted.config.top_layers, backend.num_layers, meta["split_layer"],
                                [Path(p).name for p in submodels])
            if hasattr(self.split, "speaker_windows"):  # a Whisper split: each Submodel's own window
                self.split.speaker_windows = submodel_windows(submodels, backend.window)
        self.token = token
        self.base_fallback = base_fallback
        self.max_frames = self.split.max_frames
        most = self.split.max_payload_bytes(-(-self.max_frames // comp.config.stride))
        self.max_body_bytes = HEADER_BYTES_V2 + MAX_SPEAKER_BYTES + most  # the largest message it can accept

    def info(self) -> dict[str, Any]:
        c = self.split.compressor
        return {"model": self.split.backend.name, "fingerprint": self.split.fingerprint.hex(),
                "split_layer": self.split.split_layer, "compressor": c.identity().hex(),
                "dims": c.config.dims, "bits": c.config.bits, "stride": c.config.stride,
                "speakers": list(self.bank.speaker_ids) if self.bank else [],
                "max_frames": self.max_frames, "max_message_bytes": self.max_body_bytes,
                **({"window": self.split.window_for(""), "windows": dict(self.split.speaker_windows)}
                   if hasattr(self.split, "speaker_windows") else {})}

    def auth_error(self, header: str | None) -> Refused | None:
        """None when the request may pass; else 401 (no token sent) or 403 (a wrong one)."""
        if self.token is None:
            return None
        if not header:
            return Refused(401, "This server needs a token: send 'Authorization: Bearer <token>' "
                                "(transcribe --token, or WORKBENCH_SERVER_TOKEN).")
        if not hmac.compare_digest(header.encode("utf-8", "replace"), f"Bearer {self.token}".encode()):
            return Refused(403, "The token sent is not this server's: check --token or WORKBENCH_SERVER_TOKEN "
                                "(ask whoever started the server).")
        return None

    def authorized(self, header: str | None) -> bool:
        return self.auth_error(header) is None

    def parse(self, body: bytes) -> Parsed:
        """Wire bytes -> a checked message with its decoded symbols, ready to join a batch.

        Raises:
            WireFormatError: a damaged, made-up or mismatched message (400).
            AdapterError: a speaker this server holds no Submodel for, without ``base_fallback`` (404).
        """
        from workbench.device_tuning.wire import Message

        msg = Message.from_bytes(body)
        symbols = self.split.symbols(msg)
        if msg.speaker and not self.base_fallback and (self.bank is None or msg.speaker not in self.bank.speaker_ids):
            raise AdapterError(f"This server holds no Submodel for speaker {msg.speaker!r}.")
        return Parsed(msg, symbols)

    def transcribe_each(self, items: list[Parsed]) -> list[dict[str, Any]]:
        """:meth:`transcribe`, but a failure fails only the item that causes it: the batch is run
        again one item at a time, and the failing one gets ``{"error", "status": 500}``."""
        try:
            return self.transcribe(items)
        except Exception as err:  # noqa: BLE001 - whatever it is, the other patients still get an answer
            if len(items) > 1:
                return [self.transcribe_each([it])[0] for it in items]
            _log.exception("transcribing one message failed")
            return [{"error": f"The server could not transcribe this message ({type(err).__name__}); the others "
                              "were answered. Send it again; if it fails again, tell the clinic.", "status": 500}]

    def transcribe(self, items: list[Parsed]) -> list[dict[str, Any]]:
        """One mixed-speaker forward pass for the bank's speakers, one for the rest (base model)."""
        messages = [it.message for it in items]
        hidden = [self.split.hidden(it.symbols, it.message) for it in items]
        known = set(self.bank.speaker_ids) if self.bank else set()
        texts: list[str] = [""] * len(messages)
        mine = [i for i, m in enumerate(messages) if m.speaker in known]
        rest = [i for i in range(len(messages)) if i not in set(mine)]
        if mine:
            rows = self.bank.index([messages[i].speaker for i in mine]).tolist()
            for i, t in zip(mine, self.split.transcribe_hidden([hidden[i] for i in mine],
                                                               samples=[messages[i].samples for i in mine],
                                                               adapted=self.bank.adapted, rows=rows)):
                texts[i] = t
        if rest:
            ctx = self.bank.adapted.disabled() if self.bank else contextlib.nullcontext()
            with ctx:  # the base model: the bank's adapters are switched off for this pass
                for i, t in zip(rest, self.split.transcribe_hidden([hidden[i] for i in rest],
                                                                   samples=[messages[i].samples for i in rest])):
                    texts[i] = t
        return [{"text": t, "speaker": m.speaker, "submodel": m.speaker in known, "batch_size": len(messages)}
                for t, m in zip(texts, messages)]


async def _read_body(request, limit: int, timeout_s: float) -> bytes:
    """The request's body, refused (:class:`Refused`) when it says or turns out to be longer than
    ``limit`` bytes (413, before it is read), or takes longer than ``timeout_s`` to arrive (408)."""
    from workbench.models.base import MAX_TRAIN_S

    too_big = (f"The request is larger than any message this server accepts ({limit:,} bytes): send one "
               f"utterance (at most {MAX_TRAIN_S:.0f} s) per request, made by 'workbench transcribe --server'.")
    length = request.headers.get("content-length")
    if length is not None:
        if not length.strip().isdigit():
            raise Refused(400, "The request's Content-Length is not a number.")
        if len(length.strip()) > 12 or int(length) > limit:
            raise Refused(413, too_big)

    async def read() -> bytes:
        data = bytearray()
        async for chunk in request.stream():
            data += chunk
            if len(data) > limit:  # no (or a lying) Content-Length: stop reading here
                raise Refused(413, too_big)
        return bytes(data)

    try:
        return await asyncio.wait_for(read(), timeout_s)
    except asyncio.TimeoutError:
        raise Refused(408, f"The message took longer than {timeout_s:.0f} s to arrive: the connection is too slow "
                           "or stalled. Send it again.") from None


def _replica_grpc_on_loopback() -> None:
    """Run in the replica, before Ray Serve starts its per-replica gRPC server for calls between
    deployments: Ray Serve 2.60 binds it to every interface (``"[::]:0"`` in
    ``ray/serve/_private/replica.py``, after the deployment's constructor). Ray is local here
    (its node address is 127.0.0.1), so that one address is rewritten to 127.0.0.1. A Ray without
    that call is left as it is; the server test checks every Ray socket listens on 127.0.0.1."""
    with contextlib.suppress(ImportError, AttributeError):
        from ray.serve._private import replica

        add = replica.add_port_to_grpc_server
        if getattr(add, "loopback_only", False):
            return

        def add_on_loopback(server, address: str):
            if address.startswith("[::]:") or address.startswith("0.0.0.0:"):
                address = "127.0.0.1:" + address.rsplit(":", 1)[1]
            return add(server, address)

        add_on_loopback.loopback_only = True
        replica.add_port_to_grpc_server = add_on_loopback


def _deployment_class(max_batch_size: int, batch_wait_timeout_s: float):
    serve = require("ray.serve", extra="serve", purpose="run the clinic's server")
    from starlette.requests import Request
    from starlette.responses import JSONResponse

    # max_ongoing_requests: Ray Serve's default (5) caps how many requests reach the replica at once,
    # and with it every batch at 5. A request holds its slot while its body arrives, so two full
    # batches plus READING_SLOTS: slow senders (cut off after body_timeout_s) cannot take every slot
    @serve.deployment(ray_actor_options={"num_cpus": 1}, max_ongoing_requests=2 * max_batch_size + READING_SLOTS)
    class ASRServer:
        def __init__(self, compressor_path: str, submodels: Sequence[str], model: str, token: str | None,
                     base_fallback: bool, body_timeout_s: float) -> None:
            _replica_grpc_on_loopback()
            self.core = ServerCore(compressor_path, submodels, model=model, token=token, base_fallback=base_fallback)
            self.body_timeout_s = body_timeout_s

        @serve.batch(max_batch_size=max_batch_size, batch_wait_timeout_s=batch_wait_timeout_s)
        async def _batch(self, items: list) -> list[dict[str, Any]]:
            return self.core.transcribe_each(items)

        async def __call__(self, request: Request) -> JSONResponse:
            try:
                denied = self.core.auth_error(request.headers.get("authorization"))
                if denied is not None:
                    raise denied
                if request.method == "GET":
                    return JSONResponse(self.core.info())
                if request.method != "POST":
                    raise Refused(405, "Send a device message with POST (or GET for what this server runs).")
                body = await _read_body(request, self.core.max_body_bytes, self.body_timeout_s)
                try:
                    item = self.core.parse(body)
                except WireFormatError as err:
                    raise Refused(400, str(err)) from None
                except AdapterError as err:
                    raise Refused(404, str(err)) from None
            except Refused as err:
                return JSONResponse({"error": str(err)}, status_code=err.status)
            out = await self._batch(item)
            return JSONResponse(out, status_code=out.pop("status", 200))

    return ASRServer


ASRServer = None  # the Ray Serve deployment class, made by build_app (Ray is optional)


def build_app(compressor_path: str | Path, submodels: Sequence[str | Path] = (), *, model: str = "tiny",
              token: str | None = None, base_fallback: bool = True, max_batch_size: int = 32,
              batch_wait_timeout_s: float = 0.02, body_timeout_s: float = BODY_TIMEOUT_S):
    """The bound Ray Serve application (for ``serve.run``)."""
    cls = _deployment_class(max_batch_size, batch_wait_timeout_s)
    return cls.bind(str(compressor_path), [str(s) for s in submodels], model, token, base_fallback, body_timeout_s)


def check_port_free(host: str, port: int) -> None:
    """Refuse a port another program listens on. Ray's proxy binds with SO_REUSEPORT, so a second
    server on the same port would share it silently (half the requests to each); this bind test
    does not set SO_REUSEPORT, so any listener there makes it fail.

    Raises:
        WorkbenchError: the port is taken or not a port.
    """
    try:
        if not 0 < int(port) < 65536:
            raise OverflowError("not a port number")
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, OverflowError, UnicodeError) as err:
        raise WorkbenchError(f"The server cannot listen on {host}:{port} ({err}): give an address of this "
                             "computer (--host) and a port from 1024 to 65535 (--port).") from None
    family, _, _, _, addr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # old closed connections do not count
        try:
            s.bind(addr)
        except OSError as err:
            if err.errno != errno.EADDRINUSE:
                raise WorkbenchError(f"The server cannot listen on {host}:{port} ({err.strerror}): give an address "
                                     "of this computer (--host) and a port from 1024 to 65535 (--port).") from None
            raise WorkbenchError(
                f"Port {port} on {host} is in use ({err.strerror}): another program, perhaps another "
                f"'workbench serve-asr', listens there. Stop it, or start this server on a free port (--port)."
            ) from None


def _check_files(compressor_path: str | Path, submodels: Sequence[str | Path], *, model: str = "tiny") -> None:
    """Before Ray starts: the compressor and every Submodel file load, were made for ``model``, and
    the Submodels adapt only the blocks the server runs (:func:`check_server_blocks`, as the
    deployment checks them), so a refusal is one plain message in a second or two, not Ray's
    traceback after half a minute. Loads the base model once (the built-in one in ~0.1 s)."""
    from workbench.adapters.adapted import fitting_config
    from workbench.adapters.io import read_submodel
    from workbench.device_tuning.compressor import load_compressor
    from workbench.models import load_base_model

    _, meta = load_compressor(compressor_path)
    files = []
    for path in submodels:
        tensors, sub = read_submodel(path)
        if sub["base_fingerprint"] != meta["base_fingerprint"]:
            raise AdapterError(
                f"{Path(path).name} was trained on base model {sub['base_model']!r} (fingerprint "
                f"{sub['base_fingerprint'][:12]}), but the compressor {Path(compressor_path).name} is for "
                f"fingerprint {meta['base_fingerprint'][:12]}: serve Submodels trained on the compressor's base model.")
        files.append((Path(path).name, tensors, sub))
    backend = load_base_model(model)
    _check_compressor_base(compressor_path, meta, backend)
    tops: dict[int, list[str]] = {}
    for name, tensors, sub in files:  # the settings checked against the weights, as the deployment loads them
        tops.setdefault(fitting_config(backend, sub, tensors, name).top_layers, []).append(name)
    for top, names in sorted(tops.items()):
        check_server_blocks(top, backend.num_layers, meta["split_layer"], names)


_WORKBENCH_ERROR = re.compile(r"workbench\.errors\.\w+: (.+)")


def _local_only_ray() -> None:
    """Make the Ray started next listen on 127.0.0.1 only (its GCS, raylet and workers otherwise
    listen on every interface). Ray does this itself where clusters are off (Windows, macOS):
    ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` for the processes it starts, and the same switch in
    this process's already imported constants."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    with contextlib.suppress(ImportError, AttributeError):
        from ray._private import ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = False


#: Serve's wait for its HTTP proxy to say it is ready, seconds, for the Ray started here (Serve's own
#: 5 s, three times, then it kills the proxy; importing the proxy's web stack took longer than that
#: on 2 cores that other programs shared). A value the user set in the environment is kept.
PROXY_READY_CHECK_TIMEOUT_S = 20.0


def _start_ray(ray, num_cpus: int | None, attempts: int = 3) -> None:
    """``ray.init`` of a new Ray on this machine (127.0.0.1 only), tried again when a busy CPU makes
    Ray's 30 s start-up wait run out; its processes wait :data:`PROXY_READY_CHECK_TIMEOUT_S` for
    Serve's HTTP proxy."""
    os.environ.setdefault("RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S", f"{PROXY_READY_CHECK_TIMEOUT_S:g}")
    for attempt in range(attempts):
        if ray.is_initialized():
            return
        _local_only_ray()
        try:
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
            return
        except Exception as err:  # noqa: BLE001 - Ray raises a bare Exception for a slow start-up
            ray.shutdown()
            if "timed out during startup" not in str(err) or attempt == attempts - 1:
                raise WorkbenchError(
                    f"Ray could not start on this machine ({err}). If other programs keep the CPU busy, close "
                    "them and start the server again.") from err


def _start_proxy(serve, host: str, port: int, attempts: int = 3) -> None:
    """``serve.start``: Serve's HTTP proxy on ``host:port``, started again when it was not ready in
    Serve's own 60 s wait (on a busy CPU, Ray kills the half-started proxy and raises
    ``ActorDiedError``; the next try finds Ray's files in the page cache and starts faster)."""
    for attempt in range(attempts):
        try:
            serve.start(http_options={"host": host, "port": port})
            return
        except Exception as err:  # noqa: BLE001 - Ray raises several kinds for a proxy that did not come up
            serve.shutdown()
            if attempt == attempts - 1:
                raise WorkbenchError(
                    f"The server's web front end did not start after {attempts} tries "
                    f"({type(err).__name__}: {str(err).strip().splitlines()[0][:200] if str(err).strip() else ''}). "
                    "This happens when other programs keep the CPU busy: close them and start the server "
                    "again.") from err


def serve_asr(compressor_path: str | Path, submodels: Sequence[str | Path] = (), *, host: str = "127.0.0.1",
              port: int = 8200, token: str | None = None, model: str = "tiny", num_cpus: int | None = None,
              blocking: bool = True, **options: Any) -> str:
    """Start Ray (local), Serve's HTTP proxy on ``host:port`` and the deployment; returns the URL.

    What can be checked without Ray is checked first, in a second or two: the token rule, the
    compressor and Submodel files (and that the server can apply every adapter in them), and that
    the port is free.

    Raises:
        WorkbenchError: a non-local ``host`` without a token; a missing or damaged file; a busy
            port; a deployment that fails to start (with the reason, not Ray's traceback).
    """
    if host not in LOCAL_HOSTS and not token:
        raise WorkbenchError(
            f"The server would listen on {host}, where other machines can reach it: give it a token "
            "(--token or WORKBENCH_SERVER_TOKEN), or keep the default 127.0.0.1.")
    _check_files(compressor_path, submodels, model=model)
    check_port_free(host, port)
    ray = require("ray", extra="serve", purpose="run the clinic's server")
    serve = require("ray.serve", extra="serve", purpose="run the clinic's server")
    _start_ray(ray, num_cpus)
    _start_proxy(serve, host, port)
    try:
        serve.run(build_app(compressor_path, submodels, model=model, token=token, **options), name="workbench-asr",
                  route_prefix=ROUTE, blocking=False)
    except Exception as err:  # noqa: BLE001 - Ray wraps the deployment's own error in its traceback text
        serve.shutdown()
        found = _WORKBENCH_ERROR.findall(str(err))
        raise WorkbenchError(found[-1] if found else (
            f"The server did not start ({str(err).strip().splitlines()[0][:300]}). Check the files given to "
            "serve-asr, and that the machine has free memory.")) from None
    url = f"http://{host}:{port}{ROUTE}"
    if blocking:  # pragma: no cover - the CLI's foreground mode
        import time

        print(f"Serving {json.dumps(str(compressor_path))} at {url} (Ctrl-C stops it)", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            serve.shutdown()
    return url
