"""Tests for the HTML persona gallery."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, date, datetime
from html.parser import HTMLParser
from typing import Any

import pytest

from persona_pipeline.contracts import (
    DepictedTraits,
    ImagePrompt,
    ImageRecord,
    Persona,
    Recommendation,
    RowAccounting,
    SegmentDrift,
    TraitLift,
)
from persona_pipeline.report import GalleryRun, render_gallery
from persona_pipeline.report.gallery import format_key_number

HOSTILE_SCRIPT = "<script>alert(1)</script>"
HOSTILE_ATTR = '" onmouseover="x'
HOSTILE_IMG = "<img src=x onerror=alert(1)>"


# --------------------------------------------------------------------------------------------- factories


def make_run(**overrides: Any) -> GalleryRun:
    values: dict[str, Any] = {
        "logical_date": date(2024, 5, 1),
        "run_id": "scheduled__2024-05-01T02:00:00+00:00",
        "method": "rfm",
        "image_provider": "offline",
        "accounting": RowAccounting(extracted=10_523, valid=9_871, quarantined=402, excluded=250),
        "images_generated": 7,
        "images_cached": 5,
        "image_cost_usd": 0.48,
        "min_segment_size": 50,
        "generated_at": datetime(2024, 5, 2, 2, 13, 7, tzinfo=UTC),
    }
    values.update(overrides)
    return GalleryRun(**values)


def make_trait(dimension: str, value: str, lift: float, support: int) -> TraitLift:
    return TraitLift(
        dimension=dimension,
        value=value,
        segment_share=min(0.9, 0.1 * lift),
        population_share=0.1,
        lift=lift,
        support=support,
    )


def make_prompt(persona_id: str, variant: str) -> ImagePrompt:
    depicted = DepictedTraits(
        age_band="35-44",
        gender="female",
        income_band="high",
        occupation="teacher",
        interests=("wine",),
        channel="email",
        device="mobile",
        setting="urban",
        style="portrait",
    )
    return ImagePrompt(
        persona_id=persona_id,
        variant=variant,
        style="portrait",
        prompt="A portrait",
        prompt_hash=f"h-{persona_id}-{variant}",
        depicted=depicted,
    )


def make_persona(persona_id: str, name: str, size: int, share: float, **overrides: Any) -> Persona:
    values: dict[str, Any] = {
        "persona_id": persona_id,
        "segment_id": f"seg-{persona_id}",
        "method": "rfm",
        "name": name,
        "tagline": f"Tagline of {name}",
        "narrative": f"Narrative of {name}.",
        "goals": ("Save time", "Find quality"),
        "pain_points": ("Slow delivery",),
        "channels": ("email", "app"),
        "recommendations": (
            Recommendation(
                kind="marketing",
                title=f"Email {name}",
                detail="Send a weekly digest.",
                because="email opens are 2.4x the average",
                trait="preferred_channel=email",
            ),
            Recommendation(
                kind="product",
                title="Faster checkout",
                detail="Offer one-click reorder.",
                because="reorders are 3.1x the average",
                trait="frequency_band=high",
            ),
        ),
        "key_numbers": {"aov": 84.456, "recency_days": 12.6, "median_age": 41.0, "repeat_share": 0.625},
        "top_traits": (
            make_trait("top_category", "wine", 3.1, 412),
            make_trait("preferred_channel", "email", 2.4, 380),
            make_trait("age_band", "35-44", 1.6, 300),
        ),
        "size": size,
        "share": share,
        "prompts": (make_prompt(persona_id, "portrait-1"), make_prompt(persona_id, "lifestyle-1")),
        "drift": None,
    }
    values.update(overrides)
    return Persona(**values)


def make_image(persona_id: str, variant: str, flags: tuple[str, ...] = ("illustrative",)) -> ImageRecord:
    return ImageRecord(
        persona_id=persona_id,
        variant=variant,
        style="portrait",
        provider="offline",
        model="placeholder-v1",
        prompt_hash=f"h-{persona_id}-{variant}",
        cache_key=f"ck-{persona_id}-{variant}",
        key=f"runs/dt=2024-05-01/images/{persona_id}/{variant}.png",
        url=f"file:///tmp/{persona_id}/{variant}.png",
        content_type="image/png",
        size_bytes=1234,
        width=512,
        height=512,
        cost_usd=0.04,
        cached=False,
        flags=flags,
    )


def relative_href(record: ImageRecord) -> str:
    return f"images/{record.persona_id}/{record.variant}.png"


def default_personas() -> list[Persona]:
    return [
        make_persona(
            "p-champions",
            "Weekend Connoisseur",
            1200,
            0.45,
            drift=SegmentDrift(previous_size=1000, size_change=0.2, status="continuing", moved_traits=()),
        ),
        make_persona(
            "p-lapsing",
            "Drifting Bargain Hunter",
            900,
            0.34,
            drift=SegmentDrift(
                previous_size=1000,
                size_change=-0.1,
                status="continuing",
                moved_traits=("preferred_channel=app", "top_category=toys"),
            ),
        ),
        make_persona(
            "p-newbies",
            "Curious Newcomer",
            560,
            0.21,
            drift=SegmentDrift(previous_size=None, size_change=None, status="new"),
            top_traits=(make_trait("tenure_band", "0-90", 4.2, 500),),
        ),
    ]


def default_images(personas: list[Persona]) -> list[ImageRecord]:
    images = []
    for persona in personas:
        images.append(make_image(persona.persona_id, "portrait-1"))
        images.append(make_image(persona.persona_id, "lifestyle-1"))
    return images


def render(
    personas: list[Persona] | None = None,
    images: list[ImageRecord] | None = None,
    run: GalleryRun | None = None,
    href: Any = relative_href,
) -> str:
    personas = default_personas() if personas is None else personas
    images = default_images(personas) if images is None else images
    pages = render_gallery(run or make_run(), personas, images, image_href=href)
    assert set(pages) == {"index.html"}
    return pages["index.html"]


# --------------------------------------------------------------------------------------------- parsing


class Element:
    def __init__(self, tag: str, attrs: dict[str, str | None]) -> None:
        self.tag = tag
        self.attrs = attrs

    @property
    def classes(self) -> set[str]:
        return set((self.attrs.get("class") or "").split())


class Collector(HTMLParser):
    """Flat list of every start tag plus all text, as a browser's tokenizer would see them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[Element] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append(Element(tag, dict(attrs)))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(html: str) -> Collector:
    collector = Collector()
    collector.feed(html)
    collector.close()
    return collector


