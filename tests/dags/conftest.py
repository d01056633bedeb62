"""Fixtures for the DAG tests: the real-service fixtures of tests/integration, and the glue on sys.path.

``pytest_plugins`` may only be declared in the root conftest, so the service fixtures are imported by name;
they stay defined (and documented) in tests/integration/conftest.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tests.integration.conftest import pg_database, postgres_server, s3_bucket, s3_server

__all__ = ["pg_database", "postgres_server", "s3_bucket", "s3_server"]

# Airflow puts the plugins folder on sys.path when it is imported; tests may import the glue before that.
PLUGINS = Path(__file__).resolve().parents[2] / "plugins"
if str(PLUGINS) not in sys.path:
    sys.path.append(str(PLUGINS))
