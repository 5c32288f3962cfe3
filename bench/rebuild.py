"""Rebuild: seconds for ``StoryStore.load_into`` to rebuild a matcher's index from PostgreSQL.

Uses the local PostgreSQL of ``bash scripts/services.sh up`` and its ``newsdedup`` database
(never ``newsdedup_test``, which the test suite uses): drops newsdedup's tables as the owner role,
``newsdedup db upgrade --db OWNER_URL``, then bulk-loads stored state with COPY (psycopg) and
times a production rebuild (app role, ``consumers.storage.database.make_engine``, a fresh matcher
from ``build_matcher`` with default settings) at each size: 100k and 1M stored articles
(``--quick``: 20k and 100k). Prints seconds, articles/s and seconds per million, and the RSS the
rebuilt matcher took. Target: a rebuild of 1M articles <= 60 s.

The stored rows are what the matcher would have written: the base set (the dev set as
bench/corpus.py copies it) is fingerprinted and run through the production matcher once; every
further generation repeats its stories and articles with new keys and story ids, signatures and
shingle hashes XORed with a per-generation mask (bench/benchlib.py ``Deriver``), publication times
shifted, and the base article's real cleaned body (load_into reads its length). All stories are
live (updated now, inside the retention window). COPY keeps the schema's indexes and foreign key.
At the end the tables are emptied (``--keep`` leaves the rows), to give the disk back.

    python bench/rebuild.py [--quick] [--sizes 100000,1000000] [--keep]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import multiprocessing
import pstats
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import psycopg
from benchlib import (
    Deriver,
    Progress,
    emit,
    empty_tables,
    fresh_database,
    libpq_url,
    note,
    prepare_all,
    print_header,
    services_env,
    settled_rss,
)
from corpus import Corpus, load_dev

from consumers.embedded import build_matcher
from consumers.prepare import Lineage
from consumers.settings import load_settings
from consumers.stages.fingerprint import array_to_bytes
from consumers.storage.database import make_engine
from consumers.storage.store import StoryStore

STORY_COLUMNS = ("id", "match_partition", "canonical_article_id", "member_count", "outlet_count", "first_seen_at",
                 "last_seen_at", "merged_into", "created_at", "updated_at")
STORY_TYPES = ("text", "int4", "text", "int4", "int4", "timestamptz", "timestamptz", "text", "timestamptz",
               "timestamptz")
ARTICLE_COLUMNS = ("id", "story_id", "input_id", "url", "url_normalised", "source", "title", "body", "lang",
                   "content_hash", "published_at", "scraped_at", "num_shingles", "signature", "shingle_hashes",
                   "fingerprint_identity", "match_method", "similarity", "containment", "source_topic",
                   "source_partition", "source_offset", "source_timestamp", "match_partition", "stored_at", "extra")
ARTICLE_TYPES = ("text", "text", "text", "text", "text", "text", "text", "text", "text", "text", "timestamptz",
                 "timestamptz", "int4", "bytea", "bytea", "text", "text", "float8", "float8", "text", "int4", "int8",
                 "timestamptz", "int4", "timestamptz", "text")


class BaseState:
    """The base set as the production matcher leaves it: each article's story, method and similarity."""

    def __init__(self, deriver: Deriver) -> None:
        settings = load_settings({})
        matcher = build_matcher(settings)
        lineage = Lineage("bench", 0, 0)
        for article in deriver.base:
            matcher.process(article, lineage)
            matcher.take_changes()
        self.articles = matcher.articles
        self.stories = matcher.stories


def copy_generation(conn: psycopg.Connection, deriver: Deriver, state: BaseState, g: int, limit: int,
                    now: datetime) -> int:
    """COPY the first ``limit`` articles of generation ``g`` (and their stories); returns articles written."""
    suffix = f"-g{g}"
    shift = deriver.span * g
    chosen = list(deriver.generation(g))[:limit]
    base_keys = [article.key[: -len(suffix)] for article in chosen]
    wanted_stories = {state.articles[key].story_id for key in base_keys}
    chosen_keys = set(base_keys)
    with conn.cursor() as cur:
        with cur.copy(f"COPY stories ({', '.join(STORY_COLUMNS)}) FROM STDIN") as copy:
            copy.set_types(STORY_TYPES)
            for sid in sorted(wanted_stories):
                story = state.stories[sid]
                members = [k for k in story.members if k in chosen_keys] if limit < len(deriver) else story.members
                copy.write_row((sid + suffix, 0, story.canonical_key + suffix, len(members), len(story.outlets),
                                story.first_seen + shift, story.last_seen + shift, None, now, now))
        with cur.copy(f"COPY articles ({', '.join(ARTICLE_COLUMNS)}) FROM STDIN") as copy:
            copy.set_types(ARTICLE_TYPES)
            for offset, (article, base_key) in enumerate(zip(chosen, base_keys, strict=True)):
                indexed = state.articles[base_key]
                copy.write_row((
                    article.key, indexed.story_id + suffix, article.input_id, article.url, article.url_normalised,
                    article.source, article.title, article.text, article.lang, article.content_hash,
                    article.published_at, article.scraped_at, article.num_shingles,
                    array_to_bytes(article.signature), array_to_bytes(article.shingle_hashes),
                    article.fingerprint_identity, indexed.method, indexed.similarity.jaccard,
                    indexed.similarity.containment, "bench.raw", 0, g * len(deriver) + offset, now, 0, now,
                    json.dumps(article.metadata),
                ))
    return len(chosen)


