"""The clinic's server: Ray Serve holds every patient's Submodel and batches device requests.

One deployment (:class:`ASRServer`) owns the frozen server part of a split model, its compressor
and a :class:`~workbench.adapters.SubmodelBank`. Concurrent requests from different patients'
devices are gathered by Ray Serve's dynamic batching (``@serve.batch``) into one mixed-speaker
batch and run in one forward pass; each request's speaker id picks its row of the bank, and a
request without a speaker (or for a speaker the bank does not hold, when ``base_fallback``) is
served by the base model. Scaling out (replicas, machines) is Ray Serve's job.

HTTP: ``POST /asr`` with the wire message (:mod:`~workbench.device_tuning.wire`) as the body;
the answer is JSON ``{"text", "speaker", "batch_size"}`` or ``{"error"}`` with status 400 (bad
message), 401 (token), 404 (speaker not on this server). ``GET /asr`` returns what the server
runs (model fingerprint, split, compressor, speakers) so a device can check before sending.

It binds to 127.0.0.1 unless told otherwise; any other address needs a token, which clients send
as ``Authorization: Bearer <token>``. Needs ``pip install 'workbench[serve]'``.
"""

from __future__ import annotations

import contextlib
import hmac
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from workbench._optional import require
from workbench.errors import AdapterError, WireFormatError, WorkbenchError

__all__ = ["LOCAL_HOSTS", "ASRServer", "build_app", "check_server_blocks", "serve_asr"]

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
ROUTE = "/asr"


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


class ServerCore:
    """What the deployment does, without Ray: parse, check, batch-transcribe (also used by tests)."""

    def __init__(self, compressor_path: str, submodels: Sequence[str] = (), *, model: str = "tiny",
                 token: str | None = None, base_fallback: bool = True) -> None:
        from workbench.adapters import SubmodelBank
        from workbench.device_tuning.compressor import load_compressor
        from workbench.device_tuning.split import SplitModel
        from workbench.models import load_base_model

        backend = load_base_model(model).freeze()
        comp, meta = load_compressor(compressor_path)
        if meta["base_fingerprint"] != backend.fingerprint():
            raise WireFormatError(
                f"The compressor {Path(compressor_path).name} was trained for another base model than {backend.name}: "
                "train one for this model (recipes/train_compressor.py).")
        self.split = SplitModel(backend, meta["split_layer"], comp)
        self.bank = SubmodelBank.from_files(backend, list(submodels)) if submodels else None
        if self.bank is not None:
            check_server_blocks(self.bank.adapted.config.top_layers, backend.num_layers, meta["split_layer"],
                                [Path(p).name for p in submodels])
        self.token = token
        self.base_fallback = base_fallback

    def info(self) -> dict[str, Any]:
        c = self.split.compressor
        return {"model": self.split.backend.name, "fingerprint": self.split.fingerprint.hex(),
                "split_layer": self.split.split_layer, "compressor": c.identity().hex(),
                "dims": c.config.dims, "bits": c.config.bits, "stride": c.config.stride,
                "speakers": list(self.bank.speaker_ids) if self.bank else []}

    def authorized(self, header: str | None) -> bool:
        if self.token is None:
            return True
        want = f"Bearer {self.token}"
        return header is not None and hmac.compare_digest(header.encode(), want.encode())

    def parse(self, body: bytes):
        """Wire bytes -> a checked message (raises :class:`WireFormatError`, :class:`AdapterError`)."""
        from workbench.device_tuning.wire import Message

        msg = Message.from_bytes(body)
        self.split.check(msg)
        if msg.speaker and not self.base_fallback and (self.bank is None or msg.speaker not in self.bank.speaker_ids):
            raise AdapterError(f"This server holds no Submodel for speaker {msg.speaker!r}.")
        return msg

    def transcribe(self, messages: list) -> list[dict[str, Any]]:
        """One mixed-speaker forward pass for the bank's speakers, one for the rest (base model)."""
        hidden = self.split.restore(messages)
        known = set(self.bank.speaker_ids) if self.bank else set()
        texts: list[str] = [""] * len(messages)
        mine = [i for i, m in enumerate(messages) if m.speaker in known]
        rest = [i for i in range(len(messages)) if i not in set(mine)]
        if mine:
            rows = self.bank.index([messages[i].speaker for i in mine]).tolist()
            for i, t in zip(mine, self.split.transcribe_hidden([hidden[i] for i in mine],
                                                               adapted=self.bank.adapted, rows=rows)):
                texts[i] = t
        if rest:
            ctx = self.bank.adapted.disabled() if self.bank else contextlib.nullcontext()
            with ctx:  # the base model: the bank's adapters are switched off for this pass
                for i, t in zip(rest, self.split.transcribe_hidden([hidden[i] for i in rest])):
                    texts[i] = t
        return [{"text": t, "speaker": m.speaker, "submodel": m.speaker in known, "batch_size": len(messages)}
                for t, m in zip(texts, messages)]


