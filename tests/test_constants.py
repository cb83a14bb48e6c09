"""workbench.constants: the units, derived once, and the one cache folder."""

from __future__ import annotations

import re
from pathlib import Path

from workbench import constants
from workbench.constants import FRAMES_PER_SECOND, HOP_LENGTH, SAMPLE_RATE, cache_dir

ROOT = Path(__file__).resolve().parent.parent


def test_units_are_derived_from_each_other():
    assert (SAMPLE_RATE, HOP_LENGTH, FRAMES_PER_SECOND) == (16_000, 160, 100)
    assert HOP_LENGTH * FRAMES_PER_SECOND == SAMPLE_RATE

    from workbench import features

    assert features.HOP_LENGTH is constants.HOP_LENGTH  # re-exported, not restated


def test_cache_dir_honours_workbench_cache_then_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "wb"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "wb"
    monkeypatch.setenv("WORKBENCH_CACHE", "")  # set but empty: not a folder
    assert cache_dir() == tmp_path / "xdg" / "workbench"
    monkeypatch.delenv("WORKBENCH_CACHE")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "workbench"


def test_the_cache_folder_is_built_in_one_place():
    built = re.compile(r"""["']\.cache["']""")
    found = [f"{p.relative_to(ROOT)}:{i}" for d in ("workbench", "bench", "recipes") for p in sorted((ROOT / d).rglob("*.py"))
             if p.name != "constants.py" for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
             if built.search(line)]
    assert not found, f"build the cache folder with workbench.constants.cache_dir(): {found}"
