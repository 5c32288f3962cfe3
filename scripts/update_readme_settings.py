"""Regenerate the README's settings table from the code (tests/test_docs.py checks they agree)."""

import re
from pathlib import Path

from consumers.settings import settings_markdown

readme = Path(__file__).resolve().parents[1] / "README.md"
text = readme.read_text()
updated = re.sub(r"(<!-- settings:begin -->\n).*?(\n<!-- settings:end -->)",
                 lambda m: m.group(1) + settings_markdown() + m.group(2), text, flags=re.S)
readme.write_text(updated)
print("README settings table is up to date" if updated == text else "README settings table rewritten")