def _deployment_class(max_batch_size: int, batch_wait_timeout_s: float):
    serve = require("ray.serve", extra="serve", purpose="run the clinic's server")
    from starlette.requests import Request
    from starlette.responses import JSONResponse

    # max_ongoing_requests: Ray Serve's default (5) caps how many requests reach the replica at once,
    # and with it every batch at 5; let a full batch and the next one queue
    @serve.deployment(ray_actor_options={"num_cpus": 1}, max_ongoing_requests=2 * max_batch_size)
    class ASRServer:
        def __init__(self, compressor_path: str, submodels: Sequence[str], model: str, token: str | None,
                     base_fallback: bool) -> None:
            self.core = ServerCore(compressor_path, submodels, model=model, token=token, base_fallback=base_fallback)

        @serve.batch(max_batch_size=max_batch_size, batch_wait_timeout_s=batch_wait_timeout_s)
        async def _batch(self, messages: list) -> list[dict[str, Any]]:
            return self.core.transcribe(messages)

        async def __call__(self, request: Request) -> JSONResponse:
            if not self.core.authorized(request.headers.get("authorization")):
                return JSONResponse({"error": "This server needs a token: send 'Authorization: Bearer <token>'."},
                                    status_code=401)
            if request.method == "GET":
                return JSONResponse(self.core.info())
            try:
                msg = self.core.parse(await request.body())
            except WireFormatError as err:
                return JSONResponse({"error": str(err)}, status_code=400)
            except AdapterError as err:
                return JSONResponse({"error": str(err)}, status_code=404)
            return JSONResponse(await self._batch(msg))

    return ASRServer


ASRServer = None  # the Ray Serve deployment class, made by build_app (Ray is optional)


def build_app(compressor_path: str | Path, submodels: Sequence[str | Path] = (), *, model: str = "tiny",
              token: str | None = None, base_fallback: bool = True, max_batch_size: int = 32,
              batch_wait_timeout_s: float = 0.02):
    """The bound Ray Serve application (for ``serve.run``)."""
    cls = _deployment_class(max_batch_size, batch_wait_timeout_s)
    return cls.bind(str(compressor_path), [str(s) for s in submodels], model, token, base_fallback)


def _start_ray(ray, num_cpus: int | None, attempts: int = 3) -> None:
    """``ray.init`` on this machine, tried again when a busy CPU makes Ray's 30 s start-up wait run out."""
    for attempt in range(attempts):
        if ray.is_initialized():
            return
        try:
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
            return
        except Exception as err:  # noqa: BLE001 - Ray raises a bare Exception for a slow start-up
            ray.shutdown()
            if "timed out during startup" not in str(err) or attempt == attempts - 1:
                raise WorkbenchError(
                    f"Ray could not start on this machine ({err}). If other programs keep the CPU busy, close "
                    "them and start the server again.") from err


def serve_asr(compressor_path: str | Path, submodels: Sequence[str | Path] = (), *, host: str = "127.0.0.1",
              port: int = 8200, token: str | None = None, model: str = "tiny", num_cpus: int | None = None,
              blocking: bool = True, **options: Any) -> str:
    """Start Ray (local), Serve's HTTP proxy on ``host:port`` and the deployment; returns the URL.

    Raises:
        WorkbenchError: a non-local ``host`` without a token.
    """
    if host not in LOCAL_HOSTS and not token:
        raise WorkbenchError(
            f"The server would listen on {host}, where other machines can reach it: give it a token "
            "(--token or WORKBENCH_SERVER_TOKEN), or keep the default 127.0.0.1.")
    ray = require("ray", extra="serve", purpose="run the clinic's server")
    serve = require("ray.serve", extra="serve", purpose="run the clinic's server")
    _start_ray(ray, num_cpus)
    serve.start(http_options={"host": host, "port": port})
    serve.run(build_app(compressor_path, submodels, model=model, token=token, **options), name="workbench-asr",
              route_prefix=ROUTE, blocking=False)
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
