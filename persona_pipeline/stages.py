"""The run's stages as plain functions over the object store: what Airflow tasks and the CLI call.

Each stage reads its inputs from, and writes its outputs to, the run's partition ``dt=D/`` in the object store
and returns a small JSON-able summary (what travels through XCom). Workers therefore share no disk, and any
stage can be rerun alone: it replaces its own outputs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import pandas as pd

from persona_pipeline.config import Settings
from persona_pipeline.contracts import (
    ImageRecord,
    Persona,
    RowAccounting,
    RunContext,
    SegmentProfile,
    to_jsonable,
)
from persona_pipeline.storage import (
    LocalObjectStore,
    ObjectStore,
    open_store,
    read_json,
    read_parquet,
    write_json,
    write_parquet,
)

log = logging.getLogger(__name__)
Progress = Callable[[str], None]


@dataclass(frozen=True)
class StageContext:
    """Everything a stage needs: settings, the run's identity, the object store and a progress callback."""

    settings: Settings
    run: RunContext
    store: ObjectStore
    progress: Progress

    def key(self, *parts: str) -> str:
        return "/".join((self.run.partition, *parts))


def make_context(
    settings: Settings,
    logical_date: date,
    run_id: str | None = None,
    *,
    store: ObjectStore | None = None,
    progress: Progress | None = None,
) -> StageContext:
    run = RunContext(
        logical_date=logical_date,
        run_id=run_id or f"manual__{logical_date.isoformat()}",
        config_hash=settings.config_hash(),
    )
    return StageContext(settings, run, store or open_store(settings.storage), progress or log.info)


def previous_partition(store: ObjectStore, logical_date: date, marker: str = "profiles.json") -> str | None:
    """The newest partition before ``logical_date`` that completed the stage writing ``marker``."""
    candidates = []
    for key in store.list_keys("dt="):
        head, _, rest = key.partition("/")
        if rest == marker:
            try:
                day = date.fromisoformat(head.removeprefix("dt="))
            except ValueError:
                continue
            if day < logical_date:
                candidates.append((day, head))
    return max(candidates)[1] if candidates else None


# -- stages ---------------------------------------------------------------------------------------------------


def extract(ctx: StageContext) -> dict[str, Any]:
    """Compute per-customer features in the warehouse and write them as Parquet parts."""
    from persona_pipeline.warehouse.engine import warehouse_engine
    from persona_pipeline.warehouse.features import count_null_keys, frame_to_arrow, iter_features
    from persona_pipeline.warehouse.mapping import load_mapping

    started = datetime.now(UTC).replace(tzinfo=None)
    t0 = time.perf_counter()
    mapping = load_mapping(ctx.settings.warehouse.mapping, schema=ctx.settings.warehouse.source_schema)
    ctx.store.delete_prefix(ctx.key("features") + "/")
    rows, parts = 0, []
    with warehouse_engine(
        ctx.settings.warehouse.url, duckdb_memory_limit=ctx.settings.warehouse.duckdb_memory_limit
    ) as engine:
        vocabulary, chunks = iter_features(
            engine, mapping, ctx.run.logical_date, chunk_rows=ctx.settings.warehouse.chunk_rows
        )
        for chunk in chunks:
            key = ctx.key("features", f"part-{chunk.index:05d}.parquet")
            write_parquet(ctx.store, key, frame_to_arrow(chunk.frame))
            rows += len(chunk.frame)
            parts.append(key)
            ctx.progress(f"extract: {rows:,} customers so far ({len(parts)} chunk(s))")
    with warehouse_engine(
        ctx.settings.warehouse.url, duckdb_memory_limit=ctx.settings.warehouse.duckdb_memory_limit
    ) as engine:
        null_keys = count_null_keys(engine, mapping)
    summary = {
        "rows": rows,
        "null_keys": null_keys,
        "parts": parts,
        "vocabulary": to_jsonable(vocabulary),
        "missing_fields": mapping.missing_fields(),
        "started_at": started.isoformat(),
        "seconds": round(time.perf_counter() - t0, 3),
    }
    write_json(ctx.store, ctx.key("extract.json"), summary)
    ctx.progress(f"extract: {rows:,} customers as of {ctx.run.logical_date} in {summary['seconds']}s")
    return {"rows": rows, "parts": len(parts)}


