"""``selfiemask clean ...``: the steps of ``notebooks/02_clean.ipynb`` as commands (listed in :data:`STEPS`).

(Retraining keeps the model it replaces in models/history/; ``selfiemask restore`` lists and puts back.)

Every subcommand takes ``--data DIR`` (default ``data``) for the standard layout,
or ``--raw/--clean/--rejected/--cache`` for single folders. The steps themselves
live in :mod:`selfiemask.curate`; this module parses, calls them and prints.
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import sys
from pathlib import Path

from ..curate.dedupe import DEFAULT_THRESHOLD
from ..curate.facts import MIN_SIDE
from ..paths import Layout

__all__ = ["STEPS", "add_parser", "layout_from", "run"]

#: The table of steps ``selfiemask clean --help`` prints. A constant, not the docstring: ``python -OO``
#: strips docstrings, and the help must survive it.
STEPS = """\
    selfiemask clean verify              raw/<label>/ -> clean/<label>/, the rest to rejected/ with reasons
    selfiemask clean dedupe [--dry-run]  exact and near duplicates in clean/; across labels: listed for review
    selfiemask clean all                 verify, then dedupe
    selfiemask clean review --model M    the model's top losses and least confident photos (CSV)
    selfiemask clean relabel FILE... --to LABEL|rejected
    selfiemask clean undo [N | --all]    reverse the last N relabel moves
    selfiemask clean compare OLD NEW     both models on the same validation photos"""


def _layout_options() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("folders")
    g.add_argument("--data", type=Path, default=Path("data"),
                   help="data root holding raw/, clean/, rejected/, cache/ (default: data)")
    for name in ("raw", "clean", "rejected", "cache"):
        g.add_argument(f"--{name}", type=Path, default=None, help=f"override DATA/{name}")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def layout_from(args: argparse.Namespace) -> Layout:
    base = Layout.under(args.data)
    return Layout(args.raw or base.raw, args.clean or base.clean, args.rejected or base.rejected,
                  args.cache or base.cache)


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``clean`` subcommand, with its own subcommands, to ``subparsers``."""
    common = _layout_options()
    p = subparsers.add_parser("clean", help="verify, deduplicate and relabel training photos (see 02_clean.ipynb)",
                              description="The steps between scraping and training (notebooks/02_clean.ipynb):\n\n"
                              + STEPS + "\nEach step takes --data DIR (default: data) or --raw/--clean/--rejected/"
                              "--cache.", formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="clean_command", required=True, metavar="STEP")

    v = sub.add_parser("verify", parents=[common], help="copy usable photos to clean/, reject the rest with reasons")
    d = sub.add_parser("dedupe", parents=[common], help="remove exact and near duplicates from clean/")
    a = sub.add_parser("all", parents=[common], help="verify, then dedupe")
    for q in (v, a):
        q.add_argument("--min-side", type=int, default=MIN_SIDE,
                       help=f"reject images whose shorter side is under this many pixels (default {MIN_SIDE})")
    for q in (d, a):
        q.add_argument("--threshold", type=int, default=DEFAULT_THRESHOLD,
                       help=f"largest Hamming distance (of 64 bits) between near duplicates (default "
                            f"{DEFAULT_THRESHOLD}; 0: identical hashes only)")
        q.add_argument("--no-mirror", dest="mirror", action="store_false",
                       help="do not treat mirrored images as duplicates")
        q.add_argument("--dry-run", action="store_true", help="report the clusters, move nothing")

    r = sub.add_parser("review", parents=[common], help="list the model's top losses and least confident photos")
    r.add_argument("--model", type=Path, default=None, help="exported learner (default: the project's export.pkl)")
    r.add_argument("--top", type=int, default=24, help="how many top losses (default 24)")
    r.add_argument("--least-confident", type=int, default=12, help="how many least confident others (default 12)")

    m = sub.add_parser("relabel", parents=[common], help="move photos in clean/ to another label or to rejected/")
    m.add_argument("files", nargs="+", type=Path, help="photos under CLEAN/<label>/")
    m.add_argument("--to", required=True, metavar="LABEL", help="the new label, or 'rejected'")

    u = sub.add_parser("undo", parents=[common], help="reverse the last relabel moves (clean/relabel_log.csv)")
    u.add_argument("n", nargs="?", type=int, default=1, help="how many moves to reverse (default 1)")
    u.add_argument("--all", action="store_true", help="reverse every move not yet undone")

    c = sub.add_parser("compare", parents=[common], help="accuracy and recall of two models on the same photos")
    c.add_argument("old", type=Path, help="e.g. a version kept in models/history/ (selfiemask restore lists them)")
    c.add_argument("new", type=Path, help="e.g. export.pkl")
    c.add_argument("--folder", type=Path, default=None, help="labelled folder (default: the clean folder)")
    c.add_argument("--json", action="store_true", help="print the whole comparison as JSON")
    return p


