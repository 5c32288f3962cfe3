"""The browser harness itself, on a tiny local page: Chromium starts, scripts are seen when they do run, and
screenshots come out at both sizes. Without this, "no dialog appeared" on the explorer's pages could pass only
because nothing was listening. No Kafka or PostgreSQL needed, but a real Chromium is."""

from __future__ import annotations

import functools
import http.server
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from markupsafe import escape

pytestmark = pytest.mark.integration

HOSTILE = "<script>window.__pwned = 1; alert('pwned')</script>"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("site")
    page = "<!doctype html><title>t</title><h1 id=t style=overflow-wrap:anywhere>{}</h1>"
    (root / "escaped.html").write_text(page.format(escape(HOSTILE)))
    (root / "unescaped.html").write_text(page.format(HOSTILE))
    handler = functools.partial(QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002  (the stdlib's name)
        pass


def png_width(path: Path) -> int:
    return struct.unpack(">I", path.read_bytes()[16:20])[0]  # the IHDR chunk's width


def test_an_escaped_script_is_shown_as_text_and_runs_nothing(page, watched, site) -> None:
    page.goto(f"{site}/escaped.html")
    assert page.inner_text("#t") == HOSTILE
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert watched.dialogs == []


def test_the_harness_sees_a_script_that_does_run(page, watched, site) -> None:
    page.goto(f"{site}/unescaped.html")
    assert page.evaluate("window.__pwned") == 1
    assert watched.dialogs == ["alert: pwned"]


def test_screenshots_are_taken_at_a_laptop_and_a_phone_width(page, site, screenshot) -> None:
    page.goto(f"{site}/escaped.html")
    laptop, phone = screenshot("harness")
    assert (png_width(laptop), png_width(phone)) == (1366, 390)


def test_the_harness_records_answers_that_failed(page, watched, site) -> None:
    page.goto(f"{site}/missing.html")
    assert f"404 {site}/missing.html" in watched.failed_responses
