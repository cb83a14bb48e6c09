"""A speaker's word list: the file (untrusted input) and the bounded bias it puts on decoding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from workbench.decode_bias import BiasConfig, TokenTrie, VocabularyBias
from workbench.errors import VocabularyError
from workbench.vocabulary import (MAX_ENTRIES, MAX_FILE_BYTES, MAX_LINE_CHARS, VOCABULARY_FILE, boost_words,
                                  parse_vocabulary, read_vocabulary, resolve_vocabulary, save_vocabulary,
                                  speaker_vocabulary)

# ---------------------------------------------------------------------------- the file


def test_entries_keep_their_spelling_skip_comments_and_duplicates() -> None:
    text = "\ufeff# family\r\nSiobhan\n  Auntie   Margaret \n\nSIOBHAN\nDr. Okafor\n# meds\nparacetamol\n"
    assert parse_vocabulary(text.encode("utf-8")) == ["Siobhan", "Auntie Margaret", "Dr. Okafor", "paracetamol"]
    assert boost_words(["Siobhan", "Auntie Margaret", "margaret"]) == ["siobhan", "auntie", "margaret"]


@pytest.mark.parametrize(("data", "said"), [
    (b"a\n" * (MAX_FILE_BYTES // 2 + 1), "at most"),
    (b"Siobhan\n\xff\xfeJamal\n", "not plain text"),
    ("Siobhan\nJa\x00mal\n", "control character"),
    ("x" * (MAX_LINE_CHARS + 1), f"at most {MAX_LINE_CHARS}"),
    ("Siobhan\n!!!\n", "no letters"),
    ("call my grandson jamal on sunday\n", "words"),
    ("".join(f"name{chr(97 + i // 26)}{chr(97 + i % 26)}\n" for i in range(MAX_ENTRIES + 1)), "more than"),
], ids=["too-large", "not-utf8", "control-char", "long-line", "no-letters", "too-many-words", "too-many-entries"])
def test_unusable_lists_are_refused_with_the_line_and_what_to_do(data, said) -> None:
    with pytest.raises(VocabularyError, match=said):
        parse_vocabulary(data)


def test_files_are_read_with_a_size_cap_and_plain_errors(tmp_path) -> None:
    with pytest.raises(VocabularyError, match="no word list"):
        read_vocabulary(tmp_path / "missing.txt")
    with pytest.raises(VocabularyError, match="folder"):
        read_vocabulary(tmp_path)
    big = tmp_path / "big.txt"
    big.write_bytes(b"ab\n" * MAX_FILE_BYTES)
    with pytest.raises(VocabularyError, match="bytes"):
        read_vocabulary(big)
    good = tmp_path / "words.txt"
    good.write_text("Jamal\nBrighton\n")
    assert read_vocabulary(good) == ["Jamal", "Brighton"]
    assert resolve_vocabulary(None, good) == ["Jamal", "Brighton"]
    assert resolve_vocabulary(None, None) == []


def test_save_round_trip_and_a_bad_list_keeps_the_old_one(tmp_path) -> None:
    assert speaker_vocabulary(tmp_path) == []
    assert save_vocabulary(tmp_path, "Jamal\nBrighton\n") == ["Jamal", "Brighton"]
    assert (tmp_path / VOCABULARY_FILE).read_text() == "Jamal\nBrighton\n"
    assert speaker_vocabulary(tmp_path) == ["Jamal", "Brighton"]
    with pytest.raises(VocabularyError):
        save_vocabulary(tmp_path, "Jamal\n" + "y" * 200)
    assert speaker_vocabulary(tmp_path) == ["Jamal", "Brighton"]  # nothing lost
    assert save_vocabulary(tmp_path, "") == [] and not (tmp_path / VOCABULARY_FILE).exists()
    with pytest.raises(VocabularyError, match="speaker folder"):
        save_vocabulary(tmp_path / "nobody", ["Jamal"])


# ---------------------------------------------------------------------------- the bound


def test_config_is_checked() -> None:
    for bad in ({"margin": -1.0}, {"bonus": float("nan")}, {"floor": 2.0}):
        with pytest.raises(VocabularyError):
            BiasConfig(**bad)


def test_trie_walks_and_candidates_follow_word_starts_and_continuations() -> None:
    bias = VocabularyBias([[10, 11, 12]], [[20, 11, 12]])
    assert bias.candidates([]) == {10, 20}  # any word start; the no-space form only first
    assert bias.candidates([3]) == {10}
    assert bias.candidates([3, 10]) == {10, 11}
    assert bias.candidates([20, 11]) == {10, 12}
    assert len(TokenTrie([[1, 2], [1, 3]])) == 3


V, BEST, EOT = 40, 1, 0
WORD = [10, 11, 12]  # the listed word's tokens


def _script(gap: float, *, steps: int = 3) -> list[torch.Tensor]:
    """Logits of a scripted recording: at step s the audio says token BEST (logit 5), and the
    listed word's s-th token is ``gap`` nats behind it; then the end token."""
    rows = []
    for s in range(steps):
        row = torch.zeros(V)
        row[BEST] = 5.0
        row[WORD[s]] = 5.0 - gap
        rows.append(row)
    end = torch.zeros(V)
    end[EOT] = 9.0
    return rows + [end]


