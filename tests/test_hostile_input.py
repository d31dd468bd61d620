"""Hostile and odd input: one row or message per file, never a traceback, later files still judged (#15)."""

from __future__ import annotations

import csv
import io
import random
import subprocess
import sys

import pytest
from PIL import Image
from synthetic import mask_like


def run_cli(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "selfiemask", *map(str, args)], capture_output=True, text=True,
                          env=env)


def csv_rows(res: subprocess.CompletedProcess) -> list[dict]:
    return list(csv.DictReader(io.StringIO(res.stdout)))


# -- item 2: tiny and thin photos, unexpected failures ---------------------------------------------
@pytest.mark.parametrize("per_face", [False, True])
def test_tiny_and_thin_images_do_not_end_the_run(tiny_model, tmp_path, per_face):
    good = mask_like(64, True, random.Random(3))
    good.save(tmp_path / "a_good.jpg")
    for w, h in [(1, 1), (5, 5), (3000, 10), (20000, 1)]:
        Image.new("RGB", (w, h), (140, 110, 90)).save(tmp_path / f"b_{w}x{h}.png")
    good.save(tmp_path / "c_good_after.jpg")
    res = run_cli("predict", "--model", tiny_model, "--csv", "--bs", "2", *(["--faces"] if per_face else []),
                  tmp_path)
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    rows = csv_rows(res)
    names = [r["path"].rsplit("/", 1)[-1] for r in rows]
    assert names == ["a_good.jpg", "b_1x1.png", "b_20000x1.png", "b_3000x10.png", "b_5x5.png", "c_good_after.jpg"]
    for r in rows:  # no face can be searched in them: judged whole, and said so
        assert r["label"] in {"with_mask", "without_mask"} and not r["error"], r
        assert (r["face"] == "none") if per_face else (r["judged_on"] == "whole_image")


def test_an_unexpected_failure_is_that_photos_row(tiny_model, tmp_path, monkeypatch):
    """Any exception while analysing one photo becomes its error row; the rest of its batch is kept."""
    from selfiemask import faces
    from selfiemask.predict import Classifier

    clf = Classifier(tiny_model, detect_faces=True)
    real = faces.FaceDetector.detect

    def detect(self, img):
        if img.size == (77, 77):
            raise RuntimeError("detector exploded")
        return real(self, img)

    monkeypatch.setattr(faces.FaceDetector, "detect", detect)
    paths = []
    for i, size in enumerate([(64, 64), (77, 77), (64, 64)]):
        p = tmp_path / f"{i}.png"
        mask_like(size[0], i == 0, random.Random(i)).save(p)
        paths.append(p)
    results = clf.analyze_files(paths, bs=8)
    assert [r.path for r in results] == [str(p) for p in paths]
    assert results[1].error == "could not be analysed (RuntimeError: detector exploded)"
    assert results[0].main is not None and results[2].main is not None and not results[0].error
