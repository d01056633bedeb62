"""Connection files that open the output tables in Tableau (``.tds``) and Power BI (``.pbids``).

Written at publish time into the object store, twice:

* ``bi/`` — files that always show the newest successful run: one ``.tds`` per output table, reading the
  ``latest_<table>`` view, and one ``.pbids`` for the warehouse. Their content does not depend on the run's
  date, so a backfill of an older date rewrites them unchanged.
* ``dt=D/bi/`` — the same set pinned to date D: each ``.tds`` reads the base table through a Custom SQL
  relation ``WHERE dt = DATE 'D'``, for audits and "what did we publish that day".

What each warehouse gets:

* **PostgreSQL** — native Tableau ``postgres`` connection (server, port, database, schema, sslmode) and a
  Power BI ``postgresql`` connection (``server`` = ``host:port``, ``database``).
* **DuckDB** — neither tool has a native DuckDB connector. The ``.tds`` uses Tableau's *Other Databases
  (ODBC)* connection with the DuckDB ODBC driver on the database file, read-only. The ``.pbids`` opens the
  Parquet copies of the tables (``tables/`` in a local object store) with Power BI's Folder connector; with
  an S3 store no ``.pbids`` is written for DuckDB (Power BI has no S3 connector; see docs/bi.md).
* Any other dialect: no files (logged); docs/bi.md says how to connect by hand.

Credentials never go into these files: no password, and no user name either (the pipeline's own account can
write; analysts sign in with their own read-only role). Only host, port, database, schema and the SSL mode
are copied from ``warehouse.url``.
"""

from __future__ import annotations

import json
import logging
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from persona_pipeline.contracts import RunContext, stable_hash
from persona_pipeline.storage import LocalObjectStore, ObjectStore

if TYPE_CHECKING:
    from persona_pipeline.config import Settings

log = logging.getLogger(__name__)

__all__ = [
    "BiFile",
    "WarehouseTarget",
    "bi_files",
    "power_bi_pbids",
    "tableau_tds",
    "warehouse_target",
    "write_bi_files",
]

TDS_CONTENT_TYPE = "application/xml; charset=utf-8"
PBIDS_CONTENT_TYPE = "application/json"
DUCKDB_ODBC_DRIVER = "DuckDB Driver"  # the driver name the DuckDB ODBC installer registers
TABLEAU_XML_VERSION = "18.1"  # Tableau 2020.2 and later read this format

# Columns that hold a link to an image; the .tds tells the analyst to give them Tableau's Image Role.
IMAGE_URL_COLUMNS = frozenset({"image_url"})
_IMAGE_ROLE_HINT = (
    "Link to the persona image (PNG). Tableau 2022.4+: right-click the field > Image Role > URL to show the "
    "picture in headers. Links are refreshed by every nightly run."
)
# Words whose capitalisation differs from str.title() in captions.
_CAPTION_WORDS = {
    "id": "ID",
    "url": "URL",
    "usd": "USD",
    "aov": "AOV",
    "clv": "CLV",
    "json": "JSON",
    "dt": "Date",
}


@dataclass(frozen=True)
class WarehouseTarget:
    """Where BI tools find the output tables: ``warehouse.url`` without any credentials."""

    dialect: str  # "postgresql", "duckdb", or the SQLAlchemy backend name of anything else
    schema: str | None
    host: str | None = None
    port: int | None = None
    database: str | None = None  # database name; for DuckDB the absolute path of the database file
    sslmode: str | None = None

    @property
    def supported(self) -> bool:
        """Whether connection files can be written for this warehouse."""
        if self.dialect == "duckdb":
            return bool(self.database) and self.database != ":memory:"
        return self.dialect == "postgresql"


@dataclass(frozen=True)
class BiFile:
    """One connection file: its name under ``bi/`` (or ``dt=D/bi/``), bytes and content type."""

    name: str  # e.g. "tableau/personas.tds"
    data: bytes
    content_type: str


