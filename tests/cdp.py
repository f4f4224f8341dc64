"""A real headless chromium driven over the DevTools protocol, for the browser tests.

Owns starting Debian's chromium with `--remote-debugging-pipe` (the protocol as NUL-terminated
JSON on the browser's file descriptors 3 and 4, so no port and no websocket library), opening
a page, running JavaScript in it and taking screenshots, and stopping the browser. It must
never hold assertions about a page: those belong to the tests.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--window-size=1280,2000",
)


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None and Path("/usr/bin/chromium").exists():
        found = "/usr/bin/chromium"
    if found is None:
        pytest.fail("chromium is not installed: run .ci/install-browser (Debian's chromium)")
    return found


def _above_nine(fd: int) -> int:
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return moved


class Browser:
    """One chromium process and one page in it. Use as a context manager."""

    def __init__(self, profile: Path, *, timeout: float = 60) -> None:
        self.timeout = timeout
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        # chromium reads commands on fd 3 and writes replies on fd 4: a small Python moves the
        # pipes there and then becomes chromium. They are first moved above 9, so that moving
        # one onto 3 cannot overwrite the other.
        to_browser_r = _above_nine(to_browser_r)
        from_browser_w = _above_nine(from_browser_w)
        trampoline = (
            "import os, sys\n"
            f"os.dup2({to_browser_r}, 3)\n"
            f"os.dup2({from_browser_w}, 4)\n"
            "os.execv(sys.argv[1], sys.argv[1:])\n"
        )
        self._log = (profile.parent / "chromium.log").open("wb")
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                trampoline,
                chromium(),
                *FLAGS,
                f"--user-data-dir={profile}",
                "--remote-debugging-pipe",
                "about:blank",
            ],
            pass_fds=(to_browser_r, from_browser_w),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self._session: str | None = None

    def __enter__(self) -> Browser:
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        attached = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})
        self._session = attached["sessionId"]
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        try:
            if self._process.poll() is None:
                self._session = None
                self.send("Browser.close")
            self._process.wait(timeout=30)
        except (OSError, RuntimeError, subprocess.TimeoutExpired):
            self._process.kill()
            self._process.wait()
        finally:
            os.close(self._to_browser)
            os.close(self._from_browser)
            self._log.close()

    def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Call `method` (on the page once one is open) and return its result."""
        self._next_id += 1
        ident = self._next_id
        message: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if self._session is not None:
            message["sessionId"] = self._session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._receive(deadline)
            if reply.get("id") != ident:
                continue  # an event, or the reply to something else
            if "error" in reply:
                raise RuntimeError(f"{method}: {reply['error']}")
            result: dict[str, Any] = reply["result"]
            return result

    def _receive(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_browser], [], [], left)[0]:
                raise RuntimeError("chromium did not answer in time")
            chunk = os.read(self._from_browser, 1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\0")
        found: dict[str, Any] = json.loads(line)
        return found

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (a promise is awaited)."""
        done = self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in done:
            raise RuntimeError(f"the page threw: {done['exceptionDetails']}")
        return done["result"].get("value")

    def open(self, page: Path, ready: str) -> None:
        """Load `page` and wait until the JavaScript expression `ready` is true."""
        self.send("Page.navigate", {"url": page.resolve().as_uri()})
        deadline = time.monotonic() + self.timeout
        while not self.evaluate(f"Boolean({ready})"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{page} never became ready ({ready})")
            time.sleep(0.05)

    def screenshot(self, path: Path, selector: str = "body") -> None:
        """A PNG of the element `selector`, whole even where it is wider than the window."""
        box = self.evaluate(
            f"(function () {{ var r = document.querySelector({json.dumps(selector)})"
            ".getBoundingClientRect(); return [r.left + scrollX, r.top + scrollY,"
            " Math.max(r.width, r.right - r.left), r.height]; })()"
        )
        x, y, width, height = box
        shot = self.send(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {"x": x, "y": y, "width": width, "height": height, "scale": 1},
            },
        )
        path.write_bytes(base64.b64decode(shot["data"]))
