"""A real browser for UI tests: Debian's chromium driven by Playwright against a ComfyUI host.

Nothing is downloaded: Playwright drives the system's ``/usr/bin/chromium`` (``DISTORCH_CHROMIUM``
overrides) with the flags this machine needs. Console errors are collected and compared with what
the same browser logs against a ComfyUI without the pack (a bare 0.3.75 already logs 404s for
``/user.css``, ``/api/userdata...``, ``/favicon.ico`` and fails its update check).
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import hostenv

ARTIFACTS = hostenv.REPO_ROOT / "test-artifacts"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ORIGIN = re.compile(r"https?://(127\.0\.0\.1|localhost):\d+")


def chromium_path() -> str:
    """The browser, or a skip naming the package (a failure in CI, where it must run)."""
    path = os.environ.get("DISTORCH_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if Path(path).exists() and importlib.util.find_spec("playwright") is not None:
        return path
    message = ("browser tests need Debian's chromium (`apt-get install chromium`) and the Python "
               "package playwright (tools/requirements-test.txt); set DISTORCH_CHROMIUM to use another build")
    if os.environ.get("DISTORCH_REQUIRE_BROWSER") or os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@dataclass
class ConsoleLog:
    """Console errors and uncaught page errors, each with the URL it names (if any)."""

    entries: list[tuple[str, str]] = field(default_factory=list)  # (text, url)

    def record_console(self, message) -> None:
        if message.type == "error":
            self.entries.append((message.text, (message.location or {}).get("url", "")))

    def record_page_error(self, error) -> None:
        self.entries.append((f"uncaught: {error}", ""))


# The host frontend's own update check (unreachable here): it fires a few seconds after a page
# loads, whenever the frontend gets to it, so whether a page logged it yet says nothing of the pack.
HOST_UPDATE_CHECK = "https://api.comfy.org/releases?"


def normalized(entries) -> set[tuple[str, str]]:
    """Console entries without the server's origin (each test server has its own port) and
    without the host's update check."""
    return {(ORIGIN.sub("HOST", text), ORIGIN.sub("HOST", url)) for text, url in entries
            if not url.startswith(HOST_UPDATE_CHECK)}


# The page has started as a user sees it: the app is there and its loading spinner is gone. Frontend
# 1.49 (ComfyUI 0.33.0) sets window.app before it restores the workflow tabs a profile had open, and
# only then hides the spinner; a test that loaded a workflow earlier had it replaced or reloaded by
# that restore. (1.28 hides the spinner before it sets window.app.)
APP_STARTED = """() => Boolean(window.app?.graph && window.app.extensionManager?.toast
                         && window.app.extensionManager.spinner === false)"""


