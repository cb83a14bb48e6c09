"""workbench.errors: one family of errors a person can act on; ``ServeError`` is a deprecated name."""

from __future__ import annotations

import pytest

import workbench.errors as errors


def test_every_exported_error_is_a_workbench_error():
    for name in errors.__all__:
        assert issubclass(getattr(errors, name), errors.WorkbenchError), name


def test_serve_error_is_server_error_with_a_deprecation_warning():
    with pytest.warns(DeprecationWarning, match="ServeError is now ServerError"):
        from workbench.errors import ServeError
    assert ServeError is errors.ServerError
    with pytest.raises(AttributeError, match="NoSuchError"):
        _ = errors.NoSuchError  # only ServeError is kept
