"""consumers.settings: one frozen declaration, read from a dict environment and overrides."""

from __future__ import annotations

import dataclasses
import re
from datetime import timedelta
from pathlib import Path

import pytest

from consumers.settings import (
    SCRIPT_VARIABLES,
    Settings,
    env_name,
    flag_name,
    load_settings,
    replace,
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
