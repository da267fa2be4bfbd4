"""Starting a real gunicorn on ``cdp.wsgi`` in a test, one way for every test."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
# gunicorn's control socket is one path per user: test servers, and anyone else's
# gunicorn, must not share it.
GUNICORN = [sys.executable, "-m", "gunicorn", "cdp.wsgi", "--no-control-socket"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def gunicorn_serving(env: dict[str, str], *options: str) -> Iterator[str]:
    """``with gunicorn_serving(env) as url:`` a server on a free loopback port,
    up once ``/healthz`` answers, stopped afterwards."""
    port = free_port()
    server = subprocess.Popen(
        [*GUNICORN, "--bind", f"127.0.0.1:{port}", *options],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"{url}/healthz", timeout=10)
                break
            except requests.RequestException:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"gunicorn did not start: {server.stderr.read().decode()}"  # type: ignore[union-attr]
                    ) from None
                time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
