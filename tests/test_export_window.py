"""The encoding window a personal Whisper model was trained on: recorded in its Submodel file (untrusted),
decoded on everywhere, trained with ``--window full`` for export, and told in the export's warning and card.
Also: the vector family merges for export, ggml float32 is refused in words, and transformers' pipeline
takes the model card's cap without its "both set" warning.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from tests._models import hf_whisper_dir, noise_waves, tiny_backend
from tests.test_export import METRICS, TRAINING, _submodel
from workbench.adapters import LoRAConfig, VectorConfig, inject, load_submodel
from workbench.adapters.io import read_submodel
from workbench.errors import AdapterError, TrainingError
from workbench.export import ExportError, export_model

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def whisper(tmp_path_factory):
    from workbench.models.loading import load_hf_model

    return load_hf_model(hf_whisper_dir(tmp_path_factory.mktemp("whisper") / "model"))


def _with_window(backend, path: Path, window, config=None) -> Path:
    """A Submodel file whose training summary says ``window`` (any value: a crafted file)."""
    adapted = inject(backend, (config or LoRAConfig(rank=2, decoder=True)).replace(num_speakers=1))
    with torch.no_grad():
        for p in adapted.adapters.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(3)))
    training = dict(TRAINING) if window is ... else {**TRAINING, "window": window}
    adapted.save(path, speaker_ids=["spk-01"], training=training, metrics=METRICS)
    adapted.remove()
    return path


# ---------------------------------------------------------------- the metadata field


def test_the_window_is_read_back_and_older_files_mean_auto(tmp_path, whisper):
    assert read_submodel(_with_window(whisper, tmp_path / "full.safetensors", "full"))[1]["window"] == "full"
    assert read_submodel(_with_window(whisper, tmp_path / "auto.safetensors", "auto"))[1]["window"] == "auto"
    assert read_submodel(_with_window(whisper, tmp_path / "old.safetensors", ...))[1]["window"] == "auto"


@pytest.mark.parametrize("crafted", ["half", "FULL", "", 30, None, ["full"], {"w": "full"}, True, "x" * 5000])
def test_a_crafted_window_is_refused_in_words(tmp_path, whisper, crafted):
    path = _with_window(whisper, tmp_path / "crafted.safetensors", crafted)
    with pytest.raises(AdapterError, match="encoding window it was trained on is .* not 'auto' or 'full'") as err:
        read_submodel(path)
    assert len(str(err.value)) < 600  # the crafted value is cut short in the message
    with pytest.raises(AdapterError, match="encoding window"):
        export_model(path, "hf", tmp_path / "out", backend=whisper)
    assert not (tmp_path / "out").exists()


def test_a_top_level_window_key_does_not_override_the_training_record(tmp_path, whisper):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    path = _with_window(whisper, tmp_path / "a.safetensors", "auto")
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata())
    save_file(load_file(str(path)), str(path), metadata={**meta, "window": "full"})
    assert read_submodel(path)[1]["window"] == "auto"


# ---------------------------------------------------------------- decoding on the trained window


def test_a_personal_model_decodes_on_the_window_it_was_trained_on(tmp_path, whisper):
    wav = noise_waves(1, seed=2, lo=16000, hi=16001)[0]
    assert whisper.window == "auto" and whisper.featurize([wav]).features.shape[1] == 200  # 1 s + 1 s margin
    adapted, meta = load_submodel(whisper, _with_window(whisper, tmp_path / "full.safetensors", "full"))
    try:
        assert meta["window"] == "full" and whisper.encoding_window == "full"
        assert whisper.featurize([wav]).features.shape[1] == 3000  # what transcribe/evaluate/the app decode on
        with adapted.disabled():  # the base model alongside it (the before/after pages) hears the same window
            assert whisper.featurize([wav]).features.shape[1] == 3000
    finally:
        adapted.remove()
    assert whisper.window == "auto" and whisper.encoding_window == "auto"  # the shared base model is unchanged
    whisper.window = "full"
    try:  # and an auto-window model on a base model set to 30 s is decoded on its own short window
        adapted, _ = load_submodel(whisper, _with_window(whisper, tmp_path / "auto.safetensors", ...))
        assert whisper.featurize([wav]).features.shape[1] == 200
        adapted.remove()
        assert whisper.featurize([wav]).features.shape[1] == 3000
    finally:
        whisper.window = "auto"


PROMPTS = ["turn on the light", "call my sister", "i am hungry", "good morning", "open the door",
           "where is my phone", "thank you very much", "i need some help"]


@pytest.fixture
def speaker(tmp_path):
    from workbench.corpus import SpeakerCorpus

    corpus = SpeakerCorpus.create(tmp_path / "data", "spk-window", prompts=PROMPTS)
    for i, w in enumerate(noise_waves(16, seed=5, lo=12000, hi=20000)):
        corpus.add_take(w * 3, prompt=PROMPTS[i % len(PROMPTS)])
    return corpus


@pytest.mark.filterwarnings("ignore:the (held-out|validation) set has only")
@pytest.mark.parametrize("window", ["full", None])
def test_personalize_trains_on_the_window_asked_and_records_it(speaker, tmp_path, whisper, window):
    from workbench.trainer import TrainConfig
    from workbench.workflow import finish, prepare, train

    config = TrainConfig(adapter=LoRAConfig(rank=2, decoder=True), max_steps=2, time_limit_s=None, eval_every=2,
                         batch_size=4, min_utterances=4, learning_rate=1e-3)
    plan = prepare(speaker.root, backend=whisper, config=config, submodel_dir=tmp_path / "s",
                   report_dir=tmp_path / "r", window=window)
    frames = {it.features.shape[0] for it in [*plan.trainer.train_cache.items, *plan.trainer.eval_cache.items]}
    want = "full" if window == "full" else "auto"
    assert whisper.window == "auto"  # the shared base model keeps its own setting
    assert whisper.encoding_window == want  # the adapter being trained holds the window
    assert frames == ({3000} if want == "full" else {400})  # log-mel frames: 30 s, or 1.25 s + 1 s in 2 s steps
    train(plan, progress=False)
    run = finish(plan)
    run.adapted.remove()
    assert read_submodel(run.submodel_path)[1]["window"] == want
    assert read_submodel(run.submodel_path)[1]["training"]["window"] == want


def test_the_window_is_a_whisper_setting(speaker):
    from workbench.workflow import prepare

    with pytest.raises(TrainingError, match="Whisper setting"):
        prepare(speaker.root, backend=tiny_backend(), window="full")
    with pytest.raises(TrainingError, match="'auto'.*'full'"):
        prepare(speaker.root, backend=tiny_backend(), window="30s")


def test_the_cli_passes_window_on(speaker, capsys):
    from workbench.cli import main

    rc = main(["personalize", str(speaker.root), "--model", "tiny", "--window", "full", "--minutes", "0.1"])
    assert rc != 0
    assert "Whisper setting" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["personalize", str(speaker.root), "--window", "half"])


# ---------------------------------------------------------------- the export's warning and card


@pytest.mark.parametrize("fmt", ["hf", "ct2", "ggml"])
def test_export_says_what_an_auto_window_model_does_in_each_engine(tmp_path, whisper, fmt):
    if fmt == "ct2":
        pytest.importorskip("ctranslate2", reason="pip install 'workbench[export]'")
    from workbench.notices import Notice

    auto = _with_window(whisper, tmp_path / "auto.safetensors", ...)
    full = _with_window(whisper, tmp_path / "full.safetensors", "full")
    with warnings.catch_warnings(record=True) as heard:
        warnings.simplefilter("always")
        r_auto = export_model(auto, fmt, tmp_path / "auto", backend=whisper)
        r_full = export_model(full, fmt, tmp_path / "full", backend=whisper)
    notes = [str(w.message) for w in heard if issubclass(w.category, Notice)]
    card_auto = (tmp_path / "auto" / "README.md").read_text()
    card_full = (tmp_path / "full" / "README.md").read_text()
    # faster-whisper and transformers always encode 30 s; whisper.cpp takes the window (audio_ctx) but still
    # wrote other words on about half of the benchmark's phrases: each says so, and how to get a matching model
    engine = {"hf": "transformers", "ct2": "faster-whisper", "ggml": "whisper.cpp"}[fmt]
    assert len(notes) == 1 and engine in notes[0] and "--window full" in notes[0]
    assert r_auto.notes == (notes[0],)
    assert r_full.notes == ()
    assert "will give different words" in card_auto and "personalize SPEAKER_DIR --window full" in card_auto
    assert "trained on Whisper's own 30 s window" in card_full and "will give different words" not in card_full
    for cut in ("audio_ctx=", "--audio-ctx ", "100 * window", "window = min(30"):
        assert cut not in card_full  # plain 30 s recipes
    if fmt == "ggml":
        assert "audio_ctx=50 *" in card_auto and "--audio-ctx 200" in card_auto
    if fmt == "ct2":
        assert "100 * window" in card_auto  # the CTranslate2 recipe on the trained window


def test_the_export_command_prints_the_warning(tmp_path, whisper, capsys, monkeypatch):
    import workbench.export.cli as export_cli
    from workbench.export import pipeline

    auto = _with_window(whisper, tmp_path / "auto.safetensors", ...)
    real = pipeline.export_model
    monkeypatch.setattr("workbench.export.export_model", lambda *a, **k: real(*a, **{**k, "backend": whisper}))
    args = export_cli.argparse.Namespace(source=str(auto), format="hf", out=str(tmp_path / "hf"), speaker=None,
                                         quantization=None, force=False, model=None)
    assert export_cli._cmd_export(args) == 0
    err = capsys.readouterr().err
    assert err.count("Warning: this personal model was trained on the workbench's short window") == 1
    assert "Note:" not in err


# ---------------------------------------------------------------- ggml float32, the vector family, ExportError


def test_ggml_float32_is_refused_with_the_reason_and_nothing_is_written(tmp_path, whisper):
    sub = _submodel(whisper, tmp_path / "spk.safetensors", LoRAConfig(rank=2, decoder=True))
    with pytest.raises(ExportError, match="GGML_TYPE_F16.*--format ct2 --quantization float32"):
        export_model(sub, "ggml", tmp_path / "out", backend=whisper, quantization="float32")
    assert not (tmp_path / "out").exists()


def test_the_ggml_writer_can_write_a_float32_layout(tmp_path, whisper):
    """The refusal is whisper.cpp's limit, not the writer's: ftype 0 gives float32 tensors throughout."""
    import io
    import struct

    from workbench.export.ggml import write_ggml_file

    buf = io.BytesIO()
    n = write_ggml_file(buf, whisper.model.state_dict(), whisper.model.config, whisper.tokenizer, ftype=0)
    data = buf.getvalue()
    assert struct.unpack("<12i", data[:48])[11] == 0 and n > 10
    # the first tensor after the header, filters and vocabulary: type 0 (float32)
    assert b"encoder.conv1.weight" in data


@pytest.mark.parametrize("mode", ["ia3", "flora"])
def test_vector_adapters_merge_exactly_for_export(tmp_path, whisper, mode):
    """IA3 / FLoRA scalings fold into the weight rows and columns: the merged plain Whisper gives the adapted
    model's logits to float32 rounding, and the adapter really moves them."""
    from transformers import WhisperForConditionalGeneration

    from workbench.export.merge import whisper_probe

    sub = _submodel(whisper, tmp_path / "vec.safetensors", VectorConfig(mode=mode, decoder=True), scale=0.3)
    result = export_model(sub, "hf", tmp_path / "hf", backend=whisper)
    assert result.family == "vector"
    v = result.verification
    assert v.max_diff <= v.tolerance and v.adapter_effect > 100 * max(v.max_diff, 1e-7)
    adapted, _ = load_submodel(whisper, sub)
    try:
        feats, ids = whisper_probe(adapted)
        with torch.no_grad():
            want = whisper.model(input_features=feats, decoder_input_ids=ids).logits
    finally:
        adapted.remove()
    got = WhisperForConditionalGeneration.from_pretrained(tmp_path / "hf")(input_features=feats,
                                                                          decoder_input_ids=ids).logits
    assert torch.allclose(got, want, atol=1e-4 * max(1.0, float(want.abs().max())))
    assert "diag(b) W diag(a)" in (tmp_path / "hf" / "README.md").read_text()


