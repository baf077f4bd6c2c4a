"""`visextract mcp`: the MCP SDK's own client talks to the server (a real `visextract mcp` process) over stdio
and over streamable HTTP, on a database made by a real extraction of real photos."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import os
import queue
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import database_fingerprint, save_sample
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.shared.exceptions import MCPError
from PIL import Image, ImageOps

import visextract as vx

TOOLS = ["classifier", "faces", "colors"]
EXPORT_KEYS = {
    "path",
    "sha256",
    "width",
    "height",
    "status",
    "error",
    "schema",
    "schema_version",
    "data",
    "provenance",
    "tools",
    "llm",
}  # fmt: skip  (DESIGN.md, "Export record shape")


class McpClient:
    """The SDK's ClientSession over stdio to `python -m visextract.cli mcp ARGS`, callable from plain tests.

    The session lives in a background event loop for the whole module, so the server starts once.
    """

    def __init__(self, *args: str) -> None:
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.stop = asyncio.Event()
        ready: asyncio.Future[ClientSession] = self.loop.create_future()
        self.task = asyncio.run_coroutine_threadsafe(self._serve(args, ready), self.loop)
        self.session = asyncio.run_coroutine_threadsafe(asyncio.wait_for(ready, 60), self.loop).result()

    async def _serve(self, args: tuple[str, ...], ready: asyncio.Future[ClientSession]) -> None:
        params = StdioServerParameters(
            command=sys.executable, args=["-m", "visextract.cli", "mcp", *args], env=dict(os.environ), cwd=os.getcwd()
        )
        try:
            async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
                await session.initialize()
                ready.set_result(session)
                await self.stop.wait()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
            raise

    def run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=120)

    def call(self, tool: str, **arguments: Any) -> Any:
        return self.run(self.session.call_tool(tool, arguments))

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.stop.set)
        self.task.result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)


@pytest.fixture(scope="module")
def library(photos: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """Real photos (plus a greyscale one, and two the tests will move and change), extracted offline."""
    folder = tmp_path_factory.mktemp("mcp")
    shutil.copytree(photos, folder / "photos")
    save_sample("camera", folder / "photos" / "camera.png")
    save_sample("coins", folder / "photos" / "moved.png")
    save_sample("hubble_deep_field", folder / "photos" / "changed.jpg")
    db = f"sqlite:///{folder / 'visextract.db'}"
    summary = vx.Extractor(db=db, tools=TOOLS, llm=None).run(folder / "photos")
    assert (summary.processed, summary.failed) == (8, 0)
    return db, folder / "photos"


@pytest.fixture(scope="module")
def mcp(library: tuple[str, Path]) -> Iterator[McpClient]:
    db, _ = library
    client = McpClient("--db", db, "--max-rows", "3", "--timeout", "1")
    yield client
    client.close()


def content_text(result: Any) -> str:
    return "\n".join(block.text for block in result.content if block.type == "text")


def assert_clean_error(result: Any, *words: str) -> None:
    """An MCP tool error: one line, no traceback, naming what went wrong."""
    assert result.is_error
    text = content_text(result)
    assert "\n" not in text and "Traceback" not in text, text
    for word in words:
        assert word in text, text


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---- the tools, over stdio ----------------------------------------------------------------------------------


def test_the_tools_are_listed_with_descriptions_and_typed_parameters(mcp):
    tools = {tool.name: tool for tool in mcp.run(mcp.session.list_tools()).tools}
    assert set(tools) == {"list_schemas", "search_images", "run_sql", "show_record", "get_image"}
    for tool in tools.values():
        assert len(tool.description) > 60  # written for an LLM, not a stub
        assert tool.annotations.read_only_hint is True
    search = tools["search_images"].input_schema
    assert search["required"] == ["query"]
    assert search["properties"]["query"]["type"] == "string" and search["properties"]["query"]["description"]
    assert search["properties"]["k"].items() >= {"type": "integer", "minimum": 1, "maximum": 50}.items()
    assert tools["run_sql"].input_schema["properties"]["query"]["type"] == "string"
    assert tools["get_image"].input_schema["required"] == ["sha256"]


def test_list_schemas_names_the_typed_views_to_query(mcp):
    result = mcp.call("list_schemas")
    assert not result.is_error
    catalog = result.structured_content
    assert catalog["dialect"] == "sqlite"
    (scene,) = catalog["typed_views"]
    assert scene["view"] == "scene" and scene["records_by_status"] == {"ok": 8}
    assert {"path", "sha256", "face_count", "labels"} <= set(scene["columns"])
    assert scene["fields"]["face_count"]  # field descriptions help the model write SQL
    assert json.loads(content_text(result)) == catalog  # clients that read only text get the same


@pytest.mark.parametrize(
    ("query", "expected"),
    [("a cup of coffee", "coffee.jpg"), ("a cat", "chelsea.png"), ("a rocket on the launch pad", "rocket.jpg")],
)
def test_search_finds_the_right_image(mcp, library, query, expected):
    _, folder = library
    result = mcp.call("search_images", query=query, k=3)
    assert not result.is_error
    hits = result.structured_content["hits"]
    assert len(hits) == 3
    assert Path(hits[0]["path"]).name == expected
    assert hits[0]["sha256"] == sha256_of(next(folder.rglob(expected)))
    assert hits[0]["score"] > hits[1]["score"] and hits[0]["snippet"]


def test_search_refuses_a_bad_k_in_one_line(mcp):
    assert_clean_error(mcp.call("search_images", query="a cat", k=500), "k must be between 1 and 50")


def test_arguments_of_the_wrong_shape_are_one_line_naming_them(mcp):
    assert_clean_error(mcp.call("run_sql"), "run_sql", "query: Field required")
    assert_clean_error(mcp.call("search_images", query="a cat", k="many"), "k: Input should be a valid integer")


def test_run_sql_reads_the_typed_views_with_a_row_limit(mcp, library):
    db, _ = library
    result = mcp.call("run_sql", query="SELECT path, face_count FROM scene WHERE face_count > 0 ORDER BY path")
    assert not result.is_error
    with sqlite3.connect(db.removeprefix("sqlite:///")) as connection:
        expected = [
            {"path": path, "face_count": faces}
            for path, faces in connection.execute(
                "SELECT path, json_extract(data, '$.face_count') FROM record "
                "WHERE is_current AND json_extract(data, '$.face_count') > 0 ORDER BY path"
            )
        ]
    assert any(Path(row["path"]).name == "astronaut.png" for row in expected)
    assert result.structured_content["rows"] == expected[:3]
    assert result.structured_content["truncated"] is (len(expected) > 3)

    many = mcp.call("run_sql", query="SELECT path FROM scene").structured_content  # 8 rows, --max-rows 3
    assert len(many["rows"]) == 3 and many["truncated"] is True


def test_run_sql_stops_a_query_at_the_time_limit(mcp):
    started = time.monotonic()
    result = mcp.call(
        "run_sql", query="WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) SELECT count(*) FROM n"
    )
    assert_clean_error(result)
    assert time.monotonic() - started < 5  # --timeout 1


@pytest.mark.parametrize(
    "query",
    [
        "DELETE FROM record",
        "DROP TABLE record",
        "UPDATE record SET status = 'failed'",
        "INSERT INTO run (schema_name, schema_version) VALUES ('x', 'y')",
        "WITH gone AS (DELETE FROM record RETURNING *) SELECT * FROM gone",
        "SELECT 1; DELETE FROM record",
        "ATTACH DATABASE '/tmp/x.db' AS x",
        "PRAGMA writable_schema = 1",
        "VACUUM",
        "CREATE TABLE notes (x TEXT)",
    ],
)
def test_writes_are_refused_and_the_database_is_unchanged(mcp, library, query):
    db, _ = library
    before = database_fingerprint(db)
    assert_clean_error(mcp.call("run_sql", query=query), "Error executing tool run_sql", "allowed")
    assert database_fingerprint(db) == before
    assert not mcp.call("list_schemas").is_error  # the server is still there


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("SELEC path FROM scene", ["cannot parse"]),
        ("SELECT path FROM no_such_table", ["no_such_table"]),
        ("SELECT no_such_column FROM scene", ["no_such_column"]),
    ],
)
def test_a_bad_query_is_a_one_line_tool_error(mcp, query, words):
    assert_clean_error(mcp.call("run_sql", query=query), *words)


def test_show_record_returns_the_export_shape(mcp, library, cli):
    db, folder = library
    path = folder / "astronaut.png"
    result = mcp.call("show_record", path_or_sha256=str(path))
    assert not result.is_error
    (record,) = result.structured_content["records"]
    assert set(record) >= EXPORT_KEYS
    assert record["path"] == str(path) and record["paths"] == [str(path)]
    assert record["sha256"] == sha256_of(path)
    assert (record["width"], record["height"]) == Image.open(path).size
    assert record["status"] == "ok" and record["schema"] == "scene"
    assert record["data"]["face_count"] == len(record["tools"]["faces"]) == 1
    assert set(record["provenance"]) == set(record["data"])
    assert set(record["tools"]) == set(TOOLS)

    exported = [json.loads(line) for line in cli("export", "--format", "jsonl", "--db", db).stdout.splitlines()]
    assert {k: v for k, v in record.items() if k != "paths"} == next(r for r in exported if r["path"] == str(path))

    by_sha = mcp.call("show_record", path_or_sha256=record["sha256"][:10]).structured_content["records"]
    assert by_sha == [record]


def test_show_record_of_an_unknown_image_is_a_one_line_error(mcp):
    assert_clean_error(mcp.call("show_record", path_or_sha256="/no/such/photo.jpg"), "no record for")
    assert_clean_error(mcp.call("show_record", path_or_sha256="ffffff0000"), "no record for")


def expected_thumbnail(path: Path, max_side: int = 512) -> Image.Image:
    """What the user should see: the photo upright, in RGB, scaled to fit max_side (computed with PIL here)."""
    image = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
    image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return image


def received_image(result: Any) -> Image.Image:
    (block,) = [block for block in result.content if block.type == "image"]
    assert block.mime_type == "image/jpeg"
    image = Image.open(io.BytesIO(base64.b64decode(block.data)))
    assert image.format == "JPEG"
    return image


def difference(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute pixel difference (0-255) after bringing b to a's size."""
    return float(np.abs(np.asarray(a, float) - np.asarray(b.convert("RGB").resize(a.size), float)).mean())


