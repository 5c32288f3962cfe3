"""consumers.settings: one frozen declaration, read from a dict environment and overrides."""

from __future__ import annotations

import dataclasses
import re
from datetime import timedelta
from pathlib import Path

import pytest

from consumers.settings import (
    SCRIPT_VARIABLES,
    SECRET_FILE_MAX_BYTES,
    Settings,
    env_name,
    file_variable,
    flag_name,
    load_settings,
    replace,
    secret_file_variables,
    settings_markdown,
)
from consumers.stages.fingerprint import FingerprintConfig
from consumers.stages.match import MatchConfig


def test_defaults_with_an_empty_environment() -> None:
    settings = load_settings({})
    assert settings == Settings()
    assert settings.num_perm == 128
    assert settings.match_config() == MatchConfig()
    assert settings.fingerprint_config() == FingerprintConfig()


def test_environment_values_are_converted_to_the_declared_types() -> None:
    settings = load_settings({
        "NEWSDEDUP_NUM_PERM": "256",
        "NEWSDEDUP_JACCARD_THRESHOLD": "0.65",
        "NEWSDEDUP_RETENTION_DAYS": "7",
        "NEWSDEDUP_TOPIC_RAW": "scrapes.raw",
        "NEWSDEDUP_NUM_BANDS": "32",
        "NEWSDEDUP_ROWS_PER_BAND": "8",
    })
    assert settings.num_perm == 256 and type(settings.num_perm) is int
    assert settings.jaccard_threshold == 0.65 and type(settings.jaccard_threshold) is float
    assert settings.retention == timedelta(days=7)
    assert settings.topic_raw == "scrapes.raw"
    assert settings.fingerprint_config().num_perm == 256
    assert (settings.match_config().num_bands, settings.match_config().rows_per_band) == (32, 8)


def test_zero_bands_means_let_datasketch_choose() -> None:
    config = load_settings({}).match_config()
    assert (config.num_bands, config.rows_per_band) == (None, None)


@pytest.mark.parametrize(("name", "raw", "kind"), [
    ("NEWSDEDUP_NUM_PERM", "lots", "int"),
    ("NEWSDEDUP_NUM_PERM", "128.0", "int"),
    ("NEWSDEDUP_LSH_THRESHOLD", "high", "float"),
])
def test_unconvertible_values_name_the_variable(name: str, raw: str, kind: str) -> None:
    with pytest.raises(ValueError, match=rf"{name}='{raw}' is not a valid {kind}"):
        load_settings({name: raw})


def test_unknown_newsdedup_variable_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"unrecognised settings NEWSDEDUP_NUM_PERMS, NEWSDEDUP_SEEED: see"):
        load_settings({"NEWSDEDUP_SEEED": "3", "NEWSDEDUP_NUM_PERMS": "64", "NEWSDEDUP_NUM_PERM": "64"})


def test_test_prefix_and_other_variables_are_ignored() -> None:
    settings = load_settings({
        "NEWSDEDUP_TEST_POSTGRES_URL": "postgresql://x",
        "NEWSDEDUP_TEST_ANYTHING": "1",
        "PATH": "/usr/bin",
        "newsdedup_num_perm": "64",  # the prefix is case-sensitive
        "KAFKA_BOOTSTRAP_SERVERS": "elsewhere:9092",
    })
    assert settings == Settings()


def test_the_scripts_variables_are_ignored_and_all_of_them_are_listed() -> None:
    """A variable the scripts read (NEWSDEDUP_KEEP_SERVICES=1 bash scripts/test.sh) reaches every newsdedup
    command the tests start; each one the scripts read must be listed, or those commands refuse to start."""
    assert load_settings({"NEWSDEDUP_KEEP_SERVICES": "1", "NEWSDEDUP_PG_PORT": "5"}) == Settings()
    scripts = Path(__file__).resolve().parents[2] / "scripts"
    read = {name for path in scripts.glob("*.sh") for name in re.findall(r"\$\{?(NEWSDEDUP_[A-Z_]+)", path.read_text())}
    settings = {env_name(f.name) for f in dataclasses.fields(Settings)}
    assert read - settings - SCRIPT_VARIABLES == set()


def test_overrides_win_over_the_environment() -> None:
    settings = load_settings({"NEWSDEDUP_NUM_PERM": "256", "NEWSDEDUP_SEED": "5"},
                             overrides={"num_perm": 64, "seed": None, "log_level": "DEBUG"})
    assert settings.num_perm == 64
    assert settings.seed == 5  # a None override (a flag that was not given) leaves the env value
    assert settings.log_level == "DEBUG"


def test_unknown_override_is_refused() -> None:
    with pytest.raises(TypeError, match="num_perms"):
        load_settings({}, overrides={"num_perms": 64})


