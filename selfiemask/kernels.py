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
"""

from __future__ import annotations

from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager
from tornado import web
from traitlets import Integer

__all__ = ["BoundedKernelManager"]


class BoundedKernelManager(AsyncMappingKernelManager):
    """``AsyncMappingKernelManager`` that refuses to start more than ``max_kernels`` kernels."""

    max_kernels = Integer(8, config=True, help="most kernels alive at once (each holds about 1 GB); 0: no bound")

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
            return await super().start_kernel(*args, **kwargs)
        finally:
            self._starting -= 1

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
