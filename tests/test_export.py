"""workbench export: merging, the ONNX and ggml writers, the model card, and every bad input.

Tiny random models (tests/_models.py) stand in for the real ones; the engines themselves
(faster-whisper, whisper.cpp, transformers' pipeline) run in tests/test_export_engines.py.
"""

from __future__ import annotations

import errno
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from tests._disk import fail_atomic_writes, read_only_open
from tests._models import hf_whisper_dir, tiny_backend
from workbench.adapters import LoRAConfig, ResidualConfig, inject
from workbench.errors import AdapterError, WorkbenchError
from workbench.export import ExportError, export_model

pytest.importorskip("transformers")

METRICS = {"wer_before": 0.5, "wer_after": 0.25, "cer_before": 0.3, "cer_after": 0.1, "held_out_utterances": 12}
TRAINING = {"utterances": 40, "validation_utterances": 6, "minutes": 3.5, "steps": 30, "seconds": 60.0,
            "stopped": "time budget"}


def _submodel(backend, path: Path, config, ids=("spk-01",), scale: float = 0.05, seed: int = 1) -> Path:
    """A Submodel file whose adapter really moves the outputs (random, non-zero weights)."""
    adapted = inject(backend, config.replace(num_speakers=len(ids)))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in adapted.adapters.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    adapted.save(path, speaker_ids=list(ids), training=TRAINING,
                 metrics=METRICS if len(ids) == 1 else {s: METRICS for s in ids})
    adapted.remove()
    return path


@pytest.fixture(scope="module")
def whisper(tmp_path_factory):
    from workbench.models.loading import load_hf_model

    return load_hf_model(hf_whisper_dir(tmp_path_factory.mktemp("whisper") / "model"))


