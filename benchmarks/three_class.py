"""Should the three-class model ship? Its recall on real photos of masks worn wrongly, and what it costs the others.

The third class's training photos are mostly synthetic (one pasted blue mask on
generated faces): a model can learn that mask rather than "nose out". So its
figure is measured only on **real** crops of that class that were never trained
on (``--real-prefix``, 54 in ``../shared/data/extra``), and the two other classes
on the project's validation photos, each judged by the three-class model and by
the two-class model on the same photos, through the product path (face
detection, the largest face's crop as each card says, flip TTA as each card says).

    python benchmarks/three_class.py ../shared/data/train ../shared/data/extra/incorrect_mask \\
        --three models/three/export.pkl --two export.pkl [--limit N] [--json out.json]

Prints per-class recall, the confusion matrix and the rule's verdict: ship it as an
option only if its recall on the real third-class photos is at least 80% and it loses
no more than 1 point of recall on either other class.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

#: The rule of the issue: third-class recall on real photos, and the most either other class may lose.
MIN_THIRD_RECALL = 0.80
MAX_OTHER_LOSS = 0.01
THIRD = "incorrect_mask"


def _labels(clf, paths: list[Path]) -> list[str]:
    return [r.main.label if r.main else "error" for r in clf.analyze_files(paths)]


def run(photos: Path, third: Path, three: Path, two: Path, real_prefix: str = "real_", limit: int = 0) -> dict:
    """Every figure as a dict: per model, recall per class and the confusion matrix (rows true)."""
    from selfiemask.data import TWO_CLASSES, validation_items
    from selfiemask.evaluate import class_metrics
    from selfiemask.predict import Classifier

    items = validation_items(photos, TWO_CLASSES)
    if limit:
        items = items[:: max(1, len(items) // limit)][:limit]
    real = sorted(p for p in third.iterdir() if p.name.startswith(real_prefix))
    if not items or not real:
        raise SystemExit(f"need validation photos under {photos}/<label>/ and {real_prefix}* files in {third}")
    report: dict = {"photos": {"with_mask": sum(p.parent.name == "with_mask" for p in items),
                               "without_mask": sum(p.parent.name == "without_mask" for p in items),
                               THIRD: len(real)}, "models": {}}
    for name, path, paths, truth in (
            ("three", three, items + real, [p.parent.name for p in items] + [THIRD] * len(real)),
            ("two", two, items, [p.parent.name for p in items])):
        clf = Classifier(path)
        vocab = list(clf.classes)
        got = _labels(clf, paths)
        y_true = [vocab.index(t) for t in truth]
        y_pred = [vocab.index(g) if g in vocab else -1 for g in got]
        report["models"][name] = {"path": str(path), "classes": vocab, **class_metrics(y_true, y_pred, vocab)}
    three_m, two_m = report["models"]["three"]["per_class"], report["models"]["two"]["per_class"]
    third_recall = three_m[THIRD]["recall"]
    losses = {c: round(two_m[c]["recall"] - three_m[c]["recall"], 4) for c in TWO_CLASSES}
    ship = third_recall >= MIN_THIRD_RECALL and all(v <= MAX_OTHER_LOSS + 1e-9 for v in losses.values())
    report["decision"] = {"third_recall_on_real": third_recall, "recall_lost": losses, "ship": ship,
                          "rule": f"{THIRD} recall on real photos >= {MIN_THIRD_RECALL:.0%} and no other class's "
                                  f"recall more than {MAX_OTHER_LOSS * 100:.0f} point lower than the two-class model"}
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("photos", type=Path, help="the two-class training folder; its validation split is used")
    ap.add_argument("third", type=Path, help="folder of the third class's photos (the real ones are judged)")
    ap.add_argument("--three", type=Path, required=True, help="the three-class export.pkl")
    ap.add_argument("--two", type=Path, default=ROOT / "export.pkl", help="the two-class export.pkl")
    ap.add_argument("--real-prefix", default="real_", help="file names of real (not synthetic) photos start so")
    ap.add_argument("--limit", type=int, default=0, help="at most this many two-class validation photos (0: all)")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    for p in (a.photos, a.third):
        if not p.is_dir():
            print(f"{p} not found (../shared exists only beside the project's own checkout)", file=sys.stderr)
            return 2
    report = run(a.photos, a.third, a.three, a.two, a.real_prefix, a.limit)
    print(f"\nphotos: {report['photos']}\n")
    print("| model | " + " | ".join(f"{c} recall (n)" for c in report["models"]["three"]["classes"]) + " |")
    print("|---|" + "---:|" * len(report["models"]["three"]["classes"]))
    for name, m in report["models"].items():
        cells = [f"{m['per_class'][c]['recall']:.1%} ({m['per_class'][c]['support']})" if c in m["per_class"]
                 else "–" for c in report["models"]["three"]["classes"]]
        print(f"| {name}-class | " + " | ".join(cells) + " |")
    for name, m in report["models"].items():
        cm = m["confusion_matrix"]
        print(f"\n{name}-class confusion (rows true, columns predicted, {cm['labels']}): "
              f"{cm['rows_true_cols_predicted']}")
    d = report["decision"]
    print(f"\nrule: {d['rule']}\n{THIRD} recall on real photos {d['third_recall_on_real']:.1%}; recall lost "
          + ", ".join(f"{c} {v * 100:+.1f} points" for c, v in d["recall_lost"].items())
          + f"\n=> {'ship it as an option' if d['ship'] else 'do not ship it'}")
    if a.json:
        a.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
