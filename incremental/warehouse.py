"""The warehouse: any SQLAlchemy URL; DuckDB (the embedded default) and PostgreSQL get fast paths.

SQL lives in `sql/*.sql` with `:name` parameters, always bound, never formatted into the text.
DuckDB is driven through its own Python API (Arrow in and out, no row-by-row Python), since
DuckDB allows one writing process per file; every connection here is short-lived and held
under an exclusive file lock (`<file>.lock`), so two processes on the same file (two hourly
runs, a backfill and a simulation) take turns instead of failing with "Could not set lock". PostgreSQL
uses psycopg 3 (COPY for loading). Any other SQLAlchemy dialect works through SQLAlchemy.
"""

from __future__ import annotations

import fcntl
import io
import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import sqlalchemy as sa

from incremental.errors import WarehouseError, redact_url

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
LOCK_TIMEOUT_S = 600.0  # how long a process waits for another one's turn on the DuckDB file


# The warehouse tables and their columns (sql/schema.sql): loading names only these identifiers,
# so the INSERT statements below are built from a whitelist and every value is bound data.
TABLE_COLUMNS = {
    "products": ("product_id", "title", "brand", "category", "price", "created_at"),
    "search_impressions": ("event_id", "event_ts", "ingested_at", "session_id", "user_id", "query", "product_id",
                           "position", "clicked"),
}


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
    """The statements of a SQL file (comments dropped, split on `;`)."""
    lines = [line.split("--", 1)[0] for line in sql_text(name).splitlines()]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


class Warehouse:
    """A thin handle on the warehouse behind one SQLAlchemy URL."""

    def __init__(self, url: str, *, lock_timeout: float = LOCK_TIMEOUT_S):
        self.url = url
        try:
            self._url = sa.engine.make_url(url)
        except (sa.exc.ArgumentError, ValueError) as exc:
            raise WarehouseError(
                f"INCREMENTAL_WAREHOUSE_URL {redact_url(url)!r} is not a database URL ({exc}); "
                "expected e.g. duckdb:///path/warehouse.duckdb or postgresql://user@host/db"
            ) from None
        self.backend = self._url.get_backend_name()  # "duckdb", "postgresql", ...
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
        with open(f"{path}.lock", "a") as lock:
            deadline = time.monotonic() + self.lock_timeout
            while True:  # our own processes queue on the lock file ...
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise WarehouseError(
                            f"warehouse {path} is busy: another process held {path}.lock for more than "
                            f"{self.lock_timeout:g} s (a long load, or a stuck process: see `fuser {path}.lock`)"
                        ) from None
                    time.sleep(0.05)
            try:
                while True:  # ... and anything else that opens the file (a DuckDB shell) is waited for too
                    try:
                        con = duckdb.connect(path)
                        break
                    except duckdb.IOException as exc:
                        if "lock" not in str(exc).lower():
                            raise
                        if time.monotonic() > deadline:
                            raise WarehouseError(
                                f"warehouse {path} is locked by another program for more than "
                                f"{self.lock_timeout:g} s: {str(exc).splitlines()[0]}"
                            ) from None
                        time.sleep(0.2)
                try:
                    con.execute("SET TimeZone = 'UTC'")
                    yield con
                finally:
                    con.close()
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

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
        staging = f"CREATE TEMP TABLE incoming_rows (LIKE {table_name}) ON COMMIT DROP"  # whitelisted name
        copy_in = f"COPY incoming_rows ({', '.join(rows.column_names)}) FROM STDIN WITH (FORMAT csv)"
        raw = engine.raw_connection()
        try:
            with raw.cursor() as cur:
                cur.execute(staging)
                with cur.copy(copy_in) as copy:
                    copy.write(buffer.getvalue())
                cur.execute(insert)
            raw.commit()
        finally:
            raw.close()


def _duckdb_params(statement: str) -> str:
    """`:name` (SQLAlchemy style, used in sql/) -> `$name` (DuckDB's named parameters)."""
    return _PARAM.sub(r"$\1", statement)