def _to_frame(tables: list[Any]) -> pd.DataFrame:
    """Arrow tables (one schema, columns may be missing in some) as one pandas frame."""
    import pyarrow as pa

    return pa.concat_tables(tables, promote_options="permissive").to_pandas() if tables else pd.DataFrame()


def _read_parts(ctx: StageContext, parts: list[str], columns: list[str] | None = None) -> pd.DataFrame:
    """The rows of ``parts`` as one frame (only ``columns``, where given and present)."""
    return _to_frame([read_parquet(ctx.store, key, columns=columns) for key in parts])


def _batches(ctx: StageContext, parts: list[str], batch_rows: int) -> Iterator[pd.DataFrame]:
    """Consecutive parts joined into frames of at least ``batch_rows`` rows (the last may be smaller)."""
    pending: list[Any] = []
    rows = 0
    for key in parts:
        table = read_parquet(ctx.store, key)
        pending.append(table)
        rows += table.num_rows
        if rows >= batch_rows:
            yield _to_frame(pending)
            pending, rows = [], 0
    if pending:
        yield _to_frame(pending)


def valid_parts(ctx: StageContext) -> list[str]:
    """Keys of the valid rows' Parquet parts, in table order (what segment, profile and publish read)."""
    return list(read_json(ctx.store, ctx.key("validation.json"))["valid_parts"])


def validate(ctx: StageContext) -> dict[str, Any]:
    """Run the GX suites part by part; write valid rows (in parts), quarantined rows and the accounting."""
    import pyarrow as pa

    from persona_pipeline.validation import DATASET_COLUMNS, FeatureValidator

    extract_summary = read_json(ctx.store, ctx.key("extract.json"))
    parts = list(extract_summary["parts"])
    previous = previous_partition(ctx.store, ctx.run.logical_date, "validation.json")
    previous_rows = read_json(ctx.store, f"{previous}/validation.json")["accounting"]["extracted"] if previous else None
    null_keys = int(extract_summary.get("null_keys", 0))
    validator = FeatureValidator(
        ctx.settings.validation, extracted=int(extract_summary["rows"]), previous_rows=previous_rows
    )
    # Dataset rules (row count, unique keys, freshness) need every row, but only three columns of it.
    validator.check_dataset(_read_parts(ctx, parts, columns=[*DATASET_COLUMNS, "profiling_consent"]))
    ctx.store.delete_prefix(ctx.key("valid") + "/")
    written: list[str] = []
    seen = 0
    for batch in _batches(ctx, parts, ctx.settings.validation.batch_rows):
        valid = validator.validate_batch(batch)
        key = ctx.key("valid", f"part-{len(written):05d}.parquet")
        write_parquet(ctx.store, key, pa.Table.from_pandas(valid, preserve_index=False))
        written.append(key)
        seen += len(batch)
        ctx.progress(f"validate: {seen:,} of {int(extract_summary['rows']):,} customers checked")
    outcome = validator.finish(data_docs_run=ctx.run.run_id)
    quarantine = outcome.quarantine
    accounting = outcome.accounting
    rule_failures = dict(outcome.rule_failures)
    if null_keys:
        # Keyless customer rows never reach the feature table; they are extracted and quarantined all the same,
        # so the accounting still covers every source row.
        keyless = pd.DataFrame(
            {
                "source": "customers",
                "customer_key": pd.Series([None] * null_keys, dtype="string"),
                "rule": "expect_column_values_to_not_be_null(customer_key)",
                "column": "customer_key",
                "value": pd.Series([None] * null_keys, dtype="string"),
            }
        )
        quarantine = pd.concat([quarantine, keyless], ignore_index=True)
        a = accounting
        accounting = RowAccounting(a.extracted + null_keys, a.valid, a.quarantined + null_keys, a.excluded)
        rule = "expect_column_values_to_not_be_null(customer_key)"
        rule_failures[rule] = rule_failures.get(rule, 0) + null_keys
    write_parquet(ctx.store, ctx.key("quarantine.parquet"), pa.Table.from_pandas(quarantine, preserve_index=False))
    write_json(ctx.store, ctx.key("validation", "gx_result.json"), outcome.gx_result)
    ctx.store.delete_prefix(ctx.key("validation", "data_docs") + "/")  # a rerun replaces the whole site
    for path, data in outcome.data_docs.items():
        content_type = "text/html; charset=utf-8" if path.endswith(".html") else None
        ctx.store.put_bytes(ctx.key("validation", "data_docs", path), data, content_type=content_type)
    summary = {"accounting": to_jsonable(accounting), "rule_failures": rule_failures, "valid_parts": written}
    write_json(ctx.store, ctx.key("validation.json"), summary)
    a = accounting
    if null_keys:
        ctx.progress(f"validate: {null_keys:,} customer row(s) without a key were quarantined at the source")
    ctx.progress(
        f"validate: {a.extracted:,} extracted = {a.valid:,} valid + {a.quarantined:,} quarantined "
        f"+ {a.excluded:,} excluded (no consent)"
    )
    return {"accounting": summary["accounting"], "rule_failures": rule_failures}