def warehouse_target(url: str, schema: str | None) -> WarehouseTarget:
    """Parse ``warehouse.url`` into a :class:`WarehouseTarget`; the password is never read."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "duckdb":
        database = parsed.database
        if database and database != ":memory:":
            database = str(Path(database).expanduser().resolve())
        return WarehouseTarget("duckdb", schema, database=database)
    if backend == "postgresql":
        # Only non-secret settings are taken from the query string (it may carry ``password=``).
        sslmode = parsed.query.get("sslmode")
        host = parsed.host or _non_socket(parsed.query.get("host"))
        return WarehouseTarget(
            "postgresql",
            schema,
            host=host or "localhost",
            port=parsed.port or 5432,
            database=parsed.database,
            sslmode=sslmode if isinstance(sslmode, str) else None,
        )
    return WarehouseTarget(backend, schema)


def _non_socket(value: str | tuple[str, ...] | None) -> str | None:
    # libpq accepts a socket directory as "host"; a BI tool on another machine cannot use that.
    if isinstance(value, str) and value and not value.startswith("/"):
        return value
    return None


def _caption(column: str) -> str:
    return " ".join(_CAPTION_WORDS.get(word, word.capitalize()) for word in column.split("_"))


def _tableau_type(column: sa.Column[object]) -> tuple[str, str, str]:
    """``(datatype, role, type)`` of a column in Tableau's vocabulary."""
    kind = column.type
    if isinstance(kind, sa.Boolean):
        return "boolean", "dimension", "nominal"
    if isinstance(kind, sa.DateTime):
        return "datetime", "dimension", "ordinal"
    if isinstance(kind, sa.Date):
        return "date", "dimension", "ordinal"
    if isinstance(kind, sa.Integer):
        return "integer", "measure", "quantitative"
    if isinstance(kind, (sa.Float, sa.Numeric)):
        return "real", "measure", "quantitative"
    return "string", "dimension", "nominal"


