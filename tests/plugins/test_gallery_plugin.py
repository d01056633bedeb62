"""The gallery plugin's FastAPI app, on galleries the pipeline really published (local store), and in Airflow."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from persona_pipeline.storage import LocalObjectStore, read_json

EARLIER, LATEST = date(2026, 11, 30), date(2026, 12, 1)
PLUGIN_FILE = Path(__file__).resolve().parents[2] / "plugins" / "persona_gallery.py"


@pytest.fixture(scope="module")
def published(sample_warehouse: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two dates published by the real stages into a local store (the later one is the latest)."""
    from persona_pipeline import stages
    from persona_pipeline.config import load_settings

    root = tmp_path_factory.mktemp("gallery")
    warehouse = root / "warehouse.duckdb"
    shutil.copy(sample_warehouse, warehouse)
    settings = load_settings(
        environ={},
        overrides={
            "warehouse.url": f"duckdb:///{warehouse}",
            "storage.root": str(root / "store"),
            "segmentation.min_segment_size": 30,
        },
    )
    for day in (EARLIER, LATEST):
        stages.run_all(stages.make_context(settings, day, f"test__{day}"))
    store = LocalObjectStore(root / "store", settings.storage.prefix)
    # Something the app must never hand out: intermediate, customer-level data next to the images.
    store.put_bytes(f"dt={LATEST}/images/not-an-image.json", b'{"secret": "customer-level"}')
    return {"store": store, "root": root, "settings": settings}


@pytest.fixture
def client(published: dict[str, Any]) -> Iterator[TestClient]:
    from persona_airflow.gallery import create_app

    store = published["store"]
    with TestClient(create_app(lambda: store, require_login=False)) as test_client:
        yield test_client


def _image_links(page: str) -> list[str]:
    return re.findall(r'<img src="([^"]+)"', page)


def test_root_redirects_to_the_latest_published_date(client: TestClient, published: dict[str, Any]) -> None:
    assert read_json(published["store"], "latest.json")["dt"] == LATEST.isoformat()
    response = client.get("/", follow_redirects=False)
    assert response.status_code == 307
    assert response.headers["location"] == f"/dt={LATEST}/"
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "script-src" not in page.headers["content-security-policy"]  # no scripts allowed at all
    assert "default-src 'none'" in page.headers["content-security-policy"]
    personas = published["store"].list_keys(f"dt={LATEST}/personas/")
    assert personas
    for key in personas:
        assert f'id="persona-{Path(key).stem}"' in page.text


def test_a_chosen_date_by_query_or_path(client: TestClient, published: dict[str, Any]) -> None:
    chosen = client.get(f"/?dt={EARLIER}", follow_redirects=False)
    assert chosen.status_code == 307 and chosen.headers["location"] == f"/dt={EARLIER}/"
    by_path = client.get(f"/dt={EARLIER}/index.html")
    assert by_path.status_code == 200
    assert by_path.text == client.get(f"/dt={EARLIER}/").text
    assert by_path.text == published["store"].get_bytes(f"dt={EARLIER}/index.html").decode()
    assert client.get("/dates").json() == {"latest": LATEST.isoformat(), "dates": [str(EARLIER), str(LATEST)]}


def test_every_image_of_the_page_is_served_with_its_content_type(client: TestClient, published: dict[str, Any]) -> None:
    page = client.get(f"/dt={LATEST}/").text
    links = _image_links(page)
    assert links and all(link.startswith("images/") for link in links)
    for link in links:
        response = client.get(f"/dt={LATEST}/{link}")
        assert response.status_code == 200, link
        assert response.headers["content-type"] == "image/png"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.content == published["store"].get_bytes(f"dt={LATEST}/{link}")
        assert response.content.startswith(b"\x89PNG")


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/?dt=2026-10-01", 307),  # a well-formed date redirects; the page itself is then a 404
        ("/dt=2026-10-01/", 404),
        ("/dt=2026-10-01/index.html", 404),
        ("/dt=2026-02-30/", 400),
        ("/?dt=yesterday", 400),
        ("/dt=..%2F..%2Fetc/", 404),
    ],
)
def test_unknown_and_malformed_dates(client: TestClient, path: str, status: int) -> None:
    assert client.get(path, follow_redirects=False).status_code == status


