"""Benchmark corpus: any number of distinct articles made from the dev set, lightly perturbed.

Article ``i`` of a corpus (seed ``s``) is built from ../shared/eval/dev/articles.jsonl:

- natural length (default): a copy of dev record ``i mod 4948``, so the first 4,948 articles keep
  the dev set's copy structure (its syndicated copies are still near-copies of each other);
- ``--words 700``: dev bodies concatenated until the body holds ``--words`` words (the last one
  cut at a word boundary), starting at a pseudo-random dev record per article. These are the
  "700-word synthetic articles" the issue's reference figures use;

then perturbed so that every article is a distinct article: a new id (``b<seed>-<i>``), a new
URL (``https://<source>/bench/<seed>/<i>``), and ``--edits`` word edits (a word replaced,
dropped or doubled; default 3) at random positions, so neither the content hash nor the
article key equals any other article's. Deterministic for a given seed.

The texts belong to their publishers: the generator never writes into the repository. With
``--output`` omitted it writes to a new temporary folder and prints the path.

    python bench/corpus.py --count 100000 --words 700          # → /tmp/newsdedup-corpus-.../articles.jsonl
    python bench/corpus.py --count 20 --stdout | head -1        # look at one

Library use (bench/fingerprint.py, bench/kafka_latency.py): ``Corpus(load_dev(), words=700).records(n)``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import DEV, ROOT, Progress, emit, median, print_header

VOCABULARY = ("report", "officials", "said", "week", "government", "market", "police", "city", "later",
              "percent", "company", "statement", "year", "people", "minister", "new", "court", "record")


def load_dev(path: Path = DEV) -> list[dict[str, Any]]:
    if not path.is_file():
        sys.exit(f"{path} not found: the benchmarks read the shared evaluation kit's dev set")
    return [json.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


class Corpus:
    def __init__(self, dev: Sequence[dict[str, Any]], words: int | None = None, seed: int = 1, edits: int = 3) -> None:
        if not dev:
            raise ValueError("empty dev set")
        self.dev = list(dev)
        self.words = words
        self.seed = seed
        self.edits = edits
        self._paragraphs = [record.get("body") or "" for record in self.dev]

    def record(self, i: int) -> dict[str, Any]:
        """Article ``i`` as a message-contract dict (plain-text body)."""
        rng = random.Random(self.seed * 1_000_003 + i)
        n = len(self.dev)
        if self.words is None:
            first = self.dev[i % n]
            body = first.get("body") or ""
        else:
            start = (i * 7919 + self.seed) % n
            first, body = self.dev[start], self._long_body(start)
        record = {key: first[key] for key in ("source", "title", "published_at", "lang") if key in first}
        host = urlsplit(first["url"]).netloc or first.get("source", "example.com")
        record.update({
            "id": f"b{self.seed}-{i}",
            "url": f"https://{host}/bench/{self.seed}/{i}",
            "body": _edit(body, rng, self.edits),
        })
        return record

    def records(self, count: int, start: int = 0) -> Iterator[dict[str, Any]]:
        for i in range(start, start + count):
            yield self.record(i)

    def _long_body(self, start: int) -> str:
        """Dev bodies from ``start`` on, paragraph by paragraph, cut at ``self.words`` words."""
        assert self.words is not None
        paragraphs: list[str] = []
        have = 0
        index = start
        while have < self.words:
            for paragraph in self._paragraphs[index % len(self._paragraphs)].split("\n\n"):
                words = paragraph.split(" ")
                count = len(paragraph.split())
                if have + count > self.words:
                    paragraph = " ".join(words[: self.words - have])
                    count = len(paragraph.split())
                if count:
                    paragraphs.append(paragraph)
                    have += count
                if have >= self.words:
                    break
            index += 1
        return "\n\n".join(paragraphs)


def _edit(body: str, rng: random.Random, edits: int) -> str:
    tokens = body.split(" ")
    plain = [k for k, token in enumerate(tokens) if token.isalpha()]
    for position in rng.sample(plain, min(edits, len(plain))):
        kind = rng.randrange(3)
        if kind == 0:
            tokens[position] = rng.choice(VOCABULARY)
        elif kind == 1:
            tokens[position] = ""
        else:
            tokens[position] = tokens[position] + " " + tokens[position]
    return " ".join(token for token in tokens if token)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=10_000, help="articles to make (default 10000)")
    parser.add_argument("--words", type=int, default=None,
                        help="words per article body (e.g. 700); default: the dev articles' own lengths")
    parser.add_argument("--edits", type=int, default=3, help="word edits per article (default 3)")
    parser.add_argument("--seed", type=int, default=1, help="corpus seed (default 1)")
    parser.add_argument("--dev", type=Path, default=DEV, help=f"dev set to build from (default {DEV})")
    parser.add_argument("--output", type=Path, help="JSONL file to write (default: in a new temporary folder); "
                                                    "never inside the repository")
    parser.add_argument("--stdout", action="store_true", help="write the articles to stdout instead (no summary)")
    args = parser.parse_args()

    corpus = Corpus(load_dev(args.dev), args.words, args.seed, args.edits)
    if args.stdout:
        for record in corpus.records(args.count):
            sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
        return 0
    found = print_header("corpus: distinct perturbed articles from the dev set")
    output = args.output or Path(tempfile.mkdtemp(prefix="newsdedup-corpus-")) / "articles.jsonl"
    output = output.resolve()
    if output.is_relative_to(ROOT):
        sys.exit(f"refusing to write {output}: the corpus never goes into the repository (the texts are not ours)")
    output.parent.mkdir(parents=True, exist_ok=True)
    progress = Progress("corpus", args.count)
    word_counts = []
    started = time.perf_counter()
    with output.open("w", encoding="utf-8") as stream:
        for record in corpus.records(args.count):
            stream.write(json.dumps(record, ensure_ascii=False) + "\n")
            word_counts.append(len(record["body"].split()))
            progress.update()
    seconds = time.perf_counter() - started
    progress.close()
    size = output.stat().st_size
    print(f"wrote {args.count:,} articles ({size / 1e6:.1f} MB) to {output} in {seconds:.1f} s "
          f"({args.count / seconds:,.0f} articles/s)")
    print(f"words per body: median {median(word_counts):.0f}, min {min(word_counts)}, max {max(word_counts)}")
    emit({"script": "corpus", "articles": args.count, "path": str(output), "bytes": size,
          "words_median": median(word_counts), "articles_per_s": round(args.count / seconds), "versions": found})
    return 0


if __name__ == "__main__":
    sys.exit(main())
