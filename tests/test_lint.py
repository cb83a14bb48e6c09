"""Guard rails over the source tree: ruff passes, and every ``bench/``, ``recipes/`` or ``docs/`` path
the package names (in a docstring, a comment or a message) exists.

The rules ruff applies are in pyproject.toml (``[tool.ruff]``). Run it yourself with
``ruff check workbench bench recipes tests`` (``ruff check --fix`` mends unused imports).
"""

from __future__ import annotations

import importlib.util
import io
import re
import shutil
import subprocess
import sys
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINTED = ("workbench", "bench", "recipes", "tests")
# a repository path: bench/..., recipes/... or docs/..., not inside a URL or a longer path
_PATH = re.compile(r"(?<![\w./-])((?:bench|recipes|docs)/[\w./*-]*[\w*])")
_TEXT = {tokenize.COMMENT, tokenize.STRING} | ({tokenize.FSTRING_MIDDLE} if hasattr(tokenize, "FSTRING_MIDDLE") else set())


def _ruff() -> list[str]:
    if importlib.util.find_spec("ruff") is not None:
        return [sys.executable, "-m", "ruff"]
    exe = shutil.which("ruff")
    if exe is None:
        pytest.skip("ruff is not installed: pip install -e '.[dev]' (or pip install ruff)")
    return [exe]


def test_ruff_passes():
    done = subprocess.run([*_ruff(), "check", "--no-cache", "--output-format", "concise", *LINTED],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"ruff found problems (fix them, or `ruff check --fix` for unused imports):\n{done.stdout}{done.stderr}"


def cited_paths(source: str) -> list[tuple[int, str]]:
    """``(line, path)`` for each repository path named in the comments and strings of ``source``."""
    found = []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type in _TEXT:
            found += [(tok.start[0], m.group(1).rstrip(".")) for m in _PATH.finditer(tok.string)]
    return found


def test_cited_paths_are_found_in_comments_and_docstrings():
    source = '''"""Measured by ``bench/bench_x.py`` (docs/results.md)."""
x = 1  # see recipes/train_y.py; not https://example.org/docs/z.md nor workbench/bench/w.py
'''
    assert cited_paths(source) == [(1, "bench/bench_x.py"), (1, "docs/results.md"), (2, "recipes/train_y.py")]


def test_every_path_the_package_names_exists():
    missing = []
    for py in sorted((ROOT / "workbench").rglob("*.py")):
        for line, path in cited_paths(py.read_text(encoding="utf-8")):
            exists = any(ROOT.glob(path)) if "*" in path else (ROOT / path).exists()
            if not exists:
                missing.append(f"{py.relative_to(ROOT)}:{line}: {path}")
    assert not missing, "these files name repository paths that do not exist:\n" + "\n".join(missing)
