"""The three upload limits are one figure each: the app's check, the page's script, and the server's setting."""

from __future__ import annotations

import json
import re

from conftest import ROOT

from selfiemask import app, upload_guard


def test_the_server_setting_is_the_one_in_upload_guard_and_above_the_upload_limit():
    voila = json.loads((ROOT / "voila.json").read_text())
    server = voila["Voila"]["tornado_settings"]["websocket_max_message_size"]
    assert server == upload_guard.SERVER_MESSAGE_BYTES, "voila.json and upload_guard.SERVER_MESSAGE_BYTES differ"
    assert server > upload_guard.MAX_UPLOAD_BYTES, "a file just under the upload limit would drop the connection"


def test_the_page_script_and_the_app_use_the_same_limit():
    script = upload_guard.upload_guard().data  # what app.ipynb displays
    assert re.search(r"var LIMIT = (\d+), LIMIT_MB = (\d+);", script).groups() == (
        str(upload_guard.MAX_UPLOAD_BYTES), str(upload_guard.MAX_UPLOAD_BYTES // 2**20))
    assert app.MAX_UPLOAD_BYTES is upload_guard.MAX_UPLOAD_BYTES
    assert "upload_guard()" in (ROOT / "app.ipynb").read_text(), "app.ipynb displays the guard with its default"
