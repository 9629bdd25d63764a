"""Headless Chromium for the page tests, driven over the DevTools protocol on a pipe.

`chromium --remote-debugging-pipe` reads protocol commands from its fd 3 and writes replies and events to its fd 4,
as JSON messages each ended by a NUL byte (the transport puppeteer and playwright use too). That needs no
websocket and no package, only the browser: Debian's `chromium` (`apt-get install chromium`).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Flags for a browser run as root in a sandboxed CI: no sandbox (root), no GPU, and nothing that calls out to the
# network on its own (component updates, sync, field trials, the first-run page).
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-field-trial-config",
    "--no-first-run",
    "--no-default-browser-check",
    "--hide-scrollbars",
    "--mute-audio",
    "--remote-debugging-pipe",
]


TRAMPOLINE = """import os, sys
reads, writes = int(sys.argv[1]), int(sys.argv[2])
os.dup2(reads, 3)
os.dup2(writes, 4)
os.close(reads)
os.close(writes)
os.execv(sys.argv[3], sys.argv[3:])
"""


def find_chromium() -> str | None:
    """The browser's path: $CHROMIUM, else the first of Debian's and other distributions' names on PATH."""
    named = os.environ.get("CHROMIUM")
    if named:
        return named
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class Loaded:
    """What a page did while it loaded: its console errors and uncaught exceptions, and failed requests."""

    url: str
    errors: list[str] = field(default_factory=list)


class Chromium:
    """One headless browser with one tab; use as a context manager."""

    def __init__(self, executable: str, profile: Path, timeout: float = 60.0) -> None:
        self.timeout = timeout
        # The browser's fds 3 and 4 are its ends of our pipes, put there by a small Python trampoline (subprocess
        # maps only fds 0-2; dash cannot name fds above 9). Our fds sit above 10, so dup2 cannot clobber one.
        to_browser = [_high(fd) for fd in os.pipe()]
        from_browser = [_high(fd) for fd in os.pipe()]
        reads, writes = to_browser[0], from_browser[1]
        command = [
            sys.executable,
            "-c",
            TRAMPOLINE,
            str(reads),
            str(writes),
            executable,
            *FLAGS,
            f"--user-data-dir={profile}",
            "about:blank",
        ]
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            pass_fds=(reads, writes),
        )
        os.close(reads)
        os.close(writes)
        self._out = os.fdopen(to_browser[1], "wb", buffering=0)
        self._in = os.fdopen(from_browser[0], "rb", buffering=0)
        self._messages: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._events: list[dict[str, Any]] = []
        self._next_id = 0
        threading.Thread(target=self._read, daemon=True).start()
        self._stderr: list[bytes] = []
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        self.session: str | None = None  # the tab's protocol session, once attached
        self.session = self._open_tab()

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError, RuntimeError, TimeoutError):  # already gone: nothing to close
            self.send("Browser.close", session=None)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._out.close()

    # ------------------------------------------------------------------------------------------- protocol

    def _read(self) -> None:
        """Split the browser's output into messages (NUL-ended JSON); None when it closes the pipe."""
        buffer = b""
        while True:
            chunk = self._in.read(65536)
            if not chunk:
                self._messages.put(None)
                return
            buffer += chunk
            *complete, buffer = buffer.split(b"\0")
            for raw in complete:
                self._messages.put(json.loads(raw))

    def _drain_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self._stderr.append(line)

    def _next(self, deadline: float) -> dict[str, Any]:
        try:
            message = self._messages.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise TimeoutError(f"Chromium did not answer within {self.timeout:g} s") from None
        if message is None:
            tail = b"".join(self._stderr[-20:]).decode(errors="replace")
            raise RuntimeError(f"Chromium closed its protocol pipe (exit {self.process.poll()}): {tail}")
        return message

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = "") -> dict[str, Any]:
        """Send a command (to the tab unless `session` is None: the browser) and wait for its result; events that
        arrive meanwhile are kept for `wait_for` and `errors`."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        target = self.session if session == "" else session
        if target:
            message["sessionId"] = target
        self._out.write(json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._next(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply.get("result", {})
                return result
            if "method" in reply:
                self._events.append(reply)

    def wait_for(self, event: str) -> dict[str, Any]:
        """The first kept or coming event of this name on the tab, taken off the list."""
        deadline = time.monotonic() + self.timeout
        while True:
            for i, message in enumerate(self._events):
                if message["method"] == event and message.get("sessionId") == self.session:
                    return self._events.pop(i)
            message = self._next(deadline)
            if "method" in message:
                self._events.append(message)

    def _open_tab(self) -> str:
        target = self.send("Target.createTarget", {"url": "about:blank"}, session=None)["targetId"]
        session: str = self.send("Target.attachToTarget", {"targetId": target, "flatten": True}, session=None)[
            "sessionId"
        ]
        self.session = session
        for domain in ("Page.enable", "Runtime.enable", "Log.enable"):
            self.send(domain)
        return session

    # ------------------------------------------------------------------------------------------- pages

    def open(self, url: str, width: int = 1280, height: int = 900) -> Loaded:
        """Load `url` in a `width` px wide window and wait for its load event (images included)."""
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        self._events.clear()
        self.send("Page.navigate", {"url": url})
        self.wait_for("Page.loadEventFired")
        self.evaluate("1")  # a round trip, so events sent during the load have arrived
        return Loaded(url, [_error(m) for m in self._events if _error(m)])

    def evaluate(self, expression: str) -> Any:
        """The JSON value of a JavaScript expression evaluated in the page."""
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:80]}...: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path: Path) -> Path:
        """The whole page (not only the window) as a PNG, for a person to look at."""
        shot = self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
        path.write_bytes(base64.b64decode(shot["data"]))
        return path


def _high(fd: int) -> int:
    """`fd` moved to a number above 10 (close-on-exec, as os.pipe makes it)."""
    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return high


def _error(message: dict[str, Any]) -> str:
    """A console error, an uncaught exception or a failed load, as one line; '' for any other event."""
    params = message.get("params", {})
    if message.get("method") == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
        return "console: " + " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
    if message.get("method") == "Runtime.exceptionThrown":
        details = params.get("exceptionDetails", {})
        return "exception: " + str(details.get("exception", {}).get("description") or details.get("text"))
    if message.get("method") == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
        entry = params["entry"]
        return f"{entry.get('source')}: {entry.get('text')} {entry.get('url', '')}".strip()
    return ""


def parse_colour(css: str) -> tuple[float, float, float]:
    """An rgb()/rgba() colour as the browser computes it, over the white page where it is translucent."""
    parts = [float(p) for p in re.findall(r"[\d.]+", css)]
    alpha = parts[3] if len(parts) == 4 else 1.0
    r, g, b = (alpha * c + (1 - alpha) * 255 for c in parts[:3])
    return r, g, b


def contrast(a: tuple[float, float, float], b: tuple[float, float, float]) -> float:
    """WCAG 2 contrast ratio of two sRGB colours."""

    def luminance(rgb: tuple[float, float, float]) -> float:
        linear = [c / 255 / 12.92 if c / 255 <= 0.03928 else ((c / 255 + 0.055) / 1.055) ** 2.4 for c in rgb]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    light, dark = sorted((luminance(a), luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)
