"""``selfiemask restore [VERSION]``: list the kept versions of a model, or put one back (``history.restore_model``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "restore", help="put back a model kept in models/history/ (by a re-export or a restore); list them without "
                        "VERSION")
    p.add_argument("version", nargs="?", default=None,
                   help="a version from the list, or a unique part of its name (its sha256 prefix, a date)")
    p.add_argument("--model", type=Path, default=Path("export.pkl"),
                   help="the model to restore (default: export.pkl); its versions are in models/history/ beside it")
    return p


def run(args: argparse.Namespace) -> int:
    from ..card import ModelError
    from ..history import list_versions, restore_model
    from ..paths import history_dir

    try:
        if args.version is None:
            versions = list_versions(args.model)
            if not versions:
                print(f"no kept versions of {args.model} in {history_dir(args.model)}/")
                return 0
            print(f"kept versions of {args.model} ({history_dir(args.model)}/), oldest first:")
            for v in versions:
                acc = f"{v['accuracy']:.1%} of {v['n']}" if v["accuracy"] is not None else "no figures"
                mark = "  <- current" if v["current"] else ""
                note = f"  ({v['decision']})" if v["decision"] else ""
                print(f"  {v['version']}  {v['architecture']:13s} {acc:>14s}{note}{mark}")
            print("put one back with: selfiemask restore VERSION")
            return 0
        restored, replaced = restore_model(args.model, args.version)
    except ModelError as e:
        print(f"selfiemask restore: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\nselfiemask restore: interrupted; {args.model} and its card are whole", file=sys.stderr)
        return 130
    print(f"{args.model}: restored {restored.parent.name}")
    if replaced is not None:
        print(f"the model it replaced is kept in {replaced.parent}/")
    return 0
