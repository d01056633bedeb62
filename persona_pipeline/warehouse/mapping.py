"""Source mapping: where the canonical customer, order and event fields live in the user's warehouse.

The default mapping matches the sample warehouse (``persona-pipeline seed``). A YAML file can rename tables
and columns; identifiers are validated so a mapping can never inject SQL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from persona_pipeline.exceptions import ConfigError

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$")

#: Canonical fields per source table and whether each is required.
CUSTOMER_FIELDS: dict[str, bool] = {
    "customer_id": True,
    "birth_date": False,
    "gender": False,
    "country": False,
    "region": False,
    "income_band": False,
    "occupation": False,
    "household_size": False,
    "signup_date": False,
    "marketing_consent": False,
    "profiling_consent": False,
}
ORDER_FIELDS: dict[str, bool] = {
    "customer_id": True,
    "ordered_at": True,
    "amount": True,
    "channel": False,
    "category": False,
    "status": False,
}
EVENT_FIELDS: dict[str, bool] = {
    "customer_id": True,
    "occurred_at": True,
    "event_type": False,
    "category": False,
    "device": False,
}


def check_identifier(value: str, where: str) -> str:
    """Return ``value`` if it is a plain SQL identifier, else raise a ConfigError naming ``where``."""
    if not isinstance(value, str) or not _IDENTIFIER.match(value):
        raise ConfigError(
            f"mapping {where}: {value!r} is not a plain SQL identifier (letters, digits, _ and $, "
            "starting with a letter or _, at most 63 characters)"
        )
    return value


@dataclass(frozen=True)
class TableMapping:
    """One source table and the columns holding each canonical field (``None`` = not available)."""

    table: str
    columns: dict[str, str | None]
    schema: str | None = None

    def column(self, canonical: str) -> str | None:
        return self.columns.get(canonical)


@dataclass(frozen=True)
class SourceMapping:
    """Where the pipeline reads customers, orders and events."""

    customers: TableMapping
    orders: TableMapping | None
    events: TableMapping | None
    completed_statuses: tuple[str, ...] = ("completed",)
    returned_statuses: tuple[str, ...] = ("returned",)
    max_categories: int = 24
    notes: tuple[str, ...] = field(default=())

    def missing_fields(self) -> list[str]:
        """Canonical optional fields this mapping does not provide (recorded with each run)."""
        missing = []
        for name, spec, mapping in (
            ("customers", CUSTOMER_FIELDS, self.customers),
            ("orders", ORDER_FIELDS, self.orders),
            ("events", EVENT_FIELDS, self.events),
        ):
            if mapping is None:
                missing.append(f"{name} (no table)")
                continue
            missing.extend(f"{name}.{canonical}" for canonical in spec if mapping.column(canonical) is None)
        return missing


def _identity(spec: dict[str, bool]) -> dict[str, str | None]:
    return {name: name for name in spec}


def default_mapping(schema: str | None = None) -> SourceMapping:
    """The mapping of the sample warehouse: tables customers, orders, events with canonical column names."""
    return SourceMapping(
        customers=TableMapping("customers", _identity(CUSTOMER_FIELDS), schema),
        orders=TableMapping("orders", _identity(ORDER_FIELDS), schema),
        events=TableMapping("events", _identity(EVENT_FIELDS), schema),
    )


def _table_from_yaml(name: str, raw: Any, spec: dict[str, bool], schema: str | None) -> TableMapping | None:
    if raw is None:
        if name == "customers":
            raise ConfigError("mapping: the customers table is required (add a 'customers:' section)")
        return None
    if not isinstance(raw, dict) or "table" not in raw:
        raise ConfigError(f"mapping {name}: expected a mapping with 'table' and 'columns' keys")
    table = check_identifier(raw["table"], f"{name}.table")
    table_schema = raw.get("schema", schema)
    if table_schema is not None:
        check_identifier(table_schema, f"{name}.schema")
    given = raw.get("columns") or {}
    unknown = sorted(set(given) - set(spec))
    if unknown:
        raise ConfigError(f"mapping {name}.columns: unknown canonical field(s) {unknown}; known: {sorted(spec)}")
    columns: dict[str, str | None] = {}
    for canonical, required in spec.items():
        column = given.get(canonical, canonical if canonical not in given else None)
        if column is None and required:
            raise ConfigError(f"mapping {name}.columns.{canonical} is required and cannot be null")
        columns[canonical] = None if column is None else check_identifier(column, f"{name}.columns.{canonical}")
    return TableMapping(table, columns, table_schema)


def load_mapping(path: str | Path | None, *, schema: str | None = None) -> SourceMapping:
    """Load a YAML source mapping, or the default one when ``path`` is None."""
    if path is None:
        return default_mapping(schema)
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"mapping file {path} does not exist") from None
    mapping = SourceMapping(
        customers=_table_from_yaml("customers", raw.get("customers"), CUSTOMER_FIELDS, schema)
        or default_mapping(schema).customers,
        orders=_table_from_yaml("orders", raw.get("orders"), ORDER_FIELDS, schema),
        events=_table_from_yaml("events", raw.get("events"), EVENT_FIELDS, schema),
    )
    statuses = raw.get("statuses") or {}
    return replace(
        mapping,
        completed_statuses=tuple(statuses.get("completed", mapping.completed_statuses)),
        returned_statuses=tuple(statuses.get("returned", mapping.returned_statuses)),
    )
