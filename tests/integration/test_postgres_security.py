"""PostgreSQL security against a real server: TLS with sslmode=verify-full, scram-sha-256, three roles.

A PostgreSQL of this session's own, started by scripts/services.sh with a run folder and port of its own
and NEWSDEDUP_PG_TLS_CERT/_KEY/_CA: its certificate comes from a throw-away CA (tests/integration/tls.py),
pg_hba.conf takes `hostssl ... scram-sha-256` only and rejects every other TCP connection, and the three
roles get passwords of this session. What is checked:

- `newsdedup db upgrade` (owner), `newsdedup run` and `export` (app) work over verify-full, and the
  connections are encrypted;
- refused, each with one line that names the server and the reason and never a password: a client that
  trusts another CA, sslmode=disable, verify-full without a CA, a wrong password (also from a _FILE);
- the app role cannot change the schema; the reader role reads (tables of today and those made later)
  and writes nothing;
- secrets given as files (NEWSDEDUP_*_FILE) with TLS URLs never show in `settings`, in a running role's log,
  /metrics or /readyz, nor in configuration errors;
- deploy/postgres/init.sql (the compose stack's provisioning) gives the same roles, with passwords read
  from NEWSDEDUP_PG_*_PASSWORD_FILE.

`pytest -s` prints the refusals as a table.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from psycopg import errors as pg_errors
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError

from consumers.settings import env_name, file_variable, load_settings
from tests.integration.conftest import ROOT, Services, exported, free_port, settings_env
from tests.integration.test_security import run_match_reading_its_pages
from tests.integration.tls import Pki, make_ca

pytestmark = pytest.mark.integration

SERVICES_SH = ROOT / "scripts" / "services.sh"
INIT_SQL = ROOT / "deploy" / "postgres" / "init.sql"
SAMPLES = ROOT / "samples" / "articles.jsonl"
ROLES = ("owner", "app", "reader")
REFUSALS: list[tuple[str, str, str]] = []  # (case, exit, what the client was told), for the table at the end


@dataclass(frozen=True)
class TlsPostgres:
    instance: dict[str, str]  # the NEWSDEDUP_* variables services.sh runs with
    exports: dict[str, str]  # what `services.sh up` printed
    pki: Pki  # the CA the server's certificate comes from
    other_ca: Path  # a CA nobody here trusts
    passwords: dict[str, str]  # role -> its password in this session
    run_dir: Path

    @property
    def port(self) -> int:
        return int(self.instance["NEWSDEDUP_PG_PORT"])

    def url(self, role: str, database: str = "newsdedup_test", **query: str | None) -> str:
        """The role's URL as services.sh prints it (verify-full against our CA), with ``query`` changed."""
        names = {"owner": "NEWSDEDUP_TEST_MIGRATION_DATABASE_URL", "app": "NEWSDEDUP_TEST_DATABASE_URL",
                 "reader": "NEWSDEDUP_TEST_READER_DATABASE_URL"}
        url = make_url(self.exports[names[role]]).set(database=database)
        params = {**url.query, **query}
        url = url.set(query={key: value for key, value in params.items() if value is not None})
        return url.render_as_string(hide_password=False)

    def script(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("NEWSDEDUP_")}, **self.instance}
        return subprocess.run(["bash", str(SERVICES_SH), *args], env=env, capture_output=True, text=True,
                              timeout=timeout, cwd=ROOT, check=False)

    def secrets(self) -> list[str]:
        """Every spelling of every password that must never be shown."""
        return sorted({spelling for password in self.passwords.values() for spelling in spellings(password)})


def spellings(secret: str) -> set[str]:
    return {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret)}


