"""The Results page's downloads of the personal model for other engines (workbench/app_pages/downloads.py)."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pytest

from tests._models import tiny_backend
from tests.test_export import _submodel
from workbench.adapters import LoRAConfig

pytest.importorskip("panel")
pytest.importorskip("onnxruntime", reason="pip install 'workbench[export]'")
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def app_ctx(tmp_path, monkeypatch):
    from workbench.app_pages.common import AppContext

    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))
    data = tmp_path / "data"
    shutil.copytree(ROOT / "sample_data" / "sim-stutter", data / "sim-stutter")
    return AppContext(data_dir=data, backend_factory=lambda name: tiny_backend())


def test_downloads_offer_the_formats_of_the_personal_model_and_zip_it_once(app_ctx, monkeypatch):
    from workbench.app_pages.common import SessionState
    from workbench.app_pages.downloads import ExportDownloads

    state = SessionState()
    block = ExportDownloads(app_ctx, state)
    assert not any(b.visible for b in block.buttons.values())
    state.speaker_id = "sim-stutter"
    assert not any(b.visible for b in block.buttons.values()) and "beats the base model" in block.note.object
    sub = app_ctx.data_dir / "sim-stutter" / "submodels" / "lora-1.safetensors"
    sub.parent.mkdir(exist_ok=True)
    backend = tiny_backend()
    backend.name = "workbench-tiny"  # a built-in-model personal model
    _submodel(backend, sub, LoRAConfig(rank=2), ids=("sim-stutter",))
    block.refresh()
    assert [f for f, b in block.buttons.items() if b.visible] == ["onnx"]
    path = Path(block.download("onnx"))
    with zipfile.ZipFile(path) as zf:
        names = sorted(n.split("/", 1)[1] for n in zf.namelist())
        card = zf.read(next(n for n in zf.namelist() if n.endswith("README.md"))).decode()
    assert names == ["README.md", "model.onnx", "vocab.json"] and "sim-stutter" in card
    import workbench.export.pipeline as pipeline

    monkeypatch.setattr(pipeline, "export_model", lambda *a, **k: pytest.fail("exported twice"))
    assert block.download("onnx") == str(path)  # the same Submodel: the zip is reused
    assert "Prepared" in block.message.object
    # the speaker folder is not written to
    assert sorted(p.name for p in (app_ctx.data_dir / "sim-stutter").iterdir()) == \
        sorted(["audio", "manifest.jsonl", "prompts.txt", "speaker.json", "submodels"])


def test_a_refused_export_is_shown_in_the_page(app_ctx):
    from workbench.app_pages.common import SessionState
    from workbench.app_pages.downloads import ExportDownloads

    sub = app_ctx.data_dir / "sim-stutter" / "submodels" / "lora-1.safetensors"
    sub.parent.mkdir(exist_ok=True)
    backend = tiny_backend()
    backend.name = "workbench-tiny"
    _submodel(backend, sub, LoRAConfig(rank=2), ids=("sim-stutter",))
    state = SessionState(speaker_id="sim-stutter")
    block = ExportDownloads(app_ctx, state)
    assert block.download("ct2") is None  # a built-in-model personal model cannot go to faster-whisper
    assert "--format onnx" in block.message.object and not list((app_ctx.data_dir.parent / "cache").rglob("*.zip"))


def test_results_page_shows_the_download_block(app_ctx):
    from workbench.app_pages.common import SessionState
    from workbench.app_pages.downloads import ExportDownloads
    from workbench.app_pages.results import ResultsPage

    import panel as pn

    page = ResultsPage(app_ctx, SessionState())
    texts = [str(p.object) for p in page.__panel__().select(pn.pane.HTML)]
    assert any("Take the personal model to another program" in t for t in texts)
    block = page._export_downloads
    page.__panel__()
    assert page._export_downloads is block and isinstance(block, ExportDownloads)  # made once
