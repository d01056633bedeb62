"""The service fixtures give real, working servers (not mocks): SQL round trips, signed S3 requests."""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectTimeoutError, ReadTimeoutError

from tests.services import (
    PostgresServer,
    SeaweedS3Server,
    ServiceUnavailable,
    find_weed_binary,
    free_port,
    require_services,
)

pytestmark = pytest.mark.integration

MIB = 1024 * 1024


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


# ----------------------------------------------------------------------------------------------- helpers alone


def test_require_services_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PERSONA_REQUIRE_SERVICES", raising=False)
    assert require_services() is False
    monkeypatch.setenv("PERSONA_REQUIRE_SERVICES", "0")
    assert require_services() is False
    monkeypatch.setenv("PERSONA_REQUIRE_SERVICES", "1")
    assert require_services() is True


def test_free_port_is_bindable() -> None:
    import socket

    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", port))


def test_missing_binaries_raise_service_unavailable(tmp_path: Path) -> None:
    with pytest.raises(ServiceUnavailable, match="initdb"):
        PostgresServer(bindir=tmp_path).start()
    with pytest.raises(ServiceUnavailable, match="does not exist"):
        SeaweedS3Server(binary=tmp_path / "weed").start()


# -------------------------------------------------------------------------------------------------- PostgreSQL


def test_postgres_url_points_at_the_server(postgres_server: PostgresServer, pg_database: str) -> None:
    url = sa.make_url(pg_database)
    assert url.drivername == "postgresql+psycopg"
    assert url.host == "127.0.0.1"
    assert url.port == postgres_server.port
    assert url.username == "postgres"
    assert postgres_server.startup_seconds is not None


def test_postgres_sql_round_trip(pg_database: str) -> None:
    engine = sa.create_engine(pg_database)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE customers (id bigint PRIMARY KEY, name text NOT NULL, spend numeric)"))
            conn.execute(
                sa.text("INSERT INTO customers VALUES (:id, :name, :spend)"),
                [{"id": 1, "name": "Zoë", "spend": 12.5}, {"id": 2, "name": "Ann", "spend": None}],
            )
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT id, name, spend FROM customers ORDER BY id")).all()
            version = conn.execute(sa.text("SELECT current_setting('server_version_num')::int")).scalar_one()
            encoding = conn.execute(sa.text("SHOW server_encoding")).scalar_one()
    finally:
        engine.dispose()
    assert [(r.id, r.name, None if r.spend is None else float(r.spend)) for r in rows] == [
        (1, "Zoë", 12.5),
        (2, "Ann", None),
    ]
    assert version >= 120000
    assert encoding == "UTF8"


def test_each_test_gets_its_own_empty_database(pg_database: str) -> None:
    engine = sa.create_engine(pg_database)
    try:
        assert sa.inspect(engine).get_table_names() == []
    finally:
        engine.dispose()


def test_postgres_restart_keeps_data(postgres_server: PostgresServer, pg_database: str) -> None:
    engine = sa.create_engine(pg_database, pool_pre_ping=True)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE kept (v text)"))
            conn.execute(sa.text("INSERT INTO kept VALUES ('before restart')"))
        port = postgres_server.port
        postgres_server.restart()
        assert postgres_server.port == port
        with engine.connect() as conn:  # pre-ping replaces the pooled connection the restart cut
            assert conn.execute(sa.text("SELECT v FROM kept")).scalar_one() == "before restart"
    finally:
        engine.dispose()


# ---------------------------------------------------------------------------------------------------- SeaweedFS


def test_s3_put_get_head_with_metadata(s3_bucket: tuple[Any, str]) -> None:
    client, bucket = s3_bucket
    body = b'{"hello": "world"}'
    client.put_object(
        Bucket=bucket, Key="dir/doc.json", Body=body, ContentType="application/json", Metadata={"Run-Id": "r1"}
    )
    assert client.get_object(Bucket=bucket, Key="dir/doc.json")["Body"].read() == body
    head = client.head_object(Bucket=bucket, Key="dir/doc.json")
    assert head["ContentLength"] == len(body)
    assert head["ContentType"] == "application/json"
    assert head["Metadata"] == {"run-id": "r1"}
    assert head["ETag"].strip('"') == hashlib.md5(body, usedforsecurity=False).hexdigest()  # single-part ETag