@pytest.fixture(scope="session")
def tls_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsPostgres]:
    folder = tmp_path_factory.mktemp("pg-tls")
    pki = make_ca(folder / "pki")
    server = pki.issue("postgres", server=True)  # names localhost and 127.0.0.1
    other = make_ca(folder / "other-pki", "a CA nobody here trusts")
    # Outside pytest's private (0700) temp folder: the postgres OS user must reach the cluster's folder.
    run_dir = Path(tempfile.mkdtemp(prefix="newsdedup-pg-tls-", dir="/tmp"))
    run_dir.chmod(0o755)
    tag = secrets.token_hex(6)
    passwords = {role: f"{role.title()}TlsPw-{tag}-z" for role in ROLES}
    instance = {
        "NEWSDEDUP_RUN_DIR": str(run_dir),
        "NEWSDEDUP_PG_PORT": str(free_port()),
        "NEWSDEDUP_PG_TLS_CERT": str(server.cert),
        "NEWSDEDUP_PG_TLS_KEY": str(server.key),
        "NEWSDEDUP_PG_TLS_CA": str(pki.cert),
        **{f"NEWSDEDUP_PG_{role.upper()}_PASSWORD": password for role, password in passwords.items()},
    }
    postgres = TlsPostgres(instance, {}, pki, other.cert, passwords, run_dir)
    try:
        result = postgres.script("up", "postgres")
        if result.returncode != 0:
            pytest.fail(f"services.sh up postgres (TLS) failed:\n{result.stderr[-3000:]}")
        postgres.exports.update(exported(result.stdout))
        yield postgres
    finally:
        postgres.script("down", "postgres", "--purge", timeout=120)
        shutil.rmtree(run_dir, ignore_errors=True)


