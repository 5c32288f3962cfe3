"""Secrets stay secret, against the real services.

- The database password, the migration URL's password and the Kafka SASL password never show in
  what the commands print (stdout, the JSON log on stderr), nor on the metrics and health pages
  of a running role: `newsdedup db check`, `settings`, `export` and a short `match`. Every test runs
  twice: with the secrets in NEWSDEDUP_<NAME> variables, and in files named by NEWSDEDUP_<NAME>_FILE
  (as compose secrets are mounted). TLS URLs and secret files against a server of their own:
  test_postgres_security.py.
- A wrong database password fails with a clear error that names the server, not the password.
- The app role holds row privileges only (SELECT, INSERT, UPDATE, DELETE) on the tables, grants
  nothing further, owns nothing and inherits from no role. (That it cannot CREATE or DROP tables
  is tested in test_pipeline.py.)

The app role's password is whatever scripts/services.sh gave it (it cannot be changed here without
disturbing other users of the shared services), so the distinctive secrets are also planted where
nothing needs them: the SASL password (unused on a PLAINTEXT listener) and the migration URL's
password (used only by `db upgrade`). The Kafka SASL/TLS pass-through itself is checked without a
broker in tests/unit/test_properties.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from consumers.settings import Settings, env_name, file_variable, secret_file_variables
from consumers.storage.models import Base
from tests.integration.conftest import ROOT, Services, free_port, run_cli, settings_env, start_cli
from tests.integration.observability_support import http_get

pytestmark = pytest.mark.integration

ROW_PRIVILEGES = {"SELECT", "INSERT", "UPDATE", "DELETE"}


@dataclass(frozen=True)
class Secrets:
    env: dict[str, str]  # the full environment for the CLI: the test's settings plus planted secrets
    values: tuple[str, ...]  # every spelling of every secret that must never be shown
    host: str
    port: int
    form: str  # "variables" (NEWSDEDUP_<NAME>=secret) or "files" (NEWSDEDUP_<NAME>_FILE=a file holding it)
    folder: Path  # where the files go

    def with_secret(self, name: str, value: str) -> dict[str, str]:
        """The environment with the secret setting ``name`` set to ``value``, in this form."""
        env = {k: v for k, v in self.env.items() if k not in {env_name(name), file_variable(name)}}
        return {**env, **secret_env(self.form, self.folder, name, value)}


def secret_env(form: str, folder: Path, name: str, value: str) -> dict[str, str]:
    if form == "variables":
        return {env_name(name): value}
    path = folder / f"{name}-{uuid.uuid4().hex[:6]}"
    path.write_text(value + "\n")  # as `echo ... > file` leaves it: the newline is not part of the secret
    path.chmod(0o400)
    return {file_variable(name): str(path)}


def secret_spellings(secret: str) -> set[str]:
    """The secret as written and as it appears inside a URL (percent-encoded)."""
    return {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret)}


@pytest.fixture(params=["variables", "files"])
def secrets(request: pytest.FixtureRequest, services: Services, settings: Settings, tmp_path: Path) -> Secrets:
    form = request.param
    tag = uuid.uuid4().hex[:12]
    sasl_secret = f"SaslSecret-{tag}-kz"
    migration_secret = f"MigrationSecret-{tag}-qx"
    app_url = make_url(settings.database_url)
    app_password = app_url.password or ""
    assert len(app_password) >= 6, "the app role's password is too short to search for in output meaningfully"
    migration_url = make_url(services.owner_url).set(password=migration_secret)
    env = settings_env(settings)
    planted = {
        "database_url": settings.database_url,
        "migration_database_url": migration_url.render_as_string(hide_password=False),
        "kafka_sasl_password": sasl_secret,
    }
    for name, value in planted.items():
        del env[env_name(name)]
        env.update(secret_env(form, tmp_path, name, value))
    env[env_name("log_level")] = "DEBUG"  # the most the roles ever log
    files = [Path(env[variable]) for variable in secret_file_variables() if variable in env]
    given = [*env.values(), *(path.read_text() for path in files)]
    values = set()
    for secret in (app_password, sasl_secret, migration_secret):
        values |= secret_spellings(secret)
        # The process is really given each secret: a leak would have something to leak.
        assert any(secret in value or urllib.parse.quote(secret, safe="") in value for value in given), secret
    return Secrets(env, tuple(sorted(values)), app_url.host or "", app_url.port or 5432, form, tmp_path)


def assert_no_secret(where: str, content: str | bytes, secrets: Secrets) -> None:
    if isinstance(content, bytes):
        content = content.decode("utf-8", "replace")
    leaked = [value for value in secrets.values if value in content]
    assert not leaked, f"{where} shows a secret ({len(leaked)} spelling(s)):\n{content[-2000:]}"


# -- what the commands print -----------------------------------------------------------------------


def test_db_check_shows_the_server_but_not_the_password(secrets: Secrets) -> None:
    result = run_cli(["db", "check"], secrets.env)
    assert_no_secret("db check stdout", result.stdout, secrets)
    assert_no_secret("db check stderr", result.stderr, secrets)
    assert f"{secrets.host}:{secrets.port}" in result.stdout and "***" in result.stdout, result.stdout
    assert "is at head" in result.stdout


def test_settings_shows_every_setting_with_secrets_masked(secrets: Secrets) -> None:
    result = run_cli(["settings"], secrets.env)
    assert_no_secret("settings stdout", result.stdout, secrets)
    assert_no_secret("settings stderr", result.stderr, secrets)
    lines = {line.split("=", 1)[0].strip(): line for line in result.stdout.splitlines() if "=" in line}
    for name in ("database_url", "migration_database_url", "kafka_sasl_password"):
        line = lines["--" + name.replace("_", "-")]
        assert "'***'" in line, line  # set, and shown as set
        assert (f"(from {file_variable(name)}=" in line) == (secrets.form == "files"), line  # and where from
    assert secrets.env[env_name("kafka_bootstrap_servers")] in lines["--kafka-bootstrap-servers"]  # others shown


def test_export_never_shows_the_password(secrets: Secrets) -> None:
    result = run_cli(["export", "--output", "-"], secrets.env)
    assert_no_secret("export stdout", result.stdout, secrets)
    assert_no_secret("export stderr", result.stderr, secrets)
    assert "exported 0 articles to -" in result.stderr


@dataclass
class Drained:
    """A subprocess whose stdout and stderr are read to the end by threads (no full pipe ever blocks it)."""

    process: subprocess.Popen[str]
    out: list[str] = field(default_factory=list)
    err: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._threads = [threading.Thread(target=self._drain, args=(stream, sink), daemon=True)
                         for stream, sink in ((self.process.stdout, self.out), (self.process.stderr, self.err))]
        for thread in self._threads:
            thread.start()

    @staticmethod
    def _drain(stream: object, sink: list[str]) -> None:
        for line in stream:  # type: ignore[attr-defined]
            sink.append(line)

    def wait(self, timeout: float) -> int:
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"{self.process.args} did not exit in {timeout} s:\n{''.join(self.err)[-3000:]}")\
                from None
        for thread in self._threads:
            thread.join(timeout=5)
        return self.process.returncode


def run_match_reading_its_pages(env: dict[str, str],
                                port: int) -> tuple[Drained, int, dict[str, list[tuple[int, bytes]]]]:
    """`newsdedup match --exit-when-idle 3` on ``port``; its /metrics, /readyz and /healthz answers, read every
    0.2 s while it runs; returns the drained process, its exit code and the answers by path."""
    role = Drained(start_cli(["match", "--exit-when-idle", "3", "--metrics-port", str(port)], env))
    pages: dict[str, list[tuple[int, bytes]]] = {"/metrics": [], "/readyz": [], "/healthz": []}
    try:
        while role.process.poll() is None:
            for path, answers in pages.items():
                with contextlib.suppress(OSError):  # not listening yet, or already gone
                    answers.append(http_get(f"http://127.0.0.1:{port}{path}", timeout=2))
            time.sleep(0.2)
    finally:
        code = role.wait(timeout=60)
    return role, code, pages


def test_a_running_match_role_never_shows_a_password(secrets: Secrets) -> None:
    port = free_port()
    role, code, pages = run_match_reading_its_pages(secrets.env, port)
    stderr = "".join(role.err)
    assert code == 0, stderr[-3000:]
    assert "match handled 0 messages" in stderr
    assert '"msg": "match started"' in stderr  # the JSON log was written, so there was something to search
    assert any(status == 200 and b"newsdedup_" in body for status, body in pages["/metrics"]), \
        f"no /metrics page scraped while match ran: {[status for status, _ in pages['/metrics']]}"
    assert any(b'"checks"' in body for _, body in pages["/readyz"]), "no /readyz answer while match ran"
    assert_no_secret("match stdout", "".join(role.out), secrets)
    assert_no_secret("match stderr (JSON log)", stderr, secrets)
    for path, answers in pages.items():
        for _, body in answers:
            assert_no_secret(path, body, secrets)


# -- a wrong password ------------------------------------------------------------------------------


@pytest.mark.parametrize("args", [
    ["db", "check"],
    ["export", "--output", "-"],
    ["match", "--exit-when-idle", "1", "--metrics-port", "0"],
], ids=["db-check", "export", "match"])
def test_a_wrong_password_names_the_server_but_not_the_password(secrets: Secrets, settings: Settings,
                                                                args: list[str]) -> None:
    wrong = f"WrongPassword-{uuid.uuid4().hex[:12]}-zv"
    url = make_url(settings.database_url).set(password=wrong)
    env = secrets.with_secret("database_url", url.render_as_string(hide_password=False))
    wrong_secrets = dataclasses.replace(secrets, env=env, values=(*secrets.values, *sorted(secret_spellings(wrong))))
    result = subprocess.run([sys.executable, "-m", "consumers.cli", *args], env=env, cwd=ROOT, capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 1, f"exit {result.returncode}:\n{result.stderr[-3000:]}"
    assert_no_secret(f"{args[0]} stdout", result.stdout, wrong_secrets)
    assert_no_secret(f"{args[0]} stderr", result.stderr, wrong_secrets)
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("newsdedup: database error:"), result.stderr[-3000:]
    assert secrets.host in error and str(secrets.port) in error, error  # which server refused
    assert "password authentication failed" in error, error  # and why
    assert "Traceback" not in result.stderr, result.stderr[-3000:]


# -- the app role's privileges ---------------------------------------------------------------------


def test_the_app_role_holds_only_row_privileges(services: Services, database: str) -> None:
    app_role = make_url(database).username
    owner_role = make_url(services.owner_url).username
    tables = set(Base.metadata.tables)
    owner = create_engine(services.owner_url)
    try:
        with owner.connect() as conn:
            grants = conn.execute(text(
                "SELECT table_schema, table_name, privilege_type, is_grantable, grantor "
                "FROM information_schema.role_table_grants WHERE grantee IN (:app, 'PUBLIC') "
                "AND table_schema NOT IN ('pg_catalog', 'information_schema')"), {"app": app_role}).all()
            owned = conn.execute(text(
                "SELECT schemaname || '.' || tablename FROM pg_tables WHERE tableowner = :app"), {"app": app_role}
            ).scalars().all()
            role = conn.execute(text(
                "SELECT rolsuper, rolcreaterole, rolcreatedb, rolbypassrls, rolreplication "
                "FROM pg_roles WHERE rolname = :app"), {"app": app_role}).one()
            member_of = conn.execute(text(
                "SELECT r.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid "
                "JOIN pg_roles u ON u.oid = m.member WHERE u.rolname = :app"), {"app": app_role}).scalars().all()
    finally:
        owner.dispose()

    beyond_rows = [g for g in grants if g.privilege_type not in ROW_PRIVILEGES]
    assert not beyond_rows, f"{app_role} holds more than row privileges: {beyond_rows}"
    assert not [g for g in grants if g.is_grantable != "NO"], f"{app_role} may pass privileges on: {grants}"
    held: dict[str, set[str]] = {}
    for g in grants:
        held.setdefault(g.table_name, set()).add(g.privilege_type)
    for table in tables:  # it can do its work: every row privilege on every table of the schema
        assert held.get(table) == ROW_PRIVILEGES, f"{app_role} on {table}: {held.get(table)}"
    assert {g.grantor for g in grants if g.table_name in tables} == {owner_role}
    assert not owned, f"{app_role} owns {owned} (an owner has every privilege, granted or not)"
    assert not any(role), f"{app_role} has role attributes beyond LOGIN: {dict(role._mapping)}"
    assert not member_of, f"{app_role} inherits the privileges of {member_of}"
