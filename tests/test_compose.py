"""Static checks of docker-compose.yaml and the Dockerfile (no Docker engine is needed, or used).

They catch what would otherwise only show at `docker compose up`: a missing service or healthcheck, a
``depends_on`` on something that never becomes healthy, connections that point at the wrong host or port,
credentials that differ between the S3 server and its clients, and shell or Python typos in init scripts.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "docker-compose.yaml"
DOCKERFILE = REPO / "Dockerfile"
AIRFLOW_SERVICES = (
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
    "airflow-init",
    "persona-init",
)
REQUIRED = ("postgres", "redis", "seaweedfs", *AIRFLOW_SERVICES)
# The glue lives in plugins/ (on sys.path inside Airflow); the connection checks below go through it.
if str(REPO / "plugins") not in sys.path:
    sys.path.append(str(REPO / "plugins"))
_VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def interpolate(value: Any, env: dict[str, str] | None = None) -> Any:
    """Compose's variable substitution (``${VAR}``, ``${VAR:-default}``, ``$$``) over a parsed document."""
    env = env or {}
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name, op, arg = match.group("name"), match.group("op"), match.group("arg")
        current = env.get(name)
        if op in (":-", "-") and not current:
            return str(arg)
        if op in (":?", "?") and not current:
            raise AssertionError(f"compose would stop: {name} is required ({arg})")
        return current or ""

    placeholder = "\x00"
    return _VARIABLE.sub(substitute, value.replace("$$", placeholder)).replace(placeholder, "$")


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(document, dict)
    return document


@pytest.fixture(scope="module")
def compose(raw: dict[str, Any]) -> dict[str, Any]:
    """The file as compose would see it with no .env: defaults filled in, ``$$`` unescaped."""
    return interpolate(raw)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]  # type: ignore[no-any-return]


def _command_text(service: dict[str, Any]) -> str:
    command = service.get("command", "")
    return command if isinstance(command, str) else " ".join(command)


def _connection(services: dict[str, Any], conn_id: str) -> dict[str, Any]:
    return json.loads(services["airflow-worker"]["environment"][f"AIRFLOW_CONN_{conn_id.upper()}"])  # type: ignore[no-any-return]


def test_required_services_are_present(services: dict[str, Any]) -> None:
    missing = [name for name in REQUIRED if name not in services]
    assert not missing
    assert services["airflow-apiserver"]["command"] == "api-server"
    assert services["airflow-scheduler"]["command"] == "scheduler"
    assert services["airflow-dag-processor"]["command"] == "dag-processor"
    assert services["airflow-triggerer"]["command"] == "triggerer"
    assert services["airflow-worker"]["command"] == "celery worker"


def test_airflow_services_share_the_common_anchor(raw: dict[str, Any], services: dict[str, Any]) -> None:
    assert "x-airflow-common" in raw
    common = raw["x-airflow-common"]
    text = COMPOSE.read_text()
    assert "&airflow-common\n" in text and "&airflow-common-env\n" in text
    for name in AIRFLOW_SERVICES:
        assert re.search(rf"^  {name}:\n(?:    #.*\n)*    <<: \*airflow-common\n", text, flags=re.M), name
        env = services[name]["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://:@redis:6379"), name
        assert "@postgres/airflow" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"], name
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/", name
        assert services[name]["image"] == interpolate(common["image"]), name


def test_dags_and_plugins_are_mounted_into_every_airflow_service(services: dict[str, Any]) -> None:
    for name in AIRFLOW_SERVICES:
        mounts = {m.split(":")[1]: m.split(":")[0] for m in services[name]["volumes"]}
        assert mounts.get("/opt/airflow/dags") == "./dags", name
        assert mounts.get("/opt/airflow/plugins") == "./plugins", name
        assert "/opt/airflow/config" in mounts, name  # the shared airflow.cfg (JWT secret)
    assert (REPO / "dags" / "persona_nightly.py").is_file()
    assert (REPO / "plugins" / "persona_gallery.py").is_file()


