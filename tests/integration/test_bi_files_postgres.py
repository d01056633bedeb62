"""The PostgreSQL connection files against a real PostgreSQL: their server, database, schema and relations work."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from datetime import date, datetime
from pathlib import Path

import pandas as pd
import psycopg
import pytest
from sqlalchemy.engine import make_url

from persona_pipeline.bi_files import write_bi_files
from persona_pipeline.config import load_settings
from persona_pipeline.contracts import RunContext
from persona_pipeline.publish import TABLES, replace_partition
from persona_pipeline.storage import LocalObjectStore
from persona_pipeline.warehouse.engine import warehouse_engine

pytestmark = pytest.mark.integration

D = date(2026, 12, 1)
PASSWORD = "not-a-real-password-0000"


def _frames() -> dict[str, pd.DataFrame]:
    run = {
        "run_id": "pg-run",
        "status": "success",
        "started_at": datetime(2026, 12, 1, 2, 0),
        "finished_at": datetime(2026, 12, 1, 2, 5),
        "rows_extracted": 10,
        "image_cost_usd": 0.0,
    }
    persona = {
        "persona_id": "p-rfm-champions",
        "segment_id": "rfm-champions",
        "name": "Champion",
        "size": 120,
        "share": 0.3,
        "image_url": "https://cdn.example.com/dt=2026-12-01/images/p-rfm-champions/portrait-1.png",
    }
    return {"persona_runs": pd.DataFrame([run]), "personas": pd.DataFrame([persona])}


def test_postgres_files_open_the_published_tables(pg_database: str, tmp_path: Path) -> None:
    url = make_url(pg_database).set(password=PASSWORD)
    settings = load_settings(environ={}, overrides={"warehouse.url": url.render_as_string(hide_password=False)})
    with warehouse_engine(pg_database) as engine:
        replace_partition(engine, "persona", D, _frames())

    store = LocalObjectStore(tmp_path / "store", "pp")
    keys = write_bi_files(store, settings, RunContext(D, "pg-run", settings.config_hash()))
    assert "bi/powerbi/persona_pipeline.pbids" in keys
    for key in keys:
        assert PASSWORD not in store.get_bytes(key).decode("utf-8"), key

    pbids = json.loads(store.get_bytes("bi/powerbi/persona_pipeline.pbids"))
    address = pbids["connections"][0]["details"]["address"]
    assert pbids["connections"][0]["details"]["protocol"] == "postgresql"
    assert address == {"server": f"127.0.0.1:{url.port}", "database": url.database}

    for prefix in ("bi", "dt=2026-12-01/bi"):
        for name in TABLES:
            root = ET.fromstring(store.get_bytes(f"{prefix}/tableau/{name}.tds"))
            conn = root.find("./connection/named-connections/named-connection/connection")
            relation = root.find("./connection/relation")
            assert conn is not None and relation is not None
            assert conn.attrib["class"] == "postgres"
            # Connect with exactly what the file says (the test server trusts local users, no password needed).
            dsn = (
                f"host={conn.attrib['server']} port={conn.attrib['port']} dbname={conn.attrib['dbname']} user=postgres"
            )
            if relation.get("type") == "text":
                sql = str(relation.text)
            else:
                match = re.fullmatch(r"\[(.+)\]\.\[(.+)\]", relation.attrib["table"])
                assert match is not None
                assert match.group(1) == conn.attrib["schema"]
                sql = f'SELECT * FROM "{match.group(1)}"."{match.group(2)}"'
            with psycopg.connect(dsn) as pg, pg.cursor() as cursor:
                cursor.execute(sql)
                rows = cursor.fetchall()
                returned = [column.name for column in cursor.description or ()]
            declared = [c.attrib["name"].strip("[]") for c in root.findall("./column")]
            assert returned == declared, f"{prefix}/{name}"
            if name in ("personas", "persona_runs"):
                assert len(rows) == 1 and rows[0][0] == D, f"{prefix}/{name}"
            if name == "personas":
                image_url = rows[0][declared.index("image_url")]
                assert image_url.endswith("portrait-1.png")
