"""The scraping run: every source in turn, with resume, limits, a progress bar and a summary.

This is the Python API that the command line and ``notebooks/01_scrape.ipynb`` call::

    from scrape import scrape, hashtags
    summary = scrape(hashtags({"maskselfie": "with_mask", "selfie": "without_mask"}, limit=50), "data/raw")
    print(summary)

What is fetched from Instagram, and how, is instaloader's: :class:`Hashtag`, :class:`Profile`,
:class:`Post`, :meth:`Instaloader.download_pic` and its RateController. This module decides what
to skip (already in the manifest, forgotten, over the limit), what a failure means
(:mod:`scrape.errors`), and keeps the counts.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import instaloader
from instaloader import Hashtag, Post, Profile
from tqdm import tqdm

from . import errors
from .download import clear_staging, download_post
from .manifest import Manifest
from .ratelimit import DEFAULT_MAX_WAIT, rate_controller_factory
from .session import load_session
from .sources import Source, read_post_list

# How many posts of a hashtag or profile we look at per image wanted, before giving up on a source
# whose posts are mostly videos or already downloaded.
SCAN_FACTOR = 10


@dataclass
class SourceSummary:
    source: str
    new: int = 0
    skipped: int = 0
    failed: int = 0
    error: str | None = None


@dataclass
class Summary:
    """Counts of the run. ``new``: images stored; ``skipped``: posts already there, forgotten, or videos,
    and images whose content was already there; ``failed``: posts (or list lines) that could not be had,
    listed in ``failures``, and sources given up (their ``error``). ``stopped`` says why the run ended
    early (it can be resumed), ``None`` if it went through; ``unreachable`` why Instagram could not be
    connected to at all, when that stopped it."""

    new: int = 0
    skipped: int = 0
    failed: int = 0
    stopped: str | None = None
    failures: list[str] = field(default_factory=list)
    sources: list[SourceSummary] = field(default_factory=list)
    dest: Path | None = None
    unreachable: str | None = None

    def add(self, src: SourceSummary, what: str, n: int = 1) -> None:
        """Count ``n`` under ``what`` (new, skipped, failed) for the run and for one source."""
        setattr(self, what, getattr(self, what) + n)
        setattr(src, what, getattr(src, what) + n)

    @property
    def offline(self) -> bool:
        """Nothing came in because Instagram cannot be reached: the run's whole story is one line."""
        return bool(self.unreachable) and not self.new

    def __str__(self) -> str:
        if self.offline:
            # Nothing came in and nothing will until the network is back: say what to do instead, once.
            return errors.offline_advice(self.dest, self.unreachable)
        lines = [f"new {self.new}, skipped {self.skipped}, failed {self.failed}"
                 + (f" (in {self.dest})" if self.dest else "")]
        for s in self.sources:
            lines.append(f"  {s.source}: new {s.new}, skipped {s.skipped}, failed {s.failed}"
                         + (f": {s.error}" if s.error else ""))
        lines += [f"  failed: {f}" for f in self.failures[:20]]
        if len(self.failures) > 20:
            lines.append(f"  ... and {len(self.failures) - 20} more")
        if self.stopped:
            lines.append(self.stopped)
        return "\n".join(lines)


def make_loader(*, jitter: bool = True, sleep: Callable[[float], object] | None = None,
                max_attempts: int = 3, max_wait: float = DEFAULT_MAX_WAIT,
                request_timeout: float = 60.0) -> instaloader.Instaloader:
    """An Instaloader that fetches pictures only, quietly, with our patient rate controller.

    ``jitter`` keeps instaloader's short random pause before each request (tests turn it off);
    ``sleep`` is what the rate controller calls to back off after a 429 (default: time.sleep).
    """
    loader = instaloader.Instaloader(
        sleep=jitter, quiet=True, download_pictures=True, download_videos=False,
        download_video_thumbnails=False, download_geotags=False, download_comments=False,
        save_metadata=False, compress_json=False, post_metadata_txt_pattern="",
        max_connection_attempts=max_attempts, request_timeout=request_timeout,
        rate_controller=rate_controller_factory(sleep=sleep, max_wait=max_wait))
    _retry_messages(loader.context)
    return loader


