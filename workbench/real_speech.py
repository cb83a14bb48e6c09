"""Real human speech that is available offline: Debian's Asterisk prompts.

``sudo apt-get install asterisk-core-sounds-en asterisk-core-sounds-en-wav`` installs
about 550 prompts read by one professional speaker (Allison Smith), 8 kHz telephone
audio, with their texts, under CC-BY-SA-3.0 (Digium / Sangoma). The workbench uses
them to measure base models on a real voice (``bench/bench_real_speech.py``) and
ships a few dozen as the real typical speaker in ``sample_data/real/``.

Bracketed descriptions (``[beep]``) are skipped; a transcript is the text after the
first ``:`` of its line, normalized with :func:`workbench.text.normalize_text`.
"""

from __future__ import annotations

import dataclasses
import gzip
from pathlib import Path

import numpy as np

from workbench.constants import SAMPLE_RATE
from workbench.errors import MissingDependencyError

__all__ = ["ASTERISK_LICENSE", "ASTERISK_SOUNDS", "ASTERISK_TEXTS", "RealUtterance", "load_asterisk"]

ASTERISK_SOUNDS = Path("/usr/share/asterisk/sounds/en_US_f_Allison")
ASTERISK_TEXTS = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")
ASTERISK_LICENSE = ("Asterisk core sounds (English, voice of Allison Smith), Copyright Digium, Inc. / Sangoma, "
                    "CC-BY-SA-3.0; from Debian's asterisk-core-sounds-en and asterisk-core-sounds-en-wav")


@dataclasses.dataclass(frozen=True)
class RealUtterance:
    """One prompt: ``wav (S,)`` float32 at 16 kHz, its raw text, its name (the file stem)."""

    name: str
    text: str
    wav: np.ndarray


def load_asterisk(*, min_s: float = 0.3, max_s: float = 12.0, sounds: Path = ASTERISK_SOUNDS,
                  texts: Path = ASTERISK_TEXTS) -> list[RealUtterance]:
    """Every spoken prompt between ``min_s`` and ``max_s`` seconds, sorted by name.

    Raises:
        MissingDependencyError: the Debian packages are not installed (says the command).
    """
    import librosa
    import soundfile as sf

    from workbench.text import normalize_text

    if not sounds.is_dir() or not texts.is_file():
        raise MissingDependencyError(
            "the real-speech test set (Asterisk prompts) is not installed. Install it with: "
            "sudo apt-get install asterisk-core-sounds-en asterisk-core-sounds-en-wav")
    opener = gzip.open if str(texts).endswith(".gz") else open
    out = []
    with opener(texts, "rt", encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if line.startswith(";") or ":" not in line:
                continue
            name, _, text = line.partition(":")
            name, text = name.strip(), text.strip()
            wav_path = sounds / f"{name}.wav"
            if not text or text.startswith("[") or not normalize_text(text) or not wav_path.is_file():
                continue
            wav, sample_rate = sf.read(wav_path, dtype="float32", always_2d=False)
            if wav.ndim > 1:
                wav = wav.mean(1)
            if not min_s * sample_rate <= len(wav) <= max_s * sample_rate:
                continue
            if sample_rate != SAMPLE_RATE:
                wav = librosa.resample(wav, orig_sr=sample_rate, target_sr=SAMPLE_RATE, res_type="soxr_hq")
            out.append(RealUtterance(name, text, np.ascontiguousarray(wav, dtype=np.float32)))
    return sorted(out, key=lambda u: u.name)
