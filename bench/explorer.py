"""Speed of the story explorer (``newsdedup serve``) on a generated database of a million articles.

In a private schema of the local ``newsdedup`` database (bench/benchlib.py ``PrivateSchema``, dropped at the
end), ``--articles`` rows are generated as bench/scale.py does (two articles per story, real dev text), and
``--members`` of them are moved into one story. Then ``newsdedup serve`` runs as its own process over that
schema, and this script measures, over HTTP on loopback:

1. URL lookups (``GET /api/lookup?url=...``) by ``--clients`` concurrent clients, each on its own keep-alive
   connection, for URLs sampled from the table: p50, p99 and the rate (issue 15's target: p99 <= 20 ms with 8
   clients);
2. the story page of the large story (``GET /stories/{id}``, the HTML page with its member table and
   timeline), one request at a time: p50 and the slowest (target: <= 300 ms with 500 members);
3. the same story through the API (``GET /api/stories/{id}``).

The clients are threads of this process: on a shared 2-core machine they compete with the server for CPU,
so the figures are an upper bound on the server's own latency.

    python bench/explorer.py [--articles 1000000] [--members 500] [--clients 8] [--lookups 8000] [--keep]
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import ROOT, PrivateSchema, emit, note, percentile, print_header, role_env, services_env
from scale import generate
from sqlalchemy import Engine, create_engine, text

BIG_STORY = "bench-big-story"
STORY_PAGE_ROUNDS = 30
WARM_UP = 200


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--articles", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=250_000, help="rows per generating statement")
    parser.add_argument("--days", type=int, default=120, help="stories last changed over this many days")
    parser.add_argument("--members", type=int, default=500, help="members of the one large story")
    parser.add_argument("--clients", type=int, default=8, help="concurrent lookup clients")
    parser.add_argument("--lookups", type=int, default=8000, help="URL lookups in all")
    parser.add_argument("--keep", action="store_true", help="leave the schema (drop it yourself)")
    args = parser.parse_args()
    found = print_header(f"explorer speed: {args.articles:,} generated articles")
    schema = PrivateSchema(services_env(), f"explorer_{os.getpid()}")
    owner = create_engine(schema.owner_url)
    result: dict[str, Any] = {"articles": args.articles, "members": args.members, "clients": args.clients}
    try:
        generate(schema, owner, args)
        gather_large_story(owner, args.members)
        urls = sample_urls(owner, 5000)
        with Server(schema.app_url) as server:
            result["lookup"] = lookups(server.port, urls, args.clients, args.lookups)
            note(f"URL lookup: {result['lookup']}")
            result["story_page"] = timed_gets(server.port, f"/stories/{BIG_STORY}", STORY_PAGE_ROUNDS)
            note(f"story page, {args.members} members: {result['story_page']}")
            result["story_api"] = timed_gets(server.port, f"/api/stories/{BIG_STORY}", STORY_PAGE_ROUNDS)
            note(f"story API, {args.members} members: {result['story_api']}")
    finally:
        owner.dispose()
        if args.keep:
            note(f"schema {schema.schema} kept")
        else:
            schema.drop()
    print("\n== summary")
    for key, value in result.items():
        print(f"  {key}: {value}")
    emit({**result, "versions": found})
    return 0


def gather_large_story(owner: Engine, members: int) -> None:
    """Move ``members`` generated articles (and their events) into one story, as a wire story carried widely."""
    with owner.begin() as conn:
        conn.execute(text("INSERT INTO stories SELECT :big, match_partition, canonical_article_id, :members, "
                          ":members, first_seen_at, last_seen_at, merged_into, created_at, updated_at "
                          "FROM stories ORDER BY id LIMIT 1"), {"big": BIG_STORY, "members": members})
        conn.execute(text("CREATE TEMP TABLE moved AS SELECT id FROM articles ORDER BY source_offset LIMIT :n"),
                     {"n": members})
        conn.execute(text("UPDATE articles SET story_id = :big WHERE id IN (SELECT id FROM moved)"), {"big": BIG_STORY})
        conn.execute(text("UPDATE story_events SET story_id = :big WHERE article_id IN (SELECT id FROM moved)"),
                     {"big": BIG_STORY})
        conn.execute(text("UPDATE stories SET canonical_article_id = (SELECT min(id) FROM moved) WHERE id = :big"),
                     {"big": BIG_STORY})
        conn.execute(text("ANALYZE"))


def sample_urls(owner: Engine, count: int) -> list[str]:
    with owner.connect() as conn:
        return list(conn.execute(text("SELECT url FROM articles TABLESAMPLE SYSTEM (1) LIMIT :n"), {"n": count})
                    .scalars())


class Server:
    """``newsdedup serve`` over the bench schema, on a free loopback port, until the block ends."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        env = role_env({"NEWSDEDUP_EXPLORER_DATABASE_URL": self.database_url,
                        "NEWSDEDUP_EXPLORER_PORT": str(self.port)})
        self.process = subprocess.Popen([sys.executable, "-m", "consumers.cli", "serve"], env=env, cwd=ROOT,
                                        stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                sys.exit(f"newsdedup serve exited {self.process.returncode}:\n"
                         f"{(self.process.stderr.read() if self.process.stderr else b'').decode()[-2000:]}")
            try:
                if get(self.port, "/readyz")[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.2)
        sys.exit("newsdedup serve was not ready in 60 s")

    def __exit__(self, *_exc: object) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(30)


def get(port: int, path: str, conn: http.client.HTTPConnection | None = None) -> tuple[int, bytes]:
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        if own:
            conn.close()


def lookups(port: int, urls: list[str], clients: int, total: int) -> dict[str, Any]:
    paths = [f"/api/lookup?url={quote(url, safe='')}" for url in urls]
    warm = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for path in paths[:WARM_UP]:
        get(port, path, warm)
    warm.close()
    latencies: list[list[float]] = [[] for _ in range(clients)]
    statuses: dict[int, int] = {}
    lock = threading.Lock()

    def client(index: int) -> None:
        rng = random.Random(index)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for _ in range(total // clients):
            started = time.perf_counter()
            status, _body = get(port, rng.choice(paths), conn)
            latencies[index].append(time.perf_counter() - started)
            with lock:
                statuses[status] = statuses.get(status, 0) + 1
        conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    every = sorted(x for per_client in latencies for x in per_client)
    return {"requests": len(every), "statuses": statuses, "per_second": round(len(every) / seconds),
            "p50_ms": round(percentile(every, 50) * 1000, 1), "p99_ms": round(percentile(every, 99) * 1000, 1),
            "max_ms": round(every[-1] * 1000, 1)}


def timed_gets(port: int, path: str, rounds: int) -> dict[str, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    status, body = get(port, path, conn)  # warm-up, and the page must be there
    if status != 200:
        sys.exit(f"GET {path}: {status} {body[:300]!r}")
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        get(port, path, conn)
        times.append(time.perf_counter() - started)
    conn.close()
    times.sort()
    return {"bytes": len(body), "p50_ms": round(percentile(times, 50) * 1000, 1),
            "max_ms": round(times[-1] * 1000, 1)}


if __name__ == "__main__":
    sys.exit(main())
