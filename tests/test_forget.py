"""`python -m scrape forget` forgets every copy: raw, clean, rejected, face crops, logs and hash caches (#20).

End to end, offline: a scrape on the local stand-in for Instagram (tests/fixtures_instagram.py), then the
cleaning step and the crop pass of the package, then a model whose card lists its training photos as
training's export writes it (``files.photo_digests``), then forget through the command line.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time

import pytest
import responses
from fixtures_instagram import FakeInstagram, make_jpeg

from scrape import hashtags, scrape
from scrape.cli import main


@pytest.fixture(autouse=True)
def no_real_sleep(monkeypatch):
    monkeypatch.setattr(time, "sleep", lambda s: None)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def every_file(root):
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_forget_removes_every_derived_copy_and_names_the_models(tmp_path, rule_model, capsys):
    from selfiemask.card import card_path
    from selfiemask.crops import crop_folder
    from selfiemask.curate.verify import verify
    from selfiemask.files import photo_digests, read_rows
    from selfiemask.history import keep_version
    from selfiemask.images import list_labelled_images
    from selfiemask.paths import Layout, default_crop_cache

    project = tmp_path / "project"
    layout = Layout.under(project / "data")
    forgotten = [make_jpeg(70, size=64), make_jpeg(71, size=64)]
    small = make_jpeg(72, size=16)  # rejected by verify: a copy in rejected/verify/
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        fake = FakeInstagram().install(rsps)
        fake.add_post("KEEPpost01", nodes=[make_jpeg(60, size=64)])
        fake.add_post("KEEPpost02", nodes=[make_jpeg(61, size=64)])
        fake.add_post("FORGETme01", nodes=forgotten)
        fake.add_post("FORGETsml1", nodes=[small])
        fake.hashtags["maskselfie"] = ["KEEPpost01", "KEEPpost02", "FORGETme01", "FORGETsml1"]
        summary = scrape(hashtags({"maskselfie": "with_mask"}), layout.raw, jitter=False, progress=False)
    assert summary.new == 5 and summary.failed == 0, str(summary)  # five images in four posts
    gone = {sha(b) for b in (*forgotten, small)}

    verify(layout, progress=False)
    assert len(list((layout.rejected / "verify").rglob("*.jpg"))) == 1
    crops = default_crop_cache(layout.clean, layout.cache)
    crop_folder(layout.clean, crops, progress=False)
    assert len(list(crops.rglob("*.jpg"))) == 4  # no faces in noise: each photo kept whole as its crop
    # A model "trained" on clean/ (with the two forgotten photos verify kept): the rule model, with the card
    # training's export writes for that data.
    model = project / "export.pkl"
    shutil.copy(rule_model, model)
    card = json.loads(card_path(rule_model).read_text())
    card["data"] = {"source_dir": str(layout.clean),
                    "photo_sha256": photo_digests(list_labelled_images(layout.clean))}
    card_path(model).write_text(json.dumps(card))
    kept = keep_version(model)  # the same model, kept in models/history/: named as well
    # A model trained before the forgotten posts came in is not named.
    older = project / "models" / "history" / "older" / "export.pkl"
    older.parent.mkdir(parents=True)
    shutil.copy(rule_model, older)
    card["data"]["photo_sha256"] = [s for s in card["data"]["photo_sha256"] if s not in gone]
    card_path(older).write_text(json.dumps(card))
    before = every_file(project / "data")
    assert sum(sha(b) in gone for b in before.values()) == 3 + 2 + 1  # raw, clean and rejected copies

    assert main(["forget", "FORGETme01", "https://www.instagram.com/p/FORGETsml1/",
                 "--dest", str(layout.raw)]) == 0
    out, err = capsys.readouterr()

    after = every_file(project / "data")
    # No copy of the forgotten images, no crop of them, no row naming them or their hash, anywhere under data/.
    assert not [p for p, b in after.items() if sha(b) in gone]
    for row in read_rows(crops / "crops.csv"):
        assert row["source_sha256"] not in gone
    text = "\n".join(b.decode("utf-8", "replace") for p, b in after.items() if p.suffix in (".csv", ".json"))
    assert not any(h in text for h in gone), "a log or cache still names a forgotten image by its hash"
    assert "FORGETme01" not in text and "FORGETsml1" not in text
    assert len(list(crops.rglob("*.jpg"))) == 2 and len(read_rows(crops / "crops.csv")) == 2
    assert len(list_labelled_images(layout.clean)) == 2
    assert len(read_rows(layout.sources)) == 2 and not read_rows(layout.reject_log)
    assert len(read_rows(layout.hash_cache)) == 2
    # What was kept is untouched.
    assert {p: b for p, b in before.items() if sha(b) not in gone and p.suffix not in (".csv", ".txt")
            and "FORGET" not in p.name} == {p: b for p, b in after.items() if p.suffix not in (".csv", ".txt")}
    # Said: every file removed, and the models trained on the photos, with the advice to retrain.
    removed = [line.split(" ", 1)[1] for line in out.splitlines() if line.startswith("removed ") and
               "row(s)" not in line]
    assert sorted(removed) == sorted(str(p) for p in before if p not in after and p.suffix != ".csv")
    named = [line for line in out.splitlines() if line.startswith("model ")]
    assert sorted(named) == sorted([f"model {model}: trained on 2 of the forgotten image(s)",
                                    f"model {kept}: trained on 2 of the forgotten image(s)"])
    assert "retrain the 2 model(s) above" in err
    assert "FORGETme01" in (layout.raw / "forgotten.txt").read_text()


def test_a_card_without_photo_hashes_may_have_seen_them(tmp_path, rule_model):
    from scrape.derived import affected_models

    model = tmp_path / "export.pkl"
    shutil.copy(rule_model, model)
    shutil.copy(rule_model.with_suffix(".json"), model.with_suffix(".json"))  # "data" has no photo_sha256
    ((path, why),) = affected_models([tmp_path], {"0" * 64})
    assert path == model and "may have been trained on them" in why
    assert affected_models([tmp_path / "elsewhere"], {"0" * 64}) == []
