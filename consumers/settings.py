"""Settings: declared once, here, with type, default and description.

Every field is read from an environment variable ``NEWSDEDUP_<NAME>`` and can be overridden by
the command-line flag ``--<name-with-dashes>``. The README's settings table is generated from
this declaration (``newsdedup settings --markdown``) and a test keeps the two equal.
Unknown ``NEWSDEDUP_*`` variables are refused, so a misspelt setting fails loudly; the prefix
``NEWSDEDUP_TEST_`` is reserved for the test suite, and the variables of ``scripts/`` (SCRIPT_VARIABLES)
are theirs: both are ignored here.

Secrets (the fields declared with ``secret=True``) can also come from a file, as container
orchestrators mount them (compose and swarm secrets in /run/secrets, Kubernetes secret volumes):
``NEWSDEDUP_<NAME>_FILE=/run/secrets/x`` makes the file's content the value, its trailing line
breaks removed. Setting both ``NEWSDEDUP_<NAME>`` and ``NEWSDEDUP_<NAME>_FILE`` is an error (which one
would win is a guess), and so is a file that is missing, unreadable, empty or not UTF-8; the message
names the variable and the file, never the content. Secrets are shown as ``***`` wherever settings
are printed.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import timedelta
from typing import Any

from consumers.stages.fingerprint import FingerprintConfig
from consumers.stages.match import MatchConfig

ENV_PREFIX = "NEWSDEDUP_"
RESERVED_PREFIXES = ("NEWSDEDUP_TEST_",)
# Read by scripts/services.sh, prometheus.sh, test.sh and compose-secrets.sh (SECRETS_DIR, also read by
# docker-compose.secure.yml), not by the service: a user who sets one
# (NEWSDEDUP_KEEP_SERVICES=1 bash scripts/test.sh) must not make every newsdedup command refuse to start.
SCRIPT_VARIABLES = frozenset(ENV_PREFIX + name for name in (
    "KEEP_SERVICES", "CACHE_DIR", "RUN_DIR", "PG_RUN_DIR", "START_TIMEOUT", "KAFKA_PORT", "KAFKA_CONTROLLER_PORT",
    "PG_PORT", "PG_OWNER_PASSWORD", "PG_APP_PASSWORD", "PROMETHEUS_TIMEOUT", "KAFKA_EXTRA_CONFIG",
    "KAFKA_SCRAM_USERS", "PG_READER_PASSWORD", "PG_TLS_CERT", "PG_TLS_KEY", "PG_TLS_CA", "SECRETS_DIR"))
SECRET = "secret"
# NEWSDEDUP_<NAME>_FILE names a file holding a secret setting (see the module docstring).
FILE_SUFFIX = "_FILE"
SECRET_FILE_MAX_BYTES = 65_536
MIN_DELIVERY_TIMEOUT_MS = 2_000  # a send's request needs time to be answered (see kafka_io.make_producer)


def setting(default: Any, help: str, *, secret: bool = False) -> Any:  # noqa: A002 - mirrors argparse
    return field(default=default, metadata={"help": help, SECRET: secret})


@dataclass(frozen=True)
class Settings:
    # -- storage --
    database_url: str = setting(
        "sqlite:///newsdedup.db",
        "SQLAlchemy URL of the store. PostgreSQL: postgresql+psycopg://USER:PASSWORD@HOST:PORT/DB; "
        "TLS through libpq query parameters such as ?sslmode=verify-full&sslrootcert=/path/ca.pem.",
        secret=True)
    migration_database_url: str = setting(
        "", "URL 'newsdedup db upgrade' uses: the owner role, which may create tables. Empty: database_url.",
        secret=True)
    # -- Kafka --
    kafka_bootstrap_servers: str = setting("localhost:9092", "Comma-separated Kafka brokers (host:port).")
    kafka_security_protocol: str = setting("PLAINTEXT", "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.")
    kafka_sasl_mechanism: str = setting("", "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 when SASL is used.")
    kafka_sasl_username: str = setting("", "SASL user name.")
    kafka_sasl_password: str = setting("", "SASL password (never logged).", secret=True)
    kafka_ssl_cafile: str = setting("", "CA bundle to verify the brokers' certificates (PEM).")
    kafka_ssl_certfile: str = setting("", "Client certificate for mutual TLS (PEM).")
    kafka_ssl_keyfile: str = setting("", "Client private key for mutual TLS (PEM), encrypted or not.")
    kafka_ssl_password: str = setting("", "Password of an encrypted kafka_ssl_keyfile (never logged).", secret=True)
    kafka_compression_type: str = setting(
        "zstd", "Producer compression: none, gzip, lz4 or zstd (zstd: smaller than gzip at a tenth of its CPU).")
    topic_raw: str = setting("articles.raw", "Topic scrapers write articles to (key: normalised URL).")
    topic_fingerprinted: str = setting("articles.fingerprinted", "Topic from prepare to match (key: language).")
    topic_dead_letters: str = setting("articles.dlq", "Topic for rejected messages: original bytes, reason in headers.")
    topic_story_events: str = setting("stories.events", "Topic the matcher publishes story events to.")
    raw_partitions: int = setting(6, "Partitions of the raw topic when newsdedup creates it (prepare scales to this).")
    fingerprinted_partitions: int = setting(1, "Partitions of the fingerprinted topic: one active matcher each.")
    prepare_group: str = setting("newsdedup-prepare", "Consumer group of the prepare role.")
    match_group: str = setting("newsdedup-match", "Consumer group of the match role.")
    batch_max_messages: int = setting(
        2000, "Most messages handled (and committed) as one batch (fewer flushes, commits and transactions per "
        "article: ~10% less CPU through Kafka than 500; a batch is only as large as the backlog).")
    poll_timeout_ms: int = setting(500, "How long a poll waits for messages before handling a partial batch.")
    session_timeout_ms: int = setting(10_000, "Consumer group session timeout.")
    kafka_delivery_timeout_ms: int = setting(
        120_000, "How long a produced message may wait for the brokers' acknowledgement before its send fails "
        "(story events then wait in the database and are sent again; a batch with dead letters is read again).")
    # -- the contract --
    max_message_bytes: int = setting(2_000_000, "Largest accepted article message; larger ones go to the DLQ.")
    # -- fingerprint --
    num_perm: int = setting(128, "MinHash permutations per signature.")
    seed: int = setting(1, "MinHash seed; signatures with other seeds never compare.")
    word_shingle_size: int = setting(4, "Words per shingle for scripts with spaces.")
    char_shingle_size: int = setting(4, "Characters per shingle for scripts without spaces (CJK, Thai).")
    # -- match --
    lsh_threshold: float = setting(0.15, "Jaccard threshold datasketch's optimiser tunes the LSH bands for.")
    lsh_false_negative_weight: float = setting(
        0.9, "Weight of missed pairs (vs. extra candidates, 1 minus this) in datasketch's choice of bands.")
    num_bands: int = setting(0, "LSH bands (b); 0 lets datasketch choose (b, r) from lsh_threshold.")
    rows_per_band: int = setting(0, "LSH rows per band (r); set together with num_bands.")
    lsh_bucket_limit: int = setting(
        16, "Newest articles a query takes from one LSH bucket: a shingle many unrelated articles share "
        "(boilerplate) fills one bucket with all of them; copies share other bands too.")
    jaccard_threshold: float = setting(0.32, "Verified when the Jaccard similarity of the shingle sets reaches this.")
    containment_threshold: float = setting(0.6, "...or when the smaller text's containment in the larger reaches this.")
    min_shingles: int = setting(20, "Containment counts only when both texts have this many shingles.")
    min_size_ratio: float = setting(
        0.15, "...and when the smaller text has at least this share of the larger one's shingles (a short item "
        "inside a live page or digest is not a copy of it).")
    preferred_sources: str = setting(
        "apnews.com,reuters.com,afp.com,pa.media",
        "Comma-separated sources preferred as canonical when published at the same time.")
    retention_days: float = setting(30.0, "Stories not seen for this long leave the in-memory index.")
    store_retention_days: float = setting(
        0.0, "'newsdedup db prune' deletes stories (with their articles and events) not changed for this long; "
        "0 keeps everything. At least retention_days + 1. Prune always drops the signature and shingle hashes of "
        "articles whose story is past retention_days + 1 (text and provenance stay).")
    # -- operations --
    database_disk_bytes: int = setting(
        0, "Size of the database's disk, exported by match as newsdedup_database_disk_bytes for the alert "
        "NewsdedupDatabaseDiskFilling (0: not told, no alert).")
    log_level: str = setting("INFO", "DEBUG, INFO, WARNING or ERROR.")
    metrics_port: int = setting(9400, "Port of /metrics, /healthz and /readyz (0: no HTTP server).")
    metrics_host: str = setting("0.0.0.0", "Address the metrics server listens on.")
    stall_seconds: float = setting(120.0, "/healthz fails when the loop made no progress for this long.")
    watchdog_seconds: float = setting(
        300.0, "A role exits (code 70) when its loop made no progress for this long, so that its supervisor "
        "restarts it (a wedged Kafka client); 0: never. Keep it above the longest index rebuild.")
    undecodable_hold_seconds: float = setting(
        60.0, "A role that fetches a record batch its Kafka client cannot decode (unknown codec, corrupt batch) "
        "pauses that partition, fails /readyz and counts it in newsdedup_undecodable_batches_total, keeps the other "
        "partitions moving for this long, then exits (code 65) for its supervisor; nothing is skipped.")
    # -- explorer (newsdedup serve) --
    explorer_database_url: str = setting(
        "", "URL 'newsdedup serve' reads the store with: on PostgreSQL the read-only role newsdedup_reader "
        "(postgresql+psycopg://newsdedup_reader:PASSWORD@HOST:PORT/DB). Empty: database_url (embedded mode's "
        "SQLite file).", secret=True)
    explorer_host: str = setting("127.0.0.1", "Address 'newsdedup serve' listens on (0.0.0.0 in a container).")
    explorer_port: int = setting(8080, "Port of 'newsdedup serve': pages, /api, /metrics, /healthz and /readyz.")
    explorer_token: str = setting(
        "", "Bearer token the explorer's JSON API (/api/...) requires (Authorization: Bearer TOKEN); empty: the "
        "API is open. Pages, /metrics and the health endpoints never ask for it.", secret=True)
    lag_interval_seconds: float = setting(
        10.0, "How often 'newsdedup lag-exporter' reads each group's committed offsets and the log-end offsets "
        "from Kafka (keep it at most Prometheus' scrape interval; its alert calls a measurement older than 2 "
        "minutes stale).")

    def __post_init__(self) -> None:
        self.match_config().check(self.fingerprint_config())
        if self.kafka_security_protocol not in {"PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"}:
            raise ValueError(f"kafka_security_protocol={self.kafka_security_protocol!r} is not one of "
                             f"PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL")
        # Without a mechanism kafka-python would only fail at the first connection, with a broker's message.
        sasl_mechanisms = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
        if self.kafka_security_protocol.startswith("SASL_") and self.kafka_sasl_mechanism not in sasl_mechanisms:
            raise ValueError(f"kafka_security_protocol={self.kafka_security_protocol} needs kafka_sasl_mechanism: "
                             f"one of {', '.join(sasl_mechanisms)} (got {self.kafka_sasl_mechanism!r})")
        if self.batch_max_messages < 1:
            raise ValueError(f"batch_max_messages={self.batch_max_messages} must be at least 1")
        if not 0 < self.explorer_port < 65536:
            raise ValueError(f"explorer_port={self.explorer_port} must be a TCP port (1 to 65535)")
        if self.kafka_delivery_timeout_ms < MIN_DELIVERY_TIMEOUT_MS:
            raise ValueError(f"kafka_delivery_timeout_ms={self.kafka_delivery_timeout_ms} must be at least "
                             f"{MIN_DELIVERY_TIMEOUT_MS} (a request needs time to be answered)")
        if self.lag_interval_seconds <= 0:
            raise ValueError(f"lag_interval_seconds={self.lag_interval_seconds} must be above 0")

    def fingerprint_config(self) -> FingerprintConfig:
        return FingerprintConfig(self.num_perm, self.seed, self.word_shingle_size, self.char_shingle_size)

    def match_config(self) -> MatchConfig:
        return MatchConfig(
            lsh_threshold=self.lsh_threshold,
            false_negative_weight=self.lsh_false_negative_weight,
            num_bands=self.num_bands or None,
            rows_per_band=self.rows_per_band or None,
            bucket_limit=self.lsh_bucket_limit,
            jaccard_threshold=self.jaccard_threshold,
            containment_threshold=self.containment_threshold,
            min_shingles=self.min_shingles,
            min_size_ratio=self.min_size_ratio,
        )

    @property
    def preferred_source_list(self) -> tuple[str, ...]:
        return tuple(s.strip().lower() for s in self.preferred_sources.split(",") if s.strip())

    @property
    def retention(self) -> timedelta:
        return timedelta(days=self.retention_days)

    def __repr__(self) -> str:
        shown = {f.name: ("***" if f.metadata[SECRET] and getattr(self, f.name) else getattr(self, f.name))
                 for f in fields(self)}
        return f"Settings({shown})"


def env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def load_settings(environ: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None) -> Settings:
    """Defaults, then NEWSDEDUP_* variables, then overrides (the CLI flags that were given)."""
    environ = os.environ if environ is None else environ
    known = {f.name: f for f in fields(Settings)}
    file_variables = secret_file_variables()
    unknown = sorted(
        key for key in environ
        if key.startswith(ENV_PREFIX) and not key.startswith(RESERVED_PREFIXES) and key not in SCRIPT_VARIABLES
        and key[len(ENV_PREFIX):].lower() not in known and key not in file_variables
    )
    if unknown:
        raise ValueError(f"unrecognised settings {', '.join(unknown)}: see 'newsdedup settings' for the list")
    values: dict[str, Any] = {}
    for name, spec in known.items():
        raw = environ.get(env_name(name))
        if spec.metadata[SECRET] and file_variable(name) in environ:
            if raw is not None:
                raise ValueError(f"both {env_name(name)} and {file_variable(name)} are set: set one of them "
                                 f"(the _FILE form names a file holding the value)")
            raw = read_secret_file(file_variable(name), environ[file_variable(name)])
        if raw is not None:
            values[name] = _convert(name, type(spec.default), raw, secret=spec.metadata[SECRET])
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return Settings(**values)


def file_variable(name: str) -> str:
    """The variable naming a file that holds the secret setting ``name`` (NEWSDEDUP_DATABASE_URL_FILE)."""
    return env_name(name) + FILE_SUFFIX


def secret_file_variables() -> dict[str, str]:
    """Every accepted ``NEWSDEDUP_<NAME>_FILE`` variable, with the name of its secret setting."""
    return {file_variable(f.name): f.name for f in fields(Settings) if f.metadata[SECRET]}


def read_secret_file(variable: str, path: str) -> str:
    """The secret held by the file ``path`` names; errors name the variable and the file, never the content."""
    where = f"{variable}={path!r}"
    if not path:
        raise ValueError(f"{variable} is empty: give the path of the file that holds the value")
    try:
        with open(path, "rb") as stream:
            data = stream.read(SECRET_FILE_MAX_BYTES + 1)
    except OSError as exc:  # strerror only: the exception's own text repeats the path, nothing more useful
        raise ValueError(f"{where}: cannot read the file ({exc.strerror or type(exc).__name__})") from None
    if len(data) > SECRET_FILE_MAX_BYTES:  # /dev/zero or a log file by mistake: no secret is this long
        raise ValueError(f"{where}: the file is larger than {SECRET_FILE_MAX_BYTES} bytes, so it holds no secret")
    try:
        value = data.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:  # its message quotes the offending bytes, which are the secret's
        raise ValueError(f"{where}: the file is not UTF-8 text") from None
    if not value:  # mounted but never filled: better refused here than as a failed login later
        raise ValueError(f"{where}: the file is empty")
    return value


def _convert(name: str, kind: type, raw: str, *, secret: bool = False) -> Any:
    try:
        return kind(raw)
    except ValueError:
        shown = "its value" if secret else repr(raw)  # a secret is never echoed, not even a malformed one
        raise ValueError(f"{env_name(name)}={shown} is not a valid {kind.__name__}") from None


def settings_markdown() -> str:
    """The README's settings table."""
    lines = ["| variable | flag | default | meaning |", "|---|---|---|---|"]
    for f in fields(Settings):
        default = f.default if f.default != "" else "(empty)"
        meaning = f.metadata["help"]
        if f.metadata[SECRET]:
            meaning += f" Secret: shown as `***`; `{file_variable(f.name)}` may name a file holding it instead."
        lines.append(f"| `{env_name(f.name)}` | `{flag_name(f.name)}` | `{default}` | {meaning} |")
    return "\n".join(lines)


def replace(settings: Settings, **changes: Any) -> Settings:
    return dataclasses.replace(settings, **changes)
