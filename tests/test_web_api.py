"""`visextract serve` over HTTP: the JSON API's shapes, paging and filters, images by sha256, and every safety
layer on its own (token 401, Origin 403, CSRF 403, Host 403, 404 for anything but a known sha256, 409, 413,
422), against real databases made from real photos."""

from __future__ import annotations

import hashlib
import io
import json
import re
import sqlite3
from collections import Counter
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from web_library import XSS_NAME

from visextract.web.app import WebConfig, create_app

BASE = "http://127.0.0.1:8765"
EXPORT_KEYS = {"path", "sha256", "width", "height", "status", "error", "schema", "schema_version", "data",
               "provenance", "tools", "llm", "version", "review"}  # fmt: skip


@pytest.fixture
def db(web_library, tmp_path) -> str:
    return web_library.copy(tmp_path / "lib")


@pytest.fixture
def client(db, tmp_path) -> TestClient:
    return TestClient(create_app(WebConfig(db=db, thumbs_dir=tmp_path / "thumbs")), base_url=BASE)


def sha_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def csrf_of(client: TestClient, page: str = "/") -> str:
    html = client.get(page).text
    return re.search(r'<meta name="csrf-token" content="([^"]+)">', html).group(1)


def fingerprint(db: str) -> list[tuple]:
    with sqlite3.connect(db.removeprefix("sqlite:///")) as connection:
        return connection.execute(
            "SELECT id, version, is_current, status, data, provenance, review FROM record"
        ).fetchall()


def review(client: TestClient, sha: str, body: dict, csrf: str | None = None, **headers: str):
    if csrf is not None:
        headers["X-CSRF-Token"] = csrf
    return client.post(f"/api/records/{sha}/review", json=body, headers=headers)


# ---- the JSON API ------------------------------------------------------------------------------------


def test_records_pages_through_every_record_once_newest_first(client, db):
    seen, cursor = [], None
    while True:
        page = client.get("/api/records", params={"limit": 4} | ({"cursor": cursor} if cursor else {})).json()
        assert set(page) == {"items", "next"} and len(page["items"]) <= 4
        seen += page["items"]
        cursor = page["next"]
        if cursor is None:
            break
    with sqlite3.connect(db.removeprefix("sqlite:///")) as connection:
        expected = connection.execute(
            "SELECT path, schema_name FROM record WHERE is_current ORDER BY id DESC"
        ).fetchall()
    assert [(item["path"], item["schema"]) for item in seen] == expected and len(expected) == 9
    assert all(set(item) == EXPORT_KEYS for item in seen)


def test_records_filter_by_status_schema_and_meaning(client, web_library):
    review_queue = client.get("/api/records", params={"status": "needs_review"}).json()["items"]
    assert sorted(Path(r["path"]).name for r in review_queue) == ["chelsea.png", "coffee.jpg"]
    assert {r["schema"] for r in review_queue} == {"vehicle"}
    scene = client.get("/api/records", params={"schema": "scene", "status": "failed"}).json()["items"]
    assert [Path(r["path"]).name for r in scene] == ["broken.jpg"]
    found = client.get("/api/records", params={"q": "a printed page of text", "schema": "scene"}).json()["items"]
    assert Path(found[0]["path"]).name == "page.png" and len(found) < 6


def test_top_labels_are_facets_with_counts_and_filters(client):
    items = client.get("/api/records", params={"limit": 200}).json()["items"]
    expected = Counter(item["tools"]["classifier"][0]["label"] for item in items if item["tools"].get("classifier"))
    assert expected["tiger cat"] == 2  # chelsea, as a scene and as a vehicle record
    for label, count in expected.items():
        assert facet_count(client, "label", label) == count
        found = client.get("/api/records", params={"label": label}).json()["items"]
        assert len(found) == count and all(r["tools"]["classifier"][0]["label"] == label for r in found)


