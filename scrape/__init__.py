"""Instagram scraper: selfies from hashtags, public profiles and post lists into ``data/raw/<label>/``.

Built on instaloader (its Hashtag, Profile and Post structures, its download function and its rate
controller). Resumable (the manifest says what is there), private by default (no usernames or
captions stored unless asked), images only. Command line: ``python -m scrape --help``.

Modules: :mod:`.sources` (what to collect), :mod:`.run` (the run and its summary),
:mod:`.download` (one post's pictures), :mod:`.manifest` (``manifest.csv`` and ``forget``),
:mod:`.derived` (forgetting the copies, crops and log rows made from forgotten images, and naming models),
:mod:`.errors` (what a failure means), :mod:`.ratelimit` (back-off), :mod:`.session` (login),
:mod:`.preview` (contact sheet), :mod:`.hashing` (file and owner hashes), :mod:`.cli`.
It imports nothing from ``selfiemask``: it collects data and knows nothing of models.
"""

from .manifest import Manifest, Row, forget, read_manifest
from .ratelimit import BackoffTooLong
from .run import Summary, make_loader, scrape
from .session import SessionFileError
from .sources import DEFAULT_HASHTAGS, Source, SourceError, hashtags, post_list, profiles

__all__ = ["DEFAULT_HASHTAGS", "BackoffTooLong", "Manifest", "Row", "SessionFileError", "Source", "SourceError",
           "Summary", "forget", "hashtags", "make_loader", "post_list", "profiles", "read_manifest", "scrape"]
