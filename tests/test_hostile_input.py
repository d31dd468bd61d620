"""Hostile and odd input: one row or message per file, never a traceback, later files still judged (#15)."""

from __future__ import annotations

import csv
import io
import os
import random
import subprocess
import sys

import pytest
from PIL import Image

from selfiemask.synthetic import mask_like


def run_cli(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "selfiemask", *map(str, args)], capture_output=True, text=True,
                          env=env)


def csv_rows(res: subprocess.CompletedProcess) -> list[dict]:
    return list(csv.DictReader(io.StringIO(res.stdout)))


# -- item 2: tiny and thin photos, unexpected failures ---------------------------------------------
@pytest.mark.parametrize("per_face", [False, True])
def test_tiny_and_thin_images_do_not_end_the_run(rule_face_model, tmp_path, per_face):
    good = mask_like(64, True, random.Random(3))
    good.save(tmp_path / "a_good.jpg")
    for w, h in [(1, 1), (5, 5), (3000, 10), (20000, 1)]:
        Image.new("RGB", (w, h), (140, 110, 90)).save(tmp_path / f"b_{w}x{h}.png")
    good.save(tmp_path / "c_good_after.jpg")
    res = run_cli("predict", "--model", rule_face_model, "--csv", "--bs", "2", *(["--faces"] if per_face else []),
                  tmp_path)
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    rows = csv_rows(res)
    names = [r["path"].rsplit("/", 1)[-1] for r in rows]
    assert names == ["a_good.jpg", "b_1x1.png", "b_20000x1.png", "b_3000x10.png", "b_5x5.png", "c_good_after.jpg"]
    for r in rows:  # no face can be searched in them: judged whole, and said so
        assert r["label"] in {"with_mask", "without_mask"} and not r["error"], r
        assert (r["face"] == "none") if per_face else (r["judged_on"] == "whole_image")


def test_an_unexpected_failure_is_that_photos_row(rule_face_model, tmp_path, monkeypatch):
    """Any exception while analysing one photo becomes its error row; the rest of its batch is kept."""
    from selfiemask import faces
    from selfiemask.predict import Classifier

    clf = Classifier(rule_face_model, detect_faces=True)
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


