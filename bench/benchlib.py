"""Shared helpers of the performance benchmarks (bench/fingerprint.py, matcher.py, rebuild.py, ...).

Not a benchmark itself. What every benchmark script does through it:

- prints the versions it ran with (python, numpy, datasketch, kafka-python, sqlalchemy, psycopg,
  xxhash) and the git commit of the working tree (the code under test changes while people work);
- shows progress on stderr (a live line on a terminal, a line every few seconds otherwise);
- quotes medians of repeated rounds, and ratios measured side by side in the same round;
- ends with exactly one JSON line on stdout (``emit``), which bench/run.py reads.

It also holds the pieces several scripts share: RSS from /proc/self/status (psutil is not
installed), the local services' settings (scripts/services.sh), a fresh ``newsdedup`` database,
and the cheap derivation of many distinct pre-fingerprinted articles from one fingerprinted base
set (``derive``), which bench/matcher.py and bench/rebuild.py both use.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import hashlib
import importlib.metadata
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
DEV = ROOT.parent / "shared" / "eval" / "dev" / "articles.jsonl"
PACKAGES = ("numpy", "datasketch", "kafka-python", "sqlalchemy", "psycopg", "xxhash")


# -- versions and output ----------------------------------------------------------------------

def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    found["commit"] = git_commit()
    return found


def git_commit() -> str:
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no", "consumers"],
                               capture_output=True, text=True, check=True).stdout.strip()
        return head + ("+dirty(consumers)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def print_header(title: str) -> dict[str, str]:
    found = versions()
    load = os.getloadavg()
    print(f"== {title}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in found.items()))
    print(f"machine: {os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at start")
    sys.stdout.flush()
    return found


def emit(result: dict[str, Any]) -> None:
    """The closing JSON line (one line, last on stdout)."""
    sys.stdout.flush()
    print(json.dumps(result, sort_keys=False, default=_jsonable))
    sys.stdout.flush()


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def median(values: Iterable[float]) -> float:
    values = [v for v in values if v == v]  # drop NaN
    return statistics.median(values) if values else float("nan")


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of an unsorted sequence."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, int(np.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


def spread(values: Sequence[float]) -> str:
    """'median (min-max, n rounds)' for a figure measured in several rounds."""
    if not values:
        return "n/a"
    return f"{median(values):,.0f} (min {min(values):,.0f}, max {max(values):,.0f}, {len(values)} rounds)"


class Progress:
    """Progress on stderr: a live line on a terminal, otherwise a line every ``every`` seconds."""

    def __init__(self, label: str, total: int | None = None, every: float = 5.0) -> None:
        self.label, self.total, self.done = label, total, 0
        self.started = self._shown = time.perf_counter()
        self.tty = sys.stderr.isatty()
        self.every = 0.25 if self.tty else every
        self._line(force=True)

    def update(self, n: int = 1) -> None:
        self.done += n
        if time.perf_counter() - self._shown >= self.every:
            self._line()

    def note(self, text: str) -> None:
        self._end_line()
        print(f"[{self.label}] {text}", file=sys.stderr, flush=True)

    def close(self) -> None:
        self._line(force=True)
        self._end_line()

    def _line(self, force: bool = False) -> None:
        now = time.perf_counter()
        self._shown = now
        elapsed = now - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        of = f"/{self.total:,}" if self.total else ""
        eta = ""
        if self.total and rate > 0 and self.done < self.total:
            eta = f", ~{(self.total - self.done) / rate:.0f} s left"
        text = f"[{self.label}] {self.done:,}{of} ({rate:,.0f}/s, {elapsed:.0f} s{eta})"
        if self.tty:
            print("\r" + text + "\x1b[K", end="", file=sys.stderr, flush=True)
        elif force or not self.tty:
            print(text, file=sys.stderr, flush=True)

    def _end_line(self) -> None:
        if self.tty:
            print(file=sys.stderr, flush=True)


def note(text: str) -> None:
    print(f"[bench] {text}", file=sys.stderr, flush=True)


# -- memory -----------------------------------------------------------------------------------

def rss_bytes() -> int:
    """Resident set size of this process (VmRSS of /proc/self/status)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def settled_rss() -> int:
    gc.collect()
    return rss_bytes()


