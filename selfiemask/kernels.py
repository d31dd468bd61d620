"""A kernel manager for the Voilà app that holds a bounded number of kernels, preheated ones included.

Every page load starts a kernel that imports torch and loads the learner: about
1 GB each. Kernels end when their page closes (Voilà's shutdown beacon, which
``voila.json`` lets through) or when culled after a few idle minutes, but a burst
of visitors (or of plain ``curl`` requests, which start a kernel and never close
it) could still exhaust memory. Past :attr:`BoundedKernelManager.max_kernels`
kernels a new page is refused with HTTP 503 and a message asking to retry, instead.

Voilà's preheated pool (``preheat_kernel`` in ``voila.json``) starts its kernels
through the same method, so the pool counts against the bound too. Voilà wraps
this class in its own pool manager, which refills the pool only when a visitor
takes a kernel from it: a refill refused because the bound was reached would
leave the pool empty for good (every later visitor waiting for a cold kernel). So
when a kernel ends, refused refills are dropped from the pool and it is filled
again (:meth:`BoundedKernelManager.shutdown_kernel`).

Visitors who come one after another (#23): the pool holds two heated kernels (``default_pool_size``) and
refills one second after a visitor takes one (``fill_delay``), so the next visitor finds a heated kernel even
while the last refill is still loading; each costs about 1.1 GB, so the pool's two are 2.2 GB held while nobody
visits. A refill imports torch and loads the model for seconds on every core, just when the visitor who took
the last kernel uploads a photo: a kernel therefore heats at a lower CPU priority (``heat_nice``) and gets the
normal one back once it is idle (the model loaded). Raising a priority back needs root (CAP_SYS_NICE); a
server run by another user leaves its kernels at the lower one, all alike, and says so once.
"""

from __future__ import annotations

import asyncio
import os
import time

from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager
from tornado import web
from traitlets import Integer

__all__ = ["BoundedKernelManager"]


class BoundedKernelManager(AsyncMappingKernelManager):
    """``AsyncMappingKernelManager`` that refuses to start more than ``max_kernels`` kernels."""

    max_kernels = Integer(8, config=True, help="most kernels alive at once (each holds about 1 GB); 0: no bound")
    heat_nice = Integer(10, config=True, help="niceness of a kernel until it is first idle (heated); 0: unchanged")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._starting = 0  # starts in flight count too: a burst of requests cannot overshoot the bound
        self._closing = False  # the server is stopping: no pool refills

    async def start_kernel(self, *args, **kwargs) -> str:
        if kwargs.get("kernel_id") is None and self.max_kernels and \
                len(self.list_kernel_ids()) + self._starting >= self.max_kernels:
            self.log.warning("refusing a new kernel: %d running (max_kernels)", self.max_kernels)
            raise web.HTTPError(503, reason="Too many visitors right now; please try again in a few minutes",
                                log_message=f"{self.max_kernels} kernels are running (max_kernels)")
        self._starting += 1
        try:
            kernel_id = await super().start_kernel(*args, **kwargs)
        finally:
            self._starting -= 1
        if self.heat_nice and kwargs.get("kernel_id") is None:
            self._heat_at_low_priority(kernel_id)
        return kernel_id

    def _heat_at_low_priority(self, kernel_id: str) -> None:
        """Lower the new kernel's priority (every thread: Linux sets niceness per thread) until it is idle."""
        pid = getattr(getattr(self.get_kernel(kernel_id), "provisioner", None), "pid", None)
        if not pid:
            return
        if _set_niceness(pid, self.heat_nice):
            asyncio.get_running_loop().create_task(self._restore_priority_when_idle(pid))

    async def _restore_priority_when_idle(self, pid: int, quiet_s: float = 1.0, timeout_s: float = 180) -> None:
        """Back to the server's niceness once the kernel used under 5% of a core for ``quiet_s`` seconds."""
        start, quiet_since, used = time.monotonic(), None, _cpu_seconds(pid)
        while used is not None and time.monotonic() - start < timeout_s:
            await asyncio.sleep(0.25)
            now = _cpu_seconds(pid)
            if now is None:
                return  # the kernel ended while heating
            if now - used > 0.05 * 0.25:
                quiet_since = None
            elif quiet_since is None:
                quiet_since = time.monotonic()
            used = now
            if quiet_since is not None and time.monotonic() - quiet_since >= quiet_s:
                break
        if not _set_niceness(pid, os.getpriority(os.PRIO_PROCESS, 0)) and not getattr(self, "_told_nice", False):
            self._told_nice = True
            self.log.warning("kernels keep niceness %d after heating: raising a priority back needs root",
                             self.heat_nice)

    async def shutdown_kernel(self, kernel_id: str, *args, **kwargs) -> None:
        await super().shutdown_kernel(kernel_id, *args, **kwargs)
        self._refill_pools()

    async def shutdown_all(self, *args, **kwargs) -> None:
        self._closing = True
        await super().shutdown_all(*args, **kwargs)

    def _refill_pools(self) -> None:
        """Voilà's preheated pools (absent without ``preheat_kernel``): drop refused starts, fill up again."""
        pools = getattr(self, "_pools", None)
        if self._closing or not pools:
            return
        for notebook, pool in pools.items():
            failed = [t for t in pool if t.done() and (t.cancelled() or t.exception() is not None)]
            for task in failed:
                pool.remove(task)
            if failed:
                self.log.info("preheated pool of %s: %d refused start(s) dropped, refilling", notebook, len(failed))
            self.fill_if_needed(notebook_name=notebook)  # up to the pool's size; nothing when it is full


def _threads(pid: int) -> list[int]:
    try:
        return [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return [pid]


def _set_niceness(pid: int, niceness: int) -> bool:
    """Every thread of ``pid`` at ``niceness``; False where refused (or gone)."""
    done = True
    for tid in _threads(pid):
        try:
            os.setpriority(os.PRIO_PROCESS, tid, niceness)
        except ProcessLookupError:
            pass
        except OSError:
            done = False
    return done


def _cpu_seconds(pid: int) -> float | None:
    """CPU seconds ``pid`` used so far (user and system, every thread); None once it is gone."""
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