def section(html: str, persona_id: str) -> str:
    """The HTML of one persona's detail section."""
    match = re.search(rf'<section class="persona" id="persona-{re.escape(persona_id)}".*?</section>', html, re.DOTALL)
    assert match, f"no section for {persona_id}"
    return match.group(0)


# --------------------------------------------------------------------------------------------- tests


def test_returns_single_index_page_with_every_persona_and_anchor() -> None:
    personas = default_personas()
    html = render(personas)
    doc = parse(html)
    ids = {el.attrs.get("id") for el in doc.elements}
    hrefs = [el.attrs.get("href") for el in doc.elements if el.tag == "a"]
    for persona in personas:
        assert persona.name in html
        assert f"persona-{persona.persona_id}" in ids
        # Both the card and the chart bar link to the section.
        assert hrefs.count(f"#persona-{persona.persona_id}") == 2


def test_every_image_uses_href_output_with_alt_and_dimensions() -> None:
    personas = default_personas()
    images = default_images(personas)
    html = render(personas, images)
    imgs = [el for el in parse(html).elements if el.tag == "img"]
    srcs = {el.attrs["src"] for el in imgs}
    assert srcs == {relative_href(r) for r in images}
    # Detail sections show each image once, cards repeat the first variant of each persona.
    assert len(imgs) == len(images) + len(personas)
    for el in imgs:
        assert el.attrs.get("width") == "512"
        assert el.attrs.get("height") == "512"
        assert "loading" not in el.attrs
    alts = {el.attrs["alt"] for el in imgs}
    assert "Weekend Connoisseur — lifestyle-1" in alts


def test_images_follow_prompt_order() -> None:
    persona = make_persona("p1", "Only", 100, 1.0)
    images = [make_image("p1", "lifestyle-1"), make_image("p1", "portrait-1")]
    html = render([persona], images)
    first_card_img = next(el for el in parse(html).elements if el.tag == "img")
    assert first_card_img.attrs["src"] == "images/p1/portrait-1.png"


def test_size_chart_has_one_bar_per_persona_sorted_by_size() -> None:
    personas = default_personas()
    html = render(list(reversed(personas)))
    bars = [el for el in parse(html).elements if el.tag == "rect" and "size-bar" in el.classes]
    assert len(bars) == len(personas)
    widths = [float(el.attrs["width"] or 0) for el in bars]
    assert widths == sorted(widths, reverse=True)
    assert widths[0] == pytest.approx(420.0)
    assert widths[-1] == pytest.approx(420.0 * 0.21 / 0.45, abs=0.1)
    assert "45.0% · 1,200 customers" in html