def load_rows(owner_url: str, deriver: Deriver, state: BaseState, have: int, want: int, progress: Progress) -> None:
    """Add generations until ``want`` articles are stored (``have`` already are)."""
    n = len(deriver)
    now = datetime.now(UTC)
    with psycopg.connect(libpq_url(owner_url)) as conn:
        while have < want:
            g, offset = divmod(have, n)
            if offset:
                raise ValueError("sizes must be reached generation by generation")
            with conn.transaction():
                written = copy_generation(conn, deriver, state, g, min(n, want - have), now)
            have += written
            progress.update(written)
        conn.execute("ANALYZE stories")
        conn.execute("ANALYZE articles")


def rebuild(app_url: str, profile: bool = False) -> dict:
    """One production rebuild, in a forked child so that its RSS and time start clean."""
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    child = context.Process(target=_rebuild_child, args=(app_url, results, profile))
    child.start()
    result = results.get()
    child.join()
    return result


def _rebuild_child(app_url: str, results, profile: bool) -> None:  # type: ignore[no-untyped-def]
    settings = load_settings({})
    engine = make_engine(app_url)
    matcher = build_matcher(settings)
    rss0 = settled_rss()
    profiler = cProfile.Profile() if profile else None
    cpu, wall = time.process_time(), time.perf_counter()
    if profiler:
        profiler.enable()
    loaded = StoryStore(engine).load_into(matcher, [0], matcher.fingerprint.identity)
    if profiler:
        profiler.disable()
    seconds, cpu_seconds = time.perf_counter() - wall, time.process_time() - cpu
    rss = settled_rss()
    engine.dispose()
    result = {"articles": loaded, "seconds": round(seconds, 2), "cpu_seconds": round(cpu_seconds, 2),
              "articles_per_s": round(loaded / seconds), "seconds_per_million": round(seconds / loaded * 1e6, 1),
              "rss_bytes_per_article": round((rss - rss0) / loaded), "stories": len(matcher.stories)}
    if profiler:
        out = io.StringIO()
        for order in ("cumulative", "tottime"):
            out.write(f"cProfile of load_into, {loaded:,} articles (timings inflated by the profiler), "
                      f"top 15 by {order}:\n")
            pstats.Stats(profiler, stream=out).strip_dirs().sort_stats(order).print_stats(15)
        result["profile"] = out.getvalue()
    results.put(result)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="20k and 100k stored articles (about a minute)")
    parser.add_argument("--sizes", help="comma-separated stored-article counts (default 100000,1000000; "
                                        "quick 20000,100000); rounded up to whole generations of the base set")
    parser.add_argument("--keep", action="store_true", help="leave the rows in the database afterwards")
    parser.add_argument("--profile", action="store_true",
                        help="also cProfile one more rebuild at the largest size (untimed; top 15)")
    args = parser.parse_args()
    wanted = sorted(int(s) for s in (args.sizes or ("20000,100000" if args.quick else "100000,1000000")).split(","))

    found = print_header("rebuild: StoryStore.load_into from PostgreSQL (the local `newsdedup` database)")
    services = services_env()
    owner, app = services["NEWSDEDUP_MIGRATION_DATABASE_URL"], services["NEWSDEDUP_DATABASE_URL"]
    note("recreating the tables of the `newsdedup` database (drop as owner, newsdedup db upgrade)")
    fresh_database(owner)

    dev = load_dev()
    deriver = Deriver(prepare_all(list(Corpus(dev, seed=21).records(len(dev)))))
    state = BaseState(deriver)
    n = len(deriver)
    sizes = [-(-size // n) * n for size in wanted]  # whole generations
    print(f"base set: {n:,} articles in {len(state.stories):,} stories; sizes (whole generations): "
          + ", ".join(f"{s:,}" for s in sizes))

    results = []
    have = 0
    try:
        for size in sizes:
            progress = Progress(f"COPY to {size:,} stored articles", size - have)
            started = time.perf_counter()
            load_rows(owner, deriver, state, have, size, progress)
            progress.close()
            copy_seconds = time.perf_counter() - started
            note(f"loaded {size - have:,} rows in {copy_seconds:.1f} s; rebuilding")
            result = rebuild(app)
            result["copy_rows_per_s"] = round((size - have) / copy_seconds)
            have = size
            results.append(result)
            note(f"rebuilt {result['articles']:,} articles in {result['seconds']} s")
        profile = rebuild(app, profile=True)["profile"] if args.profile else None  # an extra, untimed rebuild
    finally:
        if not args.keep:
            empty_tables(owner)

    print()
    print(f"{'stored':>10} {'rebuild s':>10} {'CPU s':>8} {'articles/s':>11} {'s per million':>14} {'RSS B/art':>10} "
          f"{'COPY rows/s':>12}")
    for r in results:
        print(f"{r['articles']:>10,} {r['seconds']:>10.1f} {r['cpu_seconds']:>8.1f} {r['articles_per_s']:>11,} "
              f"{r['seconds_per_million']:>14,.1f} {r['rss_bytes_per_article']:>10,} {r['copy_rows_per_s']:>12,}")
    last = results[-1]
    print(f"rebuild at {last['articles']:,}: {last['seconds_per_million']:,.0f} s per million articles "
          f"(target <= 60 s for 1M: {'met' if last['seconds_per_million'] <= 60 else 'NOT met'})")
    if profile:
        print()
        print(profile)
    emit({"script": "rebuild", "rebuild_seconds_per_million": last["seconds_per_million"], "sizes": results,
          "versions": found})
    return 0


if __name__ == "__main__":
    sys.exit(main())
