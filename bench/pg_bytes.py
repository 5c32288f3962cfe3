"""Bytes per article in PostgreSQL, per table, column and index, and what each storage change saves.

Stores a labelled set through embedded mode (the production matcher and ``StoryStore.write_batch``) into a
private schema of the local ``newsdedup`` database (bench/benchlib.py ``PrivateSchema``, dropped at the end):
the dev set (4,948 synthetic articles, 2.0 KB of text each) and dev-real (68 real news articles, 4.5 KB each,
the length of real scrapes). Then it measures the stored bytes per article of every table
(``pg_total_relation_size``: heap, TOAST and indexes), of every column of ``articles`` (``avg(pg_column_size)``:
the bytes a value takes in its row or in TOAST, after compression) and of every index (``pg_relation_size``).

Side by side, in one run, ``articles`` is refilled with the same rows under each storage variant (TRUNCATE, then
the rows inserted again from Python in transactions of ``--batch-rows``, as write_batch sends them, so TOAST
compresses them under the variant's setting), and each variant's insert rate is measured in ``--rounds``
interleaved rounds (median):

- ``0003``: the schema before migration 0004: pglz (PostgreSQL's default) for every column, every index;
- ``lz4``: lz4 TOAST compression of the text, JSON and hash columns (tried; not taken: larger on real text);
- ``lz4+indexes``: also without the three indexes no query uses;
- ``0004``: pglz text, without those indexes, signature and shingle hashes STORAGE EXTERNAL;
- ``0005``: head: as 0004, with the verification data compact (consumers/storage/codec.py): of the signature the
  23 values the LSH bands use (92 of 512 bytes), the shingle hashes in 3.2 instead of 4 bytes each;
- ``... past window``: an article whose story left the matcher's window after ``newsdedup db prune`` dropped
  its verification data (signature and shingle hashes NULL; text and provenance kept).

The rows are stored once at head; the variants before 0005 get the verification data back in the format they
wrote (whole signature recomputed from the shingle hashes, hashes as plain uint32).

``pg_bytes_per_article`` (the closing JSON line, and bench/run.py's summary) is the dev set's total of all tables
per article at head (``0005``); ``pg_bytes_per_article_before`` the same at 0003, ``..._0004`` at 0004.

    python bench/pg_bytes.py [--sets dev,dev-real] [--rounds 3] [--batch-rows 500]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import DEV, PrivateSchema, emit, median, note, print_header, services_env
from sqlalchemy import Engine, create_engine, insert, select, text

from consumers.embedded import run_embedded
from consumers.settings import load_settings, replace
from consumers.stages.fingerprint import FingerprintConfig, array_to_bytes, minhash_signature
from consumers.storage.codec import band_values, decode_shingle_hashes, encode_shingle_hashes
from consumers.storage.database import make_engine
from consumers.storage.models import ArticleRow
from consumers.storage.store import StoryStore

SETS = {"dev": DEV, "dev-real": DEV.parent.parent / "dev-real" / "articles.jsonl"}
TABLES = ("articles", "stories", "story_events", "event_relay", "consumer_offsets")
# The columns of articles migration 0004 compresses with lz4 (identifiers only from here, never from input).
COMPRESSED = ("url", "url_normalised", "title", "body", "signature", "shingle_hashes", "extra")
# Indexes of articles at 0003 beyond its primary key: name -> column list.
INDEXES_0003 = {
    "ix_articles_story_id": "story_id",
    "ix_articles_input_id": "input_id",
    "ix_articles_content_hash": "content_hash",
    "ix_articles_match_partition_published_at": "match_partition, published_at",
}
INDEXES_0004 = {"ix_articles_story_id": "story_id"}
BAND_VALUES = 23  # b * r at the default settings: what write_batch stores of a signature since 0005


@dataclass(frozen=True)
class Variant:
    name: str
    compression: str
    indexes: dict[str, str]
    stripped: bool  # signature and shingle hashes NULL: past the matcher's window, after prune
    external: bool = False  # signature and shingle hashes STORAGE EXTERNAL: never compressed (migration 0004)
    compact: bool = False  # verification data as migration 0005 stores it (else as before: whole, plain)


VARIANTS = (
    Variant("0003", "pglz", INDEXES_0003, False),
    Variant("lz4", "lz4", INDEXES_0003, False),
    Variant("lz4+indexes", "lz4", INDEXES_0004, False),
    Variant("0004", "pglz", INDEXES_0004, False, True),
    Variant("0005", "pglz", INDEXES_0004, False, True, True),
    Variant("0003 past window", "pglz", INDEXES_0003, True),
    Variant("lz4+ix past window", "lz4", INDEXES_0004, True),
    Variant("0004 past window", "pglz", INDEXES_0004, True, True),
    Variant("0005 past window", "pglz", INDEXES_0004, True, True, True),
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", default="dev,dev-real", help="comma-separated of " + ",".join(SETS))
    parser.add_argument("--rounds", type=int, default=3, help="insert rounds per variant (median rate)")
    parser.add_argument("--batch-rows", type=int, default=500, help="article rows per insert transaction")
    args = parser.parse_args()
    found = print_header("PostgreSQL bytes per article")
    services = services_env()
    schema = PrivateSchema(services, f"pgbytes_{os.getpid()}")
    owner = create_engine(schema.owner_url)
    results: dict[str, Any] = {}
    try:
        for name in args.sets.split(","):
            results[name] = measure_set(name, SETS[name], schema, owner, args.rounds, args.batch_rows)
    finally:
        owner.dispose()
        schema.drop()
    dev = results.get("dev", {})
    real = results.get("dev-real", {})
    summary = {
        "pg_bytes_per_article": dev.get("0005", {}).get("all_tables"),
        "pg_bytes_per_article_0004": dev.get("0004", {}).get("all_tables"),
        "pg_bytes_per_article_before": dev.get("0003", {}).get("all_tables"),
        "pg_article_bytes_inside_window": dev.get("0005", {}).get("articles"),
        "pg_article_bytes_inside_window_0004": dev.get("0004", {}).get("articles"),
        "pg_article_bytes_inside_window_before": dev.get("0003", {}).get("articles"),
        "pg_article_bytes_past_window": dev.get("0005 past window", {}).get("articles"),
        "pg_article_bytes_past_window_0004": dev.get("0004 past window", {}).get("articles"),
        "pg_article_bytes_past_window_before": dev.get("0003 past window", {}).get("articles"),
        "pg_article_rows_per_s": dev.get("0005", {}).get("rows_per_s"),
        "pg_article_rows_per_s_0004": dev.get("0004", {}).get("rows_per_s"),
        "real_pg_article_bytes_inside_window": real.get("0005", {}).get("articles"),
        "real_pg_article_bytes_inside_window_0004": real.get("0004", {}).get("articles"),
        "real_pg_article_bytes_inside_window_before": real.get("0003", {}).get("articles"),
    }
    print("\n== summary (dev set)")
    for key, value in summary.items():
        print(f"  {key:42} {value if value is not None else 'n/a':>8}")
    emit({**summary, "sets": results, "versions": found})
    return 0


def measure_set(name: str, path: Path, schema: PrivateSchema, owner: Engine, rounds: int,
                batch_rows: int) -> dict[str, Any]:
    settings = replace(load_settings({}), database_url=schema.app_url, metrics_port=0)
    store = StoryStore(make_engine(schema.app_url))
    started = time.perf_counter()
    with path.open("rb") as lines:
        summary = run_embedded(lines, name, settings, store)
    note(f"{name}: {summary.stored} articles stored through embedded mode in {time.perf_counter() - started:.1f} s")
    store.engine.dispose()
    with owner.connect() as conn:
        rows = [dict(row._mapping) for row in conn.execute(select(ArticleRow.__table__))]
    count = len(rows)
    vacuum(owner)
    others = {table: table_bytes(owner, table) / count for table in TABLES if table != "articles"}
    print(f"\n== {name}: {count:,} articles; bytes per article of the other tables (with indexes): "
          + ", ".join(f"{t} {b:,.0f}" for t, b in others.items()))
    fingerprint = load_settings({}).fingerprint_config()
    arrays = [verification_arrays(row, fingerprint) for row in rows]
    rates: dict[str, list[float]] = {v.name: [] for v in VARIANTS}
    sizes: dict[str, dict[str, Any]] = {}
    for round_number in range(rounds):
        for variant in VARIANTS:  # interleaved: each round runs every variant under the same load
            rates[variant.name].append(refill(owner, variant, rows, arrays, batch_rows))
            if round_number == rounds - 1:
                sizes[variant.name] = article_sizes(owner, count)
    out: dict[str, Any] = {"articles_stored": count}
    print(f"{'variant':18} {'articles B':>10} {'all tables B':>12} {'heap':>6} {'toast':>6} {'indexes':>7} "
          f"{'rows/s':>8}  columns (avg stored bytes)")
    for variant in VARIANTS:
        size = sizes[variant.name]
        total = round(size["total"] + sum(others.values()))
        out[variant.name] = {"articles": round(size["total"]), "all_tables": total,
                             "rows_per_s": round(median(rates[variant.name])), **size}
        columns = ", ".join(f"{c} {v:,.0f}" for c, v in size["columns"].items() if v >= 8)
        print(f"{variant.name:18} {size['total']:>10,.0f} {total:>12,} {size['heap']:>6,.0f} {size['toast']:>6,.0f} "
              f"{size['indexes']:>7,.0f} {median(rates[variant.name]):>8,.0f}  {columns}")
        print(f"{'':18} indexes: " + ", ".join(f"{i} {b:,.0f}" for i, b in size["index_detail"].items()))
    out["other_tables"] = {t: round(b) for t, b in others.items()}
    with owner.begin() as conn:  # the next set starts empty
        conn.execute(text("TRUNCATE event_relay, story_events, articles, stories, consumer_offsets"))
    return out


def refill(owner: Engine, variant: Variant, rows: list[dict[str, Any]],
           arrays: list[tuple[np.ndarray, np.ndarray] | None], batch_rows: int) -> float:
    """Empty articles, set the variant's storage, insert the rows again; returns rows per second (the
    verification data turned into the variant's bytes included, as write_batch does it)."""
    with owner.begin() as conn:
        conn.execute(text("TRUNCATE articles"))
        for column in COMPRESSED:
            conn.execute(text(f"ALTER TABLE articles ALTER COLUMN {column} SET COMPRESSION {variant.compression}"))
        conn.execute(text("ALTER TABLE articles ALTER COLUMN signature DROP NOT NULL"))
        storage = "EXTERNAL" if variant.external else "EXTENDED"
        for column in ("signature", "shingle_hashes"):
            conn.execute(text(f"ALTER TABLE articles ALTER COLUMN {column} SET STORAGE {storage}"))
        for index in INDEXES_0003:
            conn.execute(text(f"DROP INDEX IF EXISTS {index}"))
        for index, columns in variant.indexes.items():
            conn.execute(text(f"CREATE INDEX {index} ON articles ({columns})"))
    started = time.perf_counter()
    for start in range(0, len(rows), batch_rows):
        values = [stored_as(variant, row, verification)
                  for row, verification in zip(rows[start:start + batch_rows], arrays[start:start + batch_rows],
                                               strict=True)]
        with owner.begin() as conn:
            conn.execute(insert(ArticleRow), values)
    rate = len(rows) / (time.perf_counter() - started)
    vacuum(owner)
    return rate


