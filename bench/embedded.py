"""Embedded mode on the dev set: `newsdedup run` articles/s, as a user would run it.

Runs ``python -m consumers.cli run --input ../shared/eval/dev/articles.jsonl --db sqlite:///<temp>``
(a new SQLite file in a temporary folder each run; no metrics server; default settings) and reads
the rate from its summary line ("read N articles in S s (R articles/s)": parse → prepare → match
→ SQLite writes, schema creation excluded). The command's whole wall time (interpreter start,
imports, schema migration, summary) is printed beside it. ``--runs`` repeats it and quotes medians.

    python bench/embedded.py [--runs 3] [--input FILE]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import DEV, ROOT, Progress, emit, median, print_header, role_env

SUMMARY = re.compile(r"read (\d+) articles in ([\d.]+) s \((\d+) articles/s\)")


def one_run(path: Path) -> dict:
    with tempfile.TemporaryDirectory(prefix="newsdedup-embedded-") as folder:
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "consumers.cli", "run", "--input", str(path), "--db",
             f"sqlite:///{folder}/bench.db", "--no-progress"],
            capture_output=True, text=True, env=role_env(), cwd=ROOT)
        wall = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"newsdedup run failed:\n{result.stderr[-2000:]}")
    match = SUMMARY.search(result.stdout)
    if not match:
        sys.exit(f"no summary line in the output of newsdedup run:\n{result.stdout[-1000:]}")
    return {"read": int(match.group(1)), "seconds": float(match.group(2)), "articles_per_s": int(match.group(3)),
            "wall_seconds": wall,
            "summary": result.stdout.splitlines()[:7]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1, help="runs (default 1); medians are quoted")
    parser.add_argument("--input", type=Path, default=DEV, help=f"articles JSONL (default {DEV})")
    args = parser.parse_args()

    found = print_header("embedded mode: newsdedup run on the dev set into a temporary SQLite")
    progress = Progress("newsdedup run", args.runs, every=1)
    runs = []
    for _ in range(args.runs):
        runs.append(one_run(args.input))
        progress.update()
    progress.close()
    print("\n".join("  " + line for line in runs[-1]["summary"]))
    rate = median(r["articles_per_s"] for r in runs)
    wall = median(r["wall_seconds"] for r in runs)
    print(f"embedded: {rate:,.0f} articles/s (median of {args.runs} run(s), from its summary); whole command "
          f"{wall:.1f} s wall for {runs[-1]['read']:,} articles ({runs[-1]['read'] / wall:,.0f} articles/s)")
    emit({"script": "embedded", "input": str(args.input), "runs": args.runs, "embedded_dev_articles_per_s": round(rate),
          "embedded_wall_seconds": round(wall, 2), "read": runs[-1]["read"], "versions": found})
    return 0


if __name__ == "__main__":
    sys.exit(main())
