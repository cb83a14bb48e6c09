"""The core imports without any UI or optional package (DESIGN: the core never imports UI)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

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

_SCRIPT = textwrap.dedent(
    """
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
    import workbench, workbench.audio, workbench.corpus  # noqa: E401

    try:
        import matplotlib  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("the blocker does not work")
    print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)))
    """
)


def test_core_imports_without_optional_packages() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _SCRIPT, json.dumps(BLOCKED)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
