"""Speech codecs as baselines for the device/server split: encode on the "device", decode on the
"server", recognize the decoded audio with the full model.

codec2 (Debian ``codec2``: ``c2enc``/``c2dec``, 8 kHz 16-bit raw) and Opus (Debian ``opus-tools``:
``opusenc``/``opusdec``). The bit rate reported is the size of what would be sent (codec2's bit
stream; Opus's Ogg file, container included) over the audio's duration.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from workbench.audio import resample
from workbench.constants import SAMPLE_RATE

__all__ = ["CODEC2_MODES", "codec2_round_trip", "opus_round_trip"]

CODEC2_MODES = ["700C", "1200", "1600", "2400", "3200"]


def _run(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)


def codec2_round_trip(wav: np.ndarray, mode: str) -> tuple[np.ndarray, int]:
    """16 kHz waveform -> (the decoded 16 kHz waveform, bits sent)."""
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        pcm = np.clip(resample(wav, SAMPLE_RATE, 8000) * 32767, -32768, 32767).astype("<i2")
        (d / "in.raw").write_bytes(pcm.tobytes())
        _run(["c2enc", mode, str(d / "in.raw"), str(d / "out.bit")])
        _run(["c2dec", mode, str(d / "out.bit"), str(d / "out.raw")])
        bits = (d / "out.bit").stat().st_size * 8
        out = np.frombuffer((d / "out.raw").read_bytes(), dtype="<i2").astype(np.float32) / 32768
    return resample(out, 8000, SAMPLE_RATE)[: len(wav)], bits


def opus_round_trip(wav: np.ndarray, kbps: float) -> tuple[np.ndarray, int]:
    """16 kHz waveform -> (the decoded 16 kHz waveform, bits sent incl. the Ogg container)."""
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        sf.write(d / "in.wav", wav, SAMPLE_RATE, subtype="PCM_16")
        _run(["opusenc", "--quiet", "--bitrate", str(kbps), "--framesize", "20", str(d / "in.wav"),
              str(d / "out.opus")])
        _run(["opusdec", "--quiet", "--rate", str(SAMPLE_RATE), str(d / "out.opus"), str(d / "out.wav")])
        bits = (d / "out.opus").stat().st_size * 8
        out, sample_rate = sf.read(d / "out.wav", dtype="float32")
    if out.ndim > 1:
        out = out.mean(axis=1)
    return out[: len(wav)], bits
