"""Object store: one interface, a local-directory implementation and an S3 (boto3) implementation.

Keys are relative to the store's prefix and use the same layout everywhere::

    dt=YYYY-MM-DD/features/part-00000.parquet    intermediate data of the run for date D
    dt=YYYY-MM-DD/personas/<persona_id>.json      persona documents
    dt=YYYY-MM-DD/images/<persona_id>/<variant>.png
    dt=YYYY-MM-DD/index.html                      the gallery
    tables/<table>/dt=YYYY-MM-DD/part-00000.parquet   BI table copies (Hive-style partitions)
    cache/images/<cache_key>.<ext>                content-addressed image cache (shared by all runs)
"""

from __future__ import annotations

import io
import json
import mimetypes
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from urllib.parse import quote

from persona_pipeline.exceptions import StorageError

if TYPE_CHECKING:
    import pyarrow as pa

    from persona_pipeline.config import StorageSettings


@dataclass(frozen=True)
class StoredObject:
    """What the store knows about one object."""

    key: str
    size: int
    content_type: str
    metadata: dict[str, str]


@runtime_checkable
class ObjectStore(Protocol):
    """The operations every stage needs from an object store."""

    def put_bytes(
        self, key: str, data: bytes, *, content_type: str | None = None, metadata: Mapping[str, str] | None = None
    ) -> StoredObject: ...

    def get_bytes(self, key: str) -> bytes: ...

    def head(self, key: str) -> StoredObject | None: ...

    def copy(self, source_key: str, dest_key: str, *, metadata: Mapping[str, str] | None = None) -> StoredObject: ...

    def list_keys(self, prefix: str = "") -> list[str]: ...

    def delete_prefix(self, prefix: str) -> int: ...

    def url_for(self, key: str) -> str: ...

    def uri_for(self, key: str) -> str: ...


def guess_content_type(key: str) -> str:
    """Content type from the key's extension (Parquet and JSON included)."""
    if key.endswith(".parquet"):
        return "application/vnd.apache.parquet"
    if key.endswith(".json"):
        return "application/json"
    guessed, _ = mimetypes.guess_type(key)
    return guessed or "application/octet-stream"


def _check_key(key: str) -> str:
    if not key or key.startswith("/") or ".." in key.split("/") or "\\" in key:
        raise StorageError(f"invalid object key {key!r}: keys are relative, '/'-separated and never contain '..'")
    return key


