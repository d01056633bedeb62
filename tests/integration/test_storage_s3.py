"""S3ObjectStore against a real S3 server (SeaweedFS): signatures, encryption, multipart and presigning are real."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyarrow as pa
import pytest

from persona_pipeline.config import StorageSettings
from persona_pipeline.exceptions import StorageError
from persona_pipeline.storage import (
    ObjectStore,
    S3ObjectStore,
    StoredObject,
    open_store,
    read_json,
    read_parquet,
    write_json,
    write_parquet,
)
from tests.services import SeaweedS3Server

pytestmark = pytest.mark.integration

MIB = 1024 * 1024
PREFIX = "persona-pipeline"


@pytest.fixture
def store(s3_bucket: tuple[Any, str]) -> S3ObjectStore:
    client, bucket = s3_bucket
    return S3ObjectStore(bucket, PREFIX, client=client)


def _raw_head(store: S3ObjectStore, key: str) -> dict[str, Any]:
    return dict(store.client.head_object(Bucket=store.bucket, Key=f"{store.prefix}/{key}"))


def _raw_keys(store: S3ObjectStore) -> list[str]:
    pages = store.client.get_paginator("list_objects_v2").paginate(Bucket=store.bucket)
    return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


def test_store_satisfies_the_protocol(store: S3ObjectStore) -> None:
    assert isinstance(store, ObjectStore)
    assert repr(store) == f"S3ObjectStore(s3://{store.bucket}/{PREFIX})"


def test_put_get_round_trip(store: S3ObjectStore) -> None:
    data = os.urandom(10_000)
    info = store.put_bytes("dt=2024-05-01/blob.bin", data, metadata={"run_id": "r1"})
    assert info == StoredObject("dt=2024-05-01/blob.bin", len(data), "application/octet-stream", {"run_id": "r1"})
    assert store.get_bytes("dt=2024-05-01/blob.bin") == data
    assert _raw_keys(store) == [f"{PREFIX}/dt=2024-05-01/blob.bin"]
    head = store.head("dt=2024-05-01/blob.bin")
    assert head is not None and head.size == len(data)


def test_overwrite_replaces_content_and_metadata(store: S3ObjectStore) -> None:
    store.put_bytes("k.txt", b"one", metadata={"v": "1"})
    store.put_bytes("k.txt", b"two!", metadata={"w": "2"})
    assert store.get_bytes("k.txt") == b"two!"
    assert store.head("k.txt") == StoredObject("k.txt", 4, "text/plain", {"w": "2"})


@pytest.mark.parametrize(
    ("key", "content_type"),
    [
        ("dt=2024-05-01/images/p1/portrait-1.png", "image/png"),
        ("dt=2024-05-01/features/part-00000.parquet", "application/vnd.apache.parquet"),
        ("dt=2024-05-01/personas/p1.json", "application/json"),
        ("dt=2024-05-01/index.html", "text/html"),
        ("cache/images/abc.webp", "image/webp"),
        ("no-extension", "application/octet-stream"),
    ],
)
def test_content_type_is_guessed_and_stored(store: S3ObjectStore, key: str, content_type: str) -> None:
    assert store.put_bytes(key, b"x").content_type == content_type
    assert store.head(key) == StoredObject(key, 1, content_type, {})
    assert _raw_head(store, key)["ContentType"] == content_type


def test_explicit_content_type_wins(store: S3ObjectStore) -> None:
    store.put_bytes("report.bin", b"<p>", content_type="text/html; charset=utf-8")
    head = store.head("report.bin")
    assert head is not None and head.content_type == "text/html; charset=utf-8"


def test_metadata_round_trip_lowercases_keys(store: S3ObjectStore) -> None:
    info = store.put_bytes("m.json", b"{}", metadata={"Run-Id": "run-42", "config_hash": "abc123", "Note": "café"})
    assert info.metadata == {"Run-Id": "run-42", "config_hash": "abc123", "Note": "café"}
    head = store.head("m.json")
    assert head is not None
    # S3 user metadata travels in HTTP headers: names come back lowercase, values ASCII (escaped).
    assert head.metadata == {"run-id": "run-42", "config_hash": "abc123", "note": "caf\\xe9"}


def test_server_side_encryption_is_requested_and_reported(store: S3ObjectStore) -> None:
    store.put_bytes("enc.bin", b"secret")
    assert _raw_head(store, "enc.bin").get("ServerSideEncryption") == "AES256"


def test_server_side_encryption_can_be_disabled(s3_bucket: tuple[Any, str]) -> None:
    client, bucket = s3_bucket
    plain = S3ObjectStore(bucket, PREFIX, client=client, server_side_encryption=None)
    plain.put_bytes("plain.bin", b"open")
    assert "ServerSideEncryption" not in _raw_head(plain, "plain.bin")
    assert plain.get_bytes("plain.bin") == b"open"


def _bytes_at_rest(server: SeaweedS3Server, needle: bytes) -> bool:
    assert server.tmpdir is not None
    found = subprocess.run(
        ["grep", "-rqF", needle.decode(), str(server.tmpdir / "data")], check=False, capture_output=True
    )
    return found.returncode == 0


def test_encrypted_objects_are_not_stored_in_plaintext(s3_server: SeaweedS3Server, s3_bucket: tuple[Any, str]) -> None:
    client, bucket = s3_bucket
    encrypted = S3ObjectStore(bucket, PREFIX, client=client)
    plain = S3ObjectStore(bucket, PREFIX, client=client, server_side_encryption=None)
    secret, control = uuid.uuid4().hex.encode(), uuid.uuid4().hex.encode()
    encrypted.put_bytes("secret.bin", os.urandom(64) + secret + os.urandom(64))
    plain.put_bytes("control.bin", os.urandom(64) + control + os.urandom(64))
    if not _bytes_at_rest(s3_server, control):
        pytest.skip("this SeaweedFS stores even unencrypted bytes in a form grep cannot see; nothing to compare")
    assert not _bytes_at_rest(s3_server, secret)
    assert secret in encrypted.get_bytes("secret.bin")


def test_server_verifies_the_upload_checksum(store: S3ObjectStore) -> None:
    import base64
    import hashlib

    from botocore.exceptions import ClientError

    wrong = base64.b64encode(hashlib.sha256(b"something else").digest()).decode()
    with pytest.raises(ClientError) as error:
        store.client.put_object(Bucket=store.bucket, Key=f"{PREFIX}/bad.bin", Body=b"payload", ChecksumSHA256=wrong)
    assert error.value.response["Error"]["Code"] in {"BadDigest", "XAmzContentSHA256Mismatch", "InvalidRequest"}
    store.put_bytes("good.bin", b"payload")
    assert _raw_head(store, "good.bin")["ContentLength"] == len(b"payload")


def test_copy_with_new_metadata(store: S3ObjectStore) -> None:
    store.put_bytes("src/persona.json", b'{"a": 1}', metadata={"stage": "draft", "run": "r1"})
    copied = store.copy("src/persona.json", "dst/persona.json", metadata={"stage": "published"})
    assert copied == StoredObject("dst/persona.json", 8, "application/json", {"stage": "published"})
    assert store.get_bytes("dst/persona.json") == b'{"a": 1}'
    assert store.head("dst/persona.json") == copied
    assert store.head("src/persona.json") == StoredObject(
        "src/persona.json", 8, "application/json", {"stage": "draft", "run": "r1"}
    )
    assert _raw_head(store, "dst/persona.json").get("ServerSideEncryption") == "AES256"


def test_copy_keeps_metadata_by_default(store: S3ObjectStore) -> None:
    store.put_bytes("a.png", b"\x89PNG", metadata={"persona": "p1"})
    store.copy("a.png", "b.png")
    assert store.head("b.png") == StoredObject("b.png", 4, "image/png", {"persona": "p1"})


def test_copy_of_missing_key_raises(store: S3ObjectStore) -> None:
    with pytest.raises(StorageError, match=r"missing\.json"):
        store.copy("missing.json", "x.json")


def test_list_keys_respects_and_strips_the_prefix(s3_bucket: tuple[Any, str]) -> None:
    client, bucket = s3_bucket
    store = S3ObjectStore(bucket, "pp", client=client)
    neighbour = S3ObjectStore(bucket, "pp2", client=client)  # same leading characters, different prefix
    for key in ["dt=2024-05-01/a.json", "dt=2024-05-01/images/p1/x.png", "dt=2024-05-02/a.json", "tables/t/x.parquet"]:
        store.put_bytes(key, b"1")
    neighbour.put_bytes("dt=2024-05-01/other.json", b"2")
    client.put_object(Bucket=bucket, Key="outside.txt", Body=b"3")

    assert store.list_keys() == [
        "dt=2024-05-01/a.json",
        "dt=2024-05-01/images/p1/x.png",
        "dt=2024-05-02/a.json",
        "tables/t/x.parquet",
    ]
    assert store.list_keys("dt=2024-05-01/") == ["dt=2024-05-01/a.json", "dt=2024-05-01/images/p1/x.png"]
    assert store.list_keys("dt=2024-05-0") == [
        "dt=2024-05-01/a.json",
        "dt=2024-05-01/images/p1/x.png",
        "dt=2024-05-02/a.json",
    ]
    assert store.list_keys("nothing/") == []
    assert neighbour.list_keys() == ["dt=2024-05-01/other.json"]
    unprefixed = S3ObjectStore(bucket, "", client=client)
    assert "outside.txt" in unprefixed.list_keys()
    assert "pp/dt=2024-05-01/a.json" in unprefixed.list_keys("pp/")


def test_list_keys_pages_past_1000(store: S3ObjectStore) -> None:
    keys = [f"many/{i:05d}.txt" for i in range(1_005)]
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda key: store.client.put_object(Bucket=store.bucket, Key=f"{PREFIX}/{key}", Body=b""), keys))
    assert store.list_keys("many/") == keys
    assert store.delete_prefix("many/") == 1_005
    assert store.list_keys() == []


def test_delete_prefix_removes_only_that_prefix(s3_bucket: tuple[Any, str]) -> None:
    client, bucket = s3_bucket
    store = S3ObjectStore(bucket, PREFIX, client=client)
    other = S3ObjectStore(bucket, "other", client=client)
    for key in ["dt=2024-05-01/a.json", "dt=2024-05-01/b/c.png", "dt=2024-05-02/a.json"]:
        store.put_bytes(key, b"1")
        other.put_bytes(key, b"1")
    assert store.delete_prefix("dt=2024-05-01/") == 2
    assert store.list_keys() == ["dt=2024-05-02/a.json"]
    assert len(other.list_keys()) == 3
    assert store.delete_prefix("dt=2024-05-01/") == 0
    assert store.delete_prefix("") == 1
    assert store.list_keys() == []
    assert len(other.list_keys()) == 3


def test_url_for_is_a_working_presigned_url(store: S3ObjectStore) -> None:
    data = os.urandom(2048)
    store.put_bytes("dt=2024-05-01/images/p 1/portrait+1.png", data)
    url = store.url_for("dt=2024-05-01/images/p 1/portrait+1.png")
    assert url.startswith(f"{store.client.meta.endpoint_url}/{store.bucket}/{PREFIX}/")
    assert "X-Amz-Signature=" in url
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == data
        assert response.headers["Content-Type"] == "image/png"


def test_url_for_honours_presign_seconds(s3_bucket: tuple[Any, str]) -> None:
    client, bucket = s3_bucket
    store = S3ObjectStore(bucket, PREFIX, client=client, presign_seconds=600)
    assert "X-Amz-Expires=600" in store.url_for("a.png")


def test_url_for_with_public_base_url(s3_bucket: tuple[Any, str]) -> None:
    client, bucket = s3_bucket
    store = S3ObjectStore(bucket, PREFIX, client=client, public_base_url="https://cdn.example.com/assets/")
    url = store.url_for("dt=2024-05-01/images/p 1/a.png")
    assert url.startswith("https://cdn.example.com/assets/")
    assert url == f"https://cdn.example.com/assets/{PREFIX}/dt%3D2024-05-01/images/p%201/a.png"


def test_uri_for(store: S3ObjectStore) -> None:
    assert store.uri_for("dt=2024-05-01/index.html") == f"s3://{store.bucket}/{PREFIX}/dt=2024-05-01/index.html"
    assert S3ObjectStore("b", "", client=store.client).uri_for("k.json") == "s3://b/k.json"


@pytest.mark.parametrize(("size", "parts"), [(6 * MIB, 1), (17 * MIB, 3)])
def test_multipart_upload_path(s3_bucket: tuple[Any, str], size: int, parts: int) -> None:
    client, bucket = s3_bucket
    store = S3ObjectStore(bucket, PREFIX, client=client, multipart_threshold=5 * MIB)
    data = os.urandom(size)
    info = store.put_bytes("dt=2024-05-01/features/part-00000.parquet", data, metadata={"rows": "12"})
    assert info.size == size
    raw = _raw_head(store, "dt=2024-05-01/features/part-00000.parquet")
    assert raw["ETag"].strip('"').endswith(f"-{parts}")  # multipart ETag: md5-of-md5s "-<part count>"
    assert raw["ContentLength"] == size
    assert raw["ContentType"] == "application/vnd.apache.parquet"
    assert raw["Metadata"] == {"rows": "12"}
    assert raw.get("ServerSideEncryption") == "AES256"
    assert store.get_bytes("dt=2024-05-01/features/part-00000.parquet") == data


def test_below_threshold_is_a_single_put(s3_bucket: tuple[Any, str]) -> None:
    client, bucket = s3_bucket
    store = S3ObjectStore(bucket, PREFIX, client=client, multipart_threshold=5 * MIB)
    store.put_bytes("small.bin", os.urandom(5 * MIB - 1))
    assert "-" not in _raw_head(store, "small.bin")["ETag"]


def test_parquet_helpers_round_trip(store: S3ObjectStore) -> None:
    table = pa.table(
        {
            "customer_id": pa.array([1, 2, 3], pa.int64()),
            "segment": ["a", "b", None],
            "spend": [1.5, 2.25, 0.0],
            "day": [dt.date(2024, 5, 1)] * 3,
        }
    )
    size = write_parquet(store, "dt=2024-05-01/features/part-00000.parquet", table, metadata={"rows": "3"})
    head = store.head("dt=2024-05-01/features/part-00000.parquet")
    assert head == StoredObject(
        "dt=2024-05-01/features/part-00000.parquet", size, "application/vnd.apache.parquet", {"rows": "3"}
    )
    assert read_parquet(store, "dt=2024-05-01/features/part-00000.parquet").equals(table)


def test_json_helpers_round_trip(store: S3ObjectStore) -> None:
    payload = {"persona_id": "p1", "name": "Zoë", "traits": ["thrifty", "loyal"], "score": 0.5, "extra": None}
    write_json(store, "dt=2024-05-01/personas/p1.json", payload, metadata={"schema": "1"})
    assert read_json(store, "dt=2024-05-01/personas/p1.json") == payload
    head = store.head("dt=2024-05-01/personas/p1.json")
    assert head is not None and head.content_type == "application/json" and head.metadata == {"schema": "1"}
    assert "Zoë".encode() in store.get_bytes("dt=2024-05-01/personas/p1.json")


@pytest.mark.parametrize("key", ["../x", "/abs", "", "a/../b", "a\\b"])
def test_invalid_keys_raise(store: S3ObjectStore, key: str) -> None:
    with pytest.raises(StorageError, match="invalid object key"):
        store.put_bytes(key, b"x")
    with pytest.raises(StorageError, match="invalid object key"):
        store.get_bytes(key)
    with pytest.raises(StorageError, match="invalid object key"):
        store.head(key)
    with pytest.raises(StorageError, match="invalid object key"):
        store.url_for(key)
    with pytest.raises(StorageError, match="invalid object key"):
        store.uri_for(key)
    store.put_bytes("ok.txt", b"x")
    with pytest.raises(StorageError, match="invalid object key"):
        store.copy("ok.txt", key)


def test_head_of_missing_key_is_none(store: S3ObjectStore) -> None:
    assert store.head("dt=2024-05-01/missing.json") is None


def test_get_of_missing_key_names_the_key(store: S3ObjectStore) -> None:
    with pytest.raises(StorageError, match=r"dt=2024-05-01/missing\.json"):
        store.get_bytes("dt=2024-05-01/missing.json")


def test_wrong_credentials_surface_as_storage_error(s3_server: SeaweedS3Server, s3_bucket: tuple[Any, str]) -> None:
    _, bucket = s3_bucket
    bad = S3ObjectStore(bucket, PREFIX, client=s3_server.client(secret_key="wrong", retries={"max_attempts": 1}))
    with pytest.raises(StorageError, match="SignatureDoesNotMatch"):
        bad.put_bytes("x.txt", b"x")
    with pytest.raises(StorageError, match=r"x\.txt"):
        bad.get_bytes("x.txt")


def test_missing_bucket_surfaces_as_storage_error(s3_server: SeaweedS3Server) -> None:
    store = S3ObjectStore(f"absent-{uuid.uuid4().hex[:12]}", PREFIX, client=s3_server.client())
    with pytest.raises(StorageError):
        store.get_bytes("x.txt")
    with pytest.raises(StorageError):
        store.list_keys()


def test_open_store_builds_a_working_s3_store(
    s3_server: SeaweedS3Server, s3_bucket: tuple[Any, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    _, bucket = s3_bucket
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "absent-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "absent-credentials"))
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    settings = StorageSettings(
        kind="s3", bucket=bucket, prefix="/pp/", endpoint_url=s3_server.endpoint_url, region="us-east-1",
        presign_seconds=3600,
    )  # fmt: skip
    store = open_store(settings)
    assert isinstance(store, S3ObjectStore)
    assert (store.bucket, store.prefix, store.presign_seconds, store.server_side_encryption) == (
        bucket,
        "pp",
        3600,
        "AES256",
    )
    store.put_bytes("dt=2024-05-01/index.html", b"<html></html>")
    assert store.get_bytes("dt=2024-05-01/index.html") == b"<html></html>"
    assert store.list_keys() == ["dt=2024-05-01/index.html"]
    with urllib.request.urlopen(store.url_for("dt=2024-05-01/index.html"), timeout=10) as response:
        assert response.read() == b"<html></html>"
    assert _raw_head(store, "dt=2024-05-01/index.html").get("ServerSideEncryption") == "AES256"
