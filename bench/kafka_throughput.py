"""End-to-end throughput through the real Kafka broker and PostgreSQL (started by scripts/services.sh).

Ingests an articles file into fresh topics, then runs `newsdedup prepare` (N workers) and
`newsdedup match` side by side and polls the database until every article is stored. Prints
the producer's rate, the pipeline's rate (first stored → last stored, and start → last stored)
and ends with one JSON line. Uses a schema of its own in the local `newsdedup` database (not
the tests' newsdedup_test), dropped at the end, so that other benchmarks on the same database
neither disturb it nor are disturbed.

Also prints the CPU seconds per article of each process: the ingest producer, each role, the
Kafka JVM (during ingest and during the pipeline: other users of the same broker count too) and
PostgreSQL (the backends on the `newsdedup` database plus the server's shared auxiliary
processes). Start-up CPU (imports, connections; measured by probes that start and stop on empty
input) is left out of each process's figure and printed apart. Also prints each role's peak RSS.
``--py-spy DIR`` also samples the roles with py-spy (if installed; not a dependency)
and prints each role's busiest functions. ``--tree PATH`` runs the ingest and the roles from
another checkout (e.g. a `git worktree` of the previous commit), ``--env NEWSDEDUP_X=V`` sets a
setting for them: both for side-by-side comparisons of code or settings.

    python bench/kafka_throughput.py [--input ../shared/eval/dev/articles.jsonl] [--prepare-workers 2]
        [--env NEWSDEDUP_KAFKA_COMPRESSION_TYPE=lz4] [--tree /tmp/base] [--py-spy /tmp/profiles]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from benchlib import CpuMeter, PrivateSchema, services_env  # bench/ is on sys.path when a script of it runs
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[1]
DEV = ROOT.parent / "shared" / "eval" / "dev" / "articles.jsonl"


def steady_rate(progress: list[tuple[float, int]], total: int) -> float:
    """Articles per second between the polls that first saw 10% and 90% of the input stored.

    Not from the first stored article: prepare has worked on the backlog for a while by then, so
    the rate from that moment counts work done before it (it flattered by up to 1.7x on the dev set).
    """
    low = next((t, n) for t, n in progress if n >= 0.1 * total)
    high = next((t, n) for t, n in progress if n >= 0.9 * total)
    return (high[1] - low[1]) / (high[0] - low[0]) if high[0] > low[0] else float("nan")


def count_articles(engine) -> int:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM articles")).scalar_one()


def probe_cpu(commands: dict[str, list[str]], env: dict[str, str], cwd: Path) -> dict[str, float]:
    """CPU seconds each command spends, run side by side to its end."""
    probes = {name: subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=cwd)
              for name, command in commands.items()}
    spent = {}
    for name, probe in probes.items():
        _, status, usage = os.wait4(probe.pid, 0)
        probe.returncode = os.waitstatus_to_exitcode(status)
        spent[name] = usage.ru_utime + usage.ru_stime
    return spent


def startup_cpu(cli: list[str], env: dict[str, str], cwd: Path) -> dict[str, float]:
    """CPU seconds a prepare and a match process spend to start, join an empty topic and stop again
    (the same topics, other groups): what the measured roles spend besides their articles."""
    return probe_cpu({name: [*cli, name, "--exit-when-idle", "2"] for name in ("prepare", "match")}, env, cwd)


def ingest_startup_cpu(cli: list[str], env: dict[str, str], cwd: Path) -> float:
    """CPU seconds ``newsdedup ingest`` spends on an empty file: start, connect, flush, stop."""
    with tempfile.NamedTemporaryFile(suffix=".jsonl") as empty:
        return probe_cpu({"ingest": [*cli, "ingest", empty.name, "--no-progress"]}, env, cwd)["ingest"]


def peak_rss_mb(pid: int) -> float:
    """The most memory a live process has held (VmHWM of /proc/<pid>/status), in MB; 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def summarise_py_spy(path: Path, top: int = 25) -> list[str]:
    """The functions with the most samples in a py-spy raw (collapsed stacks) file, idle frames left out."""
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    if not path.exists():
        return ["(no samples written)"]
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = [frame.split(" (")[0] + " (" + frame.split(" (")[-1].split("/")[-1] for frame in stack.split(";")]
        n = int(count)
        total += n
        for frame in set(frames[1:]):  # the first frame names the thread
            inclusive[frame] = inclusive.get(frame, 0) + n
        own[frames[-1]] = own.get(frames[-1], 0) + n
    ranked = sorted(inclusive.items(), key=lambda item: -item[1])[:top]
    return [f"{100 * n / total:5.1f}% {100 * own.get(frame, 0) / total:5.1f}%  {frame}" for frame, n in ranked]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", type=Path, default=DEV, help=f"articles JSONL (default {DEV})")
    parser.add_argument("--prepare-workers", type=int, default=1, help="prepare processes (default 1)")
    parser.add_argument("--timeout", type=float, default=600, help="give up after this many seconds")
    parser.add_argument("--env", action="append", default=[], metavar="NEWSDEDUP_X=VALUE",
                        help="a setting (or PYTHONPATH) for the ingest and the roles (repeatable)")
    parser.add_argument("--tree", type=Path, help="run the ingest and the roles from this checkout")
    parser.add_argument("--py-spy", type=Path, metavar="DIR", help="sample the roles with py-spy into DIR")
    args = parser.parse_args()
    spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if args.py_spy and not spy:
        parser.error("--py-spy: py-spy is not installed (pip install py-spy)")

    services = services_env()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))  # so that the roles are stopped too
    tag = uuid.uuid4().hex[:8]
    schema = PrivateSchema(services, tag, args.tree.resolve() if args.tree else ROOT)
    try:
        return run(args, services, schema.app_url, tag, spy)
    finally:
        schema.drop()


