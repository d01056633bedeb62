"""Offline portrait renderer: valid, deterministic PNGs whose content follows the depicted traits."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from persona_pipeline.contracts import DepictedTraits
from persona_pipeline.imaging import offline
from persona_pipeline.imaging.offline import (
    GREY_HAIR,
    HAIR_STYLES,
    RENDERER_MODEL,
    choose_avatar,
    render_portrait,
    render_portrait_svg,
)

SVG = "{http://www.w3.org/2000/svg}"
SEEDS = [hashlib.sha256(str(i).encode()).hexdigest()[:16] for i in range(30)]
REPO_ROOT = Path(__file__).resolve().parents[2]

BASE = DepictedTraits(
    age_band="25-34",
    gender="female",
    income_band="50-75k",
    occupation="teacher",
    interests=("wine", "books", "garden"),
    channel="web",
    device="mobile",
    setting="urban",
    style="portrait",
)


def traits(**changes: object) -> DepictedTraits:
    return dataclasses.replace(BASE, **changes)  # type: ignore[arg-type]


def png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert png[12:16] == b"IHDR"
    width, height = struct.unpack(">II", png[16:24])
    return width, height


def svg_texts(svg: str) -> list[str]:
    root = ET.fromstring(svg)
    return ["".join(el.itertext()) for el in root.iter(f"{SVG}text")]


def test_renderer_model_is_versioned() -> None:
    assert RENDERER_MODEL == "avatar-v1"


@pytest.mark.parametrize("size", [512, 256, 300])
@pytest.mark.parametrize("style", ["portrait", "illustration", "lifestyle"])
def test_png_has_requested_size(style: str, size: int) -> None:
    png = render_portrait(traits(style=style), seed="ab12", size=size, caption="Caption")
    assert png_size(png) == (size, size)


def test_same_inputs_give_identical_bytes() -> None:
    first = render_portrait(BASE, seed="c0ffee", caption="Weekend Wine Explorer")
    second = render_portrait(BASE, seed="c0ffee", caption="Weekend Wine Explorer")
    assert first == second


def test_output_does_not_depend_on_hash_randomisation() -> None:
    code = (
        "import hashlib, sys\n"
        "from persona_pipeline.contracts import DepictedTraits\n"
        "from persona_pipeline.imaging.offline import render_portrait\n"
        "d = DepictedTraits('45-54', 'non_binary', '100-150k', 'manager', ('toys', 'sports'), 'app', 'tablet',"
        " 'rural', 'lifestyle')\n"
        "sys.stdout.write(hashlib.sha256(render_portrait(d, seed='feed', size=128, caption='x')).hexdigest())\n"
    )
    digests = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(REPO_ROOT)}
        result = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, cwd=REPO_ROOT
        )
        digests.add(result.stdout)
    assert len(digests) == 1


def test_different_seed_gives_different_image() -> None:
    assert render_portrait(BASE, seed="aaaa", size=128) != render_portrait(BASE, seed="bbbb", size=128)


@pytest.mark.parametrize(
    ("field", "a", "b"),
    [
        ("age_band", "18-24", "65+"),
        ("gender", "female", "male"),
        ("style", "portrait", "illustration"),
        ("style", "illustration", "lifestyle"),
        ("setting", "urban", "home"),
    ],
)
def test_traits_change_the_image(field: str, a: str, b: str) -> None:
    base = traits(style="lifestyle") if field == "setting" else BASE
    left = render_portrait(traits(**{**dataclasses.asdict(base), field: a}), seed="1234", size=128)
    right = render_portrait(traits(**{**dataclasses.asdict(base), field: b}), seed="1234", size=128)
    assert left != right


@pytest.mark.parametrize("gender", ["female", "male", "non_binary"])
def test_65_plus_always_has_grey_hair(gender: str) -> None:
    for seed in SEEDS:
        depicted = traits(age_band="65+", gender=gender)
        assert choose_avatar(depicted, seed=seed).hair_colour in GREY_HAIR
        svg = render_portrait_svg(depicted, seed=seed)
        assert any(f'fill="{grey}"' in svg for grey in GREY_HAIR)


def test_young_people_never_get_grey_hair() -> None:
    for seed in SEEDS:
        svg = render_portrait_svg(traits(age_band="18-24"), seed=seed)
        assert not any(grey in svg for grey in GREY_HAIR)


def test_older_people_wear_glasses_more_often() -> None:
    def glasses_count(age_band: str) -> int:
        return sum(bool(choose_avatar(traits(age_band=age_band, interests=()), seed=s).glasses) for s in SEEDS)

    assert glasses_count("65+") > glasses_count("18-24")


def test_male_and_female_hair_sets_differ() -> None:
    assert not HAIR_STYLES["male"] & HAIR_STYLES["female"]
    for gender in ("female", "male", "non_binary"):
        for age_band in ("18-24", "35-44", "65+"):
            for seed in SEEDS[:10]:
                depicted = traits(gender=gender, age_band=age_band)
                choice = choose_avatar(depicted, seed=seed)
                assert choice.hair in HAIR_STYLES[gender]
                # The chosen hair part is what ends up in the drawing.
                assert f'id="pp-av-{choice.hair}_' in render_portrait_svg(depicted, seed=seed)


def test_facial_hair_only_for_men() -> None:
    male = [choose_avatar(traits(gender="male", age_band="35-44"), seed=s).facial_hair for s in SEEDS]
    assert any(male)
    for gender in ("female", "non_binary", "unspecified"):
        assert not any(choose_avatar(traits(gender=gender), seed=s).facial_hair for s in SEEDS)


@pytest.mark.parametrize(
    ("occupation", "income", "expected"),
    [
        ("executive", "150k+", {"blazer_shirt"}),
        ("teacher", "25-50k", {"collar_sweater"}),
        ("trades", "25-50k", {"overall"}),
        ("student", "<25k", {"hoodie", "graphic_shirt"}),
        ("astronaut", "150k+", {"blazer_shirt", "blazer_sweater"}),
    ],
)
def test_occupation_and_income_pick_clothing(occupation: str, income: str, expected: set[str]) -> None:
    for seed in SEEDS[:10]:
        choice = choose_avatar(traits(occupation=occupation, income_band=income), seed=seed)
        assert choice.clothing in expected


def test_interest_icons_follow_interests() -> None:
    choice = choose_avatar(traits(interests=("Wine", "electronics", "garden", "books")), seed="1")
    assert choice.icons == ("wine", "electronics", "garden")


def test_unknown_interests_and_occupation_still_render() -> None:
    depicted = traits(
        occupation="astronaut",
        interests=("kites", "quantum knitting"),
        income_band="unknown",
        age_band="n/a",
        gender="prefer not to say",
        channel="carrier pigeon",
        device="smartwatch",
        setting="moon",
    )
    assert choose_avatar(depicted, seed="1").icons == ("star",)
    for style in ("portrait", "illustration", "lifestyle"):
        png = render_portrait(dataclasses.replace(depicted, style=style), seed="77", size=128)
        assert png_size(png) == (128, 128)


def test_hostile_strings_are_escaped() -> None:
    depicted = traits(
        occupation="<script>alert(1)</script>",
        interests=('"><svg onload=x>', "books & more"),
        gender="</desc><script>",
    )
    caption = "Tom & Jerry <b>\"bold\"</b> 'quoted' \x00\x07 done"
    svg = render_portrait_svg(depicted, seed="beef", caption=caption)
    root = ET.fromstring(svg)  # must be well-formed
    assert not list(root.iter(f"{SVG}script"))
    assert not list(root.iter("script"))
    assert "<script>" not in svg
    desc = root.find(f"{SVG}desc")
    assert desc is not None and "<script>alert(1)</script>" in (desc.text or "")
    assert "Tom & Jerry <b>\"bold\"</b> 'quoted' done" in svg_texts(svg)
    png = render_portrait(depicted, seed="beef", caption=caption, size=128)
    assert png_size(png) == (128, 128)


def test_caption_is_drawn_in_the_svg() -> None:
    svg = render_portrait_svg(BASE, seed="1", caption="  Weekend Wine Explorer ")
    texts = svg_texts(svg)
    assert "Weekend Wine Explorer" in texts
    assert "Illustrative" in texts
    no_caption = render_portrait_svg(BASE, seed="1")
    assert svg_texts(no_caption) == ["Illustrative"]


def test_long_caption_is_shortened() -> None:
    caption = "A really rather long persona name that would never fit on a single caption line"
    (text,) = [t for t in svg_texts(render_portrait_svg(BASE, seed="1", caption=caption)) if t != "Illustrative"]
    assert text.endswith("\u2026") and len(text) < len(caption)


def test_blank_caption_draws_no_band() -> None:
    assert render_portrait_svg(BASE, seed="1", caption=" \x00\x01 ") == render_portrait_svg(BASE, seed="1")


@pytest.mark.skipif(not offline._font_options(), reason="no known sans font installed")
def test_caption_text_is_rasterised() -> None:
    # Same layout and length, different letters: only drawn glyphs can make the PNGs differ.
    first = render_portrait(BASE, seed="1", size=256, caption="AAAA")
    second = render_portrait(BASE, seed="1", size=256, caption="BBBB")
    assert first != second


@pytest.mark.parametrize("size", [0, 10, 100_000])
def test_invalid_size_is_rejected(size: int) -> None:
    with pytest.raises(ValueError, match="size"):
        render_portrait_svg(BASE, seed="1", size=size)
