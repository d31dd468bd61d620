"""Cleaning: verify, deduplicate, relabel and undo, compare, the CLI and notebook 02, on generated images."""

from __future__ import annotations

import argparse
import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
from conftest import ROOT
from PIL import Image, ImageOps

from selfiemask.commands import clean as clean_command
from selfiemask.curate.dedupe import apply_dedupe, contact_sheet, dedupe, find_duplicates, near_pairs, popcount
from selfiemask.curate.facts import HashCache
from selfiemask.curate.relabel import REJECT, relabel, undo
from selfiemask.curate.review import RelabelView
from selfiemask.curate.verify import verify
from selfiemask.files import read_rows
from selfiemask.images import HEIC_SUPPORTED
from selfiemask.paths import Layout


def picture(seed: int, size: int = 96) -> Image.Image:
    """A smooth random picture plus grain: distinct seeds give perceptual hashes 12+ bits apart."""
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).resize((size, size), Image.BICUBIC)
    grain = rng.integers(-12, 12, (size, size, 3))
    return Image.fromarray(np.clip(np.asarray(img, dtype=int) + grain, 0, 255).astype(np.uint8))


def jpeg(img: Image.Image, quality: int = 95) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def save(path: Path, data: bytes | Image.Image) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else jpeg(data))
    return path


