"""The warehouse: any SQLAlchemy URL; DuckDB (the embedded default) and PostgreSQL get fast paths.

SQL lives in `sql/*.sql` with `:name` parameters, always bound, never formatted into the text.
DuckDB is driven through its own Python API (Arrow in and out, no row-by-row Python), since
DuckDB allows one writing process per file; every connection here is short-lived and held
under an exclusive file lock (`<file>.lock`), so two processes on the same file (two hourly
runs, a backfill and a simulation) take turns instead of failing with "Could not set lock".
PostgreSQL uses psycopg 3 and COPY both ways: loading is `COPY ... FROM STDIN` (CSV), reading is
`COPY (query) TO STDOUT` (CSV) parsed by Arrow's multi-threaded CSV reader into columns typed
from the query's own result types, with no Python object per row (`_pg_query_arrow`). Any other
SQLAlchemy dialect works through SQLAlchemy.
"""

from __future__ import annotations

import io
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import sqlalchemy as sa
import sqlparse

from incremental import locks
from incremental.errors import WarehouseError, redact_url

SQL_DIR = Path(__file__).resolve().parents[2] / "sql"
_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
LOCK_TIMEOUT_S = 600.0  # how long a process waits for another one's turn on the DuckDB file


# The warehouse tables and their columns (sql/schema.sql): loading names only these identifiers,
# so the INSERT statements below are built from a whitelist and every value is bound data.
TABLE_COLUMNS = {
    "products": ("product_id", "title", "brand", "category", "price", "created_at"),
    "search_impressions": ("event_id", "event_ts", "ingested_at", "session_id", "user_id", "query", "product_id",
                           "position", "clicked"),
}


# PostgreSQL result types whose CSV text Arrow parses back to the same values, and their Arrow
# types: those DuckDB gives for the same columns of sql/schema.sql, so both warehouses produce the
# same Parquet bytes. A result with any other type (numeric, json, arrays...) is read through
# SQLAlchemy instead (`_PG_ARROW` misses it and `_pg_query_arrow` returns None).
_PG_ARROW: dict[int, pa.DataType] = {
    16: pa.bool_(),  # bool
    20: pa.int64(),  # int8
    21: pa.int16(),  # int2
    23: pa.int32(),  # int4
    25: pa.string(),  # text
    1043: pa.string(),  # varchar
    700: pa.float32(),  # float4
    701: pa.float64(),  # float8
    1082: pa.date32(),  # date
    1114: pa.timestamp("us"),  # timestamp
    1184: pa.timestamp("us", tz="UTC"),  # timestamptz (the session's TimeZone is UTC)
}
# The session settings the CSV text depends on: ISO dates, UTC offsets, shortest exact floats.
_PG_CSV_BLOCK = 4 << 20  # bytes of CSV per block of Arrow's reader (blocks are parsed in parallel)
_PG_READ_SESSION = ("SET TimeZone = 'UTC'", "SET DateStyle = 'ISO, YMD'", "SET extra_float_digits = 1")


def _psycopg_params(statement: str) -> str:
    """`:name` (sql/) -> `%(name)s` (psycopg's placeholders); a literal `%` becomes `%%`."""
    return _PARAM.sub(r"%(\1)s", statement.replace("%", "%%"))


def _insert_from_staging(table_name: str, columns: list[str]) -> str:
    """`INSERT INTO <table> (<columns>) SELECT <columns> FROM incoming_rows`, identifiers whitelisted."""
    if table_name not in TABLE_COLUMNS:
        raise ValueError(f"unknown warehouse table {table_name!r}")
    unknown = [c for c in columns if c not in TABLE_COLUMNS[table_name]]
    if unknown:
        raise ValueError(f"{table_name} has no column(s) {unknown}; it has {list(TABLE_COLUMNS[table_name])}")
    names = ", ".join(columns)
    conflict = " ON CONFLICT DO NOTHING" if table_name == "products" else ""  # the catalogue is idempotent
    return f"INSERT INTO {table_name} ({names}) SELECT {names} FROM incoming_rows{conflict}"


def sql_text(name: str) -> str:
    """The text of `sql/<name>.sql`."""
    return (SQL_DIR / f"{name}.sql").read_text()


