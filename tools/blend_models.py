"""A model whose weights lie between two of the same network: the one a fine-tune started from and its result.

Fine-tuning for new conditions (a hand over the mouth, small camera faces) also moves what a model knew
elsewhere, by a photo or three on some condition. Averaging the fine-tuned weights with those it started
from ("WiSE-FT", Wortsman et al. 2022, "Robust fine-tuning of zero-shot models") often keeps most of the
gain and most of the old knowledge, because both lie in one basin of the loss. ``--weight`` is the fine-tuned
model's share: 0 is the start, 1 the fine-tuned model. Batch-norm statistics are blended the same way.

    python tools/blend_models.py --start export.pkl --tuned models/right/export.pkl --weight 0.5 \\
        --crops data/cache/crops/train-retina-aligned --out models/blend50/export.pkl

The result is an exported learner with its card (the tuned model's, with ``blend`` saying how it was
made, its own sha256 and its validation figures measured again on the crops' validation split) and its
ONNX graphs (calibrated and measured as ``selfiemask train`` does at export). Nothing replaces ``export.pkl``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CALIBRATION_CROPS = 200


def blend_state(start: dict, tuned: dict, weight: float) -> dict:
    """``(1 - weight) * start + weight * tuned`` for every floating tensor; counters (integers) from ``tuned``."""
    if start.keys() != tuned.keys():
        missing = sorted(set(start) ^ set(tuned))[:5]
        raise ValueError(f"the two models are not the same network (layers differ: {missing})")
    out = {}
    for k, t in tuned.items():
        s = start[k]
        if s.shape != t.shape:
            raise ValueError(f"the two models are not the same network ({k}: {tuple(s.shape)} vs {tuple(t.shape)})")
        out[k] = (s * (1 - weight) + t * weight).to(t.dtype) if t.is_floating_point() else t.clone()
    return out


def validation_metrics(learn, valid: list[tuple[Path, str]]) -> dict:
    """The card's ``validation`` figures: the learner's plain forward (no flip) on the validation crops."""
    import numpy as np

    from selfiemask.engines import LearnerInput, TorchForward
    from selfiemask.evaluate import class_metrics
    from selfiemask.images import load_image

    vocab = list(learn.dls.vocab)
    prep, forward = LearnerInput(learn), TorchForward(learn.model)
    preds = []
    for i in range(0, len(valid), 64):
        batch = [load_image(p) for p, _ in valid[i:i + 64]]
        preds += np.asarray(forward(prep(batch))).argmax(1).tolist()
    return class_metrics([vocab.index(lbl) for _, lbl in valid], preds, vocab)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--start", type=Path, required=True, help="the model the fine-tune started from")
    ap.add_argument("--tuned", type=Path, required=True, help="the fine-tuned model")
    ap.add_argument("--weight", type=float, required=True, help="the fine-tuned model's share, 0 to 1")
    ap.add_argument("--crops", type=Path, required=True,
                    help="the face-crop folder the fine-tune trained on (<label>/): its split validates the blend")
    ap.add_argument("--out", type=Path, required=True, help="where to write the blended export.pkl")
    ap.add_argument("--no-engines", dest="engines", action="store_false", help="skip the ONNX graphs")
    a = ap.parse_args(argv)
    if not 0 <= a.weight <= 1:
        ap.error("--weight is a share between 0 and 1")

    from selfiemask.card import verify_model, write_card
    from selfiemask.data import is_valid_item
    from selfiemask.engines import write_engines
    from selfiemask.files import atomic_path, sha256_file
    from selfiemask.images import list_labelled_images
    from selfiemask.safe_load import load_learner_safely

    start_card, tuned_card = verify_model(a.start), verify_model(a.tuned)
    if start_card.get("classes") != tuned_card.get("classes"):
        print(f"the models have different classes: {start_card.get('classes')} and {tuned_card.get('classes')}",
              file=sys.stderr)
        return 2
    start, learn = load_learner_safely(a.start), load_learner_safely(a.tuned)
    try:
        learn.model.load_state_dict(blend_state(start.model.state_dict(), learn.model.state_dict(), a.weight))
    except ValueError as e:
        print(e, file=sys.stderr)
        return 2
    learn.model.eval()

    classes = tuned_card["classes"]
    items = list_labelled_images(a.crops, classes)
    valid = [(p, p.relative_to(a.crops).parts[0]) for p in items if is_valid_item(p)]
    train = [p for p in items if not is_valid_item(p)]
    if not valid:
        print(f"{a.crops}: no validation crops of {classes}", file=sys.stderr)
        return 2
    a.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(a.out) as tmp:
        learn.export(tmp.resolve())
    card = dict(tuned_card)
    card.pop("engines", None)
    card.pop("re_export", None)
    card.update(model=a.out.name, export_sha256=sha256_file(a.out),
                created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                validation=validation_metrics(learn, valid),
                blend={"method": "weights averaged with those the fine-tune started from (WiSE-FT, Wortsman et al. "
                                 "2022): (1 - weight) * start + weight * tuned, batch-norm statistics included",
                       "weight": a.weight,
                       "start": {"model": str(a.start), "export_sha256": start_card.get("export_sha256")},
                       "tuned": {"model": str(a.tuned), "export_sha256": tuned_card.get("export_sha256")},
                       "command": "python tools/blend_models.py " + " ".join(sys.argv[1:] if argv is None else argv)})
    write_card(a.out, card)
    acc = card["validation"]["accuracy"]
    print(f"{a.out}: {a.weight:g} x {a.tuned} + {1 - a.weight:g} x {a.start}; validation {acc:.2%} on {len(valid)}")
    if a.engines:
        calibration = train[:: max(1, len(train) // CALIBRATION_CROPS)][:CALIBRATION_CROPS]
        fields = write_engines(learn, a.out, calibration, valid, tta=card.get("inference", {}).get("tta") == "flip")
        fields["command"] = f"tools/blend_models.py: int8 calibrated on {len(calibration)} training crops"
        card["engines"] = fields
        write_card(a.out, card)
        print(f"graphs: int8 the learner's label on {fields['int8']['agreement']['same_label']:.2%}, passes "
              f"{fields['int8']['passes']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
