"""Airflow plugin: the persona gallery inside the Airflow UI.

* ``fastapi_apps``: the gallery app (``persona_airflow.gallery``) mounted in the API server at
  ``/persona-gallery``; it reads the latest (or a chosen date's) gallery from the object store.
* ``external_views``: a "Persona gallery" entry in the UI's Browse menu that shows that app in an iframe
  (``url_route``); the ``href`` is relative, so it also works when Airflow is served under a sub-path.

Check it is loaded with ``airflow plugins``; the API server must be restarted after changes to this file.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin
from persona_airflow.gallery import URL_PREFIX, create_app


class PersonaGalleryPlugin(AirflowPlugin):
    """Serves the persona gallery and links it from the navigation."""

    name = "persona_gallery"
    fastapi_apps = [  # noqa: RUF012 - the plugin interface is class attributes
        {"app": create_app(), "url_prefix": URL_PREFIX, "name": "Persona gallery"},
    ]
    external_views = [  # noqa: RUF012
        {
            "name": "Persona gallery",
            "href": URL_PREFIX.lstrip("/") + "/",
            "url_route": "persona-gallery",
            "destination": "nav",
            "category": "browse",
        },
    ]
