"""End-to-end throughput through the real Kafka broker and PostgreSQL (started by scripts/services.sh).

Ingests an articles file into fresh topics, then runs `newsdedup prepare` (N workers) and
`newsdedup match` side by side and polls the database until every article is stored. Prints
the producer's rate, the pipeline's rate (first stored → last stored, and start → last stored)
and ends with one JSON line. Uses the local `newsdedup` database (not the tests' newsdedup_test),
whose tables it recreates.

    python bench/kafka_throughput.py [--input ../shared/eval/dev/articles.jsonl] [--prepare-workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

from benchlib import services_env  # bench/ is on sys.path when a script of it runs
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[1]
DEV = ROOT.parent / "shared" / "eval" / "dev" / "articles.jsonl"


def fresh_database(owner_url: str) -> None:
    engine = create_engine(owner_url)
    with engine.begin() as conn:
        for table in ("story_events", "articles", "stories", "consumer_offsets", "alembic_version"):
            conn.execute(text(f'DROP TABLE IF EXISTS "{table}" CASCADE'))
    engine.dispose()


def count_articles(engine) -> int:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM articles")).scalar_one()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", type=Path, default=DEV, help=f"articles JSONL (default {DEV})")
    parser.add_argument("--prepare-workers", type=int, default=1, help="prepare processes (default 1)")
    parser.add_argument("--timeout", type=float, default=600, help="give up after this many seconds")
    args = parser.parse_args()

    services = services_env()
    owner, app = services["NEWSDEDUP_MIGRATION_DATABASE_URL"], services["NEWSDEDUP_DATABASE_URL"]
    fresh_database(owner)
    tag = uuid.uuid4().hex[:8]
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSDEDUP_")}
    env.update({
        "NEWSDEDUP_KAFKA_BOOTSTRAP_SERVERS": services["NEWSDEDUP_KAFKA_BOOTSTRAP_SERVERS"],
        "NEWSDEDUP_DATABASE_URL": app, "NEWSDEDUP_TOPIC_RAW": f"b{tag}.raw",
        "NEWSDEDUP_TOPIC_FINGERPRINTED": f"b{tag}.fingerprinted", "NEWSDEDUP_TOPIC_DEAD_LETTERS": f"b{tag}.dlq",
        "NEWSDEDUP_TOPIC_STORY_EVENTS": f"b{tag}.events", "NEWSDEDUP_PREPARE_GROUP": f"b{tag}-prepare",
        "NEWSDEDUP_MATCH_GROUP": f"b{tag}-match", "NEWSDEDUP_METRICS_PORT": "0", "NEWSDEDUP_LOG_LEVEL": "WARNING",
    })
    cli = [sys.executable, "-m", "consumers.cli"]
    subprocess.run([*cli, "db", "upgrade", "--db", owner], env=env, check=True, capture_output=True)
    total = sum(1 for line in args.input.open("rb") if line.strip())

    started = time.perf_counter()
    subprocess.run([*cli, "ingest", str(args.input), "--no-progress"], env=env, check=True, capture_output=True)
    ingest_seconds = time.perf_counter() - started

    engine = create_engine(app)
    roles = [subprocess.Popen([*cli, "prepare"], env=env, stderr=subprocess.DEVNULL)
             for _ in range(args.prepare_workers)]
    roles.append(subprocess.Popen([*cli, "match"], env=env, stderr=subprocess.DEVNULL))
    pipeline_started = time.perf_counter()
    first_stored = None
    stored = 0
    try:
        while stored < total and time.perf_counter() - pipeline_started < args.timeout:
            time.sleep(0.2)
            stored = count_articles(engine)
            if stored and first_stored is None:
                first_stored = time.perf_counter()
    finally:
        for role in roles:
            role.terminate()
        for role in roles:
            role.wait(timeout=30)
    done = time.perf_counter()
    if stored < total:
        sys.exit(f"only {stored} of {total} articles stored within {args.timeout} s")
    steady = stored / (done - first_stored) if first_stored and done > first_stored else float("nan")
    overall = stored / (done - pipeline_started)
    print(f"ingest: {total} articles in {ingest_seconds:.1f} s ({total / ingest_seconds:.0f} articles/s)")
    print(f"pipeline ({args.prepare_workers} prepare + 1 match): {stored} stored, {overall:.0f} articles/s from start "
          f"(group joins included), {steady:.0f} articles/s from the first stored article")
    print(json.dumps({"script": "kafka_throughput", "articles": total, "prepare_workers": args.prepare_workers,
                      "ingest_articles_per_s": round(total / ingest_seconds), "e2e_articles_per_s": round(overall),
                      "e2e_steady_articles_per_s": round(steady)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
