"""Kernels of the served app: a closed page frees its kernel, and their number is bounded (#15 item 3)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.error
import urllib.request

import pytest
from conftest import ROOT
from test_browser import CHROMIUM, FLAGS, free_port

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (apt-get install chromium)")]
VOILA = ROOT / ".venv" / "bin" / "voila"


def kernels(pid: int) -> int:
    """Kernel processes below the server ``pid``."""
    import psutil

    alive = 0
    for p in psutil.Process(pid).children(recursive=True):
        try:  # a kernel that was shut down may linger as a zombie until reaped: it is gone
            alive += p.status() != psutil.STATUS_ZOMBIE and "ipykernel" in " ".join(p.cmdline())
        except psutil.Error:
            pass
    return alive


@pytest.fixture()
def server(tmp_path, request):
    """Voilà on the project's voila.json (as `make app`), with extra options from the test's parameter."""
    env = dict(os.environ)
    if not (ROOT / "export.pkl").exists():
        env["SELFIEMASK_MODEL"] = str(request.getfixturevalue("tiny_model"))
    port = free_port()
    extra = getattr(request, "param", [])
    log = open(tmp_path / "voila.log", "w")
    proc = subprocess.Popen([str(VOILA), "app.ipynb", f"--port={port}", "--Voila.ip=127.0.0.1", "--no-browser",
                             *extra], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                urllib.request.urlopen(url + "voila/static/", timeout=2)
            except urllib.error.HTTPError:
                break  # answering
            except OSError:
                time.sleep(0.5)
                continue
            break
        yield url, proc
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def wait_for(pred, timeout: float) -> bool:
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return True
        time.sleep(0.5)
    return pred()


def test_closing_the_page_frees_its_kernel(server):
    from playwright.sync_api import sync_playwright

    url, proc = server
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        page = browser.new_page()
        page.goto(url)
        page.wait_for_selector("button.widget-upload", timeout=180_000)
        assert kernels(proc.pid) == 1
        page.goto("about:blank")  # leaving the page: Voilà's shutdown beacon (refused with 403 before)
        assert wait_for(lambda: kernels(proc.pid) == 0, 30), "the closed page's kernel is still running"
        browser.close()


@pytest.mark.parametrize("server", [["--BoundedKernelManager.max_kernels=1"]], indirect=True)
def test_kernels_are_bounded_and_refused_politely(server):
    url, proc = server
    assert urllib.request.urlopen(url, timeout=180).status == 200  # a plain fetch starts a kernel (culled later)
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(url, timeout=60)
    assert e.value.code == 503 and "try again in a few minutes" in e.value.reason
    assert kernels(proc.pid) == 1
