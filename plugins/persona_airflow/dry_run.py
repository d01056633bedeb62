"""Dry runs: every stage runs for real, but nothing a reader of the published outputs sees is touched.

A dry run (DAG param ``dry_run``) differs from a normal run in three ways:

* the image provider is forced to ``offline`` (no API call, no cost);
* every object it writes goes to a *sandbox* prefix beside the real one (``<prefix>-dry-run``), through
  :class:`SandboxStore`. Reads of other dates and of the image cache fall through to the real store, so drift,
  stable segment ids and cache hits are what the real run would see; the run's own partition ``dt=D/`` is read
  only from the sandbox, so a published partition for D is never mixed in or overwritten;
* ``publish`` renders the gallery and the Parquet copies into the sandbox, writes no BI table row and ends as
  *skipped*, so no asset event is emitted and nothing downstream is triggered.
"""

from __future__ import annotations

from collections.abc import Mapping

from persona_pipeline.storage import ObjectStore, StoredObject

DRY_RUN_SUFFIX = "-dry-run"


class SandboxStore:
    """Writes go to ``sandbox``; reads outside ``own_prefix`` fall back to ``real``; ``own_prefix`` is sandbox-only."""

    def __init__(self, sandbox: ObjectStore, real: ObjectStore, own_prefix: str) -> None:
        self.sandbox = sandbox
        self.real = real
        self.own_prefix = own_prefix if own_prefix.endswith("/") else own_prefix + "/"

    def __repr__(self) -> str:
        return f"SandboxStore(sandbox={self.sandbox!r}, reads={self.real!r})"

    def _private(self, key: str) -> bool:
        # The run's own partition, the latest pointer and the table copies: never read from the real store.
        return key.startswith(self.own_prefix) or not key.startswith(("dt=", "cache/"))

    def put_bytes(
        self, key: str, data: bytes, *, content_type: str | None = None, metadata: Mapping[str, str] | None = None
    ) -> StoredObject:
        return self.sandbox.put_bytes(key, data, content_type=content_type, metadata=metadata)

    def head(self, key: str) -> StoredObject | None:
        found = self.sandbox.head(key)
        if found is None and not self._private(key):
            found = self.real.head(key)
        return found

    def get_bytes(self, key: str) -> bytes:
        if self._private(key) or self.sandbox.head(key) is not None:
            return self.sandbox.get_bytes(key)
        return self.real.get_bytes(key)

    def copy(self, source_key: str, dest_key: str, *, metadata: Mapping[str, str] | None = None) -> StoredObject:
        source = self.head(source_key)
        if source is None:
            return self.sandbox.copy(source_key, dest_key, metadata=metadata)  # raises the store's own error
        return self.sandbox.put_bytes(
            dest_key,
            self.get_bytes(source_key),
            content_type=source.content_type,
            metadata=dict(metadata) if metadata is not None else source.metadata,
        )

    def list_keys(self, prefix: str = "") -> list[str]:
        keys = set(self.sandbox.list_keys(prefix))
        keys.update(k for k in self.real.list_keys(prefix) if not self._private(k))
        return sorted(keys)

    def delete_prefix(self, prefix: str) -> int:
        return self.sandbox.delete_prefix(prefix)

    def url_for(self, key: str) -> str:
        return (self.sandbox if self.sandbox.head(key) is not None or self._private(key) else self.real).url_for(key)

    def uri_for(self, key: str) -> str:
        return self.sandbox.uri_for(key)
