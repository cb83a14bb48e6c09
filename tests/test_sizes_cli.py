"""``--size small|medium|large|auto`` on the command line, and size folders that lie (issue 29)."""

from __future__ import annotations

import json
import resource

import numpy as np
import pytest
import torch

from workbench.errors import ModelImportError, ModelSizeError
from workbench.models.supernet.model import SearchSpace, SubnetChoice, Supernet, installed_sizes
from workbench.models.tiny import TinyConfig, TinyConformerCTC, save_tiny

SMALL = SubnetChoice(2, 16, 1, 8)
LARGE = SubnetChoice(3, 48, 3, 24)
SPACE = SearchSpace(depths=(2, 3), ffns=(16, 32, 48), heads=(1, 2, 3), convs=(8, 16, 24),
                    sizes=(("small", SMALL), ("large", LARGE)))


@pytest.fixture
def sizes_root(tmp_path, monkeypatch):
    """An empty folder standing for workbench/data/models (the shipped sizes live there)."""
    from workbench.models.supernet import model as supernet

    root = tmp_path / "models"
    root.mkdir()
    monkeypatch.setattr(supernet, "_sizes_root", lambda: root)
    return root


def _install(root, names=("small", "large")) -> Supernet:
    torch.manual_seed(0)
    cfg = TinyConfig(d_model=24, num_layers=3, num_heads=3, ff_mult=2, conv_kernel=5, subsample_channels=4)
    sn = Supernet(TinyConformerCTC(cfg), SPACE).eval()
    for name in names:
        save_tiny(sn.extract(name).eval(), root / f"tiny-{name}", fp16=True)
    return sn


@pytest.fixture
def wav(tmp_path):
    import soundfile as sf

    path = tmp_path / "a.wav"
    sf.write(path, (0.05 * np.random.default_rng(0).standard_normal(16000)).astype(np.float32), 16000)
    return str(path)


def _fake_rtf(monkeypatch, rtf_of):
    """Timings faked by size: ``rtf_of(backend name) -> seconds per second of audio``; returns the calls."""
    from workbench.models.supernet import sizes

    timed = []

    def fake(backend, seconds=2.0):
        timed.append(backend.name)
        return rtf_of(backend.name)

    monkeypatch.setattr(sizes, "measure_rtf", fake)
    return timed


def test_size_auto_picks_the_largest_size_within_the_budget(sizes_root, wav, monkeypatch, capsys):
    from workbench.cli import main
    from workbench.models.supernet.sizes import DEFAULT_RTF_BUDGET

    _install(sizes_root)
    over, under = 1.5 * DEFAULT_RTF_BUDGET, 0.5 * DEFAULT_RTF_BUDGET
    timed = _fake_rtf(monkeypatch, lambda name: over if name.endswith("large") else under)
    assert main(["transcribe", wav, "--size", "auto"]) == 0
    err = capsys.readouterr().err
    assert "workbench-tiny-small" in err and "the largest size that runs in real time here" in err
    assert f"measured {under:.3f}" in err and f"budget {DEFAULT_RTF_BUDGET:g}" in err
    assert timed == ["workbench-tiny-large", "workbench-tiny-small"]  # largest first, stops at the first fit
    # a faster machine: the large size fits
    _fake_rtf(monkeypatch, lambda name: under)
    assert main(["transcribe", wav, "--size", "auto"]) == 0
    assert "workbench-tiny-large" in capsys.readouterr().err
    # nothing fits: the fastest, said so
    _fake_rtf(monkeypatch, lambda name: 3 * over if name.endswith("large") else over)
    assert main(["transcribe", wav, "--size", "auto"]) == 0
    err = capsys.readouterr().err
    assert "workbench-tiny-small" in err and "no size meets the budget" in err


def test_a_named_size_and_the_refusals(sizes_root, wav, capsys):
    from workbench.cli import build_parser, main

    assert main(["transcribe", wav, "--size", "small"]) == 2  # not installed: how to make it
    err = capsys.readouterr().err
    assert "'small' size of the built-in model is not installed" in err and "recipes/train_supernet.py" in err
    _install(sizes_root, ("small",))
    assert main(["transcribe", wav, "--size", "small"]) == 0
    assert "workbench-tiny-small (the small size of the built-in model, chosen by you)" in capsys.readouterr().err
    card = {"fingerprint": None, "results": {"heldout_voices_heldout_texts": {"lexicon_beam": {"wer": 0.417}}}}
    (sizes_root / "tiny-small" / "metrics.json").write_text(json.dumps(card))  # what the size gives up is said
    assert main(["transcribe", wav, "--size", "small"]) == 0
    assert "chosen by you; held-out WER 41.7 %, the built-in model without --size" in capsys.readouterr().err
    assert main(["transcribe", wav, "--size", "small", "--model", "whisper-tiny.en"]) == 2
    assert "--size chooses a size of the built-in model" in capsys.readouterr().err
    for cmd in (["personalize", "spk"], ["listen"], ["transcribe", wav]):
        assert build_parser().parse_args([*cmd, "--size", "medium"]).size == "medium"
        with pytest.raises(SystemExit):
            build_parser().parse_args([*cmd, "--size", "huge"])


def test_size_auto_without_sizes_says_how_to_make_them(sizes_root, wav, capsys):
    from workbench.cli import main

    assert main(["transcribe", wav, "--size", "auto"]) == 0  # the built-in model, and how to get the sizes
    err = capsys.readouterr().err
    assert "no sizes of it are installed" in err and "python recipes/train_supernet.py" in err


