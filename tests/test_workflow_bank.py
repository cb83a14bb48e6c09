"""A bank (``train_bank``) on the same footing as one speaker's run: nothing learned is nothing saved
(issue 24 A5), and a disk without room is found before training (issue 24 B8)."""

from __future__ import annotations

import pytest

from workbench.corpus import SpeakerCorpus
from workbench.errors import TrainingError
from workbench.trainer import TrainConfig, Trainer
from workbench.workflow import NothingLearnedError, train_bank

from _models import noise_waves, tiny_backend

pytestmark = pytest.mark.filterwarnings("ignore:the (held-out|validation) set has only")

PROMPTS = ["turn on the light", "call my sister", "i am hungry", "good morning", "open the door",
           "where is my phone", "thank you very much", "i need some help", "close the window",
           "what time is it", "please pass the salt", "see you tomorrow"]


def _speakers(root) -> list:
    folders = []
    for seed, name in enumerate(("spk-a", "spk-b")):
        corpus = SpeakerCorpus.create(root, name, prompts=PROMPTS, simulated=True)
        for i, w in enumerate(noise_waves(2 * len(PROMPTS), seed=seed, lo=12000, hi=20000)):
            corpus.add_take(w * 3, prompt=PROMPTS[i % len(PROMPTS)])
        folders.append(corpus.root)
    return folders


def _config(**changes) -> TrainConfig:
    return TrainConfig(**{"max_steps": 2, "eval_every": 1, "time_limit_s": None, "min_utterances": 4,
                          "batch_size": 4, "speed_perturb": (), **changes})


def _keys(backend) -> set[str]:
    return set(backend.model.state_dict())


def test_a_bank_stopped_before_its_first_check_saves_nothing(tmp_path) -> None:
    """The time limit ended the run before any step (the check at step 0 alone took longer): the
    bank's adapter is untrained, so no file is written and the error says so (it was saved as a bank)."""
    backend = tiny_backend()
    keys = _keys(backend)
    out = tmp_path / "out" / "bank.safetensors"
    with pytest.raises(NothingLearnedError, match="Stopped before the first check: nothing learned yet") as err:
        train_bank(_speakers(tmp_path / "data"), out, backend=backend, config=_config(time_limit_s=1e-4),
                   decoder="greedy", progress=False)
    said = str(err.value)
    assert "The bank is checked" in said and "after 0 (time limit reached)" in said and "no bank was saved" in said
    assert not out.exists() and not list(tmp_path.glob("out/*"))
    assert _keys(backend) == keys  # the untrained adapter was taken out of the given base model


def test_a_bank_on_a_disk_without_room_is_refused_before_training(tmp_path, monkeypatch) -> None:
    import workbench._disk as disk

    backend = tiny_backend()
    keys = _keys(backend)
    monkeypatch.setattr(disk, "free_bytes", lambda folder: 300_000)  # a few hundred KB: the write test passes

    def refuse(*args, **kwargs):
        raise AssertionError("the bank trained on a disk without room for it")

    monkeypatch.setattr(Trainer, "fit", refuse)
    out = tmp_path / "out" / "bank.safetensors"
    with pytest.raises(TrainingError, match=r"not enough room.*0\.3 MB free.*Nothing was trained") as err:
        train_bank(_speakers(tmp_path / "data"), out, backend=backend, config=_config(), decoder="greedy",
                   progress=False)
    assert err.value.__cause__ is None and not out.exists()
    assert _keys(backend) == keys


def test_a_bank_with_room_trains_and_saves(tmp_path, monkeypatch) -> None:
    """The check asks for what the bank needs (twice its estimated size), not more."""
    import workbench._disk as disk

    backend = tiny_backend()
    asked = []
    real = disk.check_room

    def spy(needs, **kwargs):
        asked.append(dict(needs))
        return real(needs, **kwargs)

    monkeypatch.setattr(disk, "check_room", spy)
    out = tmp_path / "out" / "bank.safetensors"
    run = train_bank(_speakers(tmp_path / "data"), out, backend=backend, config=_config(), decoder="greedy",
                     progress=False)
    assert run.path == out and out.is_file()
    from workbench.adapters.io import read_submodel

    training = read_submodel(out)[1]["training"]  # why it stopped, in the app's words too (trainer.STOP_REASONS)
    assert (training["stopped"], training["stopped_because"]) == ("max steps", "step limit reached")
    (folder, need), = asked[0].items()
    assert folder == out.parent and out.stat().st_size <= need < 4 * out.stat().st_size + (1 << 20)
    run.adapted.remove()
