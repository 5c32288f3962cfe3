"""Schema management through Alembic: upgrade to head, and check a database is at head."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

MIGRATIONS = Path(__file__).parent / "migrations"


class SchemaNotReady(RuntimeError):
    pass


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    if head is None:
        raise SchemaNotReady(f"no migrations found in {MIGRATIONS}")
    return head


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply migrations; needs a role that may create tables (the owner, not the service role)."""
    config = _config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def check_at_head(engine: Engine) -> None:
    """Refuse to run against a database whose schema is missing or out of date."""
    current, head = current_revision(engine), head_revision()
    if current != head:
        raise SchemaNotReady(
            f"database schema is at {current or 'nothing (empty database)'}, this build needs {head}: "
            f"run 'newsdedup db upgrade --db URL' with the owner role first")