def tree(root: Path) -> dict[str, bytes]:
    """Every file below ``root`` with its bytes: a run that changes nothing leaves this equal."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def bad_files(raw: Path) -> dict[str, str]:
    """Broken and non-photo files under raw/with_mask/, with the reason words verify must give."""
    good = jpeg(picture(1))
    png = io.BytesIO()
    picture(2).save(png, "PNG")
    broken_png = bytearray(png.getvalue())
    broken_png[len(broken_png) // 2:len(broken_png) // 2 + 50] = bytes(50)
    frames = [picture(3), picture(4)]
    gif = io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    files = {
        "zero.jpg": (b"", "empty file"),
        "text.jpg": (b"hello, this is not a picture\n" * 20, "not an image"),
        "page.jpg": (b"<!DOCTYPE html><html><body>429 Too Many Requests</body></html>", "web page"),
        "truncated.jpg": (good[: len(good) // 2], "truncated"),
        "corrupt.png": (bytes(broken_png), "corrupt"),
        "tiny.jpg": (jpeg(picture(5, size=20)), "too small"),
        "anim.gif": (gif.getvalue(), "animated"),
        "clip.jpg": (b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41" + bytes(200), "video"),
        "blank.jpg": (jpeg(Image.new("RGB", (96, 96), (200, 30, 30))), "blank"),
        "caption.txt": (b"#mask #selfie", "not an image file"),
    }
    if not HEIC_SUPPORTED:
        files["iphone.heic"] = (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(100), "HEIC")
    for name, (data, _) in files.items():
        save(raw / "with_mask" / name, data)
    return {name: why for name, (_, why) in files.items()}


# -- verify ----------------------------------------------------------------------------------------------
def test_verify_rejects_with_reasons_keeps_raw_and_is_idempotent(tmp_path):
    layout = Layout.under(tmp_path)
    reasons = bad_files(layout.raw)
    save(layout.raw / "with_mask" / "good.jpg", picture(10))
    save(layout.raw / "without_mask" / "sub" / "good2.jpg", picture(11))
    raw_before = tree(layout.raw)

    s = verify(layout, progress=False)
    assert (s.files, s.copied, s.rejected) == (len(reasons) + 2, 2, len(reasons))
    assert sorted(tree(layout.clean / "with_mask")) == ["good.jpg"]
    assert (layout.clean / "without_mask" / "sub" / "good2.jpg").read_bytes() == \
        (layout.raw / "without_mask" / "sub" / "good2.jpg").read_bytes()
    assert tree(layout.raw) == raw_before, "raw/ must never be modified"
    log = {Path(r["original"]).name: r for r in read_rows(layout.reject_log)}
    assert set(log) == set(reasons)
    for name, why in reasons.items():
        row = log[name]
        assert why.lower() in row["reason"].lower(), (name, row["reason"])
        assert row["time"] and row["step"] == "verify"
        assert Path(row["new"]).read_bytes() == (layout.raw / "with_mask" / name).read_bytes(), "copied, not lost"
        assert Path(row["new"]).is_relative_to(layout.rejected / "verify")

    before = (tree(tmp_path), len(read_rows(layout.reject_log)))
    again = verify(layout, progress=False)
    assert (again.copied, again.rejected, again.unchanged) == (0, 0, len(reasons) + 2)
    assert (tree(tmp_path), len(read_rows(layout.reject_log))) == before


def test_verify_skips_handled_files_even_after_they_moved(tmp_path):
    """A photo relabelled or deduplicated in clean/ is not copied back by the next verify."""
    layout = Layout.under(tmp_path)
    save(layout.raw / "with_mask" / "a.jpg", picture(1))
    verify(layout, progress=False)
    relabel(layout.clean / "with_mask" / "a.jpg", "without_mask", layout.clean)
    save(layout.raw / "with_mask" / "b.jpg", picture(2))  # a new download
    s = verify(layout, progress=False)
    assert (s.copied, s.unchanged) == (1, 1)
    assert sorted(tree(layout.clean / "with_mask")) == ["b.jpg"]
    assert (layout.clean / "without_mask" / "a.jpg").exists()


# -- deduplicate ---------------------------------------------------------------------------------------------
def planted(clean: Path) -> Path:
    """An original with an exact, a resized, a re-encoded and a mirrored copy, and ten distinct photos."""
    orig = picture(100, size=128)
    save(clean / "with_mask" / "orig.jpg", orig)
    shutil.copy(clean / "with_mask" / "orig.jpg", clean / "with_mask" / "exact_copy.jpg")
    save(clean / "with_mask" / "resized.jpg", orig.resize((80, 80), Image.LANCZOS))
    save(clean / "with_mask" / "reencoded.jpg", jpeg(orig, quality=30))
    save(clean / "with_mask" / "mirrored.jpg", ImageOps.mirror(orig).resize((112, 112), Image.LANCZOS))
    for i in range(10):
        save(clean / ("with_mask" if i % 2 else "without_mask") / f"distinct_{i}.jpg", picture(200 + i))
    return clean


def test_exact_resized_reencoded_and_mirrored_copies_found_distinct_not_merged(tmp_path):
    layout = Layout.under(tmp_path)
    planted(layout.clean)
    report = find_duplicates(layout.clean, HashCache(layout.hash_cache), progress=False)
    assert len(report.clusters) == 1, [[m.rel for m in c.members] for c in report.clusters]
    c = report.clusters[0]
    assert c.keeper.rel in ("with_mask/orig.jpg", "with_mask/exact_copy.jpg")  # largest (128 px), largest file
    assert {m.rel.split("/")[1] for m in c.members} == {"orig.jpg", "exact_copy.jpg", "resized.jpg",
                                                         "reencoded.jpg", "mirrored.jpg"}
    assert next(m for m in c.members if m.rel.endswith("mirrored.jpg")).mirrored
    assert c.kind == "near" and not c.cross_label

    assert apply_dedupe(report, layout) == 4
    assert sorted(tree(layout.clean / "with_mask")) == sorted([Path(c.keeper.rel).name] + [
        f"distinct_{i}.jpg" for i in (1, 3, 5, 7, 9)])
    moved = [r for r in read_rows(layout.reject_log) if r["step"] == "duplicate"]
    assert len(moved) == 4 and all(f"duplicate of {c.keeper.rel}" in r["reason"] for r in moved)
    assert all(Path(r["new"]).exists() and not Path(r["original"]).exists() for r in moved)


def test_mirrored_copy_needs_the_mirror_hash(tmp_path):
    save(tmp_path / "a" / "x.jpg", picture(7))
    save(tmp_path / "a" / "x_flipped.jpg", ImageOps.mirror(picture(7)))
    assert len(find_duplicates(tmp_path, progress=False).clusters) == 1
    assert find_duplicates(tmp_path, mirror=False, progress=False).clusters == []


def test_cross_label_duplicates_flagged_not_moved_and_second_run_changes_nothing(tmp_path):
    layout = Layout.under(tmp_path)
    planted(layout.clean)
    save(layout.clean / "without_mask" / "same_as_distinct_1.jpg", jpeg(picture(201), quality=60))
    first = dedupe(layout, progress=False)
    assert first.counts()["moved"] == 4 and len(first.review) == 1
    assert first.review[0].labels == ["with_mask", "without_mask"]
    review = read_rows(layout.clean / "duplicates_review.csv")
    assert sorted(r["file"] for r in review) == ["with_mask/distinct_1.jpg", "without_mask/same_as_distinct_1.jpg"]
    assert all(r["action"] == "review" for r in review)
    assert (layout.clean / "without_mask" / "same_as_distinct_1.jpg").exists()
    assert (layout.clean / "with_mask" / "distinct_1.jpg").exists()

    before = (tree(layout.clean), tree(layout.rejected))
    cache = HashCache(layout.hash_cache)
    second = find_duplicates(layout.clean, cache, progress=False)
    assert cache.misses == 0, "hashes come from the cache on a second run"
    assert apply_dedupe(second, layout) == 0
    assert len(second.review) == 1
    assert (tree(layout.clean), tree(layout.rejected)) == before


def test_near_pairs_agrees_with_brute_force():
    rng = np.random.default_rng(0)
    h = rng.integers(0, 2**63, 300, dtype=np.uint64) * np.uint64(2) + rng.integers(0, 2, 300, dtype=np.uint64)
    for i in range(0, 60, 3):  # plant near copies, some across block edges
        h[i + 200] = h[i] ^ np.uint64(1 << int(rng.integers(0, 64))) ^ np.uint64(1 << 5)
    m = rng.integers(0, 2**63, 300, dtype=np.uint64)
    m[250] = h[7]  # 250's mirror is 7
    got = set(near_pairs(h, m, threshold=2, block=64))
    want = set()
    for i in range(300):
        for j in range(i + 1, 300):
            d = min(int(popcount(h[i] ^ h[j])), int(popcount(h[i] ^ m[j])), int(popcount(m[i] ^ h[j])))
            if d <= 2:
                want.add((i, j))
    assert got == want and (7, 250) in got and len(got) >= 20


def test_contact_sheet_has_a_row_per_cluster(tmp_path):
    planted(tmp_path)
    report = find_duplicates(tmp_path, progress=False)
    sheet = contact_sheet(report.clusters, per_row=6, thumb=64)
    assert sheet.size == (6 * 76, 1 * (76 + 26))


# -- relabel and undo ------------------------------------------------------------------------------------------
def test_relabel_log_written_and_undone(tmp_path):
    layout = Layout.under(tmp_path)
    for name in ("x.jpg", "y.jpg", "z.jpg"):
        save(layout.clean / "with_mask" / name, picture(len(name) + ord(name[0])))
    start = tree(layout.clean)
    relabel(layout.clean / "with_mask" / "x.jpg", "without_mask", layout.clean)
    relabel(layout.clean / "with_mask" / "y.jpg", REJECT, layout.clean)
    relabel(layout.clean / "without_mask" / "x.jpg", "incorrect_mask", layout.clean)
    assert (layout.clean / "incorrect_mask" / "x.jpg").exists()
    assert (layout.rejected / "relabel" / "with_mask" / "y.jpg").exists()
    rows = read_rows(layout.relabel_log)
    assert [(r["file"], r["old_label"], r["new_label"]) for r in rows] == [
        ("with_mask/x.jpg", "with_mask", "without_mask"), ("with_mask/y.jpg", "with_mask", REJECT),
        ("without_mask/x.jpg", "without_mask", "incorrect_mask")]
    assert all(r["time"] and not r["undone"] for r in rows)
    assert read_rows(layout.reject_log)[-1]["reason"] == "rejected in review (was with_mask)"

    assert [r["new_label"] for r in undo(layout.clean, 1)] == ["incorrect_mask"]
    assert (layout.clean / "without_mask" / "x.jpg").exists()
    assert len(undo(layout.clean, None)) == 2
    assert {k: v for k, v in tree(layout.clean).items() if "/" in k} == start
    assert all(r["undone"] for r in read_rows(layout.relabel_log)), "rows kept, marked undone"
    assert undo(layout.clean, None) == []


def test_relabel_view_apply_moves_and_logs(tmp_path):
    clean = tmp_path / "clean"
    paths = [save(clean / "with_mask" / f"p{i}.jpg", picture(i)) for i in range(3)]
    view = RelabelView([(p, "with_mask", "without_mask", 0.9) for p in paths], ["with_mask", "without_mask"], clean)
    assert [o[1] for o in view.dropdowns[0].options] == ["<keep>", "without_mask", REJECT]
    view.dropdowns[0].value = "without_mask"
    view.dropdowns[2].value = REJECT
    view.apply_button.click()
    assert (clean / "without_mask" / "p0.jpg").exists() and (clean / "with_mask" / "p1.jpg").exists()
    assert (tmp_path / "rejected" / "relabel" / "with_mask" / "p2.jpg").exists()
    assert [(r["file"], r["new_label"]) for r in read_rows(clean / "relabel_log.csv")] == [
        ("with_mask/p0.jpg", "without_mask"), ("with_mask/p2.jpg", REJECT)]
    assert view.dropdowns[0].value == "<keep>" and view.dropdowns[2].disabled
    view.apply_button.click()  # nothing chosen: nothing moves
    assert len(read_rows(clean / "relabel_log.csv")) == 2
    assert "moved 2" not in view.status.value


# -- the command line ------------------------------------------------------------------------------------------
def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="selfiemask")
    clean_command.add_parser(parser.add_subparsers(dest="command", required=True))
    return clean_command.run(parser.parse_args(list(argv)))


def test_cli_all_relabel_undo(tmp_path, capsys):
    layout = Layout.under(tmp_path)
    save(layout.raw / "with_mask" / "a.jpg", picture(1))
    save(layout.raw / "with_mask" / "a_again.jpg", picture(1))
    save(layout.raw / "without_mask" / "b.jpg", picture(2))
    save(layout.raw / "without_mask" / "zero.jpg", b"")
    assert cli("clean", "all", "--data", str(tmp_path), "--quiet") == 0
    out = capsys.readouterr().out
    assert "1 rejected (1 empty file)" in out and "1 moved to rejected/" in out
    assert len(list((layout.clean / "with_mask").glob("*.jpg"))) == 1
    assert cli("clean", "relabel", str(layout.clean / "without_mask" / "b.jpg"), "--to", "with_mask",
               "--data", str(tmp_path)) == 0
    assert (layout.clean / "with_mask" / "b.jpg").exists()
    assert cli("clean", "undo", "--all", "--data", str(tmp_path)) == 0
    assert (layout.clean / "without_mask" / "b.jpg").exists()
    assert cli("clean", "verify", "--data", str(tmp_path / "nowhere"), "--quiet") == 2
    assert "raw folder not found" in capsys.readouterr().err


# -- a model: review, keep a version, compare --------------------------------------------------------------------------
def test_review_keep_and_compare_with_a_tiny_model(tmp_path):
    from selfiemask.card import card_path, verify_model
    from selfiemask.curate.review import review_candidates
    from selfiemask.evaluate import compare_models, comparison_table
    from selfiemask.history import keep_version, version_name
    from selfiemask.predict import Classifier
    from selfiemask.synthetic import make_dataset
    from selfiemask.training import TrainConfig, train

    data = make_dataset(tmp_path / "train", per_class=14, size=48)
    out = tmp_path / "export.pkl"
    # Zero epochs: an untrained but real exported learner with its card, in seconds; the mechanics are under test.
    train(TrainConfig(data_dir=data, out=out, epochs=0, size=32, bs=8, lr=2e-3, pretrained=False, crops=False,
                      valid_pct=0.3, num_workers=0, engines=False))
    bak = keep_version(out)  # the one backup there is: models/history/<date>-<time>-<sha8>/ beside the model
    assert bak == tmp_path / "models" / "history" / version_name(out) / "export.pkl"
    assert bak.read_bytes() == out.read_bytes() and card_path(bak).read_bytes() == card_path(out).read_bytes()
    assert verify_model(bak)["export_sha256"] == verify_model(out)["export_sha256"]
    assert keep_version(tmp_path / "missing.pkl") is None

    result = compare_models(bak, out, data, valid_pct=0.3)
    assert result["n"] > 0 and result["old"]["accuracy"] == result["new"]["accuracy"]
    assert result["old"]["data"]["files"] == 28 and len(result["predictions"]) == result["n"]
    table = comparison_table(result)
    assert list(table.columns) == ["old", "new", "change"] and (table["change"] == 0).all()

    cands = review_candidates(Classifier(out), data, top_losses=3, least_confident=2, progress=False)
    assert len(cands) == 5 and cands[0].loss >= cands[1].loss >= cands[2].loss
    assert {c.label for c in cands} <= {"with_mask", "without_mask"}


def test_cli_review_ends_with_the_relabel_command_to_run(tmp_path, capsys):
    """The review's CSV on stdout, then on stderr a relabel command that runs as printed (same --data)."""
    import shlex

    from selfiemask.synthetic import make_dataset
    from selfiemask.training import TrainConfig, train

    out = tmp_path / "export.pkl"
    train(TrainConfig(data_dir=make_dataset(tmp_path / "train", per_class=10, size=48), out=out, epochs=0, size=32,
                      bs=8, lr=2e-3, pretrained=False, crops=False, valid_pct=0.3, num_workers=0,
                      engines=False))
    layout = Layout.under(tmp_path / "data")
    make_dataset(layout.clean, per_class=5, size=48, seed=3)
    capsys.readouterr()  # what training printed
    assert cli("clean", "review", "--model", str(out), "--data", str(tmp_path / "data"), "--quiet",
               "--top", "4", "--least-confident", "2") == 0
    captured = capsys.readouterr()
    rows = list(csv.DictReader(io.StringIO(captured.out)))
    assert len(rows) == 6 and list(rows[0]) == ["path", "label", "predicted", "confidence", "loss"]
    *_, command = captured.err.strip().splitlines()
    argv = shlex.split(command)
    assert argv[:3] == ["selfiemask", "clean", "relabel"] and argv[-2:] == ["--data", str(tmp_path / "data")]
    photo, to = Path(argv[3]), argv[5]
    assert next(r for r in rows if r["path"] == str(photo))["predicted"] == to != photo.parent.name
    assert cli(*argv[1:]) == 0
    assert (layout.clean / to / photo.name).exists() and not photo.exists()


