"""What an instaloader failure means for the run: skip one post, give up one source, or stop.

Instaloader already retried by the time an exception reaches us (``max_connection_attempts``), so:

* a post that is gone or unreadable (404, 403 on an expired image URL, empty metadata) fails alone;
* a login-required answer fails its source, with what to do (a session file);
* repeated 429s, network errors, and Instagram's "checkpoint"/"logged out" answers stop the run:
  continuing would only dig deeper; the manifest already holds everything done, so the same
  command run later resumes;
* Instagram that cannot be reached at all (no DNS answer, connection refused, connecting timed out:
  :func:`unreachable`) stops the run at the first attempt, without instaloader's retries, and a run
  that got nothing says in one line what to do instead (:func:`offline_advice`).
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from pathlib import Path

import requests
import urllib3.exceptions
from instaloader.exceptions import (
    AbortDownloadException,
    BadResponseException,
    ConnectionException,
    InvalidArgumentException,
    LoginRequiredException,
    PostChangedException,
    PrivateProfileNotFollowedException,
    ProfileNotExistsException,
    QueryReturnedBadRequestException,
    QueryReturnedForbiddenException,
    QueryReturnedNotFoundException,
    TooManyRequestsException,
)

from .ratelimit import BackoffTooLong
from .session import LOGIN_HINT

ITEM, SOURCE, STOP = "item", "source", "stop"

# instaloader's download retry re-raises a bare ConnectionException whose text keeps the HTTP status.
_GONE_STATUS = re.compile(r"\b(404|403|410)\b")
_TOO_MANY = re.compile(r"\b429\b|Too Many Requests", re.IGNORECASE)

RESUME_HINT = "everything downloaded so far is kept and recorded; run the same command again later to resume"


def _chain(err: BaseException | None) -> Iterator[BaseException]:
    """``err`` and everything it wraps: causes and contexts, and what requests and urllib3 keep as arguments
    (requests' ConnectionError holds urllib3's MaxRetryError, whose ``reason`` holds the socket error)."""
    todo, seen = [err], set()
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo += [e.__cause__, e.__context__, getattr(e, "reason", None), getattr(e, "original_error", None)]
        todo += [a for a in e.args if isinstance(a, BaseException)]


class Unreachable(AbortDownloadException):
    """Instagram cannot be reached at all. An AbortDownloadException, so instaloader neither retries it nor
    swallows it: retrying at once cannot bring a network back, and each retry would print a line."""

    def __init__(self, why: str):
        self.why = why
        super().__init__(f"Instagram is unreachable ({why})")


def unreachable(err: BaseException | None) -> str | None:
    """Why Instagram could not be connected to at all, or ``None`` if the failure came later than connecting
    (a reset or a timeout while reading is a dropped connection, which instaloader's retries may get past)."""
    for e in _chain(err):
        if isinstance(e, Unreachable):
            return e.why
    chain = list(_chain(err))
    if any(isinstance(e, (urllib3.exceptions.NameResolutionError, socket.gaierror)) for e in chain):
        return "its name does not resolve: no internet or no DNS here"
    if any(isinstance(e, urllib3.exceptions.ProxyError) for e in chain):
        return "the proxy cannot be connected to"
    if any(isinstance(e, (urllib3.exceptions.ConnectTimeoutError, requests.exceptions.ConnectTimeout)) for e in chain):
        return "connecting timed out"
    if any(isinstance(e, (urllib3.exceptions.NewConnectionError, ConnectionRefusedError)) for e in chain):
        return "the connection was refused"
    return None


def offline_advice(dest: str | Path | None, why: str) -> str:
    """The one line a run that got nothing because Instagram is unreachable ends with: what to do instead."""
    raw = f"{Path(dest).as_posix() if dest is not None else 'data/raw'}/<label>/"
    return (f"Instagram is unreachable ({why}). Put your own photos in {raw} (e.g. with_mask/, without_mask/) "
            "and go on with 02_clean.ipynb (or `selfiemask clean all`); to scrape, run this again once online "
            "(a post list works too).")


def rate_limited(err: BaseException) -> bool:
    return any(isinstance(e, TooManyRequestsException) or _TOO_MANY.search(str(e)) for e in _chain(err))


def severity(err: BaseException) -> str:
    """ITEM, SOURCE or STOP for an exception raised while working on one post of one source."""
    if isinstance(err, (BackoffTooLong, AbortDownloadException)):
        return STOP
    if isinstance(err, (LoginRequiredException, PrivateProfileNotFollowedException, ProfileNotExistsException)):
        return SOURCE
    if isinstance(err, (QueryReturnedNotFoundException, QueryReturnedForbiddenException, BadResponseException,
                        PostChangedException, InvalidArgumentException, QueryReturnedBadRequestException)):
        return ITEM
    if isinstance(err, ConnectionException):
        if rate_limited(err):
            return STOP
        return ITEM if _GONE_STATUS.search(str(err)) else STOP
    if isinstance(err, requests.exceptions.RequestException):
        return STOP
    return ITEM


def explain(err: BaseException) -> str:
    """One line saying what happened and, where there is something to do, what to do."""
    first = str(err).splitlines()[0] if str(err) else type(err).__name__
    if isinstance(err, BackoffTooLong):
        return f"stopped: {err}; {RESUME_HINT}"
    why = unreachable(err)
    if why:
        return f"stopped: Instagram is unreachable ({why}); {RESUME_HINT}"
    if isinstance(err, (LoginRequiredException, PrivateProfileNotFollowedException)):
        # instaloader's own advice names its command's options; ours are in LOGIN_HINT.
        first = first.replace(" Use --login or --load-cookies.", "").strip()
        return f"Instagram wants a login here ({first}): {LOGIN_HINT}"
    if isinstance(err, AbortDownloadException):
        return (f"stopped: Instagram refused to go on ({first}). If you use a session file, log in again with "
                f"`instaloader --login YOUR_USER`; otherwise wait. {RESUME_HINT}")
    if isinstance(err, ConnectionException) and rate_limited(err):
        return (f"stopped: Instagram keeps answering 429 Too Many Requests after backing off and retrying ({first}); "
                f"{RESUME_HINT} (wait an hour or more)")
    if severity(err) == STOP:
        return f"stopped: connection failed after retrying ({first}); {RESUME_HINT}"
    if isinstance(err, (QueryReturnedNotFoundException, ProfileNotExistsException)) or (
            isinstance(err, ConnectionException) and _GONE_STATUS.search(str(err))):
        return f"not found, deleted or not public ({first})"
    return first