class LocalObjectStore:
    """A directory that behaves like a bucket: same keys, metadata kept in ``.meta.json`` sidecar files.

    Writes are atomic (temporary file + rename), so a reader never sees half an object.
    """

    _META_SUFFIX = ".meta.json"

    def __init__(self, root: str | Path, prefix: str = "") -> None:
        self.root = Path(root).resolve()
        self.prefix = prefix.strip("/")
        self.base = self.root / self.prefix if self.prefix else self.root

    def __repr__(self) -> str:
        return f"LocalObjectStore({str(self.base)!r})"

    def path_for(self, key: str) -> Path:
        """Filesystem path of ``key`` (useful for opening the gallery locally)."""
        return self.base / _check_key(key)

    def put_bytes(
        self, key: str, data: bytes, *, content_type: str | None = None, metadata: Mapping[str, str] | None = None
    ) -> StoredObject:
        path = self.path_for(key)
        info = StoredObject(key, len(data), content_type or guess_content_type(key), dict(metadata or {}))
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._atomic_write(path, data)
            meta = {"content_type": info.content_type, "metadata": info.metadata}
            self._atomic_write(path.with_name(path.name + self._META_SUFFIX), json.dumps(meta).encode())
        except OSError as exc:
            raise StorageError(f"cannot write {key!r} to local store {self.base}: {exc.strerror or exc}") from exc
        return info

    @staticmethod
    def _atomic_write(path: Path, data: bytes) -> None:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get_bytes(self, key: str) -> bytes:
        try:
            return self.path_for(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise StorageError(f"object {key!r} not found in local store {self.base}") from exc

    def head(self, key: str) -> StoredObject | None:
        path = self.path_for(key)
        if not path.is_file():
            return None
        meta_path = path.with_name(path.name + self._META_SUFFIX)
        meta: dict[str, Any] = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        return StoredObject(
            key,
            path.stat().st_size,
            str(meta.get("content_type") or guess_content_type(key)),
            dict(meta.get("metadata") or {}),
        )

    def copy(self, source_key: str, dest_key: str, *, metadata: Mapping[str, str] | None = None) -> StoredObject:
        source = self.head(source_key)
        if source is None:
            raise StorageError(f"cannot copy {source_key!r}: not found in local store {self.base}")
        return self.put_bytes(
            dest_key,
            self.get_bytes(source_key),
            content_type=source.content_type,
            metadata=dict(metadata) if metadata is not None else source.metadata,
        )

    def list_keys(self, prefix: str = "") -> list[str]:
        if not self.base.exists():
            return []
        keys = []
        for path in self.base.rglob("*"):
            if path.is_file() and not path.name.endswith(self._META_SUFFIX) and not path.name.startswith(".tmp-"):
                key = path.relative_to(self.base).as_posix()
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    def delete_prefix(self, prefix: str) -> int:
        keys = self.list_keys(prefix)
        for key in keys:
            path = self.path_for(key)
            path.unlink(missing_ok=True)
            path.with_name(path.name + self._META_SUFFIX).unlink(missing_ok=True)
        directory = self.base / prefix.rstrip("/")
        if prefix.endswith("/") and directory.is_dir() and not any(directory.rglob("*")):
            shutil.rmtree(directory, ignore_errors=True)
        return len(keys)

    def url_for(self, key: str) -> str:
        return self.path_for(key).as_uri()

    def uri_for(self, key: str) -> str:
        return self.path_for(key).as_uri()


class S3ObjectStore:
    """An S3 bucket (or any S3-compatible endpoint) through boto3.

    Every object is written with a ContentType, user metadata, server-side encryption (unless disabled) and a
    SHA-256 checksum the server verifies. Large bodies go up as multipart uploads (boto3's transfer manager).
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        client: Any | None = None,
        endpoint_url: str | None = None,
        region: str | None = None,
        public_base_url: str | None = None,
        presign_seconds: int = 7 * 24 * 3600,
        server_side_encryption: str | None = "AES256",
        kms_key_id: str | None = None,
        multipart_threshold: int = 16 * 1024 * 1024,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.public_base_url = public_base_url.rstrip("/") if public_base_url else None
        self.presign_seconds = presign_seconds
        self.server_side_encryption = server_side_encryption
        self.kms_key_id = kms_key_id
        self.multipart_threshold = multipart_threshold
        if client is None:
            import boto3
            from botocore.config import Config

            client = boto3.client(
                "s3",
                endpoint_url=endpoint_url,
                region_name=region,
                # SigV4 explicitly: botocore may presign with legacy SigV2, which AWS rejects for newer buckets,
                # newer regions and SSE-KMS objects, so image_url links would not open.
                config=Config(
                    retries={"max_attempts": 5, "mode": "standard"},
                    s3={"addressing_style": "path"},
                    signature_version="s3v4",
                ),
            )
        self.client = client

    def __repr__(self) -> str:
        return f"S3ObjectStore(s3://{self.bucket}/{self.prefix})"

    def _full(self, key: str) -> str:
        _check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _extra_args(self, content_type: str, metadata: Mapping[str, str]) -> dict[str, Any]:
        extra: dict[str, Any] = {"ContentType": content_type, "Metadata": _ascii_metadata(metadata)}
        if self.server_side_encryption:
            extra["ServerSideEncryption"] = self.server_side_encryption
            if self.server_side_encryption == "aws:kms" and self.kms_key_id:
                extra["SSEKMSKeyId"] = self.kms_key_id
        return extra

    def put_bytes(
        self, key: str, data: bytes, *, content_type: str | None = None, metadata: Mapping[str, str] | None = None
    ) -> StoredObject:
        info = StoredObject(key, len(data), content_type or guess_content_type(key), dict(metadata or {}))
        extra = self._extra_args(info.content_type, info.metadata)
        try:
            if len(data) >= self.multipart_threshold:
                from boto3.s3.transfer import TransferConfig

                config = TransferConfig(
                    multipart_threshold=self.multipart_threshold, multipart_chunksize=8 * 1024 * 1024
                )
                self.client.upload_fileobj(
                    io.BytesIO(data), self.bucket, self._full(key), ExtraArgs=extra, Config=config
                )
            else:
                self.client.put_object(
                    Bucket=self.bucket, Key=self._full(key), Body=data, ChecksumAlgorithm="SHA256", **extra
                )
        except Exception as exc:  # botocore raises many types; all mean the write did not happen
            raise StorageError(f"cannot write s3://{self.bucket}/{self._full(key)}: {exc}") from exc
        return info

    def get_bytes(self, key: str) -> bytes:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._full(key))
            return bytes(response["Body"].read())
        except Exception as exc:
            raise StorageError(f"cannot read s3://{self.bucket}/{self._full(key)}: {exc}") from exc

    def head(self, key: str) -> StoredObject | None:
        from botocore.exceptions import ClientError

        try:
            response = self.client.head_object(Bucket=self.bucket, Key=self._full(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                return None
            raise StorageError(f"cannot stat s3://{self.bucket}/{self._full(key)}: {exc}") from exc
        except Exception as exc:  # connection refused, timeouts: botocore raises many types
            raise StorageError(f"cannot stat s3://{self.bucket}/{self._full(key)}: {exc}") from exc
        return StoredObject(
            key,
            int(response.get("ContentLength", 0)),
            str(response.get("ContentType", "application/octet-stream")),
            dict(response.get("Metadata", {})),
        )

    def copy(self, source_key: str, dest_key: str, *, metadata: Mapping[str, str] | None = None) -> StoredObject:
        source = self.head(source_key)
        if source is None:
            raise StorageError(f"cannot copy s3://{self.bucket}/{self._full(source_key)}: not found")
        new_meta = dict(metadata) if metadata is not None else source.metadata
        try:
            self.client.copy_object(
                Bucket=self.bucket,
                Key=self._full(dest_key),
                CopySource={"Bucket": self.bucket, "Key": self._full(source_key)},
                MetadataDirective="REPLACE",
                **self._extra_args(source.content_type, new_meta),
            )
        except Exception as exc:
            raise StorageError(f"cannot copy to s3://{self.bucket}/{self._full(dest_key)}: {exc}") from exc
        return StoredObject(dest_key, source.size, source.content_type, new_meta)

    def _iter_keys(self, prefix: str) -> Iterator[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        full_prefix = self._full(prefix) if prefix else (f"{self.prefix}/" if self.prefix else "")
        strip = len(self.prefix) + 1 if self.prefix else 0
        for page in paginator.paginate(Bucket=self.bucket, Prefix=full_prefix):
            for item in page.get("Contents", []):
                yield str(item["Key"])[strip:]

    def list_keys(self, prefix: str = "") -> list[str]:
        try:
            return sorted(self._iter_keys(prefix))
        except Exception as exc:
            raise StorageError(f"cannot list s3://{self.bucket}/{self._full(prefix or 'x')[:-1]}: {exc}") from exc

    def delete_prefix(self, prefix: str) -> int:
        keys = self.list_keys(prefix)
        where = "s3://" + "/".join(part for part in (self.bucket, self.prefix, prefix) if part)
        for start in range(0, len(keys), 1000):
            batch = [{"Key": self._full(key)} for key in keys[start : start + 1000]]
            try:
                response = self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
            except Exception as exc:
                raise StorageError(f"cannot delete under {where}: {exc}") from exc
            # DeleteObjects answers 200 even when keys fail; a stale object left behind would be read as current.
            errors = response.get("Errors") or []
            if errors:
                first = errors[0]
                raise StorageError(
                    f"cannot delete {len(errors)} object(s) under {where}, e.g. "
                    f"{first.get('Key')}: {first.get('Code')} {first.get('Message')}"
                )
        return len(keys)

    def url_for(self, key: str) -> str:
        if self.public_base_url:
            return f"{self.public_base_url}/{quote(self._full(key))}"
        return str(
            self.client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": self._full(key)}, ExpiresIn=self.presign_seconds
            )
        )

    def uri_for(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._full(key)}"


def _ascii_metadata(metadata: Mapping[str, str]) -> dict[str, str]:
    # S3 user metadata travels in HTTP headers: keep it ASCII so every S3 implementation accepts it.
    return {
        key.lower(): str(value).encode("ascii", "backslashreplace").decode("ascii") for key, value in metadata.items()
    }


def open_store(settings: StorageSettings) -> ObjectStore:
    """Build the object store the settings describe."""
    if settings.kind == "local":
        return LocalObjectStore(settings.root, settings.prefix)
    assert settings.bucket is not None  # guaranteed by StorageSettings validation
    return S3ObjectStore(
        settings.bucket,
        settings.prefix,
        endpoint_url=settings.endpoint_url,
        region=settings.region,
        public_base_url=settings.public_base_url,
        presign_seconds=settings.presign_seconds,
        server_side_encryption=settings.server_side_encryption,
        kms_key_id=settings.kms_key_id,
    )


def write_parquet(store: ObjectStore, key: str, table: pa.Table, *, metadata: Mapping[str, str] | None = None) -> int:
    """Write an Arrow table as one Parquet object (zstd); returns its size in bytes."""
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    data = buffer.getvalue()
    store.put_bytes(key, data, content_type="application/vnd.apache.parquet", metadata=metadata)
    return len(data)


def read_parquet(store: ObjectStore, key: str, *, columns: Sequence[str] | None = None) -> pa.Table:
    """Read one Parquet object into an Arrow table.

    With ``columns``, only those of them the object has are decoded (in the object's column order).
    """
    import pyarrow.parquet as pq

    source = pq.ParquetFile(io.BytesIO(store.get_bytes(key)))
    if columns is None:
        return source.read()
    wanted = set(columns)
    return source.read(columns=[name for name in source.schema_arrow.names if name in wanted])


def write_json(store: ObjectStore, key: str, payload: Any, *, metadata: Mapping[str, str] | None = None) -> None:
    """Write a JSON document (UTF-8, stable key order)."""
    data = json.dumps(payload, indent=2, sort_keys=True, ensure_ascii=False).encode("utf-8")
    store.put_bytes(key, data, content_type="application/json", metadata=metadata)


def read_json(store: ObjectStore, key: str) -> Any:
    """Read a JSON document written by :func:`write_json`."""
    return json.loads(store.get_bytes(key).decode("utf-8"))