def segment(ctx: StageContext) -> dict[str, Any]:
    """Segment valid customers and enforce the minimum segment size.

    Reads only the columns the method needs from every valid part, and writes the assignments as parts aligned
    row for row with the valid parts (``assignments/part-N`` holds the segment of each row of ``valid/part-N``;
    null where the size rule suppressed the customer).
    """
    import pyarrow as pa

    from persona_pipeline.segmentation import columns_needed, identity_changes, segment_rows

    parts = valid_parts(ctx)
    wanted = columns_needed(ctx.settings.segmentation)
    features = _read_parts(ctx, parts, columns=wanted)
    if set(wanted) - set(features.columns):
        # A rule naming a feature that was not extracted gets an error listing every extracted column.
        features = _read_parts(ctx, parts)
    previous = previous_partition(ctx.store, ctx.run.logical_date, "segments.json")
    previous_summary = read_json(ctx.store, f"{previous}/segments.json") if previous else {}
    previous_centroids = previous_summary.get("raw_centroids") if previous else None
    rows = segment_rows(features, ctx.settings.segmentation, previous_raw_centroids=previous_centroids)
    del features
    changes = identity_changes(previous_summary.get("labels") if previous else None, rows.labels)
    ctx.store.delete_prefix(ctx.key("assignments") + "/")
    offset = 0
    written = []
    ids = pa.array(rows.segment_ids)  # dictionary-encoded; suppressed customers are null
    for index, key in enumerate(parts):
        keys = read_parquet(ctx.store, key, columns=["customer_key"]).column("customer_key")
        table = pa.table({"customer_key": keys, "segment_id": ids.slice(offset, len(keys))})
        offset += len(keys)
        target = ctx.key("assignments", f"part-{index:05d}.parquet")
        write_parquet(ctx.store, target, table)
        written.append(target)
    if offset != len(rows.segment_ids):
        raise RuntimeError(f"valid parts hold {offset} rows but {len(rows.segment_ids)} were segmented")
    summary = {
        "method": rows.method,
        "labels": rows.labels,
        "sizes": rows.sizes,
        "merged": rows.merged,
        "suppressed": rows.suppressed,
        "suppressed_customers": rows.suppressed_customers,
        "centroids": {k: list(v) for k, v in rows.centroids.items()},
        "raw_centroids": rows.raw_centroids,
        # Stable identity: ids that appeared / disappeared since the previous run, and (k-means) how far each
        # segment's centroid is from the one whose id it kept.
        "previous_partition": previous,
        "new_segments": list(changes.new),
        "dissolved_segments": list(changes.dissolved),
        "match_distances": rows.match_distances,
        "assignment_parts": written,
    }
    write_json(ctx.store, ctx.key("segments.json"), summary)
    ctx.progress(
        f"segment: {len(rows.labels)} segment(s) by {rows.method}; {len(rows.merged)} merged and "
        f"{rows.suppressed_customers} customer(s) suppressed by the "
        f"k={ctx.settings.segmentation.min_segment_size} rule; {len(changes.new)} new, "
        f"{len(changes.dissolved)} dissolved" + (f" ({', '.join(changes.dissolved)})" if changes.dissolved else "")
    )
    return {k: summary[k] for k in ("method", "sizes", "suppressed_customers", "new_segments", "dissolved_segments")}