@pytest.mark.parametrize("name", ["coffee.jpg", "nested/rocket.jpg", "astronaut.png", "camera.png"])
def test_get_image_returns_a_thumbnail_of_that_image(mcp, library, name):
    _, folder = library
    path = folder / name
    result = mcp.call("get_image", sha256=sha256_of(path))
    assert not result.is_error
    image = received_image(result)
    expected = expected_thumbnail(path)
    assert max(image.size) <= 512 and image.mode == "RGB"
    assert abs(image.width - expected.width) <= 1 and abs(image.height - expected.height) <= 1
    assert difference(expected, image) < 4  # the same picture, up to JPEG and resampling
    other = expected_thumbnail(folder / "chelsea.png")
    assert difference(other, image) > 20  # and not some other picture
    assert str(path) in content_text(result)


def test_get_image_refuses_unknown_moved_and_changed_images_in_one_line(mcp, library):
    _, folder = library
    assert_clean_error(mcp.call("get_image", sha256="not-a-hash"), "not a sha256")
    assert_clean_error(mcp.call("get_image", sha256="ab" * 32), "no image with sha256")

    moved = folder / "moved.png"
    moved_sha = sha256_of(moved)
    moved.rename(folder.parent / "elsewhere.png")
    assert_clean_error(mcp.call("get_image", sha256=moved_sha), "no longer at any path")

    changed = folder / "changed.jpg"
    changed_sha = sha256_of(changed)
    shutil.copy(folder / "chelsea.png", changed)  # other content at the recorded path: never show it
    assert_clean_error(mcp.call("get_image", sha256=changed_sha), "no longer holds this image")


