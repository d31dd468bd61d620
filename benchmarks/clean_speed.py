"""How long the cleaning pass (verify + dedupe) takes on N images, the first time and again (cached).

Generates N small pictures (96x96 JPEG, random content) under raw/<label>/ in a
temporary folder, one in ``--every`` followed by a planted copy (exact, resized,
re-encoded or mirrored, in turn), then runs :func:`selfiemask.curate.verify.verify` and
:func:`selfiemask.curate.dedupe.dedupe` twice. The second run is what a re-run costs:
every file's sha256 is read again, everything else comes from the caches.

    python benchmarks/clean_speed.py [--n 10000] [--every 50] [--keep DIR]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from selfiemask.curate.dedupe import dedupe  # noqa: E402
from selfiemask.curate.verify import verify  # noqa: E402
from selfiemask.paths import Layout  # noqa: E402

LABELS = ("with_mask", "without_mask")
COPIES = ("exact", "resized", "reencoded", "mirrored")


def picture(rng: np.random.Generator, size: int = 96) -> Image.Image:
    """Smooth random colours plus grain: unrelated pictures, perceptual hashes far apart."""
    img = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).resize((size, size), Image.BICUBIC)
    grain = rng.integers(-10, 10, (size, size, 3))
    return Image.fromarray(np.clip(np.asarray(img, dtype=np.int16) + grain, 0, 255).astype(np.uint8))


def generate(raw: Path, n: int, every: int, seed: int = 0) -> int:
    """N files in all, a planted copy after every ``every``-th picture; returns how many copies were planted."""
    rng = np.random.default_rng(seed)
    for label in LABELS:
        (raw / label).mkdir(parents=True, exist_ok=True)
    planted = i = 0
    while i < n:
        label = LABELS[i % 2]
        img = picture(rng)
        path = raw / label / f"img_{i:06d}.jpg"
        img.save(path, quality=90)
        i += 1
        if i % every == 0 and i < n:
            kind = COPIES[planted % len(COPIES)]
            copy = raw / label / f"img_{i:06d}_{kind}.jpg"
            if kind == "exact":
                shutil.copy(path, copy)
            elif kind == "resized":
                img.resize((72, 72), Image.LANCZOS).save(copy, quality=90)
            elif kind == "reencoded":
                img.save(copy, quality=40)
            else:
                ImageOps.mirror(img).save(copy, quality=90)
            planted += 1
            i += 1
    return planted


def one_pass(layout: Layout) -> tuple[float, str, str, int]:
    t = time.perf_counter()
    v = verify(layout, progress=True)
    d = dedupe(layout, progress=True)
    return time.perf_counter() - t, str(v), str(d), d.counts()["duplicates_to_remove"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000, help="files to generate (default 10000)")
    ap.add_argument("--every", type=int, default=50, help="plant a copy after every N-th picture (default 50)")
    ap.add_argument("--keep", type=Path, default=None, help="work in this folder and keep it (default: a temp dir)")
    args = ap.parse_args(argv)

    work = args.keep or Path(tempfile.mkdtemp(prefix="clean_speed_"))
    try:
        layout = Layout.under(work)
        t = time.perf_counter()
        planted = generate(layout.raw, args.n, args.every)
        print(f"generated {args.n} files ({planted} planted copies) in {time.perf_counter() - t:.1f} s under {work}")
        first, v, d, found = one_pass(layout)
        print(f"first pass:  {first:.1f} s, {args.n / first:.0f} images/s\n  verify: {v}\n  dedupe: {d}")
        print(f"  planted copies: {planted}, duplicates found: {found}")
        again, v, d, _ = one_pass(layout)
        print(f"second pass (cached): {again:.1f} s, {args.n / again:.0f} images/s\n  verify: {v}\n  dedupe: {d}")
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
