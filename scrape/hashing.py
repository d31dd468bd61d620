"""The scraper's hashes: file contents and owner names. Its own, so that ``scrape`` stands on instaloader alone."""

from __future__ import annotations

import hashlib
from pathlib import Path

__all__ = ["owner_key", "owner_sha256", "sha256_file"]


def sha256_file(path: str | Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def owner_sha256(username: str) -> str:
    """The sha256 of a username as Instagram compares them: no ``@``, no case, no surrounding spaces."""
    return hashlib.sha256(username.strip().lstrip("@").lower().encode()).hexdigest()


def owner_key(username: str) -> str:
    """A short, stable stand-in for a username, so a profile source can be told apart without storing the name."""
    return "h" + owner_sha256(username)[:12]
