"""``choose_models`` carries the speaker's personal model (:class:`~workbench.workflow.PersonalModel`), so the
front ends that need its base model and reason (live captions, the Results page) take the choice from it."""

from __future__ import annotations

from workbench.corpus import SpeakerCorpus
from workbench.workflow import personal_submodel
from workbench.workflow.evaluation import choose_models

from _models import tiny_backend


def _speaker(tmp_path, *, with_run: bool) -> SpeakerCorpus:
    from workbench.adapters import LoRAConfig, inject

    corpus = SpeakerCorpus.create(tmp_path / "data", "spk-choice", prompts=["good morning"], simulated=True)
    if with_run:
        adapted = inject(tiny_backend(0), LoRAConfig(rank=2))
        adapted.save(corpus.root / "submodels" / "lora-1.safetensors", speaker_ids=["spk-choice"],
                     metrics={"wer_before": 0.5, "wer_after": 0.25, "held_out_utterances": 4})
        adapted.remove()
    return corpus


def test_the_personal_model_comes_with_the_choice(tmp_path) -> None:
    corpus = _speaker(tmp_path, with_run=True)
    models = choose_models(corpus, "auto")
    assert models.personal == personal_submodel(corpus.root) and models.personal is not None
    assert models.submodel == models.personal.path and models.submodel_reason == models.personal.describe()
    assert models.base.name == models.personal.base_model and "trained on it" in models.base.reason  # auto: its own
    assert choose_models(corpus.root, "tiny").personal == models.personal  # a folder works the same


def test_no_personal_model_when_none_exists_or_a_file_is_given(tmp_path) -> None:
    corpus = _speaker(tmp_path, with_run=False)
    assert choose_models(corpus, "auto").personal is None and choose_models(None, "tiny").personal is None
    given = tmp_path / "other.safetensors"
    assert choose_models(corpus, "tiny", given).personal is None  # a file named by the user is not the speaker's pick
    assert choose_models(corpus, "tiny", personal=False).personal is None