def verification_arrays(row: dict[str, Any], fingerprint: FingerprintConfig) -> tuple[np.ndarray, np.ndarray] | None:
    """(whole signature, shingle hashes) of a stored row: the signature recomputed from the hashes."""
    if row["shingle_hashes"] is None:
        return None
    hashes = decode_shingle_hashes(row["shingle_hashes"])
    return minhash_signature(hashes, fingerprint), hashes


def stored_as(variant: Variant, row: dict[str, Any], verification: tuple[np.ndarray, np.ndarray] | None
              ) -> dict[str, Any]:
    """The row as the variant's schema stores it: before 0005 the whole signature and plain hashes, and no
    body_chars (the column came with 0005); past the window without verification data."""
    if variant.stripped or verification is None:
        return {**row, "signature": None, "shingle_hashes": None, **({} if variant.compact else {"body_chars": None})}
    signature, hashes = verification
    if variant.compact:
        return {**row, "signature": band_values(signature, BAND_VALUES),
                "shingle_hashes": encode_shingle_hashes(hashes)}
    return {**row, "signature": array_to_bytes(signature), "shingle_hashes": array_to_bytes(hashes), "body_chars": None}


def vacuum(owner: Engine) -> None:
    with owner.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))


def table_bytes(owner: Engine, table: str) -> int:
    with owner.connect() as conn:
        return conn.execute(text("SELECT pg_total_relation_size(CAST(:t AS regclass))"), {"t": table}).scalar_one()


def article_sizes(owner: Engine, count: int) -> dict[str, Any]:
    with owner.connect() as conn:
        total, heap, table, indexes = conn.execute(text(
            "SELECT pg_total_relation_size('articles'), pg_relation_size('articles'), pg_table_size('articles'), "
            "pg_indexes_size('articles')")).one()
        names = [c.name for c in ArticleRow.__table__.columns]
        # Column names come from the model, never from input.
        averages = conn.execute(text("SELECT " + ", ".join(f"avg(pg_column_size({n}))" for n in names)
                                     + ", avg(pg_column_size(articles.*)) FROM articles")).one()
        index_detail = dict(conn.execute(text(
            "SELECT indexrelid::regclass::text, pg_relation_size(indexrelid) FROM pg_index "
            "WHERE indrelid = 'articles'::regclass ORDER BY 1")).all())
    return {"total": total / count, "heap": heap / count, "toast": (table - heap) / count, "indexes": indexes / count,
            "row_avg_bytes": float(averages[-1]),
            "columns": {n: float(v or 0) for n, v in zip(names, averages[:-1], strict=True)},
            "index_detail": {name: round(size / count) for name, size in index_detail.items()}}


if __name__ == "__main__":
    sys.exit(main())