def _print(msg: str) -> None:
    print(msg, flush=True)


def _verify(args, layout: Layout) -> int:
    from ..curate.verify import verify

    s = verify(layout, min_side=args.min_side, progress=not args.quiet)
    _print(f"verify: {s}")
    for path, reason in s.rejected_files[:20]:
        _print(f"  rejected {path}: {reason}")
    if len(s.rejected_files) > 20:
        _print(f"  ... and {len(s.rejected_files) - 20} more in {layout.reject_log}")
    return 0


def _dedupe(args, layout: Layout) -> int:
    from ..curate.dedupe import dedupe

    report = dedupe(layout, args.threshold, args.mirror, apply=not args.dry_run, progress=not args.quiet)
    _print(f"dedupe: {report}")
    _print(f"  report: {layout.clean / 'duplicates.csv'}; across labels, to review: "
           f"{layout.clean / 'duplicates_review.csv'}")
    if args.dry_run:
        _print("  dry run: nothing moved")
    return 0


def _review(args, layout: Layout) -> int:
    from ..curate.review import review_candidates
    from ..paths import DEFAULT_MODEL
    from ..predict import Classifier

    clf = Classifier(args.model or DEFAULT_MODEL)
    cands = review_candidates(clf, layout.clean, top_losses=args.top, least_confident=args.least_confident,
                              progress=not args.quiet)
    w = csv.writer(sys.stdout, lineterminator="\n")
    w.writerow(["path", "label", "predicted", "confidence", "loss"])
    for c in cands:
        w.writerow([c.path, c.label, c.predicted, f"{c.confidence:.4f}", f"{c.loss:.4f}"])
    sys.stdout.flush()
    print(_next_step(cands, args, layout), file=sys.stderr)  # stdout stays plain CSV
    return 0


def _next_step(cands, args, layout: Layout) -> str:
    """What to do after a review, ending with a relabel command that runs as printed (the first photo the model
    calls otherwise, moved to the label it predicts), with the same folder options as the review."""
    if not cands:
        return f"selfiemask clean review: no photos to review in {layout.clean}"
    example = next((c for c in cands if c.predicted != c.label), cands[0])
    folders = [] if args.data == Path("data") else ["--data", str(args.data)]
    for name in ("clean", "rejected"):
        if getattr(args, name) is not None:
            folders += [f"--{name}", str(getattr(args, name))]
    to = example.predicted if example.predicted != example.label else "LABEL"
    command = shlex.join(["selfiemask", "clean", "relabel", str(example.path), "--to", to, *folders])
    return (f"selfiemask clean review: {len(cands)} photo(s) above, the most doubtful labels first. Look at each; "
            "move a wrongly labelled one to its label (several files at once, or --to rejected for a photo not "
            "to train on; `selfiemask clean undo` reverses the last move), e.g.:\n  " + command)


def _relabel(args, layout: Layout) -> int:
    from ..curate.relabel import relabel

    for f in args.files:
        dest = relabel(f, args.to, layout.clean, layout.rejected, layout.relabel_log)
        _print(f"{f} -> {dest}")
    return 0


def _undo(args, layout: Layout) -> int:
    from ..curate.relabel import undo

    rows = undo(layout.clean, None if args.all else args.n, layout.rejected, layout.relabel_log)
    for r in rows:
        _print(f"undone: {r['new_file']} -> {r['file']} ({r['new_label']} -> {r['old_label']})")
    if not rows:
        _print(f"nothing to undo in {layout.relabel_log}")
    return 0


def _compare(args, layout: Layout) -> int:
    from ..evaluate import compare_models, comparison_table

    result = compare_models(args.old, args.new, args.folder or layout.clean)
    if args.json:
        _print(json.dumps(result, indent=1))
        return 0
    _print(f"{result['n']} validation photos of {result['folder']}")
    _print(comparison_table(result).to_string(float_format=lambda x: f"{x:.3f}"))
    return 0


def run(args: argparse.Namespace) -> int:
    """Run ``clean <step>`` for parsed ``args``: 0 when done, 2 on a user error (the message says which)."""
    from ..card import ModelError

    step = args.clean_command
    try:
        layout = layout_from(args)
        if step == "all":
            return _verify(args, layout) or _dedupe(args, layout)
        handler = {"verify": _verify, "dedupe": _dedupe, "review": _review, "relabel": _relabel, "undo": _undo,
                   "compare": _compare}[step]
        return handler(args, layout)
    except (FileNotFoundError, ValueError, ModelError) as e:
        print(f"selfiemask clean {step}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\nselfiemask clean {step}: interrupted; what was done is logged, run again to resume",
              file=sys.stderr)
        return 130
