"""What personalization says when the recordings cannot be used (issue 24 B16).

Every take rejected: it said "no validation recordings"; now it says that every take was
rejected and why. One 45 s take stopped the whole run with "waveform 0 is 45.0 s long",
naming no take; now that take is left out, named with its sentence, and the run goes on.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from workbench.adapters import ResidualConfig
from workbench.corpus import SpeakerCorpus
from workbench.dataset import Example
from workbench.errors import CorpusError, TrainingError
from workbench.notices import Notice
from workbench.trainer import TrainConfig, Trainer

from _models import noise_waves, tiny_backend

pytestmark = [pytest.mark.filterwarnings("ignore:the validation set has only"),
              pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")]

TEXTS = ["turn on the light", "call my sister", "i am hungry", "good morning", "open the door",
         "where is my phone", "thank you", "i need help"]


def _examples(n: int, seed: int = 0) -> list[Example]:
    return [Example(w, TEXTS[i % len(TEXTS)], 0, f"u{seed}-{i}") for i, w in enumerate(noise_waves(n, seed))]


def _config(**kw) -> TrainConfig:
    base = dict(adapter=ResidualConfig(bottleneck=4), max_steps=2, time_limit_s=None, batch_size=4, eval_every=2,
                min_utterances=4, learning_rate=1e-2, patience=0, speed_perturb=())
    return TrainConfig(**{**base, **kw})


def _long(seconds: float, utt_id: str, text: str) -> Example:
    return Example((0.1 * np.random.default_rng(3).standard_normal(int(seconds * 16000))).astype(np.float32),
                   text, 0, utt_id)


def test_a_take_too_long_to_train_on_is_left_out_and_named() -> None:
    train = _examples(6) + [_long(45.0, "take-7", "the conference is now locked")]
    valid = _examples(3, seed=1) + [_long(40.0, "take-9", "see you soon")]
    with pytest.warns(Notice, match=r"2 recordings were left out of training: take take-7 \('the conference is "
                                    r"now locked'\) is 45.0 s long.*take take-9 .*Record them again"):
        trainer = Trainer(tiny_backend(), train, valid, _config())
    assert "waveform 0" not in trainer.left_out
    assert len(trainer.train_cache) == 6 and len(trainer.eval_cache) == 3
    result = trainer.fit()  # the run goes on without them
    assert result.steps == 2
    seen = []
    plain = Trainer(tiny_backend(), _examples(6), _examples(3, seed=1), _config())
    plain.on("on_start", seen.append)
    plain.fit()
    assert seen[0]["left_out"] == ""  # nothing left out, nothing said


def test_a_slowed_down_copy_over_the_limit_is_left_out_alone() -> None:
    train = _examples(6) + [_long(28.0, "take-7", "the conference is now locked")]  # 31 s at 0.9x speed
    with pytest.warns(Notice, match="1 slowed-down copy of long takes"):
        trainer = Trainer(tiny_backend(), train, _examples(3, seed=1), _config(speed_perturb=(0.9,)))
    assert "take-7" in [e.utt_id for e in trainer.train_cache.examples]  # the take itself is trained on
    assert len(trainer.train_cache) == 13


def test_too_few_left_says_which_were_left_out() -> None:
    train = _examples(3) + [_long(45.0, "take-7", "the conference is now locked")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Notice)
        with pytest.raises(TrainingError, match="only 3 usable training recordings.*take take-7"):
            Trainer(tiny_backend(), train, _examples(3, seed=1), _config())
        with pytest.raises(TrainingError, match="no validation recordings are left.*take take-9"):
            Trainer(tiny_backend(), _examples(6), [_long(40.0, "take-9", "see you soon")], _config())


def test_no_training_recordings_is_not_called_a_validation_problem() -> None:
    with pytest.raises(TrainingError, match="only 0 usable training recordings"):
        Trainer(tiny_backend(), [], [], _config())


def test_every_take_rejected_says_so_and_why(tmp_path) -> None:
    from workbench.workflow import prepare

    corpus = SpeakerCorpus.create(tmp_path, "spk-1", prompts=TEXTS, simulated=True)
    for text in TEXTS:
        corpus.add_take(np.zeros(16000, dtype=np.float32), prompt=text)  # digital silence: rejected
    assert corpus.summary()["n_ok"] == 0
    with pytest.raises(CorpusError, match=r"None of the 8 takes of spk-1 can be used: every one was rejected.*"
                                          r"8 takes: Silent"):
        prepare(corpus.root, backend=tiny_backend(), config=_config())
    empty = SpeakerCorpus.create(tmp_path, "spk-2", prompts=TEXTS, simulated=True)
    assert "no recordings yet" in empty.usable_problem()


def test_the_personalize_page_says_why_when_every_take_was_rejected(tmp_path) -> None:
    pytest.importorskip("panel")
    from workbench.app_pages.common import AppContext
    from workbench.app_pages.shell import WorkbenchApp

    (tmp_path / "data").mkdir()
    app = WorkbenchApp(AppContext(data_dir=tmp_path / "data", backend_factory=lambda name: tiny_backend()))
    corpus = SpeakerCorpus.create(tmp_path / "data", "spk-1", prompts=TEXTS, simulated=True)
    for text in TEXTS:
        corpus.add_take(np.zeros(16000, dtype=np.float32), prompt=text)
    app.state.speaker_id = "spk-1"
    page = app.pages["Personalize"]
    page.load()
    assert "every one was rejected" in page.data.object and "Silent" in page.data.object
    assert page.train.disabled
    from workbench.app_pages import jobs
    from workbench.app_pages.personalize import PersonalizePage

    job = jobs.TrainingJob(tmp_path / "data" / "spk-1", backend_factory=None, model="tiny", config=_config())
    job._on_start({"max_steps": 2, "time_limit_s": None, "left_out": "1 recording was left out of training: take x"})
    status = PersonalizePage.__new__(PersonalizePage)
    status.job, status.ctx = job, app.pages["Personalize"].ctx
    assert "1 recording was left out of training: take x" in status._status_html(job.snapshot())
