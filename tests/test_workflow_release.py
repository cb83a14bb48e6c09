"""A run leaves its base model as it found it (issue 31 item 3): one loaded model personalizes one
speaker after another; before, the second run refused with "already has adapters injected"."""

from __future__ import annotations

import pytest

from workbench.adapters import ResidualConfig, inject, load_submodel
from workbench.corpus import SpeakerCorpus
from workbench.errors import TrainingError
from workbench.trainer import TrainConfig
from workbench.workflow import NothingLearnedError, personalize_speaker, prepare

from _models import noise_waves, tiny_backend

pytestmark = pytest.mark.filterwarnings("ignore:the (held-out|validation) set has only")

PROMPTS = ["turn on the light", "call my sister", "i am hungry", "good morning", "open the door",
           "where is my phone", "thank you very much", "i need some help", "close the window",
           "what time is it", "please pass the salt", "see you tomorrow"]


def _speaker(root, name: str, seed: int) -> SpeakerCorpus:
    corpus = SpeakerCorpus.create(root, name, prompts=PROMPTS, simulated=True)
    for i, w in enumerate(noise_waves(24, seed=seed, lo=12000, hi=20000)):
        corpus.add_take(w * 3, prompt=PROMPTS[i % len(PROMPTS)])
    return corpus


def _config() -> TrainConfig:
    return TrainConfig(adapter=ResidualConfig(bottleneck=4), max_steps=2, time_limit_s=None, eval_every=2,
                       batch_size=4, min_utterances=4, speed_perturb=())


def test_one_loaded_model_personalizes_two_speakers_and_is_left_as_found(tmp_path) -> None:
    backend = tiny_backend()
    probe = noise_waves(1, seed=9)[0]
    heard, fingerprint = backend.transcribe([probe]), backend.fingerprint()
    first = personalize_speaker(_speaker(tmp_path, "spk-a", 5).root, backend=backend, config=_config(),
                                decoder="greedy", progress=False)
    second = personalize_speaker(_speaker(tmp_path, "spk-b", 6).root, backend=backend, config=_config(),
                                 decoder="greedy", progress=False)
    assert first.submodel_path.is_file() and second.submodel_path.is_file()
    assert backend.transcribe([probe]) == heard and backend.fingerprint() == fingerprint
    first.adapted.remove()  # what callers did after a run: still allowed, it does nothing now
    assert first.adapted.parameter_report()["family"] == "residual"  # the released adapter keeps its weights
    adapted, _ = load_submodel(backend, second.submodel_path)  # the personal model, to transcribe with
    adapted.remove()


def test_a_run_that_ends_without_a_model_leaves_the_base_model_too(tmp_path, monkeypatch) -> None:
    backend = tiny_backend()
    folder = _speaker(tmp_path, "spk-a", 5).root
    with pytest.raises(NothingLearnedError):  # stopped before its first check
        personalize_speaker(folder, backend=backend, config=_config(), decoder="greedy", progress=False,
                            trainer_hook=lambda trainer: trainer.stop())
    inject(backend, ResidualConfig(bottleneck=4)).remove()  # free again

    import workbench.workflow.steps as steps

    def no_room(*args, **kwargs):
        raise TrainingError("not enough room on the disk")

    monkeypatch.setattr(steps, "check_room_for_run", no_room)
    with pytest.raises(TrainingError, match="room"):
        prepare(folder, backend=backend, config=_config(), decoder="greedy")
    inject(backend, ResidualConfig(bottleneck=4)).remove()  # a refused prepare left no adapter behind


def test_a_removed_personal_model_refuses_to_transcribe_instead_of_giving_the_base_models_words() -> None:
    from workbench.adapters import LoRAConfig
    from workbench.errors import AdapterError

    backend = tiny_backend()
    adapted = inject(backend, LoRAConfig())
    wav = noise_waves(1, seed=5)[0]
    adapted.transcribe([wav])  # live: fine
    adapted.remove()
    with pytest.raises(AdapterError, match="load it again"):
        adapted.transcribe([wav])
    backend.transcribe([wav])  # the base model itself is untouched
