"""End to end: the app served as `make app` serves it, driven in Debian's headless Chromium.

A desktop page (upload, verdict, a bad file), a phone-sized page (390x844: every
verdict on screen, no sideways scrolling, full button labels), and how long a
visitor waits for a ready page when Voilà's preheated kernel has already loaded
the model (``voila.json``).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import ROOT, jpeg_bytes

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (apt-get install chromium)")]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run"]
TITLE = "Selfie Mask Detector"
PHONE = {"width": 390, "height": 844}
#: A generous bound on the ready time of a preheated page: the measured figure (docs/app.md) is far lower; this
#: only catches a page that went back to loading the model after the visitor arrived (20 s and more here).
PREHEATED_READY_BOUND_S = 15.0
#: Kernels Voilà keeps heated for the next visitors (voila.json).
POOL = json.loads((ROOT / "voila.json").read_text())["VoilaConfiguration"]["default_pool_size"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kernel_processes(pid: int) -> list:
    """The live kernel processes below the server ``pid``."""
    import psutil

    found = []
    for p in psutil.Process(pid).children(recursive=True):
        try:  # a kernel that was shut down may linger as a zombie until reaped: it is gone
            if p.status() != psutil.STATUS_ZOMBIE and "ipykernel" in " ".join(p.cmdline()):
                found.append(p)
        except psutil.Error:
            pass
    return found


def kernels(pid: int) -> int:
    return len(kernel_processes(pid))


def wait_for_idle_kernels(pid: int, count: int, timeout: float = 300, hold: float = 8) -> None:
    """Until ``count`` kernels run below ``pid``, the same ones, using under 5% of a core, for ``hold`` seconds.

    Heated, that is; ``hold`` is longer than Voilà's ``fill_delay`` (voila.json), so a refill that is
    scheduled but not started yet cannot pass for a quiet pool.
    """
    import psutil

    def state() -> tuple[set[int], float]:
        procs, total = kernel_processes(pid), 0.0
        for p in procs:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
        return {p.pid for p in procs}, total

    end = time.monotonic() + timeout
    since, (pids, cpu) = time.monotonic(), state()
    while time.monotonic() < end:
        time.sleep(1)
        now_pids, now_cpu = state()
        if now_pids != pids or len(now_pids) != count or now_cpu - cpu > 0.05:
            since = time.monotonic()
        pids, cpu = now_pids, now_cpu
        if time.monotonic() - since >= hold:
            return
    pytest.fail(f"the kernels did not settle: {kernels(pid)} running, {count} expected")


def wait_until_ready(page, timeout_ms: int = 180_000) -> None:
    """The page is ready when its upload button shows and its loading note is gone (the model is loaded)."""
    page.wait_for_selector("button.widget-upload", timeout=timeout_ms)
    page.wait_for_selector(".model-info", timeout=timeout_ms)
    page.wait_for_selector(".loading-note", state="hidden", timeout=timeout_ms)


def leave(page) -> None:
    """Leave the page as a visitor does: its shutdown beacon ends its kernel at once.

    Closing the browser sends no beacon, and the kernel would live until culled (2 minutes), holding up the
    next test that waits for the pool alone.
    """
    page.goto("about:blank")


def server_ready(url: str, proc: subprocess.Popen, log_path: Path, timeout: float = 180) -> None:
    """Until the server answers: on its static folder, so that no page (and no kernel) is used up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url + "voila/static/", timeout=5)
            return
        except urllib.error.HTTPError:
            return  # answering
        except OSError:
            if proc.poll() is not None:
                pytest.fail(f"voila exited: {log_path.read_text()[-2000:]}")
            time.sleep(1)
    pytest.fail("voila did not answer")