def _greedy(rows: list[torch.Tensor], bias: VocabularyBias | None) -> list[int]:
    out: list[int] = []
    for row in rows:
        logp = row[None].log_softmax(-1)
        t = int((logp if bias is None else bias(logp, [out])).argmax())
        if t == EOT:
            break
        out.append(t)
    return out


@pytest.mark.parametrize("gap", [2.5, 3.0, 6.0, 20.0])
def test_a_listed_word_the_audio_does_not_support_never_appears(gap) -> None:
    bias = VocabularyBias([WORD], config=BiasConfig(margin=2.0, bonus=2.0))
    out = _greedy(_script(gap), bias)
    assert out == _greedy(_script(gap), None) == [BEST] * 3
    assert not set(out) & set(WORD)


@pytest.mark.parametrize("gap", [0.3, 1.0, 1.9])
def test_a_listed_word_close_to_the_best_is_chosen(gap) -> None:
    assert _greedy(_script(gap), None) == [BEST] * 3  # without the list: the near miss
    assert _greedy(_script(gap), VocabularyBias([WORD], config=BiasConfig(margin=2.0, bonus=2.0))) == WORD


def test_the_floor_and_a_zero_bonus_hold_it_back() -> None:
    flat = torch.zeros(V)  # every token equally (un)likely: p = 1/40 < floor 0.05
    flat[BEST] = 0.01
    logp = flat[None].log_softmax(-1)
    bias = VocabularyBias([WORD], config=BiasConfig(margin=2.0, floor=0.05, bonus=2.0))
    assert torch.equal(bias(logp, [[]]), logp)
    assert _greedy(_script(1.0), VocabularyBias([WORD], config=BiasConfig(bonus=0.0))) == [BEST] * 3


def test_a_word_stops_where_the_audio_stops_supporting_it() -> None:
    rows = _script(1.0)
    rows[1][WORD[1]] = 5.0 - 4.0  # the second token is far behind: the word is not finished for it
    out = _greedy(rows, VocabularyBias([WORD], config=BiasConfig(margin=2.0, bonus=2.0)))
    assert out[0] == WORD[0] and out[1] == BEST


# ---------------------------------------------------------------------------- Whisper


@pytest.fixture(scope="module")
def whisper(tmp_path_factory):
    pytest.importorskip("transformers")
    from _models import hf_whisper_dir

    from workbench.models import load_base_model

    return load_base_model(hf_whisper_dir(tmp_path_factory.mktemp("hf") / "whisper"))


class _Scripted(torch.nn.Module):
    """Stands in for Whisper's output projection: returns the next scripted row at each call."""

    def __init__(self, rows: list[torch.Tensor]) -> None:
        super().__init__()
        self.rows, self.calls = rows, 0

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        row = self.rows[min(self.calls, len(self.rows) - 1)]
        self.calls += 1
        return row.expand(hidden.shape[0], -1).clone()


def _whisper_script(whisper, word: list[int], gap: float) -> list[torch.Tensor]:
    best = _ids(whisper, "x")[0]  # a token of no listed word
    rows = []
    for tok in word:
        row = torch.zeros(whisper.model.config.vocab_size)
        row[best], row[tok] = 5.0, 5.0 - gap
        rows.append(row)
    end = torch.zeros(whisper.model.config.vocab_size)
    end[whisper.eot] = 9.0
    return rows + [end]


def _ids(whisper, text: str) -> list[int]:
    return list(whisper.tokenizer(text, add_special_tokens=False).input_ids)


