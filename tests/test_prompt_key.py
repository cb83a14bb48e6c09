"""One rule for "the same prompt" (text.prompt_key): the corpus, the pages and a bank agree (issue 24 A9, issue 31)."""

from __future__ import annotations

import pytest

from workbench.corpus import SpeakerCorpus
from workbench.text import prompt_key

from _models import noise_waves, tiny_backend

pytestmark = pytest.mark.filterwarnings("ignore:the (held-out|validation) set has only")

PROMPTS = ["turn on the light", "call my sister", "i am hungry", "good morning", "open the door",
           "where is my phone", "thank you very much", "i need some help", "close the window",
           "what time is it", "please pass the salt", "see you tomorrow", "the conference is now locked"]


def test_prompt_key_ignores_case_punctuation_and_spacing() -> None:
    assert prompt_key("The conference is now locked") == prompt_key("the conference  is now LOCKED.")
    assert prompt_key("Don't stop!") == "don't stop" != prompt_key("Do not stop")
    assert prompt_key("folder 6") == "folder 6"  # digits kept: a split once made never moves


def test_every_page_counts_the_same_sentences(tmp_path) -> None:
    """'... locked' and '... locked.' are one sentence: the prompt list, the folder summary and the
    recording session all say so, and a take of either spelling records it (it stayed "to record")."""
    from workbench.ui.session import PromptSession

    listed = ["The conference is now locked", "Good morning", "The conference is now locked."]
    corpus = SpeakerCorpus.create(tmp_path, "spk-1", prompts=listed, simulated=True)
    assert corpus.prompts() == ["The conference is now locked", "Good morning"]
    session = PromptSession(corpus)
    assert session.n_prompts == corpus.summary()["n_prompts"] == 2
    waves = noise_waves(2, seed=5, lo=12000, hi=20000)
    corpus.add_take(waves[0] * 3, prompt="the conference is now locked.")  # an upload's transcript spelling
    corpus.add_take(waves[1] * 3, prompt="Good morning")
    assert PromptSession(corpus).statuses() == ["recorded", "recorded"]
    assert PromptSession(corpus).finished and corpus.summary()["n_prompts_recorded"] == 2
    given = PromptSession(SpeakerCorpus.create(tmp_path, "spk-2", simulated=True), prompts=listed)
    assert given.n_prompts == 2


def _speaker(root, name: str, prompts: list[str], seed: int) -> SpeakerCorpus:
    corpus = SpeakerCorpus.create(root, name, prompts=prompts, simulated=True)
    for i, w in enumerate(noise_waves(2 * len(prompts), seed=seed, lo=12000, hi=20000)):
        corpus.add_take(w * 3, prompt=prompts[i % len(prompts)])
    return corpus


def test_a_bank_never_trains_on_a_test_phrase_spelled_differently(tmp_path) -> None:
    """Speaker A's test phrase, spelled with other case and punctuation in speaker B's list, is
    not one of B's training phrases (the bank compared prompts with .lower())."""
    from workbench.adapters.io import read_submodel
    from workbench.trainer import TrainConfig
    from workbench.workflow import three_way_split, train_bank

    a = _speaker(tmp_path, "spk-a", PROMPTS, seed=1)
    a_test = {prompt_key(u.prompt) for u in three_way_split(a, test_fraction=0.25)[2]}
    shared = sorted(a_test)[0]
    things = ("cup", "book", "coat", "plate", "keys", "lamp", "chair", "spoon", "towel", "radio", "pillow",
              "basket", "ladder", "candle", "kettle", "mirror", "blanket", "bucket", "jacket", "wallet")
    for k in range(10):  # B's own split must put the shared sentence in training (the risky case)
        b_prompts = [shared.capitalize() + "!", *(f"please bring the {t} {k}" for t in things)]
        b = _speaker(tmp_path / f"try{k}", "spk-b", b_prompts, seed=2)
        if any(prompt_key(u.prompt) == shared for u in three_way_split(b, test_fraction=0.25)[0]):
            break
    else:
        pytest.fail("no arrangement puts the shared sentence in B's training side")
    config = TrainConfig(max_steps=1, eval_every=1, time_limit_s=None, min_utterances=4, batch_size=4,
                         speed_perturb=())
    run = train_bank([a.root, b.root], tmp_path / "bank.safetensors", backend=tiny_backend(), config=config,
                     decoder="greedy", progress=False)
    meta = read_submodel(run.path)[1]["training"]
    b_trained = set(meta["speakers"]["spk-b"]["utt_ids"]) | set(meta["speakers"]["spk-b"]["valid_utt_ids"])
    trained_keys = {prompt_key(u.prompt) for u in b.utterances() if u.utt_id in b_trained}
    assert shared not in trained_keys
    assert shared in {prompt_key(p) for p in meta["prompts"]} | a_test
    assert shared not in {prompt_key(p) for p in meta["prompts"]}  # the file lists it as trained by nobody
    b_tested = {u.utt_id for u in run.comparisons["spk-b"].utterances}
    assert any(prompt_key(u.prompt) == shared for u in b.utterances() if u.utt_id in b_tested)
