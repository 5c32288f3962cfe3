"""Scale check of retention: prune and the matcher's rebuild on a generated database of millions of articles.

In a private schema of the local ``newsdedup`` database (bench/benchlib.py ``PrivateSchema``, dropped at the
end), the dev set is stored once through embedded mode and becomes a pool of real rows (text, shingle hashes,
signature). ``--articles`` rows are then generated in SQL from it (INSERT ... SELECT generate_series, in chunks
of ``--chunk`` rows; nothing goes through Python): two articles per story, one event per article, new keys, the
first 24 signature values (the LSH bands: since migration 0005 the 23 stored) distinct per article, stories last
changed uniformly over the last ``--days`` (120) days, every event published. Then, with retention_days 30 and
store_retention_days 90:

1. the size of the database and bytes per article;
2. the matcher's rebuild (``StoryStore.load_into``, app role): seconds per million rows in its window;
3. ``newsdedup db prune`` (``StoryStore.prune``, batches of ``--batch-stories``): deletes the stories older than
   90 days, strips those between 31 and 90 days; its seconds, and the write rate of a writer storing batches
   of 500 new articles (stories, articles, events, each batch one transaction, as write_batch) for 20 s
   before and the first 40 s of the prune;
4. the rebuild again after the prune, and a second prune (the next day's run, with nothing new to do: what
   it costs to look at every story past the window again).

    python bench/scale.py --articles 5000000 [--chunk 250000] [--days 120] [--keep] [--rebuild-only]
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import DEV, PrivateSchema, Progress, emit, note, print_header, services_env
from sqlalchemy import Engine, create_engine, insert, select, text

from consumers.embedded import build_matcher, run_embedded
from consumers.settings import load_settings, replace
from consumers.storage.database import make_engine
from consumers.storage.models import ArticleRow, StoryEventRow, StoryRow
from consumers.storage.store import StoryStore

RETENTION_DAYS = 30.0
STORE_RETENTION_DAYS = 90.0
MARGIN = timedelta(days=1)  # as newsdedup db prune (consumers/cli.py PRUNE_MARGIN)
WRITER_ALONE, WRITER_DURING = 20.0, 40.0  # seconds the writer runs before the prune, and into it

STORIES_SQL = """
INSERT INTO stories (id, match_partition, canonical_article_id, member_count, outlet_count, first_seen_at,
                     last_seen_at, merged_into, created_at, updated_at)
SELECT 'g-' || md5('a' || (2 * s)), 0, md5('a' || (2 * s)), 2, 2, t, t, NULL, t, t
FROM generate_series(:start, :stop - 1) AS s,
     LATERAL (SELECT now() - (s::float8 / :stories) * make_interval(days => :days) AS t) AS x
"""
ARTICLES_SQL = """
INSERT INTO articles (id, story_id, input_id, url, url_normalised, source, title, body, lang, content_hash,
                      published_at, scraped_at, num_shingles, signature, shingle_hashes, fingerprint_identity,
                      match_method, similarity, containment, source_topic, source_partition, source_offset,
                      source_timestamp, match_partition, stored_at, extra, body_chars)
SELECT md5('a' || i), 'g-' || md5('a' || (2 * (i / 2))), 'g' || i, p.url || '?g=' || i, p.url || '?g=' || i,
       p.source, p.title, p.body, p.lang, md5('c' || i) || md5('d' || i), t, t, p.num_shingles,
       overlay(p.signature placing substr(decode(md5('s' || i) || md5('t' || i) || md5('u' || i)
                                                 || md5('v' || i) || md5('w' || i) || md5('x' || i), 'hex'),
                                          1, octet_length(p.signature))
               from 1 for least(96, octet_length(p.signature))),
       p.shingle_hashes, p.fingerprint_identity, CASE WHEN i % 2 = 0 THEN 'canonical' ELSE 'near' END,
       1.0, 1.0, 'generated', 0, i, NULL, 0, t, p.extra, p.body_chars
FROM generate_series(:start, :stop - 1) AS i
JOIN pool AS p ON p.n = i % :pool,
LATERAL (SELECT now() - ((i / 2)::float8 / :stories) * make_interval(days => :days) AS t) AS x
"""
EVENTS_SQL = """
INSERT INTO story_events (match_partition, story_id, kind, article_id, reason, similarity, occurred_at)
SELECT 0, 'g-' || md5('a' || (2 * (i / 2))), CASE WHEN i % 2 = 0 THEN 'founded' ELSE 'joined' END,
       md5('a' || i), CASE WHEN i % 2 = 0 THEN 'new story' ELSE 'near match with ' || md5('a' || (i - 1)) END,
       CASE WHEN i % 2 = 0 THEN NULL ELSE 0.8 END, now()
