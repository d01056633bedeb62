"""Object store faults: an S3 server that hangs (SIGSTOP), one killed while images are uploaded, and a local
disk that refuses writes (a real ``RLIMIT_FSIZE`` on the pipeline's process).

Each fault fails the run with a :class:`StorageError` naming the object; nothing is published for the date, and a
rerun once the store is healthy leaves exactly one consistent partition.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from persona_pipeline import stages
from persona_pipeline.config import Settings
from persona_pipeline.exceptions import StorageError
from persona_pipeline.storage import LocalObjectStore, S3ObjectStore
from tests.fake_openai import FakeOpenAIServer
from tests.integration.test_pipeline_s3_openai import use_test_credentials
from tests.reliability.checks import (
    API_KEY,
    D,
    assert_consistent_partition,
    assert_nothing_published,
    context,
    latest_view_dates,
    make_settings,
    write_config,
)
from tests.services import SeaweedS3Server

PREFIX = "persona-pipeline"


def s3_settings(url: str, bucket: str, s3: SeaweedS3Server, fake: FakeOpenAIServer) -> Settings:
    return make_settings(
        url,
        **{
            "storage.kind": "s3",
            "storage.bucket": bucket,
            "storage.prefix": PREFIX,
            "storage.endpoint_url": s3.endpoint_url,
            "imaging.provider": "openai",
            "imaging.base_url": fake.base_url,
            "personas.styles": ["portrait"],
        },
    )


def impatient_store(s3: SeaweedS3Server, bucket: str) -> S3ObjectStore:
    """The pipeline's S3 store with a client that gives up within seconds (the default waits minutes)."""
    client = s3.client(connect_timeout=1, read_timeout=1, retries={"max_attempts": 2, "mode": "standard"})
    return S3ObjectStore(bucket, PREFIX, client=client)


@pytest.fixture
def s3_run(
    s3_server: SeaweedS3Server,
    s3_bucket: tuple[Any, str],
    warehouse_copy: Path,
    fake_openai: FakeOpenAIServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> tuple[Settings, str]:
    _, bucket = s3_bucket
    use_test_credentials(monkeypatch, s3_server, tmp_path)
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    return s3_settings(f"duckdb:///{warehouse_copy}", bucket, s3_server, fake_openai), bucket


@pytest.mark.integration
def test_s3_that_hangs_times_out_with_a_clear_error_then_a_rerun_succeeds(
    s3_server: SeaweedS3Server, s3_run: tuple[Settings, str]
) -> None:
    settings, bucket = s3_run
    store = impatient_store(s3_server, bucket)

    def freeze_after_planning(message: str) -> None:
        if message.startswith("personas:"):
            s3_server.pause()  # SIGSTOP: connections are accepted by the kernel, never answered

    started = time.monotonic()
    try:
        with pytest.raises(StorageError) as failure:
            stages.run_all(context(settings, D, "frozen", store=store, progress=freeze_after_planning))
    finally:
        s3_server.resume()
    elapsed = time.monotonic() - started

    assert s3_server.paused is False
    message = str(failure.value)
    assert f"s3://{bucket}/{PREFIX}/dt=2026-12-01/" in message
    assert "timeout" in message.lower()
    assert elapsed < 30
    assert_nothing_published(settings.warehouse.url, store, D)

    stages.run_all(context(settings, D, "after-thaw"))
    assert_consistent_partition(settings.warehouse.url, store, D, run_id="after-thaw")
    assert latest_view_dates(settings.warehouse.url) == D


@pytest.mark.integration
def test_s3_killed_while_images_upload_then_restarted_and_rerun(
    s3_server: SeaweedS3Server, s3_run: tuple[Settings, str], fake_openai: FakeOpenAIServer
) -> None:
    settings, bucket = s3_run
    store = impatient_store(s3_server, bucket)
    fake_openai.latency_s = 0.05  # images arrive over a while, so uploads are in flight when the server dies
    watcher_client = s3_server.client(retries={"max_attempts": 1})
    images_prefix = f"{PREFIX}/dt={D.isoformat()}/images/"
    killed = threading.Event()

    def kill_when_uploading() -> None:
        while not killed.is_set():
            listed = watcher_client.list_objects_v2(Bucket=bucket, Prefix=images_prefix).get("KeyCount", 0)
            if listed >= 3:
                assert s3_server.process is not None
                s3_server.process.kill()  # the S3 server dies mid-upload (SIGKILL, no shutdown)
                s3_server.process.wait()
                killed.set()
                return
            time.sleep(0.01)

    watcher = threading.Thread(target=kill_when_uploading, daemon=True)
    watcher.start()
    try:
        with pytest.raises(StorageError) as failure:
            stages.run_all(context(settings, D, "killed", store=store))
        assert killed.is_set()
    finally:
        killed.set()
        watcher.join(timeout=10)
        s3_server.restart()  # same data and ports

    assert f"s3://{bucket}/{PREFIX}/" in str(failure.value)
    assert_nothing_published(settings.warehouse.url, store, D)
    kept = len(store.list_keys("cache/images/"))  # images whose upload completed before the crash
    assert kept >= 1

    fake_openai.reset()
    stages.run_all(context(settings, D, "after-restart"))
    run = assert_consistent_partition(settings.warehouse.url, store, D, run_id="after-restart")
    # Images uploaded before the crash were kept and reused, not generated again.
    assert fake_openai.calls("images") == run["images_total"] - kept
    assert run["images_cached"] == kept
    assert latest_view_dates(settings.warehouse.url) == D


# -- local store: the disk refuses writes ------------------------------------------------------------------------

_LIMITED_RUN = """
import resource, sys
from persona_pipeline.cli import main
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))  # writes past this size fail with EFBIG
sys.exit(main(sys.argv[2:]))
"""


def test_disk_full_fails_with_the_key_leaves_no_partial_object_and_a_rerun_succeeds(
    warehouse_copy: Path, tmp_path: Path
) -> None:
    store_root = tmp_path / "store"
    settings = make_settings(f"duckdb:///{warehouse_copy}", store_root, **{"personas.styles": ["portrait"]})
    config = write_config(
        tmp_path / "settings.yaml", settings.warehouse.url, store_root, **{"personas.styles": ["portrait"]}
    )
    stages.run_all(context(settings, D, "complete"))
    store = LocalObjectStore(store_root, PREFIX)
    before = assert_consistent_partition(settings.warehouse.url, store, D, run_id="complete")
    valid_before = store.get_bytes("dt=2026-12-01/valid/part-00000.parquet")

    limit = 64 * 1024  # the feature Parquet of 3,000 customers is larger
    result = subprocess.run(
        [sys.executable, "-c", _LIMITED_RUN, str(limit), "run", "--date", D.isoformat(), "--config", str(config),
         "--run-id", "disk-full"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )  # fmt: skip

    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert "error: cannot write 'dt=2026-12-01/features/part-00000.parquet'" in result.stderr
    assert "File too large" in result.stderr
    # No temporary or half-written object anywhere; what was not rewritten is intact.
    assert not [p for p in store_root.rglob("*") if p.name.startswith(".tmp-")]
    assert store.head("dt=2026-12-01/features/part-00000.parquet") is None
    assert store.get_bytes("dt=2026-12-01/valid/part-00000.parquet") == valid_before
    # The tables still hold the previous complete run of D.
    assert assert_consistent_partition(settings.warehouse.url, store, D)["run_id"] == before["run_id"]

    stages.run_all(context(settings, D, "after-cleanup"))
    assert_consistent_partition(settings.warehouse.url, store, D, run_id="after-cleanup")
