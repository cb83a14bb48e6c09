"""Optional dependencies, imported at the edge with an install hint.

>>> np = require("numpy", extra="core")
"""

from __future__ import annotations

import importlib
import importlib.util
import shutil
from types import ModuleType

from workbench.errors import MissingDependencyError

__all__ = ["has_module", "require", "require_program"]


def has_module(name: str) -> bool:
    """True if ``name`` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def require(name: str, *, extra: str, purpose: str = "") -> ModuleType:
    """Import ``name`` or raise :class:`MissingDependencyError` with the pip hint.

    Args:
        name: module to import, e.g. ``"matplotlib.pyplot"``.
        extra: the workbench extra that provides it, e.g. ``"ui"``.
        purpose: what the user was trying to do, for the message.
    """
    top = name.split(".")[0]
    if not has_module(top):
        what = f" to {purpose}" if purpose else ""
        raise MissingDependencyError(
            f"The optional package '{top}' is needed{what} but is not installed. "
            f"Install it with: pip install 'workbench[{extra}]'"
        )
    return importlib.import_module(name)


def require_program(program: str, *, apt: str | None = None, purpose: str = "") -> str:
    """Return the path of an executable or raise with the apt-get hint."""
    path = shutil.which(program)
    if path is None:
        what = f" to {purpose}" if purpose else ""
        pkg = apt or program
        raise MissingDependencyError(
            f"The program '{program}' is needed{what} but was not found. "
            f"Install it with: sudo apt-get install {pkg} (or: conda install -c conda-forge {pkg})"
        )
    return path
