"""A crafted built-in-model folder is refused before any model is built (issue 24, B10: a crafted
``config.json`` reached 7.5 GB in 24 s, and every bad field gave a traceback)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch

import workbench.models.tiny as tiny
from workbench.errors import ModelImportError, WorkbenchError
from workbench.models import load_base_model
from workbench.models.tiny import TinyConfig, TinyConformerCTC, load_tiny, save_tiny
from workbench.models.tiny_files import state_shapes

from _models import tiny_backend


@pytest.mark.parametrize("cfg", [
    TinyConfig(),
    TinyConfig(d_model=32, num_layers=3, num_heads=2, ff_mult=2, conv_kernel=5, subsample_channels=8, n_mels=40),
    TinyConfig(d_model=48, num_layers=2, num_heads=3, ff_hidden=40, head_dim=6, conv_channels=20, size="small"),
])
def test_state_shapes_match_the_model_they_describe(cfg) -> None:
    with torch.device("meta"):
        model = TinyConformerCTC(cfg, fbank=torch.zeros(257, cfg.n_mels))
    assert state_shapes(cfg) == {k: tuple(v.shape) for k, v in model.state_dict().items()}


@pytest.fixture
def folder(tmp_path):
    """A small built-in-model folder (3 blocks, 32 wide) that loads."""
    out = tmp_path / "model"
    save_tiny(tiny_backend().model, out)
    assert load_tiny(out).num_layers == 3
    return out


def _edit(folder, **fields) -> None:
    card = json.loads((folder / "config.json").read_text())
    card["config"].update(fields)
    (folder / "config.json").write_text(json.dumps(card))


@pytest.fixture
def nothing_built(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a model was built before the folder was checked")

    monkeypatch.setattr(tiny, "TinyConformerCTC", refuse)


BAD_FIELDS = {
    "huge width": ({"d_model": 2 ** 20}, "d_model|shape"),
    "huge depth": ({"num_layers": 10 ** 9}, "1000000000 encoder blocks"),
    "huge vocabulary": ({"vocab_size": 2 ** 40}, "head.weight"),
    "huge feed-forward": ({"ff_hidden": 10 ** 8}, "fc1"),
    "negative depth": ({"num_layers": -3}, "num_layers"),
    "zero heads": ({"num_heads": 0}, "num_heads"),
    "negative kernel": ({"conv_kernel": -5}, "conv_kernel"),
    "text width": ({"d_model": "32"}, "d_model"),
    "true as a number": ({"num_heads": True}, "num_heads"),
    "fraction": ({"ff_mult": 1.5}, "ff_mult"),
    "list": ({"n_mels": [80]}, "n_mels"),
    "null width": ({"d_model": None}, "d_model"),
    "dropout NaN": ({"dropout": float("nan")}, "dropout"),
    "dropout above 1": ({"dropout": 3}, "dropout"),
    "size not a name": ({"size": "../../etc"}, "size"),
    "unknown field": ({"layers_extra": 4}, "not a setting"),
    "even kernel": ({"conv_kernel": 4}, "odd"),
    "heads do not divide": ({"num_heads": 3}, "divisible"),
    "other width": ({"d_model": 64}, "shape"),
    "other kernel": ({"conv_kernel": 7}, "conv.dw.weight"),
    "other mel bins": ({"n_mels": 64}, "shape"),
    "more blocks": ({"num_layers": 4}, "4 encoder blocks"),
    "fewer blocks": ({"num_layers": 2}, "2 encoder blocks"),
}


@pytest.mark.parametrize("case", list(BAD_FIELDS))
def test_a_bad_config_field_is_a_plain_error_before_anything_is_built(case, folder, nothing_built) -> None:
    fields, words = BAD_FIELDS[case]
    _edit(folder, **fields)
    with pytest.raises(ModelImportError, match=words) as err:
        load_tiny(folder)
    assert err.value.__cause__ is None and str(folder) in str(err.value)
    with pytest.raises(ModelImportError):  # --model DIR takes the same path
        load_base_model(str(folder))


@pytest.mark.parametrize("text", ["[1, 2]", "{\"architecture\": \"workbench-tiny\", \"config\": [1]}",
                                  "{\"architecture\": \"workbench-tiny\"}", "not json", "[" * 100000],
                         ids=["a list", "config a list", "no config", "not JSON", "deep nesting"])
def test_a_config_that_is_not_a_config_is_a_plain_error(text, folder, nothing_built) -> None:
    (folder / "config.json").write_text(text)
    with pytest.raises(WorkbenchError):
        load_tiny(folder)


def test_weights_that_do_not_match_the_config_are_refused(folder, nothing_built) -> None:
    from safetensors.torch import load_file, save_file

    sd = load_file(str(folder / "model.safetensors"))
    sd["blocks.0.extra"] = torch.zeros(3)
    save_file(sd, str(folder / "model.safetensors"))
    with pytest.raises(ModelImportError, match="does not describe"):
        load_tiny(folder)
    del sd["blocks.0.extra"]
    sd["head.weight"] = sd["head.weight"].to(torch.int32)
    save_file(sd, str(folder / "model.safetensors"))
    with pytest.raises(ModelImportError, match="I32"):
        load_tiny(folder)
    (folder / "model.safetensors").write_bytes(b"\x08" + bytes(20))
    with pytest.raises(ModelImportError, match="not a readable weights file"):
        load_tiny(folder)


def test_a_huge_config_allocates_nothing_big(folder) -> None:
    """In a fresh process: the peak memory does not grow while the crafted folder is refused
    (before the fix, this config built a ~200 MB model before failing)."""
    _edit(folder, d_model=1024, ff_mult=2)
    code = textwrap.dedent(f"""
        import resource, sys
        from workbench.models.tiny import load_tiny
        load_tiny()  # warm: imports and the shipped model
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            load_tiny({str(folder)!r})
        except Exception:  # before the fix: a RuntimeError after the model was built
            pass
        print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
        """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert int(out.stdout.split()[-1]) < 50, out.stdout  # MB of peak growth
