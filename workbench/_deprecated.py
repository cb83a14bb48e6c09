"""Old names that keep working for one release, with a ``DeprecationWarning`` (issue 31's naming rule).

Quantities are named ``sample_rate`` (never ``sr``) and ``<what>_s`` for seconds (never
``<what>_seconds``); docs/architecture.md, "Words". Where a renamed keyword or field is public, the old
spelling still works until the next release:

* :func:`renamed_keywords` wraps a function (or a dataclass ``__init__``) so that ``old=`` is passed on
  as ``new=`` with a warning;
* :func:`renamed_fields` does that for a dataclass and adds a property under the old name;
* :func:`upgrade_keys` renames the old keys of a dict read from a file, silently (files saved by an
  older version must keep loading, and their owner cannot change them).

>>> import warnings
>>> @renamed_keywords(max_seconds="max_s")
... def f(*, max_s=1.0):
...     return max_s
>>> with warnings.catch_warnings(record=True) as caught:
...     warnings.simplefilter("always")
...     (f(max_seconds=2.0), caught[0].category.__name__)
(2.0, 'DeprecationWarning')
>>> upgrade_keys({"max_seconds": 3.0, "seed": 0}, {"max_seconds": "max_s"})
{'max_s': 3.0, 'seed': 0}
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

__all__ = ["renamed_fields", "renamed_keywords", "upgrade_keys", "warn_renamed"]

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T", bound=type)


def warn_renamed(what: str, old: str, new: str) -> None:
    """Warn (``DeprecationWarning``, at the caller's caller) that ``what``'s ``old`` name is now ``new``."""
    warnings.warn(f"{what}: {old!r} is now called {new!r}; the old name stops working in the next release",
                  DeprecationWarning, stacklevel=3)


def renamed_keywords(**renames: str) -> Callable[[F], F]:
    """Decorator: accept each ``old=`` keyword (a key of ``renames``) as its new name, with a warning.

    Raises:
        TypeError: both the old and the new name given.
    """
    def wrap(fn: F) -> F:
        where = getattr(fn, "__qualname__", "this function").removesuffix(".__init__")

        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            for old, new in renames.items():
                if old in kwargs:
                    if new in kwargs:
                        raise TypeError(f"{where}() got both {old}= and {new}=; give only {new}= "
                                        f"({old} is its old name)")
                    warn_renamed(where, old, new)
                    kwargs[new] = kwargs.pop(old)
            return fn(*args, **kwargs)

        return inner  # type: ignore[return-value]

    return wrap


def _alias(cls_name: str, old: str, new: str) -> property:
    def get(self: Any) -> Any:
        warn_renamed(cls_name, old, new)
        return getattr(self, new)

    def set_(self: Any, value: Any) -> None:
        warn_renamed(cls_name, old, new)
        setattr(self, new, value)

    return property(get, set_, doc=f"Deprecated: the old name of :attr:`{new}`.")


def renamed_fields(**renames: str) -> Callable[[T], T]:
    """Class decorator (after ``@dataclass``): old field names work as keywords and as attributes, with a warning."""
    def wrap(cls: T) -> T:
        cls.__init__ = renamed_keywords(**renames)(cls.__init__)  # type: ignore[misc]
        for old, new in renames.items():
            setattr(cls, old, _alias(cls.__name__, old, new))
        return cls

    return wrap


def upgrade_keys(data: Mapping[str, Any], renames: Mapping[str, str]) -> dict[str, Any]:
    """A copy of ``data`` (read from a file) with each old key renamed; a new key already there wins."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key not in renames:
            out[key] = value
        elif renames[key] not in data:
            out[renames[key]] = value  # in the old key's place
    return out
