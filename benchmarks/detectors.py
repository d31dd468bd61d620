"""Face-detector recall on labelled photos: which photos get at least one face, per class.

Every photo in ../shared/data/train shows at least one face, so "found a face"
is a recall figure (it says nothing of false boxes; look at the crops for that).

    python benchmarks/detectors.py ../shared/data/train --n 200
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from selfiemask.faces import DetectorSettings, FaceDetector  # noqa: E402
from selfiemask.images import (
    list_labelled_images,  # noqa: E402
    load_image,  # noqa: E402
)


def haar():
    import cv2

    path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
    cascade = cv2.CascadeClassifier(str(path))

    def detect(img):
        grey = cv2.cvtColor(np.asarray(img), cv2.COLOR_RGB2GRAY)
        return list(cascade.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=4, minSize=(20, 20)))

    return detect


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("photos", type=Path)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    files = list_labelled_images(a.photos)
    random.Random(a.seed).shuffle(files)
    files = files[: a.n]
    imgs = [(f.parent.name, load_image(f)) for f in files]
    candidates = {
        "MTCNN, facenet-pytorch defaults (no padding)": FaceDetector(DetectorSettings(
            min_prob=0.9, thresholds=(0.6, 0.7, 0.7), pad_fraction=0)).detect,
        "MTCNN, defaults + padded retry": FaceDetector(DetectorSettings(
            min_prob=0.9, thresholds=(0.6, 0.7, 0.7))).detect,
        "MTCNN, project settings (looser + padded retry)": FaceDetector().detect,
    }
    try:
        candidates["OpenCV Haar frontal face (4.x)"] = haar()
    except Exception as e:  # noqa: BLE001
        print(f"Haar cascade unavailable: {e}")
    print(f"{len(imgs)} photos, seed {a.seed}: share of photos with a face found")
    for name, detect in candidates.items():
        t = time.time()
        found: dict[str, list[int]] = {}
        for label, img in imgs:
            found.setdefault(label, []).append(int(len(detect(img)) > 0))
        per = "  ".join(f"{k} {np.mean(v):.1%} (n={len(v)})" for k, v in sorted(found.items()))
        print(f"  {name:50s} {per}  {1000 * (time.time() - t) / len(imgs):.0f} ms/photo")


if __name__ == "__main__":
    main()
