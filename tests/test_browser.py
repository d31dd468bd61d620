"""End to end: the app served as `make app` serves it, driven in Debian's headless Chromium."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import ROOT, jpeg_bytes

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (apt-get install chromium)")]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served_app(tmp_path_factory, request):
    """`make app PORT=…` in the project; the shipped export.pkl, or the tiny model where none is shipped."""
    tmp = tmp_path_factory.mktemp("voila")
    env = dict(os.environ)
    if not (ROOT / "export.pkl").exists():
        env["SELFIEMASK_MODEL"] = str(request.getfixturevalue("tiny_model"))
    port = free_port()
    log = open(tmp / "voila.log", "w")
    proc = subprocess.Popen(["make", "-s", "app", f"PORT={port}"], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.time() + 180
        while time.time() < deadline:
            try:
                urllib.request.urlopen(url, timeout=5)
                break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail(f"voila exited: {(tmp / 'voila.log').read_text()[-2000:]}")
                time.sleep(1)
        yield url, tmp
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # make and voila, by process group
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def test_upload_in_a_real_browser(served_app, astronaut, tmp_path):
    from playwright.sync_api import sync_playwright

    url, tmp = served_app
    photo = tmp_path / "selfie.jpg"
    photo.write_bytes(jpeg_bytes(astronaut))
    bad = tmp_path / "notes.jpg"
    bad.write_text("not a photo")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        page = browser.new_page()
        t0 = time.time()
        page.goto(url)
        page.wait_for_selector("button.widget-upload", timeout=180_000)
        ready = time.time() - t0
        with page.expect_file_chooser() as fc:
            page.click("button.widget-upload")
        t1 = time.time()
        fc.value.set_files(str(photo))
        verdict = page.wait_for_selector(".verdict", timeout=120_000)
        to_verdict = time.time() - t1
        classes = verdict.get_attribute("class").split()
        assert "verdict-with_mask" in classes or "verdict-without_mask" in classes
        assert "%" in verdict.inner_text()
        assert page.inner_text(".face-count") == "1 face found"  # a box is drawn on the one face
        page.screenshot(path=str(tmp / "app.png"), full_page=True)
        shot = os.environ.get("SELFIEMASK_SCREENSHOT")  # keep a copy where asked (README figure)
        if shot:
            page.screenshot(path=shot, full_page=True)
        assert page.query_selector("img.result-image") is not None
        with page.expect_file_chooser() as fc:
            page.click("button.widget-upload")
        fc.value.set_files(str(bad))
        msg = page.wait_for_selector(".upload-error", timeout=60_000)
        assert "cannot be used" in msg.inner_text() and "Traceback" not in page.content()
        browser.close()
    print(f"\npage ready {ready:.1f} s after opening; verdict {to_verdict:.1f} s after upload; "
          f"screenshot {tmp / 'app.png'}")