@pytest.fixture(scope="module")
def served_app(tmp_path_factory, request):
    """`make app PORT=…` in the project; the shipped export.pkl, or the tiny model where none is shipped."""
    tmp = tmp_path_factory.mktemp("voila")
    env = dict(os.environ)
    if not (ROOT / "export.pkl").exists():
        env["SELFIEMASK_MODEL"] = str(request.getfixturevalue("rule_face_model"))
    port = free_port()
    log = open(tmp / "voila.log", "w")
    proc = subprocess.Popen(["make", "-s", "app", f"PORT={port}"], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        server_ready(url, proc, tmp / "voila.log")
        yield url, tmp, proc
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # make and voila, by process group
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def test_upload_in_a_real_browser(served_app, astronaut, tmp_path):
    from playwright.sync_api import sync_playwright

    url, tmp, _ = served_app
    photo = tmp_path / "selfie.jpg"
    photo.write_bytes(jpeg_bytes(astronaut))
    bad = tmp_path / "notes.jpg"
    bad.write_text("not a photo")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        page = browser.new_page()
        t0 = time.monotonic()
        page.goto(url)
        wait_until_ready(page)
        ready = time.monotonic() - t0
        assert page.title() == TITLE
        with page.expect_file_chooser() as fc:
            page.click("button.widget-upload")
        t1 = time.monotonic()
        fc.value.set_files(str(photo))
        verdict = page.wait_for_selector(".verdict", timeout=120_000)
        to_verdict = time.monotonic() - t1
        classes = verdict.get_attribute("class").split()
        assert "verdict-with_mask" in classes or "verdict-without_mask" in classes
        assert "%" in verdict.inner_text()
        assert page.inner_text(".face-count") == "1 face found"  # a box is drawn on the one face
        page.screenshot(path=str(tmp / "app.png"), full_page=True)
        shot = os.environ.get("SELFIEMASK_SCREENSHOT")  # keep a copy where asked (the screenshot docs/app.png)
        if shot:
            page.screenshot(path=shot, full_page=True)
        assert page.query_selector("img.result-image") is not None
        with page.expect_file_chooser() as fc:
            page.click("button.widget-upload")
        fc.value.set_files(str(bad))
        msg = page.wait_for_selector(".upload-error", timeout=60_000)
        assert "cannot be used" in msg.inner_text() and "Traceback" not in page.content()
        leave(page)
        browser.close()
    print(f"\npage ready {ready:.1f} s after opening; verdict {to_verdict:.1f} s after upload; "
          f"screenshot {tmp / 'app.png'}")


def test_phone_sized_page_shows_every_verdict_without_sideways_scrolling(served_app, three_faces, tmp_path):
    from playwright.sync_api import sync_playwright

    url, tmp, _ = served_app
    group = tmp_path / "group.jpg"
    group.write_bytes(jpeg_bytes(three_faces))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        page = browser.new_page(viewport=PHONE)
        page.goto(url)
        wait_until_ready(page)
        assert page.title() == TITLE
        # Sample buttons show their whole label (no ellipsis: nothing cut off inside the button).
        buttons = page.query_selector_all(".sample-button")
        assert buttons
        for b in buttons:
            assert b.inner_text().startswith("Sample: ")
            assert b.evaluate("e => e.scrollWidth <= e.clientWidth"), b.inner_text()
            box = b.bounding_box()
            assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], (b.inner_text(), box)
        with page.expect_file_chooser() as fc:
            page.click("button.widget-upload")
        fc.value.set_files(str(group))
        page.wait_for_selector(".verdict", timeout=120_000)
        picture = page.query_selector("img.result-image").bounding_box()
        verdicts = page.query_selector_all(".verdict")
        assert len(verdicts) == page.evaluate("document.querySelectorAll('.verdict').length") >= 1
        for v in verdicts:
            v.scroll_into_view_if_needed()
            box = v.bounding_box()
            assert box["width"] > 100, box  # not squeezed to nothing beside the photo
            assert 0 <= box["x"] and box["x"] + box["width"] <= PHONE["width"], box
            assert box["y"] >= picture["y"] + picture["height"] - 1  # the photo above its verdicts
        assert picture["x"] >= 0 and picture["x"] + picture["width"] <= PHONE["width"], picture
        widths = page.evaluate("[document.documentElement.scrollWidth, document.body.scrollWidth, window.innerWidth]")
        assert max(widths[:2]) <= widths[2], f"the page scrolls sideways: {widths}"
        if len(verdicts) > 1:
            assert page.inner_text(".face-count").startswith(f"{len(verdicts)} faces: ")
        page.screenshot(path=str(tmp / "phone.png"), full_page=True)
        leave(page)
        browser.close()


def test_preheated_page_is_ready_at_once(served_app):
    """Voilà's preheated kernel has run the notebook and loaded the model before the visitor came.

    ``SELFIEMASK_READY_VISITS=N`` measures N first visits (a fresh browser context each: nothing cached)
    and N visits of one context whose scripts are cached (after one visit not counted): the figures of docs/app.md.
    """
    import statistics

    from playwright.sync_api import sync_playwright

    url, _, proc = served_app
    n = int(os.environ.get("SELFIEMASK_READY_VISITS", "1"))

    def visit(context) -> float:
        wait_for_idle_kernels(proc.pid, POOL)  # the pool's kernels, heated; no page open
        page = context.new_page()
        t0 = time.monotonic()
        page.goto(url)
        wait_until_ready(page)
        ready = time.monotonic() - t0
        assert page.query_selector(".loading-note").is_hidden()
        leave(page)
        page.close()
        return ready

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        cold = []
        for _ in range(n):
            context = browser.new_context(viewport=PHONE)
            cold.append(visit(context))
            context.close()
        cached = []
        if n > 1:
            context = browser.new_context(viewport=PHONE)
            visit(context)
            cached = [visit(context) for _ in range(n)]
        browser.close()

    def line(times: list[float]) -> str:
        low, mid, high = min(times), statistics.median(times), max(times)
        return f"{low:.2f} / {mid:.2f} / {high:.2f} s (min / median / max of {len(times)})"

    print(f"\npreheated page ready (upload button shown, model loaded) after opening: first visits {line(cold)}"
          + (f"; scripts cached {line(cached)}" if cached else ""))
    assert max(cold + cached) < PREHEATED_READY_BOUND_S
