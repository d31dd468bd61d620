"""How well a model does: metrics, old-versus-new comparisons on the same photos, and their plots.

Training writes these figures into the model card, and a re-export compares
the new model with the current one on the same validation photos before it
may replace it (:func:`judge`). Both read them from here, so a number in a
card and a number in a comparison mean the same thing.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["class_metrics", "compare_models", "comparison_summary", "comparison_table", "judge", "plot_confusions",
           "plot_top_losses", "save_figure"]


def class_metrics(y_true: list[int], y_pred: list[int], vocab: list[str]) -> dict:
    """Accuracy, per-class precision/recall/F1/support and the confusion matrix (rows: true)."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    labels = list(range(len(vocab)))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    cm = confusion_matrix(y_true, y_pred, labels=labels)
    correct = sum(int(a == b) for a, b in zip(y_true, y_pred))
    return {
        "accuracy": round(correct / max(1, len(y_true)), 4),
        "n": len(y_true),
        "per_class": {c: {"precision": round(float(p[i]), 4), "recall": round(float(r[i]), 4),
                          "f1": round(float(f[i]), 4), "support": int(s[i])} for i, c in enumerate(vocab)},
        "confusion_matrix": {"labels": vocab, "rows_true_cols_predicted": cm.tolist()},
    }


def save_figure(fig, path: Path, show: bool = False) -> None:
    """Save and close ``fig``; ``show``: display it first (in a notebook, where a closed figure is not shown)."""
    if show:
        from IPython.display import display

        display(fig)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)


def plot_top_losses(interp, k: int = 9):
    """The ``k`` validation photos the model got most wrong, titled in words: label, verdict, confidence, loss.

    fastai's own plot titles each photo ``pred/actual/loss/probability`` in one line; these
    titles say which is which, and name the file so that it can be relabelled (notebook 02).
    """
    import math

    import matplotlib.pyplot as plt

    from .images import load_image

    k = min(k, len(interp.losses))
    losses, idx = interp.top_losses(k)
    _, probs, targs, _, _ = interp[idx]  # predictions for these photos only, as fastai does
    items = [interp.dl.items[i] for i in idx.tolist()]
    cols = min(3, k) or 1
    rows = max(1, math.ceil(k / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 4.0 * rows), squeeze=False, layout="constrained")
    for ax in axes.flat:
        ax.axis("off")
    for ax, path, p, t, loss in zip(axes.flat, items, probs, targs.tolist(), losses.tolist()):
        said = int(p.argmax())
        try:
            ax.imshow(load_image(path))
        except Exception as e:  # noqa: BLE001 - a photo that no longer opens still gets its title
            ax.text(0.5, 0.5, f"cannot open:\n{e}", ha="center", va="center", fontsize=8, wrap=True)
        name = Path(path).name
        name = name if len(name) <= 28 else name[:12] + "…" + name[-14:]
        ax.set_title(f"labelled {interp.vocab[t]}\nmodel: {interp.vocab[said]} ({float(p[said]):.0%})\n"
                     f"loss {loss:.2f} · {name}", fontsize=9)
    fig.suptitle(f"the {k} validation photos with the highest loss")
    return fig


