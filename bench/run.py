"""Run every performance benchmark and print the figures of the issue "Performance: benchmarks and a fast path".

In order, each in its own process (their figures are echoed; progress goes to stderr):

  1. bench/fingerprint.py      the fingerprint stage (normalise + shingle + MinHash) and all of prepare_article
                               vs datasketch update / update_batch, articles/s per core
  2. bench/matcher.py          Matcher.process articles/s and index bytes per article (RSS growth)
  3. bench/rebuild.py          StoryStore.load_into from PostgreSQL, seconds per million articles
  4. bench/kafka_throughput.py sustained articles/s through real Kafka + PostgreSQL (1 and, full, 2 prepare)
  5. bench/kafka_latency.py    p50/p99 latency at 25/50/90% of that maximum, 1 and 2 prepare workers; then
                               once more, 1 prepare worker offered the target's 2,000 articles/s live
  6. bench/embedded.py         `newsdedup run` on the dev set into a temporary SQLite
  7. bench/pg_bytes.py         PostgreSQL bytes per article per table, column and index, before (migration 0003)
                               and after (head), inside and past the matcher's window, with each variant's rows/s

Steps 3-5 use the local services (``bash scripts/services.sh up``, idempotent): step 3 recreates the
tables of the local ``newsdedup`` database, steps 4-5 work in a schema of their own there (never
``newsdedup_test``). ``--quick`` uses smaller
sizes and shorter phases (about 3-4 minutes on the 2-core machine); without it, full sizes (1M
articles in the matcher and the database: tens of minutes and about 10 GB of memory).

Ends with one JSON line: fingerprint_articles_per_s and fingerprint_ratio_vs_datasketch_update (the
issue's stage: normalise + shingle + MinHash; prepare_article_* the same for the prepare role's whole work),
matcher_articles_per_s, index_bytes_per_article, rebuild_seconds_per_million, e2e_articles_per_s
(steady rate of kafka_throughput, 1 prepare worker), e2e_p99_seconds_at_half_load (1 prepare
worker), embedded_dev_articles_per_s, pg_bytes_per_article (and _before), and more (targets, versions,
each script's own JSON).

    python bench/run.py --quick [--profile] [--only fingerprint,matcher]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import BENCH, ROOT, emit, note, print_header

LIVE_TARGET = 2000  # articles/s: the end-to-end target
STEPS = ("fingerprint", "matcher", "rebuild", "throughput", "latency", "embedded", "pg_bytes")
TARGETS = {  # key: (comparison, value, the words)
    "fingerprint_articles_per_s": (">=", 4000, "fingerprint stage >= 4,000 articles/s per core"),
    "fingerprint_ratio_vs_datasketch_update": (">=", 20, ">= 20x datasketch per-shingle update"),
    "prepare_article_articles_per_s": (">=", 4000, "the same 4,000/s for all of prepare_article"),
    "matcher_articles_per_s": (">=", 10000, "matcher >= 10,000 articles/s"),
    "index_bytes_per_article": ("<=", 1024, "index <= 1 KB per article"),
    "rebuild_seconds_per_million": ("<=", 60, "rebuild of 1M <= 60 s"),
    "e2e_articles_per_s": (">=", 2000, "end to end >= 2,000 articles/s"),
    "e2e_p99_seconds_at_half_load": ("<=", 1.0, "p99 <= 1 s at half load"),
    "pg_article_bytes_inside_window": ("<=", 4000, "articles <= 4,000 B per dev article inside the window"),
    "pg_article_bytes_past_window": ("<=", 2278, "<= half of 4,556 B per dev article past the window"),
}


def run_script(name: str, arguments: list[str]) -> dict:
    """Run bench/<name>.py, echo its stdout, and return its closing JSON line."""
    command = [sys.executable, str(BENCH / f"{name}.py"), *arguments]
    note("running " + " ".join(["bench/" + name + ".py", *arguments]))
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        lines.append(line.rstrip("\n"))
        if not line.startswith("{"):
            print("  " + line, end="", flush=True)
    code = process.wait()
    seconds = time.perf_counter() - started
    if code != 0 or not lines or not lines[-1].startswith("{"):
        note(f"bench/{name}.py failed (exit {code}) after {seconds:.0f} s")
        return {"error": f"exit {code}", "seconds": round(seconds, 1)}
    result = json.loads(lines[-1])
    result.pop("versions", None)
    result["seconds"] = round(seconds, 1)
    note(f"bench/{name}.py done in {seconds:.0f} s")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, shorter phases (under 5 minutes)")
    parser.add_argument("--profile", action="store_true", help="print cProfile top 15 of the fingerprint stage, "
                                                               "the matcher and the rebuild too")
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(STEPS)}")
    args = parser.parse_args()
    steps = args.only.split(",") if args.only else list(STEPS)
    unknown = set(steps) - set(STEPS)
    if unknown:
        parser.error(f"unknown steps {sorted(unknown)}; choose from {','.join(STEPS)}")
    quick = ["--quick"] if args.quick else []
    profile = ["--profile"] if args.profile else []

    found = print_header(f"newsdedup performance benchmarks ({'quick' if args.quick else 'full'})")
    started = time.perf_counter()
    results: dict[str, dict] = {}
    if "fingerprint" in steps:
        results["fingerprint"] = run_script("fingerprint", quick + profile)
    if "matcher" in steps:
        results["matcher"] = run_script("matcher", quick + profile)
    if "rebuild" in steps:
        results["rebuild"] = run_script("rebuild", quick + profile)
    maxima: dict[int, float] = {}
    if "throughput" in steps or "latency" in steps:
        for workers in (1,) if args.quick else (1, 2):
            result = run_script("kafka_throughput", ["--prepare-workers", str(workers)])
            results[f"throughput_{workers}"] = result
            if "e2e_steady_articles_per_s" in result:
                maxima[workers] = float(result["e2e_steady_articles_per_s"])
    if "latency" in steps:
        if 1 in maxima:
            rates = ",".join(f"{w}:{maxima.get(w, maxima[1]):.0f}" for w in (1, 2))
            results["latency"] = run_script("kafka_latency", [*quick, "--max-rates", rates])
        else:
            note("no sustained maximum measured: skipping bench/kafka_latency.py")
        # The target itself, offered live: the producer shares the 2 cores, as a co-located scraper would.
        results["live_target"] = run_script("kafka_latency", [*quick, "--workers", "1", "--max-rate",
                                                              str(LIVE_TARGET), "--loads", "100"])
    if "embedded" in steps:
        results["embedded"] = run_script("embedded", [] if args.quick else ["--runs", "3"])
    if "pg_bytes" in steps:
        results["pg_bytes"] = run_script("pg_bytes", ["--rounds", "1" if args.quick else "3"])
    seconds = time.perf_counter() - started

    def pick(step: str, key: str) -> float | None:
        return results.get(step, {}).get(key)

    summary = {
        "fingerprint_articles_per_s": pick("fingerprint", "fingerprint_articles_per_s"),
        "fingerprint_ratio_vs_datasketch_update": pick("fingerprint", "fingerprint_ratio_vs_datasketch_update"),
        "prepare_article_articles_per_s": pick("fingerprint", "prepare_article_articles_per_s"),
        "prepare_article_ratio_vs_datasketch_update": pick("fingerprint", "prepare_article_ratio_vs_datasketch_update"),
        "prepare_article_ratio_vs_datasketch_update_batch": pick("fingerprint",
                                                                 "prepare_article_ratio_vs_datasketch_update_batch"),
        "matcher_articles_per_s": pick("matcher", "matcher_articles_per_s"),
        "index_bytes_per_article": pick("matcher", "index_bytes_per_article"),
        "rebuild_seconds_per_million": pick("rebuild", "rebuild_seconds_per_million"),
        "e2e_articles_per_s": pick("throughput_1", "e2e_steady_articles_per_s"),
        "e2e_articles_per_s_from_start": pick("throughput_1", "e2e_articles_per_s"),
        "e2e_p99_seconds_at_half_load": pick("latency", "e2e_p99_seconds_at_half_load"),
        "e2e_p99_seconds_at_half_load_2_prepare": (pick("latency", "e2e_p99_seconds_at_half_load_by_workers")
                                                   or {}).get("2"),
        # What the pipeline kept up with while the producer ran on the same cores at 90% of the maximum:
        # the throughput step drains a backlog, which is kinder than a live stream.
        "e2e_stored_per_s_at_90pct_load": next(
            (phase["stored_rate"] for phase in pick("latency", "phases") or []
             if phase["prepare_workers"] == 1 and phase["load_percent"] == 90), None),
        "e2e_stored_per_s_at_2000_live": next((phase["stored_rate"] for phase in pick("live_target", "phases") or []),
                                              None),
        "e2e_p99_seconds_at_2000_live": next((phase["p99_seconds"] for phase in pick("live_target", "phases") or []),
                                             None),
        "embedded_dev_articles_per_s": pick("embedded", "embedded_dev_articles_per_s"),
        "pg_bytes_per_article": pick("pg_bytes", "pg_bytes_per_article"),
        "pg_bytes_per_article_before": pick("pg_bytes", "pg_bytes_per_article_before"),
        "pg_article_bytes_inside_window": pick("pg_bytes", "pg_article_bytes_inside_window"),
        "pg_article_bytes_past_window": pick("pg_bytes", "pg_article_bytes_past_window"),
    }
    print()
    print(f"== summary ({'quick' if args.quick else 'full'} run, {seconds:.0f} s)")
    for key, value in summary.items():
        target = TARGETS.get(key)
        verdict = ""
        if target and value is not None:
            op, limit, words = target
            met = value >= limit if op == ">=" else value <= limit
            verdict = f"   target: {words}: {'met' if met else 'NOT met'}"
        shown = "n/a" if value is None else f"{value:,}" if isinstance(value, int) else f"{value:,.3g}"
        print(f"  {key:46} {shown:>10}{verdict}")
    emit({**summary, "quick": args.quick, "seconds": round(seconds, 1), "versions": found,
          "targets": {k: f"{op} {v}" for k, (op, v, _) in TARGETS.items()}, "details": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
