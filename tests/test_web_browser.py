"""The web app in a real browser: Debian's headless Chromium driven by Playwright, against `visextract serve`'s
app running in uvicorn on 127.0.0.1. Each test gets its own copy of a database made from real photos.

Select them with `pytest -m browser`; `.ci/ensure-chromium` installs the browser (make test and CI run it).
"""

from __future__ import annotations

import hashlib
import json
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pytest
import uvicorn
from pydantic import BaseModel, Field
from web_library import XSS_NAME

import visextract as vx
from visextract.web.app import WebConfig, create_app

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run .ci/ensure-chromium (installs Debian's chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def serve_in_thread(app) -> tuple[str, uvicorn.Server, threading.Thread]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    return f"http://127.0.0.1:{listener.getsockname()[1]}", server, thread


@pytest.fixture
def db(web_library, tmp_path) -> str:
    return web_library.copy(tmp_path / "lib")


@pytest.fixture
def base_url(db, tmp_path) -> Iterator[str]:
    url, server, thread = serve_in_thread(create_app(WebConfig(db=db, thumbs_dir=tmp_path / "thumbs")))
    yield url
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def page(browser):
    """A fresh browser profile; page errors, console errors and dialogs are collected (`page.problems`)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1800})
    page = context.new_page()
    page.problems = []
    page.dialogs = []
    page.on("pageerror", lambda error: page.problems.append(f"page error: {error}"))
    page.on("console", lambda m: m.type == "error" and page.problems.append(f"console: {m.text}"))

    def on_dialog(dialog):
        page.dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    yield page
    context.close()


def sha_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def query(db: str, sql: str, *args) -> list[tuple]:
    with sqlite3.connect(db.removeprefix("sqlite:///")) as connection:
        return connection.execute(sql, args).fetchall()


def current(db: str, sha: str, schema: str) -> dict:
    (row,) = query(
        db,
        "SELECT version, status, data, provenance, review FROM record"
        " WHERE subject = ? AND schema_name = ? AND is_current",
        sha,
        schema,
    )
    return {"version": row[0], "status": row[1], "data": json.loads(row[2]), "provenance": json.loads(row[3]),
            "review": json.loads(row[4]) if row[4] else None}  # fmt: skip


def loaded_thumbnails(page, timeout: float = 10) -> list[int]:
    """naturalWidth of every thumbnail on the page, once each has finished loading. (Polled from Python:
    the pages' Content-Security-Policy forbids the eval that `page.wait_for_function` needs.)"""
    deadline = time.monotonic() + timeout
    while not all(page.eval_on_selector_all("img.thumb", "(imgs) => imgs.map((img) => img.complete)")):
        assert time.monotonic() < deadline, "thumbnails did not finish loading"
        time.sleep(0.05)
    return page.eval_on_selector_all("img.thumb", "(imgs) => imgs.map((img) => img.naturalWidth)")


# ---- gallery ---------------------------------------------------------------------------------------------


def test_the_gallery_loads_every_thumbnail(page, base_url, db):
    page.goto(base_url + "/")
    with_images = query(db, "SELECT count(*) FROM record WHERE is_current AND image_id IS NOT NULL")[0][0]
    widths = loaded_thumbnails(page)
    assert len(widths) == with_images == 8
    assert all(width > 0 for width in widths)
    assert page.locator(".card").count() == 9  # plus the file that is not an image, shown with its error
    assert not page.problems and not page.dialogs


def test_a_facet_and_a_search_narrow_the_grid(page, base_url):
    page.goto(base_url + "/")
    total = page.locator(".card").count()
    facet = page.locator('[data-facet="status"] a', has_text="needs_review")
    assert facet.locator(".count").inner_text() == "2"
    facet.click()
    page.wait_for_url("**/?status=needs_review")
    names = page.locator(".card .name").all_inner_texts()
    assert sorted(names) == ["chelsea.png", "coffee.jpg"]
    page.fill(".searchbox input", "a printed page of text")
    page.press(".searchbox input", "Enter")
    page.wait_for_url("**/?q=a+printed+page+of+text")
    names = page.locator(".card .name").all_inner_texts()
    assert names[0] == "page.png" and len(names) < total
    assert all(width > 0 for width in loaded_thumbnails(page))
    assert not page.problems


# ---- record page -----------------------------------------------------------------------------------------


def test_the_record_page_draws_one_box_per_face_where_the_face_is(page, base_url, web_library, db):
    sha = sha_of(web_library.photos / "astronaut.png")
    faces = json.loads(query(db, "SELECT t.results FROM tool_result t JOIN image i ON i.id = t.image_id "
                                 "WHERE t.tool = 'faces' AND i.sha256 = ?", sha)[0][0])  # fmt: skip
    assert len(faces) == 1
    page.goto(f"{base_url}/record/{sha}?schema=scene")
    page.locator("#photo").evaluate("(img) => img.decode()")
    boxes = page.locator("svg.overlay g.tool-faces rect")
    assert boxes.count() == len(faces)
    image = page.locator("#photo").bounding_box()
    drawn = boxes.first.bounding_box()
    natural = page.eval_on_selector("#photo", "(img) => img.naturalWidth")
    scale = image["width"] / natural
    x1, y1, x2, y2 = faces[0]["box"]
    stroke = 4  # half the stroke lies outside the box
    assert (
        abs(drawn["x"] - (image["x"] + x1 * scale)) <= stroke and abs(drawn["y"] - (image["y"] + y1 * scale)) <= stroke
    )
    assert (
        abs(drawn["width"] - (x2 - x1) * scale) <= 2 * stroke and abs(drawn["height"] - (y2 - y1) * scale) <= 2 * stroke
    )
    page.hover('tr[data-field="face_count"]')
    assert "hl" in boxes.first.evaluate("(rect) => rect.parentElement.getAttribute('class')")
    page.uncheck('input[data-toggle-tool="faces"]')
    assert not boxes.first.is_visible()
    page.check('input[data-toggle-tool="faces"]')
    assert boxes.first.is_visible()
    assert page.locator('tr[data-field="face_count"] .source').inner_text() == "tool:faces"
    assert not page.problems


def test_a_record_whose_file_is_gone_still_renders_and_says_so(page, base_url, db, tmp_path, web_library):
    sha = sha_of(web_library.photos / "coffee.jpg")
    (tmp_path / "lib" / "photos" / "coffee.jpg").unlink()
    (tmp_path / "lib" / "cars" / "coffee.jpg").unlink()
    page.goto(f"{base_url}/record/{sha}?schema=vehicle")
    assert page.locator(".file-missing").is_visible()
    assert page.locator('tr[data-field="type"] .value').inner_text().startswith("car")
    assert page.locator('tr[data-field="type"] .badge.conflict').is_visible()
    assert page.locator("dl.usage").inner_text().count("gpt-4o-mini") == 1


# ---- review ---------------------------------------------------------------------------------------------


def test_an_edit_through_the_form_persists_and_shows_as_human(page, base_url, web_library, db):
    sha = sha_of(web_library.photos / "astronaut.png")
    page.goto(f"{base_url}/record/{sha}?schema=scene")
    page.fill('.fnode[data-name="face_count"] .fval', "2")
    labels = page.locator('.fnode[data-name="labels"]')
    labels.locator(".fadd").click()
    labels.locator(".fitem").last.locator(".fval").fill("astronaut")
    with page.expect_navigation():
        page.click("button.save")
    row = page.locator('tr[data-field="face_count"]')
    assert row.locator(".value").inner_text().strip() == "2"
    assert row.locator(".source").inner_text() == "human"
    assert page.locator("#record-status").inner_text() == "ok"
    page.reload()
    assert page.locator('tr[data-field="face_count"] .source').inner_text() == "human"
    stored = current(db, sha, "scene")
    assert stored["version"] == 2 and stored["data"]["face_count"] == 2 and stored["data"]["labels"][-1] == "astronaut"
    assert stored["provenance"]["face_count"] == {"source": "human", "evidence": [], "verified": True}
    assert stored["review"]["fields"] == ["labels", "face_count"]
    assert stored["provenance"]["text"]["source"] == "tool:ocr" and stored["provenance"]["text"]["verified"] is True
    assert not page.problems


def test_an_invalid_value_shows_the_error_and_changes_nothing(page, base_url, web_library, db):
    sha = sha_of(web_library.photos / "astronaut.png")
    before = query(db, "SELECT id, version, is_current, data, provenance FROM record")
    page.goto(f"{base_url}/record/{sha}?schema=scene")
    page.fill('.fnode[data-name="face_count"] .fval', "-3")
    page.click("button.save")
    errors = page.locator(".form-errors")
    errors.wait_for(state="visible")
    assert "face_count" in errors.inner_text() and "greater than or equal to 0" in errors.inner_text()
    field = page.locator('.fnode[data-name="face_count"]')
    assert "invalid" in field.get_attribute("class")
    assert "greater than or equal to 0" in field.locator(".ferror").inner_text()
    assert query(db, "SELECT id, version, is_current, data, provenance FROM record") == before
    assert not [p for p in page.problems if "422" not in p]  # the refused request is logged by Chromium


def test_the_review_queue_advances_with_the_keyboard(page, base_url, web_library, db):
    chelsea, coffee = sha_of(web_library.photos / "chelsea.png"), sha_of(web_library.photos / "coffee.jpg")
    page.goto(base_url + "/review")
    form = page.locator("#review-form")
    assert form.get_attribute("data-sha") == chelsea  # newest first
    page.keyboard.press("j")
    page.wait_for_url("**/review?below=*")
    assert form.get_attribute("data-sha") == coffee
    page.keyboard.press("k")
    page.wait_for_url("**/review?above=*")
    assert form.get_attribute("data-sha") == chelsea
    page.keyboard.press("e")
    assert page.evaluate("document.activeElement.classList.contains('fval')")
    page.keyboard.press("Escape")
    page.locator("body").click(position={"x": 5, "y": 300})
    with page.expect_navigation():
        page.keyboard.press("a")
    assert form.get_attribute("data-sha") == coffee  # the accepted record left the queue
    accepted = current(db, chelsea, "vehicle")
    assert accepted["status"] == "ok" and accepted["review"]["fields"] == [] and accepted["version"] == 2
    assert accepted["provenance"]["type"]["verified"] is True and accepted["provenance"]["type"]["source"] == "llm"
    assert page.locator(".queue .pill").inner_text().startswith("1 ")
    assert not page.problems


class Part(BaseModel):
    name: str
    count: int = Field(1, ge=0)


class Listing(BaseModel):
    """A product listing photo."""

    kind: Literal["shoe", "bag", "hat"] | None = None
    on_sale: bool = False
    price: float | None = Field(None, ge=0)
    tags: list[str] = []
    parts: list[Part] = []


def test_the_form_follows_the_json_schema_and_sends_typed_values(page, server, web_library, tmp_path):
    db = f"sqlite:///{tmp_path / 'listing.db'}"
    server.reply_json({"kind": "bag", "on_sale": False, "price": 12.5, "tags": ["leather"], "parts": []})
    vx.Extractor(db=db, schema=Listing, tools=["colors"], llm="openai").run(web_library.photos / "coffee.jpg")
    url, uv, thread = serve_in_thread(create_app(WebConfig(db=db, thumbs_dir=tmp_path / "thumbs")))
    try:
        sha = sha_of(web_library.photos / "coffee.jpg")
        page.goto(f"{url}/record/{sha}")
        kind = page.locator('.fnode[data-name="kind"] select.fval')
        assert kind.locator("option").all_inner_texts() == ["—", "shoe", "bag", "hat"]
        assert kind.input_value() == '"bag"'
        assert page.locator('.fnode[data-name="on_sale"] input[type="checkbox"]').count() == 1
        assert page.locator('.fnode[data-name="price"] input[type="number"]').input_value() == "12.5"
        assert page.locator('.fnode[data-name="tags"] .fitem .fval').input_value() == "leather"
        kind.select_option(label="hat")
        page.check('.fnode[data-name="on_sale"] .fval')
        parts = page.locator('.fnode[data-name="parts"]')
        parts.locator(".fadd").click()
        part = parts.locator(".fitem").last
        part.locator('.fnode[data-name="name"] .fval').fill("strap")
        part.locator('.fnode[data-name="count"] .fval').fill("2")
        with page.expect_navigation():
            page.click("button.save")
        (record,) = vx.Extractor(db=db, schema=Listing, llm="openai").records()
        assert record.data == Listing(
            kind="hat", on_sale=True, price=12.5, tags=["leather"], parts=[Part(name="strap", count=2)]
        )
        assert record.review.fields == ["kind", "on_sale", "parts"] and record.provenance["kind"].source == "human"
        assert not page.problems
    finally:
        uv.should_exit = True
        thread.join(10)


# ---- chat --------------------------------------------------------------------------------------------


def test_the_chat_streams_the_steps_and_shows_a_cited_thumbnail(page, base_url, server, web_library):
    server.reply_tool_calls([("search_images", {"query": "a cat", "k": 1})])
    server.reply_text("The cat is in chelsea.png.")
    page.goto(base_url + "/chat")
    page.fill('#ask-form input[name="question"]', "where is the cat?")
    page.press('#ask-form input[name="question"]', "Enter")
    cited = page.locator(".cited a.thumb-link")
    cited.wait_for()
    assert page.locator(".step-search span").nth(1).inner_text() == "“a cat”"
    assert page.locator(".step-search .result").inner_text() == "→ 1 image"
    assert page.locator(".answer").inner_text() == "The cat is in chelsea.png."
    assert cited.count() == 1 and cited.get_attribute("href") == f"/record/{sha_of(web_library.photos / 'chelsea.png')}"
    assert all(width > 0 for width in loaded_thumbnails(page))
    assert not page.problems


def test_without_an_llm_the_chat_page_offers_search_and_sql_with_thumbnails(page, base_url):
    page.goto(base_url + "/chat")
    assert "needs an LLM" in page.locator(".notice").inner_text()
    page.fill('#search-form input[name="q"]', "a cup of coffee")
    page.press('#search-form input[name="q"]', "Enter")
    page.locator("#tool-results .thumb-link").first.wait_for()
    assert page.locator("#tool-results .thumb-link .caption").first.inner_text().endswith("coffee.jpg")
    page.fill("#sql-form textarea", "SELECT path, sha256 FROM scene WHERE face_count = 1")
    page.click("#sql-form button")
    page.locator("table.sql-rows tbody tr").first.wait_for()
    assert page.locator("table.sql-rows tbody tr").count() == 1
    assert page.locator("#tool-results .thumb-link .caption").inner_text().endswith("astronaut.png")
    assert all(width > 0 for width in loaded_thumbnails(page))
    assert not page.problems


# ---- escaping -------------------------------------------------------------------------------------------


def test_a_file_named_like_html_renders_as_text(page, base_url, web_library):
    page.goto(base_url + "/")
    card = page.locator(".card .name", has_text="onerror")
    assert card.inner_text() == XSS_NAME and card.is_visible()
    assert page.locator('img[src="x"]').count() == 0
    card.click()
    page.wait_for_url("**/record/*")
    assert page.locator(".record-head h1").inner_text() == XSS_NAME
    assert page.locator('img[src="x"]').count() == 0
    time.sleep(0.3)  # an onerror handler would have fired by now
    assert not page.dialogs and not page.problems