@pytest.mark.parametrize(("gap", "said"), [(4.0, False), (1.0, True)])
def test_whisper_decoding_takes_the_bias_within_its_bound(whisper, monkeypatch, gap, said) -> None:
    from workbench.workflow import build_decoder

    bias = build_decoder("greedy", backend=whisper, vocabulary=["Siobhan"])
    assert isinstance(bias, VocabularyBias)
    word = _ids(whisper, "Siobhan")  # the first word of the transcript: no leading space
    assert bias.candidates(word[:2]) >= {word[2]}
    monkeypatch.setattr(whisper, "no_speech_id", None)  # one projection call per step
    batch = whisper.featurize([np.zeros(16000, np.float32)])
    monkeypatch.setattr(whisper.model, "proj_out", _Scripted(_whisper_script(whisper, word, gap)))
    plain = whisper.decode_details(batch)[0]
    monkeypatch.setattr(whisper.model, "proj_out", _Scripted(_whisper_script(whisper, word, gap)))
    biased = whisper.decode_details(batch, bias=bias)[0]
    assert "siobhan" not in plain.text
    assert ("siobhan" in biased.text) is said
    if not said:
        assert biased.tokens == plain.tokens


def test_the_base_model_decodes_with_its_own_bound_and_a_personal_model_with_the_personal_one(whisper,
                                                                                              monkeypatch) -> None:
    """A default word list holds both bounds; the search uses the personal one only while an adapter is on."""
    from workbench.adapters import LoRAConfig, inject
    from workbench.decode_bias import BASE_BOUND

    bias = whisper.vocabulary_bias(["Siobhan"])
    assert bias.config == BiasConfig() and bias.base_config == BASE_BOUND and "base model: margin=2.0" in repr(bias)
    assert BASE_BOUND.margin < BiasConfig().margin
    fixed = whisper.vocabulary_bias(["Siobhan"], BiasConfig(margin=2.0, bonus=2.0))
    assert fixed.for_model(False) is fixed and fixed.for_model(True) is fixed  # a given bound is used for both
    base = bias.for_model(False)
    assert base.config == BASE_BOUND and base.prompt == bias.prompt and bias.config == BiasConfig()  # a view
    word = _ids(whisper, "Siobhan")
    gap = (BASE_BOUND.margin + BiasConfig().margin) / 2  # within the personal margin, beyond the base model's
    monkeypatch.setattr(whisper, "no_speech_id", None)  # one projection call per step
    batch = whisper.featurize([np.zeros(16000, np.float32)])

    def said() -> bool:
        monkeypatch.setattr(whisper.model, "proj_out", _Scripted(_whisper_script(whisper, word, gap)))
        return "siobhan" in whisper.decode_details(batch, bias=bias)[0].text

    assert not whisper.personal_active and not said()
    adapted = inject(whisper, LoRAConfig(rank=2))
    try:
        assert whisper.personal_active and said()
        with adapted.disabled():  # the base model's side of a before/after comparison
            assert not whisper.personal_active and not said()
        assert said()
    finally:
        adapted.remove()
    assert not whisper.personal_active and not said()


def test_whisper_round_trip_with_a_word_list(whisper, tmp_path) -> None:
    from _models import noise_waves

    from workbench.workflow import build_decoder

    wavs = noise_waves(3, seed=4)
    plain = whisper.transcribe(wavs)
    off = whisper.vocabulary_bias(["Siobhan", "Jamal"], BiasConfig(bonus=0.0, prompt=False))
    assert whisper.transcribe(wavs, decoder=off) == plain  # no bonus, no prompt: the same search
    bias = build_decoder("lexicon", ["hello there"], backend=whisper, vocabulary=["Siobhan", "Jamal"])
    texts = whisper.transcribe(wavs, decoder=bias)
    assert len(texts) == 3 and all(isinstance(t, str) for t in texts)
    assert build_decoder("lexicon", ["hello there"], backend=whisper) is None
    whisper.logit_bias = bias  # what `workbench listen --vocabulary` sets
    try:
        assert whisper.transcribe(wavs) == texts
    finally:
        whisper.logit_bias = None


def test_the_prompt_setting_is_checked_and_encodes_the_list_as_previous_text() -> None:
    from workbench.decode_bias import prompt_text

    with pytest.raises(VocabularyError, match="True or False"):
        BiasConfig(prompt="yes")
    encode = lambda text: [ord(c) for c in text]  # noqa: E731 - one id a character
    assert VocabularyBias.from_entries(["Siobhan"], encode, config=BiasConfig(prompt=False)).prompt == []
    with_prompt = VocabularyBias.from_entries(["Siobhan", "Dr.  Okafor"], encode)  # the default: with the prompt
    assert prompt_text(["Siobhan", "Dr.  Okafor"]) == " Siobhan, Dr. Okafor"
    assert with_prompt.prompt == encode(" Siobhan, Dr. Okafor")
    assert VocabularyBias.from_entries([], encode, config=BiasConfig(prompt=True)).prompt == []


