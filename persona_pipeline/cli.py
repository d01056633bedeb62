"""The ``persona-pipeline`` command: seed the sample warehouse, run the stages without Airflow, find outputs."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from datetime import date
from pathlib import Path

from persona_pipeline.exceptions import PersonaPipelineError


def _progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date like 2026-12-01") from None


def cmd_seed(args: argparse.Namespace) -> int:
    from persona_pipeline.warehouse.sample import write_duckdb

    started = time.perf_counter()
    if getattr(args, "warehouse", None):
        return _seed_engine(args, started)
    counts = write_duckdb(args.out, args.customers, seed=args.seed, as_of=args.as_of, progress=_progress)
    _progress(
        f"seeded {args.out}: "
        + ", ".join(f"{n:,} {t}" for t, n in counts.items())
        + f" in {time.perf_counter() - started:.1f}s"
    )
    return 0


def _seed_engine(args: argparse.Namespace, started: float) -> int:
    """``seed --warehouse URL``: load the sample into any SQLAlchemy database (replacing the sample tables)."""
    from sqlalchemy.engine import make_url

    from persona_pipeline.warehouse.engine import warehouse_engine
    from persona_pipeline.warehouse.sample import generate_sample, load_into_engine

    data = generate_sample(args.customers, seed=args.seed, as_of=args.as_of)
    with warehouse_engine(args.warehouse) as engine:
        counts = load_into_engine(engine, data, schema=args.schema)
    _progress(
        f"seeded {make_url(args.warehouse).render_as_string(hide_password=True)}: "
        + ", ".join(f"{n:,} {t}" for t, n in counts.items())
        + f" in {time.perf_counter() - started:.1f}s"
    )
    return 0


def _settings(args: argparse.Namespace) -> object:
    from persona_pipeline.config import load_settings

    overrides: dict[str, object] = {}
    if getattr(args, "method", None):
        overrides["segmentation.method"] = args.method
    if getattr(args, "provider", None):
        overrides["imaging.provider"] = args.provider
    if getattr(args, "warehouse", None):
        overrides["warehouse.url"] = args.warehouse
    return load_settings(args.config, overrides=overrides)


def cmd_run(args: argparse.Namespace) -> int:
    from persona_pipeline import stages
    from persona_pipeline.config import Settings

    settings = _settings(args)
    assert isinstance(settings, Settings)
    ctx = stages.make_context(settings, args.date, args.run_id, progress=_progress)
    started = time.perf_counter()
    result = stages.run_all(ctx)
    _progress(f"run for {args.date} finished in {time.perf_counter() - started:.1f}s")
    print(f"Gallery: {_gallery_location(ctx.store, result['gallery_key'])}")
    return 0


def _gallery_location(store: object, key: str) -> str:
    from persona_pipeline.storage import LocalObjectStore, ObjectStore

    if isinstance(store, LocalObjectStore):
        return str(store.path_for(key))
    assert isinstance(store, ObjectStore)
    return store.url_for(key)


def cmd_check_mapping(args: argparse.Namespace) -> int:
    """Check a source mapping against the live warehouse; exit 1 when anything is wrong."""
    from persona_pipeline.config import Settings
    from persona_pipeline.warehouse.check import check_mapping_file

    settings = _settings(args)
    assert isinstance(settings, Settings)
    mapping = args.mapping if args.mapping is not None else settings.warehouse.mapping
    report = check_mapping_file(mapping, settings.warehouse.url, schema=settings.warehouse.source_schema)
    print(report.render())
    return 0 if report.ok else 1


def cmd_where(args: argparse.Namespace) -> int:
    """Print the gallery of a date (or the latest run) after checking it exists."""
    from persona_pipeline.config import Settings
    from persona_pipeline.storage import open_store, read_json

    settings = _settings(args)
    assert isinstance(settings, Settings)
    store = open_store(settings.storage)
    key = f"dt={args.date.isoformat()}/index.html" if args.date else None
    if key is None:
        if store.head("latest.json") is None:
            print("no published run yet: run `make demo` or `persona-pipeline run --date D`", file=sys.stderr)
            return 1
        key = read_json(store, "latest.json")["gallery_key"]
    if store.head(key) is None:
        print(f"no gallery at {key}: has the run for that date finished?", file=sys.stderr)
        return 1
    print(f"Gallery: {_gallery_location(store, key)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="persona-pipeline", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    seed = sub.add_parser("seed", help="write the synthetic sample warehouse (DuckDB)")
    seed.add_argument("--out", type=Path, default=Path("data/warehouse.duckdb"))
    seed.add_argument("--customers", type=int, default=20_000)
    seed.add_argument("--seed", type=int, default=7)
    seed.add_argument("--as-of", type=_date, default=None, help="the sample's 'today' (default 2026-12-01)")
    seed.add_argument("--warehouse", default=None, help="load into this SQLAlchemy URL instead of --out")
    seed.add_argument("--schema", default=None, help="schema for the sample tables with --warehouse")
    seed.set_defaults(func=cmd_seed)

    for name, func, helptext in (
        ("run", cmd_run, "run every stage for one date without Airflow"),
        ("where", cmd_where, "print where the gallery of a date (default: the latest run) is"),
    ):
        command = sub.add_parser(name, help=helptext)
        command.add_argument("--config", type=Path, default=None, help="YAML settings (default $PERSONA_CONFIG)")
        command.add_argument("--date", type=_date, required=name == "run", help="logical date D, e.g. 2026-12-01")
        command.add_argument("--warehouse", help="SQLAlchemy URL overriding warehouse.url")
        command.add_argument("--method", choices=["rfm", "kmeans", "rules"], help="segmentation method")
        command.add_argument("--provider", choices=["offline", "openai"], help="image provider")
        if name == "run":
            command.add_argument("--run-id", default=None)
        command.set_defaults(func=func)

    check = sub.add_parser(
        "check-mapping", help="check a source mapping against the warehouse and explain every problem"
    )
    check.add_argument(
        "--mapping", type=Path, default=None, help="YAML source mapping (default: warehouse.mapping of the config)"
    )
    check.add_argument("--config", type=Path, default=None, help="YAML settings (default $PERSONA_CONFIG)")
    check.add_argument("--warehouse", help="SQLAlchemy URL overriding warehouse.url")
    check.set_defaults(func=cmd_check_mapping)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    if args.command == "seed" and args.as_of is None:
        from persona_pipeline.warehouse.sample import SAMPLE_AS_OF

        args.as_of = SAMPLE_AS_OF
    try:
        return int(args.func(args))
    except PersonaPipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
