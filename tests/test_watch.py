"""`selfiemask watch` on a generated video: boxes, smoothed verdicts, output file, bad sources, Ctrl-C.

The video is made here with OpenCV from scikit-image's astronaut (bundled, no
download) moving across a plain gradient, with face-less frames before and
after, so every expectation (where the face is, how many frames) is known.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from selfiemask.commands.watch import add_parser, run  # noqa: E402
from selfiemask.predict import Classifier  # noqa: E402
from selfiemask.synthetic import CLIP_SIZE, write_clip  # noqa: E402
from selfiemask.video import (  # noqa: E402
    FaceTracker,
    FrameAnalyzer,
    WatchError,
    box_colour,
    count_frames,
    default_out,
    display_available,
    iou,
    open_source,
    watch,
)

SIZE = CLIP_SIZE
#: Where MTCNN puts the face inside the pasted head (measured on the undistorted head).
FACE_IN_HEAD = (35, 37, 96, 114)


def expected_face(pos) -> tuple[int, int, int, int]:
    x, y = pos
    l, t, r, b = FACE_IN_HEAD
    return (x + l, y + t, x + r, y + b)


def read_frames(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        out.append(f)
    cap.release()
    return out


def outline_pixels(frame: np.ndarray, box, inset: int = 1) -> np.ndarray:
    """The BGR pixels on a box's outline (drawn inside the box), sides only, away from the label."""
    l, t, r, b = box
    ys = np.arange(t + 6, b - 6)
    left = frame[ys, l + inset]
    right = frame[ys, r - 1 - inset]
    return np.concatenate([left, right]).astype(int)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    where = write_clip(path)
    return path, where


@pytest.fixture(scope="module")
def clf(rule_face_model) -> Classifier:
    return Classifier(rule_face_model)


@pytest.fixture(scope="module")
def watched(clf, clip, tmp_path_factory):
    """One run over the whole clip, detecting on every frame; shared by the checks below."""
    out = tmp_path_factory.mktemp("watched") / "out.mp4"
    return watch(clip[0], clf, out=out, display=False), out


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="selfiemask")
    add_parser(parser.add_subparsers(dest="command"))
    return run(parser.parse_args(["watch", *argv]))


# -- the generated video ---------------------------------------------------------------------------
def test_the_clip_is_what_the_tests_assume(clip):
    path, where = clip
    assert count_frames(path) == len(where) == 26
    assert read_frames(path)[0].shape == (SIZE[1], SIZE[0], 3)


def test_output_has_every_frame_and_a_box_on_each_face(watched, clip):
    result, out = watched
    _, where = clip
    assert out.exists() and result.out == out
    assert result.frames == len(where) and result.out_frames == len(where) == count_frames(out)
    assert not result.interrupted and result.fps > 0
    written = read_frames(out)
    assert len(written) == len(where)
    found = 0
    for rec, pos, frame in zip(result.records, where, written):
        assert rec.detected  # --every 1
        if pos is None:
            assert rec.faces == [], f"frame {rec.index}: a face where there is none"
            continue
        if not rec.faces:
            continue
        found += 1
        assert len(rec.faces) == 1
        face = rec.faces[0]
        assert iou(face.box, expected_face(pos)) > 0.5, (rec.index, face.box, expected_face(pos))
        # The box is drawn in its verdict's colour: the outline pixels are that colour, the video's
        # compression aside; the same pixels of the input frame are not.
        got = np.median(outline_pixels(frame, face.box), axis=0)
        assert np.abs(got - np.array(box_colour(face.label))).max() < 45, (rec.index, got, face.label)
    assert found >= len([p for p in where if p]) - 2  # MTCNN may miss a frame or two after compression


def test_input_frames_have_no_box_colour_where_the_box_is_drawn(watched, clip):
    """The colour check above means something: without drawing, those pixels are not the box colour."""
    result, _ = watched
    original = read_frames(clip[0])
    for rec, frame in zip(result.records, original):
        for face in rec.faces:
            got = np.median(outline_pixels(frame, face.box), axis=0)
            assert np.abs(got - np.array(box_colour(face.label))).max() > 45


def test_smoothed_verdict_is_stable_and_the_face_keeps_its_track(watched):
    result, _ = watched
    faces = [rec.faces[0] for rec in result.records if rec.faces]
    assert len({f.track for f in faces}) == 1, "the moving face was not followed from frame to frame"
    smoothed = [f.label for f in faces]
    changes = sum(a != b for a, b in zip(smoothed, smoothed[1:]))
    raw_changes = sum(a.raw_label != b.raw_label for a, b in zip(faces, faces[1:]))
    assert changes == 0, smoothed
    assert changes <= raw_changes
    assert all(0.0 <= f.confidence <= 1.0 for f in faces)


