"""Stable identity across nightly runs: new and dissolved segments, matching distances, drift status "new"."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

from persona_pipeline import stages
from persona_pipeline.contracts import Persona
from persona_pipeline.storage import read_json

D = date(2026, 12, 1)


def run_until_personas(settings: object, day: date) -> stages.StageContext:
    ctx = stages.make_context(settings, day, f"run-{day}", progress=lambda _: None)  # type: ignore[arg-type]
    for stage in (stages.extract, stages.validate, stages.segment, stages.profile):
        stage(ctx)
    return ctx


def test_new_and_dissolved_segments_across_runs(warehouse_copy: Path, settings_factory) -> None:  # type: ignore[no-untyped-def]
    rfm = settings_factory(warehouse_copy, **{"segmentation.method": "rfm"})
    kmeans = rfm.with_overrides({"segmentation.method": "kmeans"})

    # Day 1 (first run): every segment is new, nothing dissolved, no distances to report.
    day1 = run_until_personas(rfm, D)
    seg1 = read_json(day1.store, day1.key("segments.json"))
    assert seg1["previous_partition"] is None
    assert sorted(seg1["new_segments"]) == sorted(seg1["labels"]) and seg1["dissolved_segments"] == []
    assert seg1["match_distances"] == {}
    profiles1 = read_json(day1.store, day1.key("profiles.json"))["profiles"]
    assert {p["drift"]["status"] for p in profiles1} == {"new"}

    # Day 2 switches to k-means: all of yesterday's RFM segments dissolve, all clusters are new.
    day2 = run_until_personas(kmeans, D + timedelta(days=1))
    seg2 = read_json(day2.store, day2.key("segments.json"))
    assert seg2["previous_partition"] == "dt=2026-12-01"
    assert sorted(seg2["dissolved_segments"]) == sorted(seg1["labels"])
    assert sorted(seg2["new_segments"]) == sorted(seg2["labels"])
    profiles2 = read_json(day2.store, day2.key("profiles.json"))["profiles"]
    assert {p["drift"]["status"] for p in profiles2} == {"new"}
    assert all(p["drift"]["previous_size"] is None for p in profiles2)

    # Day 3, k-means again on (nearly) the same customers: every cluster keeps its id, with a small distance.
    day3 = run_until_personas(kmeans, D + timedelta(days=2))
    seg3 = read_json(day3.store, day3.key("segments.json"))
    assert seg3["new_segments"] == [] and seg3["dissolved_segments"] == []
    assert set(seg3["match_distances"]) == set(seg3["labels"])
    assert all(d < 1.0 for d in seg3["match_distances"].values())
    profiles3 = {p["segment_id"]: p for p in read_json(day3.store, day3.key("profiles.json"))["profiles"]}
    assert {p["drift"]["status"] for p in profiles3.values()} == {"continuing"}

    # Persona ids and names carry over from day 2 to day 3.
    stages.build_personas(day2)
    stages.build_personas(day3)
    names2 = {p.persona_id: p.name for p in _personas(day2)}
    names3 = {p.persona_id: p.name for p in _personas(day3)}
    assert names2 == names3


def _personas(ctx: stages.StageContext) -> list[Persona]:
    return [Persona.from_dict(read_json(ctx.store, k)) for k in ctx.store.list_keys(ctx.key("personas") + "/")]
