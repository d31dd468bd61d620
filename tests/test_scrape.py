"""The Instagram scraper, end to end on a local stand-in for Instagram (tests/fixtures_instagram.py).

instaloader's real code runs; only HTTP is answered locally, by ``responses``, with JSON shaped like
Instagram's and JPEGs generated here. Nothing reaches the network (an unexpected request is refused
by ``responses`` and shows up as a connection error), and nothing really sleeps.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import time
from pathlib import Path

import pytest
import responses
from conftest import ROOT
from fixtures_instagram import FakeInstagram, make_jpeg, name_not_resolved
from PIL import Image

from scrape import (
    SessionFileError,
    Source,
    forget,
    hashtags,
    make_loader,
    post_list,
    read_manifest,
    scrape,
)
from scrape.cli import main
from scrape.hashing import owner_key
from scrape.session import load_session
from scrape.sources import SourceError, read_post_list, shortcode_from


@pytest.fixture
def fake():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield FakeInstagram().install(rsps)


@pytest.fixture(autouse=True)
def no_real_sleep(monkeypatch):
    """Whatever would sleep (instaloader's pauses, the default back-off) only records the wait."""
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)
    return slept


def run(dest: Path, sources, **kw):
    kw.setdefault("jitter", False)
    kw.setdefault("progress", False)
    return scrape(sources, dest, **kw)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def files_on_disk(dest: Path) -> dict[str, bytes]:
    """Every file under dest except the manifest and the forgotten list, by relative path."""
    return {p.relative_to(dest).as_posix(): p.read_bytes() for p in dest.rglob("*")
            if p.is_file() and p.name not in ("manifest.csv", "forgotten.txt")}


def consistent(dest: Path):
    """Files and manifest agree one to one, hashes match the bytes, nothing partial or staged is left."""
    rows = read_manifest(dest)
    on_disk = files_on_disk(dest)
    assert sorted(on_disk) == sorted(r.file for r in rows), "files and manifest rows differ"
    for r in rows:
        assert sha(on_disk[r.file]) == r.sha256
        with Image.open(dest / r.file) as im:
            im.verify()
    assert len({r.sha256 for r in rows}) == len(rows), "the same image stored twice"
    assert not (dest / ".partial").exists()
    assert not list(dest.rglob("*.temp"))
    return rows