def test_every_n_reuses_boxes_between_detections(clf, clip, tmp_path):
    path, where = clip
    result = watch(path, clf, out=tmp_path / "every.mp4", every=3, display=False)
    assert [r.detected for r in result.records] == [i % 3 == 0 for i in range(len(where))]
    assert count_frames(tmp_path / "every.mp4") == len(where)
    for i, rec in enumerate(result.records):
        if not rec.detected and i > 0:
            prev = result.records[i - 1]
            assert [f.box for f in rec.faces] == [f.box for f in prev.faces]  # boxes carried over


def rgb_frames(path: Path) -> list:
    from PIL import Image

    return [Image.fromarray(cv2.cvtColor(f, cv2.COLOR_BGR2RGB)) for f in read_frames(path)]


def test_fallback_detector_runs_now_and_then_on_empty_frames(clf, clip):
    """RetinaFace on every frame, its MTCNN fallback on one empty frame in ``fallback_every`` (1: on all)."""
    path, where = clip
    frames = rgb_frames(path)
    assert clf.detector.settings.backend == "retinaface+mtcnn"
    for every in (1, 10):
        analyzer = FrameAnalyzer(clf, fallback_every=every)
        records = [analyzer(f) for f in frames]
        ran = [r.index for r in records if r.fallback]
        assert all(not r.faces for r in records if r.fallback)  # only where RetinaFace found none (nor MTCNN)
        empty = [i for i, p in enumerate(where) if p is None]
        if every == 1:
            assert set(empty) <= set(ran), (empty, ran)
        else:
            assert ran[0] == empty[0] and all(b - a >= every for a, b in zip(ran, ran[1:])), ran
            assert len(ran) < len(empty)
        # The faces RetinaFace finds are found either way.
        assert sum(bool(r.faces) for r in records) >= len(where) - len(empty) - 2


@pytest.fixture(scope="module")
def mtcnn_only_face_model(rule_face_model, tmp_path_factory) -> Path:
    """The face model with RetinaFace's threshold above any score: only the MTCNN fallback can find a face."""
    import json
    import shutil

    from selfiemask.card import card_path

    out = tmp_path_factory.mktemp("mtcnn_only") / "export.pkl"
    shutil.copy(rule_face_model, out)
    card = json.loads(card_path(rule_face_model).read_text())
    card["detector"]["detector"]["min_score"] = 1.01
    card_path(out).write_text(json.dumps(card, indent=2))
    return out


def test_a_face_only_the_fallback_sees_is_followed_on_every_frame(mtcnn_only_face_model, clip):
    """Once MTCNN finds a face RetinaFace misses, it runs on every frame until it loses it: the face is not
    seen one frame in ten. Until then, a face can wait up to ``fallback_every`` frames to be found."""
    path, where = clip
    analyzer = FrameAnalyzer(Classifier(mtcnn_only_face_model), fallback_every=10)
    records = [analyzer(f) for f in rgb_frames(path)]
    found = [r.index for r in records if r.faces]
    faces = [i for i, p in enumerate(where) if p is not None]
    assert found and set(found) <= set(faces)
    first = found[0]
    assert first - faces[0] < 10 + 1  # found at the first due fallback
    assert all(records[i].fallback for i in range(first, faces[-1] + 1))  # then on every frame
    assert len(found) >= faces[-1] - first + 1 - 2  # and the face is followed, a frame or two missed at most
    assert not records[faces[-1] + 2].fallback  # lost once it is gone: back to now and then


def test_ctrl_c_stops_and_finalises_the_file(clf, clip, tmp_path):
    out = tmp_path / "stopped.mp4"

    def stop_at_5(rec):
        if rec.index == 5:
            raise KeyboardInterrupt

    result = watch(clip[0], clf, out=out, display=False, on_frame=stop_at_5)
    assert result.interrupted and result.frames == 6
    assert count_frames(out) == 6 == result.out_frames


def test_whole_image_model_gets_one_verdict_per_frame(rule_face_model, clip, tmp_path):
    whole = Classifier(rule_face_model, detect_faces=False)
    result = watch(clip[0], whole, out=tmp_path / "whole.mp4", max_frames=4, display=False)
    assert result.frames == 4 == count_frames(tmp_path / "whole.mp4")
    assert all(len(r.faces) == 1 and r.faces[0].box == (0, 0, *SIZE) for r in result.records)


