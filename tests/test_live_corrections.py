"""Corrections that teach the personal model: saved as takes from use, the split rule, the report's count,
and the plain refusals (no words, a training run using the folder)."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.adapters import ResidualConfig
from workbench.corpus import SpeakerCorpus
from workbench.errors import CorpusError, TrainingBusyError
from workbench.live import from_use, save_correction
from workbench.live.corrections import use_counts
from workbench.trainer import TrainConfig
from workbench.workflow import finish, prepare, three_way_split, train
from workbench.workflow.busy import training_lock

from _models import noise_waves, tiny_backend
from conftest import make_speechlike

pytestmark = pytest.mark.filterwarnings("ignore:the (held-out|validation) set has only")

PROMPTS = ["turn on the light", "call my sister", "i am hungry", "good morning", "open the door",
           "where is my phone", "thank you very much", "i need some help", "close the window",
           "what time is it", "please pass the salt", "see you tomorrow"]


@pytest.fixture
def speaker(tmp_path):
    corpus = SpeakerCorpus.create(tmp_path / "data", "spk-use", prompts=PROMPTS, simulated=True)
    for i, w in enumerate(noise_waves(24, seed=7, lo=12000, hi=20000)):
        corpus.add_take(w * 3, prompt=PROMPTS[i % len(PROMPTS)])
    return corpus


def test_a_correction_is_a_take_marked_as_coming_from_use(speaker) -> None:
    take = save_correction(speaker.root, "Put the kettle on!", make_speechlike(1.5), caption="but the cattle on")
    assert take.status == "ok" and from_use(take) and take.extra["caption"] == "but the cattle on"
    again = SpeakerCorpus.open(speaker.root).utterances()
    assert [u.utt_id for u in again if from_use(u)] == [take.utt_id]
    assert np.allclose(speaker.load_audio(take)[:100], speaker.load_audio(take.utt_id)[:100])
    assert sum(from_use(u) for u in again) == 1 and not any(from_use(u) for u in again[:-1])


def test_a_correction_carries_the_speakers_latest_consent(speaker) -> None:
    assert save_correction(speaker.root, "good night", make_speechlike(1.0)).consent_id is None  # none recorded
    speaker.add_consent("consent-2026-01", text="recordings for a personal model")
    speaker.add_consent("consent-2026-06", text="and corrections made while using it")
    take = save_correction(speaker.root, "good morning", make_speechlike(1.0))
    assert take.consent_id == "consent-2026-06"
    assert SpeakerCorpus.open(speaker.root).utterances()[-1].consent_id == "consent-2026-06"


def test_a_correction_with_no_words_is_refused_and_nothing_is_written(speaker) -> None:
    before = len(speaker.utterances(None))
    for text in ("", "   ", "?!", None):
        with pytest.raises(CorpusError, match="no words"):
            save_correction(speaker.root, text, make_speechlike(1.0))
    assert len(speaker.utterances(None)) == before


def test_a_correction_without_audio_is_refused(speaker) -> None:
    from workbench.errors import AudioError

    with pytest.raises(AudioError, match="no audio"):
        save_correction(speaker.root, "hello", np.zeros(0, np.float32))


def test_a_correction_while_a_training_run_uses_the_folder_waits(speaker) -> None:
    before = len(speaker.utterances(None))
    with training_lock(speaker.root):
        with pytest.raises(TrainingBusyError, match="training run is using"):
            save_correction(speaker.root, "put the kettle on", make_speechlike(1.5))
    assert len(speaker.utterances(None)) == before
    save_correction(speaker.root, "put the kettle on", make_speechlike(1.5))  # after the run: saved
    assert len(speaker.utterances(None)) == before + 1


def test_corrections_join_training_never_the_test_phrases(speaker) -> None:
    train0, valid0, test0 = three_way_split(speaker, test_fraction=0.25, seed=0)
    test_prompt = test0[0].prompt
    new = save_correction(speaker.root, "put the kettle on", make_speechlike(1.5))
    same_as_test = save_correction(speaker.root, test_prompt.upper() + "!", make_speechlike(1.5))
    train1, valid1, test1 = three_way_split(speaker, test_fraction=0.25, seed=0)
    assert [u.utt_id for u in test1] == [u.utt_id for u in test0]  # the test phrases do not move
    pool = [u.utt_id for u in train1 + valid1]
    assert new.utt_id in pool and same_as_test.utt_id not in pool
    assert sorted(pool) == sorted([u.utt_id for u in train0 + valid0] + [new.utt_id])
    counts = use_counts(speaker.utterances("ok"), train1 + valid1, test1)
    assert counts == {"from_use": 1, "kept_out": 1}
    train2, valid2, test2 = three_way_split(speaker, test_fraction=0.25, seed=0, max_train=4)
    assert test2 == test1 and len([u for u in train2 + valid2 if not from_use(u)]) == 4
    assert [u.utt_id for u in train2 + valid2 if from_use(u)] == [new.utt_id]  # max_train caps prompted takes only


def test_the_report_counts_takes_from_use(speaker, tmp_path) -> None:
    for i, text in enumerate(["put the kettle on", "feed the cat", "lock the car"]):
        save_correction(speaker.root, text, noise_waves(1, seed=20 + i, lo=14000, hi=16000)[0] * 3)
    _, _, test = three_way_split(speaker, test_fraction=0.25, seed=0)
    save_correction(speaker.root, test[0].prompt, noise_waves(1, seed=30, lo=14000, hi=16000)[0] * 3)
    config = TrainConfig(adapter=ResidualConfig(bottleneck=4), max_steps=3, time_limit_s=None, eval_every=2,
                         batch_size=4, min_utterances=4)
    out = tmp_path / "out"
    plan = prepare(speaker.root, backend=tiny_backend(), config=config, submodel_dir=out, report_dir=out)
    assert sum(from_use(u) for u in plan.corpus.utterances()) == 4
    assert not {e.text for e in plan.held_out} & {"put the kettle on", "feed the cat", "lock the car"}
    train(plan, progress=False)
    run = finish(plan)
    html = run.report_html.read_text()
    assert "from use (corrected live captions)" in html and "kept out of training" in html
    from workbench.adapters.io import read_submodel

    assert read_submodel(run.submodel_path)[1]["training"]["from_use"] == 3
    run.adapted.remove()
