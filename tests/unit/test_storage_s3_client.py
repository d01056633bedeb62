"""S3ObjectStore details that need no server: how its own client signs, and failed batch deletes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from persona_pipeline.exceptions import StorageError
from persona_pipeline.storage import S3ObjectStore


@pytest.mark.parametrize("region", ["us-east-1", None])
def test_presigned_urls_use_sigv4(region: str | None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAFAKEFAKEFAKEFAKE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "fake-secret-for-tests")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    for name in ("AWS_PROFILE", "AWS_DEFAULT_REGION", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    store = S3ObjectStore("bucket", "pp", endpoint_url="http://127.0.0.1:9", region=region)
    url = store.url_for("dt=2026-12-01/images/p/portrait-1.png")
    # botocore would presign with SigV2 here (AWSAccessKeyId=…&Signature=…), which AWS refuses for newer
    # buckets and regions and for SSE-KMS objects.
    assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in url and "us-east-1" in url
    assert "AWSAccessKeyId=" not in url


class _Paginator:
    def __init__(self, keys: list[str]) -> None:
        self.keys = keys

    def paginate(self, **_: Any) -> list[dict[str, Any]]:
        return [{"Contents": [{"Key": key} for key in self.keys]}]


class _FailingDeletes:
    """Answers DeleteObjects like S3 does when some keys cannot be deleted: HTTP 200 with per-key errors."""

    def __init__(self, keys: list[str]) -> None:
        self.keys = keys

    def get_paginator(self, name: str) -> _Paginator:
        assert name == "list_objects_v2"
        return _Paginator(self.keys)

    def delete_objects(self, **kwargs: Any) -> dict[str, Any]:
        first = kwargs["Delete"]["Objects"][0]["Key"]
        return {"Errors": [{"Key": first, "Code": "AccessDenied", "Message": "Access Denied"}]}


def test_delete_prefix_raises_when_the_server_keeps_objects() -> None:
    keys = ["pp/dt=2026-12-01/personas/a.json", "pp/dt=2026-12-01/personas/b.json"]
    store = S3ObjectStore("bucket", "pp", client=_FailingDeletes(keys))
    with pytest.raises(StorageError, match=r"cannot delete 1 object\(s\) under s3://bucket/pp/dt=2026-12-01/personas/"):
        store.delete_prefix("dt=2026-12-01/personas/")