def _left_over(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


# ---------------------------------------------------------------- the built-in model: ONNX


@pytest.mark.parametrize("config", [LoRAConfig(rank=4), ResidualConfig(bottleneck=8)], ids=["lora", "residual"])
def test_onnx_export_runs_in_onnxruntime_like_the_adapted_model(tmp_path, config):
    ort = pytest.importorskip("onnxruntime", reason="pip install 'workbench[export]'")
    pytest.importorskip("onnx", reason="pip install 'workbench[export]'")
    backend = tiny_backend()
    sub = _submodel(backend, tmp_path / "spk.safetensors", config)
    result = export_model(sub, "onnx", tmp_path / "out", backend=backend)
    assert result.verification.max_diff <= result.verification.tolerance
    assert result.verification.adapter_effect > 100 * result.verification.max_diff  # the check is not trivial
    assert not backend._adapted._hooks  # the live model is given back without adapters
    vocab = json.loads((tmp_path / "out" / "vocab.json").read_text())
    assert vocab["symbols"][vocab["blank_id"]] == "<blank>" and len(vocab["symbols"]) == 29
    # an independent run: three recordings of other lengths, against the adapted model in torch
    from workbench.adapters import load_submodel
    from workbench.features import pad_waveforms

    wavs = [np.random.default_rng(i).standard_normal(n).astype(np.float32) * 0.1 for i, n in
            enumerate((16000, 9000, 23000))]
    session = ort.InferenceSession(str(tmp_path / "out" / "model.onnx"), providers=["CPUExecutionProvider"])
    wav, lens = pad_waveforms(wavs)
    got, got_lens = session.run(None, {"waveform": wav.numpy(), "lengths": lens.numpy()})
    adapted, _ = load_submodel(backend, sub)
    with torch.no_grad():
        ref, ref_lens = adapted.backend.log_probs(backend.featurize(wavs))
    assert got_lens.tolist() == ref_lens.tolist()
    for i, n in enumerate(ref_lens.tolist()):
        assert np.abs(got[i, :n] - ref[i, :n].numpy()).max() < 1e-3 * max(1.0, float(ref.abs().max()))
    adapted.remove()
    card = (tmp_path / "out" / "README.md").read_text()
    assert "spk-01" in card and "Not a medical device" in card and "50.0 %" in card and "25.0 %" in card


# ---------------------------------------------------------------- Whisper: merge, hf, ggml


def test_merged_whisper_equals_the_adapted_model_and_hf_folder_loads(tmp_path, whisper):
    from transformers import WhisperForConditionalGeneration

    from workbench.export.merge import whisper_probe

    sub = _submodel(whisper, tmp_path / "spk.safetensors", LoRAConfig(rank=4, decoder=True))
    result = export_model(sub, "hf", tmp_path / "hf", backend=whisper)
    v = result.verification
    assert v.max_diff <= v.tolerance and v.adapter_effect > 100 * v.max_diff
    model = WhisperForConditionalGeneration.from_pretrained(tmp_path / "hf").eval()
    from workbench.adapters import load_submodel

    adapted, _ = load_submodel(whisper, sub)
    feats, ids = whisper_probe(adapted)
    with torch.no_grad():
        want = whisper.model(input_features=feats, decoder_input_ids=ids).logits
        got = model(input_features=feats, decoder_input_ids=ids).logits
    adapted.remove()
    assert (got - want).abs().max() < 1e-4 * max(1.0, float(want.abs().max()))
    assert {"model.safetensors", "config.json", "generation_config.json", "tokenizer.json",
            "preprocessor_config.json", "README.md"} <= {p.name for p in (tmp_path / "hf").iterdir()}


def _read_ggml(path: Path) -> tuple[list[int], np.ndarray, list[bytes], dict[str, np.ndarray]]:
    """A reader of the whisper.cpp file format, written from its description (tests only)."""
    data = path.read_bytes()
    pos = 0

    def ints(n):
        nonlocal pos
        out = struct.unpack_from(f"<{n}i", data, pos)
        pos += 4 * n
        return list(out)

    head = ints(12)
    n_mel, n_fft = ints(2)
    mel = np.frombuffer(data, "<f4", n_mel * n_fft, pos).reshape(n_mel, n_fft)
    pos += 4 * n_mel * n_fft
    (n_tok,) = ints(1)
    vocab = []
    for _ in range(n_tok):
        (n,) = ints(1)
        vocab.append(data[pos: pos + n])
        pos += n
    tensors = {}
    while pos < len(data):
        n_dims, n_name, ftype = ints(3)
        dims = ints(n_dims)
        name = data[pos: pos + n_name].decode()
        pos += n_name
        dtype = "<f2" if ftype == 1 else "<f4"
        count = int(np.prod(dims))
        tensors[name] = np.frombuffer(data, dtype, count, pos).reshape(tuple(reversed(dims)))
        pos += count * np.dtype(dtype).itemsize
    return head, mel, vocab, tensors


def test_ggml_file_holds_the_merged_weights(tmp_path, whisper):
    import librosa

    from workbench.export.ggml import GGML_MAGIC, ggml_name
    from workbench.export.merge import merged_state_dict
    from workbench.adapters import load_submodel

    sub = _submodel(whisper, tmp_path / "spk.safetensors", LoRAConfig(rank=4, decoder=True))
    export_model(sub, "ggml", tmp_path / "ggml", backend=whisper)
    head, mel, vocab, tensors = _read_ggml(tmp_path / "ggml" / "ggml-model.bin")
    cfg = whisper.model.config
    assert head == [GGML_MAGIC, cfg.vocab_size, cfg.max_source_positions, cfg.d_model, cfg.encoder_attention_heads,
                    cfg.encoder_layers, cfg.max_target_positions, cfg.d_model, cfg.decoder_attention_heads,
                    cfg.decoder_layers, cfg.num_mel_bins, 1]
    np.testing.assert_allclose(mel, librosa.filters.mel(sr=16000, n_fft=400, n_mels=80), rtol=1e-6)
    eot = whisper.tokenizer.convert_tokens_to_ids("<|endoftext|>")
    assert len(vocab) == eot and sorted(vocab[:256]) == [bytes([b]) for b in range(256)]  # byte-level tokens
    adapted, _ = load_submodel(whisper, sub)
    merged = merged_state_dict(adapted)
    adapted.remove()
    names = {ggml_name(k): k for k in merged if ggml_name(k) is not None}
    assert set(tensors) == set(names)
    for name, key in names.items():
        want = merged[key].numpy().reshape(tensors[name].shape)
        np.testing.assert_allclose(tensors[name].astype(np.float32), want, rtol=2e-3, atol=2e-3, err_msg=name)
    q = "encoder.blocks.1.attn.query.weight"
    base = dict(whisper.model.state_dict())["model.encoder.layers.1.self_attn.q_proj.weight"].numpy()
    assert np.abs(tensors[q].astype(np.float32) - base).max() > 1e-2  # the LoRA update is in the file
    assert tensors["encoder.conv1.bias"].shape == (cfg.d_model, 1) and tensors["encoder.conv1.bias"].dtype == "<f4"


# ---------------------------------------------------------------- sources and bad input


def test_unmergeable_family_is_refused_for_whisper_formats_naming_what_it_can_go_to(tmp_path, whisper):
    sub = _submodel(whisper, tmp_path / "res.safetensors", ResidualConfig(bottleneck=4))
    for fmt in ("ct2", "ggml", "hf"):
        with pytest.raises(ExportError, match="None of ct2, ggml or hf can hold it.*--family lora"):
            export_model(sub, fmt, tmp_path / fmt, backend=whisper)
        assert not (tmp_path / fmt).exists()
    with pytest.raises(ExportError, match="onnx is for the built-in model"):
        export_model(sub, "onnx", tmp_path / "onnx", backend=whisper)
    assert _left_over(tmp_path) == []


def test_whisper_formats_are_refused_for_the_built_in_model(tmp_path):
    backend = tiny_backend()
    sub = _submodel(backend, tmp_path / "spk.safetensors", LoRAConfig(rank=2))
    with pytest.raises(ExportError, match="export it with --format onnx"):
        export_model(sub, "ct2", tmp_path / "out", backend=backend)


def test_bank_needs_a_speaker_it_holds_and_exports_that_row(tmp_path):
    pytest.importorskip("onnxruntime", reason="pip install 'workbench[export]'")
    backend = tiny_backend()
    bank = _submodel(backend, tmp_path / "bank.safetensors", LoRAConfig(rank=2), ids=("ann", "bob", "cy"))
    with pytest.raises(ExportError, match="bank of 3 speakers.*--speaker ID"):
        export_model(bank, "onnx", tmp_path / "out", backend=backend)
    with pytest.raises(ExportError, match="holds no speaker 'dan'"):
        export_model(bank, "onnx", tmp_path / "out", backend=backend, speaker="dan")
    assert not (tmp_path / "out").exists()
    r = export_model(bank, "onnx", tmp_path / "out", backend=backend, speaker="bob")
    assert r.speaker_id == "bob" and "`bob`" in (tmp_path / "out" / "README.md").read_text()
    # bob's row, not ann's: the exported graph matches bob's adapter and not ann's
    import onnxruntime as ort

    from workbench.adapters import load_submodel
    from workbench.features import pad_waveforms

    wav, lens = pad_waveforms([np.random.default_rng(0).standard_normal(12000).astype(np.float32) * 0.1])
    got = ort.InferenceSession(str(tmp_path / "out" / "model.onnx")).run(None, {"waveform": wav.numpy(),
                                                                               "lengths": lens.numpy()})[0]
    adapted, _ = load_submodel(backend, bank)
    with torch.no_grad(), adapted.route([1]):
        bob = adapted.backend.log_probs(backend.featurize([wav[0].numpy()]))[0].numpy()
    with torch.no_grad(), adapted.route([0]):
        ann = adapted.backend.log_probs(backend.featurize([wav[0].numpy()]))[0].numpy()
    adapted.remove()
    assert np.abs(got - bob).max() < 1e-3 < np.abs(got - ann).max()


def test_one_speaker_file_with_another_speaker_is_refused(tmp_path):
    backend = tiny_backend()
    sub = _submodel(backend, tmp_path / "spk.safetensors", LoRAConfig(rank=2))
    with pytest.raises(ExportError, match="is speaker 'spk-01'.s personal model, not 'eve'"):
        export_model(sub, "onnx", tmp_path / "out", backend=backend, speaker="eve")


def test_submodel_for_another_base_model_is_refused(tmp_path):
    sub = _submodel(tiny_backend(seed=0), tmp_path / "spk.safetensors", LoRAConfig(rank=2))
    with pytest.raises(AdapterError, match="was trained on base model .*fingerprint"):
        export_model(sub, "onnx", tmp_path / "out", backend=tiny_backend(seed=1))
    assert not (tmp_path / "out").exists() and _left_over(tmp_path) == []


def test_unknown_base_model_name_in_the_file_is_refused_without_loading_anything(tmp_path):
    backend = tiny_backend()
    backend.name = "someone/unknown-model"
    sub = _submodel(backend, tmp_path / "spk.safetensors", LoRAConfig(rank=2))
    with pytest.raises(ExportError, match="does not know by name.*--model FOLDER"):
        export_model(sub, "onnx", tmp_path / "out")


@pytest.mark.parametrize("damage", ["not_safetensors", "rank", "family"])
def test_crafted_submodel_is_refused_and_nothing_is_written(tmp_path, damage):
    from safetensors.torch import load_file, save_file
    from safetensors import safe_open

    backend = tiny_backend()
    sub = _submodel(backend, tmp_path / "spk.safetensors", LoRAConfig(rank=2))
    if damage == "not_safetensors":
        sub.write_bytes(b"\x00" * 64)
    else:
        with safe_open(str(sub), "pt") as f:
            meta = dict(f.metadata())
        config = json.loads(meta["config"])
        if damage == "rank":
            config["rank"] = 1_000_000  # would allocate gigabytes if trusted
        else:
            config["family"] = meta["family"] = "residual"
        meta["config"] = json.dumps(config)
        save_file(load_file(str(sub)), str(sub), metadata=meta)
    with pytest.raises(AdapterError, match="damaged|not a readable|do not match|cannot be built|settings"):
        export_model(sub, "onnx", tmp_path / "out", backend=backend)
    assert not (tmp_path / "out").exists() and _left_over(tmp_path) == []


def test_existing_folder_is_refused_without_force_and_replaced_whole_with_it(tmp_path):
    pytest.importorskip("onnxruntime", reason="pip install 'workbench[export]'")
    backend = tiny_backend()
    sub = _submodel(backend, tmp_path / "spk.safetensors", LoRAConfig(rank=2))
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ExportError, match="already exists.*--force"):
        export_model(sub, "onnx", out, backend=backend)
    assert (out / "keep.txt").read_text() == "mine"
    export_model(sub, "onnx", out, backend=backend, force=True)
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "model.onnx", "vocab.json"]
    assert _left_over(tmp_path) == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(ExportError, match="not a folder"):
        export_model(sub, "onnx", tmp_path / "file", backend=backend, force=True)


