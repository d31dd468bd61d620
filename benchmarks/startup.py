"""How long does ``selfiemask predict photo.jpg`` take as a whole process, on a verified graph and on torch?

With a verified int8 (or fp32) graph and the preprocessing recorded in its card, ``predict`` starts
lazily: the learner is not unpickled and neither fastai nor torch is imported
(``Classifier(lazy=True)``, ``engines.SpecInput``). ``--engine torch`` loads them. Times, as whole
processes (median of ``--reps``, after one run to warm the file cache), and whether both print the
same verdict:

    python benchmarks/startup.py --model export.pkl [--reps 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed_process(cmd: list[str], reps: int) -> tuple[float, str]:
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)  # warm the file cache
    if out.returncode:
        sys.exit(f"failed: {' '.join(cmd)}\n{out.stderr}")
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times), out.stdout.strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=ROOT / "export.pkl")
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    from PIL import Image
    from skimage import data

    with tempfile.TemporaryDirectory() as tmp:
        photo = Path(tmp) / "astronaut.jpg"
        Image.fromarray(data.astronaut()).save(photo, quality=92)
        rows = []
        for engine in ("auto", "torch"):
            cmd = [sys.executable, "-m", "selfiemask", "predict", "--engine", engine, "--model", str(args.model),
                   str(photo)]
            t, out = timed_process(cmd, args.reps)
            rows.append((engine, t, out.split(": ", 1)[-1]))
        print(f"Whole-process seconds (median of {args.reps}):")
        for engine, t, out in rows:
            print(f"  predict --engine {engine:5s} {t:6.2f} s  {out}")
        print(f"  saving: {rows[1][1] - rows[0][1]:.2f} s a process; same verdict printed: {rows[0][2] == rows[1][2]}")


if __name__ == "__main__":
    main()
