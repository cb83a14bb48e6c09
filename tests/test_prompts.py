"""Prompt lists: shipped data conventions, loading rules, vocabulary."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workbench.errors import PromptError
from workbench.prompts import (
    list_prompt_sets,
    load_prompts,
    parse_prompts,
    prompt_vocabulary,
)


def test_shipped_sets_are_listed():
    assert {"everyday", "personal_vocabulary"} <= set(list_prompt_sets())
    assert list_prompt_sets() == sorted(list_prompt_sets())


def test_everyday_follows_the_conventions():
    prompts = load_prompts("everyday")
    assert 400 <= len(prompts) <= 600
    assert len(set(prompts)) == len(prompts)
    for p in prompts:
        assert re.fullmatch(r"[a-z']+( [a-z']+)*", p), f"only a-z, apostrophe and single spaces: {p!r}"
        assert 2 <= len(p.split()) <= 7, p
    vocab = prompt_vocabulary(prompts)
    assert 300 <= len(vocab) <= 1000  # closed enough for a word lexicon
    assert {"salt", "kitchen", "light", "tea", "doctor"} <= vocab


def test_default_is_everyday_and_personal_vocabulary_loads():
    assert load_prompts() == load_prompts("everyday")
    personal = load_prompts("personal_vocabulary")
    assert 25 <= len(personal) <= 40
    assert all(re.fullmatch(r"[a-z' ]+", p) for p in personal)
    assert prompt_vocabulary(personal) - prompt_vocabulary(load_prompts()), "personal words go beyond everyday ones"


def test_load_from_file_strips_dedups_and_skips_comments(tmp_path):
    path = tmp_path / "mine.txt"
    path.write_text("# my list\n\n  hello there  \nturn  it off\nhello there\n   \n#skip\nbye\n", encoding="utf-8")
    assert load_prompts(path) == ["hello there", "turn it off", "bye"]
    assert load_prompts(str(path)) == ["hello there", "turn it off", "bye"]


def test_unknown_name_says_what_exists():
    with pytest.raises(PromptError, match="everyday") as err:
        load_prompts("no-such-list")
    assert "no-such-list" in str(err.value)


def test_empty_file_is_an_error(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_text("# only a comment\n\n", encoding="utf-8")
    with pytest.raises(PromptError, match="no prompts"):
        load_prompts(path)


def test_non_utf8_file_is_an_error(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    with pytest.raises(PromptError, match="UTF-8"):
        load_prompts(path)


def test_vocabulary_lowercases_and_keeps_apostrophes():
    assert prompt_vocabulary(["It's TEN o'clock", "it's late!"]) == {"it's", "ten", "o'clock", "late"}


@given(st.lists(st.text(alphabet="ab #'\t", max_size=8), max_size=12))
def test_parse_prompts_invariants(lines):
    try:
        prompts = parse_prompts("\n".join(lines))
    except PromptError as err:  # a line with no words ("'", "# ..." is a comment): refused, named
        assert "no words to score" in str(err)
        return
    assert len(set(prompts)) == len(prompts)
    for p in prompts:
        assert p and p == p.strip() and not p.startswith("#") and "  " not in p and "\t" not in p


def test_wordless_lines_are_refused_and_line_separators_are_spaces(tmp_path):
    # issue 16: '!!!' became a prompt (an empty reference); U+2028 split one prompt in two
    with pytest.raises(PromptError, match=r"line 2 \('!!!'\) has no words to score; line 4 \('\.\.\.'\)"):
        parse_prompts("hello there\n!!!\n\n...\n")
    path = tmp_path / "mine.txt"
    path.write_text("turn on\u2028the light\r\ngood morning\n", encoding="utf-8")
    assert load_prompts(path) == ["turn on the light", "good morning"]
    path.write_text("good morning\n?!\n", encoding="utf-8")
    with pytest.raises(PromptError, match=r"mine.txt: Some prompts cannot be used: line 2"):
        load_prompts(path)