def test_s3_head_and_get_of_missing_key(s3_bucket: tuple[Any, str]) -> None:
    client, bucket = s3_bucket
    with pytest.raises(ClientError) as head_error:
        client.head_object(Bucket=bucket, Key="missing")
    assert _error_code(head_error.value) in {"404", "NoSuchKey", "NotFound"}
    with pytest.raises(ClientError) as get_error:
        client.get_object(Bucket=bucket, Key="missing")
    assert _error_code(get_error.value) == "NoSuchKey"


def test_s3_list_with_prefix_and_delimiter(s3_bucket: tuple[Any, str]) -> None:
    client, bucket = s3_bucket
    for key in ["a/1.txt", "a/2.txt", "a/sub/3.txt", "b/4.txt"]:
        client.put_object(Bucket=bucket, Key=key, Body=key.encode())
    listed = client.list_objects_v2(Bucket=bucket, Prefix="a/")
    assert sorted(item["Key"] for item in listed["Contents"]) == ["a/1.txt", "a/2.txt", "a/sub/3.txt"]
    shallow = client.list_objects_v2(Bucket=bucket, Prefix="a/", Delimiter="/")
    assert sorted(item["Key"] for item in shallow["Contents"]) == ["a/1.txt", "a/2.txt"]
    assert [p["Prefix"] for p in shallow["CommonPrefixes"]] == ["a/sub/"]
    paged = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, PaginationConfig={"PageSize": 2})
    assert sorted(item["Key"] for page in paged for item in page.get("Contents", [])) == [
        "a/1.txt",
        "a/2.txt",
        "a/sub/3.txt",
        "b/4.txt",
    ]


def test_s3_multipart_upload(s3_bucket: tuple[Any, str]) -> None:
    client, bucket = s3_bucket
    part1, part2 = os.urandom(5 * MIB), os.urandom(MIB + 123)
    upload = client.create_multipart_upload(Bucket=bucket, Key="big.bin", ContentType="application/octet-stream")
    parts = []
    for number, data in enumerate([part1, part2], start=1):
        response = client.upload_part(
            Bucket=bucket, Key="big.bin", UploadId=upload["UploadId"], PartNumber=number, Body=data
        )
        parts.append({"PartNumber": number, "ETag": response["ETag"]})
    client.complete_multipart_upload(
        Bucket=bucket, Key="big.bin", UploadId=upload["UploadId"], MultipartUpload={"Parts": parts}
    )
    head = client.head_object(Bucket=bucket, Key="big.bin")
    assert head["ContentLength"] == len(part1) + len(part2)
    assert head["ETag"].strip('"').endswith("-2")
    assert client.get_object(Bucket=bucket, Key="big.bin")["Body"].read() == part1 + part2


def test_s3_multipart_rejects_small_non_final_part(s3_bucket: tuple[Any, str]) -> None:
    client, bucket = s3_bucket
    upload = client.create_multipart_upload(Bucket=bucket, Key="tiny.bin")
    parts = []
    for number in (1, 2):
        response = client.upload_part(
            Bucket=bucket, Key="tiny.bin", UploadId=upload["UploadId"], PartNumber=number, Body=b"x" * 1024
        )
        parts.append({"PartNumber": number, "ETag": response["ETag"]})
    with pytest.raises(ClientError) as error:
        client.complete_multipart_upload(
            Bucket=bucket, Key="tiny.bin", UploadId=upload["UploadId"], MultipartUpload={"Parts": parts}
        )
    assert _error_code(error.value) == "EntityTooSmall"


