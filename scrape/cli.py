"""The ``python -m scrape`` command: its :data:`EXAMPLES` and :data:`EXIT_STATUS` are what ``--help`` ends with.

They are constants, not this docstring: ``python -OO`` strips docstrings, and the help must survive it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .sources import DEFAULT_COUNT, DEFAULT_HASHTAGS, Source, SourceError, parse_mapping, post_list

EXAMPLES = """\
    python -m scrape run                                  # the default hashtags: maskselfie, selfie
    python -m scrape run --hashtag maskselfie=with_mask --profile someone=without_mask --posts list.csv
    python -m scrape hashtag maskselfie facemask --label with_mask --count 100
    python -m scrape profile some_public_account --label without_mask
    python -m scrape posts list.csv                       # columns: post (URL or shortcode), label
    python -m scrape forget CODE_OR_URL ... [--owner NAME]
"""
EXIT_STATUS = """\
Exit status: 0 done, 1 done with failures, 2 bad arguments or session file, 3 stopped early
(rate limit, network, Instagram's refusal: run the same command again later to resume), 130 interrupted.
"""


def _common(p: argparse.ArgumentParser, count_default: int | None = DEFAULT_COUNT) -> None:
    p.add_argument("--dest", type=Path, default=Path("data/raw"), help="destination folder (default: data/raw)")
    p.add_argument("--count", type=int, default=count_default, metavar="N",
                   help="at most N images per source, counting earlier runs' (default: %(default)s)")
    p.add_argument("--session-file", metavar="PATH",
                   help="log in with this instaloader session file (made by `instaloader --login USER`; "
                        "must not be readable by others)")
    p.add_argument("--user", help="user of the session file (default: from its name, session-USER)")
    p.add_argument("--keep-owner", action="store_true",
                   help="store the owner's username in the manifest (default: no usernames stored)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.add_argument("--max-attempts", type=int, default=3, help="tries per request before giving up (default: 3)")
    p.add_argument("--max-wait", type=float, default=30 * 60, metavar="SECONDS",
                   help="longest rate-limit back-off accepted before stopping (default: 1800)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m scrape", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Collect selfies from Instagram into DEST/<label>/ with DEST/manifest.csv (resumable, "
                    "pictures only, no usernames stored unless --keep-owner).",
        epilog="examples:\n" + EXAMPLES + "\n" + EXIT_STATUS)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="several sources at once (default: " +
                       ", ".join(f"#{t}->{lab}" for t, lab in DEFAULT_HASHTAGS.items()) + ")")
    p.add_argument("--hashtag", action="append", default=[], metavar="TAG=LABEL")
    p.add_argument("--profile", action="append", default=[], metavar="USER=LABEL")
    p.add_argument("--posts", action="append", default=[], metavar="FILE.csv", help="a post list (post,label)")
    _common(p)

    p = sub.add_parser("hashtag", help="recent posts of hashtags")
    p.add_argument("tags", nargs="+")
    p.add_argument("--label", required=True)
    _common(p)

    p = sub.add_parser("profile", help="posts of public profiles")
    p.add_argument("users", nargs="+")
    p.add_argument("--label", required=True)
    _common(p)

    p = sub.add_parser("posts", help="posts listed in CSV files (columns: post or url or shortcode, label)")
    p.add_argument("files", nargs="+", type=Path)
    p.add_argument("--label", default="", help="label for lines without one")
    _common(p, count_default=None)

    p = sub.add_parser("forget", help="delete every image and manifest row of posts or owners, and every copy, "
                       "crop and log row made from them under the data folder; name the models trained on them")
    p.add_argument("posts", nargs="*", help="shortcodes or post URLs")
    p.add_argument("--owner", action="append", default=[], help="a username (matches where owners were stored "
                   "and profile sources)")
    p.add_argument("--dest", type=Path, default=Path("data/raw"))
    p.add_argument("--data", type=Path, default=None,
                   help="the data folder whose clean/, rejected/ and cache/ hold copies (default: DEST's parent)")
    p.add_argument("--models", type=Path, action="append", default=[], metavar="PATH",
                   help="a model file or a folder of models (with its models/history/) to check for the forgotten "
                        "photos (default: the folder above the data folder)")
    return parser


def sources_from_args(args: argparse.Namespace) -> list[Source]:
    if args.command == "hashtag":
        return [Source("hashtag", t, args.label, args.count) for t in args.tags]
    if args.command == "profile":
        return [Source("profile", u, args.label, args.count) for u in args.users]
    if args.command == "posts":
        return [post_list(f, args.label, args.count) for f in args.files]
    found = [Source("hashtag", *parse_mapping(m), args.count) for m in args.hashtag]
    found += [Source("profile", *parse_mapping(m), args.count) for m in args.profile]
    found += [post_list(f, limit=None) for f in args.posts]
    return found or [Source("hashtag", t, lab, args.count) for t, lab in DEFAULT_HASHTAGS.items()]


def _forget(args: argparse.Namespace) -> int:
    from .derived import affected_models, forget_derived
    from .manifest import forget

    if not args.posts and not args.owner:
        print("python -m scrape forget: name at least one post or --owner", file=sys.stderr)
        return 2
    removed = forget(args.dest, args.posts, args.owner)
    for r in removed:
        print(f"removed {args.dest / r.file}")
    data = args.data or args.dest.parent
    hashes = {r.sha256 for r in removed}
    derived = forget_derived(data, hashes, {r.file for r in removed})
    for f in derived.files:
        print(f"removed {f}")
    for csv_file, n in derived.rows.items():
        print(f"removed {n} row(s) from {csv_file}")
    print(f"forgot {len(removed)} image(s) and {len(derived.files)} copie(s) and crop(s) of them; these posts will "
          f"not be downloaded again (listed in {args.dest / 'forgotten.txt'})", file=sys.stderr)
    models = affected_models(args.models or [data.resolve().parent], hashes) if hashes else []
    for model, why in models:
        print(f"model {model}: {why}")
    if models:
        print(f"retrain the {len(models)} model(s) above (selfiemask train) and delete their old versions: a model "
              "trained on a photo keeps what it learned from it", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "forget":
            return _forget(args)
        sources = sources_from_args(args)
    except SourceError as e:
        print(f"python -m scrape: {e}", file=sys.stderr)
        return 2

    from .run import scrape
    from .session import SessionFileError

    try:
        summary = scrape(sources, args.dest, session_file=args.session_file, user=args.user,
                         keep_owner=args.keep_owner, progress=args.progress, max_attempts=args.max_attempts,
                         max_wait=args.max_wait)
    except SessionFileError as e:
        print(f"python -m scrape: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        done = getattr(e, "summary", None)
        print(f"\ninterrupted{f': {done}' if done else ''}\nNothing half-written is kept; run the same command "
              "again to resume.", file=sys.stderr)
        return 130
    print(summary, file=sys.stderr)
    if summary.stopped:
        return 3
    return 1 if summary.failed else 0
