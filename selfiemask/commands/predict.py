"""``selfiemask predict PATH...``: one line or CSV row per photo (per face with ``--faces``).

The rows come from :func:`selfiemask.predict.predict_rows` (which also shares
the files out over a distributed run); this module only parses and prints.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from ..verdicts import disagreement
from . import DISTRIBUTED_HELP

__all__ = ["add_parser", "dash_file_hint", "run"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("predict", help="classify images and folders of images",
                              epilog="A file whose name starts with '-' is taken for an option: put -- before the "
                                     "paths (selfiemask predict -- -photo.jpg).")
    p.add_argument("paths", nargs="+", help="image files or folders (searched recursively)")
    p.add_argument("--model", type=Path, default=None, help="exported learner (default: the project's export.pkl)")
    p.add_argument("--csv", action="store_true", help="print CSV to stdout")
    p.add_argument("--faces", action="store_true",
                   help="one row per face: path,face,box,label,confidence,error,uncertain")
    p.add_argument("--whole-image", action="store_true", help="classify whole photos, without face detection")
    p.add_argument("--bs", type=int, default=32, help="batch size")
    p.add_argument("--allow-unverified-model", action="store_true",
                   help="load a model that has no card (MODEL.json) or whose card has no export_sha256 "
                        "(warned on every run; only for a model you made yourself)")
    add_engine_option(p)
    p.add_argument("--distributed", action="store_true", help=DISTRIBUTED_HELP)
    return p


def add_engine_option(p: argparse.ArgumentParser) -> None:
    """``--engine``: what runs the forward pass, with what each costs and gives (also ``watch``)."""
    from ..engines import ENGINE_HELP, ENGINES

    p.add_argument("--engine", choices=ENGINES, default=None,
                   help=("what runs the network (default: the SELFIEMASK_ENGINE setting, else auto). "
                        + "; ".join(f"{k}: {v}" for k, v in ENGINE_HELP.items())
                        + ". A graph whose sha256 differs from the model card is never run.").replace("%", "%%"))


def run(args: argparse.Namespace) -> int:
    from .. import distributed as dist
    from ..card import ModelError
    from ..images import find_images
    from ..paths import DEFAULT_MODEL
    from ..predict import FACE_FIELDS, PREDICT_FIELDS, Classifier, predict_rows

    try:
        dist.setup(args.distributed)
        detect = False if args.whole_image else (True if args.faces else None)
        clf = Classifier(args.model or DEFAULT_MODEL, detect_faces=detect,
                         allow_unverified=args.allow_unverified_model, engine=args.engine, lazy=True)
    except (ModelError, ValueError) as e:
        print(f"selfiemask predict: {e}", file=sys.stderr)
        return 2
    skipped: list[tuple[str, str]] = []
    paths = find_images(args.paths, skipped)
    for path, why in skipped:
        print(f"selfiemask predict: skipped {path}: {why}", file=sys.stderr)
    if not paths:
        print("selfiemask predict: no images found in " + " ".join(args.paths), file=sys.stderr)
        return 2
    from tqdm.auto import tqdm

    fields = FACE_FIELDS if args.faces else PREDICT_FIELDS
    # Rows may carry more than the CSV columns (``face_labels``): only the columns are written.
    writer = csv.DictWriter(sys.stdout, fields, lineterminator="\n", extrasaction="ignore") if args.csv else None
    # A distributed run prints on the main process only, at the end: no bar there.
    bar = tqdm(total=len(paths), unit="img", file=sys.stderr, disable=len(paths) < 20 or dist.active())
    errors, mixed, header = 0, 0, False
    try:
        for rows in predict_rows(clf, paths, args.faces, bs=args.bs, progress=bar.update):
            if writer and not header:
                writer.writeheader()
                header = True
            for row in rows:
                errors += row["label"] == "error"  # an unreadable file has exactly one row
                mixed += bool(disagreement(row.get("face_labels", ())))
                _print_row(row, writer, args.faces)
            sys.stdout.flush()
    finally:
        bar.close()
    if errors:
        print(f"selfiemask predict: {errors} of {len(paths)} file(s) could not be read", file=sys.stderr)
    if mixed:
        print(f"selfiemask predict: in {mixed} photo(s) the faces got different verdicts, and a photo's verdict is "
              "its largest face's: add --faces for one verdict per face", file=sys.stderr)
    return 0


def _print_row(row: dict, writer, per_face: bool) -> None:
    from ..verdicts import UNSURE

    if writer:
        writer.writerow(row)
    elif row["label"] == "error":
        print(f"{row['path']}: error: {row['error']}")
    else:
        mixed = "" if per_face else disagreement(row.get("face_labels", ()))
        extra = (f" face {row['face']} at {row['box']}" if per_face
                 else f" ({row['faces']} face(s), judged on {row['judged_on'].replace('_', ' ')}"
                      + (f"; the faces disagree: {mixed}" if mixed else "") + ")")
        verdict = f"{row['label']} {float(row['confidence']):.1%}"
        if row["uncertain"]:  # the model's guess stays visible, marked as what it is
            verdict = f"{UNSURE.lower()} ({verdict})"
        print(f"{row['path']}: {verdict}{extra}")


def dash_file_hint(argv: list[str]) -> str:
    """The paths of ``predict`` that argparse will take for options: existing files named ``-...``."""
    if not argv or argv[0] != "predict":
        return ""
    tokens = argv[1:argv.index("--")] if "--" in argv else argv[1:]
    dashed = [t for t in tokens if t.startswith("-") and t != "-" and Path(t).exists()]
    if not dashed:
        return ""
    return (f"selfiemask predict: {dashed[0]} is a file whose name starts with '-', which reads as an option; "
            f"put -- before the paths: selfiemask predict [options] -- {' '.join(dashed)}")