def test_record_schemas_are_resources(mcp):
    listed = {str(resource.uri): resource for resource in mcp.run(mcp.session.list_resources()).resources}
    assert "visextract://schemas/scene" in listed
    assert listed["visextract://schemas/scene"].mime_type == "application/json"
    templates = mcp.run(mcp.session.list_resource_templates()).resource_templates
    assert [t.uri_template for t in templates] == ["visextract://schemas/{name}"]

    (content,) = mcp.run(mcp.session.read_resource("visextract://schemas/scene")).contents
    document = json.loads(content.text)
    assert document["view"] == "scene"
    assert document["json_schema"]["properties"]["face_count"]["anyOf"][0]["type"] == "integer"
    with pytest.raises(MCPError, match="no schema 'vehicle'"):
        mcp.run(mcp.session.read_resource("visextract://schemas/vehicle"))


# ---- the command -----------------------------------------------------------------------------------------------


def visextract_process(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "visextract.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def test_no_database_is_a_one_line_error_and_none_is_created(tmp_path):
    missing = tmp_path / "nope.db"
    result = visextract_process("mcp", "--db", f"sqlite:///{missing}")
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "no visextract database" in result.stderr
    assert result.stdout == ""
    assert not missing.exists()


def test_options_of_http_mode_need_http(library):
    db, _ = library
    result = visextract_process("mcp", "--db", db, "--token", "secret")
    assert result.returncode == 2 and "--http" in result.stderr and result.stderr.strip().count("\n") == 0


def test_the_mcp_server_works_on_postgresql(photos, postgres_server, tmp_path):
    from conftest import new_postgres_database

    url, drop = new_postgres_database(postgres_server)
    try:
        folder = tmp_path / "two"
        folder.mkdir()
        for name in ("astronaut.png", "coffee.jpg"):
            shutil.copy(photos / name, folder / name)
        assert vx.Extractor(db=url, tools=TOOLS, llm=None).run(folder).processed == 2
        client = McpClient("--db", url)
        try:
            assert client.call("list_schemas").structured_content["dialect"] == "postgresql"
            hits = client.call("search_images", query="a cup of coffee", k=1).structured_content["hits"]
            assert Path(hits[0]["path"]).name == "coffee.jpg"
            assert_clean_error(client.call("run_sql", query="DELETE FROM record"), "not DELETE")
            rows = client.call("run_sql", query="SELECT count(*) AS n FROM record").structured_content["rows"]
            assert rows == [{"n": 2}]
            record = client.call("show_record", path_or_sha256=str(folder / "astronaut.png")).structured_content
            assert record["records"][0]["data"]["face_count"] == 1
            image = received_image(client.call("get_image", sha256=hits[0]["sha256"]))
            assert difference(expected_thumbnail(folder / "coffee.jpg"), image) < 4
        finally:
            client.close()
    finally:
        drop()


# ---- streamable HTTP and its token rule -------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def http_server(library: tuple[str, Path]) -> Iterator[Any]:
    """Start `visextract mcp --http ARGS`; returns (port, what it printed). Stopped after the test."""
    db, _ = library
    processes: list[subprocess.Popen[str]] = []

    def start(*args: str, printed_lines: int = 1) -> tuple[int, str]:
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "visextract.cli", "mcp", "--http", "--port", str(port), "--db", db, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        processes.append(process)
        printed: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [printed.put(line) for line in process.stderr], daemon=True).start()
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, f"the server exited: {list(printed.queue)}"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the server did not start listening"
                time.sleep(0.1)
        lines = []  # printed before it listens
        with suppress(queue.Empty):
            while len(lines) < printed_lines:
                lines.append(printed.get(timeout=2))
        return port, "".join(lines)

    yield start
    for process in processes:
        process.terminate()
        process.wait(timeout=10)