# -- CPU time of processes --------------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int, children: bool = False) -> float:
    """CPU seconds (user + system, all threads) of a live process from /proc/<pid>/stat; with
    ``children``, plus those of its children it has waited for. 0.0 if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rpartition(")")[2].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of proc(5))
    if children:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime
    return ticks / CLOCK_TICKS


def service_pids() -> dict[str, int]:
    """Process ids of the local Kafka broker and PostgreSQL server (``scripts/services.sh status``)."""
    result = subprocess.run(["bash", str(ROOT / "scripts" / "services.sh"), "status"], capture_output=True, text=True)
    pids = {}
    for line in (result.stdout + result.stderr).splitlines():
        name, _, rest = line.partition(": running (pid ")
        if rest:
            pids[name.strip()] = int(rest.split(",")[0].split(")")[0])
    return pids


def client_ports(pids: list[int], server_port: int) -> set[int]:
    """Local ports of the TCP connections the processes ``pids`` hold to ``server_port`` on this host."""
    inodes = set()
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith("socket:["):
                        inodes.add(target[8:-1])
        except OSError:
            continue
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table, encoding="ascii") as lines:
            for line in list(lines)[1:]:
                cols = line.split()
                if cols[9] in inodes and int(cols[2].rsplit(":", 1)[1], 16) == server_port:
                    ports.add(int(cols[1].rsplit(":", 1)[1], 16))
    return ports


def postgres_cpu(postmaster: int, clients: set[int] | None = None) -> dict[int, float]:
    """CPU seconds of the live processes of a PostgreSQL server: the shared auxiliary ones (WAL
    writer, checkpointer, ...: other users of the server count there too) and the backends that
    serve the client ports ``clients`` (none if None)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if parent != postmaster or not title.startswith("postgres: "):
            continue
        words = title.split()
        backend = len(words) >= 4 and "(" in words[3]
        if not backend or (clients and int(words[3].rsplit("(", 1)[1].rstrip(")")) in clients):
            found[int(entry.name)] = process_cpu(int(entry.name))
    return found


class CpuMeter:
    """CPU seconds spent by named processes between ``start()`` and ``stop()``.

    ``track(name, pid)`` follows one process (a role); the Kafka JVM is followed whole (other users
    of the broker count too); PostgreSQL as its auxiliary processes plus the backends that serve
    the tracked processes (found by their client ports at stop; the roles keep their connections).
    """

    def __init__(self, pg_port: int = 15432) -> None:
        self.pg_port = pg_port
        self.pids: dict[str, list[int]] = {}
        self.begin: dict[str, float] = {}
        self.spent: dict[str, float] = {}
        self.services = service_pids()
        self._pg_begin: dict[int, float] = {}

    def track(self, name: str, pid: int) -> None:
        self.pids.setdefault(name, []).append(pid)
        self.begin[f"{name}:{pid}"] = process_cpu(pid)

    def start(self) -> None:
        if "kafka" in self.services:
            self.track("kafka", self.services["kafka"])
        if "postgres" in self.services:
            self._pg_begin = postgres_cpu(self.services["postgres"])

    def stop(self) -> dict[str, float]:
        roles = [pid for name, pids in self.pids.items() if name != "kafka" for pid in pids]
        if "postgres" in self.services:
            end = postgres_cpu(self.services["postgres"], client_ports(roles, self.pg_port))
        for name, pids in self.pids.items():
            self.spent[name] = sum(process_cpu(pid) - self.begin[f"{name}:{pid}"] for pid in pids)
        if "postgres" in self.services:
            self.spent["postgres"] = sum(cpu - self._pg_begin.get(pid, 0.0) for pid, cpu in end.items())
        return self.spent


