"""Airflow Connections → what the library needs: a warehouse URL, an S3 client, OpenAI credentials.

Three connections, each optional; when one is not defined the library's own settings and environment are used
(``PERSONA_*`` variables, the boto3 credential chain, ``OPENAI_API_KEY``), so ``make demo`` runs with none.

* ``persona_warehouse``: any SQLAlchemy database. An ``extra`` field ``sqlalchemy_url`` wins; a ``postgres``
  connection becomes ``postgresql+psycopg://`` through the Postgres provider's hook; ``duckdb`` takes the file
  from ``extra.path`` (or the host field); anything else uses ``Connection.get_uri()``.
* ``aws_default``: credentials, region, ``endpoint_url`` and botocore ``config_kwargs`` through the Amazon
  provider's ``S3Hook`` (so role assumption, profiles and web identity work as for any AWS operator).
* ``openai_default``: the OpenAI provider's rules: API key = password (or ``openai_client_kwargs.api_key``),
  base URL = host (or ``openai_client_kwargs.base_url``).

Secrets never reach a log line: URLs are logged with the password hidden.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.sdk import Connection

    from persona_pipeline.config import StorageSettings

log = logging.getLogger(__name__)

WAREHOUSE_CONN_ID = "persona_warehouse"
AWS_CONN_ID = "aws_default"
OPENAI_CONN_ID = "openai_default"

_POSTGRES_TYPES = frozenset({"postgres", "postgresql"})


@dataclass(frozen=True)
class OpenAICredentials:
    """What the image provider needs from ``openai_default``; ``base_url`` None = the settings' or the SDK's."""

    api_key: str | None
    base_url: str | None

    def __repr__(self) -> str:  # never print the key
        return f"OpenAICredentials(api_key={'***' if self.api_key else None}, base_url={self.base_url!r})"


def get_connection(conn_id: str) -> Connection | None:
    """The connection ``conn_id`` from Airflow's secrets backends (env vars, metastore, ...), or None if undefined."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return None


def hide_password(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for log lines)."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a SQLAlchemy URL: say nothing about it rather than risk echoing a secret
        return "<unparseable url>"


def warehouse_url(conn: Connection) -> str:
    """SQLAlchemy URL of the warehouse described by ``conn`` (see the module docstring for the rules)."""
    extra = conn.extra_dejson
    explicit = extra.get("sqlalchemy_url")
    if explicit:
        return str(explicit)
    conn_type = (conn.conn_type or "").lower()
    if conn_type == "duckdb":
        path = extra.get("path") or extra.get("database") or conn.host
        if not path:
            raise ValueError(
                f"connection {conn.conn_id!r} (duckdb) needs the database file in extra.path "
                '(e.g. {"path": "/data/warehouse.duckdb"}) or an extra.sqlalchemy_url'
            )
        return f"duckdb:///{path}"
    if conn_type in _POSTGRES_TYPES:
        from airflow.providers.postgres.hooks.postgres import PostgresHook

        # psycopg 3 is the driver the library's COPY fast path uses; a connection may still choose another.
        hook = PostgresHook(
            postgres_conn_id=conn.conn_id, sqlalchemy_scheme=extra.get("sqlalchemy_scheme") or "postgresql+psycopg"
        )
        return str(hook.sqlalchemy_url.render_as_string(hide_password=False))
    uri = conn.get_uri()
    for prefix in ("postgres://", "postgresql://"):
        if uri.startswith(prefix):
            return "postgresql+psycopg://" + uri[len(prefix) :]
    return uri


def warehouse_url_from_connection(conn_id: str = WAREHOUSE_CONN_ID) -> str | None:
    """The warehouse URL from connection ``conn_id``, or None when it is not defined."""
    conn = get_connection(conn_id)
    if conn is None:
        return None
    url = warehouse_url(conn)
    log.info("warehouse from connection %s: %s", conn_id, hide_password(url))
    return url


def s3_client(storage: StorageSettings, conn_id: str = AWS_CONN_ID) -> Any | None:
    """A boto3 S3 client with the credentials of connection ``conn_id``, or None when it is not defined.

    The connection's ``endpoint_url`` (extra, or ``service_config.s3.endpoint_url``) and region win over the
    settings'; the settings fill what the connection leaves out. Retries and, for S3-compatible endpoints,
    path-style addressing are defaults the connection's ``config_kwargs`` can override.
    """
    if get_connection(conn_id) is None:
        return None
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    from botocore.config import Config

    hook = S3Hook(aws_conn_id=conn_id)
    endpoint_url = hook.conn_config.get_service_endpoint_url("s3") or storage.endpoint_url
    region = hook.region_name or storage.region
    # SigV4 for presigned URLs: botocore may otherwise presign with SigV2, which AWS refuses for newer regions
    # and SSE-KMS objects (the BI image links would not open).
    defaults: dict[str, Any] = {"retries": {"max_attempts": 5, "mode": "standard"}, "signature_version": "s3v4"}
    if endpoint_url:
        # S3-compatible servers behind one host name rarely resolve <bucket>.<host>.
        defaults["s3"] = {"addressing_style": "path"}
    config = Config(**defaults).merge(hook.config)
    session = hook.get_session(region_name=region)
    log.info("object store credentials from connection %s (endpoint %s)", conn_id, endpoint_url or "AWS default")
    return session.client("s3", endpoint_url=endpoint_url, region_name=region, config=config, verify=hook.verify)


def openai_credentials(conn_id: str = OPENAI_CONN_ID) -> OpenAICredentials | None:
    """API key and base URL from connection ``conn_id`` via the OpenAI provider's hook, or None if undefined."""
    conn = get_connection(conn_id)
    if conn is None:
        return None
    from airflow.providers.openai.hooks.openai import OpenAIHook

    extra = conn.extra_dejson
    if extra.get("auth_type", "api_key") != "api_key":
        raise ValueError(
            f"connection {conn_id!r} uses auth_type {extra.get('auth_type')!r}; the image provider needs an API key "
            "(auth_type 'api_key', key in the password field)"
        )
    client_kwargs = dict(extra.get("openai_client_kwargs") or {})
    explicit_base_url = client_kwargs.get("base_url") or conn.host or None
    # The hook builds the client exactly as every OpenAI operator would; read key and URL back from it.
    client = OpenAIHook(conn_id=conn_id).get_conn()
    log.info("image API credentials from connection %s (base URL %s)", conn_id, explicit_base_url or "default")
    return OpenAICredentials(
        api_key=str(client.api_key) if client.api_key else None,
        base_url=str(client.base_url) if explicit_base_url else None,
    )