def sql_statements(name: str) -> list[str]:
    """The statements of a SQL file, comments dropped, without their `;` (split by sqlparse, so a
    `;` or `--` inside a string literal stays where it is)."""
    text = sqlparse.format(sql_text(name), strip_comments=True)
    return [s for s in (part.strip().removesuffix(";").rstrip() for part in sqlparse.split(text)) if s]


def _retry_until(deadline: float, pause: float, attempt: Callable[[], Any],
                 busy: Callable[[Exception], str | None]) -> Any:
    """`attempt()` until it succeeds. `busy(exc)` says why a failure is worth waiting for (None:
    re-raise it); past `deadline` that reason becomes a WarehouseError."""
    while True:
        try:
            return attempt()
        except Exception as exc:
            why = busy(exc)
            if why is None:
                raise
            if time.monotonic() > deadline:
                raise WarehouseError(why) from None
            time.sleep(pause)


class Warehouse:
    """A thin handle on the warehouse behind one SQLAlchemy URL."""

    def __init__(self, url: str, *, lock_timeout: float = LOCK_TIMEOUT_S):
        self.url = url
        try:
            self._url = sa.engine.make_url(url)
        except (sa.exc.ArgumentError, ValueError) as exc:
            raise WarehouseError(
                f"INCREMENTAL_WAREHOUSE_URL {redact_url(url)!r} is not a database URL ({exc}); "
                "expected e.g. duckdb:///path/warehouse.duckdb or postgresql://user@host/db", retryable=False
            ) from None
        self.backend = self._url.get_backend_name()  # "duckdb" or "postgresql"
        if self.backend not in ("duckdb", "postgresql"):  # sql/ is written for these two, and their drivers are installed
            raise WarehouseError(
                f"INCREMENTAL_WAREHOUSE_URL: {self.backend}:// is not a supported warehouse (the URL is not shown: it "
                "may hold a password); use duckdb:///path/warehouse.duckdb or postgresql://user@host/db", retryable=False)
        self.lock_timeout = lock_timeout

    def __repr__(self) -> str:
        return f"Warehouse({self.safe_url})"

    @property
    def safe_url(self) -> str:
        """The URL with its password hidden: what messages and logs show."""
        return self._url.render_as_string(hide_password=True)

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """Database errors (unreachable server, missing database, table or column, a lock held
        too long) -> a WarehouseError naming the warehouse (password hidden) and the problem."""
        try:
            yield
        except WarehouseError:
            raise
        except sa.exc.DBAPIError as exc:
            detail = str(exc.orig if exc.orig is not None else exc).strip().splitlines()
            raise WarehouseError(f"warehouse {self.safe_url}: {what} failed: {' '.join(d.strip() for d in detail[:2])}") from None
        except sa.exc.SQLAlchemyError as exc:
            raise WarehouseError(f"warehouse {self.safe_url}: {what} failed: {str(exc).splitlines()[0]}") from None
        except Exception as exc:
            if type(exc).__module__.split(".")[0] not in ("duckdb", "_duckdb", "psycopg"):
                raise
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise WarehouseError(f"warehouse {self.safe_url}: {what} failed: {first}") from None

    @property
    def duckdb_path(self) -> str:
        return self._url.database or ":memory:"

    @contextmanager
    def _duckdb(self) -> Iterator[Any]:
        import duckdb

        path = self.duckdb_path
        if path == ":memory:":
            con = duckdb.connect(path)
            try:
                con.execute("SET TimeZone = 'UTC'")
                yield con
            finally:
                con.close()
            return
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.lock_timeout
        held = f"{self.lock_timeout:g} s"
        with ExitStack() as turn:
            try:  # our own processes queue on the lock file ...
                turn.enter_context(locks.hold(Path(f"{path}.lock"), self.lock_timeout))
            except locks.LockTimeout as exc:
                who = exc.holder or f"see `fuser {path}.lock`"
                raise WarehouseError(f"warehouse {path} is busy: another process held {path}.lock for more than "
                                     f"{held} (a long load, or a stuck process: {who})") from None
            # ... and anything else that opens the file (a DuckDB shell) is waited for too
            con = _retry_until(deadline, 0.2, lambda: duckdb.connect(path),
                               lambda exc: (f"warehouse {path} is locked by another program for more than "
                                            f"{held}: {str(exc).splitlines()[0]}")
                               if isinstance(exc, duckdb.IOException) and "lock" in str(exc).lower() else None)
            try:
                con.execute("SET TimeZone = 'UTC'")
                yield con
            finally:
                con.close()

    def _engine(self) -> sa.Engine:
        url = self._url
        if self.backend == "postgresql" and url.drivername == "postgresql":
            url = url.set(drivername="postgresql+psycopg")
        return sa.create_engine(url, poolclass=sa.pool.NullPool)

    # --- schema -------------------------------------------------------------------------
    def init_schema(self) -> None:
        self.execute_file("schema")

    def execute_file(self, name: str, params: Mapping[str, Any] | None = None) -> int:
        """Run the statements of `sql/<name>.sql` in one transaction; returns the rows the last one changed."""
        with self._errors(f"sql/{name}.sql"):
            return self._execute_file(name, params)

    def _execute_file(self, name: str, params: Mapping[str, Any] | None = None) -> int:
        statements = sql_statements(name)
        changed = 0
        if self.backend == "duckdb":
            with self._duckdb() as con:
                con.execute("BEGIN")
                for statement in statements:
                    row = con.execute(_duckdb_params(statement), dict(params or {}) or None).fetchone()
                    changed = int(row[0]) if row and isinstance(row[0], int) else 0
                con.execute("COMMIT")
            return changed
        engine = self._engine()
        try:
            with engine.begin() as conn:
                for statement in statements:
                    changed = conn.execute(sa.text(statement), dict(params or {})).rowcount or 0
        finally:
            engine.dispose()
        return int(changed)

    # --- reading ------------------------------------------------------------------------
    def query_arrow(self, name: str, params: Mapping[str, Any]) -> pa.Table:
        """Run `sql/<name>.sql` with bound parameters; the result as an Arrow table."""
        with self._errors(f"sql/{name}.sql"):
            return self._query_arrow(name, params)

    def _query_arrow(self, name: str, params: Mapping[str, Any]) -> pa.Table:
        statement = sql_text(name)
        if self.backend == "duckdb":
            with self._duckdb() as con:
                return con.execute(_duckdb_params(statement), dict(params)).fetch_arrow_table()
        if self.backend == "postgresql":
            table = self._pg_query_arrow(statement, params)
            if table is not None:
                return table
        engine = self._engine()
        try:
            with engine.connect() as conn:
                result = conn.execute(sa.text(statement), dict(params))
                columns = list(result.keys())
                rows = result.fetchall()
        finally:
            engine.dispose()
        return pa.Table.from_pylist([dict(zip(columns, row, strict=True)) for row in rows]) if rows else (
            pa.table({c: pa.array([], pa.null()) for c in columns})
        )

    def _pg_query_arrow(self, statement: str, params: Mapping[str, Any]) -> pa.Table | None:
        """`statement` through `COPY (statement) TO STDOUT (FORMAT csv)` into Arrow, or None when
        a result column has a type outside `_PG_ARROW` (the caller then reads it row by row).

        The parameters stay bound: psycopg merges them into the COPY client-side, quoted as
        literals (COPY takes no server-side parameters). NULL is an unquoted empty field and an
        empty string a quoted one, so the two stay apart. libpq hands COPY data over one row at a
        time, so a thread pumps it into a pipe while Arrow's reader parses what has arrived.
        """
        from psycopg import sql

        # the statement is a file of sql/ (trusted text, placeholders included): composed as SQL, its values bound
        query = sql.SQL(_psycopg_params(statement.strip().rstrip(";")))
        engine = self._engine()
        raw: Any = engine.raw_connection()  # psycopg's: its cursor is a context manager, with copy()
        try:
            with raw.cursor() as cur:
                for setting in _PG_READ_SESSION:
                    cur.execute(setting)
                # the result's column names and types, from the planner (no rows are produced)
                cur.execute(sql.SQL("SELECT * FROM (\n{}\n) AS q LIMIT 0").format(query), dict(params))
                columns = [(d.name, _PG_ARROW.get(d.type_code)) for d in cur.description]
                if any(t is None for _, t in columns) or len({n for n, _ in columns}) != len(columns):
                    return None
                table = _read_csv_while_copying(cur, sql.SQL("COPY (\n{}\n) TO STDOUT WITH (FORMAT csv)").format(query),
                                                dict(params), columns)
            raw.rollback()  # read only; ends the transaction the SETs opened
        except pa.ArrowInvalid:  # a value Arrow's parser does not take (e.g. 'infinity'): read row by row
            return None
        finally:
            raw.close()
            engine.dispose()
        return table

    def scalar(self, name: str, params: Mapping[str, Any]) -> Any:
        table = self.query_arrow(name, params)
        return table.column(0)[0].as_py()

    # --- loading ------------------------------------------------------------------------
    def insert(self, table_name: str, rows: pa.Table) -> int:
        """Append rows (an Arrow table whose columns are named like the table's)."""
        statement = _insert_from_staging(table_name, rows.column_names)
        with self._errors(f"loading {table_name}"):
            return self._insert(table_name, rows, statement)

    def _insert(self, table_name: str, rows: pa.Table, statement: str) -> int:
        if rows.num_rows == 0:
            return 0
        if self.backend == "duckdb":
            with self._duckdb() as con:
                con.register("incoming_rows", rows)
                con.execute(statement)
                con.unregister("incoming_rows")
            return rows.num_rows
        engine = self._engine()
        try:
            if self.backend == "postgresql":
                self._pg_copy(engine, table_name, rows, statement)
            else:
                with engine.begin() as conn:
                    conn.execute(sa.table(table_name, *map(sa.column, rows.column_names)).insert(), rows.to_pylist())
        finally:
            engine.dispose()
        return rows.num_rows

    @staticmethod
    def _pg_copy(engine: sa.Engine, table_name: str, rows: pa.Table, insert: str) -> None:
        # COPY through a staging table, so products keep ON CONFLICT semantics and one
        # transaction covers the whole load.
        buffer = io.BytesIO()
        pacsv.write_csv(rows, buffer, pacsv.WriteOptions(include_header=False, quoting_style="all_valid"))
        from psycopg import sql

        staging = sql.SQL("CREATE TEMP TABLE incoming_rows (LIKE {}) ON COMMIT DROP").format(sql.Identifier(table_name))
        copy_in = sql.SQL("COPY incoming_rows ({}) FROM STDIN WITH (FORMAT csv)").format(
            sql.SQL(", ").join(map(sql.Identifier, rows.column_names)))
        raw: Any = engine.raw_connection()  # psycopg's: its cursor is a context manager, with copy()
        try:
            with raw.cursor() as cur:
                cur.execute(staging)
                with cur.copy(copy_in) as copy:
                    copy.write(buffer.getvalue())
                cur.execute(insert)
            raw.commit()
        finally:
            raw.close()