def run(args: argparse.Namespace, services: dict[str, str], app: str, tag: str, spy: str | None) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSDEDUP_")}
    env.update({
        "NEWSDEDUP_KAFKA_BOOTSTRAP_SERVERS": services["NEWSDEDUP_KAFKA_BOOTSTRAP_SERVERS"],
        "NEWSDEDUP_DATABASE_URL": app, "NEWSDEDUP_TOPIC_RAW": f"b{tag}.raw",
        "NEWSDEDUP_TOPIC_FINGERPRINTED": f"b{tag}.fingerprinted", "NEWSDEDUP_TOPIC_DEAD_LETTERS": f"b{tag}.dlq",
        "NEWSDEDUP_TOPIC_STORY_EVENTS": f"b{tag}.events", "NEWSDEDUP_PREPARE_GROUP": f"b{tag}-prepare",
        "NEWSDEDUP_MATCH_GROUP": f"b{tag}-match", "NEWSDEDUP_METRICS_PORT": "0", "NEWSDEDUP_LOG_LEVEL": "WARNING",
    })
    env.update(dict(item.split("=", 1) for item in args.env))
    cwd = args.tree.resolve() if args.tree else ROOT
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [env.get("PYTHONPATH"), str(cwd)]))
    cli = [sys.executable, "-m", "consumers.cli"]
    total = sum(1 for line in args.input.open("rb") if line.strip())

    startup = startup_cpu(cli, {**env, "NEWSDEDUP_PREPARE_GROUP": f"b{tag}-probe-prepare",
                                "NEWSDEDUP_MATCH_GROUP": f"b{tag}-probe-match"}, cwd)
    ingest_startup = ingest_startup_cpu(cli, env, cwd)
    ingest_meter = CpuMeter()
    ingest_meter.start()
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run([*cli, "ingest", str(args.input.resolve()), "--no-progress"], env=env, check=True,
                   capture_output=True, cwd=cwd)
    ingest_seconds = time.perf_counter() - started
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    ingest_cpu = ingest_meter.stop()
    ingest_cpu["ingest"] = (children_after.ru_utime + children_after.ru_stime
                            - children_before.ru_utime - children_before.ru_stime - ingest_startup)

    engine = create_engine(app)
    meter = CpuMeter()
    meter.start()
    roles = [("prepare", subprocess.Popen([*cli, "prepare"], env=env, stderr=subprocess.DEVNULL, cwd=cwd))
             for _ in range(args.prepare_workers)]
    roles.append(("match", subprocess.Popen([*cli, "match"], env=env, stderr=subprocess.DEVNULL, cwd=cwd)))
    for name, role in roles:
        meter.track(name, role.pid)
    spies = []
    if args.py_spy:
        args.py_spy.mkdir(parents=True, exist_ok=True)
        for i, (name, role) in enumerate(roles):
            out = args.py_spy / f"{name}{i}.txt"
            spies.append((name, out, subprocess.Popen(
                [spy, "record", "--pid", str(role.pid), "--rate", "200", "--nonblocking", "--format", "raw",
                 "--output", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))
    pipeline_started = time.perf_counter()
    progress: list[tuple[float, int]] = []  # (time, articles stored)
    stored = 0
    try:
        while stored < total and time.perf_counter() - pipeline_started < args.timeout:
            time.sleep(0.2)
            stored = count_articles(engine)
            progress.append((time.perf_counter(), stored))
    finally:
        done = time.perf_counter()
        cpu = meter.stop()
        peak_rss = {f"{name}{i}": round(peak_rss_mb(role.pid)) for i, (name, role) in enumerate(roles)}
        for _, _, spying in spies:
            spying.send_signal(2)  # SIGINT: py-spy writes its samples and exits
        for _, _, spying in spies:
            spying.wait(timeout=60)
        for _, role in roles:
            role.terminate()
        for _, role in roles:
            role.wait(timeout=30)
    if stored < total:
        sys.exit(f"only {stored} of {total} articles stored within {args.timeout} s")
    steady = steady_rate(progress, total)
    overall = stored / (done - pipeline_started)
    print(f"ingest: {total} articles in {ingest_seconds:.1f} s ({total / ingest_seconds:.0f} articles/s)")
    print(f"pipeline ({args.prepare_workers} prepare + 1 match): {stored} stored, {overall:.0f} articles/s from start "
          f"(group joins included), {steady:.0f} articles/s steady (from 10% to 90% of the articles stored, "
          f"every stage busy: the whole input waits in Kafka)")
    per_article = {"ingest": ingest_cpu["ingest"] / total, "kafka (ingest)": ingest_cpu.get("kafka", 0.0) / total,
                   "postgres (ingest)": ingest_cpu.get("postgres", 0.0) / total}
    for name in ("prepare", "match"):  # without the start-up (imports, connections), paid once per process
        cpu[name] -= startup[name] * (args.prepare_workers if name == "prepare" else 1)
    per_article.update({name: seconds / stored for name, seconds in cpu.items()})
    pipeline_cpu = sum(seconds for name, seconds in cpu.items())
    startup["ingest"] = ingest_startup
    print("start-up CPU seconds per process (left out below): "
          + ", ".join(f"{name} {seconds:.2f}" for name, seconds in startup.items()))
    print("peak RSS per role (VmHWM; match grows with its index, bench/matcher.py gives bytes per article): "
          + ", ".join(f"{name} {mb:,} MB" for name, mb in peak_rss.items()))
    print(f"CPU ms per article ({os.cpu_count()} cores; pipeline total {1000 * pipeline_cpu / stored:.2f} ms, "
          f"i.e. at most {stored / pipeline_cpu * (os.cpu_count() or 1):.0f} articles/s if it had the cores alone): "
          + ", ".join(f"{name} {1000 * value:.3f}" for name, value in per_article.items()))
    for name, out, _ in spies:
        print(f"py-spy, {name} ({out}), busiest functions (share of samples, inclusive / self):")
        for line in summarise_py_spy(out):
            print("  " + line)
    print(json.dumps({"script": "kafka_throughput", "articles": total, "prepare_workers": args.prepare_workers,
                      "ingest_articles_per_s": round(total / ingest_seconds), "e2e_articles_per_s": round(overall),
                      "e2e_steady_articles_per_s": round(steady),
                      "settings": dict(item.split("=", 1) for item in args.env),
                      "cpu_ms_per_article": {name: round(1000 * value, 3) for name, value in per_article.items()},
                      "startup_cpu_seconds": {name: round(value, 2) for name, value in startup.items()},
                      "peak_rss_mb": peak_rss}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