@pytest.mark.parametrize("code, words", [(errno.ENOSPC, "disk is full"), (errno.EROFS, "read-only")])
def test_full_or_read_only_disk_leaves_nothing_half_written(tmp_path, monkeypatch, code, words):
    pytest.importorskip("onnxruntime", reason="pip install 'workbench[export]'")
    backend = tiny_backend()
    sub = _submodel(backend, tmp_path / "spk.safetensors", LoRAConfig(rank=2))
    out = tmp_path / "exports" / "out"
    out.mkdir(parents=True)
    (out / "old.txt").write_text("the previous export")
    if code == errno.ENOSPC:
        fail_atomic_writes(monkeypatch, code)
    else:
        read_only_open(monkeypatch)
    with pytest.raises(ExportError, match=words):
        export_model(sub, "onnx", out, backend=backend, force=True)
    monkeypatch.undo()
    assert [p.name for p in out.iterdir()] == ["old.txt"]  # the old export is untouched
    assert _left_over(out.parent) == []  # and no temporary folder is left


def test_too_little_free_space_is_said_before_any_work(tmp_path, monkeypatch):
    import shutil

    import workbench.export.output as output

    backend = tiny_backend()
    sub = _submodel(backend, tmp_path / "spk.safetensors", LoRAConfig(rank=2))
    monkeypatch.setattr(output.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(ExportError, match="disk is full.*needs about"):
        export_model(sub, "onnx", tmp_path / "out", backend=backend)
    assert not (tmp_path / "out").exists()


def test_speaker_folder_exports_its_personal_model_or_says_there_is_none(tmp_path):
    pytest.importorskip("onnxruntime", reason="pip install 'workbench[export]'")
    backend = tiny_backend()
    folder = tmp_path / "spk-01"
    (folder / "submodels").mkdir(parents=True)
    (folder / "speaker.json").write_text(json.dumps({"speaker_id": "spk-01"}))
    with pytest.raises(ExportError, match="has no personal model to export yet.*workbench personalize"):
        export_model(folder, "onnx", tmp_path / "out", backend=backend)
    _submodel(backend, folder / "submodels" / "lora-1.safetensors", LoRAConfig(rank=2))
    r = export_model(folder, "onnx", tmp_path / "out", backend=backend)
    assert r.submodel.name == "lora-1.safetensors" and "personal model of 'spk-01'" in \
        (tmp_path / "out" / "README.md").read_text()
    with pytest.raises(ExportError, match="no speaker folder or Submodel file"):
        export_model(tmp_path / "nothing", "onnx", tmp_path / "out2", backend=backend)
    with pytest.raises(ExportError, match="not a speaker folder"):
        export_model(tmp_path / "spk-01" / "submodels", "onnx", tmp_path / "out2", backend=backend)


def test_quantization_and_format_are_checked(tmp_path):
    with pytest.raises(ExportError, match="not available for hf"):
        export_model(tmp_path, "hf", tmp_path / "o", quantization="int8")
    with pytest.raises(ExportError, match="unknown format"):
        export_model(tmp_path, "tflite", tmp_path / "o")


def test_model_card_escapes_crafted_metadata_and_says_how_to_decode():
    from workbench.export.card import max_new_tokens, model_card, window_s

    meta = {"family": "lora", "config": {"family": "lora", "rank": 8}, "base_model": "whisper-tiny.en",
            "created": "2026", "training": {"utterances": "<script>", "stopped": "`rm -rf` <b>", "minutes": -4},
            "metrics": {"wer_before": float("nan"), "wer_after": 0.1, "held_out_utterances": 3}}
    card = model_card(fmt="ct2", kind="whisper", speaker_id="spk`01", meta=meta, chosen="x", details=[],
                      files=[], verification="ok")
    assert "<script>" not in card and "<b>" not in card and "spk 01" in card
    assert "not recorded" in card  # the NaN figure is not shown
    assert "MIT license" in card and "Not a medical device" in card
    assert "without_timestamps=True" in card and "temperature=0.0" in card and "ctranslate2.models.Whisper" in card
    assert max_new_tokens(3.0) == 29 and window_s(3.0) == 4


def test_model_card_says_why_training_stopped_in_the_apps_words():
    from workbench.export.card import model_card

    for training, words in (({"stopped": "time budget"}, "time limit reached"),
                            ({"stopped": "time budget", "stopped_because": "time limit reached"}, "time limit reached"),
                            ({"stopped": "early stop"}, "no more improvement")):
        meta = {"family": "lora", "config": {"family": "lora"}, "base_model": "whisper-tiny.en", "training": training}
        card = model_card(fmt="ct2", kind="whisper", speaker_id="spk-01", meta=meta, chosen="x", details=[],
                          files=[], verification="ok")
        assert f"stopped because: {words}" in card and "time budget" not in card


def test_window_s_is_the_whisper_backend_window(whisper):
    from workbench.export.card import window_s

    for seconds in (0.4, 1.0, 2.2, 2.99, 5.01, 29.5, 40.0):
        assert window_s(seconds) * 100 == whisper.window_frames(int(round(seconds * 16000)) // 160)


def test_cli_export_gives_a_plain_message_and_exit_code_2(tmp_path, capsys):
    from workbench.cli import main

    assert main(["export", str(tmp_path / "nothing"), "--format", "ct2", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("workbench export: there is no speaker folder or Submodel file") and "Traceback" not in err


def test_export_package_imports_without_torch():
    import subprocess
    import sys

    code = "import sys, workbench.export, workbench.export.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_errors_are_workbench_errors():
    assert issubclass(ExportError, WorkbenchError)


def test_the_model_cards_loop_cut_is_the_workbench_guard():
    from workbench.export.card import CUT_LOOPS_CODE, cut_loops

    scope: dict = {}
    exec(CUT_LOOPS_CODE, scope)  # the code printed in every Whisper model card
    rng = np.random.default_rng(0)
    phrase = [5, 6, 7, 8, 9, 10]
    cases = [list(rng.integers(0, 4, size=int(rng.integers(1, 40)))) for _ in range(300)]
    cases += [[1, *phrase, *phrase, *phrase, 2], [3, 3, 3], [3, 3, 3, 3, 3], [1, 2, 1, 2, 1, 2, 9]]
    cut = 0
    for ids in cases:
        ids = [int(i) for i in ids]
        assert scope["cut_loops"](ids) == cut_loops(ids), ids
        cut += len(cut_loops(ids)) < len(ids)
    assert cut > 20  # the cases do exercise the guard
    assert cut_loops([1, *phrase, *phrase, *phrase, 2]) == [1, *phrase]
