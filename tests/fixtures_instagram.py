"""A local stand-in for Instagram, for the scraper tests: real instaloader code, HTTP answered by ``responses``.

``responses`` patches requests' HTTP adapter, so every Session that instaloader creates (it makes
several: anonymous copies, GraphQL sessions, download sessions) is answered here and nothing goes
to the network. The answers have the shapes instaloader 4.16 reads:

* ``GET  www.instagram.com/``: the start page, with the ``LSD`` token (and a csrftoken cookie) that
  instaloader takes before querying the web app's ``api/graphql`` anonymously;
* ``GET  www.instagram.com/<user>/``: a profile page whose ``<script type="application/json">`` embeds
  ``xig_user_by_username`` with the first posts (``polaris_ordered_timeline_connection``);
* ``POST www.instagram.com/api/graphql`` with ``doc_id`` 27128499623469141: a post by shortcode
  (``xdt_api__v1__media__shortcode__web_info``), and 28904005159232689: a profile's next posts;
* ``GET  i.instagram.com/api/v1/tags/web_info/``: a hashtag (``Hashtag.from_name``);
* ``GET  www.instagram.com/graphql/query/`` with ``query_hash`` 9b498c08113f1e09617a1703c22b2f32: a
  hashtag's recent posts (``Hashtag.get_posts_resumable``, as instaloader's own ``download_hashtag``);
* ``GET  scontent.cdninstagram.com/...``: the images, small JPEGs generated with PIL.

Faults (429, login redirect, 404, connection reset, a name that does not resolve, a download cut off
half-way) are queued per route.
"""

from __future__ import annotations

import io
import json
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlparse

import numpy as np
import requests
import responses
import urllib3
from PIL import Image

POST_DOC_ID = "27128499623469141"
PROFILE_NEXT_DOC_ID = "28904005159232689"
HASHTAG_QUERY_HASH = "9b498c08113f1e09617a1703c22b2f32"
CDN = "https://scontent.cdninstagram.com/v/t51.2885-15/"
LOGIN_URL = "https://www.instagram.com/accounts/login/?next=%2F"


def name_not_resolved(url: str) -> requests.exceptions.ConnectionError:
    """What requests raises when a host's name does not resolve (no internet, no DNS), built without asking DNS:
    the same chain as the real one, ConnectionError(MaxRetryError(reason=NameResolutionError(gaierror)))."""
    host = urlparse(url).hostname or "www.instagram.com"
    reason = urllib3.exceptions.NameResolutionError(
        host, urllib3.connection.HTTPSConnection(host, 443), socket.gaierror(-2, "Name or service not known"))
    return requests.exceptions.ConnectionError(urllib3.exceptions.MaxRetryError(None, url, reason))


def make_jpeg(seed: int, size: int = 48, quality: int = 90) -> bytes:
    """A small, distinct JPEG: noise from ``seed`` (same seed, same bytes)."""
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


@dataclass
class FakePost:
    """A post: ``nodes`` holds one JPEG per picture and ``None`` per video (one node: not a sidecar)."""

    shortcode: str
    owner: str
    nodes: list[bytes | None]
    taken_at: int = 1_700_000_000
    caption: str = "#selfie"
    pk: int = 0

    @property
    def typename(self) -> str:
        if len(self.nodes) > 1:
            return "GraphSidecar"
        return "GraphVideo" if self.nodes[0] is None else "GraphImage"

    def image_url(self, position: int) -> str:
        return f"{CDN}{self.shortcode}_{position}.jpg?stp=dst-jpg_e35&_nc_ht=scontent.cdninstagram.com&oh=00_x"

    def video_url(self, position: int) -> str:
        return f"{CDN}{self.shortcode}_{position}.mp4?efg=x&_nc_ht=scontent.cdninstagram.com"


@dataclass
class Fault:
    route: str
    status: int | str  # an HTTP status, "login" (redirect to the login page), "reset" (connection error)
    times: int | None  # None: for ever
    match: str | None = None  # a shortcode, tag or user the fault is limited to


