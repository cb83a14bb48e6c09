"""The patient's device: run the device part, send the compressed representation, get text back.

Only the wire message leaves the machine (never audio). Standard library HTTP (``urllib``).

    client = DeviceClient("http://127.0.0.1:8200/asr", "tiny-k4-16x3s2.safetensors")
    client.transcribe(wav, speaker="spk01")   # -> {"text": ..., "bytes_sent": ..., ...}
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from workbench._deprecated import renamed_keywords
from workbench.errors import ServerError

__all__ = ["DeviceClient", "summary_line"]

MAX_ANSWER_BYTES = 1_000_000  # a workbench answer is a few hundred bytes
_CHECK_ADDRESS = ("check the address: it is the one 'workbench serve-asr' prints, like http://127.0.0.1:8200/asr, "
                  "and the program there must be the clinic's workbench server.")
_NEED_TEXT = {"text": str}  # what a transcription answer must hold
_NEED_INFO = {"fingerprint": str, "speakers": list}  # what GET answers


def _answer(raw: bytes, url: str, *, need: dict[str, type]) -> dict[str, Any]:
    """The server's JSON answer, checked to be a workbench answer (else a plain :class:`ServerError`)."""
    what = None
    if len(raw) > MAX_ANSWER_BYTES:
        what = "an answer of more than 1 MB"
    else:
        try:
            out = json.loads(raw)
        except (ValueError, RecursionError):  # HTML, text, cut-off JSON, bad UTF-8
            start = raw[:40].decode("utf-8", "replace").strip()
            what = f"not JSON: it starts {start!r}" if start else "an empty answer"
        else:
            if not isinstance(out, dict):
                what = f"JSON, but a {type(out).__name__}, not a workbench answer"
            else:
                missing = [k for k, t in need.items() if not isinstance(out.get(k), t)]
                if missing:
                    what = f"JSON without {' or '.join(repr(k) for k in missing)}"
    if what is not None:
        raise ServerError(f"The answer from {url} is {what}; {_CHECK_ADDRESS}")
    return out


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
        from workbench.device_tuning.compressor import check_compressor_base, load_compressor
        from workbench.device_tuning import split_for
        from workbench.models import load_base_model

        comp, meta = load_compressor(compressor_path)
        backend = load_base_model(model).freeze()
        check_compressor_base(compressor_path, meta, backend)
        self.split = split_for(backend, meta["split_layer"], comp)
        self.url, self.token, self.timeout_s = url, token, timeout_s
        self._windows: dict[str, Any] | None = None  # a Whisper server's windows, asked once

    def _request(self, data: bytes | None) -> dict[str, Any]:
        req = urllib.request.Request(self.url, data=data, method="POST" if data is not None else "GET")
        if data is not None:
            req.add_header("Content-Type", "application/octet-stream")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                raw = resp.read(MAX_ANSWER_BYTES + 1)
                if resp.length and len(raw) <= MAX_ANSWER_BYTES:  # fewer bytes than its Content-Length
                    raise http.client.IncompleteRead(raw, resp.length)
        except urllib.error.HTTPError as err:
            try:
                why = json.loads(err.read(MAX_ANSWER_BYTES)).get("error", "")
            except (ValueError, AttributeError, OSError, http.client.HTTPException):
                why = ""
            if not isinstance(why, str) or not why:
                raise ServerError(f"The server at {self.url} refused the request ({err.code} {err.reason}) without "
                                  f"a workbench answer: {_CHECK_ADDRESS}") from None
            raise ServerError(f"The server at {self.url} refused the request ({err.code}): {why}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
            reason = getattr(err, "reason", err)
            raise ServerError(f"The server at {self.url} could not be reached ({reason}). Is it running "
                              "(workbench serve-asr), and is the address right?") from None
        except (http.client.HTTPException, OSError) as err:  # a cut-off or garbled answer
            raise ServerError(f"The answer from {self.url} was cut off or garbled ({type(err).__name__}): "
                              f"send it again; if it keeps happening, {_CHECK_ADDRESS}") from None
        return _answer(raw, self.url, need=_NEED_TEXT if data is not None else _NEED_INFO)

    def server_info(self) -> dict[str, Any]:
        """What the server runs (model fingerprint, split, compressor, speakers)."""
        return self._request(None)

    def window_for(self, speaker: str) -> str | None:
        """The Whisper encoding window the server decodes ``speaker`` on (their Submodel's, else
        the server's; asked once with a GET), or None when the server does not say (an older one)."""
        if self._windows is None:
            info = self.server_info()
            windows = info.get("windows")
            self._windows = {"": info.get("window"), **(windows if isinstance(windows, dict) else {})}
        window = self._windows.get(speaker) or self._windows.get("")
        return window if window in ("auto", "full") else None

    def transcribe(self, wav: np.ndarray, speaker: str = "") -> dict[str, Any]:
        """Send one 16 kHz recording's representation; the server's answer plus ``bytes_sent``
        (the whole message, header included) and ``audio_s``."""
        if hasattr(self.split, "window_for"):  # a Whisper split: encode the window the server decodes this speaker on
            data = self.split.encode([wav], speaker=speaker, window=self.window_for(speaker))[0].to_bytes()
        else:
            data = self.split.encode([wav], speaker=speaker)[0].to_bytes()
        out = self._request(data)
        out["bytes_sent"] = len(data)
        out["audio_s"] = len(wav) / self.split.backend.sample_rate
        return out


@renamed_keywords(audio_seconds="audio_s")
def summary_line(bytes_sent: int, audio_s: float) -> str:
    """What a run cost on the wire, for people and measurement scripts:
    ``sent N bytes for S s of audio (R kbit/s)`` (``R`` = ``8 N / S / 1000``, headers included).

    >>> summary_line(1000, 4.0)
    'sent 1000 bytes for 4.00 s of audio (2.00 kbit/s)'
    """
    rate = 8 * bytes_sent / audio_s / 1000 if audio_s > 0 else 0.0
    return f"sent {bytes_sent} bytes for {audio_s:.2f} s of audio ({rate:.2f} kbit/s)"