def _quote_sql(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _inner_connection(target: WarehouseTarget) -> tuple[str, dict[str, str]]:
    """Tableau connection class and attributes for the warehouse (never credentials)."""
    if target.dialect == "postgresql":
        attributes = {
            "authentication": "username-password",
            "class": "postgres",
            "dbname": target.database or "",
            "odbc-native-protocol": "",
            "one-time-sql": "",
            "port": str(target.port or 5432),
            "schema": target.schema or "public",
            "server": target.host or "localhost",
        }
        if target.sslmode:
            attributes["sslmode"] = target.sslmode
        return "postgres", attributes
    # DuckDB through Tableau's generic ODBC connection; read-only so the nightly run can still write.
    return "genericodbc", {
        "class": "genericodbc",
        "dbname": target.database or "",
        "odbc-connect-string-extras": "access_mode=READ_ONLY",
        "odbc-driver": DUCKDB_ODBC_DRIVER,
        "odbc-dsn": "",
        "one-time-sql": "",
        "schema": target.schema or "main",
        "server": "",
    }


def tableau_tds(
    target: WarehouseTarget, table: sa.Table, *, logical_date: date | None = None, product: str = "Persona Pipeline"
) -> bytes:
    """A Tableau data source for one output table.

    Without ``logical_date`` it reads the ``latest_<table>`` view (newest successful run); with it, the base
    table restricted to that date through a Custom SQL relation.
    """
    if not target.supported:
        raise ValueError(f"no Tableau connection for a {target.dialect!r} warehouse")
    kind, attributes = _inner_connection(target)
    named = f"{kind}.{stable_hash([target.dialect, target.host, target.port, target.database], 12)}"
    schema = target.schema
    suffix = f" ({logical_date.isoformat()})" if logical_date else ""
    caption = f"{product}: {_caption(table.name)}{suffix}"

    root = ET.Element(
        "datasource",
        {"formatted-name": caption, "inline": "true", "version": TABLEAU_XML_VERSION},
    )
    federated = ET.SubElement(root, "connection", {"class": "federated"})
    named_connections = ET.SubElement(federated, "named-connections")
    named_connection = ET.SubElement(
        named_connections, "named-connection", {"caption": target.host or target.database or kind, "name": named}
    )
    ET.SubElement(named_connection, "connection", attributes)
    if logical_date is None:
        view = f"latest_{table.name}"
        qualified = f"[{schema}].[{view}]" if schema else f"[{view}]"
        ET.SubElement(federated, "relation", {"connection": named, "name": view, "table": qualified, "type": "table"})
    else:
        source = f"{_quote_sql(schema)}.{_quote_sql(table.name)}" if schema else _quote_sql(table.name)
        relation = ET.SubElement(
            federated, "relation", {"connection": named, "name": f"{table.name} {logical_date}", "type": "text"}
        )
        # The date is a date object rendered by isoformat(): no user text reaches this SQL.
        relation.text = f"SELECT * FROM {source} WHERE dt = DATE '{logical_date.isoformat()}'"
    ET.SubElement(root, "aliases", {"enabled": "yes"})
    for column in table.columns:
        datatype, role, kind_ = _tableau_type(column)
        element = ET.SubElement(
            root,
            "column",
            {
                "caption": "Image" if column.name in IMAGE_URL_COLUMNS else _caption(column.name),
                "datatype": datatype,
                "name": f"[{column.name}]",
                "role": role,
                "type": kind_,
            },
        )
        if column.name in IMAGE_URL_COLUMNS:
            # The Image Role itself is set in Tableau (its XML form is not documented); the field comment says how.
            desc = ET.SubElement(element, "desc")
            text = ET.SubElement(desc, "formatted-text")
            ET.SubElement(text, "run").text = _IMAGE_ROLE_HINT
    ET.indent(root, space="  ")
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def power_bi_pbids(target: WarehouseTarget, *, parquet_folder: str | None = None) -> bytes | None:
    """A Power BI data source file (PBIDS) for the warehouse, or None when there is no sensible one.

    PostgreSQL: the server and database (Power BI's navigator then lists the ``persona`` schema). DuckDB: the
    local folder of Parquet copies when ``parquet_folder`` is given, else None.
    """
    if target.dialect == "postgresql":
        server = f"{target.host or 'localhost'}:{target.port or 5432}"
        details: dict[str, object] = {
            "protocol": "postgresql",
            "address": {"server": server, "database": target.database or ""},
        }
    elif target.dialect == "duckdb" and parquet_folder:
        details = {"protocol": "folder", "address": {"path": parquet_folder}}
    else:
        return None
    document = {"version": "0.1", "connections": [{"details": details, "options": {}}]}
    return (json.dumps(document, indent=2) + "\n").encode("utf-8")


def bi_files(
    target: WarehouseTarget,
    tables: Sequence[sa.Table],
    *,
    logical_date: date | None = None,
    parquet_folder: str | None = None,
) -> list[BiFile]:
    """Every connection file for ``target`` (none when the warehouse is not supported)."""
    if not target.supported:
        return []
    files = [
        BiFile(f"tableau/{table.name}.tds", tableau_tds(target, table, logical_date=logical_date), TDS_CONTENT_TYPE)
        for table in tables
    ]
    pbids = power_bi_pbids(target, parquet_folder=parquet_folder)
    if pbids is not None:
        files.append(BiFile("powerbi/persona_pipeline.pbids", pbids, PBIDS_CONTENT_TYPE))
    return files


def write_bi_files(store: ObjectStore, settings: Settings, run: RunContext) -> list[str]:
    """Write the connection files under ``bi/`` and ``dt=D/bi/``; returns the keys written."""
    from persona_pipeline.publish import TABLES, define_tables

    schema = settings.warehouse.output_schema
    target = warehouse_target(settings.warehouse.url, schema)
    if not target.supported:
        log.info(
            "no Tableau/Power BI connection files for a %s warehouse; docs/bi.md explains how to connect",
            target.dialect,
        )
        return []
    defined = define_tables(sa.MetaData(), schema)
    tables = [defined[name] for name in TABLES]
    # Only a local store has a folder Power BI can open; S3 has no Power BI connector.
    parquet_folder = str(store.path_for("tables")) if isinstance(store, LocalObjectStore) else None
    metadata = {"run-id": run.run_id, "dt": run.logical_date.isoformat(), "warehouse": target.dialect}
    keys: list[str] = []
    for prefix, pinned in (("bi", None), (f"{run.partition}/bi", run.logical_date)):
        store.delete_prefix(prefix + "/")
        for item in bi_files(target, tables, logical_date=pinned, parquet_folder=parquet_folder):
            key = f"{prefix}/{item.name}"
            store.put_bytes(key, item.data, content_type=item.content_type, metadata=metadata)
            keys.append(key)
    return keys
