"""Prompt lists: the phrases a speaker reads aloud (or a simulated speaker says).

A prompt list is a plain text file with one prompt a line. Blank lines and lines
starting with ``#`` are skipped, surrounding whitespace is stripped and
duplicates are dropped (the first one is kept, order is preserved). Only a
newline ends a line: Unicode line separators (U+2028, from copy and paste) are
spaces. A line with no words to score (``!!!``) is refused, because every
recording of it would count as an empty sentence.

Shipped lists live in ``workbench/data/prompts/`` (see its README for the source
and licence):

- ``everyday``: about 530 short everyday phrases (2-7 words) with a closed
  vocabulary, lowercase letters, spaces and apostrophes only.
- ``personal_vocabulary``: an example of the names, places and hobbies a
  therapist adds for one person.

>>> prompts = load_prompts("everyday")
>>> len(prompts) > 400
True
>>> "could you pass me the salt" in prompts
True
>>> sorted(prompt_vocabulary(["Turn off the light", "the LIGHT's on"]))
['light', "light's", 'off', 'on', 'the', 'turn']
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from importlib import resources
from pathlib import Path

from workbench.errors import PromptError
from workbench.text import normalize_text

__all__ = ["list_prompt_sets", "load_prompts", "parse_prompts", "prompt_vocabulary"]

_PACKAGE_DIR = "data/prompts"
_SUFFIX = ".txt"
_WORD = re.compile(r"[a-z']+")


def _prompt_dir():
    return resources.files("workbench").joinpath(_PACKAGE_DIR)


def list_prompt_sets() -> list[str]:
    """Names of the prompt lists shipped with the package, sorted (e.g. ``["everyday", ...]``)."""
    names = [
        entry.name[: -len(_SUFFIX)]
        for entry in _prompt_dir().iterdir()
        if entry.is_file() and entry.name.endswith(_SUFFIX)
    ]
    return sorted(names)


def parse_prompts(text: str) -> list[str]:
    """Prompts from the text of a prompt file: stripped, no blanks, no ``#`` comments, no duplicates.

    Raises:
        PromptError: lines with no words to score (``!!!``) or with a broken character,
        named by line number.
    """
    seen: set[str] = set()
    prompts: list[str] = []
    bad: list[str] = []
    for line_no, line in enumerate(text.split("\n"), start=1):  # not splitlines(): U+2028 is no line end
        prompt = " ".join(line.split())  # strip and collapse inner whitespace (U+2028 included)
        if not prompt or prompt.startswith("#") or prompt in seen:
            continue
        try:
            prompt.encode("utf-8")
        except UnicodeEncodeError:
            bad.append(f"line {line_no} has a broken character (half of a pair, from copying text); type it again")
            continue
        if not normalize_text(prompt):
            bad.append(f"line {line_no} ({prompt!r}) has no words to score")
            continue
        seen.add(prompt)
        prompts.append(prompt)
    if bad:
        more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
        raise PromptError(f"Some prompts cannot be used: {'; '.join(bad[:5])}{more}. Give each prompt words "
                          "(letters a-z or numbers) or delete those lines, then try again.")
    return prompts


def load_prompts(name_or_path: str | Path = "everyday") -> list[str]:
    """Load a prompt list by shipped name or from a text file.

    Args:
        name_or_path (str | Path, default ``"everyday"``): the name of a shipped
            list (see :func:`list_prompt_sets`) or the path of a UTF-8 text file
            with one prompt a line.

    Returns:
        list[str]: the prompts in file order, stripped and de-duplicated.

    Raises:
        PromptError: the name is neither a shipped list nor an existing file, or
            the list has no prompts.
    """
    name = str(name_or_path)
    shipped = _prompt_dir().joinpath(name + _SUFFIX)
    path = Path(name).expanduser()
    if isinstance(name_or_path, str) and "/" not in name and "\\" not in name and shipped.is_file():
        text, where = shipped.read_text(encoding="utf-8"), f"the shipped list '{name}'"
    elif path.is_file():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise PromptError(
                f"The prompt file {path} is not UTF-8 text ({err.reason}). "
                "Save it as UTF-8 plain text, one prompt a line."
            ) from None
        where = f"the file {path}"
    else:
        raise PromptError(
            f"No prompt list called '{name}': it is not a shipped list ({', '.join(list_prompt_sets())}) "
            "and no such file exists. Give one of those names or the path of a text file with one prompt a line."
        )
    try:
        prompts = parse_prompts(text)
    except PromptError as err:
        raise PromptError(f"{where[0].upper()}{where[1:]}: {err}") from None
    if not prompts:
        raise PromptError(
            f"{where[0].upper()}{where[1:]} has no prompts (only blank lines or '#' comments). Add one prompt a line."
        )
    return prompts


def prompt_vocabulary(prompts: Iterable[str]) -> set[str]:
    """The distinct lowercase words of some prompts (letters and apostrophes; other characters split words)."""
    return {word.strip("'") for prompt in prompts for word in _WORD.findall(prompt.lower()) if word.strip("'")}
