"""Refusing an oversized upload in the browser, before it is sent.

A file the FileUpload widget sends travels in one websocket message; one above
the server's limit (``websocket_max_message_size`` in ``voila.json``) makes
tornado drop the connection: "Connection lost, reconnecting", no message, and no
verdict for any later upload until the page is reloaded. Raising the limit only
moves the cliff (and a 300 MB photo would then sit in the server and the kernel),
so the page checks each chosen file's size first: a capturing ``change``
listener, attached to the widget's file input when it opens, stops the widget
from reading a selection with a file over the app's limit, and shows "too large (N MB; the limit is 40 MB)" in the app's
``upload-guard`` element. Smaller files go through untouched; the kernel checks
the size again (``app.py``, with :data:`MAX_UPLOAD_BYTES`).

The limits live here, at layer 0, so that the app, the page's script and the
server's setting are one figure each: ``tests/test_upload_limits.py`` checks that
``voila.json`` says :data:`SERVER_MESSAGE_BYTES`.
"""

from __future__ import annotations

__all__ = ["GUARD_JS", "MAX_UPLOAD_BYTES", "SERVER_MESSAGE_BYTES", "guard_js", "upload_guard"]

#: Uploads above this size are refused: in the browser before they are sent, and again by the kernel.
MAX_UPLOAD_BYTES = 40 * 2**20
#: tornado's ``websocket_max_message_size`` in ``voila.json``: above the upload limit, so that a file just under
#: it and the widget's message around it still arrive, and the app (not a dropped connection) says "too large".
SERVER_MESSAGE_BYTES = 50 * 2**20

#: The JavaScript, with the limit in bytes filled in; idempotent (a second copy does nothing).
GUARD_JS = """
(function () {
  if (window.__selfiemaskUploadGuard) { return; }
  window.__selfiemaskUploadGuard = true;
  var LIMIT = %(limit)d, LIMIT_MB = %(limit_mb)d;
  function esc(s) {
    return String(s).replace(/[&<>"']/g, function (c) {
      return {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c];
    });
  }
  function target() {
    var g = document.querySelector(".upload-guard");
    return g ? (g.querySelector(".widget-html-content") || g) : null;
  }
  function guard(ev) {
    var input = ev.target;
    var big = Array.prototype.filter.call(input.files || [], function (f) { return f.size > LIMIT; });
    var out = target();
    if (!big.length) { if (out) { out.innerHTML = ""; } return; }
    ev.stopImmediatePropagation();
    input.value = "";
    var text = big.map(function (f) {
      return "Sorry, " + esc(f.name) + " is too large (" + Math.round(f.size / 1048576) + " MB; the limit is " +
        LIMIT_MB + " MB). Please upload a smaller photo.";
    }).join("<br>");
    if (out) {
      out.innerHTML = "<div class='upload-error' style='color:#c62828;margin:4px 0'>" + text + "</div>";
    } else {
      window.alert(text.replace(/<br>/g, "\\n"));
    }
  }
  // The widget's file input is never in the document, so a listener on the page cannot see it: the
  // guard is attached to each file input when it is opened (its click()), as a capturing listener,
  // which runs before the widget's own and can stop it.
  var click = HTMLInputElement.prototype.click;
  HTMLInputElement.prototype.click = function () {
    if (this.type === "file" && !this.__selfiemaskGuarded) {
      this.__selfiemaskGuarded = true;
      this.addEventListener("change", guard, true);
    }
    return click.apply(this, arguments);
  };
})();
"""


def guard_js(limit_bytes: int) -> str:
    """The guard for uploads over ``limit_bytes``."""
    return GUARD_JS % {"limit": limit_bytes, "limit_mb": limit_bytes // 2**20}


def upload_guard(limit_bytes: int | None = None):
    """An ``IPython.display.Javascript`` to display once in the page (``app.ipynb`` does)."""
    from IPython.display import Javascript

    return Javascript(guard_js(limit_bytes or MAX_UPLOAD_BYTES))