def _retry_messages(context: instaloader.InstaloaderContext) -> None:
    """Route instaloader's "retrying" lines through one check: stop at once when Instagram cannot be reached.

    Instaloader reports every failed attempt with ``context.error("... [retrying; skip with ^C]")`` from
    inside its ``except`` block, then tries again. When the failure is that Instagram cannot be connected
    to at all (no DNS answer, refused), retrying at once cannot help and a slow failure (connecting timed
    out) would cost ``request_timeout`` per attempt, so :class:`errors.Unreachable` is raised there instead;
    instaloader lets it through. Other retries keep their line, without the ``^C`` advice: ^C stops our run
    (resumable) rather than skipping one query, and means nothing in a notebook. ``context.error`` is the one
    place all of instaloader's retry loops report through, hence this instance attribute.
    """
    report = context.error

    def error(msg: str, repeat_at_end: bool = True) -> None:
        why = errors.unreachable(sys.exception())
        if why:
            raise errors.Unreachable(why) from sys.exception()
        report(msg.replace(" [retrying; skip with ^C]", " [retrying]"), repeat_at_end=repeat_at_end)

    context.error = error  # type: ignore[method-assign]


class _Stop(Exception):
    """Internal: leave every loop, the run is over."""


def _posts_of(loader: instaloader.Instaloader, source: Source) -> Iterator[Post]:
    if source.kind == "hashtag":
        # The iterator instaloader's own download_hashtag uses.
        return Hashtag.from_name(loader.context, source.name).get_posts_resumable()
    return Profile.from_username(loader.context, source.name).get_posts()


class _Run:
    def __init__(self, loader: instaloader.Instaloader, dest: Path, keep_owner: bool, progress: bool):
        self.loader, self.dest, self.keep_owner, self.progress = loader, dest, keep_owner, progress
        self.manifest = Manifest(dest)
        self.summary = Summary(dest=dest)

    def _owner(self, post: Post) -> str | None:
        """The owner's name when it is needed: to store it (asked for) or to honour a forgotten owner."""
        if self.keep_owner or self.manifest.forgotten_owners:
            return post.owner_username
        return None

    def _fail(self, src: SourceSummary, what: str, err: BaseException) -> None:
        self.summary.add(src, "failed")
        self.summary.failures.append(f"{src.source}: {what}: {errors.explain(err)}")

    def _one_post(self, post_or_code: Post | str, source: Source, label: str, key: str, src: SourceSummary,
                  remaining: int | None, bar: tqdm) -> None:
        """Fetch one post (a Post, or a shortcode from a list); failures of this post only are counted here."""
        code = post_or_code if isinstance(post_or_code, str) else post_or_code.shortcode
        if code in self.manifest.shortcodes or self.manifest.is_forgotten(code):
            self.summary.add(src, "skipped")
            return
        try:
            post = Post.from_shortcode(self.loader.context, code) if isinstance(post_or_code, str) else post_or_code
            owner = self._owner(post)
            if owner is not None and self.manifest.is_forgotten(code, owner):
                self.summary.add(src, "skipped")
                return
            result = download_post(self.loader, post, label=label, source=key, dest=self.dest,
                                   manifest=self.manifest, limit=remaining,
                                   owner=(owner or "") if self.keep_owner else "")
        except Exception as err:  # sorted by errors.severity
            level = errors.severity(err)
            if level == errors.STOP:
                raise _Stop(errors.explain(err)) from err
            if level == errors.SOURCE and source.kind != "posts":
                raise
            self._fail(src, f"post {code}", err)
            return
        self.summary.add(src, "new", len(result.stored))
        # Images already there under another post count one each; a post with no picture (a video) counts once.
        self.summary.add(src, "skipped", result.duplicates or (0 if result.stored else 1))
        bar.update(len(result.stored))

    def source(self, source: Source) -> None:
        key = source.key(self.keep_owner)
        src = SourceSummary(str(source))
        self.summary.sources.append(src)
        have = self.manifest.per_source[key]
        with tqdm(total=source.limit, initial=have if source.limit is None else min(have, source.limit),
                  desc=str(source), unit="img", file=sys.stderr, disable=not self.progress,
                  delay=0.5) as bar:  # shown once it lasts: a source that fails at once leaves no empty bar
            try:
                scan: int | None = None
                items: Iterator[Post | tuple[str, str]]
                if source.kind == "posts":
                    refs, bad = read_post_list(source.name, source.label)
                    for line in bad:
                        self.summary.add(src, "failed")
                        self.summary.failures.append(f"{src.source}: {line}")
                    items = iter([(r.shortcode, r.label) for r in refs])
                elif source.limit is not None and have >= source.limit:
                    items = iter(())  # already complete: not a single request
                else:
                    items = _posts_of(self.loader, source)
                    scan = None if source.limit is None else max(source.limit * SCAN_FACTOR, 50)
                looked_at = errors_in_a_row = 0
                while scan is None or looked_at < scan:
                    remaining = None if source.limit is None else source.limit - self.manifest.per_source[key]
                    if remaining is not None and remaining <= 0:
                        break  # checked before asking for the next post, which may cost a request
                    try:
                        item = next(items)
                    except StopIteration:
                        break
                    except Exception as err:
                        # A profile's iterator fetches each post's metadata as it lists it: one post that
                        # fails there (deleted meanwhile) is skipped, but not a listing that keeps failing.
                        if errors.severity(err) != errors.ITEM or errors_in_a_row >= 2:
                            raise
                        errors_in_a_row += 1
                        self._fail(src, "a listed post", err)
                        continue
                    errors_in_a_row = 0
                    looked_at += 1
                    post, label = item if isinstance(item, tuple) else (item, source.label)
                    self._one_post(post, source, label, key, src, remaining, bar)
                    bar.set_postfix(skipped=src.skipped, failed=src.failed, refresh=False)
            except _Stop:
                raise
            except Exception as err:  # sorted by errors.severity
                if errors.severity(err) == errors.STOP:
                    raise _Stop(errors.explain(err)) from err
                src.error = errors.explain(err)  # shown on the source's line of the summary
                self.summary.add(src, "failed")


