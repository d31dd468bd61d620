"""Optional login through an instaloader session file: never a password in the repo or a notebook.

The session file is what ``instaloader --login YOUR_USER`` writes after asking for the password
(``~/.config/instaloader/session-YOUR_USER``). It holds the login cookies, so a copy that other
users can read is refused rather than used.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import instaloader

LOGIN_HINT = ("create a session file once with `instaloader --login YOUR_USER` (it asks for the password and "
              "saves ~/.config/instaloader/session-YOUR_USER), then pass it: "
              "`python -m scrape ... --session-file ~/.config/instaloader/session-YOUR_USER` "
              "(in the notebook: session_file = \"~/.config/instaloader/session-YOUR_USER\")")


class SessionFileError(ValueError):
    """The session file is missing, unsafe, or its user cannot be told."""


def user_from_filename(path: Path) -> str | None:
    """``session-alice`` -> ``alice``: the name instaloader gives the files it saves."""
    if path.name.startswith("session-") and len(path.name) > len("session-"):
        return path.name[len("session-"):]
    return None


def check_session_file(path: str | Path) -> Path:
    """The session file's path, after refusing a missing file or one readable by group or others."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise SessionFileError(f"session file {path} not found: {LOGIN_HINT}")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise SessionFileError(
            f"refusing session file {path}: it is readable by group or others (mode {mode:04o}) and holds your "
            f"Instagram login cookies. Make it private with `chmod 600 {path}` and run again.")
    if hasattr(os, "getuid") and path.stat().st_uid != os.getuid():
        raise SessionFileError(f"refusing session file {path}: it belongs to another user")
    return path


def load_session(loader: instaloader.Instaloader, session_file: str | Path, user: str | None = None) -> str:
    """Log ``loader`` in from a session file; returns the user name it is logged in as."""
    path = check_session_file(session_file)
    user = user or user_from_filename(path)
    if not user:
        raise SessionFileError(f"cannot tell the user of {path}: pass --user NAME (or name the file session-NAME)")
    try:
        loader.load_session_from_file(user, str(path))
    except Exception as e:  # a truncated or foreign file: unpickling errors of many kinds
        raise SessionFileError(f"cannot load session file {path}: {e}; {LOGIN_HINT}") from e
    return user