@dataclass
class FakeInstagram:
    posts: dict[str, FakePost] = field(default_factory=dict)
    hashtags: dict[str, list[str]] = field(default_factory=dict)
    profiles: dict[str, list[str]] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)
    page_size: int = 2
    faults: list[Fault] = field(default_factory=list)
    calls: list[tuple[str, str]] = field(default_factory=list)
    # (url part, after how many bytes, what to call then): a download cut off half-way.
    cut: tuple[str, int, Callable[[], BaseException]] | None = None

    # -- building the world ----------------------------------------------------------------------------
    def add_post(self, shortcode: str, owner: str = "alice", nodes: list[bytes | None] | None = None,
                 seed: int | None = None, **kw) -> FakePost:
        seed = seed if seed is not None else len(self.posts) * 10 + 1
        post = FakePost(shortcode, owner, nodes if nodes is not None else [make_jpeg(seed)],
                        pk=3_000_000_000_000_000_000 + len(self.posts), **kw)
        self.posts[shortcode] = post
        return post

    def fault(self, route: str, status: int | str, times: int | None = 1, match: str | None = None) -> None:
        self.faults.append(Fault(route, status, times, match))

    def requested(self, route: str) -> list[str]:
        return [key for r, key in self.calls if r == route]

    # -- JSON as Instagram shapes it ------------------------------------------------------------------
    def _polaris_media(self, p: FakePost) -> dict:
        """A post as the web app's api/graphql answers it (instaloader normalises it)."""
        def versions(node: bytes | None, pos: int) -> dict:
            return {"image_versions2": {"candidates": [{"url": p.image_url(pos), "width": 48, "height": 48}]},
                    "video_versions": [{"url": p.video_url(pos), "type": 101}] if node is None else None,
                    "media_type": 2 if node is None else 1}

        media = {"code": p.shortcode, "pk": str(p.pk), "id": f"{p.pk}_42", "taken_at": p.taken_at,
                 "user": {"pk": "42", "id": "42", "username": p.owner, "full_name": p.owner.title(),
                          "is_private": False, "profile_pic_url": CDN + "pic.jpg"},
                 "caption": {"text": p.caption, "pk": "1"}, "like_count": 3, "comment_count": 0,
                 "has_liked": False, "accessibility_caption": None, "usertags": None, "product_type": "feed"}
        if p.typename == "GraphSidecar":
            media.update(media_type=8, image_versions2={"candidates": [{"url": p.image_url(1)}]},
                         video_versions=None, carousel_media=[
                             {"code": p.shortcode, **versions(n, i)} for i, n in enumerate(p.nodes, start=1)])
        else:
            media.update(versions(p.nodes[0], 1), carousel_media=None)
            if p.typename == "GraphVideo":
                media.update(video_duration=3.5, view_count=10, play_count=12)
        return media

    def _legacy_node(self, p: FakePost) -> dict:
        """A post as the hashtag GraphQL query lists it: no sidecar children, no owner name."""
        return {"__typename": p.typename, "id": str(p.pk), "shortcode": p.shortcode, "display_url": p.image_url(1),
                "thumbnail_src": p.image_url(1), "is_video": p.typename == "GraphVideo",
                "taken_at_timestamp": p.taken_at, "owner": {"id": "42"},
                "edge_media_to_caption": {"edges": [{"node": {"text": p.caption}}]},
                "edge_media_to_comment": {"count": 0}, "edge_liked_by": {"count": 3},
                "edge_media_preview_like": {"count": 3}, "comments_disabled": False,
                "dimensions": {"height": 48, "width": 48}}

    def _page(self, codes: list[str], after: str | None) -> tuple[list[str], dict]:
        start = int(after) if after else 0
        chunk = codes[start:start + self.page_size]
        more = start + self.page_size < len(codes)
        return chunk, {"has_next_page": more, "end_cursor": str(start + self.page_size) if more else None}

    @staticmethod
    def _embed(data: dict) -> str:
        """Data the way a page of www.instagram.com embeds a prefetched query result."""
        blob = {"require": [["ScheduledServerJS", "handle", None, [{"__bbox": {"require": [[
            "RelayPrefetchedStreamCache", "next", [], ["adp_PolarisProfilePageContentQueryRelayPreloader_1",
                                                       {"__bbox": {"complete": True, "result": {"data": data}}}]]]}}]]]}
        return f'<script type="application/json" data-content-len="1" data-sjs>{json.dumps(blob)}</script>'

    # -- answering -------------------------------------------------------------------------------------
    def _fault(self, route: str, key: str):
        for f in self.faults:
            if f.route == route and (f.match is None or f.match == key) and (f.times is None or f.times > 0):
                if f.times is not None:
                    f.times -= 1
                if f.status == "reset":
                    return requests.exceptions.ConnectionError(f"Connection reset by peer ({route})")
                if f.status == "dns":
                    return name_not_resolved(f"https://www.instagram.com/{route}")
                if f.status == "login":
                    return (302, {"Location": LOGIN_URL}, "")
                message = ("Please wait a few minutes before you try again." if f.status == 429
                           else f"HTTP {f.status}")
                return (int(f.status), {"Content-Type": "application/json"},
                        json.dumps({"message": message, "status": "fail"}))
        return None

    def _answer(self, route: str, key: str, make: Callable[[], tuple]):
        self.calls.append((route, key))
        return self._fault(route, key) or make()

    @staticmethod
    def _json(obj: dict, status: int = 200) -> tuple:
        return (status, {"Content-Type": "application/json; charset=utf-8"}, json.dumps(obj))

    def _www_get(self, request) -> tuple:
        url = urlparse(request.url)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/":
            html = ('<!DOCTYPE html><html><head><script type="application/json" data-sjs>'
                    '{"require":[["ScheduledServerJS","handle",null,[{"define":[["LSD",[],{"token":"AVfakeLsd"},323],'
                    '["CurrentUserInitialData",[],{"ACCOUNT_ID":"0","IG_USER_EIMU":"0","NON_FACEBOOK_USER_ID":"0"},'
                    '270]]}]]]}</script></head><body></body></html>')
            return self._answer("start", "", lambda: (
                200, {"Content-Type": "text/html; charset=utf-8",
                      "Set-Cookie": "csrftoken=fakecsrf123; Path=/; Domain=.instagram.com"}, html))
        if url.path.rstrip("/") == "/graphql/query" and query.get("query_hash") == HASHTAG_QUERY_HASH:
            variables = json.loads(query["variables"])
            tag = variables["tag_name"]

            def hashtag_posts():
                codes, info = self._page(self.hashtags.get(tag, []), variables.get("after"))
                conn = {"count": len(self.hashtags.get(tag, [])), "page_info": info,
                        "edges": [{"node": self._legacy_node(self.posts[c])} for c in codes]}
                return self._json({"data": {"hashtag": {"name": tag, "edge_hashtag_to_media": conn}}, "status": "ok"})
            return self._answer("hashtag_posts", tag, hashtag_posts)
        m = re.fullmatch(r"/([a-z0-9._]+)/", url.path)
        if m:
            user = m.group(1)

            def profile_page():
                if user not in self.profiles:
                    return (404, {"Content-Type": "text/html"}, "<html>Sorry, this page isn't available.</html>")
                codes, info = self._page(self.profiles[user], None)
                pk = str(1000 + sorted(self.profiles).index(user))
                details = {"pk": pk, "id": pk, "username": user, "full_name": user.title(), "is_private": False,
                           "all_media_count": len(self.profiles[user]), "profile_pic_url": CDN + "pic.jpg"}
                posts = {"id": f"profile-page-{user}", "polaris_ordered_timeline_connection": {
                    "edges": [{"node": {"code": c, "pk": str(self.posts[c].pk)}} for c in codes], "page_info": info}}
                html = ("<!DOCTYPE html><html><head>" + self._embed({"xig_user_by_username": details})
                        + self._embed({"xig_user_by_username": posts}) + "</head></html>")
                return (200, {"Content-Type": "text/html; charset=utf-8"}, html)
            return self._answer("profile_page", user, profile_page)
        return (404, {"Content-Type": "text/html"}, "not found")

    def _www_post(self, request) -> tuple:
        url = urlparse(request.url)
        form = {k: v[0] for k, v in parse_qs(request.body if isinstance(request.body, str)
                                             else (request.body or b"").decode()).items()}
        if url.path.rstrip("/") not in ("/api/graphql", "/graphql/query"):
            return (404, {}, "")
        variables = json.loads(form.get("variables", "{}"))
        if form.get("doc_id") == POST_DOC_ID:
            code = variables["shortcode"]

            def post():
                if code in self.deleted or code not in self.posts:
                    return (404, {"Content-Type": "text/html"}, "<html>Sorry, this page isn't available.</html>")
                return self._json({"data": {"xdt_api__v1__media__shortcode__web_info": {
                    "items": [self._polaris_media(self.posts[code])]}}, "extensions": {"is_final": True}})
            return self._answer("post", code, post)
        if form.get("doc_id") == PROFILE_NEXT_DOC_ID:
            user = variables["id"].removeprefix("profile-page-")

            def profile_next():
                codes, info = self._page(self.profiles[user], variables.get("after"))
                return self._json({"data": {"node": {"polaris_ordered_timeline_connection": {
                    "edges": [{"node": {"code": c, "pk": str(self.posts[c].pk)}} for c in codes],
                    "page_info": info}}}})
            return self._answer("profile_next", user, profile_next)
        return self._json({"errors": [{"message": "unknown doc_id"}]}, 400)

    def _iphone_get(self, request) -> tuple:
        url = urlparse(request.url)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/api/v1/tags/web_info/":
            tag = query.get("tag_name", "")

            def info():
                if tag not in self.hashtags:
                    return self._json({"message": "Page not found", "status": "fail"}, 404)
                section = {"sections": [], "more_available": False, "next_max_id": None}
                return self._json({"data": {"id": "17841563", "name": tag, "media_count": len(self.hashtags[tag]),
                                            "profile_pic_url": CDN + "tag.jpg", "is_following": False,
                                            "allow_following": True, "top": section, "recent": section},
                                   "status": "ok"})
            return self._answer("hashtag_info", tag, info)
        return self._json({"message": "not here", "status": "fail"}, 404)

    def _cdn_get(self, request) -> tuple:
        name = urlparse(request.url).path.rsplit("/", 1)[-1]

        def image():
            m = re.fullmatch(r"(.+)_(\d+)\.jpg", name)
            post = self.posts.get(m.group(1)) if m else None
            if post is None or post.shortcode in self.deleted or post.nodes[int(m.group(2)) - 1] is None:
                return (404, {"Content-Type": "text/plain"}, "URL signature expired")
            data = post.nodes[int(m.group(2)) - 1]
            if self.cut is not None and self.cut[0] == name:
                part, make_exc = self.cut[1], self.cut[2]
                self.cut = None
                return (200, {"Content-Type": "image/jpeg"}, _CutOff(data, part, make_exc))
            return (200, {"Content-Type": "image/jpeg"}, data)
        return self._answer("image", name, image)

    def install(self, rsps: responses.RequestsMock) -> FakeInstagram:
        """Answer every request to Instagram's hosts through this fake."""
        www = re.compile(r"https://www\.instagram\.com/.*")
        rsps.add_callback(responses.GET, www, callback=self._www_get)
        rsps.add_callback(responses.POST, www, callback=self._www_post)
        rsps.add_callback(responses.GET, re.compile(r"https://i\.instagram\.com/.*"), callback=self._iphone_get)
        rsps.add_callback(responses.GET, re.compile(r"https://scontent\.cdninstagram\.com/.*"),
                          callback=self._cdn_get)
        return self


class _CutOff(io.BufferedReader):
    """A response body that delivers ``part`` bytes, then raises: a download interrupted half-way."""

    def __init__(self, data: bytes, part: int, make_exc: Callable[[], BaseException]):
        super().__init__(io.BytesIO(data))
        self._data, self._part, self._make_exc, self._sent = data, part, make_exc, 0

    def read(self, size: int | None = -1) -> bytes:
        if self._sent >= self._part:
            raise self._make_exc()
        n = self._part - self._sent if size is None or size < 0 else min(size, self._part - self._sent)
        chunk = self._data[self._sent:self._sent + n]
        self._sent += n
        return chunk