def profile(ctx: StageContext) -> dict[str, Any]:
    """Profile every segment (with drift against the previous run), one valid part at a time."""
    from persona_pipeline.profiles import ProfileAccumulator

    seg = read_json(ctx.store, ctx.key("segments.json"))
    accumulator = ProfileAccumulator()
    parts = valid_parts(ctx)
    assignment_parts = list(seg["assignment_parts"])
    if len(parts) != len(assignment_parts):
        raise RuntimeError(f"{len(parts)} valid part(s) but {len(assignment_parts)} assignment part(s); rerun segment")
    for part, assigned in zip(parts, assignment_parts, strict=True):
        features = read_parquet(ctx.store, part).to_pandas()
        segment_ids = read_parquet(ctx.store, assigned, columns=["segment_id"]).column("segment_id").to_pandas()
        if len(segment_ids) != len(features):
            raise RuntimeError(f"{assigned} does not match {part} row for row; rerun segment")
        accumulator.add(features, segment_ids)
    previous = previous_partition(ctx.store, ctx.run.logical_date)
    previous_profiles = (
        {p["segment_id"]: p for p in read_json(ctx.store, f"{previous}/profiles.json")["profiles"]}
        if previous
        else None
    )
    settings = ctx.settings
    profiles = accumulator.finish(
        seg["labels"],
        lift_min_support=max(settings.personas.lift_min_support, settings.segmentation.min_segment_size),
        lift_min_share=settings.personas.lift_min_share,
        previous=previous_profiles,
    )
    write_json(ctx.store, ctx.key("profiles.json"), {"previous_partition": previous, "profiles": to_jsonable(profiles)})
    ctx.progress(f"profile: {len(profiles)} segment profile(s)" + (f", drift vs {previous}" if previous else ""))
    return {"segments": len(profiles)}


