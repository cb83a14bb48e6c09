"""Plain-language notes for the person at the keyboard: "the validation set has only 12 words ...".

A note is a warning of category :class:`Notice` (a ``UserWarning``), so everything that works
with warnings works with notes: ``warnings`` filters, ``pytest.warns``,
``warnings.catch_warnings(record=True)`` (the CLI collects notes that way). Shown, a note is one
line on stderr, ``Note: <message>``: no file path, no line of source code, which in a notebook
pointed into a temporary file and meant nothing to a therapist or a teacher.

Importing this module wraps ``warnings.showwarning`` once: notes are written plainly, and every
other warning goes to the function that was there before, unchanged. Nothing is filtered out.

>>> import warnings
>>> with warnings.catch_warnings(record=True) as heard:
...     warnings.simplefilter("always")
...     notify("record two more prompts")
>>> heard[0].category.__name__, str(heard[0].message)
('Notice', 'record two more prompts')
>>> import io
>>> out = io.StringIO()
>>> show = _plain(warnings.showwarning)  # what importing this module installs
>>> show(Notice("record two more prompts"), Notice, "/tmp/x.py", 3, out)
>>> out.getvalue()
'Note: record two more prompts\\n'
"""

from __future__ import annotations

import sys
import warnings

__all__ = ["Notice", "notify"]


class Notice(UserWarning):
    """A note for the person using the workbench (what happened, what to do), not a programming problem."""


def notify(message: str, *, stacklevel: int = 1) -> None:
    """Warn with a :class:`Notice`; ``stacklevel`` as in ``warnings.warn`` (1 = the caller of
    :func:`notify`), which decides where filters by module see it come from."""
    _install()
    warnings.warn(Notice(message), stacklevel=stacklevel + 1)


def _plain(show):
    """``show`` (a ``warnings.showwarning``) that writes notes as ``Note: <message>``."""

    def showwarning(message, category, filename, lineno, file=None, line=None):
        if isinstance(category, type) and issubclass(category, Notice):
            stream = sys.stderr if file is None else file
            if stream is None:  # pythonw: nowhere to write, as warnings itself does
                return
            try:
                stream.write(f"Note: {message}\n")
            except OSError:
                pass
            return
        show(message, category, filename, lineno, file, line)

    showwarning._workbench_notes = True  # type: ignore[attr-defined]
    return showwarning


_RECORDER = getattr(warnings, "_showwarnmsg_impl", None)  # catch_warnings(record=True) swaps it for list.append


def _install() -> None:
    """Wrap ``warnings.showwarning`` unless it is wrapped already or warnings are being recorded
    (wrapping there would bypass the record). A ``catch_warnings`` block that ends restores the
    function it found, so :func:`notify` checks again."""
    if getattr(warnings.showwarning, "_workbench_notes", False):
        return
    if getattr(warnings, "_showwarnmsg_impl", None) is not _RECORDER:
        return
    warnings.showwarning = _plain(warnings.showwarning)


_install()
