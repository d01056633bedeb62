"""Tableau .tds and Power BI .pbids connection files, and docs/bi.md staying in step with the tables."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pytest
import sqlalchemy as sa

from persona_pipeline import stages
from persona_pipeline.bi_files import (
    DUCKDB_ODBC_DRIVER,
    WarehouseTarget,
    bi_files,
    power_bi_pbids,
    tableau_tds,
    warehouse_target,
    write_bi_files,
)
from persona_pipeline.config import Settings, load_settings
from persona_pipeline.contracts import RunContext
from persona_pipeline.publish import TABLES, define_tables
from persona_pipeline.storage import LocalObjectStore

D = date(2026, 12, 1)
REPO = Path(__file__).resolve().parents[2]
PASSWORD = "Sup3r-Secret-Pa55"
PG_URL = f"postgresql+psycopg://etl_writer:{PASSWORD}@warehouse.example.com:6543/analytics?sslmode=require"


def tables() -> list[sa.Table]:
    defined = define_tables(sa.MetaData(), "persona")
    return [defined[name] for name in TABLES]


def parse(data: bytes) -> ET.Element:
    return ET.fromstring(data)


def inner_connection(root: ET.Element) -> ET.Element:
    found = root.find("./connection/named-connections/named-connection/connection")
    assert found is not None
    return found


# -- parsing warehouse.url -------------------------------------------------------------------------------------


def test_postgres_target_keeps_location_and_drops_credentials() -> None:
    target = warehouse_target(PG_URL + f"&password={PASSWORD}", "persona")
    assert target == WarehouseTarget(
        "postgresql", "persona", host="warehouse.example.com", port=6543, database="analytics", sslmode="require"
    )
    assert PASSWORD not in repr(target) and "etl_writer" not in repr(target)


def test_postgres_target_defaults_port_and_ignores_socket_directories() -> None:
    target = warehouse_target("postgresql+psycopg:///analytics?host=/var/run/postgresql", "persona")
    assert (target.host, target.port, target.database) == ("localhost", 5432, "analytics")


def test_duckdb_target_is_the_absolute_database_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    target = warehouse_target("duckdb:///data/warehouse.duckdb", "persona")
    assert target.dialect == "duckdb" and target.supported
    assert target.database == str(tmp_path / "data" / "warehouse.duckdb")
    assert not warehouse_target("duckdb:///:memory:", "persona").supported


def test_other_warehouses_get_no_files() -> None:
    target = warehouse_target("sqlite:///x.db", "persona")
    assert not target.supported
    assert bi_files(target, tables()) == []
    assert power_bi_pbids(target) is None
    with pytest.raises(ValueError, match="sqlite"):
        tableau_tds(target, tables()[0])


# -- Tableau -------------------------------------------------------------------------------------------------


def test_postgres_tds_is_a_native_connection_to_the_latest_view() -> None:
    target = warehouse_target(PG_URL, "persona")
    personas = define_tables(sa.MetaData(), "persona")["personas"]
    root = parse(tableau_tds(target, personas))
    assert root.tag == "datasource" and root.get("version") == "18.1"
    assert root.find("./connection").get("class") == "federated"  # type: ignore[union-attr]
    conn = inner_connection(root)
    assert conn.attrib["class"] == "postgres"
    assert conn.attrib["server"] == "warehouse.example.com"
    assert conn.attrib["port"] == "6543"
    assert conn.attrib["dbname"] == "analytics"
    assert conn.attrib["schema"] == "persona"
    assert conn.attrib["sslmode"] == "require"
    assert "password" not in conn.attrib and "username" not in conn.attrib
    named = root.find("./connection/named-connections/named-connection")
    relation = root.find("./connection/relation")
    assert named is not None and relation is not None
    assert relation.attrib == {
        "connection": named.attrib["name"],
        "name": "latest_personas",
        "table": "[persona].[latest_personas]",
        "type": "table",
    }


def test_tds_declares_every_column_with_a_tableau_type() -> None:
    target = warehouse_target(PG_URL, "persona")
    for table in tables():
        root = parse(tableau_tds(target, table))
        columns = {c.attrib["name"]: c.attrib for c in root.findall("./column")}
        assert list(columns) == [f"[{c.name}]" for c in table.columns], table.name
        assert columns["[dt]"]["datatype"] == "date"
    runs = {c.attrib["name"]: c.attrib for c in parse(tableau_tds(target, tables()[0])).findall("./column")}
    assert runs["[image_cost_usd]"] == {
        "caption": "Image Cost USD",
        "datatype": "real",
        "name": "[image_cost_usd]",
        "role": "measure",
        "type": "quantitative",
    }
    assert runs["[rows_extracted]"]["datatype"] == "integer"
    assert runs["[started_at]"]["datatype"] == "datetime"
    assert runs["[run_id]"]["role"] == "dimension"


@pytest.mark.parametrize("table_name", ["personas", "persona_images"])
def test_image_url_field_is_named_image_and_explains_the_image_role(table_name: str) -> None:
    table = define_tables(sa.MetaData(), "persona")[table_name]
    root = parse(tableau_tds(warehouse_target(PG_URL, "persona"), table))
    image = next(c for c in root.findall("./column") if c.get("name") == "[image_url]")
    assert image.get("caption") == "Image" and image.get("datatype") == "string" and image.get("role") == "dimension"
    comment = "".join(image.itertext())
    assert "Image Role" in comment and "URL" in comment


def test_pinned_tds_selects_one_date_of_the_base_table() -> None:
    target = warehouse_target(PG_URL, "persona")
    personas = define_tables(sa.MetaData(), "persona")["personas"]
    root = parse(tableau_tds(target, personas, logical_date=D))
    relation = root.find("./connection/relation")
    assert relation is not None and relation.get("type") == "text"
    assert relation.text == 'SELECT * FROM "persona"."personas" WHERE dt = DATE \'2026-12-01\''
    assert "2026-12-01" in (root.get("formatted-name") or "")


def test_duckdb_tds_uses_the_odbc_driver_read_only(tmp_path: Path) -> None:
    target = warehouse_target(f"duckdb:///{tmp_path}/w.duckdb", "persona")
    conn = inner_connection(parse(tableau_tds(target, tables()[0])))
    assert conn.attrib["class"] == "genericodbc"
    assert conn.attrib["odbc-driver"] == DUCKDB_ODBC_DRIVER
    assert conn.attrib["dbname"] == str(tmp_path / "w.duckdb")
    assert "READ_ONLY" in conn.attrib["odbc-connect-string-extras"]


def test_hostile_names_are_escaped_in_the_xml() -> None:
    target = WarehouseTarget("postgresql", "persona", host="h'\"<x>&", port=5432, database="d<b>")
    root = parse(tableau_tds(target, tables()[0]))  # parses: nothing broke out of an attribute
    assert inner_connection(root).attrib["server"] == "h'\"<x>&"


# -- Power BI ------------------------------------------------------------------------------------------------


def test_postgres_pbids_names_server_and_database() -> None:
    data = power_bi_pbids(warehouse_target(PG_URL, "persona"))
    assert data is not None
    document = json.loads(data)
    assert document["version"] == "0.1"
    assert document["connections"] == [
        {
            "details": {
                "protocol": "postgresql",
                "address": {"server": "warehouse.example.com:6543", "database": "analytics"},
            },
            "options": {},
        }
    ]


def test_duckdb_pbids_opens_the_local_parquet_folder_or_nothing(tmp_path: Path) -> None:
    target = warehouse_target(f"duckdb:///{tmp_path}/w.duckdb", "persona")
    assert power_bi_pbids(target) is None
    data = power_bi_pbids(target, parquet_folder="/srv/store/tables")
    assert data is not None
    details = json.loads(data)["connections"][0]["details"]
    assert details == {"protocol": "folder", "address": {"path": "/srv/store/tables"}}


# -- no credentials anywhere ---------------------------------------------------------------------------------


def test_no_file_contains_a_password_or_the_pipeline_user(tmp_path: Path) -> None:
    settings = load_settings(
        environ={},
        overrides={
            "warehouse.url": PG_URL + f"&password={PASSWORD}",
            "storage.root": str(tmp_path / "store"),
        },
    )
    store = LocalObjectStore(tmp_path / "store", "pp")
    run = RunContext(D, "run-1", settings.config_hash())
    keys = write_bi_files(store, settings, run)
    assert len(keys) == 2 * (len(TABLES) + 1)
    for key in keys:
        text = store.get_bytes(key).decode("utf-8")
        assert PASSWORD not in text, key
        assert "etl_writer" not in text, key
        assert not re.search(r"password\s*=|\"password\"|pwd=", text, re.IGNORECASE), key


# -- written by the pipeline ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class LocalRun:
    settings: Settings
    store: LocalObjectStore
    result: dict[str, Any]
    warehouse: Path


@pytest.fixture(scope="module")
def local_run(sample_warehouse: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRun]:
    root = tmp_path_factory.mktemp("bi-run")
    warehouse = root / "warehouse.duckdb"
    warehouse.write_bytes(sample_warehouse.read_bytes())
    settings = load_settings(
        environ={},
        overrides={
            "warehouse.url": f"duckdb:///{warehouse}",
            "storage.root": str(root / "store"),
            "segmentation.min_segment_size": 30,
        },
    )
    ctx = stages.make_context(settings, D, "bi-run", progress=lambda _: None)
    result = stages.run_all(ctx)
    assert isinstance(ctx.store, LocalObjectStore)
    yield LocalRun(settings, ctx.store, result, warehouse)


def test_publish_writes_latest_and_pinned_files(local_run: LocalRun) -> None:
    expected = [f"tableau/{name}.tds" for name in TABLES] + ["powerbi/persona_pipeline.pbids"]
    assert sorted(local_run.store.list_keys("bi/")) == sorted(f"bi/{name}" for name in expected)
    assert sorted(local_run.store.list_keys("dt=2026-12-01/bi/")) == sorted(f"dt=2026-12-01/bi/{n}" for n in expected)
    assert sorted(local_run.result["bi_files"]) == sorted(
        [f"bi/{n}" for n in expected] + [f"dt=2026-12-01/bi/{n}" for n in expected]
    )
    head = local_run.store.head("bi/tableau/personas.tds")
    assert head is not None and head.content_type.startswith("application/xml")
    assert head.metadata == {"run-id": "bi-run", "dt": "2026-12-01", "warehouse": "duckdb"}


def _relation_sql(root: ET.Element) -> str:
    relation = root.find("./connection/relation")
    assert relation is not None
    if relation.get("type") == "text":
        return str(relation.text)
    schema, view = re.fullmatch(r"\[(.+)\]\.\[(.+)\]", relation.attrib["table"]).groups()  # type: ignore[union-attr]
    return f'SELECT * FROM "{schema}"."{view}"'


@pytest.mark.parametrize("prefix", ["bi", "dt=2026-12-01/bi"])
def test_every_tds_relation_resolves_in_the_warehouse_with_the_declared_columns(
    local_run: LocalRun, prefix: str
) -> None:
    con = duckdb.connect(str(local_run.warehouse), read_only=True)
    try:
        for name in TABLES:
            root = parse(local_run.store.get_bytes(f"{prefix}/tableau/{name}.tds"))
            assert inner_connection(root).attrib["dbname"] == str(local_run.warehouse)
            cursor = con.execute(_relation_sql(root))
            returned = [d[0] for d in cursor.description]
            rows = cursor.fetchall()
            declared = [c.attrib["name"].strip("[]") for c in root.findall("./column")]
            assert returned == declared, name
            if name in ("personas", "persona_images", "persona_runs"):
                assert rows and {row[0] for row in rows} == {D}, name
    finally:
        con.close()


def test_duckdb_pbids_points_at_the_parquet_copies(local_run: LocalRun) -> None:
    details = json.loads(local_run.store.get_bytes("bi/powerbi/persona_pipeline.pbids"))["connections"][0]["details"]
    folder = Path(details["address"]["path"])
    assert details["protocol"] == "folder" and folder.is_dir()
    for name in TABLES:
        assert (folder / name / "dt=2026-12-01" / "part-00000.parquet").is_file()


def test_parquet_copies_read_as_a_hive_partitioned_dataset_with_the_table_columns(local_run: LocalRun) -> None:
    defined = define_tables(sa.MetaData(), "persona")
    folder = local_run.store.path_for("tables")
    for name in ("personas", "persona_images", "persona_runs", "segment_traits"):
        relation = duckdb.sql(f"SELECT * FROM read_parquet('{folder}/{name}/*/*.parquet', hive_partitioning = true)")
        assert relation is not None
        assert set(relation.columns) == {c.name for c in defined[name].columns}, name
        assert {row[0] for row in relation.select("dt").fetchall()} == {D}, name


def test_rerun_replaces_the_files(local_run: LocalRun) -> None:
    ctx = stages.make_context(local_run.settings, D, "bi-run-2", store=local_run.store, progress=lambda _: None)
    keys = write_bi_files(ctx.store, ctx.settings, ctx.run)
    assert len(keys) == len(set(keys)) == 2 * (len(TABLES) + 1)
    assert len(local_run.store.list_keys("bi/")) == len(TABLES) + 1
    head = local_run.store.head("bi/tableau/personas.tds")
    assert head is not None and head.metadata["run-id"] == "bi-run-2"


# -- docs/bi.md ----------------------------------------------------------------------------------------------


def _documented_columns() -> dict[str, list[str]]:
    text = (REPO / "docs" / "bi.md").read_text(encoding="utf-8")
    documented: dict[str, list[str]] = {}
    current: str | None = None
    for line in text.splitlines():
        heading = re.fullmatch(r"###\s+`(\w+)`\s*", line)
        if heading:
            current = heading.group(1)
            documented[current] = []
            continue
        if line.startswith("## "):
            current = None
        row = re.match(r"\|\s*`(\w+)`\s*\|", line)
        if current is not None and row:
            documented[current].append(row.group(1))
    return documented


def test_docs_document_every_output_column_in_order() -> None:
    documented = _documented_columns()
    for name, table in define_tables(sa.MetaData(), "persona").items():
        columns = [c.name for c in table.columns]
        assert documented.get(name) == columns, (
            f"docs/bi.md must document table {name} column by column, in table order: expected {columns}, "
            f"found {documented.get(name)}"
        )


def test_docs_explain_images_views_and_the_parquet_layout() -> None:
    text = (REPO / "docs" / "bi.md").read_text(encoding="utf-8")
    for needle in ("Image Role", "Image URL", "Data category", "latest_personas", "tables/<table>/dt=", ".pbids"):
        assert needle in text, needle
