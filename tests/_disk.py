"""Simulated disk failures for tests (root ignores permissions, so they are monkeypatched)."""

from __future__ import annotations

import errno
import os

import pytest

__all__ = ["fail_atomic_writes", "read_only_open"]


class _FailingFile:
    """A file object whose writes fail with ``OSError(code)`` (ENOSPC: full, EROFS: read-only)."""

    def __init__(self, real, code: int) -> None:
        self._real, self._code = real, code

    def write(self, data):
        raise OSError(self._code, os.strerror(self._code))

    def __getattr__(self, name):
        return getattr(self._real, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._real.close()


def fail_atomic_writes(monkeypatch: pytest.MonkeyPatch, code: int) -> None:
    """Every write through ``workbench._atomic`` fails with ``code``."""
    import workbench._atomic as atomic

    real = os.fdopen
    monkeypatch.setattr(atomic.os, "fdopen", lambda fd, mode="r": _FailingFile(real(fd, mode), code))


def read_only_open(monkeypatch: pytest.MonkeyPatch) -> None:
    """``os.open`` refuses every write or create as a read-only file system does."""
    real_open = os.open

    def read_only(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)
