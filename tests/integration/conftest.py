"""Fixtures that give integration tests real PostgreSQL and S3 (SeaweedFS) servers.

The servers are started once per session, on free ports, and always stopped at the end. When a server cannot
run on this machine the tests that need it are skipped, or fail when ``PERSONA_REQUIRE_SERVICES=1`` (CI).

* ``postgres_server`` -> :class:`tests.services.PostgresServer`
* ``pg_database``     -> SQLAlchemy URL of a fresh, empty database (dropped after the test)
* ``s3_server``       -> :class:`tests.services.SeaweedS3Server`
* ``s3_bucket``       -> ``(boto3 client, bucket name)`` of a fresh, empty bucket
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any, NoReturn

import pytest

from tests.services import PostgresServer, SeaweedS3Server, ServiceUnavailable, require_services


def _unavailable(service: str, reason: str) -> NoReturn:
    message = f"{service} unavailable: {reason}"
    if require_services():
        pytest.fail(f"{message} (PERSONA_REQUIRE_SERVICES=1, so this is an error)", pytrace=False)
    pytest.skip(message)


def _start(server: PostgresServer | SeaweedS3Server) -> str | None:
    """Start ``server``; the reason it cannot run here, or None once it is up."""
    try:
        server.start()
    except ServiceUnavailable as exc:
        server.stop()
        return exc.reason
    return None


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL cluster shared by the whole session."""
    server = PostgresServer()
    reason = _start(server)
    if reason is not None:
        _unavailable("PostgreSQL", reason)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[SeaweedS3Server]:
    """A SeaweedFS S3 server shared by the whole session."""
    server = SeaweedS3Server()
    reason = _start(server)
    if reason is not None:
        _unavailable("SeaweedFS S3", reason)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_database(postgres_server: PostgresServer) -> Iterator[str]:
    """SQLAlchemy URL (``postgresql+psycopg://...``) of a new database, dropped after the test."""
    name = f"test_{uuid.uuid4().hex[:16]}"
    url = postgres_server.create_database(name)
    yield url
    with contextlib.suppress(Exception):  # a fault-injection test may have left the server down
        postgres_server.drop_database(name)


@pytest.fixture
def s3_bucket(s3_server: SeaweedS3Server) -> tuple[Any, str]:
    """``(client, bucket_name)``: a boto3 client and a new empty bucket, unique to this test."""
    name = f"test-{uuid.uuid4().hex[:20]}"
    client = s3_server.client()
    client.create_bucket(Bucket=name)
    return client, name
