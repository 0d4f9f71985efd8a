"""Typed doors to what SQLAlchemy's public API leaves untyped: the raw driver
connection (COPY, prepare=False), a mapped class's Table, a type's bind processor;
and the one bulk insert the store and the extract share (`bulk_insert`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, Dialect, Table, insert
from sqlalchemy.exc import DBAPIError
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


# (dialect, table, columns) -> statement, and where each of ``columns`` goes in its parameters
_BULK: dict[tuple[Any, Table, tuple[str, ...]], tuple[str, tuple[int, ...] | None]] = {}


def bulk_insert(
    conn: Connection, table: Table, columns: Sequence[str], rows: Iterable[Sequence[Any]]
) -> None:
    """INSERT ``rows`` (tuples of driver-ready values, in ``columns`` order) in one go.

    COPY on PostgreSQL with psycopg (one round trip, half the client CPU of its
    pipelined executemany), the driver's own executemany elsewhere: no per-row
    dicts or SQLAlchemy bookkeeping, which on a million rows or a capture batch
    is most of the cost. Values are not converted (callers that hold Python
    dates or decimals run the column types' bind processors first, as
    `repo.insert_many` does). A driver error is raised as SQLAlchemy's own
    class (IntegrityError for a unique violation), as `Connection.execute` would.
    """
    columns = tuple(columns)
    dialect = conn.dialect
    key = (dialect, table, columns)
    plan: tuple[str, tuple[int, ...] | None] | None = _BULK.get(key)
    if plan is None:
        if dialect.name == "postgresql" and dialect.driver == "psycopg":
            plan = (f"COPY {table.name} ({', '.join(columns)}) FROM STDIN", None)
        else:
            compiled = insert(table).compile(dialect=dialect, column_keys=list(columns))
            if compiled.positional:
                moved = tuple(columns.index(k) for k in compiled.positiontup or ())
                plan = (str(compiled), None if moved == tuple(range(len(columns))) else moved)
            else:
                plan = (str(compiled), ())  # () marks a named paramstyle: dicts
        _BULK[key] = plan
    sql, order = plan
    cursor = dbapi_connection(conn).cursor()
    try:
        if sql.startswith("COPY"):
            with cursor.copy(sql) as copy:
                for row in rows:
                    copy.write_row(row)
        elif order is None:
            cursor.executemany(sql, rows)
        elif order:
            cursor.executemany(sql, (tuple(row[i] for i in order) for row in rows))
        else:
            cursor.executemany(sql, (dict(zip(columns, row, strict=True)) for row in rows))
    except dbapi_module(conn).Error as exc:
        raise DBAPIError.instance(sql, None, exc, dbapi_module(conn).Error) from exc
    finally:
        cursor.close()
