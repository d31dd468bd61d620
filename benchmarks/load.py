"""Many visitors: the Voilà app served as `make app`, opened in N headless Chromium pages, at once or one after another.

For each page: seconds until it is ready (upload button shown and the model loaded: its loading note
gone) and until the verdict after an upload made as soon as the page is ready. For the server: peak memory
of Voilà and its kernels, whether one more page is refused politely while N are open (the bound in
voila.json), and how many kernels are left ``--wait`` seconds after every page was left (goal: the
preheated pool's size). ``--apart S``: visitor i arrives i*S seconds after the first (each a fresh browser
context, its page kept open until the last visitor has a verdict), as people who come one after another;
goal (#23): every upload-to-verdict within 2 s when they come 10 s apart. The machine's load average is
printed with the figures: other processes share the cores. Loopback only, bounded in time.

    .venv/bin/python benchmarks/load.py --pages 8                 # at once; Debian's chromium at /usr/bin/chromium
    .venv/bin/python benchmarks/load.py --pages 6 --apart 10      # one after another
    .venv/bin/python benchmarks/load.py --pages 6 --apart 10 --voila-arg=--pool_size=1   # another pool, same run
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tree(pid: int):
    import psutil

    p = psutil.Process(pid)
    return [p, *p.children(recursive=True)]


def kernels(pid: int) -> int:
    import psutil

    alive = 0
    for p in tree(pid)[1:]:
        try:  # a kernel that was shut down may linger as a zombie until reaped: it is gone
            alive += p.status() != psutil.STATUS_ZOMBIE and "ipykernel" in " ".join(p.cmdline())
        except psutil.Error:
            pass
    return alive


class PeakMemory(threading.Thread):
    """Samples the resident memory of the server and its kernels every 0.5 s."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.stop = pid, 0, False

    def run(self) -> None:
        while not self.stop:
            try:
                self.peak = max(self.peak, sum(p.memory_info().rss for p in tree(self.pid)))
            except Exception:  # noqa: BLE001 - a process ended between listing and reading
                pass
            time.sleep(0.5)


def wait_until_quiet(pid: int, hold: float, timeout: float = 300) -> float:
    """Seconds until the server's kernels (one at least) used under 5% of a core for ``hold`` s: the pool is heated."""
    import psutil

    def cpu() -> tuple[int, float]:
        total, n = 0.0, 0
        for p in tree(pid)[1:]:
            try:
                if "ipykernel" in " ".join(p.cmdline()):
                    t = p.cpu_times()
                    total, n = total + t.user + t.system, n + 1
            except psutil.Error:
                pass
        return n, total

    t0 = time.monotonic()
    since, (n, used) = t0, cpu()
    while time.monotonic() - t0 < timeout:
        time.sleep(1)
        n_now, used_now = cpu()
        if n_now == 0 or n_now != n or used_now - used > 0.05:
            since = time.monotonic()
        n, used = n_now, used_now
        if time.monotonic() - since >= hold:
            break
    return round(time.monotonic() - t0, 1)


def max_kernels() -> int:
    return json.loads((ROOT / "voila.json").read_text()).get("BoundedKernelManager", {}).get("max_kernels", 0) or 10**6


def photo(path: Path) -> Path:
    from PIL import Image
    from skimage import data

    buf = io.BytesIO()
    Image.fromarray(data.astronaut()).save(buf, "JPEG", quality=90)
    path.write_bytes(buf.getvalue())
    return path


async def visit(browser, url: str, upload: Path, out: dict, delay: float = 0.0) -> object:
    await asyncio.sleep(delay)
    out["arrived_s"] = round(delay, 1)
    ctx = await browser.new_context()
    page = await ctx.new_page()
    t0 = time.perf_counter()
    await page.goto(url, timeout=600_000)
    await page.wait_for_selector("button.widget-upload", timeout=600_000)
    await page.wait_for_selector(".model-info", timeout=600_000)  # the model loads after the page shows
    out["ready_s"] = round(time.perf_counter() - t0, 1)
    async with page.expect_file_chooser() as fc:
        await page.click("button.widget-upload")
    t1 = time.perf_counter()
    await (await fc.value).set_files(str(upload))
    await page.wait_for_selector(".verdict", timeout=600_000)
    out["verdict_s"] = round(time.perf_counter() - t1, 1)
    return page


