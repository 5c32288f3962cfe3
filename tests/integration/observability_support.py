"""Helpers for tests/integration/test_observability.py: a real Prometheus (started through
scripts/prometheus.sh, as operators do), its HTTP API, the dashboard's queries, and the roles
running as long-lived subprocesses whose log is drained so they never block on a full pipe.
"""

from __future__ import annotations

import collections
import json
import os
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from consumers.kafka_io import REASON_HEADER
from tests.integration.conftest import ROOT, alive, free_port, start_cli

ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
DEPLOY_SCRAPE_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "newsdedup.json"
LAG_EXPORTER = "lag-exporter"  # started like a role (start_role), scraped as job newsdedup-lag-exporter
EXPLORER = "explorer"  # newsdedup serve: /metrics on its own port (--explorer-port), scraped as newsdedup-explorer

T = TypeVar("T")


def http_get(url: str, timeout: float = 5) -> tuple[int, bytes]:
    """Status and body; an HTTP error status is an answer too (503 from /readyz)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def eventually(check: Callable[[], T], timeout: float, what: str, interval: float = 0.5) -> T:
    """Call ``check`` until it returns something truthy; fail with the last value after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
            error = None
        except (OSError, AssertionError, KeyError, ValueError) as exc:  # not up yet, not there yet
            result, error = None, exc
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not within {timeout} s (last: {error or result!r})")
        time.sleep(interval)


# -- Prometheus -------------------------------------------------------------------------------------


def scrape_config(targets: dict[str, int], rule_files: list[Path]) -> str:
    """A Prometheus config (JSON is YAML) scraping each role (or the lag exporter, LAG_EXPORTER) every
    second on 127.0.0.1:port, with job names and the role labelling of deploy/prometheus/prometheus.yml,
    and evaluating the rules every second."""
    return json.dumps({
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [{
            "job_name": f"newsdedup-{role}",
            "honor_labels": True,
            "static_configs": [{"targets": [f"127.0.0.1:{port}"]}],
            # The lag exporter's series carry the role whose group they measure; its target gets none.
            "relabel_configs": [] if role == LAG_EXPORTER else [{"target_label": "role", "replacement": role}],
        } for role, port in targets.items()],
    }, indent=1)


@dataclass
class Prometheus:
    port: int
    pid: int
    data: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def api(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        status, body = http_get(f"{self.url}/api/v1/{path}{query}", timeout=10)
        answer = json.loads(body)
        if status != 200 or answer.get("status") != "success":
            raise AssertionError(f"/api/v1/{path} {params}: HTTP {status}: {answer}")
        return answer["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query; the result as a list of samples (a scalar becomes one sample)."""
        data = self.api("query", query=expr)
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        return data["result"]

    def values(self, expr: str) -> dict[tuple[tuple[str, str], ...], float]:
        return {tuple(sorted(s["metric"].items())): float(s["value"][1]) for s in self.query(expr)}

    def value(self, expr: str) -> float | None:
        """The value of a query that returns at most one sample (None for no sample)."""
        samples = self.query(expr)
        assert len(samples) <= 1, f"{expr} returned {len(samples)} samples"
        return float(samples[0]["value"][1]) if samples else None

    def rules(self) -> list[dict[str, Any]]:
        return [rule for group in self.api("rules")["groups"] for rule in group["rules"]]

    def alerts(self) -> list[dict[str, Any]]:
        return self.api("alerts")["alerts"]

    def stop(self) -> None:
        if alive(self.pid):
            os.kill(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while alive(self.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if alive(self.pid):
            os.kill(self.pid, signal.SIGKILL)


@contextmanager
def running_prometheus(config: Path, data: Path) -> Iterator[Prometheus]:
    """Prometheus on a free loopback port (scripts/prometheus.sh run), stopped on exit; installed first
    where missing (the install is idempotent), so no test relies on a machine set up by hand."""
    installed = subprocess.run(["bash", "scripts/prometheus.sh", "install"], cwd=ROOT, capture_output=True,
                               text=True, timeout=600, check=False)
    if installed.returncode != 0:
        raise AssertionError(f"scripts/prometheus.sh install failed:\n{installed.stderr[-3000:]}")
    port = free_port()
    started = subprocess.run(["bash", "scripts/prometheus.sh", "run", str(config), str(port), str(data)],
                             cwd=ROOT, capture_output=True, text=True, timeout=90, check=False)
    if started.returncode != 0:
        raise AssertionError(f"scripts/prometheus.sh run failed:\n{started.stderr[-3000:]}")
    prometheus = Prometheus(port, int(started.stdout.strip()), data)
    try:
        yield prometheus
    finally:
        prometheus.stop()


# -- Grafana ----------------------------------------------------------------------------------------


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title and refId, expr) of every query of every panel (nested in rows too)."""
    dashboard = json.loads(DASHBOARD.read_text())
    panels = []
    for panel in dashboard["panels"]:
        panels.extend(panel.get("panels", []) if panel["type"] == "row" else [panel])
    return [(f"{panel['title']} [{target['refId']}]", target["expr"])
            for panel in panels for target in panel.get("targets", [])]


def grafana_to_promql(expr: str, interval: str = "30s", range_: str = "5m") -> str:
    """Grafana's variables replaced: intervals by a duration, template variables (which sit in
    regex matchers) by ``.*``, as the dashboard's "All" does."""
    for variable, value in (("$__rate_interval", interval), ("$__interval", interval), ("$__range", range_)):
        expr = expr.replace(variable, value)
    return re.sub(r"\$\{?\w+\}?", ".*", expr)


# -- the roles ----------------------------------------------------------------------------------------


class RoleExited(Exception):
    """A role's process ended while the test needed it running."""


@dataclass
class Role:
    """A role started with conftest.start_cli; its stderr (the JSON log) is drained by a thread."""

    name: str
    port: int
    process: subprocess.Popen[str]
    log: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=400))

    def __post_init__(self) -> None:
        def drain(stream: Any, sink: collections.deque[str]) -> None:
            for line in stream:
                sink.append(line)

        self._threads = [threading.Thread(target=drain, args=(stream, self.log), daemon=True)
                         for stream in (self.process.stdout, self.process.stderr)]
        for thread in self._threads:
            thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def check_alive(self) -> None:
        """Raise RoleExited (which eventually() does not retry) if the process has ended."""
        if self.process.poll() is not None:
            raise RoleExited(f"{self.name} exited {self.process.returncode}:\n{self.tail()}")

    def tail(self, lines: int = 40) -> str:
        return "".join(list(self.log)[-lines:])

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, then wait; SIGKILL if it does not stop. Returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for thread in self._threads:
            thread.join(timeout=5)
        return self.process.returncode


def start_role(name: str, env: dict[str, str], port: int) -> Role:
    args = ["serve", "--explorer-port", str(port)] if name == EXPLORER else [name, "--metrics-port", str(port)]
    return Role(name, port, start_cli(args, env))


# -- Kafka --------------------------------------------------------------------------------------------


def reasons_of(messages: list[Any]) -> collections.Counter[str]:
    return collections.Counter(dict(message.headers)[REASON_HEADER].decode() for message in messages)
