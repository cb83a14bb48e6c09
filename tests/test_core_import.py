"""Every core module imports without any UI or optional package (DESIGN: the core never imports UI),
and the doctests of every module run.

The core is the package minus ``workbench.ui``, ``workbench.app*`` and ``workbench.plots``.
Modules are found on disk (``pkgutil``, nothing imported to find them), so a new module is
covered the day it lands.
"""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import json
import pkgutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

BLOCKED = (
    "IPython",
    "anywidget",
    "ipywidgets",
    "matplotlib",
    "panel",
    "sklearn",
    "sounddevice",
    "transformers",
)
VIEWS = ("ui", "plots")  # with app*: the parts of the package that may import UI packages


def _walk(path: Path, prefix: str) -> Iterator[str]:
    for info in pkgutil.iter_modules([str(path)]):
        name = prefix + info.name
        yield name
        if info.ispkg:
            yield from _walk(path / info.name, name + ".")


def all_modules() -> list[str]:
    """Every module of the package, dotted, except ``workbench.__main__`` (importing it runs the CLI)."""
    spec = importlib.util.find_spec("workbench")
    assert spec is not None and spec.submodule_search_locations
    root = Path(next(iter(spec.submodule_search_locations)))
    return ["workbench", *(m for m in _walk(root, "workbench.") if m != "workbench.__main__")]


def _is_view(name: str) -> bool:
    part = name.split(".")[1] if "." in name else ""
    return part in VIEWS or part.startswith("app")


CORE = [m for m in all_modules() if not _is_view(m)]

_SCRIPT = textwrap.dedent(
    """
    import importlib
    import importlib.abc
    import json
    import sys

    BLOCKED = set(json.loads(sys.argv[1]))


    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{name} is blocked for this test")
            return None


    sys.meta_path.insert(0, Blocker())
    failed = {}
    for name in json.loads(sys.argv[2]):
        try:
            importlib.import_module(name)
        except Exception as err:  # noqa: BLE001 - report every module that fails, with why
            failed[name] = f"{type(err).__name__}: {err}"

    try:
        import matplotlib  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("the blocker does not work")
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    print(json.dumps({"failed": failed, "loaded": loaded}))
    """
)


def test_the_core_is_every_module_but_the_views() -> None:
    assert {"workbench.audio.quality", "workbench.models.loading", "workbench.corpus", "workbench.cli"} <= set(CORE)
    assert not any(m.startswith(("workbench.ui", "workbench.app", "workbench.plots")) for m in CORE)
    assert {"workbench.ui", "workbench.app", "workbench.app_pages", "workbench.plots"} <= set(all_modules())


def test_every_core_module_imports_without_optional_packages() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _SCRIPT, json.dumps(BLOCKED), json.dumps(CORE)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["failed"] == {}
    assert out["loaded"] == []


@pytest.mark.parametrize("name", all_modules())
def test_doctests_run(name: str) -> None:
    """``python -m pytest --doctest-modules workbench`` as one test per module, in the suite."""
    from workbench.errors import MissingDependencyError

    try:
        module = importlib.import_module(name)
    except ImportError as err:  # an optional package of a view that is not installed here
        if isinstance(err, MissingDependencyError) or not (err.name or "workbench").startswith("workbench"):
            pytest.skip(f"{name} needs {err.name or err}")
        raise
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in doctest.DocTestFinder().find(module, name):
        if test.examples:
            runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} doctest examples of {name} failed (output above)"
