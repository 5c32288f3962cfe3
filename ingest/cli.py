"""``newsdedup ingest FILE|DIR|-``: validate articles and push them onto ``articles.raw``."""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from ingest.contract import INVALID_VALUE, InvalidArticle, parse_article
from ingest.producer import ArticleProducer
from ingest.sources import NO_FALLBACKS, PageFallbacks, read_source, source_size


@dataclass
class IngestSummary:
    sent: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)  # a few rejected records with their reasons

    def report(self) -> str:
        lines = [f"sent {self.sent}, rejected {sum(self.rejected.values())}"]
        lines += [f"  {reason}: {count}" for reason, count in self.rejected.most_common()]
        lines += [f"  e.g. {example}" for example in self.examples]
        return "\n".join(lines)


def ingest(path: str, producer: ArticleProducer, *, progress: bool = True,
           fallbacks: PageFallbacks = NO_FALLBACKS) -> IngestSummary:
    """Send every valid article of a source; invalid ones are counted, not sent.

    Raises OSError or ValueError (one-line messages) before sending anything when the source cannot be read.
    """
    summary = IngestSummary()
    records = read_source(path, fallbacks)
    total = source_size(path)
    unit_is_bytes = total is not None and Path(path).is_file()  # a file counts bytes, a folder files
    with tqdm(total=total, unit="B" if unit_is_bytes else " articles", unit_scale=unit_is_bytes,
              disable=not progress, file=sys.stderr, desc="ingest") as bar:
        for record in records:
            try:
                if record.raw is None:
                    raise record.error or InvalidArticle(INVALID_VALUE, "unreadable")
                article = parse_article(record.raw, producer.max_message_bytes)
                producer.send(article)
                summary.sent += 1
                if summary.sent % 1000 == 0:
                    producer.flush()  # surface delivery errors early and bound memory
            except InvalidArticle as exc:
                summary.rejected[exc.reason] += 1
                if len(summary.examples) < 5:
                    summary.examples.append(f"{record.label}: {exc}")
            bar.update(len(record.raw) + 1 if unit_is_bytes and record.raw else 1)
    producer.flush()  # raises DeliveryError for anything the brokers did not acknowledge
    return summary
