"""``selfiemask train DATA_DIR``: :func:`selfiemask.training.train` (notebook 03's calls) from the command line.

The options are built from :class:`selfiemask.settings.TrainConfig`, where each default and help text is
written once; ``--help`` needs no fastai.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..settings import GROUPS, TrainConfig, cli_fields

__all__ = ["add_parser", "run"]


def _default_text(f) -> str:
    if f.metadata.get("action") or f.default is None:
        return ""
    return f" (default: {f.default})"

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("train", help="train on DATA_DIR/<label>/ images and export the learner")
    groups = {key: p.add_argument_group(title) for key, title in GROUPS.items()}
    for f in cli_fields():
        meta = dict(f.metadata)
        group, flag, help_text = groups[meta.pop("group")], meta.pop("flag"), meta.pop("help")
        if flag == "data_dir":
            group.add_argument("data_dir", type=Path, help=help_text)
            continue
        if f.name == "classes":
            group.add_argument(flag, type=int, choices=[2, 3], default=2, help=f"{help_text} (default: 2)")
            continue
        if f.name == "pretrained":
            group.add_argument(flag, nargs="?", const="imagenet", default=f.default, choices=meta["choices"],
                               help=f"{help_text}{_default_text(f)}; --pretrained alone: imagenet")
            group.add_argument("--no-pretrained", dest="pretrained", action="store_const", const="none",
                               help="train from scratch (--pretrained none)")
            continue
        group.add_argument(flag, dest=f.name, default=f.default, help=help_text + _default_text(f), **meta)
    return p


def run(args: argparse.Namespace) -> int:
    from ..arches import WeightsError
    from ..card import ModelError
    from ..data import THREE_CLASSES, TWO_CLASSES
    from ..pretrained import PretrainedUnavailable
    from ..training import train

    values = {f.name: getattr(args, f.name) for f in cli_fields()}
    values["classes"] = THREE_CLASSES if args.classes == 3 else TWO_CLASSES
    cfg = TrainConfig(**values)
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
