"""``models.hf.hub_cache_folder``: the one offline look-up of the hub cache (models/loading.py and
models/whisper/weights.py each had their own copy)."""

from __future__ import annotations

import pytest


def test_a_cached_model_is_found_complete_only_with_what_is_asked(tmp_path, monkeypatch) -> None:
    constants = pytest.importorskip("huggingface_hub.constants")
    from workbench.models.hf import hub_cache_folder

    repo = tmp_path / "hub" / "models--acme--voice"
    snapshot = repo / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert hub_cache_folder("acme/voice") is None  # no config.json: not a model
    (snapshot / "config.json").write_text("{}")
    assert hub_cache_folder("acme/voice") == snapshot
    assert hub_cache_folder("acme/voice", weights=True) is None  # the weights are not there
    (snapshot / "model.safetensors").write_bytes(b"")
    assert hub_cache_folder("acme/voice", weights=True) == snapshot
    assert hub_cache_folder("acme/other") is None  # not cached: no network asked, just None
