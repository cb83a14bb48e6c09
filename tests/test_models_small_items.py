"""Small hostile-input items of issue 24 (B17): a ``--model`` name over 255 characters, and
``workbench models`` when a size's ``metrics.json`` holds text where numbers belong."""

from __future__ import annotations

import dataclasses
import json

import pytest
import soundfile as sf
from conftest import make_speechlike

from workbench.cli import main
from workbench.errors import WorkbenchError
from workbench.models.supernet import model as supernet, sizes
from workbench.models.loading import load_hf_model
from workbench.models import load_base_model
from workbench.models.tiny import save_tiny

from _models import tiny_backend

LONG = "x" * 300


@pytest.mark.parametrize("name", [LONG, f"/tmp/{LONG}/model", f"models/{LONG}", "é" * 130])
def test_a_model_name_over_255_characters_is_a_plain_error(name) -> None:
    with pytest.raises(WorkbenchError, match="longer than 255"):
        load_base_model(name)


def test_load_hf_model_treats_an_over_long_name_as_no_folder() -> None:
    with pytest.raises(WorkbenchError):  # was OSError: [Errno 36] File name too long
        load_hf_model(f"/tmp/{LONG}")


def test_the_cli_says_so_without_a_traceback(tmp_path, capsys) -> None:
    wav = tmp_path / "take.wav"
    sf.write(wav, make_speechlike(1.0, seed=0), 16000)
    assert main(["transcribe", str(wav), "--model", LONG]) != 0
    err = capsys.readouterr().err
    assert "longer than 255" in err and "Traceback" not in err


METRICS = {
    "text WER": {"results": {"heldout_voices_heldout_texts": {"greedy": {"wer": "0.25"}}}},
    "results a list": {"results": [1, 2]},
    "decoder a list": {"results": {"heldout_voices_heldout_texts": {"greedy": [0.2]}}},
    "negative WER": {"results": {"heldout_voices_heldout_texts": {"greedy": {"wer": -1}}}},
    "WER true": {"results": {"heldout_voices_heldout_texts": {"greedy": {"wer": True}}}},
}


def _save_small(root) -> None:
    """A built-in model saved as the installed 'small' size (its config names the size, as load_size checks)."""
    model = tiny_backend().model
    model.cfg = dataclasses.replace(model.cfg, size="small")
    save_tiny(model, root / "tiny-small")


CARDS_NOT_A_DICT = {"a list": "[1, 2, 3]", "text": '"fast and good"', "not JSON": "{"}


@pytest.mark.parametrize("case", [c for c in METRICS if isinstance(METRICS[c], dict)] + ["NaN"])
def test_models_lists_a_size_whose_metrics_hold_text(case, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(supernet, "_sizes_root", lambda: tmp_path)
    monkeypatch.setattr(sizes, "measure_rtf", lambda backend, seconds=2.0: 0.01)
    _save_small(tmp_path)
    text = {"NaN": '{"results": {"heldout_voices_heldout_texts": {"greedy": {"wer": NaN}}}}'}
    (tmp_path / "tiny-small" / "metrics.json").write_text(text[case] if case in text else json.dumps(METRICS[case]))
    assert [r.heldout_wer for r in sizes.size_table(measure=False) if r.model == "tiny-small"] == [None]
    assert main(["models", "--seconds", "0.01"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("tiny-small"))
    assert " ? " in row


@pytest.mark.parametrize("case", list(CARDS_NOT_A_DICT))
def test_models_refuses_a_size_whose_card_is_not_a_card(case, tmp_path, monkeypatch, capsys) -> None:
    """A model card that is not a JSON object is a damaged size folder: a plain message, no traceback."""
    monkeypatch.setattr(supernet, "_sizes_root", lambda: tmp_path)
    monkeypatch.setattr(sizes, "measure_rtf", lambda backend, seconds=2.0: 0.01)
    _save_small(tmp_path)
    (tmp_path / "tiny-small" / "metrics.json").write_text(CARDS_NOT_A_DICT[case])
    assert main(["models", "--seconds", "0.01"]) == 2
    err = capsys.readouterr().err
    assert "cannot be read as a model card" in err and "Traceback" not in err


def test_a_good_metrics_file_is_still_shown(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(supernet, "_sizes_root", lambda: tmp_path)
    _save_small(tmp_path)
    (tmp_path / "tiny-small" / "metrics.json").write_text(json.dumps(
        {"results": {"heldout_voices_heldout_texts": {"lexicon_beam": {"wer": 0.25}, "greedy": {"wer": 0.5}}}}))
    assert [r.heldout_wer for r in sizes.size_table(measure=False) if r.model == "tiny-small"] == [0.25]