def compare_models(old_pkl: str | Path, new_pkl: str | Path, folder: str | Path, classes: list[str] | None = None,
                   valid_pct: float | None = None, seed: int | None = None, bs: int = 32) -> dict:
    """Both models on the same validation photos of ``folder`` (the project's seeded split; defaults: training's).

    Returns ``{"old": metrics, "new": metrics, "n", "predictions"}`` where the
    metrics are :func:`class_metrics` (plus the card's data
    fingerprint) and ``predictions`` lists per photo the label and both verdicts.
    """
    from .data import DEFAULT_SEED, DEFAULT_VALID_PCT, validation_items  # fastai: only when a model is needed
    from .predict import Classifier

    folder = Path(folder)
    valid_pct = DEFAULT_VALID_PCT if valid_pct is None else valid_pct
    seed = DEFAULT_SEED if seed is None else seed
    items = validation_items(folder, classes, valid_pct, seed)
    if not items:
        raise ValueError(f"no validation photos in {folder} (valid_pct={valid_pct}): add photos or raise valid_pct")
    labels = [p.relative_to(folder).parts[0] for p in items]
    out: dict = {"folder": str(folder), "n": len(items)}
    verdicts: dict[str, list[str]] = {}
    for name, pkl in (("old", old_pkl), ("new", new_pkl)):
        clf = Classifier(pkl)
        results = clf.analyze_files(items, bs=bs)
        vocab = clf.classes
        verdicts[name] = [r.main.label if not r.error and r.main else "error" for r in results]
        pairs = [(vocab.index(t), vocab.index(v)) for t, v in zip(labels, verdicts[name]) if t in vocab and v in vocab]
        metrics = class_metrics([a for a, _ in pairs], [b for _, b in pairs], vocab)
        metrics.update(model=str(pkl), skipped=len(items) - len(pairs), data=clf.card.get("data", {}))
        out[name] = metrics
    out["predictions"] = [{"file": p.relative_to(folder).as_posix(), "label": t, "old": o, "new": n}
                          for p, t, o, n in zip(items, labels, verdicts["old"], verdicts["new"])]
    return out


def comparison_summary(result: dict) -> dict:
    """What a model card keeps of a comparison: both models' metrics on the same photos, without the per-photo list."""
    keep = ("model", "accuracy", "n", "skipped", "per_class", "confusion_matrix")
    return {"folder": result["folder"], "n": result["n"],
            **{name: {k: result[name][k] for k in keep if k in result[name]} for name in ("old", "new")}}


def judge(result: dict, force: bool = False) -> tuple[bool, str]:
    """Whether a new model replaces the current one, and why, in plain words.

    It does unless it is right on fewer of the same validation photos (a tie replaces: the new
    one was trained on the data at hand), or its classes differ from the current one's (the
    accuracies then count different photos). ``force`` replaces in every case, and says so.
    """
    old, new, n = result["old"], result["new"], result["n"]
    old_classes = old["confusion_matrix"]["labels"]
    new_classes = new["confusion_matrix"]["labels"]
    score = (f"on the same {n} validation photos the new model is right on {new['accuracy']:.1%}, "
             f"the current one on {old['accuracy']:.1%}")
    if old_classes != new_classes:
        ok, why = False, (f"the new model's classes ({', '.join(new_classes)}) are not the current one's "
                          f"({', '.join(old_classes)}), so their scores do not compare ({score})")
    elif new["accuracy"] < old["accuracy"]:
        ok, why = False, f"the new model does worse: {score}"
    else:
        ok, why = True, f"the new model does {'as well' if new['accuracy'] == old['accuracy'] else 'better'}: {score}"
    if force and not ok:
        return True, f"{why}; replaced anyway, as forced"
    return ok, why


def comparison_table(result: dict):
    """Accuracy and per-class recall, old vs new, as a DataFrame (one row per figure)."""
    import pandas as pd

    rows = {"accuracy": (result["old"]["accuracy"], result["new"]["accuracy"])}
    for c in sorted(set(result["old"]["per_class"]) | set(result["new"]["per_class"])):
        rows[f"recall {c}"] = tuple(result[k]["per_class"].get(c, {}).get("recall", float("nan"))
                                    for k in ("old", "new"))
    df = pd.DataFrame.from_dict(rows, orient="index", columns=["old", "new"])
    df["change"] = df["new"] - df["old"]
    return df


def plot_confusions(result: dict):
    """The two confusion matrices side by side (rows: true label, columns: predicted)."""
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, 2, figsize=(9, 4))
    for ax, name in zip(axes, ("old", "new")):
        cm = result[name]["confusion_matrix"]
        labels, mat = cm["labels"], np.array(cm["rows_true_cols_predicted"])
        ax.imshow(mat, cmap="Blues")
        for (r, c), v in np.ndenumerate(mat):
            ax.text(c, r, str(v), ha="center", va="center", color="white" if v > mat.max() / 2 else "black")
        ax.set_xticks(range(len(labels)), labels, rotation=30)
        ax.set_yticks(range(len(labels)), labels)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{name}: {result[name]['accuracy']:.1%} of {result[name]['n']}")
    fig.tight_layout()
    return fig
