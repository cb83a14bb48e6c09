"""bench/bench_todm_sizes.py --quick on the shipped sizes: every size personalizes, and the largest size's
adapter is cut for each smaller size and scored on the same test phrases."""

import json

import pytest

from workbench.models.supernet.model import installed_sizes


@pytest.mark.skipif(len(installed_sizes()) < 3, reason="the three sizes are not installed (recipes/todm/README.md)")
def test_bench_todm_sizes_quick(tmp_path, monkeypatch):
    import bench._common
    from bench.bench_todm_sizes import main

    monkeypatch.setattr(bench._common, "RESULTS_DIR", tmp_path)
    main(["--quick"])
    res = json.loads((tmp_path / "todm_sizes_quick.json").read_text())
    assert list(res["sizes"]) == ["small", "medium", "large"]
    (row,) = res["rows"]
    own = {o["size"]: o for o in row["own"]}
    assert set(own) == {"small", "medium", "large"} and all(o["steps"] <= 4 for o in own.values())
    assert [s["size"] for s in row["sliced"]] == ["small", "medium"]
    for s in row["sliced"]:
        assert s["sliced_for"] == s["size"]
        # the same base size, test phrases and decoder: the WER before personalization is the same figure
        assert s["wer_before"] == pytest.approx(own[s["size"]]["wer_before"])
    sandwich = row["sandwich"]  # trained on the largest size with the sandwich rule, cut for the others
    assert sandwich["size"] == "large" and sandwich["steps"] <= 4
    assert sandwich["wer_before"] == pytest.approx(own["large"]["wer_before"])
    assert [s["size"] for s in sandwich["sliced"]] == ["small", "medium"]
    assert not (tmp_path / "todm_sizes_quick.partial.json").exists()
