"""The main job end to end on a small generated speaker folder (random base model)."""

from __future__ import annotations

import re

import pytest

from workbench.corpus import SpeakerCorpus
from workbench.plots import report_figures
from workbench.evaluate import Comparison
from workbench.trainer import TrainConfig
from workbench.adapters import ResidualConfig
from workbench.workflow import BaseScore, build_decoder, evaluate_speaker, personalize_speaker, three_way_split

from _models import noise_waves, tiny_backend

pytestmark = pytest.mark.filterwarnings("ignore:the (held-out|validation) set has only")

PROMPTS = ["turn on the light", "call my sister", "i am hungry", "good morning", "open the door",
           "where is my phone", "thank you very much", "i need some help", "close the window",
           "what time is it", "please pass the salt", "see you tomorrow"]


@pytest.fixture
def speaker(tmp_path):
    corpus = SpeakerCorpus.create(tmp_path, "spk-test", prompts=PROMPTS + ["visit aunt margaret"], simulated=True)
    for i, w in enumerate(noise_waves(24, seed=5, lo=12000, hi=20000)):
        corpus.add_take(w * 3, prompt=PROMPTS[i % len(PROMPTS)])
    return corpus


def test_personalize_then_evaluate_and_report(speaker, tmp_path) -> None:
    backend = tiny_backend()
    config = TrainConfig(adapter=ResidualConfig(bottleneck=4), max_steps=4, time_limit_s=None, eval_every=2,
                         batch_size=4, min_utterances=4)
    run = personalize_speaker(speaker.root, backend=backend, config=config, progress=False, figures=report_figures)
    assert run.submodel_path.is_file() and run.submodel_path.parent.name == "submodels"
    page = run.report_html.read_text()
    assert "Not a medical device" in page and "ASR word error rate" in page
    assert f"{100 * run.comparison.wer_before:.1f}%" in page and f"{100 * run.comparison.wer_after:.1f}%" in page
    assert "data:image/png;base64," in page  # plots are embedded
    assert not re.search(r"(src|href)=['\"]https?://", page)  # self-contained
    assert run.report_csv.read_text().count("\n") == len(run.comparison.utterances) + 1
    run.adapted.remove()

    # named: a random model's run rarely beats the base model, so it is not the personal model by itself
    cmp_ = evaluate_speaker(speaker.root, backend=backend, adapter=run.submodel_path, decoder="greedy").comparison
    assert isinstance(cmp_, Comparison)
    held = {u.utt_id for u in cmp_.utterances}
    assert held == {e.utt_id for e in run.comparison.utterances}  # the same never-trained recordings
    from workbench.adapters.io import read_submodel

    used = read_submodel(run.submodel_path)[1]["training"]
    assert used["valid_utt_ids"] and not held & (set(used["utt_ids"]) | set(used["valid_utt_ids"]))


def test_test_validation_and_training_prompts_never_overlap(speaker) -> None:
    train, valid, test = three_way_split(speaker, test_fraction=0.25, valid_fraction=0.2, seed=3)
    prompts = [{u.prompt for u in part} for part in (train, valid, test)]
    assert all(prompts) and not (prompts[0] & prompts[1] or prompts[0] & prompts[2] or prompts[1] & prompts[2])
    assert len(train) + len(valid) + len(test) == len(speaker.utterances("ok"))
    assert test == speaker.split(test_fraction=0.25, seed=3)[1]  # the test side does not depend on validation
    capped = three_way_split(speaker, test_fraction=0.25, valid_fraction=0.2, seed=3, max_train=8)
    assert len(capped[0]) + len(capped[1]) == 8 and capped[2] == test


def test_evaluate_without_adapter_scores_the_base(speaker) -> None:
    result = evaluate_speaker(speaker.root, backend=tiny_backend(), decoder="greedy")
    score = result.base
    assert isinstance(score, BaseScore) and score.n_utterances > 0 and result.comparison is None
    assert "base model" in score.summary()
    with pytest.raises(Exception, match="no personal adapter yet"):
        evaluate_speaker(speaker.root, backend=tiny_backend(), decoder="greedy", write_report=True)


def test_lexicon_decoder_boosts_the_speakers_own_words() -> None:
    dec = build_decoder("lexicon", prompts=["visit aunt margaret"])
    assert "margaret" in dec.boost and "the" not in dec.boost
    assert build_decoder("greedy") is None
    with pytest.raises(Exception, match="decoder must be"):
        build_decoder("banana")