class Browser:
    """One chromium with a fresh profile; ``open(url)`` gives a page with the ComfyUI app loaded."""

    def __init__(self, playwright=None):
        from playwright.sync_api import sync_playwright

        self._owner = playwright is None
        self._playwright = sync_playwright().start() if playwright is None else playwright
        self._profile = tempfile.mkdtemp(prefix="distorch-chromium-")
        self.context = self._playwright.chromium.launch_persistent_context(
            self._profile, executable_path=chromium_path(), headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": 1400, "height": 900})
        self.console = ConsoleLog()
        self.requests: list[str] = []

    def open(self, url: str):
        page = self.context.new_page()
        page.on("console", self.console.record_console)
        page.on("pageerror", self.console.record_page_error)
        page.on("request", lambda request: self.requests.append(request.url))
        templates_expected = not tutorial_completed(url)  # read before the page sets it
        page.goto(url, wait_until="domcontentloaded")
        page.wait_for_function(APP_STARTED, timeout=120_000)
        if templates_expected:
            close_templates_dialog(page)
        return page

    def baseline_console_errors(self, url: str, settle: float = 5.0,
                                cache: dict | None = None) -> set[tuple[str, str]]:
        """What a second, fresh browser logs as errors loading ``url`` (a ComfyUI without the pack:
        its own 404s, its failed update check). With ``cache`` (the session's bare_console_errors
        fixture) a URL is measured once: a fresh browser on the bare server meets the same page in
        every module, and each measure cost a browser start and 5 s."""
        if cache is not None:
            if url not in cache:
                cache[url] = self.baseline_console_errors(url, settle)
            return cache[url]
        other = Browser(self._playwright)
        try:
            other.open(url)
            time.sleep(settle)
            return normalized(other.console.entries)
        finally:
            other.close()

    def close(self) -> None:
        try:
            self.context.close()
        finally:
            if self._owner:
                self._playwright.stop()
            shutil.rmtree(self._profile, ignore_errors=True)


# The Templates dialog a fresh profile meets on first load: a PrimeVue dialog up to frontend 1.2x
# (0.3.75 ships 1.28), a reka-ui layer titled "Templates" on 1.49 (ComfyUI 0.33.0).
TEMPLATES_DIALOG = ('.p-dialog[aria-labelledby="global-workflow-template-selector"], '
                    '[data-dismissable-layer]:has(h2:text-is("Templates")), '
                    '[data-dismissable-layer]:has-text("All Templates")')


def tutorial_completed(url: str) -> bool:
    """The server's ``Comfy.TutorialCompleted`` setting. Both frontends (1.28, 1.49) open the
    Templates dialog at start-up only while it is false, and set it then: so only a server's first
    page meets the dialog, and a later page must not wait for one (it waited 15 s each)."""
    with urllib.request.urlopen(f"{url}/api/settings/Comfy.TutorialCompleted", timeout=30) as answer:
        return json.loads(answer.read() or b"null") is True


def close_templates_dialog(page) -> None:
    """A bare host opens its Templates dialog on first load: close it as a user does (its close
    button on the older frontend, Escape on 1.49, whose close button has no name to find it by)."""
    dialog = page.locator(TEMPLATES_DIALOG).first
    try:
        dialog.wait_for(timeout=15_000)
    except Exception:
        return  # not shown
    if page.locator('.p-dialog[aria-labelledby="global-workflow-template-selector"]').count():
        dialog.locator("button:not(.opacity-0)").last.click()
    else:
        page.keyboard.press("Escape")
    dialog.wait_for(state="detached", timeout=10_000)


def screenshot(page, name: str, clip: dict | None = None) -> Path:
    """test-artifacts/<name>.png: the page, or the ``clip`` area of it (x, y, width, height)."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), clip=clip)
    return path


def element_screenshot(locator, name: str) -> Path:
    """A screenshot of one element (e.g. the sidebar panel) in test-artifacts/."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    locator.screenshot(path=str(path))
    return path


SIDEBAR_PANEL = ".side-bar-panel"


def sidebar_width(page) -> float:
    return page.locator(SIDEBAR_PANEL).bounding_box()["width"]


def sidebar_min_width(page) -> float:
    """The narrowest the frontend lets the sidebar panel be: 10 % of the window's splitter up to
    frontend 1.2x; 1.49 also sets a CSS min-width (in px) on the panel or a box around it."""
    return page.evaluate("""() => {
        const splitter = document.querySelector('.p-splitter');
        let floor = 0.1 * splitter.getBoundingClientRect().width;
        for (let e = document.querySelector('.side-bar-panel'); e && e !== splitter; e = e.parentElement) {
            const min = parseFloat(getComputedStyle(e).minWidth);
            if (!Number.isNaN(min)) floor = Math.max(floor, min);
        }
        return floor;
    }""")


def drag_sidebar_edge(page, width: float) -> float:
    """Drag the edge between the open sidebar panel and the canvas, as a user does, so the panel is
    about ``width`` px wide; the frontend clamps it (its narrowest is 10 % of the window's
    splitter). Returns the width it got."""
    # A text selection left by an earlier drag would turn this one into a native drag-and-drop of
    # that text (the browser cancels the pointer and the splitter never sees the mouse go up).
    page.evaluate("() => window.getSelection().removeAllRanges()")
    panel = page.locator(SIDEBAR_PANEL).bounding_box()
    gutter = page.locator(".p-splitter-gutter").first.bounding_box()
    y = gutter["y"] + gutter["height"] / 2
    page.mouse.move(gutter["x"] + gutter["width"] / 2, y)
    page.mouse.down()
    target = max(1.0, panel["x"] + width)
    # 2 px steps: the splitter ignores a step that would pass its minimum (it does not clamp), so
    # the last step it takes is within 2 px of the narrowest width
    page.mouse.move(target, y, steps=max(1, int(abs(target - gutter["x"]) / 2)))
    page.mouse.up()
    page.mouse.move(panel["x"] + panel["width"] + 600, y)  # off the sidebar: no tooltip in screenshots
    page.evaluate("() => window.getSelection().removeAllRanges()")  # what the drag swept over
    page.wait_for_timeout(300)
    return sidebar_width(page)


def set_color_palette(page, palette: str) -> None:
    """Switch ComfyUI's colour palette (setting Comfy.ColorPalette: "dark", "light", ...) through
    the frontend's settings store, as the settings dialog does, and wait until it is applied."""
    read = "() => getComputedStyle(document.documentElement).getPropertyValue('--comfy-menu-bg')"
    if page.evaluate("() => app.extensionManager.setting.get('Comfy.ColorPalette')") == palette:
        return
    before = page.evaluate(read)
    page.evaluate("palette => app.extensionManager.setting.set('Comfy.ColorPalette', palette)", palette)
    page.wait_for_function(f"before => ({read})() !== before", arg=before, timeout=10_000)
    page.wait_for_timeout(200)  # let PrimeVue's theme variables follow


def add_node(page, class_type: str, handle: str, pos=(500, 200)) -> str:
    """Put a node on the canvas through the frontend's API; ``window[handle]`` holds it. Returns
    the JS expression for the node."""
    page.evaluate("""([type, handle, pos]) => {
        const node = LiteGraph.createNode(type);
        node.pos = pos;
        app.graph.add(node);
        window[handle] = node;
        app.canvas.setDirty(true, true);
    }""", [class_type, handle, list(pos)])
    page.wait_for_timeout(300)  # one frame, so the widgets have their positions
    return f"window.{handle}"


def widget_center(page, node: str, name: str) -> tuple[float, float]:
    """Page coordinates of the middle of widget ``name`` on ``node`` (a JS expression)."""
    return tuple(page.evaluate(f"""() => {{
        const node = {node}, w = node.widgets.find(w => w.name === {name!r}), ds = app.canvas.ds;
        const rect = app.canvas.canvas.getBoundingClientRect();
        const gx = node.pos[0] + node.size[0] / 2, gy = node.pos[1] + w.y + LiteGraph.NODE_WIDGET_HEIGHT / 2;
        return [(gx + ds.offset[0]) * ds.scale + rect.left, (gy + ds.offset[1]) * ds.scale + rect.top];
    }}"""))