@pytest.mark.parametrize(
    "path",
    [
        f"/dt={LATEST}/images/../extract.json",
        f"/dt={LATEST}/images/..%2Fextract.json",
        f"/dt={LATEST}/images/%2e%2e/%2e%2e/latest.json",
        f"/dt={LATEST}/images/..%5C..%5Clatest.json",
        f"/dt={LATEST}/images//etc/passwd",
        f"/dt={LATEST}/images/x%00.png",
        f"/dt={LATEST}/images/not-an-image.json",
        f"/dt={LATEST}/valid/part-00000.parquet",
        f"/dt={LATEST}/features/part-00000.parquet",
        f"/dt={LATEST}/extract.json",
    ],
)
def test_path_traversal_and_non_gallery_objects_are_refused(client: TestClient, path: str) -> None:
    response = client.get(path, follow_redirects=False)
    assert response.status_code in (400, 404), (path, response.status_code)
    assert b"customer-level" not in response.content and b'"rows"' not in response.content


def test_nothing_published_yet_is_a_clear_404(tmp_path: Path) -> None:
    from persona_airflow.gallery import create_app

    empty = LocalObjectStore(tmp_path, "persona-pipeline")
    with TestClient(create_app(lambda: empty, require_login=False)) as test_client:
        response = test_client.get("/")
    assert response.status_code == 404
    assert "No run has been published yet" in response.text


def test_presigned_image_urls_are_served_through_the_app() -> None:
    from persona_airflow.gallery import localise_image_links

    presigned = (
        "http://seaweedfs:8333/bucket/persona-pipeline/dt=2026-12-01/images/p1/portrait-1.png"
        "?X-Amz-Algorithm=AWS4-HMAC-SHA256&amp;X-Amz-Expires=604800&amp;X-Amz-Signature=abc"
    )
    page = (
        f'<img src="{presigned}" alt="a"><img src="images/p2/lifestyle-1.png" alt="b">'
        '<img src="https://cdn.example.com/elsewhere/logo.png" alt="c">'
        '<img src="http://x/b/dt=2026-12-01/images/../latest.json" alt="d">'
    )
    out = localise_image_links(page, "2026-12-01")
    assert _image_links(out) == [
        "images/p1/portrait-1.png",
        "images/p2/lifestyle-1.png",
        "https://cdn.example.com/elsewhere/logo.png",
        "http://x/b/dt=2026-12-01/images/../latest.json",
    ]


def test_login_is_required_by_default(published: dict[str, Any]) -> None:
    from persona_airflow.gallery import create_app

    store = published["store"]
    with TestClient(create_app(lambda: store)) as test_client:
        assert test_client.get("/", follow_redirects=False).status_code == 401
        assert test_client.get(f"/dt={LATEST}/").status_code == 401
        assert test_client.get("/", headers={"Authorization": "Bearer "}).status_code == 401


def test_plugin_registers_the_app_and_a_navigation_entry() -> None:
    from airflow import plugins_manager

    plugins, errors = plugins_manager._get_plugins()
    assert not errors, errors
    plugin = next(p for p in plugins if p.name == "persona_gallery")
    assert plugin.source is not None and Path(str(plugin.source.path)).name == PLUGIN_FILE.name
    (app,) = plugin.fastapi_apps
    assert app["url_prefix"] == "/persona-gallery"
    (view,) = plugin.external_views
    assert view["destination"] == "nav"
    assert view["url_route"] == "persona-gallery"
    # Relative (no leading slash): the UI resolves it against its base URL, so a sub-path deployment works.
    assert view["href"] == "persona-gallery/"
    # Only the plugin file is loaded as a plugin; the glue package is imported normally.
    assert not any("persona_airflow" in str(getattr(p, "source", "")) for p in plugins)


@pytest.mark.slow
def test_gallery_inside_airflows_api_server(
    airflow_db: Path, published: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Airflow's own API app mounts the plugin: 401 without a session, the gallery with one."""
    from airflow.api_fastapi.app import create_app, get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    config = tmp_path / "settings.yaml"
    config.write_text(f"storage:\n  root: {published['root'] / 'store'}\n")
    monkeypatch.setenv("PERSONA_CONFIG", str(config))
    monkeypatch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", "test-only-secret-" + "x" * 48)
    with TestClient(create_app()) as api:
        assert api.get("/persona-gallery/", follow_redirects=False).status_code == 401
        token = get_auth_manager().generate_jwt(SimpleAuthManagerUser(username="marketer", role="VIEWER"))
        api.cookies.set("_token", token)
        response = api.get("/persona-gallery/", follow_redirects=False)
        assert response.status_code == 307
        assert response.headers["location"] == f"/persona-gallery/dt={LATEST}/"
        page = api.get(response.headers["location"])
        assert page.status_code == 200
        link = _image_links(page.text)[0]
        image = api.get(f"/persona-gallery/dt={LATEST}/{link}")
        assert image.status_code == 200 and image.headers["content-type"] == "image/png"
        plugins = api.get("/api/v2/plugins").json()["plugins"]
        assert any(view["url_route"] == "persona-gallery" for p in plugins for view in p["external_views"])