def test_one_record_by_sha256_in_the_export_shape_plus_its_paths(client, web_library):
    sha = sha_of(web_library.photos / "coffee.jpg")
    record = client.get(f"/api/records/{sha}", params={"schema": "vehicle"}).json()
    assert record["schema"] == "vehicle" and record["sha256"] == sha and record["status"] == "needs_review"
    assert record["llm"]["model"] == "gpt-4o-mini" and record["llm"]["prompt_tokens"] == 800
    assert sorted(Path(p).name for p in record["paths"]) == ["coffee.jpg", "coffee.jpg"]  # photos/ and cars/
    assert client.get(f"/api/records/{sha}", params={"schema": "scene"}).json()["schema"] == "scene"


def test_search_and_sql_return_their_cli_json_shapes(client, db):
    hits = client.get("/api/search", params={"q": "a cat", "k": 2}).json()
    assert len(hits) == 2 and list(hits[0]) == ["path", "sha256", "score", "snippet"]
    assert Path(hits[0]["path"]).name == "chelsea.png"
    csrf = csrf_of(client)
    rows = client.post("/api/sql", json={"query": "SELECT path, face_count FROM scene WHERE face_count > 0"},
                       headers={"X-CSRF-Token": csrf}).json()  # fmt: skip
    assert [(Path(r["path"]).name, r["face_count"]) for r in rows] == [("astronaut.png", 1)]


@pytest.mark.parametrize("statement", ["DELETE FROM record", "UPDATE record SET status = 'ok'", "DROP TABLE image"])
def test_sql_is_read_only(client, db, statement):
    before = fingerprint(db)
    response = client.post("/api/sql", json={"query": statement}, headers={"X-CSRF-Token": csrf_of(client)})
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "query"
    assert fingerprint(db) == before


def test_ask_without_an_llm_says_what_works_instead(client):
    response = client.post("/api/ask", json={"question": "how many cats?"}, headers={"X-CSRF-Token": csrf_of(client)})
    assert response.status_code == 503 and "search" in response.json()["detail"]


def test_ask_streams_the_steps_then_the_answer_with_cited_images(client, server, web_library):
    server.reply_tool_calls([("run_sql", {"query": "SELECT path, sha256 FROM scene WHERE face_count = 1"})])
    server.reply_text("One photo shows a face.")
    response = client.post("/api/ask", json={"question": "who has a face?"}, headers={"X-CSRF-Token": csrf_of(client)})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    events = [
        (frame.split("\n")[0].removeprefix("event: "), json.loads(frame.split("\n")[1].removeprefix("data: ")))
        for frame in response.text.strip().split("\n\n")
    ]
    names = [name for name, _ in events]
    assert names[0] == "sql" and events[0][1]["args"]["query"].startswith("SELECT path, sha256")
    assert names[1] == "result" and events[1][1]["summary"] == "1 row"
    assert "delta" in names and names[-1] == "answer"
    answer = events[-1][1]
    assert answer["text"].startswith("One photo shows a face.") and len(answer["paths"]) == 1
    assert answer["paths"][0].endswith("astronaut.png")
    assert answer["images"] == [{"path": answer["paths"][0], "sha256": sha_of(web_library.photos / "astronaut.png")}]


# ---- images by sha256 ---------------------------------------------------------------------------------


def test_original_bytes_and_a_cached_thumbnail_with_validators(client, web_library, tmp_path):
    source = web_library.photos / "astronaut.png"
    sha = sha_of(source)
    original = client.get(f"/image/{sha}")
    assert original.status_code == 200 and original.content == source.read_bytes()
    thumb = client.get(f"/thumb/{sha}")
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    image = Image.open(io.BytesIO(thumb.content))
    assert image.format == "JPEG" and max(image.size) == 320 and image.size == (320, 320)  # astronaut is square
    assert thumb.headers["etag"] and "max-age" in thumb.headers["cache-control"]
    cached = list((tmp_path / "thumbs").rglob("*.jpg"))
    assert len(cached) == 1 and cached[0].read_bytes() == thumb.content
    again = client.get(f"/thumb/{sha}", headers={"If-None-Match": thumb.headers["etag"]})
    assert again.status_code == 304 and again.content == b""