# -- the command -----------------------------------------------------------------------------------
def test_cli_writes_next_to_the_input_by_default(rule_face_model, clip, tmp_path, capsys):
    import shutil

    src = tmp_path / "selfie.mp4"
    shutil.copy(clip[0], src)
    assert cli(str(src), "--model", str(rule_face_model), "--max-frames", "7", "--every", "2") == 0
    out = tmp_path / "selfie.watch.mp4"
    assert default_out(src) == out
    assert count_frames(out) == 7
    err = capsys.readouterr().err
    assert str(out) in err and "7 frames" in err


@pytest.mark.parametrize("source, reason", [
    ("missing.mp4", "no such file"),
    ("text.mp4", "not a video"),
    ("folder", "folder"),
    ("97", "no camera"),
])
def test_bad_source_is_a_clear_error(tmp_path, monkeypatch, capsys, rule_face_model, source, reason):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "text.mp4").write_text("not a video")
    (tmp_path / "folder").mkdir()
    with pytest.raises(WatchError, match=reason):
        open_source(source)
    assert cli(source, "--model", str(rule_face_model)) == 2
    err = capsys.readouterr().err
    assert "selfiemask watch: cannot open video source" in err and reason in err and "Traceback" not in err


def test_cli_rejects_bad_options_and_missing_model(tmp_path, clip, capsys, rule_face_model):
    with pytest.raises(SystemExit):
        cli(str(clip[0]), "--every", "0")
    assert cli(str(clip[0]), "--model", str(rule_face_model), "--out", str(clip[0])) == 2
    assert "is the video being read" in capsys.readouterr().err
    assert count_frames(clip[0]) == 26  # untouched
    assert cli(str(clip[0]), "--model", str(tmp_path / "none.pkl")) == 2
    assert "model file not found" in capsys.readouterr().err


def test_headless_opencv_has_no_window(monkeypatch, clf, clip):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert display_available() is False
    with pytest.raises(WatchError, match="no window can be opened"):
        watch(clip[0], clf, display=True)


def test_default_out_for_cameras_and_streams():
    assert default_out("0") == Path("watch_out.mp4")
    assert default_out("rtsp://host/stream") == Path("watch_out.mp4")
    assert default_out("videos/clip.avi") == Path("videos/clip.watch.mp4")


# -- smoothing -------------------------------------------------------------------------------------
def test_tracker_smooths_a_flickering_verdict():
    tracker = FaceTracker(k=5)
    box = (100, 50, 160, 120)
    raw, smoothed = [], []
    rng = np.random.default_rng(0)
    for i in range(30):
        p = 0.62 + (0.2 if i % 2 == 0 else -0.2) + rng.normal(0, 0.02)  # mostly class 0, flipping every frame
        (t,) = tracker.update([(box[0] + i, box[1], box[2] + i, box[3])], np.array([[p, 1 - p]]))
        raw.append(int(p < 0.5))
        smoothed.append(t.verdict)
        assert t.id == 0
    assert sum(a != b for a, b in zip(raw, raw[1:])) > 10
    assert len(set(smoothed[1:])) == 1 and smoothed[-1] == 0


def test_tracker_keeps_faces_apart_and_forgets_lost_ones():
    tracker = FaceTracker(k=3, max_missed=1)
    a, b = (0, 0, 50, 50), (200, 0, 250, 50)
    p = np.array([[0.9, 0.1], [0.2, 0.8]])
    ta, tb = tracker.update([a, b], p)
    assert (ta.id, tb.id) == (0, 1)
    tb2, ta2 = tracker.update([(205, 2, 255, 52), (3, 1, 53, 51)], p[::-1])
    assert (ta2.id, tb2.id) == (0, 1) and ta2.verdict == 0 and tb2.verdict == 1
    tracker.update([a], p[:1])  # b missed once: kept, not shown
    (tb3,) = tracker.update([b], p[1:])
    assert tb3.id == 1
    tracker.update([], p[:0])
    tracker.update([], p[:0])  # missed twice: forgotten
    (tb4,) = tracker.update([b], p[1:])
    assert tb4.id not in (0, 1)


def test_hysteresis_needs_a_clear_change_to_switch():
    tracker = FaceTracker(k=1, hysteresis=0.1)
    box = (0, 0, 40, 40)
    (t,) = tracker.update([box], np.array([[0.7, 0.3]]))
    assert t.verdict == 0
    tracker.update([box], np.array([[0.47, 0.53]]))
    assert t.verdict == 0  # a near tie does not switch
    tracker.update([box], np.array([[0.3, 0.7]]))
    assert t.verdict == 1
