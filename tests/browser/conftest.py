"""A real Chromium for the explorer's pages: Debian's /usr/bin/chromium driven by Playwright for Python.

Playwright's wheel carries its driver but no browser here: ``playwright install`` downloads one, which this
machine's closed network refuses, so the system Chromium (``bash scripts/browser.sh install``) is launched by
path. One browser per session; each test gets a fresh context (cookies, storage) and a page that records what
a person would never want to see: dialogs (``alert`` from an injected script), uncaught page errors, console
errors. Screenshots go to ``out/screenshots/`` (git-ignored) at a phone's and a laptop's size.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

# Fixtures of the integration tests: the services (Kafka, PostgreSQL), and the database the pipeline filled
# through them once per module (tests/integration/explorer_support.py).
from tests.integration.conftest import services  # noqa: F401
from tests.integration.explorer_support import explorer_data  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "out" / "screenshots"
CHROMIUM = Path(os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium"))

# The flags this machine needs (and scripts/browser.sh check uses): no sandbox as root, no GPU, and nothing
# that phones home, since every connection to Google's hosts is refused here and slows each start. Playwright
# adds a fresh --user-data-dir (a temporary profile) to every launch itself.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

PHONE = {"width": 390, "height": 844}
LAPTOP = {"width": 1366, "height": 768}


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: run 'bash scripts/browser.sh install' (or set CHROMIUM_BIN)")
    from playwright.sync_api import sync_playwright  # a dev dependency: imported only where a browser is needed

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class Watched:
    """What happened on a page that a person would notice or that means a script ran."""

    dialogs: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    failed_responses: list[str] = field(default_factory=list)  # "404 http://…" for every answer >= 400


@pytest.fixture
def watched() -> Watched:
    return Watched()


@pytest.fixture
def page(browser, watched: Watched) -> Iterator[object]:
    """A laptop-sized page in a context of its own; dialogs are recorded and dismissed, never left open."""
    context = browser.new_context(viewport=LAPTOP)
    context.set_default_timeout(10_000)  # a page here answers in milliseconds; fail fast, not after 30 s
    tab = context.new_page()
    tab.on("dialog", lambda dialog: (watched.dialogs.append(f"{dialog.type}: {dialog.message}"), dialog.dismiss()))
    tab.on("pageerror", lambda error: watched.page_errors.append(str(error)))
    tab.on("console", lambda message: message.type == "error" and watched.console_errors.append(message.text))
    tab.on("response", lambda response: response.status >= 400
           and watched.failed_responses.append(f"{response.status} {response.url}"))
    try:
        yield tab
    finally:
        context.close()


@pytest.fixture
def screenshot(page) -> Callable[..., list[Path]]:
    """``screenshot(name, part=None)``: the whole page at a laptop's size, then at a phone's; with ``part`` (a
    data-testid) also that element alone, at full resolution. Returns the files.

    The viewport is resized in the same page, so both pictures show the same state; it is left laptop-sized.
    """
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(name: str, part: str | None = None) -> list[Path]:
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-")
        paths = []
        for size_name, size in (("laptop", LAPTOP), ("phone", PHONE)):
            page.set_viewport_size(size)
            path = SCREENSHOTS / f"{slug}-{size_name}.png"
            page.screenshot(path=str(path), full_page=True)
            paths.append(path)
            if part is not None:
                path = SCREENSHOTS / f"{slug}-{part}-{size_name}.png"
                page.get_by_test_id(part).screenshot(path=str(path))
                paths.append(path)
        page.set_viewport_size(LAPTOP)
        return paths

    return take