def test_a_thumbnail_made_once_survives_the_original_moving_away(client, db, tmp_path):
    photos = tmp_path / "lib" / "photos"
    sha = sha_of(photos / "chelsea.png")
    first = client.get(f"/thumb/{sha}").content
    (photos / "chelsea.png").rename(tmp_path / "elsewhere.png")
    (tmp_path / "lib" / "cars" / "chelsea.png").unlink()
    assert client.get(f"/image/{sha}").status_code == 404  # no path holds the original now
    assert client.get(f"/thumb/{sha}").content == first  # the cached preview still shows
    page = client.get(f"/record/{sha}?schema=scene")
    assert page.status_code == 200 and "The image file is missing" in page.text and "tabby" in page.text


def test_a_file_overwritten_since_the_run_is_not_served_as_the_old_image(client, tmp_path, web_library):
    photos = tmp_path / "lib" / "photos"
    sha = sha_of(photos / "page.png")
    assert client.get(f"/image/{sha}").status_code == 200
    (photos / "coffee.jpg").replace(photos / "page.png")  # other bytes at the known path
    assert client.get(f"/image/{sha}").status_code == 404
    assert client.get(f"/thumb/{sha}").status_code == 404  # no preview was made before: none is made now


@pytest.mark.parametrize(
    "url",
    [
        "/image/" + "0" * 64,
        "/thumb/" + "0" * 64,
        "/api/records/" + "0" * 64,
        "/record/" + "0" * 64,
        "/image/..%2F..%2F..%2Fetc%2Fpasswd",
        "/image/etc/passwd",
        "/thumb/%2Fetc%2Fpasswd",
        "/image/" + "A" * 64,
        "/api/records/..%2Flibrary.db",
        "/record/%2Fetc%2Fpasswd",
    ],
)
def test_anything_but_a_known_sha256_is_not_found(client, url):
    assert client.get(url).status_code == 404


def test_a_bad_filter_in_the_address_bar_is_a_page_naming_it_and_json_for_api_clients(client):
    page = client.get("/?status=bogus", headers={"Accept": "text/html,application/xhtml+xml"})
    assert page.status_code == 422 and page.headers["content-type"].startswith("text/html")
    assert "Bad address" in page.text and "status: Input should be" in page.text and 'href="/"' in page.text
    api = client.get("/api/records?status=bogus", headers={"Accept": "application/json"})
    assert api.status_code == 422 and api.json()["errors"][0]["field"] == "query.status"


def test_a_record_page_for_a_schema_the_image_has_no_record_of_is_not_found(client, web_library):
    sha = sha_of(web_library.photos / "astronaut.png")  # extracted with the scene schema only
    assert client.get(f"/record/{sha}?schema=scene").status_code == 200
    page = client.get(f"/record/{sha}?schema=vehicle")
    assert page.status_code == 404 and "with schema &#39;vehicle&#39; (it has: scene)" in page.text
    assert client.get(f"/api/records/{sha}?schema=vehicle").status_code == 404  # as the JSON API says


def test_paths_and_undecodable_files_are_never_served(client, web_library, tmp_path):
    broken_sha = sha_of(web_library.photos / "broken.jpg")
    assert client.get(f"/image/{broken_sha}").status_code == 404  # in the database, but not an image
    assert client.get(f"/thumb/{broken_sha}").status_code == 404
    path = str(tmp_path / "lib" / "photos" / "coffee.jpg")
    assert client.get(f"/image/{path}").status_code == 404
    assert client.get("/image/" + path.replace("/", "%2F")).status_code == 404


def facet_count(client: TestClient, facet: str, value: str) -> int:
    html = client.get("/").text
    section = html.split(f'data-facet="{facet}"')[1].split("</section>")[0]
    match = re.search(rf">{re.escape(value)}</span><span class=\"count\">(\d+)<", section)
    return int(match.group(1)) if match else 0


def test_gallery_counts_follow_every_change_to_the_database(client, db, web_library):
    assert facet_count(client, "status", "needs_review") == 2
    sha = sha_of(web_library.photos / "coffee.jpg")
    review(client, sha, {"schema": "vehicle", "accept": True}, csrf_of(client))
    assert facet_count(client, "status", "needs_review") == 1  # this server's own write
    with sqlite3.connect(db.removeprefix("sqlite:///")) as other:  # another process's write
        other.execute("UPDATE record SET status = 'failed' WHERE is_current AND status = 'needs_review'")
    assert facet_count(client, "status", "needs_review") == 0 and facet_count(client, "status", "failed") == 2


