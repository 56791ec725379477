"""`latentpedia serve` runs the web atlas over HTTP (a real uvicorn process)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import httpx

from tests.web_atlas import sqlite_atlas


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(url: str, proc: subprocess.Popen, seconds: float = 60) -> httpx.Response:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1]
        try:
            return httpx.get(url, timeout=2)
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {seconds} s")


def test_serve_answers_pages_and_json(tmp_path_factory):
    atlas = sqlite_atlas(tmp_path_factory)
    port = free_port()
    cmd = [sys.executable, "-m", "latentpedia.cli", "serve", "--db", atlas.url, "--port", str(port)]
    proc = subprocess.Popen(cmd, env=os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        home = wait_until_up(f"{base}/api/home", proc)
        assert home.status_code == 200 and home.json()["models"][0]["id"] == atlas.model
        page = httpx.get(f"{base}/{atlas.model}/{atlas.sources[0]}/0", headers={"accept": "text/html"})
        assert page.status_code == 200 and 'rel="alternate"' in page.headers["link"]
        assert httpx.get(f"{base}/static/style.css").status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)
