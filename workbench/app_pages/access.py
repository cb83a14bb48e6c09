"""Who may reach what on the server: the login with a lockout, and Panel's component-file route.

- :class:`LoginThrottle`: after :attr:`~LoginThrottle.free_tries` wrong passwords from one
  address, that address must wait before the next try (30 s, doubling with every further
  wrong one, at most 15 minutes); a right password resets it. Time comes from an injectable
  clock, so tests need not sleep.
- :func:`auth_provider`: Panel's basic-auth provider with that throttle in front of the
  password check (compared in constant time), and a login page that says how long to wait.
- :func:`component_route`: Panel serves ``/components/<module>/<class>/<attribute>/<file>`` and
  imports ``<module>`` by name, for anyone, logged in or not. This route takes its place: it
  needs the login when there is one, and only serves modules of Panel, Bokeh or the workbench
  that are already loaded (so a URL can never import anything).
"""

from __future__ import annotations

import hmac
import math
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["LoginThrottle", "auth_provider", "component_route"]

_COMPONENT_MODULES = ("panel", "bokeh", "workbench")


class LoginThrottle:
    """Count wrong passwords per client address and lock it out for a while after too many.

    Args:
        free_tries: wrong passwords allowed before the first wait.
        first_wait_s: the first wait; it doubles with each further wrong password.
        max_wait_s: the longest wait.
        forget_s: an address's record is dropped this long after its last wrong password.
        clock: ``fn() -> seconds`` (default :func:`time.monotonic`); tests pass a fake one.

    >>> now = [0.0]
    >>> t = LoginThrottle(free_tries=2, first_wait_s=30, clock=lambda: now[0])
    >>> t.failed("a"); t.failed("a"); t.wait_s("a")
    30.0
    >>> now[0] = 31.0; t.wait_s("a")
    0.0
    """

    def __init__(self, *, free_tries: int = 5, first_wait_s: float = 30.0, max_wait_s: float = 900.0,
                 forget_s: float = 3600.0, max_clients: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.free_tries, self.first_wait_s, self.max_wait_s = int(free_tries), float(first_wait_s), float(max_wait_s)
        self.forget_s, self.max_clients, self.clock = float(forget_s), int(max_clients), clock
        self._clients: dict[str, tuple[int, float, float]] = {}  # address -> (wrong tries, last wrong, locked until)
        self._lock = threading.Lock()

    def wait_s(self, client: str) -> float:
        """Seconds ``client`` must still wait before its next try (0: it may try now)."""
        now = self.clock()
        with self._lock:
            entry = self._clients.get(client)
            if entry is None:
                return 0.0
            if now - entry[1] > self.forget_s:
                del self._clients[client]
                return 0.0
            return max(0.0, entry[2] - now)

    def failed(self, client: str) -> None:
        """Record a wrong password from ``client``."""
        now = self.clock()
        with self._lock:
            count = self._clients.get(client, (0, now, now))[0] + 1
            until = now
            if count >= self.free_tries:
                until = now + min(self.first_wait_s * 2 ** (count - self.free_tries), self.max_wait_s)
            self._clients.pop(client, None)
            self._clients[client] = (count, now, until)  # newest last, so the oldest go first
            while len(self._clients) > self.max_clients:
                del self._clients[next(iter(self._clients))]

    def succeeded(self, client: str) -> None:
        """A right password: forget ``client``'s wrong ones."""
        with self._lock:
            self._clients.pop(client, None)

    def message(self, client: str) -> str:
        """What the login page says to ``client`` while it must wait ('' when it need not)."""
        wait = self.wait_s(client)
        if wait <= 0:
            return ""
        shown = f"{math.ceil(wait)} seconds" if wait < 120 else f"{math.ceil(wait / 60)} minutes"
        return (f"Too many wrong passwords from this computer. Wait {shown}, then try again. "
                "If the password is lost, ask whoever set up the app for it.")


def auth_provider(password: str, *, login_template: str, logout_template: str,
                  throttle: LoginThrottle | None = None) -> Any:
    """Panel's basic-auth provider for one password, with ``throttle`` in front of the check.

    The login page gets ``errormessage`` from the server (never from the address bar):
    the wait, or "Wrong password" after a wrong one.
    """
    from panel.auth import BasicAuthProvider, BasicLoginHandler, _validate_next_url
    from panel.io.state import state

    throttle = throttle or LoginThrottle()
    expected = password.encode("utf-8")

    class ThrottledLoginHandler(BasicLoginHandler):
        def _client(self) -> str:
            return str(self.request.remote_ip or "unknown")

        def get(self) -> None:
            wrong = bool(self.get_argument("error", ""))
            text = throttle.message(self._client()) or ("Wrong password. Try again." if wrong else "")
            next_url = _validate_next_url(self.get_argument("next", state.base_url))
            if next_url:
                self.set_cookie("next_url", next_url)
            self.write(self._login_template.render(login_endpoint=self._login_endpoint, errormessage=text))

        def _validate(self, username: str, password: str) -> bool:
            return hmac.compare_digest(str(password).encode("utf-8"), expected)

        def post(self) -> None:
            client = self._client()
            if throttle.wait_s(client) > 0:  # refused without looking at the password
                self.set_status(429)
                self.write(self._login_template.render(login_endpoint=self._login_endpoint,
                                                       errormessage=throttle.message(client)))
                return
            if self._validate(self.get_argument("username", ""), self.get_argument("password", "")):
                throttle.succeeded(client)
                self.set_current_user("workbench")
                self.redirect(_validate_next_url(self.get_cookie("next_url", state.base_url)))
                return
            throttle.failed(client)
            self.redirect(self.request.path + "?error=1")

    class ThrottledAuthProvider(BasicAuthProvider):
        @property
        def login_handler(self) -> type:
            ThrottledLoginHandler._login_endpoint = self._login_endpoint
            ThrottledLoginHandler._login_template = self._login_template
            return ThrottledLoginHandler

    provider = ThrottledAuthProvider(login_template=login_template, logout_template=logout_template)
    provider.throttle = throttle
    return provider


def component_route() -> tuple[str, type, dict]:
    """A tornado route replacing Panel's ``/components/...``: login required, no imports by URL."""
    from panel.io.resources import COMPONENT_PATH
    from panel.io.server import AuthenticatedStaticFileHandler, ComponentResourceHandler
    from tornado.web import HTTPError

    class GuardedComponentHandler(AuthenticatedStaticFileHandler, ComponentResourceHandler):
        def parse_url_path(self, path: str) -> str:
            module = path.split("/", 1)[0]
            if module.split(".")[0] not in _COMPONENT_MODULES or module not in sys.modules:
                raise HTTPError(404, "Not found")
            return super().parse_url_path(path)

    return (f"/{COMPONENT_PATH}(.*)", GuardedComponentHandler, {})
