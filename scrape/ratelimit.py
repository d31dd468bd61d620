"""Back-off on HTTP 429 through instaloader's own RateController, with the sleeping made injectable.

Instaloader retries a query that was answered 429 after :meth:`RateController.handle_429` has
slept (typically about 11 minutes), up to ``max_connection_attempts`` times. We keep its timing and
only route the sleeping through a callable, so tests (and a caller with its own clock) do not wait,
and refuse a single wait longer than ``max_wait`` seconds: the run then stops with a message and
can be resumed later, rather than blocking for hours.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from instaloader import InstaloaderContext, RateController
from instaloader.exceptions import AbortDownloadException

DEFAULT_MAX_WAIT = 30 * 60


class BackoffTooLong(AbortDownloadException):
    """Instagram asked us to wait longer than we accept. An AbortDownloadException, so instaloader does not retry."""

    def __init__(self, seconds: float, limit: float):
        self.seconds, self.limit = seconds, limit
        super().__init__(f"Instagram's rate limit asks for a wait of {seconds / 60:.0f} min, "
                         f"more than the {limit / 60:.0f} min accepted (max_wait)")


class PatientRateController(RateController):
    """instaloader's RateController, sleeping through ``sleep`` and refusing waits over ``max_wait`` seconds."""

    def __init__(self, context: InstaloaderContext, sleep: Callable[[float], object] | None = None,
                 max_wait: float = DEFAULT_MAX_WAIT):
        super().__init__(context)
        self._sleep = sleep
        self.max_wait = max_wait
        self.waits: list[float] = []

    def sleep(self, secs: float) -> None:
        if secs > self.max_wait:
            raise BackoffTooLong(secs, self.max_wait)
        self.waits.append(secs)
        (self._sleep or time.sleep)(secs)  # looked up now, so patching time.sleep works too


def rate_controller_factory(sleep: Callable[[float], object] | None = None, max_wait: float = DEFAULT_MAX_WAIT,
                            ) -> Callable[[InstaloaderContext], PatientRateController]:
    """What ``Instaloader(rate_controller=...)`` expects: a function of the context."""
    return lambda ctx: PatientRateController(ctx, sleep=sleep, max_wait=max_wait)
