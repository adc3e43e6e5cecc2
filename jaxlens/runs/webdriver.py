"""A small W3C WebDriver client (stdlib only) for headless chromium: screenshots and tests.

`Browser()` starts `chromedriver` on a free local port and opens one headless chromium session;
`open(url)`, `find(css)`, `click(element)`, `type(element, text)`, `text(element)`, `run(js)`,
`alert_text()` and `screenshot(path)` are single WebDriver commands. It needs Debian's
`chromium` and `chromium-driver` (`find_chromium` says whether they are there); nothing is
downloaded.
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

_ELEMENT = "element-6066-11e4-a52e-4f735466cecf"  # the W3C web element identifier


class WebDriverError(RuntimeError):
    """A WebDriver command failed (`.error` holds the W3C error code, e.g. `no such alert`)."""

    def __init__(self, error: str, message: str):
        super().__init__(f"{error}: {message}")
        self.error = error


def find_chromium() -> tuple[str, str] | None:
    """`(chromium, chromedriver)` paths, or None when either is missing."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Browser:
    """One headless chromium session over WebDriver; use as a context manager."""

    def __init__(self, *, width: int = 1400, height: int = 900, timeout: float = 30.0):
        found = find_chromium()
        if found is None:
            raise FileNotFoundError(
                "chromium and chromedriver are not installed "
                "(bash .ci/peers/browser.sh installs them)"
            )
        browser, driver = found
        self.port = _free_port()
        self.proc = subprocess.Popen(
            [driver, f"--port={self.port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.base = f"http://127.0.0.1:{self.port}"
        self.timeout = timeout
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._call("GET", "/status")
                break
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline:
                    self.proc.kill()
                    raise
                time.sleep(0.1)
        args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            f"--window-size={width},{height}",
            "--allow-file-access-from-files",
        ]
        caps = {"browserName": "chrome", "goog:chromeOptions": {"binary": browser, "args": args}}
        try:
            value = self._call("POST", "/session", {"capabilities": {"alwaysMatch": caps}})
        except BaseException:
            self.proc.kill()
            raise
        self.session = value["sessionId"]

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.base + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read())["value"]
        except urllib.error.HTTPError as err:
            value = json.loads(err.read() or b"{}").get("value", {})
            raise WebDriverError(
                value.get("error", str(err.code)), value.get("message", "")
            ) from None

    def _s(self, path: str, method: str = "POST", body: Any = None) -> Any:
        return self._call(
            method,
            f"/session/{self.session}{path}",
            {} if body is None and method == "POST" else body,
        )

    def open(self, url: str) -> None:
        self._s("/url", body={"url": url})

    def find(self, css: str) -> str:
        return self._s("/element", body={"using": "css selector", "value": css})[_ELEMENT]

    def find_all(self, css: str) -> list[str]:
        found = self._s("/elements", body={"using": "css selector", "value": css})
        return [e[_ELEMENT] for e in found]

    def click(self, element: str) -> None:
        self._s(f"/element/{element}/click")

    def type(self, element: str, text: str) -> None:
        self._s(f"/element/{element}/value", body={"text": text})

    def text(self, element: str) -> str:
        return self._s(f"/element/{element}/text", "GET")

    def run(self, script: str, *args: Any) -> Any:
        return self._s("/execute/sync", body={"script": script, "args": list(args)})

    def alert_text(self) -> str | None:
        """The open dialog's text, or None when no dialog is open."""
        try:
            return self._s("/alert/text", "GET")
        except WebDriverError as err:
            if err.error == "no such alert":
                return None
            raise

    def screenshot(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_bytes(base64.b64decode(self._s("/screenshot", "GET")))
        return path

    def close(self) -> None:
        try:
            self._s("", "DELETE")
        except (WebDriverError, OSError):
            pass
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def screenshot_site(index: str | Path, out: str | Path, *, click: str | None = None) -> Path:
    """Open `index.html` from `file://`, optionally click the first element matching `click`,
    and save a PNG screenshot to `out`."""
    with Browser() as b:
        b.open(Path(index).resolve().as_uri())
        if click:
            nodes = b.find_all(click)
            if nodes:
                b.click(nodes[0])
        return b.screenshot(out)
