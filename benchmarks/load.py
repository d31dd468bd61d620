"""Many visitors at once: the Voilà app served as `make app`, opened in N headless Chromium pages at once.

For each page: seconds until it is ready (upload button shown and the model loaded: its loading note
gone) and until the verdict after an upload. For the server: peak memory of Voilà and its kernels,
whether one more page is refused politely while N are open (the bound in voila.json), and how many
kernels are left ``--wait`` seconds after every page was left (goal: the preheated pool's size, 1).
Loopback only, bounded in time.

    .venv/bin/python benchmarks/load.py --pages 8          # Debian's chromium at /usr/bin/chromium
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import signal
import socket
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


def max_kernels() -> int:
    return json.loads((ROOT / "voila.json").read_text()).get("BoundedKernelManager", {}).get("max_kernels", 0) or 10**6


def photo(path: Path) -> Path:
    from PIL import Image
    from skimage import data

    buf = io.BytesIO()
    Image.fromarray(data.astronaut()).save(buf, "JPEG", quality=90)
    path.write_bytes(buf.getvalue())
    return path


async def visit(browser, url: str, upload: Path, out: dict) -> object:
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


async def run(url: str, pid: int, pages: int, wait: float, upload: Path) -> dict:
    from playwright.async_api import async_playwright

    results = [{} for _ in range(pages)]
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path="/usr/bin/chromium", args=FLAGS)
        opened = await asyncio.gather(*(visit(browser, url, upload, r) for r in results))
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
    ap.add_argument("--model", default=os.environ.get("SELFIEMASK_MODEL", "export.pkl"))
    a = ap.parse_args()
    env = {**os.environ, "SELFIEMASK_MODEL": a.model}
    port = free_port()
    log = open("/tmp/selfiemask_load_voila.log", "w")
    proc = subprocess.Popen([str(ROOT / ".venv" / "bin" / "voila"), "app.ipynb", f"--port={port}",
                             "--Voila.ip=127.0.0.1", "--no-browser"], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    mem = PeakMemory(proc.pid)
    try:
        time.sleep(5)
        mem.start()
        started = time.perf_counter()
        report = asyncio.run(run(url, proc.pid, a.pages, a.wait, photo(Path("/tmp/selfiemask_load.jpg"))))
        report["wall_s"] = round(time.perf_counter() - started, 1)
    finally:
        mem.stop = True
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()
    report["peak_memory_gb"] = round(mem.peak / 2**30, 2)
    ready = sorted(r["ready_s"] for r in report["pages"])
    verdict = sorted(r["verdict_s"] for r in report["pages"])
    report["ready_s_min_median_max"] = [ready[0], ready[len(ready) // 2], ready[-1]]
    report["verdict_s_min_median_max"] = [verdict[0], verdict[len(verdict) // 2], verdict[-1]]
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