@pytest.mark.parametrize(
    "name",
    [
        "postgres",
        "redis",
        "seaweedfs",
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-worker",
        "airflow-triggerer",
    ],
)
def test_long_running_services_have_healthchecks(services: dict[str, Any], name: str) -> None:
    check = services[name].get("healthcheck")
    assert check and check["test"], name
    assert check["test"][0] in ("CMD", "CMD-SHELL"), name
    assert services[name].get("restart") == "always", name


def test_healthchecks_probe_the_right_ports(services: dict[str, Any]) -> None:
    assert "http://localhost:8080/api/v2/version" in services["airflow-apiserver"]["healthcheck"]["test"]
    assert "http://localhost:8974/health" in services["airflow-scheduler"]["healthcheck"]["test"]
    assert "pg_isready" in services["postgres"]["healthcheck"]["test"]
    assert "ping" in services["redis"]["healthcheck"]["test"]
    assert "8333" in " ".join(services["seaweedfs"]["healthcheck"]["test"])
    assert services["airflow-scheduler"]["environment"]["AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK"] == "true"


def test_depends_on_conditions_are_satisfiable(services: dict[str, Any]) -> None:
    one_off = {"airflow-init", "persona-init"}
    for name, service in services.items():
        for target, rule in (service.get("depends_on") or {}).items():
            assert target in services, f"{name} depends on unknown {target}"
            condition = rule["condition"]
            assert condition in ("service_started", "service_healthy", "service_completed_successfully")
            if condition == "service_healthy":
                assert services[target].get("healthcheck"), f"{name} waits for {target}, which has no healthcheck"
            if condition == "service_completed_successfully":
                assert target in one_off, f"{name} waits for {target} to exit, but it never does"
    for name in AIRFLOW_SERVICES:
        deps = services[name]["depends_on"]
        assert deps["postgres"]["condition"] == deps["redis"]["condition"] == "service_healthy", name
        if name != "airflow-init":
            assert deps["airflow-init"]["condition"] == "service_completed_successfully", name
    assert services["airflow-scheduler"]["depends_on"]["persona-init"]["condition"] == "service_completed_successfully"
    assert services["airflow-worker"]["depends_on"]["airflow-apiserver"]["condition"] == "service_healthy"
    assert services["persona-init"]["depends_on"]["seaweedfs"]["condition"] == "service_healthy"
    assert services["persona-init"].get("restart") == "no"


def test_connections_are_json_and_point_at_the_services(services: dict[str, Any], compose: dict[str, Any]) -> None:
    from persona_airflow.connections import AWS_CONN_ID, OPENAI_CONN_ID, WAREHOUSE_CONN_ID

    warehouse = _connection(services, WAREHOUSE_CONN_ID)
    assert warehouse["conn_type"] == "postgres" and warehouse["host"] == "postgres"
    assert warehouse["schema"] == "warehouse"
    assert "CREATE DATABASE warehouse;" in compose["configs"]["warehouse-database"]["content"]
    postgres_env = services["postgres"]["environment"]
    assert (warehouse["login"], warehouse["password"]) == (
        postgres_env["POSTGRES_USER"],
        postgres_env["POSTGRES_PASSWORD"],
    )

    aws = _connection(services, AWS_CONN_ID)
    assert aws["conn_type"] == "aws"
    assert aws["extra"]["endpoint_url"] == "http://seaweedfs:8333"
    assert "-s3.port=8333" in _command_text(services["seaweedfs"])
    identities = json.loads(compose["configs"]["seaweedfs-identities"]["content"])
    (credentials,) = identities["identities"][0]["credentials"]
    assert (aws["login"], aws["password"]) == (credentials["accessKey"], credentials["secretKey"])

    openai = _connection(services, OPENAI_CONN_ID)
    assert openai["conn_type"] == "openai"
    with_key = interpolate(yaml.safe_load(COMPOSE.read_text()), {"OPENAI_API_KEY": "sk-test-from-env"})
    assert _connection(with_key["services"], OPENAI_CONN_ID)["password"] == "sk-test-from-env"


