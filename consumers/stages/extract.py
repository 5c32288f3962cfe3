"""Extract: HTML page → the article's plain text (paragraphs separated by blank lines)."""

from __future__ import annotations

import trafilatura


def extract_text(html: str) -> str:
    """Return the main text of a news page, or "" when no article text can be found.

    trafilatura drops navigation, comments and most site chrome; what chrome it keeps is
    removed later by the normalise stage, which also serves plain-text input.
    """
    text = trafilatura.extract(
        html,
        include_comments=False,
        include_tables=False,
        include_images=False,
        include_links=False,
        favor_precision=True,
        deduplicate=False,
    )
    if not text:
        return ""
    # trafilatura separates blocks with single newlines; the contract uses blank lines.
    return "\n\n".join(line.strip() for line in text.splitlines() if line.strip())
