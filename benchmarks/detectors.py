"""Face-detector recall on labelled photos: which photos get at least one face, per class.

Every photo in ../shared/data/train shows at least one face, so "found a face"
is a recall figure. False faces are counted on generated photos without any
face (landscapes, objects, text), and box agreement is the IoU between each
detector's largest box and MTCNN's where both found one.

    python benchmarks/detectors.py ../shared/data/train --n 300
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from selfiemask.faces import RECOMMENDED, DetectorSettings, FaceDetector  # noqa: E402
from selfiemask.images import list_labelled_images, load_image  # noqa: E402


def haar():
    import cv2

    path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
    cascade = cv2.CascadeClassifier(str(path))

    def detect(img):
        grey = cv2.cvtColor(np.asarray(img), cv2.COLOR_RGB2GRAY)
        return list(cascade.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=4, minSize=(20, 20)))

    return detect


def no_face_photos(n: int, seed: int = 0) -> list:
    """Generated photos without a face: landscapes, objects on tables, text, noise."""
    from PIL import Image, ImageDraw, ImageFilter

    rng = random.Random(seed)
    out = []
    for i in range(n):
        w, h = rng.choice([(640, 480), (480, 640), (800, 600)])
        kind = i % 4
        img = Image.new("RGB", (w, h))
        d = ImageDraw.Draw(img)
        if kind == 0:  # landscape: sky gradient, hills, sun
            for y in range(h):
                d.line([(0, y), (w, y)], fill=(80 + y * 100 // h, 140 + y * 60 // h, 230 - y * 80 // h))
            for _ in range(3):
                base = rng.randint(h // 2, h)
                pts = [(0, h)] + [(x, base - rng.randint(0, h // 3)) for x in range(0, w + 80, 80)] + [(w, h)]
                d.polygon(pts, fill=(rng.randint(20, 90), rng.randint(80, 160), rng.randint(20, 80)))
            r = rng.randint(20, 50)
            cx, cy = rng.randint(r, w - r), rng.randint(r, h // 3)
            d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(255, 230, 120))
        elif kind == 1:  # objects: boxes, bottles and plates on a table
            d.rectangle([0, 0, w, h], fill=(rng.randint(150, 220),) * 3)
            d.rectangle([0, h * 2 // 3, w, h], fill=(120, 80, 40))
            for _ in range(6):
                x, y = rng.randint(0, w - 100), rng.randint(h // 3, h - 100)
                col = tuple(rng.randint(0, 255) for _ in range(3))
                if rng.random() < 0.5:
                    d.rectangle([x, y, x + rng.randint(30, 120), y + rng.randint(30, 120)], fill=col)
                else:
                    d.ellipse([x, y, x + rng.randint(30, 120), y + rng.randint(30, 120)], fill=col)
        elif kind == 2:  # text on paper
            d.rectangle([0, 0, w, h], fill=(245, 245, 235))
            for y in range(20, h - 20, 28):
                words = " ".join("".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))
                                 for _ in range(8))
                d.text((20, y), words, fill=(20, 20, 20))
        else:  # smooth noise
            arr = np.random.default_rng(seed + i).integers(0, 255, (h // 16, w // 16, 3), dtype=np.uint8)
            img = Image.fromarray(arr).resize((w, h), Image.Resampling.BICUBIC).filter(ImageFilter.GaussianBlur(3))
        out.append(img)
    return out


def iou(a, b) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("photos", type=Path)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-face", type=int, default=40, help="generated photos without a face, for false faces")
    ap.add_argument("--quick", action="store_true", help="only the project's MTCNN and the RetinaFace variants")
    a = ap.parse_args()
    files = list_labelled_images(a.photos)
    random.Random(a.seed).shuffle(files)
    files = files[: a.n]
    imgs = [(f.parent.name, load_image(f)) for f in files]
    candidates = {"MTCNN, project settings (looser + padded retry)": FaceDetector().detect}
    if not a.quick:
        candidates["MTCNN, facenet-pytorch defaults (no padding)"] = FaceDetector(DetectorSettings(
            min_prob=0.9, thresholds=(0.6, 0.7, 0.7), pad_fraction=0)).detect
        candidates["MTCNN, defaults + padded retry"] = FaceDetector(DetectorSettings(
            min_prob=0.9, thresholds=(0.6, 0.7, 0.7))).detect
    for score in (0.5, 0.7, 0.9):
        candidates[f"RetinaFace, score > {score}, padded retry"] = FaceDetector(DetectorSettings(
            backend="retinaface", min_score=score)).detect
    candidates[f"RetinaFace > {RECOMMENDED.min_score}, MTCNN fallback (RECOMMENDED)"] = FaceDetector(RECOMMENDED).detect
    if not a.quick:
        try:
            candidates["OpenCV Haar frontal face (4.x)"] = haar()
        except Exception as e:  # noqa: BLE001
            print(f"Haar cascade unavailable: {e}")
    empty = no_face_photos(a.no_face)
    print(f"{len(imgs)} photos, seed {a.seed}: share of photos with a face found; "
          f"false faces on {len(empty)} generated photos without a face; IoU with MTCNN's largest box")
    reference: list = []
    for name, detect in candidates.items():
        t = time.monotonic()
        found: dict[str, list[int]] = {}
        boxes = []
        for label, img in imgs:
            faces = detect(img)
            found.setdefault(label, []).append(int(len(faces) > 0))
            boxes.append(tuple(faces[0].box) if faces and hasattr(faces[0], "box") else None)
        ms = 1000 * (time.monotonic() - t) / len(imgs)
        if not reference:
            reference = boxes
        ious = [iou(b, r) for b, r in zip(boxes, reference) if b and r]
        false = sum(len(detect(img)) for img in empty)
        per = "  ".join(f"{k} {np.mean(v):.1%} (n={len(v)})" for k, v in sorted(found.items()))
        agree = f"IoU {np.median(ious):.2f}" if ious else "IoU -"
        print(f"  {name:55s} {per}  false {false}  {agree}  {ms:.0f} ms/photo", flush=True)


if __name__ == "__main__":
    main()