def test_a_supernet_adapter_serves_the_size_in_use(sizes_root, wav, tmp_path, capsys):
    from workbench.adapters import LoRAConfig, inject
    from workbench.cli import main
    from workbench.models import load_base_model
    from workbench.models.supernet.adapters import mark_supernet_adapter

    _install(sizes_root)
    large = load_base_model("tiny", size="large")
    adapted = inject(large, LoRAConfig(rank=2))
    path = adapted.save(tmp_path / "p.safetensors", speaker_ids=["spk"])
    assert mark_supernet_adapter(path, large, SPACE)
    assert main(["transcribe", wav, "--size", "small", "--adapter", str(path)]) == 0
    assert "trained on the large size; it is cut for the small size" in capsys.readouterr().err


# ------------------------------------------------------------------ size folders that lie
def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_a_crafted_size_config_gets_a_plain_error_and_allocates_nothing(sizes_root):
    from workbench.models import load_base_model

    _install(sizes_root, ("small",))
    card = sizes_root / "tiny-small" / "config.json"
    good = json.loads(card.read_text())
    for field, value in (("d_model", 2 ** 20), ("num_layers", 10 ** 6), ("ff_hidden", 2 ** 24), ("vocab_size", -1)):
        card.write_text(json.dumps({**good, "config": {**good["config"], field: value}}))
        before = _peak_mb()
        with pytest.raises(ModelImportError) as err:
            load_base_model("tiny", size="small")
        assert field in str(err.value) or "blocks" in str(err.value) or "shape" in str(err.value)
        assert "copy the folder again" in str(err.value)
        assert _peak_mb() - before < 100  # a model of the claimed size would need gigabytes
    card.write_text(json.dumps({**good, "config": {**good["config"], "size": "large"}}))
    with pytest.raises(ModelSizeError, match="should hold the 'small' size .* says 'large'"):
        load_base_model("tiny-small")


def test_a_model_card_of_other_weights_is_refused(sizes_root):
    from workbench.models import load_base_model
    from workbench.models.supernet.sizes import MAX_CARD_BYTES, size_table

    _install(sizes_root, ("small",))
    folder = sizes_root / "tiny-small"
    real = load_base_model("tiny", size="small").fingerprint()
    (folder / "metrics.json").write_text(json.dumps({"fingerprint": real, "results": {}}))
    assert load_base_model("tiny", size="small").fingerprint() == real  # its own card: fine
    (folder / "metrics.json").write_text(json.dumps({"fingerprint": "0" * 64}))
    with pytest.raises(ModelSizeError, match="describes other weights"):
        load_base_model("tiny", size="small")
    with pytest.raises(ModelSizeError, match="describes other weights"):
        size_table(measure=False)
    (folder / "metrics.json").write_text("[" * 100000)
    with pytest.raises(ModelSizeError, match="cannot be read as a model card"):
        load_base_model("tiny", size="small")
    with open(folder / "metrics.json", "wb") as f:  # sparse: huge on paper, nothing on the disk
        f.truncate(50 * MAX_CARD_BYTES)
    before = _peak_mb()
    with pytest.raises(ModelSizeError, match="not a model card"):
        load_base_model("tiny", size="small")
    assert _peak_mb() - before < 20  # never read


def test_the_app_offers_the_sizes_and_says_which_runs_and_why(sizes_root, monkeypatch):
    pytest.importorskip("panel")
    from types import SimpleNamespace

    from workbench.app_pages.common import default_models
    from workbench.app_pages.personalize import PersonalizePage
    from workbench.models.supernet.sizes import sized_model

    assert "tiny-auto" not in default_models().values()  # no sizes installed: not offered
    _install(sizes_root)
    models = default_models()
    assert {"tiny-auto", "tiny-small", "tiny-large"} <= set(models.values())
    _fake_rtf(monkeypatch, lambda name: 0.9 if name.endswith("large") else 0.1)
    model, reason = sized_model("auto")
    page = SimpleNamespace(ctx=SimpleNamespace(models=models), _size_reason=reason)
    label = PersonalizePage._model_label(page, model)
    assert model == "tiny-small" and "workbench-tiny-small" in label and "largest size that runs in real time" in label
    page._size_reason = ""
    assert PersonalizePage._model_label(page, "tiny-large") == "Built-in model, large size"


# ------------------------------------------------------------------ the shipped sizes: one adapter for every size
@pytest.mark.skipif(len(installed_sizes()) < 3, reason="the three sizes are not installed (recipes/todm/README.md)")
def test_personalizing_the_largest_size_trains_one_adapter_for_every_size(tmp_path):
    """``--size large`` (or auto picking it) trains with the sandwich rule; another size trains its own."""
    import shutil

    from workbench.demo import DEMO_SPEAKER, default_sample_dir
    from workbench.models import load_base_model
    from workbench.models.supernet.adapters import SandwichLoRA, load_for_size
    from workbench.workflow import finish, prepare, train

    speaker = tmp_path / DEMO_SPEAKER
    shutil.copytree(default_sample_dir() / DEMO_SPEAKER, speaker)
    small = load_base_model("tiny", size="small")
    plan = prepare(speaker, backend=small, settings={"max_steps": 2})
    assert not isinstance(plan.trainer.adapted, SandwichLoRA)  # a smaller size: its own adapter
    plan.release()
    large = load_base_model("tiny", size="large")
    plan = prepare(speaker, backend=large, settings={"max_steps": 2})
    try:
        assert isinstance(plan.trainer.adapted, SandwichLoRA)
        train(plan, progress=False)
        run = finish(plan)
    finally:
        plan.release()
    from workbench.adapters.io import read_submodel

    assert read_submodel(run.submodel_path)[1]["supernet"]["made_for"] == "large"  # marked when saved
    adapted, meta = load_for_size(small, run.submodel_path)  # the file serves the small size, cut
    assert meta["sliced_for"] == "small"
    adapted.remove()
