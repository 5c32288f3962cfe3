"""End-to-end latency through real Kafka and PostgreSQL at fixed offered loads.

For one and for two prepare workers (``--workers``), starts ``newsdedup prepare`` (N processes) and
``newsdedup match`` on fresh topics against the local services (``bash scripts/services.sh up``)
and a schema of its own in the local ``newsdedup`` database (never ``newsdedup_test``), then
offers articles at fixed rates, 25%, 50% and 90% of the measured sustained maximum, for
``--seconds`` each (default 25; ``--quick`` 8), through the production producer library
(``ingest.producer.ArticleProducer``: acks=all, idempotent, zstd, linger 10 ms, 1 MiB batches), paced by a clock.

Latency of an article: from its produce time (the Kafka record timestamp of the raw message,
which the producer sets at ``send()``; the matcher stores it as ``articles.source_timestamp``) to
``articles.stored_at`` (set by ``StoryStore.write_batch`` as the batch's transaction starts, so the
commit itself, a few ms, is not in it). p50 and p99 per phase, over every article of the phase
(nearest rank). Each phase waits until all its articles are stored before the next begins.

The sustained maximum: ``--max-rate`` (articles/s, all worker counts) or ``--max-rates 1:R1,2:R2``;
without them, bench/kafka_throughput.py is run first (on the dev set) for each worker count and its
steady rate (first stored → last stored) is used. Articles are distinct (bench/corpus.py: dev
articles with new ids and URLs and three word edits), so each one is stored; the benchmark's own
producer shares the 2 cores with Kafka, PostgreSQL and the roles, as a co-located scraper would.

    python bench/kafka_latency.py [--quick] [--workers 1,2] [--loads 25,50,90] [--max-rate 600] [--env K=V]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import (
    BENCH,
    ROOT,
    PrivateSchema,
    Progress,
    emit,
    median,
    note,
    percentile,
    print_header,
    role_env,
    services_env,
)
from corpus import Corpus, load_dev
from kafka import KafkaAdminClient
from sqlalchemy import create_engine, text

from consumers.kafka_io import ensure_topics
from consumers.settings import load_settings
from ingest.producer import ArticleProducer

WARMUP = 100
SETTINGS: dict[str, str] = {}  # --env: settings for the roles


def measured_max(workers: int) -> float:
    """The steady rate bench/kafka_throughput.py measures with this many prepare workers."""
    note(f"measuring the sustained maximum with {workers} prepare worker(s): bench/kafka_throughput.py")
    result = subprocess.run([sys.executable, str(BENCH / "kafka_throughput.py"), "--prepare-workers", str(workers)],
                            capture_output=True, text=True, cwd=ROOT)
    if result.returncode != 0:
        sys.exit(f"bench/kafka_throughput.py failed:\n{result.stdout[-1000:]}\n{result.stderr[-2000:]}")
    return float(json.loads(result.stdout.strip().splitlines()[-1])["e2e_steady_articles_per_s"])


def stored_count(engine, prefix: str) -> int:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM articles WHERE input_id LIKE :p"),
                            {"p": prefix + "%"}).scalar_one()


def latencies(engine, prefix: str) -> tuple[list[float], float]:  # type: ignore[no-untyped-def]
    """Seconds from produce to stored per article, and the stored rate (articles/s) of the phase."""
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT EXTRACT(EPOCH FROM stored_at - source_timestamp), EXTRACT(EPOCH FROM stored_at) "
            "FROM articles WHERE input_id LIKE :p"), {"p": prefix + "%"}).all()
    values = [float(row[0]) for row in rows]
    stored = [float(row[1]) for row in rows]
    span = max(stored) - min(stored) if stored else 0.0
    return values, (len(stored) / span if span > 0 else float("nan"))


def wait_stored(engine, prefix: str, expected: int, timeout: float) -> int:  # type: ignore[no-untyped-def]
    deadline = time.perf_counter() + timeout
    count = 0
    while time.perf_counter() < deadline:
        count = stored_count(engine, prefix)
        if count >= expected:
            break
        time.sleep(0.25)
    return count


def offer(producer: ArticleProducer, corpus: Corpus, start: int, prefix: str, rate: float, seconds: float,
          progress: Progress) -> tuple[int, float]:
    """Send ``rate`` articles/s for ``seconds``, paced by the clock; returns (sent, achieved offered rate)."""
    total = max(1, int(rate * seconds))
    records = []
    for i in range(total):  # made before the clock starts, so making them does not slow the pacing
        record = corpus.record(start + i)
        record["id"] = f"{prefix}{i}"
        records.append(record)
    began = time.perf_counter()
    for i, record in enumerate(records):
        delay = began + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        producer.send(record)
        progress.update()
    elapsed = time.perf_counter() - began
    producer.flush()
    return total, total / elapsed if elapsed > 0 else float("nan")


def run_workers(workers: int, max_rate: float, loads: list[int], seconds: float, services: dict[str, str],
                drain_timeout: float) -> list[dict]:
    tag = uuid.uuid4().hex[:8]
    topics = {"NEWSDEDUP_TOPIC_RAW": f"lat{tag}.raw", "NEWSDEDUP_TOPIC_FINGERPRINTED": f"lat{tag}.fingerprinted",
              "NEWSDEDUP_TOPIC_DEAD_LETTERS": f"lat{tag}.dlq", "NEWSDEDUP_TOPIC_STORY_EVENTS": f"lat{tag}.events"}
    env = role_env({
        "NEWSDEDUP_KAFKA_BOOTSTRAP_SERVERS": services["NEWSDEDUP_KAFKA_BOOTSTRAP_SERVERS"],
        "NEWSDEDUP_DATABASE_URL": services["app_url"],
        "NEWSDEDUP_PREPARE_GROUP": f"lat{tag}-prepare", "NEWSDEDUP_MATCH_GROUP": f"lat{tag}-match", **topics,
        **SETTINGS,
    })
    settings = load_settings(env)
    ensure_topics(settings)
    engine = create_engine(services["app_url"])
    corpus = Corpus(load_dev(), seed=31 + workers)
    log_path = Path(tempfile.mkdtemp(prefix="newsdedup-latency-")) / f"roles-{workers}w.log"
    cli = [sys.executable, "-m", "consumers.cli"]
    results = []
    with log_path.open("wb") as logs:
        roles = [subprocess.Popen([*cli, "prepare"], env=env, stderr=logs, stdout=subprocess.DEVNULL, cwd=ROOT)
                 for _ in range(workers)]
        roles.append(subprocess.Popen([*cli, "match"], env=env, stderr=logs, stdout=subprocess.DEVNULL, cwd=ROOT))
        producer = ArticleProducer(settings.kafka_bootstrap_servers, settings.topic_raw)
        try:
            progress = Progress(f"{workers} prepare: warm-up", WARMUP)
            prefix = f"lat{tag}-warm-"
            offer(producer, corpus, 0, prefix, 50.0, WARMUP / 50.0, progress)
            stored = wait_stored(engine, prefix, WARMUP, 120)
            progress.close()
            if stored < WARMUP:
                sys.exit(f"warm-up: only {stored} of {WARMUP} articles stored in 120 s; role logs: {log_path}")
            start = WARMUP
            for load in loads:
                results.append(phase(producer, engine, corpus, start, f"lat{tag}-{load}-", workers, load,
                                     max_rate * load / 100, seconds, drain_timeout))
                start += results[-1]["sent"]
                time.sleep(1.0)
        finally:
            producer.close()
            for role in roles:
                role.terminate()
            for role in roles:
                try:
                    role.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    role.kill()
            engine.dispose()
            delete_topics(settings, list(topics.values()))
    return results


def phase(producer: ArticleProducer, engine, corpus: Corpus, start: int, prefix: str, workers: int,  # type: ignore[no-untyped-def]
          load: int, rate: float, seconds: float, drain_timeout: float) -> dict:
    progress = Progress(f"{workers} prepare: {load}% load, {rate:,.0f}/s for {seconds:.0f} s", int(rate * seconds))
    sent, offered = offer(producer, corpus, start, prefix, rate, seconds, progress)
    progress.close()
    stored = wait_stored(engine, prefix, sent, drain_timeout)
    values, stored_rate = latencies(engine, prefix)
    result = {
        "prepare_workers": workers, "load_percent": load, "target_rate": round(rate, 1),
        "offered_rate": round(offered, 1), "sent": sent, "stored": stored, "stored_rate": round(stored_rate, 1),
        "p50_seconds": round(percentile(values, 50), 3), "p90_seconds": round(percentile(values, 90), 3),
        "p99_seconds": round(percentile(values, 99), 3), "max_seconds": round(max(values), 3) if values else None,
    }
    note(f"{workers} prepare, {load}%: p50 {result['p50_seconds']} s, p99 {result['p99_seconds']} s "
         f"({stored}/{sent} stored)")
    return result


def delete_topics(settings, names: list[str]) -> None:  # type: ignore[no-untyped-def]
    try:
        admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers.split(","))
        try:
            admin.delete_topics(names, raise_errors=False)
        finally:
            admin.close()
    except Exception as exc:  # cleanup only: a leftover topic is no failure of the benchmark
        note(f"could not delete the benchmark's topics: {exc}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="8 s per load instead of 25")
    parser.add_argument("--workers", default="1,2", help="prepare worker counts to run (default 1,2)")
    parser.add_argument("--loads", default="25,50,90", help="offered loads, percent of the maximum (default 25,50,90)")
    parser.add_argument("--seconds", type=float, help="seconds per load (default 25, quick 8)")
    parser.add_argument("--max-rate", type=float, help="sustained maximum (articles/s) for every worker count")
    parser.add_argument("--max-rates", help="per worker count, e.g. 1:600,2:800 (overrides --max-rate)")
    parser.add_argument("--drain-timeout", type=float, default=120, help="wait this long for a phase's articles")
    parser.add_argument("--env", action="append", default=[], metavar="NEWSDEDUP_X=VALUE",
                        help="a setting for the roles (repeatable), e.g. NEWSDEDUP_BATCH_MAX_MESSAGES=500")
    args = parser.parse_args()
    SETTINGS.update(item.split("=", 1) for item in args.env)
    workers = [int(w) for w in args.workers.split(",")]
    loads = [int(x) for x in args.loads.split(",")]
    seconds = args.seconds or (8.0 if args.quick else 25.0)

    found = print_header("end-to-end latency at fixed offered loads (Kafka + PostgreSQL)")
    maxima: dict[int, float] = {}
    if args.max_rates:
        maxima = {int(w): float(r) for w, r in (part.split(":") for part in args.max_rates.split(","))}
    for w in workers:
        if w not in maxima:
            maxima[w] = args.max_rate if args.max_rate else measured_max(w)
    print("sustained maximum used: " + ", ".join(f"{w} prepare: {maxima[w]:,.0f} articles/s" for w in workers))
    services = services_env()
    note("a schema of its own in the `newsdedup` database (dropped at the end), so no other run disturbs it")
    schema = PrivateSchema(services, uuid.uuid4().hex[:8])
    services = {**services, "app_url": schema.app_url}

    results = []
    try:
        for w in workers:
            results += run_workers(w, maxima[w], loads, seconds, services, args.drain_timeout)
    finally:
        schema.drop()

    print()
    print(f"{'prepare':>7} {'load':>5} {'target/s':>9} {'offered/s':>10} {'stored/s':>9} {'stored':>11} "
          f"{'p50 s':>7} {'p90 s':>7} {'p99 s':>7} {'max s':>7}")
    for r in results:
        print(f"{r['prepare_workers']:>7} {r['load_percent']:>4}% {r['target_rate']:>9,.0f} "
              f"{r['offered_rate']:>10,.0f} {r['stored_rate']:>9,.0f} {r['stored']:>5,}/{r['sent']:<5,} "
              f"{r['p50_seconds']:>7.3f} {r['p90_seconds']:>7.3f} {r['p99_seconds']:>7.3f} {r['max_seconds']:>7.3f}")
    half = [r for r in results if r["load_percent"] == 50]
    p99_half = half[0]["p99_seconds"] if half else float("nan")
    if half:
        print(f"p99 at half load, {half[0]['prepare_workers']} prepare worker(s): {p99_half:.3f} s "
              f"(target <= 1 s: {'met' if p99_half <= 1 else 'NOT met'})")
    emit({"script": "kafka_latency", "seconds_per_load": seconds, "max_rates": maxima,
          "e2e_p99_seconds_at_half_load": p99_half,
          "e2e_p99_seconds_at_half_load_by_workers": {r["prepare_workers"]: r["p99_seconds"] for r in half},
          "e2e_p50_seconds_at_half_load": median([r["p50_seconds"] for r in half[:1]]),
          "phases": results, "versions": found})
    return 0


if __name__ == "__main__":
    sys.exit(main())