def test_whisper_reads_the_word_list_as_previous_text_before_its_start_token(whisper, request) -> None:
    from _models import noise_waves

    prev = whisper.tokenizer.convert_tokens_to_ids("<|startofprev|>")
    batch = whisper.featurize(noise_waves(2, seed=5))
    inputs: list[list[list[int]]] = []  # the decoder's input_ids, call by call
    hook = whisper.model.model.decoder.register_forward_pre_hook(
        lambda _m, _a, kw: inputs.append(kw["input_ids"].tolist()), with_kwargs=True)
    request.addfinalizer(hook.remove)
    plain = whisper.decode_details(batch)
    assert inputs[0] == [whisper.prompt_ids] * 2  # no list: the start token first, as before
    inputs.clear()
    prompted = whisper.vocabulary_bias(["Siobhan", "Jamal"], BiasConfig(prompt=True, bonus=0.0))
    words = _ids(whisper, " Siobhan, Jamal")
    assert prompted.prompt == words
    details = whisper.decode_details(batch, bias=prompted)
    assert inputs[0] == [[prev, *words, *whisper.prompt_ids]] * 2
    assert all(len(step[0]) == 1 for step in inputs[1:])  # then one token a step, on the cache
    assert all(0.0 <= d.no_speech_prob <= 1.0 for d in details + plain)
    inputs.clear()
    long = whisper.vocabulary_bias([f"Name{chr(97 + i)}" for i in range(26)], BiasConfig(prompt=True))
    whisper.decode_details(batch, bias=long)
    keep = whisper.max_target // 2 - 1  # openai-whisper keeps the last half-context of a prompt
    assert len(long.prompt) > keep and inputs[0][0] == [prev, *long.prompt[-keep:], *whisper.prompt_ids]
    whisper.logit_bias = prompted  # what `workbench listen --vocabulary` sets: live captions get the prompt too
    try:
        inputs.clear()
        whisper.decode_details(batch)
        assert inputs[0][0][0] == prev
    finally:
        whisper.logit_bias = None


def test_the_built_in_decoders_boost_the_same_list() -> None:
    from workbench.decode import BeamSearchDecoder
    from workbench.workflow import build_decoder

    lexicon = build_decoder("lexicon", ["visit aunt margaret"], vocabulary=["Siobhan", "Dr. Okafor"])
    assert {"siobhan", "okafor", "dr"} <= lexicon.boost and "siobhan" in lexicon.lexicon
    greedy = build_decoder("greedy", vocabulary=["Siobhan"])
    assert isinstance(greedy, BeamSearchDecoder) and greedy.boost == {"siobhan"}
    assert build_decoder("greedy") is None


def test_the_benchmark_scores_names_other_words_and_false_insertions() -> None:
    from bench.bench_vocabulary import word_scores

    refs = ["call priya", "is priya coming today", "good morning"]
    hyps = ["call free", "is priya coming to day", "good morning priya"]
    s = word_scores(refs, hyps, {"priya"}, [True, True, False])
    assert (s["name_words"], s["name_errors"]) == (2, 1)
    assert (s["other_words"], s["other_errors"]) == (6, 3)  # "today" -> "to", inserted "day" and "priya"
    assert s["false_insertions"] == 1 and s["false_insertions_no_name"] == 1


def test_the_command_line_takes_a_word_list_and_refuses_a_bad_one_plainly(tmp_path, capsys) -> None:
    import json
    from pathlib import Path

    from workbench.cli import main

    sample = Path(__file__).resolve().parent.parent / "sample_data" / "sim-accent"
    rows = [json.loads(x) for x in (sample / "manifest.jsonl").read_text().splitlines()[:2]]
    files = [str(sample / r["audio_path"]) for r in rows]
    words = tmp_path / "words.txt"
    words.write_text("Siobhan\nAuntie Margaret\n")
    assert main(["transcribe", *files, "--model", "tiny", "--vocabulary", str(words)]) == 0
    out, err = capsys.readouterr()
    assert "Word list: Siobhan, Auntie Margaret" in err and len(out.splitlines()) == 2
    words.write_bytes(b"\xff\xfeSiobhan\n")
    assert main(["transcribe", *files, "--model", "tiny", "--vocabulary", str(words)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "not plain text" in err and "UTF-8" in err
    assert main(["evaluate", str(sample), "--model", "no-such-model", "--vocabulary", str(words)]) == 2
    assert "not plain text" in capsys.readouterr()[1]  # refused before any model is looked for
