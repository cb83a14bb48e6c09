"""The login lockout and Panel's component-file route, on a fake clock and on a real served app.

Before the fix the login accepted 100 wrong passwords in 1.6 s, and
``/components/<module>/...`` imported any module named in the URL, without a login.
"""

from __future__ import annotations

import http.cookiejar
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("panel")

from workbench.app_pages.access import LoginThrottle  # noqa: E402

pytestmark = [pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "a-long-password"

SERVER = """
import sys
from workbench.app import serve
serve(sys.argv[1], port=int(sys.argv[2]), password=sys.argv[3] or None, show=False, verbose=False)
"""

PROBE = """
from pathlib import Path
Path(__file__).with_suffix(".imported").write_text("imported by a URL")
class Thing:
    _css = ["x.css"]
"""


# --------------------------------------------------------------------------- the throttle, on a fake clock


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_wrong_passwords_lock_an_address_out_for_longer_and_longer() -> None:
    clock = Clock()
    t = LoginThrottle(free_tries=5, first_wait_s=30, max_wait_s=900, clock=clock)
    for _ in range(4):
        t.failed("10.0.0.1")
        assert t.wait_s("10.0.0.1") == 0 and t.message("10.0.0.1") == ""
    t.failed("10.0.0.1")  # the fifth
    assert t.wait_s("10.0.0.1") == 30
    assert "Too many wrong passwords from this computer. Wait 30 seconds" in t.message("10.0.0.1")
    assert t.wait_s("10.0.0.2") == 0  # another computer is not affected
    clock.now += 30
    assert t.wait_s("10.0.0.1") == 0
    waits = []
    for _ in range(8):
        t.failed("10.0.0.1")
        waits.append(t.wait_s("10.0.0.1"))
        clock.now += waits[-1]
    assert waits == [60, 120, 240, 480, 900, 900, 900, 900]
    t.failed("10.0.0.1")
    assert "Wait 15 minutes" in t.message("10.0.0.1")
    t.succeeded("10.0.0.1")
    assert t.wait_s("10.0.0.1") == 0


def test_old_records_are_forgotten_and_memory_is_bounded() -> None:
    clock = Clock()
    t = LoginThrottle(free_tries=1, first_wait_s=10, forget_s=3600, max_clients=100, clock=clock)
    t.failed("a")
    assert t.wait_s("a") == 10
    clock.now += 3601
    assert t.wait_s("a") == 0 and "a" not in t._clients
    for i in range(250):
        t.failed(f"c{i}")
    assert len(t._clients) == 100 and "c249" in t._clients and "c0" not in t._clients


# --------------------------------------------------------------------------- a real served app


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(data: Path, password: str, extra_path: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(data), str(port), password],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(extra_path)])})
    url = f"http://127.0.0.1:{port}"
    t0 = time.monotonic()
    while time.monotonic() - t0 < 60:
        try:
            urllib.request.urlopen(url + "/login" if password else url + "/", timeout=30).read()
            return proc, url
        except OSError:
            if proc.poll() is not None:
                raise AssertionError(proc.stdout.read()) from None
            time.sleep(0.3)
    proc.kill()
    raise AssertionError("the app did not start")


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def _status(opener, url: str, data: bytes | None = None) -> tuple[int, str]:
    try:
        with opener.open(url, data=data, timeout=30) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode("utf-8", "replace")


def test_the_served_login_locks_out_after_five_wrong_passwords(tmp_path) -> None:
    proc, url = _serve(tmp_path / "data", PASSWORD, tmp_path)
    try:
        jar = http.cookiejar.CookieJar()
        browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))

        def login(password: str) -> tuple[int, str]:
            body = urllib.parse.urlencode({"username": "workbench", "password": password}).encode()
            return _status(browser, url + "/login", body)

        t0 = time.monotonic()
        pages = [login(f"wrong-{i}") for i in range(5)]
        assert all(code == 200 and "Wrong password. Try again." in page for code, page in pages[:4])
        assert "Too many wrong passwords from this computer. Wait 30 seconds" in pages[4][1]
        code, page = login("wrong-6")
        assert code == 429 and "Too many wrong passwords" in page
        code, page = login(PASSWORD)  # even the right one waits
        assert code == 429 and "Wait" in page and not any(c.name == "user" for c in jar)
        code, page = _status(browser, url + "/login")
        assert "Too many wrong passwords" in page
        assert time.monotonic() - t0 < 30
        # what the address bar says is never shown as the message
        code, page = _status(browser, url + "/login?error=%3Cscript%3Ealert(1)%3C/script%3E")
        assert "<script>alert" not in page
    finally:
        _stop(proc)


@pytest.mark.parametrize("password", ["", PASSWORD])
def test_the_components_route_imports_nothing_and_needs_the_login(tmp_path, password) -> None:
    (tmp_path / "wb_probe_module.py").write_text(PROBE)
    proc, url = _serve(tmp_path / "data", password, tmp_path)
    try:
        bare = urllib.request.build_opener(_NoRedirect)
        refused = (302, 403, 404) if password else (403, 404)  # 302: to the login page
        code, _ = _status(bare, url + "/components/wb_probe_module/Thing/_css/x.css")
        assert code in refused and not (tmp_path / "wb_probe_module.imported").exists()
        for path in ("os/path/_css/x", "antigravity/x/_css/y", "subprocess/Popen/_css/x"):
            assert _status(bare, f"{url}/components/{path}")[0] in refused
        bootstrap_css = url + "/components/panel.template.bootstrap/BootstrapTemplate/_css/bootstrap.css"
        code, text = _status(bare, bootstrap_css)
        if password:  # the login first, then the file
            assert code == 302
            jar = http.cookiejar.CookieJar()
            browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
            body = urllib.parse.urlencode({"username": "workbench", "password": password}).encode()
            assert _status(browser, url + "/login", body)[0] == 200
            code, text = _status(browser, bootstrap_css)
        assert code == 200 and len(text) > 100  # Panel's own files are still served
    finally:
        _stop(proc)
