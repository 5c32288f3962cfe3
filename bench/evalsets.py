"""The labelled evaluation sets the bench scripts read, from the shared evaluation kit.

The texts belong to their publishers, so they are read in place (``../shared/eval`` beside the
repository, or ``--eval-dir``) and never copied into the project.
"""

from __future__ import annotations

import argparse
import csv
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

DEFAULT_EVAL_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "eval"
SET_NAMES = ("dev", "dev-real", "helsinki-proxy")
PROXY_LABELS = Path(__file__).resolve().parent / "labels" / "helsinki-proxy.jsonl"  # ours: see labels/README.md


@dataclass(frozen=True)
class EvalSet:
    name: str
    articles_path: Path
    lines: list[bytes]  # the JSONL lines as the embedded runner reads them
    records: list[dict[str, Any]]  # the same lines decoded, in file (= published_at) order
    gold: dict[str, str] = field(repr=False)  # article id → cluster, keyed as the reference scorer does

    def __len__(self) -> int:
        return len(self.records)


def add_eval_dir_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--eval-dir", type=Path, default=DEFAULT_EVAL_DIR,
                        help="the shared evaluation kit: dev/, dev-real/, sources/asprout/ "
                             f"(default: {DEFAULT_EVAL_DIR})")


def load_sets(eval_dir: Path) -> list[EvalSet]:
    return [load_set(eval_dir, name) for name in SET_NAMES]


def load_set(eval_dir: Path, name: str) -> EvalSet:
    if name == "helsinki-proxy":
        return load_helsinki_proxy(eval_dir)
    folder = eval_dir / name
    articles_path, labels_path = folder / "articles.jsonl", folder / "labels.jsonl"
    for path in (articles_path, labels_path):
        if not path.is_file():
            raise SystemExit(f"{path} not found: point --eval-dir at the folder holding {', '.join(SET_NAMES)}")
    lines = [line for line in articles_path.read_bytes().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]
    # The same cluster key as shared/eval/score.py and `newsdedup eval`, so the figures agree.
    labels = [json.loads(line) for line in labels_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    gold = {str(row["id"]): json.dumps(row["cluster"], sort_keys=True) for row in labels}
    return EvalSet(name, articles_path, lines, records, gold)


def load_helsinki_proxy(eval_dir: Path) -> EvalSet:
    """The raw Helsinki scrapes, converted as shared/eval/dev-real was, with our own labels."""
    source = eval_dir / "sources" / "asprout" / "helsinki_articles.csv"
    if not source.is_file():
        raise SystemExit(f"{source} not found: point --eval-dir at the shared evaluation kit")
    records = asprout_articles(source, "helsinki")
    lines = [json.dumps(record).encode() for record in records]
    labels = [json.loads(line) for line in PROXY_LABELS.read_text(encoding="utf-8").splitlines() if line.strip()]
    gold = {str(row["id"]): json.dumps(row["cluster"], sort_keys=True) for row in labels}
    return EvalSet("helsinki-proxy", source, lines, records, gold)


def asprout_articles(path: Path, prefix: str) -> list[dict[str, Any]]:
    """Rows of an asprout CSV as articles: paragraphs split on ' ### ', the first is the title."""
    csv.field_size_limit(10**9)
    with path.open(encoding="utf-8", newline="") as stream:
        rows = sorted(csv.DictReader(stream), key=lambda row: row["scrape_time"])
    articles = []
    for row in rows:
        paragraphs = [p.strip() for p in row["text"].split(" ### ")]
        when = datetime.fromisoformat(row["scrape_time"]).astimezone(UTC).isoformat().replace("+00:00", "Z")
        articles.append({"id": f"{prefix}-{row['id']}", "url": f"https://{row['publisher']}/{prefix}-{row['id']}",
                         "source": row["publisher"], "title": paragraphs[0], "body": "\n\n".join(paragraphs[1:]),
                         "published_at": when, "scraped_at": when, "lang": "en"})
    return articles