async def run(url: str, pid: int, pages: int, wait: float, upload: Path, apart: float = 0.0) -> dict:
    from playwright.async_api import async_playwright

    results = [{} for _ in range(pages)]
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path="/usr/bin/chromium", args=FLAGS)
        opened = await asyncio.gather(*(visit(browser, url, upload, r, i * apart) for i, r in enumerate(results)))
        open_kernels = kernels(pid)
        extra = "not tried (fewer pages than max_kernels)"
        if pages >= max_kernels():  # one more page, as a plain fetch: refused while the bound is reached
            try:
                urllib.request.urlopen(url, timeout=120)
                extra = "served"
            except urllib.error.HTTPError as e:
                extra = f"{e.code} {e.reason}"
        for page in opened:
            await page.goto("about:blank")  # leaving the page: Voilà's shutdown beacon
            await page.close()
        closed_at = time.perf_counter()
        left_10 = None
        while time.perf_counter() - closed_at < wait:
            await asyncio.sleep(1)
            if left_10 is None and time.perf_counter() - closed_at >= 10:
                left_10 = kernels(pid)
        await browser.close()
    return {"pages": results, "kernels_while_open": open_kernels, "one_more_page": extra,
            "kernels_left_10s": left_10, f"kernels_left_{int(wait)}s": kernels(pid)}


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--pages", type=int, default=8)
    ap.add_argument("--wait", type=float, default=60, help="seconds after closing to count kernels left")
    ap.add_argument("--apart", type=float, default=0, help="seconds between visitors' arrivals (0: all at once)")
    ap.add_argument("--model", default=os.environ.get("SELFIEMASK_MODEL", "export.pkl"))
    ap.add_argument("--voila-arg", action="append", default=[], metavar="ARG",
                    help="extra option for voila, e.g. --voila-arg=--pool_size=2 (repeatable; voila.json otherwise)")
    ap.add_argument("--settle", type=float, default=8,
                    help="the first visitor comes once the server's kernels were quiet this long (the pool heated)")
    a = ap.parse_args()
    env = {**os.environ, "SELFIEMASK_MODEL": a.model}
    port = free_port()
    log = open("/tmp/selfiemask_load_voila.log", "w")
    proc = subprocess.Popen([str(ROOT / ".venv" / "bin" / "voila"), "app.ipynb", f"--port={port}",
                             "--Voila.ip=127.0.0.1", "--no-browser", *a.voila_arg], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    mem = PeakMemory(proc.pid)
    try:
        time.sleep(3)
        heated_after = wait_until_quiet(proc.pid, a.settle)
        mem.start()
        load_before = os.getloadavg()[0]
        started = time.perf_counter()
        report = asyncio.run(run(url, proc.pid, a.pages, a.wait, photo(Path("/tmp/selfiemask_load.jpg")), a.apart))
        report["wall_s"] = round(time.perf_counter() - started, 1)
        report["pool_heated_after_s"] = heated_after + 3
        report["load_average_1min_before_after"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    finally:
        mem.stop = True
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()
    report["peak_memory_gb"] = round(mem.peak / 2**30, 2)
    report["pages_given_a_preheated_kernel"] = Path(log.name).read_text().count("Using pre-heated kernel")
    report["settings"] = {"apart_s": a.apart, "settle_s": a.settle, "voila_args": a.voila_arg, "cores": os.cpu_count(),
                          "voila.json": json.loads((ROOT / "voila.json").read_text())}
    for key in ("ready_s", "verdict_s"):
        times = [r[key] for r in report["pages"]]
        report[f"{key}_min_median_max"] = [min(times), round(statistics.median(times), 2), max(times)]
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