# -- local services ---------------------------------------------------------------------------

def services_env() -> dict[str, str]:
    """`bash scripts/services.sh up` (idempotent) and the settings it prints."""
    result = subprocess.run(["bash", str(ROOT / "scripts" / "services.sh"), "up"], capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"scripts/services.sh up failed:\n{result.stderr[-2000:]}")
    env = {}
    for line in result.stdout.splitlines():
        if line.startswith("export "):
            key, _, value = line.removeprefix("export ").partition("=")
            env[key] = shlex.split(value)[0]
    return env


def role_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without any NEWSDEDUP_* setting, plus ``extra``; no metrics server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSDEDUP_")}
    env.update({"NEWSDEDUP_METRICS_PORT": "0", "NEWSDEDUP_LOG_LEVEL": "WARNING"})
    env.update(extra or {})
    return env


def fresh_database(owner_url: str) -> None:
    """Drop newsdedup's tables in the `newsdedup` database (as the owner) and migrate it to head."""
    from sqlalchemy import create_engine, text

    if not owner_url.rstrip("/").endswith("/newsdedup"):
        sys.exit(f"refusing to recreate tables of {owner_url.rsplit('@', 1)[-1]}: only the local `newsdedup` database")
    engine = create_engine(owner_url)
    with engine.begin() as conn:
        for table in ("event_relay", "story_events", "articles", "stories", "consumer_offsets", "alembic_version"):
            conn.execute(text(f'DROP TABLE IF EXISTS "{table}" CASCADE'))
    engine.dispose()
    subprocess.run([sys.executable, "-m", "consumers.cli", "db", "upgrade", "--db", owner_url], env=role_env(),
                   check=True, capture_output=True, cwd=ROOT)


class PrivateSchema:
    """A schema of its own in the local `newsdedup` database, migrated to head, for one benchmark run.

    Other people's benchmarks on this machine use the same database (and recreate its tables):
    in a schema of its own (``search_path`` set through the URLs), a run neither sees their rows
    nor drops their tables. ``owner_url`` / ``app_url`` point into it; ``drop()`` removes it.
    ``tree``: the checkout whose migrations make the schema (the one whose roles run on it).
    """

    def __init__(self, services: dict[str, str], tag: str, tree: Path = ROOT) -> None:
        from sqlalchemy import create_engine, text

        owner = services["NEWSDEDUP_MIGRATION_DATABASE_URL"]
        if not owner.rstrip("/").endswith("/newsdedup"):
            sys.exit(f"refusing to use {owner.rsplit('@', 1)[-1]}: only the local `newsdedup` database")
        self.schema = f"bench_{tag}"
        app_role = services["NEWSDEDUP_DATABASE_URL"].split("://", 1)[1].split(":", 1)[0]
        self._owner_base = owner
        engine = create_engine(owner)
        with engine.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{self.schema}"'))
            conn.execute(text(f'GRANT USAGE ON SCHEMA "{self.schema}" TO "{app_role}"'))
            conn.execute(text(f'ALTER DEFAULT PRIVILEGES IN SCHEMA "{self.schema}" '
                              f'GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO "{app_role}"'))
            conn.execute(text(f'ALTER DEFAULT PRIVILEGES IN SCHEMA "{self.schema}" '
                              f'GRANT USAGE, SELECT ON SEQUENCES TO "{app_role}"'))
        engine.dispose()
        option = f"options=-csearch_path%3D{self.schema}"
        self.owner_url = f"{owner}{'&' if '?' in owner else '?'}{option}"
        app = services["NEWSDEDUP_DATABASE_URL"]
        self.app_url = f"{app}{'&' if '?' in app else '?'}{option}"
        upgrade = subprocess.run([sys.executable, "-m", "consumers.cli", "db", "upgrade", "--db", self.owner_url],
                                 env={**role_env(), "PYTHONPATH": str(tree)}, capture_output=True, text=True,
                                 cwd=tree)
        if upgrade.returncode != 0:
            self.drop()
            sys.exit(f"newsdedup db upgrade in schema {self.schema} failed:\n{upgrade.stderr[-2000:]}")

    def drop(self) -> None:
        from sqlalchemy import create_engine, text

        engine = create_engine(self._owner_base)
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE'))
        engine.dispose()


