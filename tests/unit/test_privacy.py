"""Published customer keys: hashed with a secret salt when configured; erased customers leave membership."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from persona_pipeline import stages
from persona_pipeline.config import PrivacySettings
from persona_pipeline.exceptions import ConfigError
from persona_pipeline.privacy import hash_key, publishable_keys
from persona_pipeline.publish import read_partition
from persona_pipeline.warehouse.engine import warehouse_engine

SALT = "an-obviously-fake-test-salt-0123456789"


def test_hashed_keys_are_stable_salted_and_joinable() -> None:
    keys = pd.Series(["1", "2", "3"])
    settings = PrivacySettings(membership_keys="hashed")
    hashed = publishable_keys(keys, settings, {"PERSONA_MEMBERSHIP_SALT": SALT})
    assert hashed is not None
    assert list(hashed) == [hash_key(k, SALT.encode()) for k in keys]  # whoever holds the salt can join
    other = publishable_keys(keys, settings, {"PERSONA_MEMBERSHIP_SALT": SALT + "x"})
    assert other is not None and not set(hashed) & set(other)
    assert not set(hashed) & set(keys)


@pytest.mark.parametrize("salt", ["", "short"])
def test_hashing_without_a_real_salt_is_refused(salt: str) -> None:
    with pytest.raises(ConfigError, match="PERSONA_MEMBERSHIP_SALT"):
        publishable_keys(pd.Series(["1"]), PrivacySettings(membership_keys="hashed"), {"PERSONA_MEMBERSHIP_SALT": salt})


def test_omitted_keys() -> None:
    assert publishable_keys(pd.Series(["1"]), PrivacySettings(membership_keys="omit"), {}) is None


def test_erased_customer_leaves_the_membership_table(
    warehouse_copy: Path,
    settings_factory,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    monkeypatch.setenv("PERSONA_MEMBERSHIP_SALT", SALT)
    settings = settings_factory(warehouse_copy, **{"privacy.membership_keys": "hashed"})
    stages.run_all(stages.make_context(settings, date(2026, 12, 1), "day-1", progress=lambda _: None))
    with warehouse_engine(settings.warehouse.url) as engine:
        day1 = read_partition(engine, "persona", "segment_membership", date(2026, 12, 1))
    con = duckdb.connect(str(warehouse_copy))
    victim = next(
        str(k)
        for (k,) in con.execute("SELECT customer_id FROM customers ORDER BY customer_id").fetchall()
        if hash_key(str(k), SALT.encode()) in set(day1["customer_key"])
    )
    con.execute("DELETE FROM orders WHERE customer_id = ?", [int(victim)])
    con.execute("DELETE FROM events WHERE customer_id = ?", [int(victim)])
    con.execute("DELETE FROM customers WHERE customer_id = ?", [int(victim)])
    con.close()
    stages.run_all(stages.make_context(settings, date(2026, 12, 2), "day-2", progress=lambda _: None))
    con = duckdb.connect(str(warehouse_copy), read_only=True)
    keys = {k for (k,) in con.execute("SELECT customer_key FROM persona.segment_membership").fetchall()}
    dates = {str(d) for (d,) in con.execute("SELECT DISTINCT dt FROM persona.segment_membership").fetchall()}
    con.close()
    assert dates == {"2026-12-02"}
    assert hash_key(victim, SALT.encode()) not in keys
    assert victim not in keys and len(keys) > 1_000