def test_connections_resolve_through_the_glue(services: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from persona_airflow.connections import warehouse_url_from_connection
    from persona_airflow.runtime import object_store

    from persona_pipeline.config import load_settings
    from persona_pipeline.storage import S3ObjectStore

    env = services["airflow-worker"]["environment"]
    for key, value in env.items():
        if key.startswith(("AIRFLOW_CONN_", "PERSONA_")):
            monkeypatch.setenv(key, value)
    assert warehouse_url_from_connection() == "postgresql+psycopg://airflow:airflow@postgres:5432/warehouse"
    settings = load_settings()
    store = object_store(settings)
    assert isinstance(store, S3ObjectStore) and store.bucket == "persona-pipeline"
    assert store.client.meta.endpoint_url == "http://seaweedfs:8333"


def test_persona_init_creates_what_the_dag_needs(services: dict[str, Any]) -> None:
    script = services["persona-init"]["command"][-1]
    env = services["persona-init"]["environment"]
    assert f'create_bucket(Bucket="{env["PERSONA_STORAGE__BUCKET"]}")' in script
    dag_source = (REPO / "dags" / "persona_nightly.py").read_text()
    pool = re.search(r'IMAGE_POOL = "([^"]+)"', dag_source)
    assert pool and f"airflow pools set {pool.group(1)} " in script
    assert "persona-pipeline seed --warehouse" in script
    warehouse = _connection(services, "persona_warehouse")
    assert f"@{warehouse['host']}:5432/{warehouse['schema']}" in script


@pytest.mark.parametrize("name", ["persona-init", "airflow-init"])
def test_init_scripts_are_valid_bash_and_python(services: dict[str, Any], name: str, tmp_path: Path) -> None:
    script = services[name]["command"][-1]
    path = tmp_path / f"{name}.sh"
    path.write_text(script)
    result = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    for block in re.findall(r"<<'PY'\n(.*?)\nPY\n", script, flags=re.S):
        compile(block, f"{name}:heredoc", "exec")
    for one_liner in re.findall(r'python -c "([^"]+)"', script):
        compile(one_liner.replace("${WAREHOUSE}", "sqlite://"), f"{name}:python -c", "exec")


def test_compose_settings_are_valid_pipeline_settings(services: dict[str, Any]) -> None:
    from persona_pipeline.config import load_settings

    env = {k: v for k, v in services["airflow-worker"]["environment"].items() if k.startswith("PERSONA_")}
    settings = load_settings(environ=env)
    assert settings.storage.kind == "s3" and settings.storage.bucket == "persona-pipeline"


def test_dockerfile_extends_the_official_image_at_the_pinned_version() -> None:
    text = DOCKERFILE.read_text()
    pinned = re.search(r"^apache-airflow==(\S+)$", (REPO / "requirements.txt").read_text(), flags=re.M)
    assert pinned
    version = pinned.group(1)
    assert re.search(rf"^FROM apache/airflow:{re.escape(version)}-python3\.11$", text, flags=re.M)
    assert f"ARG AIRFLOW_VERSION={version}" in text
    assert '"apache-airflow==${AIRFLOW_VERSION}"' in text  # keeps pip from moving Airflow itself
    for needed in ("requirements.txt", "persona_pipeline", "dags", "plugins"):
        assert re.search(rf"^COPY .*\b{needed}\b", text, flags=re.M), needed
    assert "pip install --no-cache-dir --no-deps /opt/persona" in text
    ignored = (REPO / ".dockerignore").read_text().split()
    assert ".venv" in ignored and "data" in ignored
    for line in text.splitlines():
        if line.startswith("RUN"):
            shlex.split(line.removeprefix("RUN").rstrip("\\"))  # balanced quotes
