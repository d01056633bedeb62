"""Airflow glue for the persona pipeline: connections → settings and clients, dry runs, alerts, the UI gallery.

The library (``persona_pipeline``) never imports Airflow; this package is the only place where the two meet.
It lives in the plugins folder because Airflow puts that folder on ``sys.path`` in every component (scheduler,
DAG processor, workers, API server), so DAG files and the UI plugin share it. ``plugins/.airflowignore`` keeps
the plugin loader from importing these modules one by one under bare names.

Nothing here reads a connection, a Variable or the settings at import time: everything happens when a task,
a callback or a request calls in.
"""

from __future__ import annotations