def test_secrets_are_masked_in_repr() -> None:
    settings = load_settings({
        "NEWSDEDUP_DATABASE_URL": "postgresql+psycopg://newsdedup:hunter2@db.internal:5432/news",
        "NEWSDEDUP_KAFKA_SASL_PASSWORD": "s3cr3t-sasl",
        "NEWSDEDUP_KAFKA_SASL_USERNAME": "svc-newsdedup",
    })
    shown = repr(settings)
    assert "hunter2" not in shown and "s3cr3t-sasl" not in shown and "db.internal" not in shown
    assert "'database_url': '***'" in shown
    assert "'kafka_sasl_password': '***'" in shown
    assert "svc-newsdedup" in shown  # not a secret
    assert str(settings) == shown


def test_empty_secrets_are_shown_as_empty() -> None:
    assert "'kafka_sasl_password': ''" in repr(load_settings({}))


@pytest.mark.parametrize(("environ", "message"), [
    ({"NEWSDEDUP_NUM_BANDS": "20", "NEWSDEDUP_ROWS_PER_BAND": "8"},
     r"num_bands \* rows_per_band = 160 exceeds num_perm = 128"),
    ({"NEWSDEDUP_NUM_PERM": "64", "NEWSDEDUP_NUM_BANDS": "16", "NEWSDEDUP_ROWS_PER_BAND": "8"},
     r"num_bands \* rows_per_band = 128 exceeds num_perm = 64"),
    ({"NEWSDEDUP_NUM_BANDS": "16"}, "set both num_bands and rows_per_band, or neither"),
    ({"NEWSDEDUP_NUM_PERM": "8"}, "num_perm=8 is too small"),
    ({"NEWSDEDUP_JACCARD_THRESHOLD": "1.5"}, r"jaccard_threshold=1.5 must be in \(0, 1\]"),
    ({"NEWSDEDUP_LSH_THRESHOLD": "nan"}, r"lsh_threshold=nan must be in \(0, 1\]"),
    ({"NEWSDEDUP_KAFKA_SECURITY_PROTOCOL": "TLS"}, "kafka_security_protocol='TLS' is not one of"),
    ({"NEWSDEDUP_BATCH_MAX_MESSAGES": "0"}, "batch_max_messages=0 must be at least 1"),
    ({"NEWSDEDUP_KAFKA_DELIVERY_TIMEOUT_MS": "500"}, "kafka_delivery_timeout_ms=500 must be at least 2000"),
])
def test_bad_values_and_cross_field_rules_are_refused_at_start_up(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_settings(environ)


def test_settings_are_frozen() -> None:
    settings = load_settings({})
    with pytest.raises(dataclasses.FrozenInstanceError, match="num_perm"):
        settings.num_perm = 64  # type: ignore[misc]
    assert replace(settings, num_perm=64).num_perm == 64
    with pytest.raises(ValueError, match="exceeds num_perm = 64"):
        replace(settings, num_perm=64, num_bands=16, rows_per_band=8)


def test_preferred_sources_are_split_trimmed_and_lower_cased() -> None:
    settings = load_settings({"NEWSDEDUP_PREFERRED_SOURCES": " BaylineWire.example, ,harbourpress.example "})
    assert settings.preferred_source_list == ("baylinewire.example", "harbourpress.example")


def test_every_field_has_help_and_a_row_in_the_markdown_table() -> None:
    table = settings_markdown()
    for spec in dataclasses.fields(Settings):
        assert spec.metadata["help"].strip(), spec.name
        assert f"`{env_name(spec.name)}` | `{flag_name(spec.name)}`" in table
    assert env_name("num_perm") == "NEWSDEDUP_NUM_PERM"
    assert flag_name("num_perm") == "--num-perm"


# -- secrets from files (NEWSDEDUP_<NAME>_FILE) ------------------------------------------------------------

SECRET_NAMES = [f.name for f in dataclasses.fields(Settings) if f.metadata["secret"]]


def test_every_secret_setting_and_only_those_take_a_file() -> None:
    """Generic over the declaration: a secret added later gets its _FILE form with no other change."""
    assert {"database_url", "migration_database_url", "kafka_sasl_password"} <= set(SECRET_NAMES)
    assert secret_file_variables() == {env_name(name) + "_FILE": name for name in SECRET_NAMES}
    with pytest.raises(ValueError, match="unrecognised settings NEWSDEDUP_TOPIC_RAW_FILE"):
        load_settings({"NEWSDEDUP_TOPIC_RAW_FILE": "/dev/null"})  # not a secret: no file form


@pytest.mark.parametrize("name", SECRET_NAMES)
@pytest.mark.parametrize(("content", "ending"), [("s3cr3t", "\n"), ("s3cr3t", "\r\n"), ("s3cr3t", ""),
                                                 ("pä ss wörd", "\n\n")], ids=["lf", "crlf", "none", "utf8"])
def test_a_secret_file_gives_its_content_without_the_trailing_line_break(
        tmp_path: Path, name: str, content: str, ending: str) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_bytes((content + ending).encode())
    settings = load_settings({file_variable(name): str(secret_file)})
    assert getattr(settings, name) == content
    assert content not in repr(settings) and f"'{name}': '***'" in repr(settings)


def test_flags_still_win_over_a_secret_file(tmp_path: Path) -> None:
    secret_file = tmp_path / "url"
    secret_file.write_text("sqlite:///from-file.db\n")
    settings = load_settings({"NEWSDEDUP_DATABASE_URL_FILE": str(secret_file)},
                             overrides={"database_url": "sqlite:///from-flag.db"})
    assert settings.database_url == "sqlite:///from-flag.db"


def test_a_secret_and_its_file_together_are_refused(tmp_path: Path) -> None:
    secret_file = tmp_path / "password"
    secret_file.write_text("from-the-file-pw\n")
    with pytest.raises(ValueError, match="both NEWSDEDUP_KAFKA_SASL_PASSWORD and NEWSDEDUP_KAFKA_SASL_PASSWORD_FILE "
                                         "are set: set one of them") as caught:
        load_settings({"NEWSDEDUP_KAFKA_SASL_PASSWORD": "from-the-variable-pw",
                       "NEWSDEDUP_KAFKA_SASL_PASSWORD_FILE": str(secret_file)})
    assert "from-the-file-pw" not in str(caught.value) and "from-the-variable-pw" not in str(caught.value)


@pytest.mark.parametrize(("make", "message"), [
    (lambda folder: folder / "absent", r"cannot read the file \(No such file or directory\)"),
    (lambda folder: folder, r"cannot read the file \(Is a directory\)"),
    (lambda folder: _write(folder / "empty", b"\n"), "the file is empty"),
    (lambda folder: _write(folder / "latin1", b"p\xe4ss-s3cr3t\n"), "the file is not UTF-8 text"),
    (lambda folder: _write(folder / "huge", b"s3cr3t" * SECRET_FILE_MAX_BYTES), "larger than 65536 bytes"),
], ids=["missing", "directory", "empty", "not-utf8", "too-large"])
def test_an_unusable_secret_file_is_one_line_naming_the_file_not_its_content(
        tmp_path: Path, make: object, message: str) -> None:
    path = make(tmp_path)  # type: ignore[operator]
    with pytest.raises(ValueError, match=message) as caught:
        load_settings({"NEWSDEDUP_DATABASE_URL_FILE": str(path)})
    text = str(caught.value)
    assert text.startswith(f"NEWSDEDUP_DATABASE_URL_FILE={str(path)!r}: "), text
    assert "s3cr3t" not in text and "\n" not in text
    error = caught.value  # and no chained exception (a UnicodeDecodeError quotes the bytes) rides along
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)