def post_initialize(port: int, token: str | None) -> int:
    """POST an MCP initialize request; the HTTP status."""
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
    body = json.dumps(initialize).encode()
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(f"http://127.0.0.1:{port}/mcp", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def http_tool_names(port: int, token: str | None) -> set[str]:
    """List the tools with the SDK's streamable HTTP client."""
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    async def list_tools() -> set[str]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with (
            httpx2.AsyncClient(headers=headers, timeout=30) as http,
            streamable_http_client(f"http://127.0.0.1:{port}/mcp", http_client=http) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            refused = await session.call_tool("run_sql", {"query": "DELETE FROM record"})
            assert refused.is_error
            return {tool.name for tool in (await session.list_tools()).tools}

    return asyncio.run(list_tools())


def test_http_on_loopback_needs_no_token(http_server):
    port, printed = http_server()
    assert f"http://127.0.0.1:{port}/mcp" in printed and "Bearer" not in printed
    assert http_tool_names(port, None) == {"list_schemas", "search_images", "run_sql", "show_record", "get_image"}


def test_http_off_loopback_requires_the_printed_token(http_server):
    port, printed = http_server("--host", "0.0.0.0", printed_lines=2)
    token = re.search(r"Authorization: Bearer (\S+)", printed).group(1)
    assert len(token) >= 20
    assert post_initialize(port, None) == 401
    assert post_initialize(port, "wrong-" + token) == 401
    assert post_initialize(port, token) == 200
    assert "run_sql" in http_tool_names(port, token)


def test_http_with_a_given_token_requires_it_even_on_loopback(http_server):
    port, _ = http_server("--token", "s3cret-token")
    assert post_initialize(port, None) == 401
    assert post_initialize(port, "s3cret-token") == 200


def test_token_rules():
    from visextract.http_access import access_token, bearer_matches

    assert access_token("127.0.0.1", None) is None and access_token("localhost", None) is None
    assert access_token("::1", None) is None
    generated = access_token("0.0.0.0", None)
    assert generated and generated != access_token("0.0.0.0", None)
    assert access_token("192.168.1.5", "mine") == "mine" == access_token("127.0.0.1", "mine")
    assert bearer_matches("Bearer mine", "mine") and bearer_matches("bearer  mine ", "mine")
    assert not bearer_matches("Bearer minex", "mine") and not bearer_matches("mine", "mine")
    assert not bearer_matches(None, "mine") and not bearer_matches("Basic mine", "mine")
