"""Is a confident verdict a right one? Accuracy by confidence, and by the detector's face score.

Every validation photo (the project's seeded split, never trained on) is judged
through its cached face crop (the crop pass of ``selfiemask train``: the largest
face found, or the whole photo where none was), by each model given. The
verdicts are grouped by the model's confidence (the softmax probability of the
class it chose) and by the detector's score of the face, and each group's
accuracy is printed. ``--conditions`` judges each crop again under the phone
conditions of ``selfiemask.augment.CONDITIONS`` (black and white, coloured
light, dim, blur, low resolution, JPEG), applied to the crop: selfies look like
that, and they give the low-confidence bins enough verdicts to mean something.

The chosen confidence threshold is the lowest ``t`` such that every bin from
``t`` up, pooled over the models and the photos judged, is right at least
``--target`` of the time (bins with fewer than ``--min-n`` verdicts do not
count): below ``t`` a verdict is wrong too often to be stated, so the app says
"Not sure" (``selfiemask.verdicts.MIN_CONFIDENCE``). The detector's score gets a
threshold only where faces scored under it are right clearly less often (by
``--gap``) than faces scored above it; otherwise none beyond the detector's own
cut (``MIN_FACE_SCORE`` = RetinaFace's ``min_score``).

    python benchmarks/confidence.py ../shared/data/train --crops data/cache/crops/train-retina \\
        --model shipped=export.pkl --model student=models/student/export.pkl [--conditions] [--json out.json]
    python benchmarks/confidence.py --from-json out.json      # the tables again, from the saved verdicts
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from selfiemask.data import validation_items  # noqa: E402
from selfiemask.images import load_image  # noqa: E402
from selfiemask.verdicts import MIN_CONFIDENCE, MIN_FACE_SCORE  # noqa: E402

#: Bin edges of the confidence (two classes: never under 0.5) and of the detector's face score.
CONFIDENCE_EDGES = [0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.99, 1.0001]
SCORE_EDGES = [0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0001]


def crop_index(crops: Path) -> dict[str, dict]:
    """The crop pass's manifest (``crops.csv``), by source path relative to the photo folder."""
    manifest = crops / "crops.csv"
    if not manifest.exists():
        raise SystemExit(f"{manifest} not found: give --crops the crop folder of the photos "
                         "(written by `selfiemask train`, data/cache/crops/<name>-<hash>/)")
    with open(manifest, newline="", encoding="utf-8") as f:
        return {row["source"]: row for row in csv.DictReader(f)}


def judged_items(photos: Path, crops: Path, conditions: bool, limit: int = 0) -> tuple[list, list[dict]]:
    """The crops, and what is judged: each crop under a condition, its true label, kind (face, whole), face score."""
    from selfiemask.augment import CONDITIONS

    index = crop_index(crops)
    items = validation_items(photos)
    if limit:
        items = items[:limit]
    images, meta = [], []
    missing = 0
    for p in items:
        row = index.get(p.relative_to(photos).as_posix())
        if row is None or not row.get("crop") or row.get("error"):
            missing += 1
            continue
        score = float(row["prob"]) if row.get("kind") == "face" and row.get("prob") else None
        base = {"photo": row["source"], "truth": p.parent.name, "kind": row.get("kind", ""), "score": score,
                "crop": len(images)}
        images.append(load_image(crops / row["crop"]))
        meta += [{**base, "condition": c} for c in ["as is", *(CONDITIONS if conditions else [])]]
    if missing:
        print(f"{missing} validation photo(s) have no crop in {crops} and are left out", file=sys.stderr)
    return images, meta


def variant(crop, condition: str):
    """The crop under ``condition`` (made when judged: all of them at once would take gigabytes)."""
    from selfiemask.augment import CONDITIONS

    if condition == "as is":
        return crop
    return CONDITIONS[condition](crop, min(crop.size) / 1.4)  # the crop: the face box plus 20% on each side


