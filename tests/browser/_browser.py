"""What the browser tests (and ``docs/make_screenshots.py``) share: Debian's Chromium, never a downloaded one.

- :data:`CHROMIUM`, :data:`ARGS`: the browser and its flags (fake microphone, no sync or updates);
- :func:`browser_problems` / :func:`require_browser`: what is missing, and skip or fail on it
  (``WORKBENCH_REQUIRE_BROWSER=1`` turns a skip into a failure, as in CI);
- :func:`free_port`, :func:`wait_listening` (a server subprocess is up), :func:`shot` (a whole-page
  screenshot of the app), :func:`nav` (the app's sidebar).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox", "--disable-gpu", "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
]


def browser_problems(*, panel: bool = False) -> list[str]:
    """What this machine lacks for a browser test (empty when all is there)."""
    reasons = []
    if not Path(CHROMIUM).exists():
        reasons.append(f"{CHROMIUM} is missing (sudo apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        reasons.append("the playwright package is missing (pip install playwright; never download its browsers)")
    if panel:
        try:
            import panel as _pn  # noqa: F401
        except ImportError:
            reasons.append("panel is missing (pip install 'workbench[ui]')")
    return reasons


def require_browser(*, panel: bool = False) -> None:
    """Skip the calling test when the browser is missing; fail instead with ``WORKBENCH_REQUIRE_BROWSER=1``."""
    import pytest

    reasons = browser_problems(panel=panel)
    if reasons:
        message = "browser test needs: " + "; ".join(reasons)
        if os.environ.get("WORKBENCH_REQUIRE_BROWSER") == "1":
            pytest.fail(message + " (WORKBENCH_REQUIRE_BROWSER=1)")
        pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(proc: subprocess.Popen, port: int, *, timeout: float = 90.0) -> bool:
    """Wait until 127.0.0.1:``port`` accepts connections: True, or False when ``proc`` exits or time runs out."""
    t0 = time.monotonic()
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            if proc.poll() is not None or time.monotonic() - t0 > timeout:
                return False
            time.sleep(0.2)


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """Terminate a server started by a test; kill it if it has not ended after ``timeout`` s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()


def shot(page, path: Path) -> None:
    """A screenshot of the whole page: the app's template scrolls inside its main area, so grow the window first."""
    size = page.viewport_size
    height = page.evaluate("() => Math.max(...Array.from(document.querySelectorAll('body, body *'))"
                           ".map(e => e.scrollHeight))")
    page.set_viewport_size({"width": size["width"], "height": int(min(max(size["height"], height + 240), 5000))})
    page.wait_for_timeout(300)
    page.screenshot(path=path, full_page=True)
    page.set_viewport_size(size)


def nav(page, name: str) -> None:
    """Click a page's button in the app's sidebar."""
    page.locator("#sidebar").get_by_role("button", name=name, exact=True).click()
