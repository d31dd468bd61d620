"""`make serve` under a path prefix, as behind a reverse proxy that passes the prefix through (docs/deploy.md).

Served on loopback with ``BASE_URL``; a real browser gets a verdict through the prefix, every request and the
kernel's websocket go through it, the root path serves nothing, and the one line `make serve` prints says how to
stop it, which works (the server exits and takes its kernels with it). Then the same behind nginx, configured
with the block docs/deploy.md gives (skipped without nginx).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import ROOT, jpeg_bytes
from test_browser import (
    CHROMIUM,
    FLAGS,
    free_port,
    kernel_processes,
    leave,
    server_ready,
    wait_for_idle_kernels,
    wait_until_ready,
)

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


def niceness(process) -> set[int]:
    """The niceness of every thread of ``process`` (Linux sets it per thread)."""
    import psutil

    found = set()
    for t in process.threads():
        try:
            found.add(psutil.Process(t.id).nice())
        except psutil.Error:
            pass
    return found


def pool_heats_at_low_priority_then_gets_it_back(pid: int) -> None:
    """kernels.py: a heating kernel yields the CPU to the visitors' (heat_nice), and is at the server's priority
    once heated. Needs root to raise the priority back; elsewhere the kernels stay lower, all alike."""
    import psutil

    low = json.loads((ROOT / "voila.json").read_text()).get("BoundedKernelManager", {}).get("heat_nice", 10)
    server = psutil.Process(pid).nice()
    seen, deadline = set(), time.monotonic() + 60
    while time.monotonic() < deadline and server + low not in seen:
        for k in kernel_processes(pid):
            seen |= niceness(k) if alive(k) else set()
        time.sleep(0.1)
    assert server + low in seen or not low, f"no kernel heated at niceness {server + low}: {seen}"
    pool = json.loads((ROOT / "voila.json").read_text())["VoilaConfiguration"]["default_pool_size"]
    wait_for_idle_kernels(pid, pool)
    if os.geteuid() == 0:
        assert {n for k in kernel_processes(pid) for n in niceness(k)} == {server}


def verdict_through(url: str, photo) -> tuple[list[str], list[str]]:
    """A visitor at ``url`` uploads ``photo`` and gets a verdict; the URLs of the page's requests and websockets."""
    from playwright.sync_api import sync_playwright

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
    return requests, sockets


def assert_through_prefix(origin: str, requests: list[str], sockets: list[str]) -> None:
    ours = [r for r in requests if r.startswith(origin)]
    assert ours and all(r.startswith(origin + PREFIX) for r in ours), [r for r in ours if PREFIX not in r]
    ws_origin = origin.replace("http://", "ws://", 1)
    assert sockets and all(s.startswith(ws_origin + PREFIX) for s in sockets), sockets


def test_make_serve_under_a_prefix_gives_a_verdict_in_a_browser(served, astronaut, tmp_path):
    port, proc, log_path = served
    origin = f"http://127.0.0.1:{port}"
    line = first_line(log_path, proc)
    assert line[1] == origin + PREFIX
    server_ready(line[1], proc, log_path)
    with pytest.raises(urllib.error.HTTPError) as e:  # nothing outside the prefix (and no kernel started for it)
        urllib.request.urlopen(origin + "/", timeout=30)
    assert e.value.code == 404
    pool_heats_at_low_priority_then_gets_it_back(int(line[2]))
    photo = tmp_path / "selfie.jpg"
    photo.write_bytes(jpeg_bytes(astronaut))
    assert_through_prefix(origin, *verdict_through(line[1], photo))

    # The printed way to stop it: the server ends, and its kernels with it.
    kernels = kernel_processes(int(line[2]))
    assert kernels, "no kernel below the pid make serve printed: it is not the server's"
    os.kill(int(line[2]), signal.SIGTERM)
    proc.wait(timeout=60)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(map(alive, kernels)):
        time.sleep(0.5)
    assert not any(map(alive, kernels)), "kernels outlived the server"


def nginx_conf(port: int, upstream: int, tmp: Path) -> Path:
    """docs/deploy.md's nginx block, its ports replaced by ours, in a config nginx runs from a temp folder."""
    doc = (ROOT / "docs" / "deploy.md").read_text()
    block = re.search(r"```nginx\n(.*?)```", doc, re.S)[1]
    assert "listen 80;" in block and "127.0.0.1:8866" in block
    block = block.replace("listen 80;", f"listen 127.0.0.1:{port};").replace("127.0.0.1:8866", f"127.0.0.1:{upstream}")
    temp = "".join(f"{kind}_temp_path {tmp / kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    conf = tmp / "nginx.conf"
    conf.write_text(f"pid {tmp / 'nginx.pid'};\nerror_log {tmp / 'error.log'};\nevents {{}}\n"
                    f"http {{\naccess_log {tmp / 'access.log'};\n{temp}{block}\n}}\n")
    return conf


@pytest.mark.skipif(not shutil.which("nginx"), reason="needs nginx (apt-get install nginx-light)")
def test_behind_nginx_as_docs_deploy_md_configures_it(served, astronaut, tmp_path):
    """The reverse proxy of docs/deploy.md in front of `make serve BASE_URL=...`: the page and its websocket."""
    port, proc, log_path = served
    line = first_line(log_path, proc)
    server_ready(line[1], proc, log_path)
    front = free_port()
    conf = nginx_conf(front, port, tmp_path)
    nginx = subprocess.Popen(["nginx", "-p", str(tmp_path), "-c", str(conf), "-g", "daemon off;"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        origin = f"http://127.0.0.1:{front}"
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(origin + PREFIX + "voila/static/", timeout=5)
                break
            except urllib.error.HTTPError:
                break  # nginx passed it to Voilà, which answered
            except OSError:
                if nginx.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"nginx did not start: {nginx.stdout.read().decode()[-2000:]}")
                time.sleep(0.5)
        photo = tmp_path / "selfie.jpg"
        photo.write_bytes(jpeg_bytes(astronaut))
        assert_through_prefix(origin, *verdict_through(origin + PREFIX, photo))
    finally:
        nginx.terminate()
        nginx.wait(timeout=20)
