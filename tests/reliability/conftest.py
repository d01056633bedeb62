"""Fixtures of the reliability suite: the real services of ``tests/integration`` and helpers around them.

``pytest_plugins`` is not allowed in a non-root conftest, so the service fixtures are imported explicitly; they
skip cleanly when a service cannot run here (or fail with ``PERSONA_REQUIRE_SERVICES=1``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import SAMPLE_DATE, SMALL_CUSTOMERS
from tests.fake_openai import FakeOpenAIServer
from tests.integration.conftest import pg_database, postgres_server, s3_bucket, s3_server
from tests.reliability.checks import API_KEY

__all__ = ["pg_database", "postgres_server", "s3_bucket", "s3_server"]


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAIServer]:
    """A local OpenAI-compatible server that accepts only :data:`~tests.reliability.checks.API_KEY`."""
    with FakeOpenAIServer(valid_api_keys={API_KEY}) as server:
        yield server


@pytest.fixture(scope="session")
def sample_data() -> object:
    """The synthetic retailer (same customers as the ``sample_warehouse`` DuckDB file), for other databases."""
    from persona_pipeline.warehouse.sample import generate_sample

    return generate_sample(SMALL_CUSTOMERS, seed=11, as_of=SAMPLE_DATE)


@pytest.fixture
def pg_warehouse(pg_database: str, sample_data: object) -> str:
    """URL of a fresh PostgreSQL database holding the sample company (tables customers, orders, events)."""
    import sqlalchemy as sa

    from persona_pipeline.warehouse.sample import SampleData, load_into_engine

    assert isinstance(sample_data, SampleData)
    engine = sa.create_engine(pg_database)
    try:
        load_into_engine(engine, sample_data)
    finally:
        engine.dispose()
    return pg_database
