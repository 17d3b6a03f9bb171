"""Storage: inserting a batch of rows as one executemany of SQLAlchemy's own compiled SQL,
and reading rows by a list of keys with one statement that never changes.

`Connection.execute(insert, rows)` runs SQLAlchemy's general parameter machinery for every
row (key look-ups, type processing through several layers), which on the intake path cost
more than SQLite's own work for the same rows. Here the statement is compiled once per
dialect and column set, each column's bind processor is taken from its SQLAlchemy type
(the JSON columns' encoder among them), and the rows go to the driver as plain tuples:
the same SQL and the same values, without the per-row overhead.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    keys: tuple[str, ...]
    processors: tuple[Callable[[Any], Any] | None, ...]
    # the row's values in the statement's order, taken in one C call, and then the few
    # that need their type's processing: the intake's rows are written on its critical path
    _take: Callable[[Mapping[str, Any]], Any] = field(init=False)
    _processed: tuple[tuple[int, Callable[[Any], Any]], ...] = field(init=False)

    def __post_init__(self) -> None:
        take = operator.itemgetter(*self.keys)
        object.__setattr__(self, "_take", take if len(self.keys) > 1 else lambda row: (take(row),))
        processed = tuple((i, p) for i, p in enumerate(self.processors) if p is not None)
        object.__setattr__(self, "_processed", processed)

    def values(self, row: Mapping[str, Any]) -> tuple[Any, ...]:
        if not self._processed:
            return self._take(row)  # type: ignore[no-any-return]
        out = list(self._take(row))
        for i, process in self._processed:
            out[i] = process(out[i])
        return tuple(out)


_cache: dict[tuple[str, str, tuple[str, ...], str | None], _Compiled] = {}


def insert_many(
    conn: Connection, table: sa.Table, rows: Sequence[Mapping[str, Any]], skip_conflicts_on: str | None = None
) -> None:
    """Insert every row into `table` (all rows carry the same keys, the columns to fill);
    with `skip_conflicts_on`, a row whose value in that unique column is taken is left out."""
    if not rows:
        return
    columns = tuple(rows[0])
    key = (table.name, conn.dialect.name, columns, skip_conflicts_on)
    compiled = _cache.get(key)
    if compiled is None:
        compiled = _cache[key] = _compile(table, conn.dialect, columns, skip_conflicts_on)
    conn.exec_driver_sql(compiled.sql, [compiled.values(row) for row in rows])


def _compile(table: sa.Table, dialect: sa.Dialect, columns: tuple[str, ...], unique: str | None) -> _Compiled:
    insert = (postgresql.insert if dialect.name == "postgresql" else sqlite.insert)(table)
    statement = insert if unique is None else insert.on_conflict_do_nothing(index_elements=[unique])
    done = statement.compile(dialect=dialect, column_keys=list(columns))
    if done.positiontup is None:
        raise TypeError(f"{dialect.name}: insert_many needs a positional paramstyle")
    keys = tuple(done.positiontup)
    processors = tuple(done.binds[k].type.bind_processor(dialect) for k in keys)
    return _Compiled(str(done), keys, processors)


def select_in(
    conn: Connection,
    table: sa.Table,
    columns: Sequence[str],
    key: str,
    values: Sequence[Any],
    where: Mapping[str, Any] | None = None,
) -> Sequence[Any]:  # rows: tuples of `columns`
    """`columns` of the rows of `table` whose `key` is one of `values` (and whose columns in
    `where` equal the values given there). A plain `in_()` is compiled anew for every
    number of values, which costs more than SQLite's look-ups themselves; on SQLite the
    values travel as one JSON array instead (json_each), so the statement is the same
    every time. Elsewhere it is the plain `in_()`."""
    where = where or {}
    if conn.dialect.name != "sqlite":
        c = table.c
        query = sa.select(*(c[name] for name in columns)).where(
            c[key].in_(values), *(c[k] == v for k, v in where.items())
        )
        return conn.execute(query).all()
    conditions = "".join(f" AND {name} = ?" for name in where)
    sql = (
        f"SELECT {', '.join(columns)} FROM {table.name}"
        f" WHERE {key} IN (SELECT j.value FROM json_each(?) AS j){conditions}"
    )
    return conn.exec_driver_sql(sql, (orjson.dumps(list(values)).decode(), *where.values())).all()
