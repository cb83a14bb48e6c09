"""The patient's device: run the device part, send the compressed representation, get text back.

Only the wire message leaves the machine (never audio). Standard library HTTP (``urllib``).

    client = DeviceClient("http://127.0.0.1:8200/asr", "tiny-k4-16x3s2.safetensors")
    client.transcribe(wav, speaker="spk01")   # -> {"text": ..., "bytes_sent": ..., ...}
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from workbench.errors import ServerError

__all__ = ["DeviceClient"]


class DeviceClient:
    """Device side of the split: the frozen device part + compressor, and the server's URL.

    Args:
        url: the server's ``/asr`` address.
        compressor_path: the same compressor file the server runs.
        model: the base model (the device part's weights).
        token: the server's token, if it has one.
        timeout_s: seconds to wait for an answer.
    """

    def __init__(self, url: str, compressor_path: str | Path, *, model: str = "tiny", token: str | None = None,
                 timeout_s: float = 60.0) -> None:
        from workbench.device_tuning.compressor import load_compressor
        from workbench.device_tuning.split import SplitModel
        from workbench.models import load_base_model

        backend = load_base_model(model).freeze()
        comp, meta = load_compressor(compressor_path)
        self.split = SplitModel(backend, meta["split_layer"], comp)
        self.url, self.token, self.timeout_s = url, token, timeout_s

    def _request(self, data: bytes | None) -> dict[str, Any]:
        req = urllib.request.Request(self.url, data=data, method="POST" if data is not None else "GET")
        if data is not None:
            req.add_header("Content-Type", "application/octet-stream")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as err:
            try:
                why = json.loads(err.read()).get("error", "")
            except (ValueError, AttributeError):
                why = ""
            raise ServerError(f"The server at {self.url} refused the request ({err.code}): {why or err.reason}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
            reason = getattr(err, "reason", err)
            raise ServerError(f"The server at {self.url} could not be reached ({reason}). Is it running "
                              "(workbench serve-asr), and is the address right?") from None

    def server_info(self) -> dict[str, Any]:
        """What the server runs (model fingerprint, split, compressor, speakers)."""
        return self._request(None)

    def transcribe(self, wav: np.ndarray, speaker: str = "") -> dict[str, Any]:
        """Send one 16 kHz recording's representation; the server's answer plus ``bytes_sent``."""
        data = self.split.encode([wav], speaker=speaker)[0].to_bytes()
        out = self._request(data)
        out["bytes_sent"] = len(data)
        return out