FROM generate_series(:start, :stop - 1) AS i
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--articles", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=250_000, help="rows per generating statement")
    parser.add_argument("--days", type=int, default=120, help="stories last changed over this many days")
    parser.add_argument("--batch-stories", type=int, default=500)
    parser.add_argument("--keep", action="store_true", help="leave the schema (drop it yourself)")
    parser.add_argument("--rebuild-only", action="store_true", help="generate, measure sizes and one rebuild; no prune")
    args = parser.parse_args()
    found = print_header(f"retention at scale: {args.articles:,} generated articles")
    services = services_env()
    schema = PrivateSchema(services, f"scale_{os.getpid()}")
    owner = create_engine(schema.owner_url)
    result: dict[str, Any] = {"articles": args.articles}
    try:
        generate(schema, owner, args)
        result["generated"] = sizes(owner, args.articles)
        note(f"database: {result['generated']}")
        settings = replace(load_settings({}), database_url=schema.app_url, retention_days=RETENTION_DAYS)
        result["rebuild_before"] = rebuild(schema.app_url, settings)
        if args.rebuild_only:
            result["rebuild_again"] = rebuild(schema.app_url, settings)  # the table now warm in the page cache
            return finish(result, found)
        result["prune"] = prune_with_writer(schema.app_url, args.batch_stories)
        vacuum(owner)
        result["after_prune"] = sizes(owner, None)
        result["rebuild_after"] = rebuild(schema.app_url, settings)
        result["prune_again"] = prune_again(schema.app_url, args.batch_stories)
    finally:
        owner.dispose()
        if args.keep:
            note(f"schema {schema.schema} kept")
        else:
            schema.drop()
    return finish(result, found)


def finish(result: dict[str, Any], found: Any) -> int:
    print("\n== summary")
    for key, value in result.items():
        print(f"  {key}: {value}")
    emit({**result, "versions": found})
    return 0


def generate(schema: PrivateSchema, owner: Engine, args: argparse.Namespace) -> None:
    settings = replace(load_settings({}), database_url=schema.app_url, metrics_port=0)
    store = StoryStore(make_engine(schema.app_url))
    with DEV.open("rb") as lines:
        run_embedded(lines, "dev", settings, store)
    store.engine.dispose()
    with owner.begin() as conn:
        conn.execute(text("CREATE TABLE pool AS SELECT (row_number() OVER (ORDER BY id)) - 1 AS n, url, source, "
                          "title, body, lang, num_shingles, signature, shingle_hashes, fingerprint_identity, extra, "
                          "body_chars "
                          "FROM articles"))
        conn.execute(text("CREATE UNIQUE INDEX ON pool (n)"))
        pool = conn.execute(text("SELECT count(*) FROM pool")).scalar_one()
        conn.execute(text("TRUNCATE event_relay, story_events, articles, stories, consumer_offsets"))
    stories = args.articles // 2
    started = time.perf_counter()
    progress = Progress("generate", args.articles)
    for start in range(0, args.articles, args.chunk):
        stop = min(args.articles, start + args.chunk)
        with owner.begin() as conn:
            params = {"start": start, "stop": stop, "stories": stories, "days": args.days, "pool": pool}
            conn.execute(text(STORIES_SQL), {**params, "start": start // 2, "stop": (stop + 1) // 2})
            conn.execute(text(ARTICLES_SQL), params)
            conn.execute(text(EVENTS_SQL), params)
        progress.update(stop - start)
    progress.close()
    with owner.begin() as conn:
        conn.execute(text("DROP TABLE pool"))
        conn.execute(text("INSERT INTO event_relay (match_partition, published_id, updated_at) "
                          "SELECT 0, max(id), now() FROM story_events"))
    vacuum(owner)
    note(f"generated {args.articles:,} articles in {time.perf_counter() - started:.0f} s")


def vacuum(owner: Engine) -> None:
    with owner.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))


def sizes(owner: Engine, articles: int | None) -> dict[str, Any]:
    with owner.connect() as conn:
        if articles is None:
            articles = conn.execute(text("SELECT count(*) FROM articles")).scalar_one()
        tables = {name: conn.execute(text("SELECT pg_total_relation_size(CAST(:t AS regclass))"), {"t": name})
                  .scalar_one() for name in ("articles", "stories", "story_events")}
    total = sum(tables.values())
    return {"articles": articles, "bytes": total, "gb": round(total / 1e9, 2),
            "bytes_per_article": round(total / max(1, articles)),
            **{f"{name}_bytes_per_article": round(size / max(1, articles)) for name, size in tables.items()}}


