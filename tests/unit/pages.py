"""Invented HTML pages for the tests of folders of scraped pages (see invented_news.py for the stories)."""

from __future__ import annotations

import html
from pathlib import Path


def page(paragraphs: list[str], *, title: str = "Ferry sailings suspended", url: str | None = None,
         published: str | None = None, site: str | None = None) -> str:
    """A news page naming only what it is given: its URL (og:url), date (article:published_time), outlet."""
    head = [f"<title>{html.escape(title)}</title>"]
    if url:
        head.append(f'<meta property="og:url" content="{html.escape(url)}">')
    if published:
        head.append(f'<meta property="article:published_time" content="{published}">')
    if site:
        head.append(f'<meta property="og:site_name" content="{html.escape(site)}">')
    body = "".join(f"<p>{html.escape(paragraph)}</p>" for paragraph in paragraphs)
    return (f"<!DOCTYPE html><html><head>{''.join(head)}</head><body><nav><a href='/'>Home</a></nav>"
            f"<article><h1>{html.escape(title)}</h1>{body}</article></body></html>")


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