def build_personas(ctx: StageContext, *, api_key: str | None = None, base_url: str | None = None) -> list[str]:
    """Write one persona document per eligible segment and plan the images; returns the persona ids.

    ``api_key``/``base_url`` reach the image provider, which the plan needs (its price and parameters).
    """
    from persona_pipeline.imaging.generate import plan_images
    from persona_pipeline.personas import build_personas as make_personas

    data = read_json(ctx.store, ctx.key("profiles.json"))
    profiles = [SegmentProfile.from_dict(p) for p in data["profiles"]]
    previous_names: dict[str, str] = {}
    previous_personas: dict[str, Persona] = {}  # yesterday's cards anchor names and image choices
    if data.get("previous_partition"):
        for key in ctx.store.list_keys(f"{data['previous_partition']}/personas/"):
            doc = read_json(ctx.store, key)
            previous_names[doc["segment_id"]] = doc["name"]
            previous_personas[doc["segment_id"]] = Persona.from_dict(doc)
    narrator = None
    if ctx.settings.personas.narrative == "llm":
        from persona_pipeline.narrative import make_narrator

        # The OpenAI credentials the images use (the Airflow connection), else OPENAI_API_KEY.
        narrator = make_narrator(ctx.settings.personas, api_key=api_key)
    personas = make_personas(
        profiles,
        ctx.settings.personas,
        method=ctx.settings.segmentation.method,
        min_segment_size=ctx.settings.segmentation.min_segment_size,
        previous_names=previous_names,
        previous=previous_personas,
        narrator=narrator,
    )
    if narrator is not None:
        written = sum(p.narrative_source == "llm" for p in personas)
        ctx.progress(f"personas: {written} of {len(personas)} narrative(s) by {narrator.model}, the rest by template")
    ctx.store.delete_prefix(ctx.key("personas") + "/")
    for persona in personas:
        write_json(ctx.store, ctx.key("personas", f"{persona.persona_id}.json"), to_jsonable(persona))
    provider = _provider(ctx, api_key, base_url)
    plan = plan_images(personas, provider, ctx.store, ctx.settings.imaging)
    write_json(ctx.store, ctx.key("image_plan.json"), to_jsonable(plan))
    ctx.store.delete_prefix(ctx.key("image_records") + "/")
    # Images of a persona that no longer exists on a rerun of this date would linger unreferenced.
    ctx.store.delete_prefix(ctx.key("images") + "/")
    ctx.progress(
        f"personas: {len(personas)} persona(s); images planned: {len(plan.jobs)} "
        f"({sum(j.cached for j in plan.jobs)} cached, {plan.planned_calls} to generate for about "
        f"${plan.planned_cost_usd:.2f}, {plan.over_budget} over budget)"
    )
    return [p.persona_id for p in personas]


def _provider(ctx: StageContext, api_key: str | None = None, base_url: str | None = None) -> Any:
    from persona_pipeline.imaging.generate import get_provider

    return get_provider(ctx.settings.imaging, api_key=api_key, base_url=base_url)


def generate_persona_images(
    ctx: StageContext, persona_id: str, *, api_key: str | None = None, base_url: str | None = None
) -> dict[str, Any]:
    """Produce the planned images of one persona (one mapped task per persona in the DAG)."""
    return generate_images_for(ctx, [persona_id], api_key=api_key, base_url=base_url)[0]


def generate_images_for(
    ctx: StageContext, persona_ids: list[str], *, api_key: str | None = None, base_url: str | None = None
) -> list[dict[str, Any]]:
    """Produce the planned images of several personas with one bounded pool of concurrent requests.

    The CLI draws every persona at once (so ``imaging.concurrency`` requests are in flight across personas); the
    DAG calls it per persona from mapped tasks. Records are written per persona either way.
    """
    from persona_pipeline.contracts import ImagePrompt
    from persona_pipeline.imaging.generate import ImageJob, generate_images

    plan = read_json(ctx.store, ctx.key("image_plan.json"))
    wanted = set(persona_ids)
    jobs = [
        ImageJob(
            prompt=ImagePrompt.from_dict(job["prompt"]),
            cache_key=job["cache_key"],
            cached=job["cached"],
            allowed=job["allowed"],
            estimated_cost_usd=job["estimated_cost_usd"],
        )
        for job in plan["jobs"]
        if job["prompt"]["persona_id"] in wanted
    ]
    provider = _provider(ctx, api_key, base_url)
    records = generate_images(
        jobs, provider, ctx.store, ctx.run, concurrency=ctx.settings.imaging.concurrency, progress=ctx.progress
    )
    summaries = []
    for persona_id in persona_ids:
        mine = [r for r in records if r.persona_id == persona_id]
        write_json(ctx.store, ctx.key("image_records", f"{persona_id}.json"), to_jsonable(mine))
        summaries.append(
            {
                "persona_id": persona_id,
                "images": len(mine),
                "cached": sum(r.cached for r in mine),
                "cost_usd": round(sum(r.cost_usd for r in mine), 6),
            }
        )
    return summaries


