"""A contact sheet of downloaded images, to look at what a run brought in (the notebook shows it)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageOps

from .manifest import read_manifest


def contact_sheet(dest: str | Path, n: int = 24, cols: int = 6, thumb: int = 128,
                  label: str | None = None) -> Image.Image | None:
    """The ``n`` most recently downloaded images of ``dest`` (optionally one label) as one RGB image.

    Returns ``None`` when there is nothing to show; unreadable files are left out rather than failing.
    """
    dest = Path(dest)
    rows = [r for r in read_manifest(dest) if label is None or r.label == label]
    thumbs = []
    for r in reversed(rows):
        if len(thumbs) >= n:
            break
        try:
            with Image.open(dest / r.file) as im:
                im = ImageOps.exif_transpose(im).convert("RGB")
                thumbs.append(ImageOps.fit(im, (thumb, thumb)))
        except (OSError, ValueError):
            continue
    if not thumbs:
        return None
    cols = max(1, min(cols, len(thumbs)))
    nrows = -(-len(thumbs) // cols)
    sheet = Image.new("RGB", (cols * thumb, nrows * thumb), "white")
    for i, t in enumerate(thumbs):
        sheet.paste(t, ((i % cols) * thumb, (i // cols) * thumb))
    return sheet