# -- the notebook -----------------------------------------------------------------------------------------------
def test_notebook_runs_verify_and_dedupe_on_tiny_data(tmp_path):
    import papermill as pm

    layout = Layout.under(tmp_path / "data")
    save(layout.raw / "with_mask" / "a.jpg", picture(1))
    save(layout.raw / "with_mask" / "a_small.jpg", picture(1).resize((64, 64)))
    save(layout.raw / "without_mask" / "b.jpg", picture(2))
    save(layout.raw / "without_mask" / "broken.jpg", b"not a picture")
    pm.execute_notebook(ROOT / "notebooks" / "02_clean.ipynb", tmp_path / "02_out.ipynb", cwd=ROOT / "notebooks",
                        parameters={"data": str(tmp_path / "data"), "model_path": None},
                        progress_bar=False, kernel_name="python3")
    assert sorted(tree(layout.clean)) == ["duplicates.csv", "duplicates_review.csv", "sources.csv",
                                          "with_mask/a.jpg", "without_mask/b.jpg"]
    reasons = {Path(r["original"]).name: r["reason"] for r in read_rows(layout.reject_log)}
    assert set(reasons) == {"broken.jpg", "a_small.jpg"} and "duplicate of with_mask/a.jpg" in reasons["a_small.jpg"]
    text = json.dumps(json.loads((tmp_path / "02_out.ipynb").read_text())["cells"])
    assert "image/png" in text and "relabelling skipped" in text