def test_lift_chart_has_one_bar_per_trait_proportional_to_lift() -> None:
    personas = default_personas()
    html = render(personas)
    for persona in personas:
        part = section(html, persona.persona_id)
        bars = [el for el in parse(part).elements if el.tag == "rect" and "lift-bar" in el.classes]
        assert len(bars) == len(persona.top_traits)
    part = section(html, "p-champions")
    widths = [float(el.attrs["width"] or 0) for el in parse(part).elements if "lift-bar" in el.classes]
    assert widths[0] / widths[1] == pytest.approx(3.1 / 2.4, rel=0.01)
    assert "top_category: wine" in part
    assert "3.1\N{MULTIPLICATION SIGN} · 412 customers" in part


@pytest.mark.parametrize(
    "field",
    ["name", "tagline", "narrative", "goals", "channels", "trait_value", "recommendation", "run_id", "persona_id"],
)
@pytest.mark.parametrize("payload", [HOSTILE_SCRIPT, HOSTILE_ATTR, HOSTILE_IMG, '"><script>alert(2)</script>'])
def test_hostile_strings_are_inert(field: str, payload: str) -> None:
    persona = make_persona("p1", "Safe", 100, 1.0)
    run = make_run()
    if field == "name":
        persona = replace(persona, name=payload)
    elif field == "tagline":
        persona = replace(persona, tagline=payload)
    elif field == "narrative":
        persona = replace(persona, narrative=payload)
    elif field == "persona_id":
        persona = replace(persona, persona_id=payload)
    elif field == "goals":
        persona = replace(persona, goals=(payload,))
    elif field == "channels":
        persona = replace(persona, channels=(payload,))
    elif field == "trait_value":
        persona = replace(persona, top_traits=(make_trait(payload, payload, 2.0, 80),))
    elif field == "recommendation":
        rec = Recommendation(kind="marketing", title=payload, detail=payload, because=payload, trait=payload)
        persona = replace(persona, recommendations=(rec,))
    elif field == "run_id":
        run = make_run(run_id=payload, method=payload, image_provider=payload)
    images = [make_image(persona.persona_id, "portrait-1", flags=(payload,))]
    html = render([persona], images, run=run)
    doc = parse(html)
    assert not [el for el in doc.elements if el.tag == "script"]
    handlers = [(el.tag, name) for el in doc.elements for name in el.attrs if name.lower().startswith("on")]
    assert not handlers
    # Only the images the caller asked for; the payload's <img> never became an element.
    assert {el.attrs.get("src") for el in doc.elements if el.tag == "img"} == {relative_href(images[0])}
    assert payload not in html
    # The text survives, escaped, so readers still see what the data said.
    assert any(payload in chunk for chunk in doc.text) or any(
        payload in (value or "") for el in doc.elements for value in el.attrs.values()
    )
    assert "&lt;" in html or "&#34;" in html


def test_hostile_strings_escaped_inside_svg_text() -> None:
    persona = make_persona("p1", HOSTILE_IMG, 100, 1.0, top_traits=(make_trait("cat", HOSTILE_SCRIPT, 2.0, 60),))
    html = render([persona], [])
    svgs = re.findall(r"<svg.*?</svg>", html, re.DOTALL)
    assert len(svgs) == 2
    assert "&lt;img src=x onerror=alert(1)&gt;" in svgs[0]
    assert "cat: &lt;script&gt;alert(1)&lt;/script&gt;" in svgs[1]


def test_no_external_urls_with_relative_hrefs() -> None:
    html = render()
    lowered = html.lower()
    assert "http://" not in lowered
    assert "https://" not in lowered
    assert "@import" not in lowered
    assert "<script" not in lowered
    doc = parse(html)
    for el in doc.elements:
        for name in ("src", "href", "xlink:href", "action", "data"):
            value = el.attrs.get(name)
            if value is not None:
                assert not value.startswith("//"), (el.tag, value)
                assert ":" not in value, (el.tag, value)
        assert el.tag not in ("link", "iframe", "object", "embed", "base")
    assert "url(" not in lowered


def test_absolute_image_urls_only_come_from_href_function() -> None:
    def cdn_href(record: ImageRecord) -> str:
        return f"https://cdn.example.com/{record.persona_id}/{record.variant}.png?sig=a&b=1"

    personas = default_personas()
    images = default_images(personas)
    html = render(personas, images, href=cdn_href)
    expected = {cdn_href(r) for r in images}
    urls = set()
    for el in parse(html).elements:
        for value in el.attrs.values():
            if value and ("//" in value or value.startswith("http")):
                urls.add(value)
    assert urls == expected
    assert "sig=a&amp;b=1" in html  # used verbatim, but escaped
    assert html.count("https://") == len(images) + len(personas)