def write_list(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


# -- a normal run ------------------------------------------------------------------------------------------

def test_normal_run_hashtag_profile_and_post_list(fake, tmp_path):
    a, b, c = make_jpeg(1), make_jpeg(2), make_jpeg(3)
    fake.add_post("HASHimg01", owner="bob", nodes=[a], caption="#maskselfie secret caption")
    fake.add_post("SIDEcar01", owner="bob", nodes=[b, None, c])  # carousel: picture, video, picture
    fake.add_post("VIDEOonly1", owner="bob", nodes=[None])
    fake.add_post("REPOSTof1", owner="carl", nodes=[a])  # the same picture again
    fake.hashtags["maskselfie"] = ["HASHimg01", "SIDEcar01", "VIDEOonly1", "REPOSTof1"]
    profile_imgs = [make_jpeg(10 + i) for i in range(3)]
    for i, img in enumerate(profile_imgs):
        fake.add_post(f"PROFpost{i}", owner="erin", nodes=[img])
    fake.profiles["erin"] = [f"PROFpost{i}" for i in range(3)]  # two pages: the second by api/graphql
    listed = fake.add_post("LISTpost01", owner="fred", nodes=[make_jpeg(20)])
    csv = write_list(tmp_path / "picked.csv", ["post,label", "https://www.instagram.com/p/LISTpost01/,with_mask"])
    dest = tmp_path / "raw"

    summary = run(dest, [Source("hashtag", "#MaskSelfie", "with_mask", 10),
                         Source("profile", "@erin", "without_mask", 10), post_list(csv)])

    assert summary.stopped is None and summary.failed == 0, str(summary)
    assert summary.new == 7  # 1 + 2 (carousel pictures) + 3 profile + 1 listed
    assert summary.skipped == 2  # the video post and the repost's identical picture
    on_disk = files_on_disk(dest)
    assert on_disk == {
        "with_mask/HASHimg01_1.jpg": a, "with_mask/SIDEcar01_1.jpg": b, "with_mask/SIDEcar01_3.jpg": c,
        "without_mask/PROFpost0_1.jpg": profile_imgs[0], "without_mask/PROFpost1_1.jpg": profile_imgs[1],
        "without_mask/PROFpost2_1.jpg": profile_imgs[2], "with_mask/LISTpost01_1.jpg": listed.nodes[0]}
    rows = consistent(dest)
    assert {r.source for r in rows} == {"hashtag:maskselfie", f"profile:{owner_key('erin')}", "posts:picked.csv"}
    row = next(r for r in rows if r.shortcode == "HASHimg01")
    assert row.label == "with_mask" and row.posted_at == "2023-11-14T22:13:20+00:00" and row.downloaded_at
    # Private by default: no usernames (not even the profile's), no captions.
    text = (dest / "manifest.csv").read_text()
    assert not any(name in text for name in ("bob", "carl", "erin", "fred", "secret", "maskselfie secret"))
    assert all(r.owner == "" for r in rows)
    # Pictures only: no video or video thumbnail was requested, the endpoints were the real ones.
    assert not any(".mp4" in name or name.startswith("VIDEOonly1") for name in fake.requested("image"))
    assert fake.requested("profile_next") == ["erin"] and "LISTpost01" in fake.requested("post")
    assert fake.requested("hashtag_info") == ["maskselfie"]


def test_limit_counts_earlier_runs_and_a_rerun_fetches_nothing(fake, tmp_path):
    for i in range(6):
        fake.add_post(f"TAGpost{i:02d}")
    fake.hashtags["selfie"] = [f"TAGpost{i:02d}" for i in range(6)]
    dest = tmp_path / "raw"

    first = run(dest, hashtags({"selfie": "without_mask"}, limit=3))
    assert first.new == 3 and len(consistent(dest)) == 3
    calls = len(fake.calls)
    again = run(dest, hashtags({"selfie": "without_mask"}, limit=3))
    assert again.new == 0 and len(fake.calls) == calls, "a complete source costs no request"
    more = run(dest, hashtags({"selfie": "without_mask"}, limit=5))
    assert more.new == 2 and more.skipped == 3
    assert len(consistent(dest)) == 5
    assert [n for n in fake.requested("image")].count("TAGpost00_1.jpg") == 1


def test_limit_is_strict_within_a_carousel(fake, tmp_path):
    fake.add_post("CAROUSEL01", nodes=[make_jpeg(30), make_jpeg(31), make_jpeg(32)])
    fake.add_post("SINGLEpost")
    fake.hashtags["maskselfie"] = ["CAROUSEL01", "SINGLEpost"]
    summary = run(tmp_path / "raw", hashtags({"maskselfie": "with_mask"}, limit=2))
    assert summary.new == 2
    assert sorted(files_on_disk(tmp_path / "raw")) == ["with_mask/CAROUSEL01_1.jpg", "with_mask/CAROUSEL01_2.jpg"]
    assert "SINGLEpost" not in [n.split("_")[0] for n in fake.requested("image")]


# -- resume after an interruption ---------------------------------------------------------------------------

def test_interrupted_download_leaves_no_partial_file_and_resumes(fake, tmp_path):
    images = [make_jpeg(i, size=256, quality=95) for i in range(4)]  # > 64 KiB: the cut lands mid-file
    for i, img in enumerate(images):
        fake.add_post(f"BIGpost{i:02d}", nodes=[img])
    fake.hashtags["maskselfie"] = [f"BIGpost{i:02d}" for i in range(4)]
    dest = tmp_path / "raw"
    seen = {}

    def interrupt():
        # What a hard kill right now would leave: the label folder holds only whole images,
        # the half-written one is in the staging folder.
        seen["label files"] = {p.name: p.read_bytes() for p in (dest / "with_mask").iterdir()}
        seen["partial"] = [p.stat().st_size for p in dest.rglob("*.temp")]
        return KeyboardInterrupt()

    fake.cut = ("BIGpost02_1.jpg", 70_000, interrupt)
    with pytest.raises(KeyboardInterrupt) as info:
        run(dest, hashtags({"maskselfie": "with_mask"}))
    assert info.value.summary.new == 2
    assert seen["partial"] and 0 < seen["partial"][0] < len(images[2]), "the interruption was mid-download"
    assert seen["label files"] == {"BIGpost00_1.jpg": images[0], "BIGpost01_1.jpg": images[1]}
    assert len(consistent(dest)) == 2  # and the staged partial is gone

    summary = run(dest, hashtags({"maskselfie": "with_mask"}))
    assert summary.new == 2 and summary.skipped == 2
    rows = consistent(dest)
    assert sorted(r.shortcode for r in rows) == [f"BIGpost{i:02d}" for i in range(4)]
    assert files_on_disk(dest) == {f"with_mask/BIGpost{i:02d}_1.jpg": img for i, img in enumerate(images)}
    assert fake.requested("image").count("BIGpost00_1.jpg") == 1, "what was there is not fetched again"


# -- rate limits and connection errors ----------------------------------------------------------------------

def test_429_then_success_backs_off_through_instaloader(fake, tmp_path):
    fake.add_post("RATEpost01")
    fake.add_post("RESETpost1")
    fake.fault("post", 429, times=1, match="RATEpost01")
    fake.fault("image", "reset", times=1, match="RESETpost1_1.jpg")  # a dropped connection, then fine
    csv = write_list(tmp_path / "l.csv", ["post,label", "RATEpost01,with_mask", "RESETpost1,with_mask"])
    waits: list[float] = []
    start = time.monotonic()

    summary = run(tmp_path / "raw", [post_list(csv)], sleep=waits.append)

    assert summary.new == 2 and summary.failed == 0 and summary.stopped is None, str(summary)
    assert fake.requested("post").count("RATEpost01") == 2
    assert fake.requested("image").count("RESETpost1_1.jpg") == 2
    # instaloader's RateController asked for its usual back-off (about 11 minutes); nobody waited: the run took
    # less than the back-off it asked for (a bound any machine meets, unlike a few seconds on a fast one).
    assert waits and max(waits) > 300
    assert time.monotonic() - start < max(waits) / 2
    assert len(consistent(tmp_path / "raw")) == 2


def test_429_that_persists_stops_cleanly_and_resumes(fake, tmp_path):
    for code in ("FIRSTpost1", "BLOCKpost1", "THIRDpost1"):
        fake.add_post(code)
    fake.fault("post", 429, times=None, match="BLOCKpost1")
    csv = write_list(tmp_path / "l.csv", ["post,label", "FIRSTpost1,with_mask", "BLOCKpost1,with_mask",
                                          "THIRDpost1,without_mask"])
    dest = tmp_path / "raw"
    waits: list[float] = []

    summary = run(dest, [post_list(csv)], sleep=waits.append, max_attempts=3)

    assert summary.stopped and "429" in summary.stopped and "resume" in summary.stopped
    assert summary.new == 1
    assert fake.requested("post").count("BLOCKpost1") == 3 and len(waits) >= 2  # tried, backed off, gave up
    assert "THIRDpost1" not in fake.requested("post"), "the run stopped instead of hammering on"
    assert [r.shortcode for r in consistent(dest)] == ["FIRSTpost1"]

    fake.faults.clear()
    resumed = run(dest, [post_list(csv)])
    assert resumed.stopped is None and resumed.new == 2 and resumed.skipped == 1
    assert sorted(r.shortcode for r in consistent(dest)) == ["BLOCKpost1", "FIRSTpost1", "THIRDpost1"]
    assert fake.requested("post").count("FIRSTpost1") == 1


def test_a_backoff_longer_than_max_wait_stops_without_waiting(fake, tmp_path):
    fake.add_post("RATEpost01")
    fake.fault("post", 429, times=1)
    csv = write_list(tmp_path / "l.csv", ["post,label", "RATEpost01,with_mask"])
    waits: list[float] = []
    summary = run(tmp_path / "raw", [post_list(csv)], sleep=waits.append, max_wait=60)
    assert summary.stopped and "max_wait" in summary.stopped and "resume" in summary.stopped
    assert waits == [] and summary.new == 0


def test_network_down_stops_with_a_message(fake, tmp_path, capfd):
    fake.add_post("ANYpost001")
    fake.fault("post", "reset", times=None)
    csv = write_list(tmp_path / "l.csv", ["post,label", "ANYpost001,with_mask"])
    summary = run(tmp_path / "raw", [post_list(csv)])
    assert summary.stopped and "connection" in summary.stopped and "resume" in summary.stopped
    assert read_manifest(tmp_path / "raw") == []
    # A connection that drops after connecting is retried (it may come back), and is not "offline".
    assert len(fake.requested("post")) == 3 and summary.unreachable is None and not summary.offline
    err = capfd.readouterr().err
    assert "[retrying]" in err and "^C" not in err  # ^C stops our run, it skips nothing: not offered


# -- Instagram unreachable: one line, at once ------------------------------------------------------------------

@pytest.fixture
def no_dns():
    """Every request to any host fails as it does without a network; ``calls`` counts the attempts."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        for method in (responses.GET, responses.POST):
            rsps.add_callback(method, re.compile(r"https?://.*"), callback=lambda req: name_not_resolved(req.url))
        yield rsps


OFFLINE_LINE = re.compile(r"^Instagram is unreachable \(its name does not resolve: no internet or no DNS here\)\. "
                          r"Put your own photos in (?P<dest>\S+)/<label>/ .*go on with 02_clean.*$")


def test_unreachable_stops_at_the_first_attempt_with_one_line(no_dns, tmp_path, capfd):
    dest = tmp_path / "raw"
    code = main(["run", "--dest", str(dest)])  # the default hashtags, progress bar on
    out, err = capfd.readouterr()
    assert code == 3 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    m = OFFLINE_LINE.match(lines[0])
    assert m and m["dest"] == dest.as_posix(), lines[0]
    assert len(no_dns.calls) == 1, "no retries, and the second hashtag is not tried"
    assert read_manifest(dest) == [] and not (dest / ".partial").exists()


def test_unreachable_in_the_middle_of_a_run_keeps_what_came_in(fake, tmp_path):
    """Once something came in, a network that goes away is a stopped run to resume, not "use your own photos"."""
    fake.add_post("GOTpost001")
    fake.add_post("NOTpost002")
    fake.fault("post", "dns", times=None, match="NOTpost002")
    csv = write_list(tmp_path / "l.csv", ["post,label", "GOTpost001,with_mask", "NOTpost002,with_mask"])
    summary = run(tmp_path / "raw", [post_list(csv)])
    assert summary.new == 1 and summary.unreachable and not summary.offline
    assert "Instagram is unreachable" in summary.stopped and "resume" in summary.stopped
    assert str(summary).startswith("new 1, skipped 0, failed 0")


def test_notebook_offline_says_one_line_and_nothing_else(no_dns, tmp_path, capfd):
    dest = tmp_path / "raw"
    ns = run_notebook_cells(ROOT / "notebooks" / "01_scrape.ipynb",
                            {"dest": str(dest), "polite_pauses": False}, cwd=ROOT / "notebooks")
    out, err = capfd.readouterr()
    assert ns["summary"].offline and ns["sheets"] == {}
    lines = out.strip().splitlines()
    assert len(lines) == 1 and OFFLINE_LINE.match(lines[0]), out
    assert err == "", err  # no retry lines, no ^C, no traceback, no empty progress bar
    assert len(no_dns.calls) == 1


# -- login ------------------------------------------------------------------------------------------------

def test_login_required_says_what_to_do_and_other_sources_go_on(fake, tmp_path):
    fake.add_post("OPENpost01")
    fake.hashtags["maskselfie"] = ["OPENpost01"]
    fake.hashtags["selfie"] = []
    fake.fault("hashtag_info", "login", times=None, match="selfie")  # redirected to the login page
    summary = run(tmp_path / "raw", hashtags())

    assert summary.stopped is None and summary.new == 1 and summary.failed == 1
    failed = next(s for s in summary.sources if s.source.startswith("#selfie"))
    assert "instaloader --login" in failed.error and "--session-file" in failed.error
    assert "instaloader --login" in str(summary)


def test_session_file_must_be_private(fake, tmp_path):
    cookies = {"sessionid": "s3cr3t", "csrftoken": "tok", "ds_user_id": "7", "mid": "m"}
    session = tmp_path / "session-alice"
    session.write_bytes(pickle.dumps(cookies))
    session.chmod(0o644)
    with pytest.raises(SessionFileError, match="chmod 600"):
        run(tmp_path / "raw", [], session_file=session)
    assert fake.calls == []
    assert main(["run", "--dest", str(tmp_path / "raw"), "--session-file", str(session), "--no-progress"]) == 2

    session.chmod(0o600)
    loader = make_loader(jitter=False)
    assert load_session(loader, session) == "alice"  # the user from the file name, as instaloader names it
    assert loader.context.is_logged_in and loader.context.username == "alice"
    with pytest.raises(SessionFileError, match="instaloader --login"):
        load_session(make_loader(jitter=False), tmp_path / "missing")


# -- deleted posts and bad lists ------------------------------------------------------------------------------

def test_deleted_posts_fail_alone(fake, tmp_path):
    fake.add_post("GONEpost01")
    fake.deleted.add("GONEpost01")  # its metadata query answers 404
    fake.add_post("GOODpost01")
    fake.add_post("EXPIREDimg")  # listed by the hashtag, but its image answers 404
    fake.add_post("GOODpost02")
    fake.hashtags["maskselfie"] = ["EXPIREDimg", "GOODpost02"]
    fake.fault("image", 404, times=None, match="EXPIREDimg_1.jpg")
    for code in ("PROFok0001", "PROFgone01", "PROFok0002"):  # a profile lists a post deleted meanwhile
        fake.add_post(code, owner="pat")
    fake.deleted.add("PROFgone01")
    fake.profiles["pat"] = ["PROFok0001", "PROFgone01", "PROFok0002"]
    csv = write_list(tmp_path / "l.csv", ["post,label", "GONEpost01,with_mask", "GOODpost01,with_mask"])

    summary = run(tmp_path / "raw", [post_list(csv), Source("profile", "pat", "without_mask")]
                  + hashtags({"maskselfie": "with_mask"}))

    assert summary.stopped is None and summary.new == 4 and summary.failed == 3, str(summary)
    assert sum("not found" in f for f in summary.failures) == 3
    assert sorted(r.shortcode for r in consistent(tmp_path / "raw")) == [
        "GOODpost01", "GOODpost02", "PROFok0001", "PROFok0002"]


def test_post_list_with_bad_lines(fake, tmp_path):
    fake.add_post("Cxyz12345AB")
    fake.add_post("Dshort0001")
    fake.add_post("ReelCode99")
    csv = write_list(tmp_path / "list.csv", [
        "url,label",
        "https://www.instagram.com/p/Cxyz12345AB/?igsh=abc,with_mask",
        "Dshort0001,without_mask",
        "https://example.com/photo.jpg,with_mask",       # line 4: not an Instagram post
        "https://www.instagram.com/p/ReelCode99/,../../evil",  # line 5: a label that is a path
        "# a comment",
        "",
        "https://www.instagram.com/someone/reel/ReelCode99/,",  # line 8: no label, none by default
    ])
    summary = run(tmp_path / "raw", [post_list(csv)])

    assert summary.new == 2 and summary.failed == 3
    assert [f.split(": ")[1] for f in summary.failures] == ["line 4", "line 5", "line 8"]
    assert sorted(files_on_disk(tmp_path / "raw")) == ["with_mask/Cxyz12345AB_1.jpg", "without_mask/Dshort0001_1.jpg"]
    assert not (tmp_path / "evil").exists()
    # With a default label, line 8 is usable.
    refs, bad = read_post_list(csv, default_label="with_mask")
    assert [r.shortcode for r in refs] == ["Cxyz12345AB", "Dshort0001", "ReelCode99"] and len(bad) == 2


def test_reading_shortcodes():
    assert shortcode_from("https://www.instagram.com/p/CODE_-123/") == "CODE_-123"
    assert shortcode_from("instagram.com/reel/CODE12345?utm=x") == "CODE12345"
    assert shortcode_from(" CODE12345 ") == "CODE12345"
    for bad in ("https://www.instagram.com/someone/", "", "a b c d e", "https://evil.com/p/CODE12345/"):
        with pytest.raises(SourceError):
            shortcode_from(bad)
    with pytest.raises(SourceError):
        Source("hashtag", "selfie", "../x")


# -- forget -------------------------------------------------------------------------------------------------

def test_forget_removes_images_and_rows_and_they_stay_away(fake, tmp_path):
    fake.add_post("KEEPpost01", owner="kim")
    fake.add_post("DROPside01", owner="kim", nodes=[make_jpeg(50), make_jpeg(51)])
    fake.add_post("OWNERpost1", owner="olga")
    fake.add_post("OWNERpost2", owner="olga")
    fake.hashtags["maskselfie"] = ["KEEPpost01", "DROPside01", "OWNERpost1", "OWNERpost2"]
    dest = tmp_path / "raw"
    run(dest, hashtags({"maskselfie": "with_mask"}), keep_owner=True)
    rows = consistent(dest)
    assert len(rows) == 5 and {r.owner for r in rows} == {"kim", "olga"}  # asked for: owners stored

    assert main(["forget", "https://www.instagram.com/p/DROPside01/", "--dest", str(dest)]) == 0
    removed = forget(dest, owners=["@Olga"])
    assert sorted(r.shortcode for r in removed) == ["OWNERpost1", "OWNERpost2"]
    assert [r.shortcode for r in consistent(dest)] == ["KEEPpost01"]
    assert sorted(files_on_disk(dest)) == ["with_mask/KEEPpost01_1.jpg"]

    again = run(dest, hashtags({"maskselfie": "with_mask"}), keep_owner=True)
    assert again.new == 0 and again.skipped == 4
    assert [r.shortcode for r in consistent(dest)] == ["KEEPpost01"]
    assert "olga" not in (dest / "forgotten.txt").read_text()  # the owner is remembered as a hash only


def test_forget_a_profile_source_without_stored_owners(fake, tmp_path):
    fake.add_post("PROFpost01", owner="pia")
    fake.profiles["pia"] = ["PROFpost01"]
    dest = tmp_path / "raw"
    run(dest, [Source("profile", "pia", "without_mask")])
    assert len(consistent(dest)) == 1
    assert [r.shortcode for r in forget(dest, owners=["pia"])] == ["PROFpost01"]
    assert consistent(dest) == []


# -- command line ---------------------------------------------------------------------------------------------

def test_cli_run_prints_a_summary(fake, tmp_path, capsys, no_real_sleep):
    for i in range(3):
        fake.add_post(f"CLIpost{i:02d}")
    fake.hashtags["maskselfie"] = [f"CLIpost{i:02d}" for i in range(3)]
    dest = tmp_path / "raw"
    code = main(["hashtag", "maskselfie", "--label", "with_mask", "--dest", str(dest), "--count", "2"])
    assert code == 0
    err = capsys.readouterr().err
    assert "new 2, skipped 0, failed 0" in err and "#maskselfie" in err  # the summary on stderr
    assert len(consistent(dest)) == 2
    assert no_real_sleep, "the command line keeps instaloader's pauses between requests"
    assert main(["posts", str(tmp_path / "missing.csv"), "--dest", str(dest), "--no-progress"]) == 1


# -- the notebook -----------------------------------------------------------------------------------------------

def run_notebook_cells(path: Path, params: dict, cwd: Path) -> dict:
    """Execute the notebook's code cells here, in order, with ``params`` set after its parameters cell.

    papermill would run a separate kernel, out of reach of ``responses``; this runs the same code in-process.
    """
    nb = json.loads(path.read_text())
    ns: dict = {"__name__": "__main__"}
    old = os.getcwd()
    os.chdir(cwd)
    try:
        for i, cell in enumerate(c for c in nb["cells"] if c["cell_type"] == "code"):
            exec(compile("".join(cell["source"]), f"{path.name}:cell{i}", "exec"), ns)
            if "parameters" in cell.get("metadata", {}).get("tags", []):
                ns.update(params)
    finally:
        os.chdir(old)
    return ns


@pytest.mark.parametrize("world", ["posts", "nothing"])
def test_notebook_runs_and_shows_what_came_in(fake, tmp_path, world, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    monkeypatch.setattr(plt, "show", lambda *a, **k: None)
    if world == "posts":
        for i in range(3):
            fake.add_post(f"NBmask{i:04d}", nodes=[make_jpeg(60 + i)])
            fake.add_post(f"NBnone{i:04d}", nodes=[make_jpeg(70 + i)])
        fake.hashtags["maskselfie"] = [f"NBmask{i:04d}" for i in range(3)]
        fake.hashtags["selfie"] = [f"NBnone{i:04d}" for i in range(3)]
    else:  # Instagram wants a login for both hashtags: nothing comes in, and the notebook says so
        fake.fault("hashtag_info", "login", times=None)
    dest = tmp_path / "raw"
    ns = run_notebook_cells(ROOT / "notebooks" / "01_scrape.ipynb",
                            {"dest": str(dest), "count": 2, "polite_pauses": False}, cwd=ROOT / "notebooks")
    if world == "posts":
        assert ns["summary"].new == 4 and len(consistent(dest)) == 4
        assert sorted(ns["sheets"]) == ["with_mask", "without_mask"]
        assert ns["sheets"]["with_mask"].size == (2 * 128, 128)
        assert plt.get_fignums(), "a figure was drawn"
    else:
        assert ns["summary"].new == 0 and ns["summary"].failed == 2 and ns["sheets"] == {}
    plt.close("all")


def test_notebook_offline_in_a_real_kernel(tmp_path, monkeypatch):
    """The notebook as a learner runs it (papermill, its own kernel), where Instagram cannot be connected to:
    every request goes to a proxy on a local port that refuses connections, so the real requests, urllib3 and
    socket code fail as they do offline, and nothing leaves this machine."""
    import socket as sockets

    import papermill as pm

    with sockets.socket() as closed:  # bound and never listening: connecting to it is refused
        closed.bind(("127.0.0.1", 0))
        proxy = f"http://127.0.0.1:{closed.getsockname()[1]}"
        for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.setenv(name, proxy)
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        out = tmp_path / "01_out.ipynb"
        pm.execute_notebook(ROOT / "notebooks" / "01_scrape.ipynb", out, cwd=ROOT / "notebooks",
                            parameters={"dest": str(tmp_path / "raw"), "polite_pauses": False},
                            progress_bar=False, kernel_name="python3")
    outputs = [o for c in json.loads(out.read_text())["cells"] for o in c.get("outputs", [])]
    assert all(o["output_type"] == "stream" for o in outputs), "no error, no figure"
    text = "".join("".join(o["text"]) for o in outputs if o["name"] == "stdout")
    assert [o["name"] for o in outputs] == ["stdout"], outputs  # nothing on stderr: no retry lines, no bar
    assert len(text.strip().splitlines()) == 1 and text.startswith("Instagram is unreachable ("), text
    assert f"{tmp_path / 'raw'}/<label>/" in text and "02_clean" in text and "^C" not in text
