"""What an instaloader failure means for the run: skip one post, give up one source, or stop.

Instaloader already retried by the time an exception reaches us (``max_connection_attempts``), so:

* a post that is gone or unreadable (404, 403 on an expired image URL, empty metadata) fails alone;
* a login-required answer fails its source, with what to do (a session file);
* repeated 429s, network errors, and Instagram's "checkpoint"/"logged out" answers stop the run:
  continuing would only dig deeper; the manifest already holds everything done, so the same
  command run later resumes.
"""

from __future__ import annotations

import re

import requests
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


def _chain(err: BaseException):
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__


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
