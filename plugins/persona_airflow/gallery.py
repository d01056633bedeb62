"""The persona gallery as a small FastAPI app, mounted inside Airflow's API server by the plugin.

Routes (relative to the mount point, ``/persona-gallery``):

* ``/``                              → redirect to the latest published date (``latest.json``), or ``?dt=D``
* ``/dates``                         → JSON: the latest date and every date with a gallery
* ``/dt=D/`` (and ``/dt=D/index.html``) → the gallery page the run published for D
* ``/dt=D/images/<persona>/<file>``  → one image object of that run

Pages and images are read from the object store through ``persona_pipeline.storage`` (local directory or
S3), so the browser never needs credentials or network access to the bucket: image links that the gallery
embedded as presigned S3 URLs (which expire after at most seven days) are rewritten to the routes above.
Only a partition's ``index.html`` and ``images/`` are served; keys are validated before they reach the store.
"""

from __future__ import annotations

import html
import re
import threading
import time
from collections.abc import Callable
from datetime import date
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

if TYPE_CHECKING:
    from persona_pipeline.storage import ObjectStore

URL_PREFIX = "/persona-gallery"
StoreFactory = Callable[[], "ObjectStore"]

_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_SRC = re.compile(r'(\ssrc=")([^"]*)(")')
# The gallery is self-contained: inline styles, images from here (or a CDN / data URIs), no scripts at all.
_PAGE_POLICY = "default-src 'none'; img-src 'self' data: https:; style-src 'unsafe-inline'; frame-ancestors 'self'"
_COMMON_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin"}


def parse_day(text: str) -> str:
    """``text`` if it is a real ISO date (YYYY-MM-DD), else a 400 error."""
    if not _DAY.match(text):
        raise HTTPException(status_code=400, detail="dt must be a date like 2026-12-01")
    try:
        date.fromisoformat(text)
    except ValueError:
        raise HTTPException(status_code=400, detail="dt must be a date like 2026-12-01") from None
    return text


def image_key(day: str, path: str) -> str:
    """Object key of image ``path`` (relative to ``dt=D/images/``), refusing anything that could escape it."""
    parts = path.split("/")
    if (
        not path
        or path.startswith("/")
        or "\\" in path
        or "\x00" in path
        or any(part in ("", ".", "..") for part in parts)
    ):
        raise HTTPException(status_code=400, detail="invalid image path")
    return f"dt={day}/images/{path}"


def localise_image_links(page: str, day: str) -> str:
    """Rewrite ``src`` URLs that point at this partition's images (presigned S3, CDN, file://) to relative ones."""
    marker = f"/dt={day}/"

    def swap(match: re.Match[str]) -> str:
        url = html.unescape(match.group(2))
        if url.startswith("images/"):
            return match.group(0)
        path = unquote(urlsplit(url).path)
        at = path.find(marker)
        if at < 0:
            return match.group(0)
        rest = path[at + len(marker) :]
        if not rest.startswith("images/") or ".." in rest.split("/"):
            return match.group(0)
        return match.group(1) + html.escape(quote(rest)) + match.group(3)

    return _SRC.sub(swap, page)


async def require_airflow_user(request: Request) -> None:
    """Allow only requests carrying a valid Airflow token (the UI's session cookie, or a bearer token).

    Airflow does not protect plugin apps by itself. The imports are lazy: the API server has them loaded
    already, and other components that load plugins never serve requests.
    """
    from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN
    from airflow.api_fastapi.core_api.security import resolve_user_from_token

    header = request.headers.get("authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else request.cookies.get(COOKIE_NAME_JWT_TOKEN)
    await resolve_user_from_token(token)


class CachedStore:
    """Build the store once and reuse it for ``ttl`` seconds (a boto3 client is not free to make)."""

    def __init__(self, build: StoreFactory, ttl: float = 300.0) -> None:
        self._build = build
        self._ttl = ttl
        self._lock = threading.Lock()
        self._store: ObjectStore | None = None
        self._built_at = 0.0

    def __call__(self) -> ObjectStore:
        with self._lock:
            if self._store is None or time.monotonic() - self._built_at > self._ttl:
                self._store = self._build()
                self._built_at = time.monotonic()
            return self._store


def configured_store() -> ObjectStore:
    """The object store the pipeline's settings describe, with ``aws_default`` credentials when defined."""
    from persona_airflow.runtime import object_store
    from persona_pipeline.config import load_settings

    return object_store(load_settings())


def create_app(store_factory: StoreFactory | None = None, *, require_login: bool = True) -> FastAPI:
    """The gallery app; ``store_factory`` defaults to the configured store (cached for five minutes)."""
    get_store = store_factory or CachedStore(configured_store)
    app = FastAPI(title="Persona gallery", docs_url=None, redoc_url=None, openapi_url=None)
    router = APIRouter(dependencies=[Depends(require_airflow_user)] if require_login else [])

    def latest_day(store: ObjectStore) -> str | None:
        from persona_pipeline.storage import read_json

        if store.head("latest.json") is None:
            return None
        return str(read_json(store, "latest.json")["dt"])

    def base(request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/")

    @router.get("/", response_model=None)
    def gallery_home(request: Request, dt: str | None = None) -> Response:
        store = get_store()
        day = parse_day(dt) if dt else latest_day(store)
        if day is None:
            return HTMLResponse(
                "<!doctype html><title>Persona gallery</title><p>No run has been published yet.</p>",
                status_code=404,
                headers=_COMMON_HEADERS,
            )
        return RedirectResponse(f"{base(request)}/dt={day}/", status_code=307)

    @router.get("/dates")
    def gallery_dates() -> JSONResponse:
        store = get_store()
        days = sorted(
            {key.split("/", 1)[0].removeprefix("dt=") for key in store.list_keys("dt=") if key.endswith("/index.html")}
        )
        return JSONResponse({"latest": latest_day(store), "dates": days}, headers=_COMMON_HEADERS)

    @router.get("/dt={day}/", response_class=HTMLResponse)
    @router.get("/dt={day}/index.html", response_class=HTMLResponse)
    def gallery_page(day: str) -> HTMLResponse:
        day = parse_day(day)
        store = get_store()
        key = f"dt={day}/index.html"
        if store.head(key) is None:
            raise HTTPException(status_code=404, detail=f"no gallery for {day}")
        page = localise_image_links(store.get_bytes(key).decode("utf-8"), day)
        headers = {**_COMMON_HEADERS, "Content-Security-Policy": _PAGE_POLICY, "Cache-Control": "no-cache"}
        return HTMLResponse(page, headers=headers)

    @router.get("/dt={day}/images/{path:path}", response_model=None)
    def gallery_image(day: str, path: str) -> Response:
        key = image_key(parse_day(day), path)
        store = get_store()
        info = store.head(key)
        if info is None or not info.content_type.startswith("image/"):
            raise HTTPException(status_code=404, detail="no such image")
        headers: dict[str, Any] = {**_COMMON_HEADERS, "Cache-Control": "private, max-age=3600"}
        return Response(store.get_bytes(key), media_type=info.content_type, headers=headers)

    app.include_router(router)
    return app