def scrape(sources: Iterable[Source], dest: str | Path = "data/raw", *, session_file: str | Path | None = None,
           user: str | None = None, keep_owner: bool = False, progress: bool = True, jitter: bool = True,
           sleep: Callable[[float], object] | None = None, max_attempts: int = 3,
           max_wait: float = DEFAULT_MAX_WAIT, loader: instaloader.Instaloader | None = None) -> Summary:
    """Collect the pictures of ``sources`` into ``dest/<label>/`` and ``dest/manifest.csv``.

    Safe to run again: what is in the manifest is skipped, so an interrupted or stopped run resumes.
    ``session_file`` (from ``instaloader --login USER``) logs in; ``keep_owner`` stores usernames in the
    manifest (off: nothing that names a person is stored). ``sleep``/``jitter`` control waiting
    (tests pass a recorder and ``False``); ``max_attempts`` and ``max_wait`` bound the retries.

    Returns a :class:`Summary`; ``summary.stopped`` is set when a persistent 429, a network failure or
    Instagram's refusal ended the run early, and ``summary.offline`` when Instagram could not be reached
    at all and nothing came in (its ``str`` is then one line saying what to do instead).
    A KeyboardInterrupt is let through, after cleaning up.
    """
    dest = Path(dest)
    own_loader = loader is None
    if loader is None:
        loader = make_loader(jitter=jitter, sleep=sleep, max_attempts=max_attempts, max_wait=max_wait)
    if session_file:
        load_session(loader, session_file, user)
    dest.mkdir(parents=True, exist_ok=True)
    clear_staging(dest)
    run = _Run(loader, dest, keep_owner, progress)
    try:
        for source in sources:
            run.source(source)
    except _Stop as stop:
        run.summary.stopped = str(stop)
        run.summary.unreachable = errors.unreachable(stop.__cause__)
    except KeyboardInterrupt as interrupt:
        interrupt.summary = run.summary  # type: ignore[attr-defined]  # the CLI prints what was done
        raise
    finally:
        clear_staging(dest)
        if own_loader:
            loader.close()
    return run.summary
