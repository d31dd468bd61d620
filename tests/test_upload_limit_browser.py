"""An upload over the limit, in a real browser: a message, and the page keeps working (#15 item 4)."""

from __future__ import annotations

import pytest
from conftest import jpeg_bytes
from test_browser import CHROMIUM, FLAGS, served_app  # noqa: F401 - the served app fixture

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (apt-get install chromium)")]


def big_file(path, mb: int):
    """A file of ``mb`` MB that starts like a JPEG (sparse: no disk or memory spent on it here)."""
    with open(path, "wb") as f:
        f.write(b"\xff\xd8\xff\xe0")
        f.truncate(mb * 2**20)
    return path


def test_oversized_uploads_get_a_message_and_the_page_keeps_working(served_app, astronaut, tmp_path):  # noqa: F811
    from playwright.sync_api import sync_playwright

    url, *_ = served_app
    photo = tmp_path / "selfie.jpg"
    photo.write_bytes(jpeg_bytes(astronaut))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        page = browser.new_page()
        page.goto(url)
        page.wait_for_selector("button.widget-upload", timeout=180_000)
        for mb in (60, 300):
            with page.expect_file_chooser() as fc:
                page.click("button.widget-upload")
            fc.value.set_files(str(big_file(tmp_path / f"huge_{mb}.jpg", mb)))
            msg = page.wait_for_selector(".upload-error", timeout=30_000)
            assert f"too large ({mb} MB; the limit is 40 MB)" in msg.inner_text()
        with page.expect_file_chooser() as fc:
            page.click("button.widget-upload")
        fc.value.set_files(str(photo))
        page.wait_for_selector(".verdict", timeout=120_000)  # the connection survived: a verdict comes back
        assert page.query_selector(".upload-error") is None  # and the old message is gone
        assert "Connection lost" not in page.content()
        browser.close()