def bins(values: list[float], right: list[bool], edges: list[float]) -> list[dict]:
    """Count and accuracy of the verdicts in each ``[lo, hi)`` bin."""
    out = []
    for lo, hi in zip(edges, edges[1:]):
        hits = [r for v, r in zip(values, right) if lo <= v < hi]
        out.append({"lo": lo, "hi": min(hi, 1.0), "n": len(hits), "accuracy": sum(hits) / len(hits) if hits else None})
    return out


def choose(table: list[dict], target: float, min_n: int) -> float:
    """The lowest bin edge from which every bin (with at least ``min_n`` verdicts) is right ``target`` of the time."""
    t = table[-1]["hi"]
    for b in reversed(table):
        if b["n"] >= min_n and b["accuracy"] is not None and b["accuracy"] < target:
            break
        t = b["lo"]
    return t


def split_by_score(rows: list[dict], edges: list[float]) -> list[dict]:
    """For each candidate score ``t``: accuracy of the faces scored under ``t`` and of those at or above it."""
    out = []
    for t in edges[1:-1]:
        below = [r["right"] for r in rows if r["score"] < t]
        above = [r["right"] for r in rows if r["score"] >= t]
        out.append({"t": t, "n_below": len(below), "below": sum(below) / len(below) if below else None,
                    "n_above": len(above), "above": sum(above) / len(above) if above else None})
    return out


def choose_score(split: list[dict], gap: float, min_n: int, floor: float) -> float:
    """The highest ``t`` under which faces are right at least ``gap`` less often than above it; else ``floor``."""
    for s in reversed(split):
        if s["n_below"] >= min_n and s["above"] is not None and s["above"] - s["below"] >= gap:
            return s["t"]
    return floor


def print_table(title: str, tables: dict[str, list[dict]]) -> None:
    names = list(tables)
    print(f"\n{title}")
    print("| bin | " + " | ".join(f"{n}: n, accuracy" for n in names) + " |")
    print("|---|" + "---|" * len(names))
    for i, b in enumerate(tables[names[0]]):
        cells = []
        for n in names:
            c = tables[n][i]
            cells.append(f"{c['n']}, {c['accuracy']:.1%}" if c["n"] else "0, -")
        print(f"| {b['lo']:.2f}-{b['hi']:.2f} | " + " | ".join(cells) + " |")


def run(photos: Path, crops: Path, models: list[tuple[str, Path]], conditions: bool, limit: int = 0,
        bs: int = 64) -> dict:
    from selfiemask.predict import Classifier

    crops_, meta = judged_items(photos, crops, conditions, limit)
    variants = len({m["condition"] for m in meta})
    print(f"{len(meta)} images: {len(crops_)} validation photos, {variants} variant(s) of each", file=sys.stderr)
    results = {}
    for name, path in models:
        clf = Classifier(path)
        start = time.perf_counter()
        verdicts = []
        for i in range(0, len(meta), bs):
            verdicts += clf.classify([variant(crops_[m["crop"]], m["condition"]) for m in meta[i:i + bs]], bs=bs)
        print(f"{name}: {len(meta)} images in {time.perf_counter() - start:.0f} s", file=sys.stderr)
        results[name] = [{**m, "label": v.label, "confidence": v.confidence, "right": v.label == m["truth"]}
                         for m, v in zip(meta, verdicts)]
    return results


def tables(results: dict, key: str, edges: list[float], where=lambda r: True) -> dict[str, list[dict]]:
    out = {}
    for name, rows in results.items():
        rows = [r for r in rows if where(r) and r[key] is not None]
        out[name] = bins([r[key] for r in rows], [r["right"] for r in rows], edges)
    pooled = [r for rows in results.values() for r in rows if where(r) and r[key] is not None]
    out["all"] = bins([r[key] for r in pooled], [r["right"] for r in pooled], edges)
    return out


