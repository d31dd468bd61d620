"""ONNX and int8 graphs of a learner: same answers as the learner, verified before use, refused when not."""

from __future__ import annotations

import copy
import csv
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from selfiemask.card import read_card, write_card
from selfiemask.engines import choose_engine, export_onnx, graph_agreement, graph_path, passes, write_engines
from selfiemask.images import list_labelled_images
from selfiemask.predict import Classifier
from selfiemask.synthetic import make_dataset, write_clip

ROOT = Path(__file__).resolve().parent.parent


def copy_model(src: Path, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for f in src.parent.glob(src.stem + ".*"):
        if f.suffix in (".pkl", ".json", ".onnx"):
            shutil.copy(f, dest / f.name)
    return dest / src.name


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list[Path]:
    """Generated photos the graphs are calibrated and checked on (another seed than the model's training)."""
    return list_labelled_images(make_dataset(tmp_path_factory.mktemp("photos") / "data", per_class=20, size=64, seed=7))


@pytest.fixture(scope="module")
def engine_model(tiny_model, photos, tmp_path_factory) -> Path:
    """The tiny model with its fp32 and int8 graphs and their measured agreement in its card."""
    from selfiemask.safe_load import load_learner_safely

    model = copy_model(tiny_model, tmp_path_factory.mktemp("engines"))
    learn = load_learner_safely(model)
    card = read_card(model)
    card["engines"] = write_engines(learn, model, photos[::2], [(p, p.parent.name) for p in photos], tta=False)
    write_card(model, card)
    return model


def probs(clf: Classifier, images) -> np.ndarray:
    return np.array([[v.probs[c] for c in clf.classes] for v in clf.classify(images)])


def test_onnx_gives_the_learners_probabilities(engine_model, photos):
    from selfiemask.images import load_image

    images = [load_image(p) for p in photos[:16]]
    reference = Classifier(engine_model, engine="torch", detect_faces=False)
    graph = Classifier(engine_model, engine="onnx", detect_faces=False)
    assert (reference.engine, graph.engine) == ("torch", "onnx")
    assert np.abs(probs(reference, images) - probs(graph, images)).max() < 1e-4
    # The flip augmentation, crop and mirror in one batch: the mean of the learner's own two forward passes.
    import torch

    graph.tta = True
    x = reference.preprocess(images)
    with torch.inference_mode():
        two = (torch.softmax(reference.model(x), 1) + torch.softmax(reference.model(x.flip(3)), 1)) / 2
    assert np.abs(two.numpy() - probs(graph, images)).max() < 1e-4


def test_auto_takes_the_fastest_graph_that_passes(engine_model):
    """int8 when its measured agreement passes, else the fp32 graph (the tiny model's near-50/50 answers can
    flip under int8: then the check keeps it out, as it should)."""
    card = read_card(engine_model)
    assert card["engines"]["int8"]["sha256"] and graph_path(engine_model, "int8").exists()
    assert passes(card["engines"]["onnx"]["agreement"])[0], card["engines"]["onnx"]
    expected = "int8" if passes(card["engines"]["int8"]["agreement"])[0] else "onnx"
    assert Classifier(engine_model).engine == expected


def test_a_tampered_graph_is_refused_and_torch_used(engine_model, tmp_path, capsys):
    model = copy_model(engine_model, tmp_path)
    g = graph_path(model, "int8")
    data = bytearray(g.read_bytes())
    data[len(data) // 2] ^= 0xFF
    g.write_bytes(bytes(data))
    clf = Classifier(model)
    err = capsys.readouterr().err
    assert clf.engine == "torch"
    assert "refusing" in err and g.name in err and "sha256" in err and "torch" in err
    assert Classifier(model, engine="int8").engine == "torch"  # asked for by hand: refused all the same
    assert Classifier(model, engine="onnx").engine == "onnx"  # the untouched fp32 graph, asked for alone


def test_the_agreement_check_refuses_a_graph_that_disagrees(engine_model, photos, tmp_path, capsys):
    """Another model's graph (the tiny model with its last layer negated) in the int8 place, measured for real."""
    import torch

    from selfiemask.files import sha256_file
    from selfiemask.safe_load import load_learner_safely

    model = copy_model(engine_model, tmp_path)
    learn = load_learner_safely(model)
    other = copy.deepcopy(learn.model)
    last = [m for m in other.modules() if isinstance(m, torch.nn.Linear)][-1]
    last.weight.data.neg_()
    if last.bias is not None:
        last.bias.data.neg_()
    g = export_onnx(other, (64, 64), graph_path(model, "int8"))
    figures = graph_agreement(learn, g, [(p, p.parent.name) for p in photos], tta=False)
    assert figures["same_label"] < 0.5
    ok, why = passes(figures)
    assert not ok and "label" in why
    card = read_card(model)
    card["engines"]["int8"].update(sha256=sha256_file(g), agreement=figures)
    write_card(model, card)
    choice = choose_engine(model, card, "auto", say=lambda m: print(m, file=sys.stderr))
    assert choice.name == "onnx"  # the fp32 graph still passes
    assert "fails its agreement check" in capsys.readouterr().err
    assert Classifier(model, engine="int8").engine == "torch"


def _predict(model: Path, engine: str, paths: list[Path]) -> list[dict]:
    done = subprocess.run([sys.executable, "-m", "selfiemask", "predict", "--csv", "--faces", "--engine", engine,
                           "--model", str(model), *map(str, paths)], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return list(csv.DictReader(io.StringIO(done.stdout)))


def test_predict_gives_the_same_verdicts_on_every_engine(engine_model, photos, astronaut, tmp_path):
    astronaut.save(tmp_path / "astronaut.jpg")  # one real face: detection, crop, classify
    paths = [tmp_path / "astronaut.jpg", *photos]
    rows = {e: _predict(engine_model, e, paths) for e in ("torch", "onnx")}
    labels = {e: [(r["path"], r["face"], r["label"]) for r in rs] for e, rs in rows.items()}
    assert labels["torch"] == labels["onnx"]
    conf = {e: np.array([float(r["confidence"]) for r in rs]) for e, rs in rows.items()}
    assert np.abs(conf["torch"] - conf["onnx"]).max() < 1e-3  # CSV rounds to 4 places


def test_watch_gives_the_same_verdicts_on_both_engines(engine_model, tmp_path):
    pytest.importorskip("cv2")
    from selfiemask.video import watch

    clip = tmp_path / "clip.mp4"
    write_clip(clip)
    seen = {}
    for engine in ("torch", "onnx"):
        clf = Classifier(engine_model, engine=engine)
        assert clf.engine == engine
        r = watch(clip, clf, out=tmp_path / f"{engine}.mp4", display=False)
        seen[engine] = [[(f.box, f.raw_label, f.label) for f in rec.faces] for rec in r.records]
    assert any(seen["torch"]), "the clip's face was found"
    assert seen["torch"] == seen["onnx"]


def test_card_records_the_graphs(engine_model):
    e = json.loads(engine_model.with_suffix(".json").read_text())["engines"]
    for name in ("onnx", "int8"):
        assert e[name]["file"] == graph_path(engine_model, name).name and len(e[name]["sha256"]) == 64
        assert e[name]["agreement"]["photos"] == 40
        assert set(e[name]["agreement"]["accuracy_per_class"]) == {"with_mask", "without_mask"}
    assert e["calibration"]["with_mirrors"] == 2 * e["calibration"]["images"]


def test_the_cards_preprocessing_is_the_learners_own(engine_model, photos, astronaut):
    """What a lazy start feeds the graph (numpy, from the card's numbers) is the learner's own batch."""
    from PIL import Image

    from selfiemask.engines import LearnerInput, SpecInput
    from selfiemask.images import load_image
    from selfiemask.safe_load import load_learner_safely

    spec = read_card(engine_model)["engines"]["preprocessing"]
    images = [load_image(p) for p in photos[:6]] + [astronaut, Image.new("RGB", (300, 90), (200, 30, 40)),
                                                    astronaut.convert("L").resize((37, 111)), astronaut.convert("RGBA")]
    ours = SpecInput(spec)(images)
    theirs = LearnerInput(load_learner_safely(engine_model))(images).numpy()
    assert ours.shape == theirs.shape and ours.dtype == np.float32
    assert np.abs(ours - theirs).max() < 1e-4  # float32 rounding only: one pixel level is 1 / (255 * std) = 0.017


def test_predict_starts_without_torch_and_prints_what_the_learner_would(engine_model, photos, astronaut, tmp_path):
    """`selfiemask predict` on a verified graph: neither fastai nor torch is imported (while RetinaFace finds the
    faces: its MTCNN fallback is torch), and the rows are those of a classifier that loaded the learner (same
    engine), to the CSV's four places."""
    from PIL import ImageOps

    astronaut.save(tmp_path / "astronaut.jpg")
    ImageOps.mirror(astronaut).save(tmp_path / "mirrored.jpg")
    faces = [str(tmp_path / "astronaut.jpg"), str(tmp_path / "mirrored.jpg")]

    def predict(paths: list[str]) -> tuple[list[dict], str]:
        script = ("import sys\nfrom selfiemask.commands import main\n"
                  f"rc = main(['predict', '--csv', '--faces', '--engine', 'onnx', '--model', {str(engine_model)!r}, "
                  f"*{paths!r}])\n"
                  "print('IMPORTED', 'torch' in sys.modules, 'fastai' in sys.modules, file=sys.stderr)\nsys.exit(rc)")
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT)
        assert done.returncode == 0, done.stderr
        return list(csv.DictReader(io.StringIO(done.stdout))), done.stderr

    rows, said = predict(faces)
    assert "IMPORTED False False" in said and len(rows) == 2
    paths = [*faces, *map(str, photos[:10])]  # the drawn faces need MTCNN, which imports torch
    lazy, _ = predict(paths)
    from selfiemask.predict import predict_rows

    full = Classifier(engine_model, engine="onnx")
    assert full.engine == "onnx" and full._learn is not None
    expected = [r for rs in predict_rows(full, [Path(p) for p in paths], True) for r in rs]
    assert ([(r["path"], r["face"], r["label"]) for r in lazy]
            == [(r["path"], str(r["face"]), r["label"]) for r in expected])
    conf = np.array([[float(a["confidence"]), float(b["confidence"])] for a, b in zip(lazy, expected)])
    assert np.abs(conf[:, 0] - conf[:, 1]).max() < 2e-4
    lean = Classifier(engine_model, engine="onnx", lazy=True)
    assert lean._learn is None and lean.learn is not None and lean.classes == full.classes  # loaded when asked


def test_stress_benchmark_compares_engines_photo_by_photo(tiny_data, engine_model):
    """--engines torch int8: each model judged on both, and the share of the same labels per condition."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("conditions_benchmark", ROOT / "benchmarks" / "conditions.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    report = bench.run(tiny_data, [("m", engine_model, False)], limit=6, progress=False,
                       conditions=["grayscale"], engines=["torch", "onnx"])
    assert set(report["models"]) == {"m [torch]", "m [onnx]"}
    assert report["models"]["m [onnx]"]["engine"] == "onnx" and report["models"]["m [torch]"]["engine"] == "torch"
    agreement = report["engine_agreement"]["m: onnx vs torch"]
    assert set(agreement) == {"as is", "grayscale"} and all(a["photos"] == 6 for a in agreement.values())
    # the fp32 graph is the learner within 1e-4: every label the same
    assert all(a["same_label"] == 1.0 for a in agreement.values())
    # and the figure is computed, not assumed: a row changed by hand is counted
    rows = [dict(r) for r in report["verdicts"]]
    flip = next(r for r in rows if r["model"] == "m [onnx]" and r["condition"] == "grayscale")
    flip["predicted"] = "with_mask" if flip["predicted"] != "with_mask" else "without_mask"
    changed = bench.engine_agreement(rows, ["torch", "onnx"])["m: onnx vs torch"]["grayscale"]
    assert changed["same_label"] == pytest.approx(5 / 6, abs=1e-4)


def test_make_engines_records_the_graphs_agreement_on_every_stress_condition(tiny_data, engine_model, tmp_path):
    """tools/make_engines.py --stage stress: per condition, how often the int8 graph labels as the learner does."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_engines", ROOT / "tools" / "make_engines.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    model = copy_model(engine_model, tmp_path / "m")
    before = read_card(model)
    tool.stress_agreement(tiny_data, model, None)
    card = read_card(model)
    record = card["engines"]["int8"]["stress_agreement"]
    assert set(record["conditions"]) >= {"as is", "grayscale", "rolled +90°", "camera 24 px"}
    assert all(0.0 <= c["same_label"] <= 1.0 and c["photos"] > 0 for c in record["conditions"].values())
    assert 0.0 <= record["same_label"] <= 1.0 and record["photos"] > 0
    assert set(record["accuracy"]) == {"learner", "graph"}
    for side in record["accuracy"].values():  # accuracy and each class's recall, per condition, for both
        assert 0.0 <= side["as is"]["accuracy"] <= 1.0
        assert set(side["as is"]["recall"]) == {"with_mask", "without_mask"}
    assert card["export_sha256"] == before["export_sha256"]  # the model itself is untouched
    assert card["engines"]["int8"]["sha256"] == before["engines"]["int8"]["sha256"]


def test_the_mirror_runs_only_where_the_plain_pass_is_unsure(engine_model, photos):
    """unless_sure: sure crops keep their plain probabilities, the others get the mean with their mirror."""
    from selfiemask.engines import FLIP_UNLESS_SURE, tta_probs

    clf = Classifier(engine_model, engine="onnx")
    from selfiemask.images import load_image

    x = np.asarray(clf.preprocess([load_image(p) for p in photos[:16]]), dtype=np.float32)
    seen: list[int] = []

    def forward(batch: np.ndarray) -> np.ndarray:
        seen.append(len(batch))
        return clf._forward(batch)

    plain, full = tta_probs(clf._forward, x, False), tta_probs(clf._forward, x, True)
    for sure in (0.0, 0.6, FLIP_UNLESS_SURE, 1.01):
        seen.clear()
        got = tta_probs(forward, x, True, sure)
        unsure = plain.max(axis=1) < sure
        assert seen == [16] + ([int(unsure.sum())] if unsure.any() else [])
        np.testing.assert_allclose(got[~unsure], plain[~unsure], atol=1e-5)
        np.testing.assert_allclose(got[unsure], full[unsure], atol=1e-5)
    # A Classifier takes it from the card, or by hand; 0 means every crop mirrored.
    assert clf.flip_unless_sure is None
    card = read_card(engine_model)
    assert Classifier(engine_model, engine="onnx", tta=True, flip_unless_sure=0.6).flip_unless_sure == 0.6
    assert Classifier(engine_model, engine="onnx", tta=True, flip_unless_sure=0).flip_unless_sure is None
    assert "flip_unless_sure" not in card.get("inference", {})


def test_stress_benchmark_measures_the_skipped_mirror_against_the_full_one(tiny_data, engine_model):
    import importlib.util

    spec = importlib.util.spec_from_file_location("conditions_benchmark", ROOT / "benchmarks" / "conditions.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    report = bench.run(tiny_data, [("m", engine_model, True)], limit=6, progress=False, conditions=["grayscale"],
                       engines=["onnx"], flip_unless_sure="both")
    assert set(report["models"]) == {"m", "m sure-flip"}
    assert report["models"]["m sure-flip"]["flip_unless_sure"] == bench.FLIP_UNLESS_SURE
    assert report["models"]["m"]["flip_unless_sure"] is None
    agreement = report["flip_agreement"]["m sure-flip"]
    assert set(agreement) == {"as is", "grayscale"} and all(a["photos"] == 6 for a in agreement.values())
    rows = [dict(r) for r in report["verdicts"]]
    for r in rows:  # computed, not assumed: every full-mirror verdict made unsure by hand is counted
        if r["model"] == "m":
            r["confidence"] = 0.0
    changed = bench.flip_agreement(rows)["m sure-flip"]
    sure_flip = [r for r in rows if r["model"] == "m sure-flip" and r["condition"] == "grayscale"]
    expect = sum(r["confidence"] < bench.MIN_CONFIDENCE for r in sure_flip) / 6
    assert changed["grayscale"]["same_not_sure"] == pytest.approx(expect, abs=1e-4)
