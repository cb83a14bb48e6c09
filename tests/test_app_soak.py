"""The served app frees every browser session: page loads do not grow the server's memory.

Each page load builds one :class:`~workbench.app_pages.shell.WorkbenchApp` (five pages,
two hidden recorder widgets, charts). Before the fix, anywidget tied every recorder
widget, and through its callbacks the whole session, to a class-level file watcher,
so nothing was ever freed: about 4 MB per load (20 loads: 254 -> 337 MB).

The soak test serves the real app in a subprocess on 127.0.0.1, loads the page with
plain GETs in rounds, waits after each round until the server has destroyed every
session (the server script prints a line from ``WorkbenchApp.close``; sessions end
after a shorter unused lifetime than the app's 15 s, to keep the test short), and
bounds the growth of its resident memory after a warm-up round (the first loads
import Bokeh models, Matplotlib, ...).
Linux only (it reads ``/proc/<pid>/status``).
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import threading
import time
import urllib.request
import weakref
from pathlib import Path

import pytest

pn = pytest.importorskip("panel")

from workbench.app_pages.common import AppContext  # noqa: E402
from workbench.app_pages.shell import WorkbenchApp  # noqa: E402

pytestmark = [pytest.mark.timeout(150), pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")]

ROOT = Path(__file__).resolve().parent.parent
ROUND = 10  # page loads per round; every round waits until the server has closed their sessions
ROUNDS = 3  # measured rounds, after one warm-up round: ~125 MB of growth without the fix
MAX_GROWTH_MB = 20.0  # with the fix: measured 1-3 MB over 3 rounds (allocator noise)

SERVER = """
import sys
sys.path.insert(0, sys.argv[3])
from workbench.app_pages.shell import WorkbenchApp
_close = WorkbenchApp.close
def close(self):
    _close(self)
    print("session closed", flush=True)
WorkbenchApp.close = close
import workbench.app
workbench.app._SESSION_LIFETIME_MS, workbench.app._SESSION_CHECK_MS = 3000, 500  # shorter waits; same cleanup
from _models import tiny_backend
from workbench.app import serve
serve(sys.argv[1], port=int(sys.argv[2]), show=False, verbose=False, backend_factory=lambda name: tiny_backend())
"""


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS line")


class _Served:
    """The app in a subprocess; counts the sessions it has closed."""

    def __init__(self, data: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.closed = 0
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(data), str(self.port), str(ROOT / "tests")],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"})
        threading.Thread(target=self._read, daemon=True).start()
        t0 = time.monotonic()
        while True:
            try:
                urllib.request.urlopen(self.url, timeout=30).read()
                self.loads = 1
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() - t0 > 60:
                    self.stop()
                    raise AssertionError("the app did not start:\n" + "".join(self.lines[-30:])) from None
                time.sleep(0.3)

    def _read(self) -> None:
        for line in self.proc.stdout:  # type: ignore[union-attr]
            self.lines.append(line)
            if line.startswith("session closed"):
                self.closed += 1

    def load(self, n: int) -> None:
        for _ in range(n):
            page = urllib.request.urlopen(self.url, timeout=30).read().decode()
            assert "Speech Workbench" in page
            self.loads += 1

    def wait_all_closed(self, timeout: float = 45.0) -> None:
        t0 = time.monotonic()
        while self.closed < self.loads:
            if time.monotonic() - t0 > timeout:
                raise AssertionError(f"only {self.closed} of {self.loads} sessions were closed after "
                                     f"{timeout:.0f} s:\n{''.join(self.lines[-30:])}")
            time.sleep(0.25)
        time.sleep(1.0)  # let the server finish the cleanup it started

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads the server's memory from /proc (Linux)")
def test_page_loads_do_not_grow_the_servers_memory(tmp_path) -> None:
    # Equal rounds, so that the allocator's high-water mark (sessions alive at once) is the same
    # in each: what is left above it after the warm-up round is what sessions failed to free.
    server = _Served(tmp_path / "data")
    try:
        server.load(ROUND - 1)
        server.wait_all_closed()
        rss = [_rss_mb(server.proc.pid)]
        for _ in range(ROUNDS):
            server.load(ROUND)
            server.wait_all_closed()
            rss.append(_rss_mb(server.proc.pid))
        print(f"\nserver RSS after each round of {ROUND} page loads (warm-up first): "
              + ", ".join(f"{r:.0f}" for r in rss) + " MB")
        growth = rss[-1] - rss[0]
        assert growth < MAX_GROWTH_MB, (
            f"{ROUNDS * ROUND} page loads left {growth:.0f} MB behind (" + " -> ".join(f"{r:.0f}" for r in rss)
            + " MB)")
    finally:
        server.stop()


def test_a_closed_session_is_freed() -> None:
    """What the soak test measures, without a server: nothing keeps a closed session alive."""
    import tempfile

    from ipywidgets.widgets import widget as ipyw

    with tempfile.TemporaryDirectory() as d:
        before = set(ipyw._instances)
        app = WorkbenchApp(AppContext(data_dir=d))
        app.close()
        assert set(ipyw._instances) <= before  # the hidden recorder widgets left the registry
        ref = weakref.ref(app)
        del app
        gc.collect()
        assert ref() is None, "a closed WorkbenchApp is still referenced"
