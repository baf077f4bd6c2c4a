"""Make the README's screenshots of `visextract serve` with the browser the tests use (headless Chromium).

    python docs/screenshots.py            # writes docs/gallery.png, record.png, review.png, chat.png

It extracts `examples/` into a throwaway database (offline tools), adds vehicle records from a scripted
OpenAI-compatible server on 127.0.0.1 (the one the tests use: no network, no API key), serves the app on
a free loopback port, and photographs each page. Needs Debian's chromium (`.ci/ensure-chromium`).
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the scripted OpenAI-compatible server of the tests
os.environ.setdefault("HF_HUB_OFFLINE", "1")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
VIEWPORT = {"width": 1440, "height": 960}
CAR = {"type": "car", "license": "KA 01 AB 1234", "make": "Toyota", "model": "Corolla", "color": "brown"}
MOTORCYCLE = {"type": "motorcycle", "license": None, "make": "Honda", "model": None, "color": "red"}


def build_database(folder: Path) -> str:
    from openai_test_server import OpenAITestServer

    import visextract as vx

    photos = folder / "photos"
    shutil.copytree(ROOT / "examples", photos, ignore=shutil.ignore_patterns("*.md"))
    db = f"sqlite:///{folder / 'demo.db'}"
    vx.Extractor(db=db, llm=None).run(photos)
    with OpenAITestServer(prompt_tokens=812) as server:
        os.environ |= {"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "demo"}
        for file, answer in (("motorcycle.jpg", MOTORCYCLE), ("coffee.jpg", CAR), ("chelsea-cat.jpg", CAR)):
            server.reply_json(answer, completion_tokens=64)
            vx.Extractor(db=db, schema="vehicle", llm="openai", llm_model="gpt-4o-mini").run(photos / file)
        os.environ.pop("OPENAI_BASE_URL"), os.environ.pop("OPENAI_API_KEY")
    vx.review(str(photos / "astronaut.jpg"), {"labels": ["astronaut", "space suit"]}, by="ann", db=db)
    return db


def serve(db: str, folder: Path) -> tuple[str, object]:
    import uvicorn

    from visextract.web.app import WebConfig, create_app

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    server = uvicorn.Server(
        uvicorn.Config(create_app(WebConfig(db=db, thumbs_dir=folder / "thumbs")), log_level="warning")
    )
    threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{listener.getsockname()[1]}", server


def wait_for_images(page) -> None:
    for _ in range(200):
        if all(page.eval_on_selector_all("img", "(imgs) => imgs.map((img) => img.complete)")):
            return
        time.sleep(0.05)


def main() -> None:
    from playwright.sync_api import sync_playwright

    from visextract.query import open_store
    from visextract.store.browse import hashes_of_paths

    out = ROOT / "docs"
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        db = build_database(folder)
        base, server = serve(db, folder)
        photos = folder / "photos"
        hashes = hashes_of_paths(open_store(db), [str(photos / "astronaut.jpg"), str(photos / "chelsea-cat.jpg")])
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport=VIEWPORT, device_scale_factor=1)
            page.goto(base + "/")
            wait_for_images(page)
            page.screenshot(path=out / "gallery.png")

            page.goto(f"{base}/record/{hashes[str(photos / 'astronaut.jpg')]}?schema=scene")
            wait_for_images(page)
            page.hover('tr[data-field="face_count"]')
            page.screenshot(path=out / "record.png", full_page=False)

            page.goto(base + "/review")
            wait_for_images(page)
            page.screenshot(path=out / "review.png")

            with __import__("openai_test_server").OpenAITestServer(prompt_tokens=812) as llm:
                os.environ |= {"OPENAI_BASE_URL": llm.base_url, "OPENAI_API_KEY": "demo"}
                llm.reply_tool_calls(
                    [("run_sql", {"query": "SELECT path, sha256, face_count FROM scene WHERE face_count > 0"})]
                )
                llm.reply_tool_calls([("search_images", {"query": "a cat", "k": 1})])
                llm.reply_text("One photo shows a face: astronaut.jpg. The cat is in chelsea-cat.jpg.")
                page.goto(base + "/chat")
                page.fill('#ask-form input[name="question"]', "Which photos show a face, and where is the cat?")
                page.press('#ask-form input[name="question"]', "Enter")
                page.locator(".cited a.thumb-link").first.wait_for()
                wait_for_images(page)
                page.screenshot(path=out / "chat.png")
            browser.close()
        server.should_exit = True
    for name in ("gallery", "record", "review", "chat"):
        print(out / f"{name}.png")


if __name__ == "__main__":
    main()
