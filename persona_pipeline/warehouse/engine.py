"""SQLAlchemy engines for the warehouse (DuckDB file by default, any SQLAlchemy URL in production)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from persona_pipeline.exceptions import ConfigError


def create_warehouse_engine(url: str, *, duckdb_memory_limit: str | None = None) -> sa.Engine:
    """Create an engine for ``url``; DuckDB files get their parent directory created.

    The password, if any, never appears in error messages (``URL.render_as_string`` hides it).
    """
    try:
        parsed = make_url(url)
    except sa.exc.ArgumentError as exc:
        raise ConfigError(f"warehouse.url is not a SQLAlchemy URL: {exc}") from None
    if parsed.get_backend_name() == "duckdb" and parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    kwargs: dict[str, object] = {}
    if parsed.get_backend_name() == "duckdb" and duckdb_memory_limit:
        # DuckDB's default is 80% of RAM; a cap makes it spill its aggregation to disk instead of growing.
        kwargs["connect_args"] = {"config": {"memory_limit": duckdb_memory_limit}}
    if parsed.get_backend_name() == "postgresql":
        kwargs["pool_pre_ping"] = True
        # Naive timestamps are UTC everywhere in the pipeline; make the session agree.
        kwargs["connect_args"] = {"options": "-c timezone=UTC"}
    try:
        return sa.create_engine(parsed, **kwargs)
    except (ImportError, sa.exc.NoSuchModuleError) as exc:
        raise ConfigError(
            f"no SQLAlchemy driver for {parsed.render_as_string(hide_password=True)}: {exc} "
            "(install the dialect package, e.g. duckdb-engine or psycopg)"
        ) from None


@contextmanager
def warehouse_engine(url: str, *, duckdb_memory_limit: str | None = None) -> Iterator[sa.Engine]:
    """An engine that is disposed on exit, so an embedded DuckDB file is unlocked for the next task."""
    engine = create_warehouse_engine(url, duckdb_memory_limit=duckdb_memory_limit)
    try:
        yield engine
    finally:
        engine.dispose()