def test_an_empty_file_variable_is_refused() -> None:
    with pytest.raises(ValueError, match="NEWSDEDUP_DATABASE_URL_FILE is empty: give the path"):
        load_settings({"NEWSDEDUP_DATABASE_URL_FILE": ""})


def test_a_secret_that_does_not_convert_is_not_echoed() -> None:
    from consumers.settings import _convert

    with pytest.raises(ValueError, match=r"NEWSDEDUP_SOME_PIN=its value is not a valid int") as caught:
        _convert("some_pin", int, "s3cr3t-pin", secret=True)
    assert "s3cr3t-pin" not in str(caught.value)


def test_the_settings_table_names_the_file_form_of_every_secret() -> None:
    table = settings_markdown()
    for name in SECRET_NAMES:
        row = next(line for line in table.splitlines() if line.startswith(f"| `{env_name(name)}` |"))
        assert f"`{file_variable(name)}` may name a file holding it instead" in row
    assert "_FILE" not in next(line for line in table.splitlines() if "`NEWSDEDUP_TOPIC_RAW`" in line)


def test_a_tls_url_with_a_password_is_masked_in_repr(tmp_path: Path) -> None:
    url = "postgresql+psycopg://newsdedup_app:Tls-S3cret@db.internal:5432/news?sslmode=verify-full&sslrootcert=/ca.pem"
    secret_file = tmp_path / "url"
    secret_file.write_text(url + "\n")
    shown = repr(load_settings({"NEWSDEDUP_DATABASE_URL_FILE": str(secret_file)}))
    assert "Tls-S3cret" not in shown and "db.internal" not in shown and "'database_url': '***'" in shown


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
