"""`visextract serve` as a user starts it: the printed URL, a generated token off loopback, one-line errors."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def db(web_library, tmp_path) -> str:
    return web_library.copy(tmp_path / "lib")


def start(*args: str) -> tuple[subprocess.Popen, str]:
    """Start the CLI; returns the process and the line it printed."""
    process = subprocess.Popen(
        [sys.executable, "-m", "visextract.cli", "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, COLUMNS="300"),
    )
    line = process.stdout.readline()
    return process, line


def wait_until_up(url: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.TransportError:
            assert time.monotonic() < deadline, "the server did not come up"
            time.sleep(0.1)


def test_serve_prints_its_url_and_answers_there(db):
    port = free_port()
    process, line = start("--db", db, "--port", str(port))
    try:
        assert f"at http://127.0.0.1:{port}/" in line and "token" not in line
        wait_until_up(f"http://127.0.0.1:{port}/static/app.css")
        page = httpx.get(f"http://127.0.0.1:{port}/")
        assert page.status_code == 200 and 'name="csrf-token"' in page.text
    finally:
        process.terminate()
        process.wait(10)


def test_off_loopback_a_token_is_generated_printed_and_required(db):
    port = free_port()
    process, line = start("--db", db, "--host", "0.0.0.0", "--port", str(port))
    try:
        token = re.search(r"\?token=([\w-]+)", line).group(1)
        assert len(token) >= 24
        base = f"http://127.0.0.1:{port}"
        wait_until_up(base + "/")
        assert httpx.get(base + "/api/records").status_code == 401
        assert httpx.get(base + "/api/records", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        with httpx.Client(base_url=base, follow_redirects=True) as browser:  # the printed URL logs a browser in
            assert browser.get(f"/?token={token}").status_code == 200
            assert browser.get("/api/records").status_code == 200
    finally:
        process.terminate()
        process.wait(10)


def test_a_port_in_use_is_one_clear_line(db, cli):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        result = cli("serve", "--db", db, "--port", str(busy.getsockname()[1]))
    assert result.exit_code != 0 and "cannot listen on 127.0.0.1" in result.stderr and "--port" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