def publish(ctx: StageContext, *, write_tables: bool = True) -> dict[str, Any]:
    """Write BI tables (one transaction), Parquet copies, the gallery, the run record and the latest pointer.

    ``write_tables=False`` (the DAG's dry run) leaves the warehouse untouched; ``counts`` then says how many
    rows each table would have received.
    """
    from persona_pipeline.publish import replace_partition, table_to_parquet_bytes
    from persona_pipeline.report import GalleryRun, render_gallery
    from persona_pipeline.warehouse.engine import warehouse_engine

    settings = ctx.settings
    extract_summary = read_json(ctx.store, ctx.key("extract.json"))
    validation = read_json(ctx.store, ctx.key("validation.json"))
    segments = read_json(ctx.store, ctx.key("segments.json"))
    profiles = [SegmentProfile.from_dict(p) for p in read_json(ctx.store, ctx.key("profiles.json"))["profiles"]]
    personas = [Persona.from_dict(read_json(ctx.store, k)) for k in ctx.store.list_keys(ctx.key("personas") + "/")]
    personas.sort(key=lambda p: (-p.size, p.persona_id))
    records: list[ImageRecord] = []
    for persona in personas:
        key = ctx.key("image_records", f"{persona.persona_id}.json")
        if ctx.store.head(key) is None:
            raise RuntimeError(f"images of persona {persona.persona_id} are missing ({key}); rerun its image task")
        records.extend(ImageRecord.from_dict(r) for r in read_json(ctx.store, key))
    # Presigned URLs expire: refresh them at publish time so BI always gets working links.
    records = [ImageRecord.from_dict({**to_jsonable(r), "url": ctx.store.url_for(r.key)}) for r in records]
    accounting = RowAccounting(**validation["accounting"])
    published_segments = {p.segment_id for p in personas}
    k = settings.segmentation.min_segment_size

    # Gallery first: the run record carries its URL.
    local = isinstance(ctx.store, LocalObjectStore)
    prefix = ctx.run.partition + "/"
    gallery_run = GalleryRun(
        logical_date=ctx.run.logical_date,
        run_id=ctx.run.run_id,
        method=segments["method"],
        image_provider=settings.imaging.provider,
        accounting=accounting,
        images_generated=sum(not r.cached for r in records),
        images_cached=sum(r.cached for r in records),
        image_cost_usd=round(sum(r.cost_usd for r in records), 4),
        min_segment_size=k,
        generated_at=datetime.now(UTC),
    )
    pages = render_gallery(
        gallery_run,
        personas,
        records,
        image_href=(lambda r: r.key.removeprefix(prefix)) if local else (lambda r: r.url),
    )
    gallery_key = ctx.key("index.html")
    gallery_url = ctx.store.url_for(gallery_key)

    frames = _output_frames(ctx, personas, profiles, records, segments, extract_summary, accounting, gallery_url)
    frames = {name: frame for name, frame in frames.items()}
    if not write_tables:
        counts = {name: len(frame) for name, frame in frames.items()}
    else:
        with warehouse_engine(
            settings.warehouse.url, duckdb_memory_limit=settings.warehouse.duckdb_memory_limit
        ) as engine:
            counts = replace_partition(
                engine,
                settings.warehouse.output_schema,
                ctx.run.logical_date,
                frames,
                latest_only=("segment_membership",) if settings.privacy.membership_history == "latest" else (),
            )
    # The gallery goes up only once the tables hold the date, so it never shows a run the tables do not.
    for name, html in pages.items():
        ctx.store.put_bytes(ctx.key(name), html.encode("utf-8"), content_type="text/html; charset=utf-8")
    for name, frame in frames.items():
        key = f"tables/{name}/{ctx.run.partition}/part-00000.parquet"
        ctx.store.put_bytes(key, table_to_parquet_bytes(frame.assign(dt=ctx.run.logical_date)))
    if settings.privacy.membership_history == "latest" and write_tables:
        _drop_older_membership_copies(ctx)
    from persona_pipeline.bi_files import write_bi_files

    bi_keys = write_bi_files(ctx.store, settings, ctx.run)
    run_record = frames["persona_runs"].iloc[0].to_dict()
    write_json(ctx.store, ctx.key("run.json"), to_jsonable(run_record))
    # "Latest" means the newest date, as in the latest_* views: a backfill of older dates must not move it back.
    current = read_json(ctx.store, "latest.json") if ctx.store.head("latest.json") is not None else None
    if current is None or str(current.get("dt", "")) <= ctx.run.logical_date.isoformat():
        write_json(
            ctx.store,
            "latest.json",
            {"dt": ctx.run.logical_date.isoformat(), "run_id": ctx.run.run_id, "gallery_key": gallery_key},
        )
    assert published_segments <= set(segments["sizes"])
    ctx.progress(f"publish: {counts}; gallery at {gallery_url}")
    return {"counts": counts, "gallery_key": gallery_key, "gallery_url": gallery_url, "bi_files": bi_keys}