def test_vector_adapters_merge_in_the_built_in_model_for_onnx(tmp_path):
    pytest.importorskip("onnxruntime", reason="pip install 'workbench[export]'")
    pytest.importorskip("onnx", reason="pip install 'workbench[export]'")
    backend = tiny_backend()
    sub = _submodel(backend, tmp_path / "vec.safetensors", VectorConfig(), scale=0.3)
    result = export_model(sub, "onnx", tmp_path / "onnx", backend=backend)
    assert result.verification.max_diff <= result.verification.tolerance
    assert "adapter merged into the weights (vector scalings merged" in (tmp_path / "onnx" / "README.md").read_text()


def test_export_error_lives_with_the_other_errors():
    import workbench.errors
    import workbench.export

    assert workbench.export.ExportError is workbench.errors.ExportError
    assert "ExportError" in workbench.errors.__all__ and "ExportError" in workbench.export.__all__


# ---------------------------------------------------------------- transformers' pipeline and the card's cap


def test_the_cards_transformers_cap_does_not_log_both_set(tmp_path, whisper, caplog):
    from transformers import pipeline
    from transformers.utils import logging as hf_logging

    sub = _submodel(whisper, tmp_path / "spk.safetensors", LoRAConfig(rank=2, decoder=True))
    export_model(sub, "hf", tmp_path / "hf", backend=whisper)
    assert "'max_length': " in (tmp_path / "hf" / "README.md").read_text()
    asr = pipeline("automatic-speech-recognition", model=str(tmp_path / "hf"), device="cpu")
    wav = {"raw": np.zeros(16000, np.float32) + 0.01, "sampling_rate": 16000}
    hf_logging.enable_propagation()
    try:
        with caplog.at_level(logging.WARNING):
            capped = asr(dict(wav), return_timestamps=False,
                         generate_kwargs={"num_beams": 1, "do_sample": False, "max_new_tokens": 5})
            both_with_new_tokens = "seem to have been set" in caplog.text
            caplog.clear()
            out = asr(dict(wav), return_timestamps=False,
                      generate_kwargs={"num_beams": 1, "do_sample": False, "max_length": 5})
            assert "seem to have been set" not in caplog.text
    finally:
        hf_logging.disable_propagation()
    assert out["text"] == capped["text"]  # Whisper's generate counts max_length after the prompt, as max_new_tokens
    if not both_with_new_tokens:
        pytest.skip("this transformers version does not log the warning for max_new_tokens either")


def test_the_apps_download_note_says_what_the_window_means(tmp_path, whisper):
    pytest.importorskip("panel")
    from workbench.app_pages.downloads import _window_advice

    auto = _window_advice(_with_window(whisper, tmp_path / "auto.safetensors", ...))
    full = _window_advice(_with_window(whisper, tmp_path / "full.safetensors", "full"))
    assert "faster-whisper, whisper.cpp and transformers" in auto and "--window full" in auto
    assert "30 s window" in full and "other words" not in full
    assert _window_advice(_with_window(whisper, tmp_path / "bad.safetensors", "half")) == ""  # damaged: no claim