def test_illustrative_label_and_run_header() -> None:
    html = render()
    text = " ".join(parse(html).text)
    banner = re.search(r'<p class="banner"[^>]*>(.*?)</p>', html, re.DOTALL)
    assert banner
    assert "illustrative" in banner.group(1).lower()
    assert "generated" in banner.group(1).lower()
    assert "at least 50 customers" in banner.group(1)
    for expected in ("Persona Pipeline", "2024-05-01", "rfm", "offline", "$0.48"):
        assert expected in text
    assert "10,523" in text
    assert "9,871" in text
    assert "402" in text
    assert "250" in text
    assert "extracted = valid + quarantined + excluded" in text
    assert re.search(r"7\s*<span class=\"unit\">generated", html)
    assert "5 reused from cache" in text


def test_drift_arrows_per_persona() -> None:
    html = render()
    grown = section(html, "p-champions")
    shrunk = section(html, "p-lapsing")
    new = section(html, "p-newbies")
    assert "▲" in grown
    assert "+20.0%" in grown
    assert "▼" not in grown
    assert "▼" in shrunk
    assert "\N{MINUS SIGN}10.0%" in shrunk
    assert "▲" not in shrunk
    assert "preferred_channel=app" in shrunk
    assert "top_category=toys" in shrunk
    assert 'class="drift drift-new"' in new
    assert ">new</span>" in new
    assert "▲" not in new
    assert "▼" not in new


def test_no_drift_badge_without_drift() -> None:
    html = render([make_persona("p1", "Steady", 100, 1.0, drift=None)])
    assert 'class="drift ' not in html
    assert "▲" not in html
    assert "▼" not in html


def test_recommendations_grouped_with_because() -> None:
    persona = make_persona(
        "p1",
        "Grouped",
        100,
        1.0,
        recommendations=(
            Recommendation("product", "P-one", "d1", "because-p1", "t=1"),
            Recommendation("marketing", "M-one", "d2", "because-m1", "t=2"),
            Recommendation("product", "P-two", "d3", "because-p2", "t=3"),
        ),
    )
    html = render([persona])
    part = section(html, "p1")
    marketing = part.index('class="rec-group rec-marketing"')
    product = part.index('class="rec-group rec-product"')
    assert marketing < product  # marketing first regardless of input order
    assert marketing < part.index("M-one") < product < part.index("P-one") < part.index("P-two")
    for because in ("because-p1", "because-m1", "because-p2"):
        assert f"because: {because}" in part


def test_flags_visibly_marked() -> None:
    persona = make_persona("p1", "Flagged", 100, 1.0)
    images = [
        make_image("p1", "portrait-1", flags=("illustrative", "moderation_fallback")),
        make_image("p1", "lifestyle-1", flags=("illustrative", "budget_fallback")),
    ]
    html = render([persona], images)
    part = section(html, "p1")
    warn = [el for el in parse(part).elements if "flag-warn" in el.classes]
    assert len(warn) == 2
    assert "moderation_fallback" in part
    assert "budget_fallback" in part
    assert part.count("image-flagged") == 2
    assert "2 fallback" in html


def test_key_numbers_formatting() -> None:
    assert format_key_number("aov", 84.456) == ("Average order value", "84.46")
    assert format_key_number("recency_days", 12.6) == ("Days since last order", "13 days")
    assert format_key_number("repeat_share", 0.625) == ("Repeat share", "62.5%")
    assert format_key_number("median_age", 41.0) == ("Median age", "41")
    assert format_key_number("mystery_metric", 1234.5) == ("Mystery metric", "1,234.50")
    assert format_key_number("clv", float("nan"))[1] == "—"
    part = section(render(), "p-champions")
    assert "84.46" in part
    assert "13 days" in part
    assert "62.5%" in part


def test_deterministic_output() -> None:
    first = render()
    second = render()
    assert first == second
    later = render(run=make_run(generated_at=datetime(2025, 1, 1, tzinfo=UTC)))
    assert later != first
    assert later.replace("2025-01-01T00:00:00+00:00", "").replace("2025-01-01 00:00 UTC", "") == first.replace(
        "2024-05-02T02:13:07+00:00", ""
    ).replace("2024-05-02 02:13 UTC", "")


def test_empty_gallery_renders() -> None:
    html = render([], [])
    assert "No personas were published for this run." in html
    assert "<svg" not in html


def test_persona_without_images_or_traits() -> None:
    persona = make_persona("p1", "Bare", 100, 1.0, top_traits=(), recommendations=(), key_numbers={})
    html = render([persona], [])
    assert "No images for this persona in this run." in html
    assert "bar lift-bar" not in html
    assert 'id="persona-p1"' in html
