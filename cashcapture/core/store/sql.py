"""Typed doors to what SQLAlchemy's public API leaves untyped: the raw driver
connection (COPY, prepare=False), a mapped class's Table, a type's bind processor."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Dialect, Table
from sqlalchemy.types import TypeEngine

BindProcessor = Callable[[Any], Any]


def dbapi_connection(conn: Connection) -> Any:
    """The driver's own connection (psycopg or sqlite3) under ``conn``."""
    return conn.connection.dbapi_connection


def dbapi_module(conn: Connection) -> Any:
    """The driver module, for its exception classes."""
    return conn.dialect.dbapi


def table_of(model: type[Any]) -> Table:
    """The Table a declarative class maps."""
    table = model.__table__
    assert isinstance(table, Table)
    return table


def bind_processor(type_: TypeEngine[Any], dialect: Dialect) -> BindProcessor | None:
    """How ``dialect`` stores a value of ``type_`` (public API: the dialect's impl)."""
    return type_.dialect_impl(dialect).bind_processor(dialect)
