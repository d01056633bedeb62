"""LocalObjectStore (a directory that behaves like a bucket), the helpers, and open_store."""

from __future__ import annotations

import datetime as dt
import json
import os
import urllib.request
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from persona_pipeline.config import StorageSettings
from persona_pipeline.exceptions import StorageError
from persona_pipeline.storage import (
    LocalObjectStore,
    ObjectStore,
    S3ObjectStore,
    StoredObject,
    guess_content_type,
    open_store,
    read_json,
    read_parquet,
    write_json,
    write_parquet,
)

PREFIX = "persona-pipeline"


@pytest.fixture
def store(tmp_path: Path) -> LocalObjectStore:
    return LocalObjectStore(tmp_path, PREFIX)


def _all_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_store_satisfies_the_protocol(store: LocalObjectStore, tmp_path: Path) -> None:
    assert isinstance(store, ObjectStore)
    assert store.base == tmp_path.resolve() / PREFIX
    assert repr(store) == f"LocalObjectStore({str(tmp_path.resolve() / PREFIX)!r})"


def test_put_get_round_trip(store: LocalObjectStore, tmp_path: Path) -> None:
    data = os.urandom(10_000)
    info = store.put_bytes("dt=2024-05-01/blob.bin", data, metadata={"run_id": "r1"})
    assert info == StoredObject("dt=2024-05-01/blob.bin", len(data), "application/octet-stream", {"run_id": "r1"})
    assert store.get_bytes("dt=2024-05-01/blob.bin") == data
    assert store.path_for("dt=2024-05-01/blob.bin") == tmp_path.resolve() / PREFIX / "dt=2024-05-01/blob.bin"
    assert store.path_for("dt=2024-05-01/blob.bin").read_bytes() == data
    assert store.head("dt=2024-05-01/blob.bin") == info


def test_overwrite_replaces_content_and_metadata(store: LocalObjectStore) -> None:
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
def test_content_type_is_guessed_and_stored(store: LocalObjectStore, key: str, content_type: str) -> None:
    assert guess_content_type(key) == content_type
    assert store.put_bytes(key, b"x").content_type == content_type
    assert store.head(key) == StoredObject(key, 1, content_type, {})


def test_explicit_content_type_wins(store: LocalObjectStore) -> None:
    store.put_bytes("report.bin", b"<p>", content_type="text/html; charset=utf-8")
    head = store.head("report.bin")
    assert head is not None and head.content_type == "text/html; charset=utf-8"


def test_metadata_round_trip_keeps_names_and_values(store: LocalObjectStore) -> None:
    metadata = {"Run-Id": "run-42", "config_hash": "abc123", "Note": "café"}
    store.put_bytes("m.json", b"{}", metadata=metadata)
    head = store.head("m.json")
    assert head is not None and head.metadata == metadata
    sidecar = store.path_for("m.json").with_name("m.json.meta.json")
    assert json.loads(sidecar.read_text()) == {"content_type": "application/json", "metadata": metadata}


def test_head_without_sidecar_guesses(store: LocalObjectStore) -> None:
    path = store.path_for("dropped-in/photo.png")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x89PNG")
    assert store.head("dropped-in/photo.png") == StoredObject("dropped-in/photo.png", 4, "image/png", {})


def test_atomic_write_leaves_no_temporary_files(store: LocalObjectStore, tmp_path: Path) -> None:
    for i in range(5):
        store.put_bytes(f"dt=2024-05-01/personas/p{i}.json", b"{}")
    files = _all_files(tmp_path)
    assert not [f for f in files if Path(f).name.startswith(".tmp-")]
    assert len(files) == 10  # five objects, five metadata sidecars


