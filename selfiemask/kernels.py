"""A kernel manager for the Voilà app that holds a bounded number of kernels.

Every page load starts a kernel that imports torch and loads the learner: about
1 GB each. Kernels end when their page closes (Voilà's shutdown beacon, which
``voila.json`` lets through) or when culled after a few idle minutes, but a burst
of visitors (or of plain ``curl`` requests, which start a kernel and never close
it) could still exhaust memory. Past :attr:`BoundedKernelManager.max_kernels`
kernels a new page is refused with HTTP 503 and a message asking to retry, instead.
Voilà's preheated pool (``preheat_kernel``) starts its kernels through the same
method, so the pool counts against the bound too.
"""

from __future__ import annotations

from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager
from tornado import web
from traitlets import Integer


class BoundedKernelManager(AsyncMappingKernelManager):
    """``AsyncMappingKernelManager`` that refuses to start more than ``max_kernels`` kernels."""

    max_kernels = Integer(8, config=True, help="most kernels alive at once (each holds about 1 GB); 0: no bound")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._starting = 0  # starts in flight count too: a burst of requests cannot overshoot the bound

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
