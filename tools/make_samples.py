"""Make the app's sample photos from scikit-image's astronaut (NASA, public domain).

The masked sample has a surgical-style mask drawn by this script over the
detected face, so no third-party photo is ever shipped.

    python tools/make_samples.py
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter
from skimage import data

from selfiemask.faces import FaceDetector

OUT = Path(__file__).resolve().parent.parent / "selfiemask" / "samples"


def main() -> None:
    OUT.mkdir(exist_ok=True)
    img = Image.fromarray(data.astronaut())
    img.save(OUT / "no_mask.jpg", quality=88)
    l, t, r, b = FaceDetector().detect(img)[0].box
    w, h = r - l, b - t
    masked = img.copy()
    layer = Image.new("RGBA", img.size, (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)
    top = t + int(0.42 * h)
    d.polygon([(l + 0.02 * w, top + 0.05 * h), (l + 0.5 * w, top - 0.04 * h), (r - 0.02 * w, top + 0.05 * h),
               (r - 0.08 * w, b + 0.02 * h), (l + 0.5 * w, b + 0.1 * h), (l + 0.08 * w, b + 0.02 * h)],
              fill=(120, 175, 220, 255))
    for k in range(1, 4):  # pleats
        y = top + k * 0.13 * h
        d.line([(l + 0.1 * w, y), (r - 0.1 * w, y)], fill=(95, 150, 200, 255), width=3)
    d.line([(l + 0.02 * w, top + 0.05 * h), (l - 0.08 * w, t + 0.35 * h)], fill=(235, 235, 235, 255), width=4)
    d.line([(r - 0.02 * w, top + 0.05 * h), (r + 0.08 * w, t + 0.35 * h)], fill=(235, 235, 235, 255), width=4)
    layer = layer.filter(ImageFilter.GaussianBlur(1))
    masked.paste(layer, mask=layer.getchannel("A"))
    masked.convert("RGB").save(OUT / "mask.jpg", quality=88)
    print("wrote", *sorted(p.name for p in OUT.glob("*.jpg")))


if __name__ == "__main__":
    main()