def cli(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """newsdedup with exactly these NEWSDEDUP_* variables (none inherited)."""
    full = {**{k: v for k, v in os.environ.items() if not k.startswith("NEWSDEDUP_")}, **env}
    return subprocess.run([sys.executable, "-m", "consumers.cli", *args], env=full, cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, check=False)


def assert_no_secret(where: str, content: str | bytes, secrets_: list[str]) -> None:
    if isinstance(content, bytes):
        content = content.decode("utf-8", "replace")
    leaked = [secret for secret in secrets_ if secret in content]
    assert not leaked, f"{where} shows a secret ({len(leaked)} spelling(s)):\n{content[-2000:]}"


def ok(result: subprocess.CompletedProcess[str], pg: TlsPostgres) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"{result.args[3:]} exited {result.returncode}:\n{result.stderr[-3000:]}"
    assert_no_secret("stdout", result.stdout, pg.secrets())
    assert_no_secret("stderr", result.stderr, pg.secrets())
    return result


@pytest.fixture(scope="session")
def migrated(tls_postgres: TlsPostgres) -> subprocess.CompletedProcess[str]:
    """`newsdedup db upgrade` as the owner over verify-full (the cluster is new in every session)."""
    return ok(cli(["db", "upgrade"], {env_name("migration_database_url"): tls_postgres.url("owner")}), tls_postgres)


def ssl_of(url: str) -> tuple[bool, str]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            row = conn.execute(text("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")).one()
            return bool(row.ssl), str(row.version)
    finally:
        engine.dispose()


# -- TLS with verify-full: the paths that work -------------------------------------------------------------


def test_upgrade_run_and_export_work_over_verify_full(
        tls_postgres: TlsPostgres, migrated: subprocess.CompletedProcess[str], tmp_path: Path) -> None:
    pg = tls_postgres
    assert "is at revision" in migrated.stdout and f"127.0.0.1:{pg.port}" in migrated.stdout, migrated.stdout
    assert "sslmode=verify-full" in migrated.stdout and "***" in migrated.stdout, migrated.stdout
    app = pg.url("app")
    for role in ROLES:  # every role's connection is encrypted, with a modern protocol
        encrypted, version = ssl_of(pg.url(role))
        assert encrypted and version in {"TLSv1.2", "TLSv1.3"}, (role, version)

    export = tmp_path / "stories.jsonl"
    run = ok(cli(["run", "--input", str(SAMPLES), "--db", app, "--export", str(export), "--no-progress",
                  "--metrics-port", "0"], {}), pg)
    assert "stories" in run.stdout.lower(), run.stdout
    exported_ids = {json.loads(line)["id"] for line in export.read_text().splitlines()}
    assert exported_ids == {json.loads(line)["id"] for line in SAMPLES.read_text().splitlines() if line.strip()}
    again = ok(cli(["export", "--output", "-"], {env_name("database_url"): app}), pg)
    assert len(again.stdout.splitlines()) == len(exported_ids)
    reader = create_engine(pg.url("reader"))
    try:
        with reader.connect() as conn:
            stored = conn.execute(text("SELECT count(*) FROM articles")).scalar_one()
    finally:
        reader.dispose()
    assert stored == len(exported_ids)


# -- refusals -------------------------------------------------------------------------------------------


def refused(case: str, pg: TlsPostgres, env: dict[str, str], extra_secrets: tuple[str, ...] = ()) -> str:
    """Runs `newsdedup db check`, expects a refusal, returns the one line the user was told."""
    result = cli(["db", "check"], env)
    told = result.stderr.strip()
    REFUSALS.append((case, str(result.returncode), told))
    every_secret = [*pg.secrets(), *(s for secret in extra_secrets for s in spellings(secret))]
    assert_no_secret(f"{case}: stdout", result.stdout, every_secret)
    assert_no_secret(f"{case}: stderr", result.stderr, every_secret)
    assert result.returncode != 0, f"{case}: was let in:\n{result.stdout}"
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert len(told.splitlines()) == 1, f"{case}: more than one line:\n{told}"
    return told


@pytest.mark.parametrize(("case", "query", "reason"), [
    ("client trusts another CA", "other_ca", "certificate verify failed"),
    ("sslmode=disable (plaintext TCP)", {"sslmode": "disable", "sslrootcert": None}, "no encryption"),
    ("verify-full without a CA file", {"sslrootcert": "/nonexistent/ca.pem"}, "root certificate file"),
])
def test_connections_the_server_or_the_client_must_refuse(tls_postgres: TlsPostgres, migrated: object, case: str,
                                                          query: object, reason: str) -> None:
    pg = tls_postgres
    params = {"sslrootcert": str(pg.other_ca)} if query == "other_ca" else query
    told = refused(case, pg, {env_name("database_url"): pg.url("app", **params)})  # type: ignore[arg-type]
    assert told.startswith("newsdedup: database error:"), told
    assert reason in told, told
    assert f"127.0.0.1\", port {pg.port}" in told, told  # which server


@pytest.mark.parametrize("form", ["variable", "file"])
def test_a_wrong_password_is_one_line_that_never_shows_it(tls_postgres: TlsPostgres, migrated: object, form: str,
                                                          tmp_path: Path) -> None:
    pg = tls_postgres
    wrong = f"WrongTlsPw-{uuid.uuid4().hex[:12]}-v"
    url = make_url(pg.url("app")).set(password=wrong).render_as_string(hide_password=False)
    if form == "variable":
        env = {env_name("database_url"): url}
    else:
        secret_file = tmp_path / "database_url"
        secret_file.write_text(url + "\n")
        env = {file_variable("database_url"): str(secret_file)}
    told = refused(f"wrong password ({form})", pg, env, extra_secrets=(wrong,))
    assert told.startswith("newsdedup: database error:"), told
    assert "password authentication failed for user \"newsdedup_app\"" in told, told
    assert f"port {pg.port}" in told, told


# -- what each role may do -------------------------------------------------------------------------------


def refusal_of(url: str, statement: str) -> str | None:
    """The error PostgreSQL gives ``statement`` (rolled back), or None when it was allowed (and rolled back)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            try:
                conn.execute(text(statement))
            except DBAPIError as exc:
                assert isinstance(exc.orig, pg_errors.InsufficientPrivilege), f"{statement}: {exc.orig!r}"
                return str(exc.orig).splitlines()[0]
            finally:
                conn.rollback()
            return None
    finally:
        engine.dispose()


SCHEMA_CHANGES = [
    "CREATE TABLE intruder (id integer)",
    "ALTER TABLE articles ADD COLUMN intruder integer",
    "DROP TABLE articles",
    "TRUNCATE articles",
    "CREATE INDEX intruder_idx ON articles (source)",
    "CREATE SCHEMA intruder",
    "CREATE FUNCTION intruder() RETURNS integer LANGUAGE sql AS 'SELECT 1'",
]


def test_the_app_role_cannot_change_the_schema(tls_postgres: TlsPostgres, migrated: object) -> None:
    app = tls_postgres.url("app")
    for statement in SCHEMA_CHANGES:
        error = refusal_of(app, statement)
        REFUSALS.append((f"app: {statement}", "-", error or "ALLOWED"))
        assert error is not None, f"the app role may {statement}"
        assert "permission denied" in error or "must be owner" in error, error
    assert refusal_of(app, "UPDATE stories SET updated_at = updated_at") is None  # and it still writes rows


def test_the_reader_role_reads_and_writes_nothing(tls_postgres: TlsPostgres, migrated: object) -> None:
    pg = tls_postgres
    reader, owner = pg.url("reader"), create_engine(pg.url("owner"))
    for statement in ("SELECT count(*) FROM articles", "SELECT count(*) FROM story_events",
                      "SELECT count(*) FROM consumer_offsets"):
        assert refusal_of(reader, statement) is None, statement
    for statement in ("INSERT INTO consumer_offsets (consumer_group, topic, partition, next_offset, updated_at) "
                      "VALUES ('g', 't', 0, 1, now())",
                      "UPDATE stories SET updated_at = updated_at", "DELETE FROM story_events",
                      *SCHEMA_CHANGES):
        error = refusal_of(reader, statement)
        REFUSALS.append((f"reader: {statement}", "-", error or "ALLOWED"))
        assert error is not None, f"the reader role may {statement}"
    # A table the owner creates later (a future migration) is readable at once, through default privileges.
    table = f"later_{uuid.uuid4().hex[:8]}"
    try:
        with owner.begin() as conn:
            conn.execute(text(f"CREATE TABLE {table} (id integer)"))
            conn.execute(text(f"INSERT INTO {table} VALUES (:id)"), {"id": 7})
        assert refusal_of(reader, f"SELECT id FROM {table}") is None
        assert refusal_of(reader, f"INSERT INTO {table} VALUES (8)") is not None
        assert refusal_of(pg.url("app"), f"INSERT INTO {table} VALUES (8)") is None  # the app's defaults too
    finally:
        with owner.begin() as conn:
            conn.execute(text(f"DROP TABLE IF EXISTS {table}"))
        owner.dispose()


def test_the_reader_role_holds_select_only(tls_postgres: TlsPostgres, migrated: object) -> None:
    owner = create_engine(tls_postgres.url("owner"))
    try:
        with owner.connect() as conn:
            held = conn.execute(text(
                "SELECT table_name, privilege_type FROM information_schema.role_table_grants "
                "WHERE grantee = 'newsdedup_reader'")).all()
            tables = conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).scalars().all()
            role = conn.execute(text(
                "SELECT rolsuper, rolcreaterole, rolcreatedb, rolbypassrls, rolreplication "
                "FROM pg_roles WHERE rolname = 'newsdedup_reader'")).one()
    finally:
        owner.dispose()
    assert {privilege for _, privilege in held} == {"SELECT"}, held
    assert {table for table, _ in held} == set(tables)
    assert not any(role), dict(role._mapping)


# -- secrets as files, with TLS URLs ------------------------------------------------------------------------


def file_env(pg: TlsPostgres, folder: Path, **secrets_: str) -> dict[str, str]:
    """NEWSDEDUP_<NAME>_FILE for each secret, each file written as an orchestrator mounts it (0400)."""
    env = {}
    for name, value in secrets_.items():
        path = folder / name
        path.write_text(value + "\n")
        path.chmod(0o400)
        env[file_variable(name)] = str(path)
    return env


def test_settings_from_files_are_masked_and_say_where_they_came_from(tls_postgres: TlsPostgres,
                                                                      tmp_path: Path) -> None:
    pg = tls_postgres
    env = file_env(pg, tmp_path, database_url=pg.url("app"), migration_database_url=pg.url("owner"),
                   kafka_sasl_password=pg.passwords["reader"])
    result = ok(cli(["settings"], env), pg)
    lines = {line.split("=", 1)[0].strip(): line for line in result.stdout.splitlines() if "=" in line}
    for name in ("database_url", "migration_database_url", "kafka_sasl_password"):
        line = lines[f"--{name.replace('_', '-')}"]
        assert "'***'" in line and f"(from {file_variable(name)}={tmp_path / name})" in line, line
    # The library reads the same files to the same values (trailing newline dropped).
    settings = load_settings(env)
    assert settings.database_url == pg.url("app") and settings.kafka_sasl_password == pg.passwords["reader"]


@pytest.mark.parametrize("case", ["missing file", "both forms", "malformed URL", "directory"])
def test_configuration_errors_name_the_file_never_the_secret(tls_postgres: TlsPostgres, tmp_path: Path,
                                                             case: str) -> None:
    pg = tls_postgres
    secret_file = tmp_path / "database_url"
    secret_file.write_text(pg.url("app") + "\n")
    env = {
        "missing file": {file_variable("database_url"): str(tmp_path / "absent")},
        "both forms": {file_variable("database_url"): str(secret_file), env_name("database_url"): pg.url("app")},
        # A password holding an unencoded '@' and ':' leaves SQLAlchemy a port of "<password tail>@host"
        "malformed URL": {env_name("database_url"):
                          f"postgresql+psycopg://newsdedup_app:x@y:{pg.passwords['app']}@127.0.0.1/db"},
        "directory": {file_variable("database_url"): str(tmp_path)},
    }[case]
    result = cli(["db", "check"], env)
    told = result.stderr.strip()
    REFUSALS.append((f"config: {case}", str(result.returncode), told))
    assert_no_secret(case, result.stdout + result.stderr, pg.secrets())
    assert len(told.splitlines()) == 1 and "Traceback" not in told, told
    if case == "malformed URL":
        assert result.returncode == 1 and told.startswith("newsdedup: database error: the database URL is malformed")
        return
    assert result.returncode == 2 and told.startswith("newsdedup: configuration error:"), told
    assert file_variable("database_url") in told, told
    if case != "both forms":
        assert env[file_variable("database_url")] in told, told  # which file


def test_a_running_match_role_with_secret_files_and_tls_never_shows_them(
        tls_postgres: TlsPostgres, migrated: object, services: Services, tmp_path: Path) -> None:
    pg = tls_postgres
    tag = uuid.uuid4().hex[:8]
    settings = load_settings({}, {"kafka_bootstrap_servers": services.bootstrap, "topic_raw": f"t{tag}.raw",
                                  "topic_fingerprinted": f"t{tag}.fp", "topic_dead_letters": f"t{tag}.dlq",
                                  "topic_story_events": f"t{tag}.events", "match_group": f"t{tag}-match",
                                  "poll_timeout_ms": 200})
    env = {k: v for k, v in settings_env(settings).items()
           if k not in {env_name("database_url"), env_name("migration_database_url"), env_name("kafka_sasl_password")}}
    env.update(file_env(pg, tmp_path, database_url=pg.url("app"), migration_database_url=pg.url("owner"),
                        kafka_sasl_password=f"SaslFilePw-{tag}"))
    env[env_name("log_level")] = "DEBUG"
    port = free_port()
    role, code, pages = run_match_reading_its_pages(env, port)
    stderr = "".join(role.err)
    assert code == 0, stderr[-3000:]
    every_secret = [*pg.secrets(), *spellings(f"SaslFilePw-{tag}")]
    assert '"msg": "match started"' in stderr
    checks = [json.loads(body).get("checks", {}) for _, body in pages["/readyz"]]
    assert any(check.get("database") for check in checks), f"the database check never passed: {checks[-1:]}"
    assert_no_secret("match stdout", "".join(role.out), every_secret)
    assert_no_secret("match stderr (JSON log)", stderr, every_secret)
    for path, answers in pages.items():
        assert answers, f"no answer from {path}"
        for _, body in answers:
            assert_no_secret(path, body, every_secret)


# -- the compose stack's provisioning -------------------------------------------------------------------


def superuser_psql(pg: TlsPostgres, *args: str, env: dict[str, str],
                   stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """psql as the cluster's superuser through its unix socket (peer auth), as the image's entrypoint runs it.
    A script goes in on ``stdin`` (``-f -``): the postgres OS user may not be able to read the checkout."""
    binaries = sorted(Path("/usr/lib/postgresql").glob("*/bin/psql"), key=lambda p: int(p.parts[-3]))
    psql = str(binaries[-1]) if binaries else "psql"
    pg_run = Path(pg.instance.get("NEWSDEDUP_PG_RUN_DIR", pg.run_dir / "postgres"))
    user = "postgres" if os.geteuid() == 0 else None
    command = [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(pg_run / "socket"), "-p", str(pg.port),
               "-U", user or os.environ.get("USER", ""), "-d", "postgres", *args]
    if user:  # PostgreSQL's superuser is the postgres OS user when services.sh runs as root
        command = ["runuser", "-u", user, "--", *command]
    return subprocess.run(command, env={**os.environ, **env}, cwd="/", input=stdin, capture_output=True, text=True,
                          timeout=60, check=False)


def test_init_sql_gives_the_same_roles_with_passwords_from_files(tls_postgres: TlsPostgres, migrated: object) -> None:
    pg = tls_postgres
    # Files the postgres OS user can read, as compose secrets are mounted; new passwords, to see them applied.
    folder = pg.run_dir / "init-secrets"
    folder.mkdir(mode=0o755, exist_ok=True)
    fresh = {role: f"{role.title()}InitPw-{secrets.token_hex(6)}" for role in ROLES}
    env = {}
    for role, password in fresh.items():
        path = folder / role
        path.write_text(password + "\n")
        path.chmod(0o600)
        if os.geteuid() == 0:
            shutil.chown(path, "postgres")
        env[f"NEWSDEDUP_PG_{role.upper()}_PASSWORD_FILE"] = str(path)
    try:
        shown = [*pg.secrets(), *(s for password in fresh.values() for s in spellings(password))]
        script = INIT_SQL.read_text()
        both = superuser_psql(pg, "-f", "-", env={**env, "NEWSDEDUP_PG_APP_PASSWORD": "x"}, stdin=script)
        REFUSALS.append(("init.sql: a password and its _FILE", str(both.returncode), both.stderr.strip()))
        assert both.returncode != 0 and "not both" in both.stderr, both.stderr
        result = superuser_psql(pg, "-f", "-", env=env, stdin=script)
        assert result.returncode == 0, result.stderr
        assert_no_secret("init.sql output", result.stdout + result.stderr, shown)
        for role in ROLES:  # each role logs in to newsdedup over TLS with the password from its file
            url = make_url(pg.url(role, database="newsdedup")).set(password=fresh[role])
            assert ssl_of(url.render_as_string(hide_password=False))[0], role
        with pytest.raises(OperationalError, match="password authentication failed"):
            ssl_of(pg.url("reader", database="newsdedup"))  # the old password is gone
        app = make_url(pg.url("app", database="newsdedup")).set(password=fresh["app"])
        assert refusal_of(app.render_as_string(hide_password=False), "CREATE TABLE intruder (id integer)")
    finally:
        restored = pg.script("up", "postgres")  # re-applies this session's passwords
        assert restored.returncode == 0, restored.stderr[-3000:]


def served_serial(pg: TlsPostgres) -> str:
    """The serial number of the certificate the server presents (openssl's PostgreSQL STARTTLS)."""
    shown = subprocess.run(["openssl", "s_client", "-starttls", "postgres", "-connect", f"127.0.0.1:{pg.port}"],
                           input="", capture_output=True, text=True, timeout=30, check=False).stdout
    cert = shown[shown.index("-----BEGIN CERTIFICATE-----"):shown.index("-----END CERTIFICATE-----") + 25]
    return subprocess.run(["openssl", "x509", "-noout", "-serial"], input=cert, capture_output=True, text=True,
                          timeout=30, check=True).stdout.strip()


def test_up_again_loads_a_renewed_certificate_without_a_restart(tls_postgres: TlsPostgres, migrated: object) -> None:
    pg = tls_postgres
    before, pid = served_serial(pg), (pg.run_dir / "postgres" / "data" / "postmaster.pid").read_text().split()[0]
    renewed = pg.pki.issue("postgres-renewed", server=True)
    instance = {**pg.instance, "NEWSDEDUP_PG_TLS_CERT": str(renewed.cert), "NEWSDEDUP_PG_TLS_KEY": str(renewed.key)}
    result = dataclasses.replace(pg, instance=instance).script("up", "postgres")
    assert result.returncode == 0 and "reloaded" in result.stderr, result.stderr[-3000:]
    deadline = time.monotonic() + 10
    while served_serial(pg) == before:  # the postmaster applies a reload asynchronously
        assert time.monotonic() < deadline, "the renewed certificate was not loaded"
        time.sleep(0.2)
    assert (pg.run_dir / "postgres" / "data" / "postmaster.pid").read_text().split()[0] == pid  # same server
    assert ssl_of(pg.url("app"))[0]  # and clients that trust the CA still connect with verify-full


def test_zz_print_the_refusals(tls_postgres: TlsPostgres) -> None:
    """The refusals of this module as a table (pytest -s); runs last in file order."""
    print("\n| case | exit | what the client was told |\n|---|---|---|")
    for case, code, told in REFUSALS:
        print(f"| {case} | {code} | {told.replace('|', '/')} |")
