"""A real headless Chromium (Debian's package), driven over the DevTools protocol through a pipe.

`--remote-debugging-pipe` speaks CDP as NUL-terminated JSON on file descriptors 3 (to Chromium) and 4 (from
it): no WebSocket client to add, no port to find. One page target, attached in flat mode.

    with HeadlessChromium(tmp_path) as browser:
        browser.open("http://127.0.0.1:8765/dashboard?token=…")
        browser.wait_for("document.body.dataset.refreshes >= 1", 20, "the first figures")
        browser.screenshot(tmp_path / "page.png")
"""
from __future__ import annotations

import base64
import fcntl
import itertools
import json
import os
import queue
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

INSTALL_HINT = ("headless Chromium is missing: run `make chromium` (as root: apt-get install -y chromium), "
                "which `make test` does first")
CANDIDATES = ("chromium", "chromium-browser")


def chromium_path() -> str:
    """The browser to run, or the test fails naming how to install it (never a silent skip)."""
    for name in CANDIDATES:
        if found := shutil.which(name):
            return found
    pytest.fail(INSTALL_HINT)


class BrowserError(RuntimeError):
    pass


class HeadlessChromium:
    def __init__(self, profile: Path, width: int = 1360, height: int = 900):
        self._profile, self._size = profile, (width, height)
        self._ids = itertools.count(1)
        self._answers: dict[int, queue.Queue] = {}
        self._lock = threading.Lock()
        self._session = ""
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> HeadlessChromium:
        self._profile.mkdir(parents=True, exist_ok=True)
        to_browser, self._to_browser = os.pipe()
        self._from_browser, from_browser = os.pipe()
        # Above 2 and clear of 3 and 4, so that the child's dup2 onto 3 and 4 cannot clobber one with the other.
        wiring = {fcntl.fcntl(to_browser, fcntl.F_DUPFD, 10): 3, fcntl.fcntl(from_browser, fcntl.F_DUPFD, 10): 4}
        for fd in (to_browser, from_browser):
            os.close(fd)

        def wire_pipes() -> None:   # in the child: its fd 3 reads our commands, its fd 4 writes the answers
            for fd, target in wiring.items():
                os.dup2(fd, target)

        with open(self._profile / "chromium.log", "wb") as log:
            self.process = subprocess.Popen(
                [chromium_path(), "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
                 "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync", "--mute-audio",
                 f"--user-data-dir={self._profile}", f"--window-size={self._size[0]},{self._size[1]}", "about:blank"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log, pass_fds=(3, 4),
                preexec_fn=wire_pipes, start_new_session=True)
        for fd in wiring:
            os.close(fd)
        threading.Thread(target=self._read, daemon=True, name="cdp-reader").start()
        try:
            target = self._send("Target.createTarget", {"url": "about:blank"})["targetId"]
            self._session = self._send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            self.command("Emulation.setDeviceMetricsOverride", width=self._size[0], height=self._size[1],
                         deviceScaleFactor=1, mobile=False)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.process is None:
            return
        try:
            self._send("Browser.close", {}, timeout_s=5)
        except Exception:
            pass
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        try:   # its renderer and GPU helpers too
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.close(self._to_browser)

    # --- what a test does ------------------------------------------------------------------------------------
    def open(self, url: str) -> None:
        answer = self.command("Page.navigate", url=url)
        if answer.get("errorText"):
            raise BrowserError(f"Chromium could not open {url}: {answer['errorText']}")
        self.wait_for("document.readyState === 'complete'", 20, f"{url} to load")

    def evaluate(self, expression: str) -> Any:
        answer = self.command("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in answer:
            raise BrowserError(f"{expression!r} threw: {answer['exceptionDetails'].get('exception', {})}")
        return answer["result"].get("value")

    def wait_for(self, expression: str, timeout_s: float, what: str) -> Any:
        """Evaluate `expression` until it is truthy; fail naming `what` (and the page's text) after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                text = self.evaluate("document.body ? document.body.innerText.slice(0, 600) : ''")
                pytest.fail(f"timed out after {timeout_s}s waiting for {what}; the page shows: {text!r}")
            time.sleep(0.1)

    def text(self, selector: str) -> str:
        return self.evaluate(f"document.querySelector({json.dumps(selector)}).textContent")

    def screenshot(self, path: Path) -> Path:
        height = self.evaluate("Math.ceil(document.documentElement.scrollHeight)")
        self.command("Emulation.setDeviceMetricsOverride", width=self._size[0], height=max(height, self._size[1]),
                     deviceScaleFactor=1, mobile=False)
        data = self.command("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    # --- the protocol ----------------------------------------------------------------------------------------------
    def command(self, method: str, timeout_s: float = 20, **params: Any) -> dict[str, Any]:
        return self._send(method, params, timeout_s, self._session)

    def _send(self, method: str, params: dict[str, Any], timeout_s: float = 20, session: str = "") -> dict[str, Any]:
        number = next(self._ids)
        answers: queue.Queue = queue.Queue(1)
        self._answers[number] = answers
        message = {"id": number, "method": method, "params": params} | ({"sessionId": session} if session else {})
        with self._lock:
            os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        try:
            answer = answers.get(timeout=timeout_s)
        except queue.Empty:
            raise BrowserError(f"Chromium did not answer {method} within {timeout_s}s") from None
        finally:
            self._answers.pop(number, None)
        if "error" in answer:
            raise BrowserError(f"{method}: {answer['error'].get('message')}")
        return answer.get("result", {})

    def _read(self) -> None:
        buffer = b""
        with os.fdopen(self._from_browser, "rb", buffering=0) as stream:
            while chunk := stream.read(65536):
                buffer += chunk
                *messages, buffer = buffer.split(b"\0")
                for raw in messages:
                    message = json.loads(raw)
                    if "id" in message and message["id"] in self._answers:
                        self._answers[message["id"]].put(message)
