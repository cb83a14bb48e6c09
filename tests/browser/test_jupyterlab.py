"""Notebooks 02, 03 and 08 in a real JupyterLab, driven by headless Chromium with Run All.

What only a browser shows: that figures arrive as images (not the text
``<Figure size 800x300 with 1 Axes>``), and that the live trainer's Stop button stops
a training that a Run All started while the next cell waits for it (a cell that
blocks the kernel queues the click until training has ended by itself); that notebook 03's
word-by-word table starts with the errors, and that notebook 08 shows two different WER
figures and a speaker probe that finds the speaker in log-mel (issue 24). Screenshots of the
table and the probe figure are left in the test's temporary folder.

The server binds 127.0.0.1 with a random token, serves a temporary copy of the two
notebooks (JupyterLab saves outputs into the files it runs) and starts kernels as
JupyterLab does (no ``MPLBACKEND``), with ``WORKBENCH_FAST=1``.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from _browser import CHROMIUM, free_port, require_browser, stop_process, wait_listening

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
RUN_ALL_S = 240  # the longest a notebook may take here (a busy 2-core machine)


def _require_jupyterlab() -> None:
    if importlib.util.find_spec("jupyterlab") is None:
        message = "browser test needs jupyterlab (pip install -e '.[dev]')"
        if os.environ.get("WORKBENCH_REQUIRE_BROWSER") == "1":
            pytest.fail(message + " (WORKBENCH_REQUIRE_BROWSER=1)")
        pytest.skip(message)


@pytest.fixture
def lab(tmp_path: Path):
    """``(base_url, token)`` of a JupyterLab serving copies of notebooks 02, 03 and 08."""
    require_browser()
    _require_jupyterlab()
    root = tmp_path / "lab"
    root.mkdir()
    for name in ("02_adaptive_specaugment.ipynb", "03_personalize_live.ipynb", "08_device_and_server.ipynb"):
        shutil.copy(NOTEBOOKS / name, root / name)
    settings = tmp_path / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)  # no "get notified about Jupyter news?" toast, no update check (offline)
    (settings / "notification.jupyterlab-settings").write_text('{"fetchNews": "false", "checkForUpdates": false}')
    notebook = settings.parent / "notebook-extension"
    notebook.mkdir()  # every cell in the page, not only those scrolled into view
    (notebook / "tracker.jupyterlab-settings").write_text('{"windowingMode": "none"}')
    port, token = free_port(), secrets.token_hex(16)
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}  # kernels start as in a user's JupyterLab
    env.update(WORKBENCH_FAST="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               JUPYTER_CONFIG_DIR=str(tmp_path / "config"), JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
               IPYTHONDIR=str(tmp_path / "ipython"),
               JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "settings"), JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "ws"))
    log = (tmp_path / "lab.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}",
         f"--ServerApp.token={token}", f"--ServerApp.root_dir={root}", "--ServerApp.open_browser=False",
         "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=root)
    try:
        if not wait_listening(proc, port, timeout=90):
            log.flush()
            pytest.fail("JupyterLab did not start:\n" + (tmp_path / "lab.log").read_text()[-3000:])
        yield f"http://127.0.0.1:{port}", token
    finally:
        stop_process(proc, 20)
        log.close()


def _open(page, base: str, token: str, name: str) -> None:
    """Open a notebook and wait until its kernel is idle (choosing the kernel if JupyterLab asks)."""
    page.goto(f"{base}/lab/tree/{name}?token={token}&reset", wait_until="domcontentloaded")
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=90_000)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        select = page.locator(".jp-Dialog button", has_text="Select")
        if select.count():
            try:
                select.first.click(timeout=2000)
            except Exception:  # the dialog closed or moved meanwhile: look again
                pass
        if page.locator(".jp-StatusBar-Item", has_text="Idle").count():
            return
        page.wait_for_timeout(300)
    pytest.fail(f"the kernel of {name} did not start")


def _run_all(page) -> None:
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()


def _wait_all_ran(page, timeout_s: float) -> None:
    """Every code cell has an execution count ([1], [2], ...) and none is queued or running ([*])."""
    page.wait_for_function(
        """() => {
            const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')];
            return prompts.length > 0 && prompts.every(p => /\\[\\d+\\]/.test(p.textContent));
        }""", timeout=timeout_s * 1000, polling=500)


def _cell_texts(page) -> list[str]:
    return page.eval_on_selector_all(".jp-CodeCell", "cells => cells.map(c => c.innerText)")


def _fail_with_shot(page, tmp: Path, message: str) -> None:
    shot = tmp / "failure.png"
    page.screenshot(path=shot, full_page=True)
    pytest.fail(f"{message} (screenshot: {shot})")


def test_run_all_shows_figures_as_images_and_stop_stops_training(lab, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    base, token = lab
    with sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(  # a new, empty profile
            str(tmp_path / "chromium"), executable_path=CHROMIUM, headless=True, args=FLAGS,
            viewport={"width": 1300, "height": 900})
        try:
            page = browser.pages[0] if browser.pages else browser.new_page()

            # -- notebook 02: every figure is an image ---------------------------------------
            _open(page, base, token, "02_adaptive_specaugment.ipynb")
            _run_all(page)
            try:
                _wait_all_ran(page, RUN_ALL_S)
            except Exception:
                _fail_with_shot(page, tmp_path, "notebook 02 did not finish under Run All")
            texts = _cell_texts(page)
            assert not [t for t in texts if "<Figure size" in t], "a figure was printed as text"
            images = page.locator(".jp-OutputArea-output img")
            assert images.count() >= 2, f"expected the spectrogram and the grid as images, got {images.count()}"
            sizes = images.evaluate_all("imgs => imgs.map(i => [i.naturalWidth, i.naturalHeight])")
            assert all(w > 100 and h > 100 for w, h in sizes), sizes

            # -- notebook 03: Run All, then Stop while the next cell waits ----------------------
            _open(page, base, token, "03_personalize_live.ipynb")
            _run_all(page)
            trainer = page.locator(".widget-hbox:has(.widget-hprogress)").first
            status = page.locator(".widget-label", has_text="training").first
            try:
                status.wait_for(timeout=RUN_ALL_S * 1000)  # a training step has been reported
                page.wait_for_function(
                    "() => [...document.querySelectorAll('.widget-label')]"
                    ".some(l => /training: .*step [1-9]/.test(l.textContent))", timeout=120_000, polling=200)
            except Exception:
                _fail_with_shot(page, tmp_path, "notebook 03 never showed a training step")
            start = trainer.locator("button", has_text="Start")
            assert start.is_disabled(), "Start must be greyed out while training runs"
            clicked = time.monotonic()
            trainer.locator("button", has_text="Stop").click()
            try:
                page.wait_for_function(
                    "() => [...document.querySelectorAll('.widget-label')]"
                    ".some(l => l.textContent.includes('finished ('))", timeout=60_000, polling=200)
            except Exception:
                _fail_with_shot(page, tmp_path, "training did not finish after Stop")
            finished = page.locator(".widget-label", has_text="finished (").first.inner_text()
            assert "stopped by user" in finished, f"Stop was ignored: {finished!r}"
            assert time.monotonic() - clicked < 30
            try:
                _wait_all_ran(page, RUN_ALL_S)  # the cells after the wait ran: comparison, report
            except Exception:
                _fail_with_shot(page, tmp_path, "notebook 03 did not finish after Stop")
            texts = _cell_texts(page)
            assert any("report:" in t for t in texts), "the report cell did not run"
            assert not [t for t in texts if "<Figure size" in t], "a figure was printed as text"
            assert trainer.locator(".progress-bar").evaluate("b => b.style.width") == "100%"
            curve = page.locator(".jp-CodeCell", has_text="await session.wait()").locator(".jp-OutputArea-output img")
            assert curve.count() == 1, "the training curve is not shown as an image"
            table = page.locator(".jp-CodeCell", has_text="to_html_table(").locator(".jp-OutputArea")
            table.screenshot(path=tmp_path / "nb03-table.png")
            headings = table.locator("h4").all_inner_texts()
            assert headings[:1] == ["Most word errors after training"], headings
        finally:
            browser.close()


def _percent(text: str, label: str) -> float:
    import re

    m = re.search(re.escape(label) + r"\s*(\d+(?:\.\d+)?)%", text)
    assert m, f"no '{label} N%' in {text!r}"
    return float(m.group(1))


def test_notebook_08_shows_a_real_before_after_and_a_calibrated_probe(lab, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    base, token = lab
    with sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(
            str(tmp_path / "chromium"), executable_path=CHROMIUM, headless=True, args=FLAGS,
            viewport={"width": 1300, "height": 900})
        try:
            page = browser.pages[0] if browser.pages else browser.new_page()
            _open(page, base, token, "08_device_and_server.ipynb")
            _run_all(page)
            try:
                _wait_all_ran(page, RUN_ALL_S)
            except Exception:
                _fail_with_shot(page, tmp_path, "notebook 08 did not finish under Run All")
            texts = _cell_texts(page)
            part3 = next(t for t in texts if "trainer.fit()" in t)
            before, after = _percent(part3, "before"), _percent(part3, "after")
            assert before != after, part3  # was "before 60.8 %, after 60.8 %"
            probe = next(t for t in texts if "probe_split(" in t)
            chance = _percent(probe, "chance")
            assert _percent(probe, "raw log-mel:") >= 3 * chance, probe  # was 12 %: chance
            assert _percent(probe, "d-vectors (calibration):") >= 80, probe
            figure = page.locator(".jp-CodeCell", has_text="axvline(100 * chance").locator(".jp-OutputArea-output img")
            assert figure.count() == 1, "the probe figure is not shown as an image"
            figure.screenshot(path=tmp_path / "nb08-probe.png")
            assert not [t for t in texts if "<Figure size" in t or "UserWarning" in t], "noise or a figure as text"
        finally:
            browser.close()