def test_failed_write_keeps_the_old_object_and_no_temporary_file(
    store: LocalObjectStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.put_bytes("dt=2024-05-01/index.html", b"old")

    def refuse(src: Any, dst: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(StorageError, match=r"index\.html.*No space left"):
        store.put_bytes("dt=2024-05-01/index.html", b"new")
    monkeypatch.undo()
    assert store.get_bytes("dt=2024-05-01/index.html") == b"old"
    assert not [f for f in _all_files(tmp_path) if Path(f).name.startswith(".tmp-")]


def test_temporary_files_are_never_listed(store: LocalObjectStore) -> None:
    store.put_bytes("a/b.json", b"{}")
    (store.path_for("a/b.json").parent / ".tmp-abc123.json").write_bytes(b"half")
    assert store.list_keys() == ["a/b.json"]


def test_copy_with_new_metadata(store: LocalObjectStore) -> None:
    store.put_bytes("src/persona.json", b'{"a": 1}', metadata={"stage": "draft", "run": "r1"})
    copied = store.copy("src/persona.json", "dst/persona.json", metadata={"stage": "published"})
    assert copied == StoredObject("dst/persona.json", 8, "application/json", {"stage": "published"})
    assert store.get_bytes("dst/persona.json") == b'{"a": 1}'
    assert store.head("dst/persona.json") == copied
    assert store.head("src/persona.json") == StoredObject(
        "src/persona.json", 8, "application/json", {"stage": "draft", "run": "r1"}
    )


def test_copy_keeps_content_type_and_metadata_by_default(store: LocalObjectStore) -> None:
    store.put_bytes("a.bin", b"\x89PNG", content_type="image/png", metadata={"persona": "p1"})
    store.copy("a.bin", "b.dat")
    assert store.head("b.dat") == StoredObject("b.dat", 4, "image/png", {"persona": "p1"})


def test_copy_of_missing_key_raises(store: LocalObjectStore) -> None:
    with pytest.raises(StorageError, match=r"missing\.json"):
        store.copy("missing.json", "x.json")


def test_list_keys_respects_and_strips_the_prefix(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path, "pp")
    neighbour = LocalObjectStore(tmp_path, "pp2")
    for key in ["dt=2024-05-01/a.json", "dt=2024-05-01/images/p1/x.png", "dt=2024-05-02/a.json", "tables/t/x.parquet"]:
        store.put_bytes(key, b"1")
    neighbour.put_bytes("dt=2024-05-01/other.json", b"2")
    (tmp_path / "outside.txt").write_text("3")

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
    unprefixed = LocalObjectStore(tmp_path)
    assert "outside.txt" in unprefixed.list_keys()
    assert "pp/dt=2024-05-01/a.json" in unprefixed.list_keys("pp/")


def test_list_keys_of_a_store_never_written_is_empty(tmp_path: Path) -> None:
    assert LocalObjectStore(tmp_path / "does-not-exist", "pp").list_keys() == []


def test_prefix_slashes_are_stripped(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path, "/pp/")
    store.put_bytes("k.txt", b"1")
    assert (tmp_path / "pp" / "k.txt").read_bytes() == b"1"


def test_delete_prefix_removes_objects_and_sidecars(store: LocalObjectStore, tmp_path: Path) -> None:
    other = LocalObjectStore(tmp_path, "other")
    for key in ["dt=2024-05-01/a.json", "dt=2024-05-01/b/c.png", "dt=2024-05-02/a.json"]:
        store.put_bytes(key, b"1")
        other.put_bytes(key, b"1")
    assert store.delete_prefix("dt=2024-05-01/") == 2
    assert store.list_keys() == ["dt=2024-05-02/a.json"]
    assert not [f for f in _all_files(tmp_path / PREFIX) if f.startswith("dt=2024-05-01/")]
    assert len(other.list_keys()) == 3
    assert store.delete_prefix("dt=2024-05-01/") == 0
    assert store.delete_prefix("") == 1
    assert store.list_keys() == []
    assert _all_files(tmp_path / PREFIX) == []
    assert len(other.list_keys()) == 3


def test_url_for_and_uri_for_are_file_uris(store: LocalObjectStore) -> None:
    store.put_bytes("dt=2024-05-01/images/p 1/a.png", b"\x89PNG data")
    url = store.url_for("dt=2024-05-01/images/p 1/a.png")
    assert url == store.path_for("dt=2024-05-01/images/p 1/a.png").as_uri()
    assert url.startswith("file:///") and "p%201" in url
    assert store.uri_for("dt=2024-05-01/images/p 1/a.png") == url
    with urllib.request.urlopen(url) as response:
        assert response.read() == b"\x89PNG data"


def test_parquet_helpers_round_trip(store: LocalObjectStore) -> None:
    table = pa.table(
        {
            "customer_id": pa.array([1, 2, 3], pa.int64()),
            "segment": ["a", "b", None],
            "spend": [1.5, 2.25, 0.0],
            "day": [dt.date(2024, 5, 1)] * 3,
        }
    )
    size = write_parquet(store, "dt=2024-05-01/features/part-00000.parquet", table, metadata={"rows": "3"})
    assert store.head("dt=2024-05-01/features/part-00000.parquet") == StoredObject(
        "dt=2024-05-01/features/part-00000.parquet", size, "application/vnd.apache.parquet", {"rows": "3"}
    )
    assert read_parquet(store, "dt=2024-05-01/features/part-00000.parquet").equals(table)


def test_json_helpers_round_trip(store: LocalObjectStore) -> None:
    payload = {"persona_id": "p1", "name": "Zoë", "traits": ["thrifty", "loyal"], "score": 0.5, "extra": None}
    write_json(store, "dt=2024-05-01/personas/p1.json", payload, metadata={"schema": "1"})
    assert read_json(store, "dt=2024-05-01/personas/p1.json") == payload
    raw = store.get_bytes("dt=2024-05-01/personas/p1.json")
    assert "Zoë".encode() in raw  # UTF-8, not \\u escapes
    assert raw.index(b'"extra"') < raw.index(b'"name"') < raw.index(b'"persona_id"')  # stable key order
    head = store.head("dt=2024-05-01/personas/p1.json")
    assert head is not None and head.content_type == "application/json" and head.metadata == {"schema": "1"}


@pytest.mark.parametrize("key", ["../x", "/abs", "", "a/../b", "..", "a\\b"])
def test_invalid_keys_raise(store: LocalObjectStore, tmp_path: Path, key: str) -> None:
    for call in (
        lambda: store.put_bytes(key, b"x"),
        lambda: store.get_bytes(key),
        lambda: store.head(key),
        lambda: store.path_for(key),
        lambda: store.url_for(key),
        lambda: store.uri_for(key),
    ):
        with pytest.raises(StorageError, match="invalid object key"):
            call()
    store.put_bytes("ok.txt", b"x")
    with pytest.raises(StorageError, match="invalid object key"):
        store.copy("ok.txt", key)
    assert not (tmp_path / "x").exists()


def test_head_of_missing_key_is_none(store: LocalObjectStore) -> None:
    assert store.head("dt=2024-05-01/missing.json") is None
    store.put_bytes("dt=2024-05-01/present.json", b"{}")
    assert store.head("dt=2024-05-01") is None  # a "directory" is not an object


def test_get_of_missing_key_names_the_key(store: LocalObjectStore) -> None:
    with pytest.raises(StorageError, match=r"dt=2024-05-01/missing\.json"):
        store.get_bytes("dt=2024-05-01/missing.json")


def test_get_of_a_prefix_or_through_an_object_is_missing(store: LocalObjectStore) -> None:
    store.put_bytes("dt=2024-05-01/index.html", b"<html>")
    with pytest.raises(StorageError, match="'dt=2024-05-01' not found"):
        store.get_bytes("dt=2024-05-01")
    with pytest.raises(StorageError, match=r"index\.html/x' not found"):
        store.get_bytes("dt=2024-05-01/index.html/x")


def test_write_below_an_existing_object_raises_storage_error(store: LocalObjectStore) -> None:
    store.put_bytes("a.txt", b"1")
    with pytest.raises(StorageError, match=r"a\.txt/b\.txt"):
        store.put_bytes("a.txt/b.txt", b"2")


def test_open_store_local(tmp_path: Path) -> None:
    store = open_store(StorageSettings(kind="local", root=str(tmp_path / "objects"), prefix="pp"))
    assert isinstance(store, LocalObjectStore)
    assert store.base == (tmp_path / "objects" / "pp").resolve()
    store.put_bytes("k.json", b"{}")
    assert (tmp_path / "objects" / "pp" / "k.json").read_bytes() == b"{}"


def test_open_store_defaults_to_local() -> None:
    assert isinstance(open_store(StorageSettings()), LocalObjectStore)


def test_open_store_s3_passes_every_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    settings = StorageSettings(
        kind="s3",
        bucket="personas",
        prefix="pp",
        endpoint_url="http://127.0.0.1:9",
        region="eu-west-1",
        public_base_url="https://cdn.example.com/",
        presign_seconds=600,
        server_side_encryption="aws:kms",
        kms_key_id="alias/personas",
    )
    store = open_store(settings)
    assert isinstance(store, S3ObjectStore)
    assert (store.bucket, store.prefix, store.public_base_url, store.presign_seconds) == (
        "personas",
        "pp",
        "https://cdn.example.com",
        600,
    )
    assert (store.server_side_encryption, store.kms_key_id) == ("aws:kms", "alias/personas")
    assert store.client.meta.endpoint_url == "http://127.0.0.1:9"
    assert store.client.meta.region_name == "eu-west-1"
    assert store.url_for("a b.png") == "https://cdn.example.com/pp/a%20b.png"
    assert store.uri_for("a.png") == "s3://personas/pp/a.png"


def test_s3_settings_require_a_bucket() -> None:
    with pytest.raises(ValueError, match=r"storage\.bucket"):
        StorageSettings(kind="s3")