def _read_csv_while_copying(cur: Any, copy_sql: Any, params: dict[str, Any],
                            columns: list[tuple[str, pa.DataType]]) -> pa.Table:
    """Run a `COPY ... TO STDOUT (FORMAT csv)` on psycopg cursor `cur` and parse its output with
    Arrow as it arrives (a pump thread writes into a pipe; the reader parses blocks in parallel)."""
    read_fd, write_fd = os.pipe()
    failed: list[BaseException] = []

    def pump() -> None:
        try:
            with os.fdopen(write_fd, "wb", buffering=1 << 20) as pipe, cur.copy(copy_sql, params) as copy:
                for chunk in copy:
                    pipe.write(chunk)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread below
            failed.append(exc)

    thread = threading.Thread(target=pump, name="pg-copy-pump", daemon=True)
    thread.start()
    try:
        with os.fdopen(read_fd, "rb") as pipe:  # closing it on a parse error unblocks the pump
            if not pipe.peek(1):  # no rows (Arrow refuses an empty CSV file)
                thread.join()
                if failed:
                    raise failed[0]
                return pa.schema(columns).empty_table()
            table = pacsv.read_csv(
                pipe,
                read_options=pacsv.ReadOptions(column_names=[n for n, _ in columns], block_size=_PG_CSV_BLOCK),
                parse_options=pacsv.ParseOptions(newlines_in_values=True),
                convert_options=pacsv.ConvertOptions(
                    column_types=dict(columns), null_values=[""], strings_can_be_null=True,
                    quoted_strings_can_be_null=False, true_values=["t"], false_values=["f"],
                ),
            )
    finally:
        thread.join()
    if failed:  # the COPY failed: what was parsed may be a truncated result
        raise failed[0]
    # one chunk, as the row read gives: the Parquet writer's output depends on chunking
    return table.combine_chunks()


def _duckdb_params(statement: str) -> str:
    """`:name` (SQLAlchemy style, used in sql/) -> `$name` (DuckDB's named parameters)."""
    return _PARAM.sub(r"$\1", statement)