def test_s3_presigned_get_downloads_the_bytes(s3_bucket: tuple[Any, str]) -> None:
    client, bucket = s3_bucket
    body = os.urandom(4096)
    client.put_object(Bucket=bucket, Key="img/p 1.png", Body=body, ContentType="image/png")
    url = client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "img/p 1.png"}, ExpiresIn=60)
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.headers["Content-Type"] == "image/png"
        assert response.read() == body


def test_s3_rejects_unsigned_and_tampered_requests(s3_server: SeaweedS3Server, s3_bucket: tuple[Any, str]) -> None:
    client, bucket = s3_bucket
    client.put_object(Bucket=bucket, Key="secret.txt", Body=b"secret")
    url = client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "secret.txt"}, ExpiresIn=60)
    for bad_url in (f"{s3_server.endpoint_url}/{bucket}/secret.txt", url.replace("secret.txt", "secret.txt2")):
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(bad_url, timeout=10)
        assert error.value.code == 403


def test_s3_checks_the_signature(s3_server: SeaweedS3Server, s3_bucket: tuple[Any, str]) -> None:
    _, bucket = s3_bucket
    no_retry = {"max_attempts": 1}
    with pytest.raises(ClientError) as wrong_secret:
        s3_server.client(secret_key="not-the-secret", retries=no_retry).put_object(Bucket=bucket, Key="x", Body=b"x")
    assert _error_code(wrong_secret.value) == "SignatureDoesNotMatch"
    with pytest.raises(ClientError) as wrong_key:
        s3_server.client(access_key="nobody", retries=no_retry).list_objects_v2(Bucket=bucket)
    assert _error_code(wrong_key.value) == "InvalidAccessKeyId"
    assert "Contents" not in s3_server.client().list_objects_v2(Bucket=bucket)


def test_s3_pause_and_resume(s3_server: SeaweedS3Server, s3_bucket: tuple[Any, str]) -> None:
    client, bucket = s3_bucket
    client.put_object(Bucket=bucket, Key="k", Body=b"v")
    impatient = s3_server.client(retries={"max_attempts": 1}, connect_timeout=1, read_timeout=1)
    s3_server.pause()
    try:
        assert s3_server.paused
        with pytest.raises((ReadTimeoutError, ConnectTimeoutError)):
            impatient.get_object(Bucket=bucket, Key="k")
    finally:
        s3_server.resume()
    assert not s3_server.paused
    assert client.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"


def test_s3_restart_keeps_data_and_endpoint(s3_server: SeaweedS3Server, s3_bucket: tuple[Any, str]) -> None:
    client, bucket = s3_bucket
    client.put_object(Bucket=bucket, Key="durable.txt", Body=b"still here")
    endpoint = s3_server.endpoint_url
    s3_server.restart()
    assert s3_server.endpoint_url == endpoint
    assert client.get_object(Bucket=bucket, Key="durable.txt")["Body"].read() == b"still here"


def test_two_s3_servers_do_not_collide(s3_server: SeaweedS3Server, s3_bucket: tuple[Any, str]) -> None:
    client, bucket = s3_bucket
    try:
        find_weed_binary()
    except ServiceUnavailable as exc:  # pragma: no cover - the s3_server fixture already skipped
        pytest.skip(exc.reason)
    with SeaweedS3Server() as other:
        assert set(other.ports.values()).isdisjoint(s3_server.ports.values())
        other_client = other.client()
        other_client.create_bucket(Bucket=bucket)
        other_client.put_object(Bucket=bucket, Key="only-here", Body=b"1")
        assert "Contents" not in client.list_objects_v2(Bucket=bucket)
    assert other.tmpdir is None and other.process is None
    assert client.list_buckets()["Buckets"]  # the session server is unaffected


def test_client_uses_path_addressing(s3_server: SeaweedS3Server) -> None:
    config: Config = s3_server.client().meta.config
    assert config.s3 == {"addressing_style": "path"}
    assert s3_server.client().meta.region_name == "us-east-1"
