"""A real gunicorn (serve/gunicorn.conf.py) on a free loopback port, and /proc helpers for its processes."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.procfs import children, rss_bytes

ROOT = Path(__file__).resolve().parents[1]
TEST_WSGI_DIR = Path(__file__).resolve().parent / "hardening"
START_TIMEOUT_S = 120  # workers importing torch on a busy 2-core machine
POLL_S = 0.1  # polling interval while waiting for a state, never a timing assumption


class GunicornServer:
    """gunicorn as a subprocess; reader threads drain its pipes so they never fill up."""

    def __init__(self, env_overrides: dict[str, str], app: str = "serve.wsgi:app") -> None:
        env = {**os.environ, "PORT": "0", "HOST": "127.0.0.1", "HF_HUB_OFFLINE": "1", **env_overrides}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        # Test-only WSGI modules (tests/hardening/holding_wsgi.py) must be importable by gunicorn.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TEST_WSGI_DIR), env.get("PYTHONPATH")]))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "serve/gunicorn.conf.py", app],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self.port: int | None = None
        self._port_event = threading.Event()
        self._readers = [
            threading.Thread(target=self._read, args=(self.process.stdout, self.stdout), daemon=True),
            threading.Thread(target=self._read, args=(self.process.stderr, self.stderr), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream, lines: list[str]) -> None:
        for line in stream:
            lines.append(line)
            found = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", line)
            if found:
                self.port = int(found.group(1))
                self._port_event.set()
        self._port_event.set()  # the process ended: stop waiting for a port

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def request(
        self, method: str, path: str, body: dict | bytes | None = None, timeout: float = 60, headers=None
    ) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            sent_headers = dict(headers or {})
            if isinstance(body, dict):
                body = json.dumps(body).encode()
                sent_headers.setdefault("Content-Type", "application/json")
            connection.request(method, path, body=body, headers=sent_headers)
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()

    def wait_for(self, path: str, accept, timeout: float = START_TIMEOUT_S) -> bytes:
        """Poll GET `path` until `accept(status, body)` holds; returns that body."""
        assert self._port_event.wait(timeout) and self.port, "gunicorn never listened\n" + self.log()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, "gunicorn exited\n" + self.log()
            try:
                status, _, body = self.request("GET", path, timeout=5)
                if accept(status, body):
                    return body
            except OSError:
                pass
            time.sleep(POLL_S)
        raise AssertionError(f"gunicorn: {path} never got there\n" + self.log())

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> None:
        self.wait_for("/readyz", lambda status, _: status == 200, timeout)

    def wait_for_workers(self, count: int, timeout: float = START_TIMEOUT_S) -> list[int]:
        """Pids of the master's children once there are exactly `count` of them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pids = children(self.process.pid)
            if len(pids) == count:
                return pids
            time.sleep(POLL_S)
        raise AssertionError(f"expected {count} workers, have {children(self.process.pid)}\n" + self.log())

    def rss_bytes(self) -> int:
        return rss_bytes([self.process.pid, *children(self.process.pid)])

    def terminate(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def finish(self, timeout: float = 60) -> int:
        code = self.process.wait(timeout)
        for reader in self._readers:
            reader.join(10)
        return code

    def kill(self) -> None:
        """SIGKILL the master and its workers (a test that failed half-way must not leave any behind)."""
        if self.process.poll() is None:
            workers = children(self.process.pid)
            self.process.kill()
            for pid in workers:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.process.wait(10)

    def log(self) -> str:
        return "".join(self.stderr[-200:]) + "".join(self.stdout[-50:])


@contextmanager
def running_server(env_overrides: dict[str, str], app: str = "serve.wsgi:app") -> Iterator[GunicornServer]:
    """A ready GunicornServer for a `with` block (or a fixture); killed with its workers afterwards."""
    server = GunicornServer(env_overrides, app=app)
    try:
        server.wait_ready()
        yield server
    finally:
        server.kill()
