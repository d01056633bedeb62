"""Publishing: the nightly HTML persona gallery."""

from __future__ import annotations

from persona_pipeline.report.gallery import GalleryRun, render_gallery

__all__ = ["GalleryRun", "render_gallery"]