def rebuild(app_url: str, settings: Any) -> dict[str, Any]:
    store = StoryStore(make_engine(app_url))
    matcher = build_matcher(settings)
    started = time.perf_counter()
    loaded = store.load_into(matcher, [0], matcher.fingerprint.identity)
    seconds = time.perf_counter() - started
    store.engine.dispose()
    figures = {"rows_in_window": loaded, "seconds": round(seconds, 1),
               "seconds_per_million": round(seconds / max(loaded, 1) * 1e6, 1)}
    note(f"rebuild: {figures}")
    return figures


class Writer(threading.Thread):
    """Stores batches of 500 new articles (a story each, an event each) in one transaction per batch."""

    def __init__(self, app_url: str, seconds: float) -> None:
        super().__init__(daemon=True)
        self.until = time.monotonic() + seconds  # bounded: the rows it adds are disk too
        self.engine = create_engine(app_url)
        with self.engine.connect() as conn:
            row = conn.execute(select(ArticleRow).limit(1)).one()._asdict()
        self.template = row
        self.rows: list[tuple[float, int]] = []  # (monotonic time, rows stored) per batch
        self.running = True
        self.serial = 0

    def run(self) -> None:
        while self.running and time.monotonic() < self.until:
            now = datetime.now(UTC)
            batch = []
            for _ in range(500):
                self.serial += 1
                key = f"w{os.getpid()}-{self.serial}"
                batch.append(key)
            with self.engine.begin() as conn:
                conn.execute(insert(StoryRow), [
                    {"id": f"s-{k}", "match_partition": 0, "canonical_article_id": k, "member_count": 1,
                     "outlet_count": 1, "first_seen_at": now, "last_seen_at": now, "merged_into": None,
                     "created_at": now, "updated_at": now} for k in batch])
                conn.execute(insert(ArticleRow), [
                    {**self.template, "id": k, "story_id": f"s-{k}", "input_id": k, "stored_at": now} for k in batch])
                conn.execute(insert(StoryEventRow), [
                    {"match_partition": 0, "story_id": f"s-{k}", "kind": "founded", "article_id": k,
                     "reason": "new story", "similarity": None, "occurred_at": now} for k in batch])
            self.rows.append((time.monotonic(), len(batch)))

    def rate(self, start: float, stop: float) -> float:
        stored = sum(n for t, n in self.rows if start <= t < stop)
        return stored / max(stop - start, 1e-9)


def prune_with_writer(app_url: str, batch_stories: int) -> dict[str, Any]:
    writer = Writer(app_url, WRITER_ALONE + WRITER_DURING)
    writer.start()
    time.sleep(WRITER_ALONE)
    store = StoryStore(make_engine(app_url))
    now = datetime.now(UTC)
    delete_before = now - timedelta(days=STORE_RETENTION_DAYS)
    strip_before = now - timedelta(days=RETENTION_DAYS) - MARGIN
    candidates = store.prune_candidates(delete_before, strip_before)
    progress = Progress("prune", candidates)
    started = time.monotonic()
    result = store.prune(delete_before, strip_before, batch_stories, on_batch=progress.update)
    finished = time.monotonic()
    progress.close()
    writer.running = False
    writer.join()
    writer.engine.dispose()
    store.engine.dispose()
    figures = {"seconds": round(finished - started, 1), "stories_looked_at": candidates,
               "deleted_stories": result.stories, "deleted_articles": result.articles,
               "deleted_events": result.events, "stripped_articles": result.stripped, "held": result.held,
               "writer_rows_per_s_alone": round(writer.rate(started - WRITER_ALONE, started)),
               "writer_rows_per_s_during_prune": round(writer.rate(started, min(finished, started + WRITER_DURING))),
               "writer_rows": sum(n for _, n in writer.rows)}
    note(f"prune: {figures}")
    return figures


def prune_again(app_url: str, batch_stories: int) -> dict[str, Any]:
    store = StoryStore(make_engine(app_url))
    now = datetime.now(UTC)
    started = time.monotonic()
    result = store.prune(now - timedelta(days=STORE_RETENTION_DAYS), now - timedelta(days=RETENTION_DAYS) - MARGIN,
                         batch_stories)
    store.engine.dispose()
    figures = {"seconds": round(time.monotonic() - started, 1), "deleted_stories": result.stories,
               "stripped_articles": result.stripped}
    note(f"prune again: {figures}")
    return figures


if __name__ == "__main__":
    sys.exit(main())
