"""Kernels of the served app: a closed page frees its kernel, their number is bounded (#15 item 3), and
Voilà's preheated pool (#13) counts against the bound and is filled again when kernels end."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request

import pytest
from conftest import ROOT
from test_browser import CHROMIUM, FLAGS, free_port, kernel_processes, kernels, server_ready, wait_for_idle_kernels

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (apt-get install chromium)")]
VOILA = ROOT / ".venv" / "bin" / "voila"
#: Seconds until the pool starts refilling after a visitor took its kernel (voila.json), plus a start's time.
REFILL_S = json.loads((ROOT / "voila.json").read_text()).get("VoilaKernelManager", {}).get("fill_delay", 1) + 3


@pytest.fixture()
def server(tmp_path, request):
    """Voilà on the project's voila.json (as `make app`), with extra options from the test's parameter."""
    env = dict(os.environ)
    if not (ROOT / "export.pkl").exists():
        env["SELFIEMASK_MODEL"] = str(request.getfixturevalue("rule_face_model"))
    port = free_port()
    # One pooled kernel, whatever voila.json's pool size: the counts below are worked out for one.
    extra = ["--pool_size=1", *getattr(request, "param", [])]
    log = open(tmp_path / "voila.log", "w")
    proc = subprocess.Popen([str(VOILA), "app.ipynb", f"--port={port}", "--Voila.ip=127.0.0.1", "--no-browser",
                             *extra], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        server_ready(url, proc, tmp_path / "voila.log")
        yield url, proc
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def wait_for(pred, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.5)
    return pred()


def kernel_id(page_html: str) -> str:
    """The kernel a served page talks to (Voilà's page config)."""
    return re.search(r'"kernelId": "([0-9a-f-]+)"', page_html)[1]


def shut_down(url: str, kid: str) -> None:
    """What the page's shutdown beacon does when a visitor leaves."""
    req = urllib.request.Request(f"{url}voila/api/shutdown/{kid}", data=b"", method="POST")
    assert urllib.request.urlopen(req, timeout=60).status == 204


def test_closing_the_page_frees_its_kernel(server):
    from playwright.sync_api import sync_playwright

    url, proc = server
    wait_for_idle_kernels(proc.pid, 1)  # the preheated pool's kernel
    (pooled,) = kernel_processes(proc.pid)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        page = browser.new_page()
        page.goto(url)
        page.wait_for_selector("button.widget-upload", timeout=180_000)
        # The page took the pooled kernel; the pool starts another for the next visitor.
        assert wait_for(lambda: kernels(proc.pid) == 2, 60), f"{kernels(proc.pid)} kernels"
        page.goto("about:blank")  # leaving the page: Voilà's shutdown beacon (refused with 403 before)
        assert wait_for(lambda: pooled.pid not in {k.pid for k in kernel_processes(proc.pid)}, 30), \
            "the closed page's kernel is still running"
        assert wait_for(lambda: kernels(proc.pid) == 1, 30), f"{kernels(proc.pid)} kernels: only the pool's is left"
        browser.close()


@pytest.mark.parametrize("server", [["--BoundedKernelManager.max_kernels=1"]], indirect=True)
def test_kernels_are_bounded_and_refused_politely(server):
    url, proc = server
    # The pool's kernel first: a request before Voilà has started it gets a kernel of its own (then refused here).
    wait_for_idle_kernels(proc.pid, 1)
    assert urllib.request.urlopen(url, timeout=180).status == 200  # a plain fetch takes a kernel (culled later)
    time.sleep(REFILL_S)  # the pool's refill (after Voilà's fill_delay) is refused: one kernel is the bound
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(url, timeout=60)
    assert e.value.code == 503 and "try again in a few minutes" in e.value.reason
    assert kernels(proc.pid) == 1


@pytest.mark.parametrize("server", [["--BoundedKernelManager.max_kernels=2"]], indirect=True)
def test_preheated_pool_stays_within_the_bound_and_refills(server):
    """Two kernels at most, the pool's included; when a page's kernel ends, the pool is heated again."""
    url, proc = server
    wait_for_idle_kernels(proc.pid, 1)  # the pool's kernel, heated (an earlier request would start its own)
    first = urllib.request.urlopen(url, timeout=180).read().decode()  # takes the pooled kernel; the pool refills
    wait_for_idle_kernels(proc.pid, 2)
    urllib.request.urlopen(url, timeout=180).read()  # takes the refilled one: the next refill is refused
    time.sleep(REFILL_S)
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(url, timeout=60)
    assert e.value.code == 503 and "try again in a few minutes" in e.value.reason
    assert kernels(proc.pid) == 2
    shut_down(url, kernel_id(first))  # the first visitor leaves: room for the pool again
    wait_for_idle_kernels(proc.pid, 2)  # the page left and a newly heated kernel
    assert urllib.request.urlopen(url, timeout=180).status == 200  # served from the pool again
    assert kernels(proc.pid) == 2
