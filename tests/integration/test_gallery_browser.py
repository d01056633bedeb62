"""The generated gallery in a real browser (headless Chromium over the DevTools protocol).

The run's source data carries script-injection payloads (an occupation and a product category); the page must
show them as text, run no script, open no dialog, and render every image.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, NoReturn

import duckdb
import pytest

from persona_pipeline import stages
from persona_pipeline.config import load_settings
from persona_pipeline.contracts import ImageRecord
from persona_pipeline.storage import LocalObjectStore, read_json
from tests.services import require_services

pytestmark = pytest.mark.integration

D = date(2026, 12, 1)
IMG_PAYLOAD = "<img src=x onerror=alert(1)>"
SCRIPT_PAYLOAD = "<script>window.__pwned=1</script>"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--window-size=1280,1600",
)
# What the page reports about itself once loaded.
PAGE_PROBE = """(() => {
  const images = Array.from(document.images);
  return {
    images: images.length,
    allRendered: images.every(i => i.complete && i.naturalWidth > 0),
    broken: images.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute('src')),
    sources: images.map(i => i.getAttribute('src')),
    pwned: typeof window.__pwned,
    scripts: document.scripts.length,
    handlers: document.querySelectorAll('[onerror], [onload], [onclick]').length,
    text: document.documentElement.textContent,
  };
})()"""


def find_chromium() -> str | None:
    """The Chromium binary: /usr/bin/chromium, else the usual names on PATH."""
    for candidate in ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(candidate)
        if path:
            return path
    return None


def _unavailable(reason: str) -> NoReturn:
    # Same convention as the service fixtures: skip, unless PERSONA_REQUIRE_SERVICES=1 makes it an error.
    message = f"Chromium unavailable: {reason}"
    if require_services():
        pytest.fail(f"{message} (PERSONA_REQUIRE_SERVICES=1, so this is an error)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="module")
def chromium() -> str:
    path = find_chromium()
    if path is None:
        _unavailable("no /usr/bin/chromium and no chromium on PATH (install the Debian 'chromium' package)")
    return path


class DevToolsPage:
    """A minimal DevTools-protocol client for one page; JavaScript dialogs are recorded and dismissed."""

    def __init__(self, websocket: Any) -> None:
        self._ws = websocket
        self._next_id = 0
        self.events: list[dict[str, Any]] = []
        self.dialogs: list[str] = []

    def call(self, method: str, timeout: float = 30.0, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        request_id = self._next_id
        self._ws.send(json.dumps({"id": request_id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            message = self._receive(deadline, method)
            if message.get("id") == request_id:
                if "error" in message:
                    raise RuntimeError(f"DevTools {method} failed: {message['error']}")
                return dict(message.get("result", {}))

    def wait_for(self, event: str, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        for seen in self.events:
            if seen["method"] == event:
                return seen
        while True:
            message = self._receive(deadline, event)
            if message.get("method") == event:
                return message

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def _receive(self, deadline: float, waiting_for: str) -> dict[str, Any]:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no answer to {waiting_for} from Chromium")
        message: dict[str, Any] = json.loads(self._ws.recv(timeout=remaining))
        if "method" in message:
            self.events.append(message)
            if message["method"] == "Page.javascriptDialogOpening":
                # An open dialog blocks the page: note it and dismiss it so the test can report it.
                self.dialogs.append(str(message["params"].get("message")))
                self._next_id += 1
                self._ws.send(
                    json.dumps(
                        {"id": self._next_id, "method": "Page.handleJavaScriptDialog", "params": {"accept": True}}
                    )
                )
        return message


@dataclass
class Browser:
    process: subprocess.Popen[bytes]
    port: int
    profile: Path

    @contextlib.contextmanager
    def page(self) -> Iterator[DevToolsPage]:
        from websockets.sync.client import connect

        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json/list", timeout=10) as response:
            targets = json.loads(response.read())
        target = next(t for t in targets if t.get("type") == "page")
        with connect(target["webSocketDebuggerUrl"], max_size=None, open_timeout=10) as websocket:
            yield DevToolsPage(websocket)


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[Browser]:
    profile = Path(tempfile.mkdtemp(prefix="persona-chromium-"))
    log = open(profile.parent / f"{profile.name}.log", "wb")  # noqa: SIM115 - closed below
    command = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0", "about:blank"]
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        # With port 0 Chromium picks a free port and writes it to DevToolsActivePort in the profile.
        active = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (active.is_file() and active.read_text().strip()):
            if process.poll() is not None or time.monotonic() > deadline:
                log.flush()
                tail = Path(log.name).read_text(errors="replace")[-2000:]
                _unavailable(f"{chromium} did not start (exit code {process.poll()}):\n{tail}")
            time.sleep(0.05)
        yield Browser(process, int(active.read_text().split()[0]), profile)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()
        Path(log.name).unlink(missing_ok=True)
        shutil.rmtree(profile, ignore_errors=True)


@dataclass(frozen=True)
class GalleryRun:
    store: LocalObjectStore
    gallery: Path
    records: list[ImageRecord]


@pytest.fixture(scope="module")
def hostile_gallery(sample_warehouse: Path, tmp_path_factory: pytest.TempPathFactory) -> GalleryRun:
    root = tmp_path_factory.mktemp("gallery-browser")
    warehouse = root / "warehouse.duckdb"
    warehouse.write_bytes(sample_warehouse.read_bytes())
    con = duckdb.connect(str(warehouse))
    try:
        con.execute("UPDATE customers SET occupation = ? WHERE occupation = 'student'", [IMG_PAYLOAD])
        for table in ("orders", "events"):
            con.execute(f"UPDATE {table} SET category = ? WHERE category = 'wine'", [SCRIPT_PAYLOAD])
    finally:
        con.close()
    settings = load_settings(
        environ={},
        overrides={
            "warehouse.url": f"duckdb:///{warehouse}",
            "storage.root": str(root / "store"),
            "segmentation.min_segment_size": 30,
        },
    )
    ctx = stages.make_context(settings, D, "browser-run", progress=lambda _: None)
    result = stages.run_all(ctx)
    assert isinstance(ctx.store, LocalObjectStore)
    records = [
        ImageRecord.from_dict(r)
        for key in ctx.store.list_keys("dt=2026-12-01/image_records/")
        for r in read_json(ctx.store, key)
    ]
    return GalleryRun(ctx.store, ctx.store.path_for(result["gallery_key"]), records)


@dataclass(frozen=True)
class Rendered:
    probe: dict[str, Any]
    dialogs: list[str]
    screenshot: Path
    blank_screenshot: Path


@pytest.fixture(scope="module")
def rendered(browser: Browser, hostile_gallery: GalleryRun, tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    out = tmp_path_factory.mktemp("screens")
    with browser.page() as page:
        page.call("Page.enable")
        page.call("Runtime.enable")
        page.call("Emulation.setDeviceMetricsOverride", width=1280, height=1600, deviceScaleFactor=1, mobile=False)
        screens = {}
        for name, url in (("blank", "about:blank"), ("gallery", hostile_gallery.gallery.as_uri())):
            page.events.clear()
            page.call("Page.navigate", url=url)
            page.wait_for("Page.loadEventFired")
            shot = page.call("Page.captureScreenshot", format="png")
            screens[name] = out / f"{name}.png"
            screens[name].write_bytes(base64.b64decode(shot["data"]))
        probe = page.evaluate(PAGE_PROBE)
        return Rendered(probe, list(page.dialogs), screens["gallery"], screens["blank"])


def test_payloads_reached_the_page_as_text(hostile_gallery: GalleryRun, rendered: Rendered) -> None:
    html = hostile_gallery.gallery.read_text(encoding="utf-8")
    # The hostile values are really in the gallery (escaped), so the checks below are not vacuous.
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert SCRIPT_PAYLOAD in rendered.probe["text"]
    assert IMG_PAYLOAD in rendered.probe["text"]


def test_payloads_stay_inert(rendered: Rendered) -> None:
    assert rendered.dialogs == []
    assert rendered.probe["pwned"] == "undefined"
    assert rendered.probe["scripts"] == 0
    assert rendered.probe["handlers"] == 0


def test_every_image_renders(hostile_gallery: GalleryRun, rendered: Rendered) -> None:
    probe = rendered.probe
    assert probe["broken"] == []
    assert probe["allRendered"] is True
    assert probe["images"] >= len(hostile_gallery.records) >= 10
    prefix = "dt=2026-12-01/"
    assert {r.key.removeprefix(prefix) for r in hostile_gallery.records} <= set(probe["sources"])


def test_screenshot_shows_the_gallery(rendered: Rendered) -> None:
    data = rendered.screenshot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1280, 1600)  # the window: header, size chart and the first persona cards
    # Portraits and charts compress far worse than an empty page of the same width.
    blank = rendered.blank_screenshot.read_bytes()
    assert len(data) > 50_000 and len(data) > 20 * len(blank)


def test_the_page_needs_no_network(hostile_gallery: GalleryRun) -> None:
    html = hostile_gallery.gallery.read_text(encoding="utf-8")
    assert "http://" not in html and "https://" not in html
    assert os.path.isfile(hostile_gallery.store.path_for(hostile_gallery.records[0].key))
