"""Validate, segment and profile work part by part: small parts give the same run as one big part."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from persona_pipeline import stages
from persona_pipeline.storage import read_json, read_parquet

D = date(2026, 12, 1)


def _run_to_profiles(settings: Any) -> stages.StageContext:
    ctx = stages.make_context(settings, D, "parts", progress=lambda _: None)
    stages.extract(ctx)
    stages.validate(ctx)
    stages.segment(ctx)
    stages.profile(ctx)
    return ctx


def _assignments(ctx: stages.StageContext) -> pd.DataFrame:
    keys = read_json(ctx.store, ctx.key("segments.json"))["assignment_parts"]
    frame = pd.concat([read_parquet(ctx.store, k).to_pandas() for k in keys], ignore_index=True)
    return frame.astype({"customer_key": "string", "segment_id": "string"})


@pytest.mark.parametrize("method", ["rfm", "kmeans"])
def test_small_parts_give_the_same_run_as_one_part(
    method: str, sample_warehouse: Path, settings_factory: Any, tmp_path: Path
) -> None:
    one = settings_factory(sample_warehouse, **{"segmentation.method": method, "storage.root": str(tmp_path / "one")})
    many = settings_factory(
        sample_warehouse,
        **{
            "segmentation.method": method,
            "storage.root": str(tmp_path / "many"),
            "warehouse.chunk_rows": 1_000,
            "validation.batch_rows": 1_000,
        },
    )
    whole, parts = _run_to_profiles(one), _run_to_profiles(many)

    valid_parts = read_json(parts.store, parts.key("validation.json"))["valid_parts"]
    assert len(valid_parts) >= 3 and len(read_json(whole.store, whole.key("validation.json"))["valid_parts"]) == 1
    for name in ("validation.json", "segments.json", "profiles.json"):
        a, b = read_json(whole.store, whole.key(name)), read_json(parts.store, parts.key(name))
        for volatile in ("valid_parts", "assignment_parts"):
            a.pop(volatile, None)
            b.pop(volatile, None)
        assert a == b, name
    # Each assignment part lines up row for row with its valid part.
    for valid_key, assigned_key in zip(
        valid_parts, read_json(parts.store, parts.key("segments.json"))["assignment_parts"], strict=True
    ):
        valid_keys = read_parquet(parts.store, valid_key, columns=["customer_key"]).column("customer_key")
        assigned_keys = read_parquet(parts.store, assigned_key, columns=["customer_key"]).column("customer_key")
        assert valid_keys.equals(assigned_keys)
    by_key = _assignments(whole).merge(_assignments(parts), on="customer_key", suffixes=("_one", "_many"))
    assert len(by_key) == len(_assignments(whole))
    assert (by_key["segment_id_one"].fillna("-") == by_key["segment_id_many"].fillna("-")).all()
