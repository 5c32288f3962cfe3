"""Engine creation: the one place that turns a URL into a connection pool."""

from __future__ import annotations

from typing import Any

from sqlalchemy import URL, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError


def make_engine(url: str) -> Engine:
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(parsed)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(parsed, pool_pre_ping=True, pool_size=2, max_overflow=2)


def parse_url(url: str) -> URL:
    """The URL parsed; a malformed one raises an error that never quotes it.

    SQLAlchemy's own error for a port that is not a number quotes that part of the URL, and with a
    password holding an unencoded '/' or '@' that part is the password's tail.
    """
    try:
        return make_url(url)
    except ValueError:
        raise ArgumentError("the database URL is malformed (its port is not a number); percent-encode "
                            "characters such as / @ : ? # in the user name and password") from None


def safe_url(url: str) -> str:
    """The URL with its password hidden, for logs and error messages."""
    return parse_url(url).render_as_string(hide_password=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers (export) don't block the writer
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