# ---- review over HTTP -----------------------------------------------------------------------------------


def test_a_review_edit_returns_the_new_version_with_human_provenance(client, web_library):
    sha = sha_of(web_library.photos / "coffee.jpg")
    body = {"schema": "vehicle", "data": {"type": None, "license": None}, "by": "ann", "version": 1}
    response = review(client, sha, body, csrf_of(client))
    assert response.status_code == 200
    record = response.json()
    assert record["version"] == 2 and record["status"] == "ok" and record["data"]["type"] is None
    assert record["provenance"]["type"] == {"source": "human", "evidence": [], "verified": True}
    assert record["provenance"]["color"]["source"] == "llm" and record["provenance"]["color"]["verified"] is True
    assert record["review"]["by"] == "ann" and record["review"]["fields"] == ["type", "license"]


def test_a_stale_version_is_a_conflict_with_the_current_record(client, db, web_library):
    sha = sha_of(web_library.photos / "chelsea.png")
    csrf = csrf_of(client)
    assert review(client, sha, {"schema": "vehicle", "accept": True, "version": 1}, csrf).status_code == 200
    before = fingerprint(db)
    stale = review(client, sha, {"schema": "vehicle", "data": {"color": "gray"}, "version": 1}, csrf)
    assert stale.status_code == 409
    assert stale.json()["version"] == 2 and stale.json()["status"] == "ok" and stale.json()["data"]["color"] == "brown"
    assert fingerprint(db) == before


def test_an_invalid_value_is_422_with_field_errors_and_nothing_stored(client, db, web_library):
    sha = sha_of(web_library.photos / "astronaut.png")
    csrf = csrf_of(client)
    before = fingerprint(db)
    bad = review(client, sha, {"schema": "scene", "data": {"face_count": -1, "labels": "not a list"}}, csrf)
    assert bad.status_code == 422
    fields = {error["field"]: error["message"] for error in bad.json()["errors"]}
    assert set(fields) == {"face_count", "labels"} and "greater than or equal to 0" in fields["face_count"]
    unknown = review(client, sha, {"schema": "scene", "data": {"colour": "red"}}, csrf)
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["field"] == "colour"
    assert fingerprint(db) == before


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"[1, 2]", b'{"schema": "scene", "data": "text"}', b'{"schema": "scene", "extra": 1}'],
)
def test_a_malformed_body_is_422(client, web_library, body):
    sha = sha_of(web_library.photos / "astronaut.png")
    response = client.post(f"/api/records/{sha}/review", content=body,
                           headers={"Content-Type": "application/json", "X-CSRF-Token": csrf_of(client)})  # fmt: skip
    assert response.status_code == 422 and response.json()["errors"]


def test_a_review_that_neither_edits_nor_accepts_is_422(client, web_library):
    sha = sha_of(web_library.photos / "astronaut.png")
    assert review(client, sha, {"schema": "scene"}, csrf_of(client)).status_code == 422


def test_an_oversized_body_is_413_whether_announced_or_streamed(client, db, web_library):
    sha = sha_of(web_library.photos / "astronaut.png")
    csrf = csrf_of(client)
    before = fingerprint(db)
    huge = {"schema": "scene", "data": {"text": "x" * (2 << 20)}}
    assert review(client, sha, huge, csrf).status_code == 413

    def chunks():
        yield b'{"schema": "scene", "data": {"text": "'
        for _ in range(40):
            yield b"y" * 65536
        yield b'"}}'

    streamed = client.post(f"/api/records/{sha}/review", content=chunks(),
                           headers={"Content-Type": "application/json", "X-CSRF-Token": csrf})  # fmt: skip
    assert streamed.status_code == 413
    assert fingerprint(db) == before


# ---- the safety layers, each on its own ------------------------------------------------------------------


def test_every_page_carries_the_same_csrf_token(client, web_library):
    sha = sha_of(web_library.photos / "astronaut.png")
    tokens = {csrf_of(client, page) for page in ("/", f"/record/{sha}", "/review", "/chat", "/?status=ok")}
    assert len(tokens) == 1 and len(tokens.pop()) >= 32


