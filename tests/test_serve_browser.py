"""`make serve` under a path prefix, as behind a reverse proxy that passes the prefix through (docs/deploy.md).

Served on loopback with ``BASE_URL``; a real browser gets a verdict through the prefix, every request and the
kernel's websocket go through it, the root path serves nothing, and the one line `make serve` prints says how to
stop it, which works (the server exits and takes its kernels with it).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request

import pytest
from conftest import ROOT, jpeg_bytes
from test_browser import CHROMIUM, FLAGS, free_port, kernel_processes, leave, server_ready, wait_until_ready

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (apt-get install chromium)")]
PREFIX = "/selfie-mask/"
STOP_LINE = re.compile(r"Serving the Selfie Mask Detector on (http://\S+) \(stop it with Ctrl-C, or kill (\d+)\)")


def alive(process) -> bool:
    import psutil

    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def first_line(log_path, proc: subprocess.Popen, timeout: float = 60) -> re.Match:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = STOP_LINE.search(log_path.read_text())
        if m:
            return m
        if proc.poll() is not None:
            pytest.fail(f"make serve exited: {log_path.read_text()[-2000:]}")
        time.sleep(0.5)
    pytest.fail(f"make serve printed no line on how to stop it: {log_path.read_text()[-2000:]}")


@pytest.fixture()
def served(tmp_path, request):
    """`make serve` on loopback under PREFIX; the shipped export.pkl, or the tiny model where none is shipped."""
    env = dict(os.environ)
    if not (ROOT / "export.pkl").exists():
        env["SELFIEMASK_MODEL"] = str(request.getfixturevalue("tiny_model"))
    port = free_port()
    log_path = tmp_path / "serve.log"
    log = open(log_path, "w")
    proc = subprocess.Popen(["make", "-s", "serve", "HOST=127.0.0.1", f"PORT={port}", f"BASE_URL={PREFIX}"],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield port, proc, log_path
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)  # make and voila, by process group (a no-op once stopped)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def test_make_serve_under_a_prefix_gives_a_verdict_in_a_browser(served, astronaut, tmp_path):
    from playwright.sync_api import sync_playwright

    port, proc, log_path = served
    origin = f"http://127.0.0.1:{port}"
    line = first_line(log_path, proc)
    assert line[1] == origin + PREFIX
    url = line[1]
    server_ready(url, proc, log_path)
    with pytest.raises(urllib.error.HTTPError) as e:  # nothing outside the prefix (and no kernel started for it)
        urllib.request.urlopen(origin + "/", timeout=30)
    assert e.value.code == 404

    photo = tmp_path / "selfie.jpg"
    photo.write_bytes(jpeg_bytes(astronaut))
    requests: list[str] = []
    sockets: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        page = browser.new_page()
        page.on("request", lambda r: requests.append(r.url))
        page.on("websocket", lambda ws: sockets.append(ws.url))
        page.goto(url)
        wait_until_ready(page)
        with page.expect_file_chooser() as fc:
            page.click("button.widget-upload")
        fc.value.set_files(str(photo))
        verdict = page.wait_for_selector(".verdict", timeout=120_000)
        classes = verdict.get_attribute("class").split()
        assert "verdict-with_mask" in classes or "verdict-without_mask" in classes
        assert "%" in verdict.inner_text() and "Traceback" not in page.content()
        leave(page)
        browser.close()
    ours = [r for r in requests if r.startswith(origin)]
    assert ours and all(r.startswith(origin + PREFIX) for r in ours), [r for r in ours if PREFIX not in r]
    assert sockets and all(s.startswith(f"ws://127.0.0.1:{port}{PREFIX}") for s in sockets), sockets

    # The printed way to stop it: the server ends, and its kernels with it.
    kernels = kernel_processes(int(line[2]))
    assert kernels, "no kernel below the pid make serve printed: it is not the server's"
    os.kill(int(line[2]), signal.SIGTERM)
    proc.wait(timeout=60)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(map(alive, kernels)):
        time.sleep(0.5)
    assert not any(map(alive, kernels)), "kernels outlived the server"