def empty_tables(owner_url: str) -> None:
    """Give the disk back after a large benchmark (tables stay, at head)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(owner_url)
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE event_relay, story_events, articles, stories, consumer_offsets"))
    engine.dispose()


def libpq_url(sqlalchemy_url: str) -> str:
    return sqlalchemy_url.replace("postgresql+psycopg://", "postgresql://", 1)


# -- pre-fingerprinted articles -----------------------------------------------------------------

def prepare_all(records: Sequence[dict[str, Any]], label: str = "fingerprint base set") -> list:
    """The production prepare chain on each record (those it rejects are left out)."""
    from consumers.prepare import prepare_article
    from consumers.settings import load_settings
    from ingest.contract import InvalidArticle, article_from_dict

    config = load_settings({}).fingerprint_config()
    prepared = []
    progress = Progress(label, len(records))
    for record in records:
        with contextlib.suppress(InvalidArticle):
            prepared.append(prepare_article(article_from_dict(dict(record)), config))
        progress.update()
    progress.close()
    return prepared


class Deriver:
    """Distinct pre-fingerprinted articles from one fingerprinted base set, at numpy speed.

    Generation ``g`` is the whole base set again with every 32-bit value (MinHash signature and
    shingle hashes alike) XORed with one random mask of that generation, the hash arrays
    re-sorted, and new keys, ids, content hashes and publication times. XOR with a constant is a
    bijection, so inside a generation equal values stay equal and unequal ones unequal: LSH band
    collisions, candidate sets and exact Jaccard / containment are those of the base set, i.e.
    each generation repeats the base set's copy structure (stories, candidates per article,
    verification work) as new, unrelated stories. Across generations values collide only by
    chance (about 1 in 4e9 per band value), as unrelated news does. Bodies are shared (the index
    keeps only their length). Generation 0 uses mask 0: the base set itself, with new keys.
    """

    def __init__(self, base: Sequence, seed: int = 7) -> None:
        self.base = list(base)
        self.seed = seed
        times = [p.published_at for p in self.base]
        self.span = (max(times) - min(times)) + timedelta(hours=1)

    def __len__(self) -> int:
        return len(self.base)

    def mask(self, generation: int) -> np.uint32:
        if generation == 0:
            return np.uint32(0)
        return np.uint32(np.random.default_rng([self.seed, generation]).integers(1, 2**32, dtype=np.uint64))

    def generation(self, g: int, start: int = 0) -> Iterator:
        mask = self.mask(g)
        shift = self.span * g
        suffix = f"-g{g}"
        tail = f"{g:08x}"
        for p in self.base[start:]:
            yield dataclasses.replace(
                p, key=p.key + suffix, input_id=p.input_id + suffix,
                url=p.url + suffix, url_normalised=p.url_normalised + suffix,
                content_hash=p.content_hash[:56] + tail, published_at=p.published_at + shift,
                signature=p.signature ^ mask, shingle_hashes=np.sort(p.shingle_hashes ^ mask),
            )

    def articles(self, count: int, start: int = 0) -> Iterator:
        """``count`` derived articles, from the ``start``-th on (generation after generation)."""
        n = len(self.base)
        index = start
        while index < start + count:
            g, offset = divmod(index, n)
            for article in self.generation(g, offset):
                if index >= start + count:
                    return
                yield article
                index += 1


def file_digest(*paths: Path) -> str:
    digest = hashlib.sha1()
    for path in paths:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]