def _drop_older_membership_copies(ctx: StageContext) -> None:
    """Keep only the newest date's membership Parquet copy, as the membership table does."""
    prefix = "tables/segment_membership/"
    dates = sorted({key[len(prefix) :].split("/", 1)[0] for key in ctx.store.list_keys(prefix)})
    newest = dates[-1] if dates else None
    for partition in dates:
        if newest is not None and partition < newest:
            ctx.store.delete_prefix(f"{prefix}{partition}/")


def _output_frames(
    ctx: StageContext,
    personas: list[Persona],
    profiles: list[SegmentProfile],
    records: list[ImageRecord],
    segments: dict[str, Any],
    extract_summary: dict[str, Any],
    accounting: RowAccounting,
    gallery_url: str,
) -> dict[str, pd.DataFrame]:
    from persona_pipeline.privacy import publishable_keys
    from persona_pipeline.publish import json_list

    settings = ctx.settings
    k = settings.segmentation.min_segment_size
    published = {p.segment_id for p in personas}
    eligible = [p for p in profiles if p.size >= k and p.segment_id in published]
    first_image: dict[str, str] = {}
    for record in records:
        first_image.setdefault(record.persona_id, record.url)
    personas_frame = pd.DataFrame(
        [
            {
                "persona_id": p.persona_id,
                "segment_id": p.segment_id,
                "method": p.method,
                "name": p.name,
                "tagline": p.tagline,
                "narrative": p.narrative,
                "goals": json_list(p.goals),
                "pain_points": json_list(p.pain_points),
                "channels": json_list(p.channels),
                "recommendations": json_list(p.recommendations),
                "size": p.size,
                "share": p.share,
                **{
                    k_: p.key_numbers.get(k_)
                    for k_ in ("median_age", "aov", "frequency", "monetary", "recency_days", "clv")
                },
                "content_hash": p.content_hash,
                "narrative_source": p.narrative_source,
                "image_url": first_image.get(p.persona_id),
                "persona_json_url": ctx.store.url_for(ctx.key("personas", f"{p.persona_id}.json")),
            }
            for p in personas
        ]
    )
    snapshots = pd.DataFrame(
        [
            {
                "segment_id": p.segment_id,
                "method": segments["method"],
                "label": p.label,
                "size": p.size,
                "share": p.share,
                **{
                    k_: p.numeric.get(k_)
                    for k_ in (
                        "median_age",
                        "aov",
                        "recency_days",
                        "frequency",
                        "monetary",
                        "clv",
                        "engagement",
                        "tenure_days",
                        "return_rate",
                    )
                },
                "previous_size": p.drift.previous_size if p.drift else None,
                "size_change": p.drift.size_change if p.drift else None,
                "drift_status": p.drift.status if p.drift else None,
                "moved_traits": json_list(p.drift.moved_traits) if p.drift else "[]",
            }
            for p in eligible
        ]
    )
    traits = pd.DataFrame(
        [
            {
                "segment_id": p.segment_id,
                "dimension": t.dimension,
                "value": t.value,
                "segment_share": t.segment_share,
                "population_share": t.population_share,
                "lift": t.lift,
                "support": t.support,
            }
            for p in eligible
            for t in p.lifts
            if t.support >= k
        ]
    )
    images = pd.DataFrame(
        [
            {
                "persona_id": r.persona_id,
                "variant": r.variant,
                "style": r.style,
                "provider": r.provider,
                "model": r.model,
                "prompt_hash": r.prompt_hash,
                "cache_key": r.cache_key,
                "object_key": r.key,
                "image_url": r.url,
                "content_type": r.content_type,
                "size_bytes": r.size_bytes,
                "width": r.width,
                "height": r.height,
                "cost_usd": r.cost_usd,
                "cached": r.cached,
                "flags": ",".join(r.flags),
            }
            for r in records
        ]
    )
    import pyarrow as pa
    import pyarrow.compute as pc

    published_ids = pa.array(sorted(published), type=pa.string())
    tables = []
    for key in segments["assignment_parts"]:
        part = read_parquet(ctx.store, key, columns=["customer_key", "segment_id"])
        ids = part.column("segment_id").cast(pa.string())
        tables.append(part.set_column(1, "segment_id", ids).filter(pc.is_in(ids, value_set=published_ids)))
    membership = (
        pa.concat_tables(tables).to_pandas()
        if tables
        else pd.DataFrame({"customer_key": pd.Series(dtype="string"), "segment_id": pd.Series(dtype="string")})
    )
    published_customers = len(membership)
    keys = publishable_keys(membership["customer_key"], settings.privacy)
    membership = membership.iloc[0:0] if keys is None else membership.assign(customer_key=keys)
    quarantine = (
        read_parquet(ctx.store, ctx.key("quarantine.parquet")).to_pandas().rename(columns={"column": "column_name"})
    )
    run_row = {
        "run_id": ctx.run.run_id,
        "config_hash": ctx.run.config_hash,
        "method": segments["method"],
        "image_provider": settings.imaging.provider,
        "status": "success",
        "started_at": datetime.fromisoformat(extract_summary["started_at"]),
        "finished_at": datetime.now(UTC).replace(tzinfo=None),
        "rows_extracted": accounting.extracted,
        "rows_valid": accounting.valid,
        "rows_quarantined": accounting.quarantined,
        "rows_excluded": accounting.excluded,
        "rows_suppressed": int(accounting.valid - published_customers),
        "segments": len(eligible),
        "personas": len(personas),
        "images_total": len(records),
        "images_generated": sum(not r.cached for r in records),
        "images_cached": sum(r.cached for r in records),
        "images_fallback": sum(any(f.endswith("fallback") for f in r.flags) for r in records),
        "image_cost_usd": round(sum(r.cost_usd for r in records), 6),
        "missing_fields": json_list(extract_summary.get("missing_fields", [])),
        "gallery_url": gallery_url,
    }
    return {
        "persona_runs": pd.DataFrame([run_row]),
        "segment_snapshots": snapshots,
        "segment_traits": traits,
        "personas": personas_frame,
        "persona_images": images,
        "segment_membership": membership,
        "quarantine": quarantine,
    }


def run_all(ctx: StageContext) -> dict[str, Any]:
    """Every stage in order, in this process (the CLI's ``run``); returns the publish summary."""
    extract(ctx)
    validate(ctx)
    segment(ctx)
    profile(ctx)
    generate_images_for(ctx, build_personas(ctx))
    return publish(ctx)
