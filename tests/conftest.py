"""Shared test helpers: synthetic audio and temporary speaker folders; the ``tts`` marker.

Audio is generated, never downloaded: every helper returns ``(n,)`` float32 at
``sample_rate`` Hz (16 kHz by default) and is deterministic for a given seed.

Tests that run a speech engine carry ``@pytest.mark.tts("espeak", "flite")`` (the
engines they need; a bare ``@pytest.mark.tts`` needs the engines named by its
``espeak``/``flite``/``festival`` fixtures, else all three). Where one is missing
the test is skipped with the reason and the install command, unless
``WORKBENCH_REQUIRE_TTS=1`` (CI), where it fails.
"""

from __future__ import annotations

import os

# Nothing downloads at test time: transformers/huggingface_hub stay offline.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from workbench._deprecated import renamed_keywords

SR = 16_000


@renamed_keywords(sr="sample_rate")  # the old keyword still works (other tests may use it), with a warning
def make_tone(
    seconds: float, sample_rate: int = SR, amp: float = 0.3, freq: float = 220.0
) -> np.ndarray:
    """A steady sine: ``(round(seconds * sample_rate),)`` float32, peak ``amp``."""
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@renamed_keywords(sr="sample_rate")
def make_speechlike(
    seconds: float,
    sample_rate: int = SR,
    *,
    amp: float = 0.4,
    lead_s: float = 0.2,
    tail_s: float = 0.2,
    noise_dbfs: float = -65.0,
    seed: int = 0,
) -> np.ndarray:
    """Syllable-like bursts of a harmonic voice with pauses, over a quiet noise floor.

    ``lead_s``/``tail_s`` of near-silence frame the "speech"; syllables are
    ~4 per second with short gaps, f0 130-170 Hz with 5 harmonics. A clean take
    that :func:`workbench.audio.check_quality` should find no problem with
    (for 0.5 <= seconds <= 30).
    """
    rng = np.random.default_rng(seed)
    n = round(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    f0 = 150 + 20 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    voice = sum(np.sin(k * phase) / k for k in range(1, 6))
    envelope = np.clip(np.sin(2 * np.pi * 4.0 * t), 0, None) ** 0.5  # bursts with gaps
    inside = (t >= lead_s) & (t < seconds - tail_s)
    x = amp * voice / np.max(np.abs(voice)) * envelope * inside
    x = x + 10 ** (noise_dbfs / 20) * rng.standard_normal(n)
    return x.astype(np.float32)


@pytest.fixture
def tone() -> Callable[..., np.ndarray]:
    """:func:`make_tone`."""
    return make_tone


@pytest.fixture
def speechlike() -> Callable[..., np.ndarray]:
    """:func:`make_speechlike`."""
    return make_speechlike


@pytest.fixture
def speaker_root(tmp_path: Path) -> Path:
    """An empty folder to hold speaker folders."""
    root = tmp_path / "speakers"
    root.mkdir()
    return root


# --------------------------------------------------------------------------- #
# The tts marker
# --------------------------------------------------------------------------- #

_ENGINE_FIXTURES = ("espeak", "flite", "festival")


def tts_gate(engines: tuple[str, ...], *, require: bool) -> str | None:
    """Why a test that needs these speech engines cannot run here, or None if it can.

    Raises:
        pytest.fail.Exception: an engine is missing and ``require`` (WORKBENCH_REQUIRE_TTS=1).
    """
    from workbench import simulate
    from workbench.simulate import voices

    missing = [e for e in engines if e not in simulate.available_engines()]
    if not missing:
        return None
    programs = ", ".join(voices._PROGRAMS[e][0] for e in missing)
    apt = " ".join(voices._PROGRAMS[e][1] for e in missing)
    if require:
        pytest.fail(f"needs {programs} (WORKBENCH_REQUIRE_TTS=1) but it is missing: sudo apt-get install {apt}",
                    pytrace=False)
    return f"needs {programs}, which is not installed (sudo apt-get install {apt}); WORKBENCH_REQUIRE_TTS=1 makes this fail"


def pytest_runtest_setup(item: pytest.Item) -> None:
    marker = item.get_closest_marker("tts")
    if marker is None:
        return
    unknown = [e for e in marker.args if e not in _ENGINE_FIXTURES]
    if unknown:
        pytest.fail(f"@pytest.mark.tts: unknown engine(s) {unknown}; use {', '.join(_ENGINE_FIXTURES)}", pytrace=False)
    engines = tuple(marker.args) or tuple(f for f in _ENGINE_FIXTURES if f in getattr(item, "fixturenames", ()))
    reason = tts_gate(engines or _ENGINE_FIXTURES, require=os.environ.get("WORKBENCH_REQUIRE_TTS") == "1")
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture
def captured(monkeypatch) -> dict:
    """Run the CLI up to the training call; the TrainConfig it built lands in the dict (no model is loaded)."""
    import workbench.workflow as wf
    from workbench.errors import TrainingError

    seen: dict = {}

    def capture(*args, config, **kwargs):
        seen["config"] = config
        raise TrainingError("captured")

    monkeypatch.setattr(wf, "personalize_speaker", capture)
    monkeypatch.setattr(wf, "train_bank", capture)
    monkeypatch.setattr("workbench.models.load_base_model", lambda *a, **k: None)
    return seen


@pytest.fixture(scope="module")
def whisper_dir(tmp_path_factory):
    """A tiny random transformers Whisper folder (a test file may define its own)."""
    pytest.importorskip("transformers")
    from _models import hf_whisper_dir

    return hf_whisper_dir(tmp_path_factory.mktemp("hf") / "whisper")


@pytest.fixture
def whisper(whisper_dir):
    """The tiny random Whisper loaded as a backend (a test file may define its own ``whisper``)."""
    from workbench.models import load_base_model

    return load_base_model(whisper_dir)