@pytest.mark.parametrize("token", [None, "", "wrong-token"])
def test_a_state_changing_request_without_the_csrf_token_is_403(client, db, web_library, token):
    sha = sha_of(web_library.photos / "astronaut.png")
    before = fingerprint(db)
    response = review(client, sha, {"schema": "scene", "accept": True}, token)
    assert response.status_code == 403 and "X-CSRF-Token" in response.json()["detail"]
    assert client.post("/api/sql", json={"query": "SELECT 1"}).status_code == 403
    assert fingerprint(db) == before


def test_a_request_from_another_origin_is_403_even_with_the_csrf_token(client, db, web_library):
    sha = sha_of(web_library.photos / "astronaut.png")
    csrf = csrf_of(client)
    before = fingerprint(db)
    for origin in ("http://evil.example", "null", "http://127.0.0.1:9999", "https://127.0.0.1:8765"):
        response = review(client, sha, {"schema": "scene", "accept": True}, csrf, Origin=origin)
        assert response.status_code == 403, origin
        assert client.get("/api/records", headers={"Origin": origin}).status_code == 403
    assert fingerprint(db) == before
    assert review(client, sha, {"schema": "scene", "accept": True}, csrf, Origin=BASE).status_code == 200


def test_a_loopback_server_answers_only_to_loopback_host_names(db, tmp_path):
    app = create_app(WebConfig(db=db, thumbs_dir=tmp_path / "thumbs"))
    assert TestClient(app, base_url="http://localhost:8765").get("/").status_code == 200
    rebound = TestClient(app, base_url="http://attacker.example:8765")  # DNS rebinding to 127.0.0.1
    assert rebound.get("/api/records").status_code == 403


def test_off_loopback_every_request_needs_the_token(db, tmp_path):
    app = create_app(WebConfig(db=db, host="0.0.0.0", token="s3cret-token", thumbs_dir=tmp_path / "thumbs"))
    client = TestClient(app, base_url="http://192.0.2.10:8765")
    for url in ("/", "/api/records", "/chat", "/static/app.css", "/thumb/" + "0" * 64):
        assert client.get(url).status_code == 401, url
    assert client.get("/api/records", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/api/records", headers={"Authorization": "Bearer s3cret-token"}).status_code == 200
    assert client.get("/?token=wrong").status_code == 401
    login = client.get("/?token=s3cret-token&status=ok", follow_redirects=False)
    assert login.status_code == 303 and login.headers["location"] == "/?status=ok"
    assert (
        "httponly" in login.headers["set-cookie"].lower() and "samesite=strict" in login.headers["set-cookie"].lower()
    )
    assert client.get("/api/records").status_code == 200  # the cookie now rides along
    client.cookies.clear()
    client.cookies.set("visextract_token", "forged")
    assert client.get("/api/records").status_code == 401


def test_off_loopback_without_a_token_one_is_generated(db):
    from visextract.web.app import WebConfig

    config = WebConfig(db=db, host="0.0.0.0").with_token()
    assert config.token and len(config.token) >= 24 and f"?token={config.token}" in config.url
    assert WebConfig(db=db).with_token().token is None  # loopback: no token needed
    with pytest.raises(ValueError, match="token is required"):
        create_app(WebConfig(db=db, host="0.0.0.0"))


def test_pages_run_only_their_own_scripts(client):
    response = client.get("/")
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "'unsafe-inline'" not in policy and "frame-ancestors 'none'" in policy
    assert response.headers["x-content-type-options"] == "nosniff"


def test_file_names_and_image_text_are_escaped_in_pages(client, web_library):
    gallery = client.get("/").text
    assert XSS_NAME not in gallery and "<img src=x" not in gallery
    assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;.jpg" in gallery
    sha = sha_of(web_library.photos / XSS_NAME)
    record = client.get(f"/record/{sha}").text
    assert "<img src=x" not in record and "&lt;img src=x onerror=alert(1)&gt;" in record


# ---- read surfaces never create a database ---------------------------------------------------------------


def test_serving_a_database_that_does_not_exist_is_one_line_and_creates_nothing(cli, tmp_path):
    missing = tmp_path / "nope.db"
    result = cli("serve", "--db", f"sqlite:///{missing}", "--port", "0")
    assert result.exit_code != 0 and "no visextract database" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not missing.exists()