def share_unsure(results: dict, threshold: float) -> None:
    for name, rows in results.items():
        for label, subset in (("as is", [r for r in rows if r["condition"] == "as is"]), ("all", rows)):
            right = sum(r["right"] for r in subset)
            unsure = [r["right"] for r in subset if r["confidence"] < threshold]
            sure = [r["right"] for r in subset if r["confidence"] >= threshold]
            print(f"{name}, {label}: accuracy {right / len(subset):.2%} of {len(subset)}; "
                  f"under {threshold:.2f} (Not sure): {len(unsure) / len(subset):.1%} of verdicts, "
                  f"{sum(unsure) / max(1, len(unsure)):.1%} right; the rest {sum(sure) / max(1, len(sure)):.2%} right")


def report(results: dict, target: float, min_n: int, gap: float) -> dict:
    as_is = tables(results, "confidence", CONFIDENCE_EDGES, lambda r: r["condition"] == "as is")
    print_table("Accuracy by confidence, validation photos as they are:", as_is)
    everything = as_is
    if any(r["condition"] != "as is" for rows in results.values() for r in rows):
        everything = tables(results, "confidence", CONFIDENCE_EDGES)
        print_table("Accuracy by confidence, as they are and under the phone conditions:", everything)
    score = tables(results, "score", SCORE_EDGES)
    print_table("Accuracy by the detector's face score (faces only; each photo's score, all its variants judged):",
                score)
    faces = [r for rows in results.values() for r in rows if r["score"] is not None]
    split = split_by_score(faces, SCORE_EDGES)
    print("\nFaces scored under / at or above each score, all models pooled:")
    print("| score | under: n, accuracy | at or above: n, accuracy |\n|---|---|---|")
    for s in split:
        under = f"{s['n_below']}, {s['below']:.1%}" if s["n_below"] else "0, -"
        print(f"| {s['t']:.2f} | {under} | {s['n_above']}, {s['above']:.1%} |")
    chosen = {"confidence": choose(everything["all"], target, min_n),
              "score": choose_score(split, gap, min_n, floor=SCORE_EDGES[0])}
    print(f"\nchosen confidence {chosen['confidence']:.2f} (every bin from it up right >= {target:.0%}; bins of >= "
          f"{min_n} verdicts; all models pooled); face score {chosen['score']:.2f} (the highest under which faces "
          f"are right >= {gap:.0%} less often than above; else the detector's own cut)")
    print(f"\nWith the chosen confidence {chosen['confidence']:.2f}:")
    share_unsure(results, chosen["confidence"])
    print(f"selfiemask.verdicts today: MIN_CONFIDENCE = {MIN_CONFIDENCE}, MIN_FACE_SCORE = {MIN_FACE_SCORE}")
    return {"as_is": as_is, "all": everything, "score": score, "score_split": split, "chosen": chosen}


def _spec(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {text!r}")
    return name, Path(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("photos", type=Path, nargs="?", help="labelled photos (<label>/<file>), e.g. ../shared/data/train")
    ap.add_argument("--crops", type=Path, help="their crop folder (with crops.csv)")
    ap.add_argument("--model", type=_spec, action="append", help="NAME=PATH of an export.pkl")
    ap.add_argument("--conditions", action="store_true", help="also judge every crop under the phone conditions")
    ap.add_argument("--target", type=float, default=0.9, help="accuracy every bin above the threshold reaches")
    ap.add_argument("--min-n", type=int, default=20, help="bins with fewer verdicts do not move the threshold")
    ap.add_argument("--gap", type=float, default=0.05, help="how much less often faces under a score must be right")
    ap.add_argument("--limit", type=int, default=0, help="only the first N validation photos (a quick look)")
    ap.add_argument("--json", type=Path, help="write every verdict and table here")
    ap.add_argument("--from-json", type=Path, help="no models run: the tables of the verdicts saved by --json")
    args = ap.parse_args(argv)
    if args.from_json:
        results = json.loads(args.from_json.read_text())["verdicts"]
    elif args.photos and args.crops and args.model:
        results = run(args.photos, args.crops, args.model, args.conditions, args.limit)
    else:
        ap.error("give PHOTOS, --crops and --model (or --from-json)")
    figures = report(results, args.target, args.min_n, args.gap)
    if args.json:
        args.json.write_text(json.dumps({"verdicts": results, **figures}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