# -- item 7: high bit depths are scaled, forged JPEG headers are errors ------------------------------
def _bytes(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def deep_images() -> dict[str, bytes]:
    """The same two-tone grey picture (10000 and 30000 of 65535) at 16 bits, in 32-bit ints and as floats."""
    import numpy as np

    a = np.full((40, 40), 30000, dtype=np.uint16)
    a[:20] = 10000
    return {"grey16.png": _bytes(Image.fromarray(a), "PNG"),
            "grey16.tif": _bytes(Image.fromarray(a), "TIFF"),
            "grey16_in_32.tif": _bytes(Image.fromarray(a.astype(np.int32)), "TIFF"),
            "float.tif": _bytes(Image.fromarray(a.astype(np.float32) / 65535), "TIFF")}


@pytest.mark.parametrize("name", list(deep_images()))
def test_deep_images_are_scaled_not_clipped_to_white(name):
    import numpy as np

    from selfiemask.images import load_image

    out = np.asarray(load_image(deep_images()[name]))
    assert out[0, 0].tolist() == [39, 39, 39] and out[30, 0].tolist() == [117, 117, 117]
    assert (out == 255).mean() == 0


def forged_jpeg(w: int, h: int) -> bytes:
    """A 16x16 JPEG whose frame header is edited to claim ``w`` x ``h`` pixels."""
    data = bytearray(_bytes(Image.new("RGB", (16, 16), (200, 10, 10)), "JPEG"))
    i = data.index(b"\xff\xc0")
    data[i + 5:i + 7] = h.to_bytes(2, "big")
    data[i + 7:i + 9] = w.to_bytes(2, "big")
    return bytes(data)


@pytest.mark.parametrize("side", [65000, 3000])
def test_forged_jpeg_header_is_an_error_in_bounded_memory(tmp_path, side):
    path = tmp_path / "bomb.jpg"
    path.write_bytes(forged_jpeg(side, side))
    # Peak memory from VmHWM: ru_maxrss would carry over the (large) pytest process this child was forked from.
    code = ("import re\nfrom selfiemask.images import ImageError, load_image\n"
            f"try:\n    load_image({str(path)!r}); print('loaded')\nexcept ImageError as e:\n    print(e)\n"
            "print(int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)) // 1024)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0].startswith("corrupt image (the header claims") and f"{side}x{side}" in out[0]
    assert int(out[1]) < 300, f"peak memory {out[1]} MB"


def test_deep_and_forged_images_through_cli(rule_face_model, tmp_path):
    for name, data in deep_images().items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "bomb.jpg").write_bytes(forged_jpeg(65000, 65000))
    res = run_cli("predict", "--model", rule_face_model, "--csv", tmp_path)
    rows = {r["path"].rsplit("/", 1)[-1]: r for r in csv_rows(res)}
    assert res.returncode == 0 and len(rows) == 5
    assert rows["bomb.jpg"]["label"] == "error" and "corrupt image" in rows["bomb.jpg"]["error"]
    assert all(r["label"] != "error" for n, r in rows.items() if n != "bomb.jpg")


# -- item 5: boxes in pixels of the upright original -------------------------------------------------
def iou(a, b) -> float:
    l, t, r, btm = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0, r - l) * max(0, btm - t)
    area = lambda x: (x[2] - x[0]) * (x[3] - x[1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


@pytest.fixture(scope="module")
def big_photo(astronaut):
    """The astronaut scaled 6x (3072 px) on a 4200x3072 canvas, and where its face is in it."""
    from selfiemask.faces import FaceDetector

    (face,) = FaceDetector().detect(astronaut)
    canvas = Image.new("RGB", (4200, 3072), (90, 90, 90))
    canvas.paste(astronaut.resize((3072, 3072), Image.Resampling.BICUBIC), (1128, 0))
    expected = (face.box[0] * 6 + 1128, face.box[1] * 6, face.box[2] * 6 + 1128, face.box[3] * 6)
    return canvas, expected


def test_face_boxes_are_in_pixels_of_the_original_photo(rule_face_model, tmp_path, big_photo):
    canvas, expected = big_photo
    canvas.save(tmp_path / "big.jpg", quality=90)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: shown rotated 90° clockwise, i.e. as ``canvas``
    canvas.transpose(Image.Transpose.ROTATE_90).save(tmp_path / "big_sideways.jpg", quality=90, exif=exif.tobytes())
    res = run_cli("predict", "--model", rule_face_model, "--csv", "--faces", tmp_path)
    rows = csv_rows(res)
    assert res.returncode == 0 and len(rows) == 2, res.stderr
    for r in rows:
        box = tuple(map(int, r["box"].split()))
        assert iou(box, expected) > 0.7, (r, expected)


def test_app_and_video_boxes_on_a_big_photo(rule_face_model, big_photo):
    from selfiemask.app import App, draw_boxes
    from selfiemask.images import load_image
    from selfiemask.predict import Classifier
    from selfiemask.video import FrameAnalyzer

    canvas, expected = big_photo
    app = App(rule_face_model)
    img = load_image(_bytes(canvas, "JPEG", quality=90))
    (result,) = app.classifier.analyze_images([img])
    assert iou(result.faces[0].box, expected) > 0.7
    drawn = draw_boxes(img, result)  # the box is drawn where the face is on the displayed copy
    s = drawn.width / canvas.width
    l, t, r, b = (round(v * s) for v in expected)
    assert drawn.getpixel((l, (t + b) // 2)) != img.resize(drawn.size).getpixel((l, (t + b) // 2))
    record = FrameAnalyzer(Classifier(rule_face_model))(canvas)  # video frames are judged at full size
    assert iou(record.faces[0].box, expected) > 0.7


# -- item 8: HEIC ---------------------------------------------------------------------------------------
def heic_bytes(img: Image.Image) -> bytes:
    """A real HEIC (HEVC-coded, as an iPhone saves), made here with pillow-heif's encoder."""
    import pillow_heif

    pillow_heif.register_heif_opener()
    data = _bytes(img, "HEIF", quality=90)
    assert data[4:12] == b"ftypheic"
    return data


def test_heic_works_in_cli_app_and_clean(rule_face_model, tmp_path, astronaut):
    from selfiemask.app import App
    from selfiemask.files import read_rows
    from selfiemask.paths import Layout

    data = heic_bytes(astronaut)
    (tmp_path / "selfie.heic").write_bytes(data)
    (tmp_path / "named_jpg_but_heic.jpg").write_bytes(data)
    res = run_cli("predict", "--model", rule_face_model, "--csv", "--faces", tmp_path)
    rows = csv_rows(res)
    assert res.returncode == 0 and len(rows) == 2
    assert all(r["label"] in {"with_mask", "without_mask"} and r["face"] == "0" for r in rows), rows
    app = App(rule_face_model)
    app.show([("IMG_0001.HEIC", data)])  # an upload: bytes, no suffix to go by
    assert len(_find(app.results, "verdict")) == 1 and not _find(app.results, "upload-error")
    layout = Layout.under(tmp_path / "data")
    (layout.raw / "with_mask").mkdir(parents=True)
    (layout.raw / "with_mask" / "IMG_0001.heic").write_bytes(data)
    res = run_cli("clean", "verify", "--data", tmp_path / "data", "--quiet")
    assert res.returncode == 0, res.stderr
    (row,) = read_rows(layout.sources)
    assert row["outcome"] == "clean", row


def _find(widget, cls: str) -> list:
    found = [widget] if cls in widget._dom_classes else []
    for child in getattr(widget, "children", ()):
        found += _find(child, cls)
    return found


# -- item 6: file names that are not UTF-8 -------------------------------------------------------------
LATIN1 = os.fsdecode(b"caf\xe9")  # 'caf\udce9': how Python holds the byte 0xE9 of a non-UTF-8 name


def test_clean_verify_with_non_utf8_names_keeps_its_state(tmp_path):
    from selfiemask.files import read_rows
    from selfiemask.paths import Layout

    layout = Layout.under(tmp_path / "data")
    folder = layout.raw / "with_mask"
    folder.mkdir(parents=True)
    rng = random.Random(4)
    good = mask_like(128, True, rng)
    good.save(folder / f"{LATIN1}_good.jpg")
    (folder / f"{LATIN1}_broken.jpg").write_bytes(b"not a photo at all")
    mask_like(128, False, rng).save(folder / "plain.jpg")
    env = {**os.environ, "PYTHONIOENCODING": "utf-8:strict"}
    res = run_cli("clean", "verify", "--data", tmp_path / "data", "--quiet", env=env)
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    assert "caf\\udce9_broken.jpg" in res.stdout  # printed escaped, never a crash
    assert layout.sources.exists() and not layout.sources.with_name("sources.csv.tmp").exists()
    assert layout.hash_cache.exists()
    rows = {r["source"]: r for r in read_rows(layout.sources)}
    assert rows[f"with_mask/{LATIN1}_good.jpg"]["outcome"] == "clean"
    assert rows[f"with_mask/{LATIN1}_broken.jpg"]["outcome"] == "rejected"
    assert (layout.clean / "with_mask" / f"{LATIN1}_good.jpg").exists()
    log = layout.reject_log.read_bytes()
    rejected = sorted(p.name for p in layout.rejected.rglob("*.jpg"))
    again = run_cli("clean", "verify", "--data", tmp_path / "data", "--quiet", env=env)
    assert again.returncode == 0 and "3 already handled" in again.stdout, again.stdout
    assert layout.reject_log.read_bytes() == log and sorted(p.name for p in layout.rejected.rglob("*.jpg")) == rejected


def test_predict_prints_non_utf8_names_on_a_strict_stdout(rule_face_model, tmp_path):
    mask_like(64, True, random.Random(2)).save(tmp_path / f"{LATIN1}.jpg")
    (tmp_path / f"{LATIN1}_text.jpg").write_text("no photo")
    env = {**os.environ, "PYTHONIOENCODING": "utf-8:strict"}
    for extra in ([], ["--csv"]):
        res = run_cli("predict", "--model", rule_face_model, *extra, tmp_path, env=env)
        assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
        assert res.stdout.count("caf\\udce9") == 2


# -- item 9: names that read as options, folders named like photos, FIFOs and link loops -----------------
def test_leading_dash_file_name_gets_a_hint_and_works_after_double_dash(rule_face_model, tmp_path):
    mask_like(64, True, random.Random(6)).save(tmp_path / "-leading-dash.jpg")
    res = subprocess.run([sys.executable, "-m", "selfiemask", "predict", "--model", str(rule_face_model),
                          "-leading-dash.jpg"], capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 2 and "put -- before the paths" in res.stderr
    res = subprocess.run([sys.executable, "-m", "selfiemask", "predict", "--model", str(rule_face_model), "--",
                          "-leading-dash.jpg"], capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 0 and res.stdout.startswith("-leading-dash.jpg: "), res.stderr
    assert "put -- before the paths" in run_cli("predict", "--help").stdout.replace("\n", " ").replace("  ", " ")


def test_odd_entries_are_reported_not_skipped_silently(rule_face_model, tmp_path):
    d = tmp_path / "photos"
    d.mkdir()
    mask_like(64, True, random.Random(7)).save(d / "good.jpg")
    (d / "folder.jpg").mkdir()
    os.mkfifo(d / "pipe.jpg")
    (d / "loop.jpg").symlink_to(d / "loop.jpg")
    (d / "dangling.jpg").symlink_to(d / "missing.jpg")
    empty = tmp_path / "x.jpg"
    empty.mkdir()
    res = run_cli("predict", "--model", rule_face_model, "--csv", d, empty)
    assert res.returncode == 0 and len(csv_rows(res)) == 1, res.stderr
    for name, why in [("folder.jpg", "a folder named like an image"), ("pipe.jpg", "not a regular file"),
                      ("loop.jpg", "link loop"), ("dangling.jpg", "broken symbolic link")]:
        assert f"skipped {d / name}: " in res.stderr and why in res.stderr, res.stderr
    assert f"skipped {empty}: a folder with no images in it" in res.stderr
    res = run_cli("predict", "--model", rule_face_model, "--csv", d / "pipe.jpg", d / "loop.jpg")  # named explicitly
    rows = csv_rows(res)
    assert [r["error"] for r in rows] == ["not a regular file (a FIFO, device or socket)",
                                          "a broken symbolic link or a link loop"]


# -- the whole corpus: CLI (plain, --csv, --faces), the app in-process and clean verify --------------
@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from hostile_corpus import make_corpus

    folder = tmp_path_factory.mktemp("corpus") / "with_mask"
    return folder, make_corpus(folder)


def _check(name: str, label: str, error: str, expect: str) -> None:
    assert "Traceback" not in error
    if expect == "verdict":
        assert label in {"with_mask", "without_mask"} and not error, (name, label, error)
    elif expect != "any":
        assert label == "error" and expect in error, (name, label, error)


@pytest.mark.parametrize("mode", ["--csv", "--faces"])
def test_corpus_through_cli_csv(rule_face_model, corpus, mode):
    folder, expect = corpus
    res = run_cli("predict", "--model", rule_face_model, "--csv", *([mode] if mode == "--faces" else []), folder,
                  env={**os.environ, "PYTHONIOENCODING": "utf-8:strict"})
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    rows = csv_rows(res)
    names = [r["path"].rsplit("/", 1)[-1] for r in rows]
    escaped = {n.encode("utf-8", "backslashreplace").decode(): n for n in expect}  # as stdout prints them
    assert sorted(escaped[n] for n in names) == sorted(expect)  # one row per file (faces: none are found)
    for n, r in zip(names, rows):
        _check(n, r["label"], r["error"], expect[escaped[n]])
    for special in ("fifo.jpg", "loop.jpg", "folder.jpg"):
        assert f"skipped {folder / special}: " in res.stderr


def test_corpus_through_cli_plain(rule_face_model, corpus):
    folder, expect = corpus
    res = run_cli("predict", "--model", rule_face_model, folder)
    assert res.returncode == 0 and "Traceback" not in res.stderr
    assert len(res.stdout.strip().splitlines()) == len(expect)
    assert sum(": error: " in line for line in res.stdout.splitlines()) == \
        sum(e not in ("verdict", "any") for e in expect.values())


def test_corpus_through_the_app(rule_face_model, corpus):
    from selfiemask.app import App

    folder, expect = corpus
    app = App(rule_face_model)
    for name, what in expect.items():
        app.show([(name, (folder / name).read_bytes())])
        (box,) = app.results.children
        verdicts, errors = _find(box, "verdict"), _find(box, "upload-error")
        text = " ".join(w.value for w in errors)
        assert len(verdicts) + len(errors) >= 1 and "Traceback" not in text, name
        if what == "verdict":
            assert verdicts and not errors, (name, text)
        elif what != "any":
            assert errors and not verdicts and what in text, (name, text)
    app.show([("good.jpg", (folder / "good.jpg").read_bytes())])  # and the page still works
    assert len(_find(app.results, "verdict")) == 1


def test_corpus_through_clean_verify(corpus, tmp_path):
    import shutil

    from selfiemask.files import read_rows
    from selfiemask.paths import Layout

    folder, expect = corpus
    layout = Layout.under(tmp_path / "data")
    (layout.raw / "with_mask").mkdir(parents=True)
    for name in expect:
        shutil.copy(folder / name, layout.raw / "with_mask" / name)
    res = run_cli("clean", "verify", "--data", tmp_path / "data", "--quiet")
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    rows = {r["source"].split("/", 1)[1]: r for r in read_rows(layout.sources)}
    assert sorted(rows) == sorted(expect)
    for name, what in expect.items():
        if what not in ("verdict", "any"):
            assert rows[name]["outcome"] == "rejected" and rows[name]["reason"], rows[name]
