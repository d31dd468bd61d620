"""Pack a training set small enough to travel to a lent GPU machine (64 MiB in all).

Writes downscaled copies into an ignored folder (never committed: the photos
are third-party). Used to train the shipped export.pkl; see tools/device_train.sh.

    python tools/pack_for_device.py CROP_DIR .gpu/crops --side 192
    python tools/pack_for_device.py ../shared/data/train .gpu/photos --side 224
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from PIL import Image

from selfiemask.crops import MANIFEST, SETTINGS, list_labelled_images


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("src", type=Path)
    ap.add_argument("dst", type=Path)
    ap.add_argument("--side", type=int, default=192)
    ap.add_argument("--quality", type=int, default=88)
    a = ap.parse_args()
    for p in list_labelled_images(a.src):
        out = a.dst / p.relative_to(a.src).with_suffix(".jpg")
        out.parent.mkdir(parents=True, exist_ok=True)
        img = Image.open(p).convert("RGB")
        img.thumbnail((a.side, a.side), Image.Resampling.LANCZOS)
        img.save(out, quality=a.quality)
    for name in (MANIFEST, SETTINGS):
        if (a.src / name).exists():
            shutil.copy(a.src / name, a.dst / name)
    print(sum(f.stat().st_size for f in a.dst.rglob("*")) / 2**20, "MiB in", a.dst)


if __name__ == "__main__":
    main()
