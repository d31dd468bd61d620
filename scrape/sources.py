"""What to collect: hashtags, public profiles and lists of posts, each mapped to a label folder.

A source is only a description (kind, name, label, how many images); nothing here talks to
Instagram. Post lists are CSV files read line by line so that one bad line is reported with its
line number and the rest of the list still runs.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

from .hashing import owner_key

#: The two sources the issue starts from: selfies people tag as wearing a mask, and plain selfies.
DEFAULT_HASHTAGS: dict[str, str] = {"maskselfie": "with_mask", "selfie": "without_mask"}
DEFAULT_COUNT = 50

# A label becomes a folder name under data/raw: keep it to a plain name, never a path.
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_SHORTCODE = re.compile(r"^[A-Za-z0-9_-]{5,40}$")
# https://www.instagram.com/p/<code>/, /reel/<code>/, /tv/<code>/, also with a username before /p/.
_POST_URL = re.compile(r"^(?:https?://)?(?:www\.)?instagram\.com/(?:[A-Za-z0-9._]+/)?(?:p|reel|reels|tv)/"
                       r"([A-Za-z0-9_-]{5,40})/?(?:[?#].*)?$")
_NAME = re.compile(r"^[A-Za-z0-9._]{1,64}$")
_POST_COLUMNS = ("post", "url", "shortcode")


class SourceError(ValueError):
    """A source that cannot be used as given (bad label, bad name, unreadable list)."""


def check_label(label: str) -> str:
    """Labels are folder names; refuse anything that could leave ``dest`` or hide a file."""
    label = (label or "").strip()
    if not _LABEL.match(label):
        raise SourceError(f"label {label!r} is not a plain folder name (letters, digits, _ and -)")
    return label


def shortcode_from(text: str) -> str:
    """The shortcode of a post URL (``/p/``, ``/reel/``, ``/tv/``) or of a bare shortcode."""
    text = (text or "").strip()
    m = _POST_URL.match(text)
    if m:
        return m.group(1)
    if _SHORTCODE.match(text):
        return text
    raise SourceError(f"cannot read a post shortcode from {text!r} (expected https://www.instagram.com/p/CODE/ "
                      "or CODE)")


@dataclass(frozen=True)
class PostRef:
    """One usable line of a post list."""

    shortcode: str
    label: str
    line: int


@dataclass(frozen=True)
class BadLine:
    """One line of a post list that cannot be used, with the reason (reported as a failure)."""

    line: int
    text: str
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass(frozen=True)
class Source:
    """Where images come from and which label folder they go to.

    ``kind`` is ``hashtag``, ``profile`` or ``posts`` (``name`` is then the CSV file). ``limit`` is the
    most images this source may have in the manifest, counting those from earlier runs, so a re-run
    after an interruption completes the set instead of adding another ``limit`` images.
    ``None`` means no limit (the default for post lists, which are finite). For a post list
    ``label`` is the default for lines whose label cell is empty.
    """

    kind: str
    name: str
    label: str = ""
    limit: int | None = DEFAULT_COUNT

    def __post_init__(self) -> None:
        if self.kind not in ("hashtag", "profile", "posts"):
            raise SourceError(f"unknown source kind {self.kind!r}")
        if self.kind == "hashtag":
            name = self.name.strip().lstrip("#").lower()
        elif self.kind == "profile":
            name = self.name.strip().lstrip("@").lower()
        else:
            name = str(self.name)
        if self.kind != "posts":
            if not _NAME.match(name):
                raise SourceError(f"{self.kind} name {self.name!r} is not valid")
            object.__setattr__(self, "label", check_label(self.label))
        elif self.label:
            object.__setattr__(self, "label", check_label(self.label))
        object.__setattr__(self, "name", name)
        if self.limit is not None and self.limit < 0:
            raise SourceError("limit must be >= 0")

    def key(self, keep_owner: bool = False) -> str:
        """How the source is written in the manifest's ``source`` column.

        A profile's name is a username: unless owners are kept, only a hash of it is stored.
        """
        if self.kind == "hashtag":
            return f"hashtag:{self.name}"
        if self.kind == "profile":
            return f"profile:{self.name if keep_owner else owner_key(self.name)}"
        return f"posts:{Path(self.name).name}"

    def __str__(self) -> str:
        prefix = {"hashtag": "#", "profile": "@", "posts": ""}[self.kind]
        return f"{prefix}{self.name}" + (f" -> {self.label}" if self.label else "")


def hashtags(mapping: dict[str, str] | None = None, limit: int | None = DEFAULT_COUNT) -> list[Source]:
    """Hashtag sources from ``{tag: label}`` (``None``: :data:`DEFAULT_HASHTAGS`; ``{}``: none)."""
    mapping = DEFAULT_HASHTAGS if mapping is None else mapping
    return [Source("hashtag", tag, label, limit) for tag, label in mapping.items()]


def profiles(mapping: dict[str, str], limit: int | None = DEFAULT_COUNT) -> list[Source]:
    """Profile sources from ``{username: label}``."""
    return [Source("profile", user, label, limit) for user, label in mapping.items()]


def post_list(path: str | Path, label: str = "", limit: int | None = None) -> Source:
    """A CSV of posts: a ``post`` (or ``url``/``shortcode``) column and a ``label`` column.

    ``label`` is used for lines whose label cell is empty.
    """
    return Source("posts", str(path), label, limit)


def parse_mapping(text: str) -> tuple[str, str]:
    """``NAME=LABEL`` from the command line."""
    name, sep, label = text.partition("=")
    if not sep or not name.strip():
        raise SourceError(f"expected NAME=LABEL, got {text!r}")
    return name.strip(), check_label(label)


def read_post_list(path: str | Path, default_label: str = "") -> tuple[list[PostRef], list[BadLine]]:
    """Usable posts and bad lines of a post list.

    The file has a header naming a post column (``post``, ``url`` or ``shortcode``) and ``label``;
    a file without a header is read as ``post,label``. Blank lines and lines starting with ``#``
    are ignored.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise SourceError(f"cannot read post list {path}: {e}") from e
    rows = list(csv.reader(text.splitlines()))
    refs: list[PostRef] = []
    bad: list[BadLine] = []
    post_col, label_col, start = 0, 1, 0
    if rows:
        header = [c.strip().lower() for c in rows[0]]
        cols = [c for c in _POST_COLUMNS if c in header]
        if cols:
            post_col = header.index(cols[0])
            label_col = header.index("label") if "label" in header else -1
            start = 1
    for number, row in enumerate(rows[start:], start=start + 1):
        raw = ",".join(row)
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        try:
            post = row[post_col] if post_col < len(row) else ""
            cell = row[label_col].strip() if 0 <= label_col < len(row) else ""
            label = cell or default_label
            if not label:
                raise SourceError("no label (add a label column or pass a default label)")
            refs.append(PostRef(shortcode_from(post), check_label(label), number))
        except SourceError as e:
            bad.append(BadLine(number, raw, str(e)))
    return refs, bad
