"""``selfiemask watch SOURCE``: the command-line side of :mod:`selfiemask.video`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..video import DEFAULT_SMOOTH, FALLBACK_EVERY
from .predict import add_engine_option

__all__ = ["add_parser", "run"]


def _positive(text: str) -> int:
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {n}")
    return n


def _not_negative(text: str) -> int:
    n = int(text)
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {n}")
    return n


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``watch`` subcommand to ``subparsers`` (from ``ArgumentParser.add_subparsers``)."""
    p = subparsers.add_parser(
        "watch", help="box faces with mask / no mask verdicts in a camera, video file or stream",
        description="Classify every face of a video, live. Shows a window where OpenCV has a GUI and a display; "
                    "otherwise writes a video file (--out). Ctrl-C stops and finalises the file.")
    p.add_argument("source", help="camera index (0, 1, ...), video file, or stream URL (rtsp://, http://)")
    p.add_argument("--model", type=Path, default=None, help="exported learner (default: the project's export.pkl)")
    p.add_argument("--out", type=Path, default=None,
                   help="write the boxed video here (.mp4 or .avi); default when there is no window: "
                        "next to a video file (NAME.watch.mp4), else watch_out.mp4")
    p.add_argument("--every", type=_positive, default=1, metavar="N",
                   help="detect faces every N frames and reuse the boxes in between (faster; default 1)")
    p.add_argument("--fallback-every", type=_positive, default=FALLBACK_EVERY, metavar="N",
                   help="on frames where RetinaFace finds no face, try the slower MTCNN fallback on one in N "
                        f"(default {FALLBACK_EVERY}; once it finds a face it runs on every frame until it loses it; "
                        "1: every empty frame, as for photos)")
    p.add_argument("--max-frames", type=_not_negative, default=0, metavar="N",
                   help="stop after N frames (default 0: until the source ends or Ctrl-C)")
    p.add_argument("--smooth", type=_positive, default=DEFAULT_SMOOTH, metavar="K",
                   help=f"average each face's verdict over its last K frames (default {DEFAULT_SMOOTH})")
    add_engine_option(p)
    p.add_argument("--no-window", dest="display", action="store_false", default=None,
                   help="never open a window, even where one could be shown")
    return p


def _log(msg: str) -> None:
    print(f"selfiemask watch: {msg}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    """Run ``watch`` for parsed ``args``; 0 when done (or stopped with Ctrl-C), 2 on a user error."""
    from ..card import ModelError
    from ..paths import DEFAULT_MODEL
    from ..predict import Classifier
    from ..video import WatchError, open_source, watch

    try:
        # The source first: a wrong camera index should not cost the seconds a model load takes.
        open_source(args.source).release()
        clf = Classifier(args.model or DEFAULT_MODEL, engine=args.engine)
        _log(f"forward pass: {clf.engine_note}")
        result = watch(args.source, clf, out=args.out, every=args.every, max_frames=args.max_frames,
                       smooth=args.smooth, display=args.display, log=_log,
                       fallback_every=args.fallback_every)
    except (WatchError, ModelError) as e:
        _log(str(e))
        return 2
    except KeyboardInterrupt:  # during the model load; inside the loop it is handled by watch()
        _log("interrupted")
        return 130
    how = "stopped" if result.interrupted else "done"
    where = f"; wrote {result.out} ({result.out_frames} frames, readable)" if result.out else ""
    _log(f"{how}: {result.frames} frames at {result.fps:.1f} fps{where}")
    return 0
