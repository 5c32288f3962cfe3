"""The README documents what the code does."""

from __future__ import annotations

import re
from pathlib import Path

from consumers.cli import build_parser
from consumers.settings import settings_markdown

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_readme_settings_table_is_the_one_generated_from_the_code() -> None:
    table = re.search(r"<!-- settings:begin -->\n(.*?)\n<!-- settings:end -->", README, re.S)
    assert table is not None, "README lost its settings markers"
    assert table.group(1).strip() == settings_markdown().strip(), "run 'newsdedup settings --markdown' into README"


def test_every_command_the_readme_runs_exists() -> None:
    commands = set(re.findall(r"(?:`|^|bin/)newsdedup (\w[\w-]*)", README, re.M))
    assert {"run", "ingest", "prepare", "match", "export"} <= commands
    known = set(build_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    assert commands <= known, commands - known
