"""Offline portrait renderer: a drawn avatar card for a persona, without any image API.

The avatar itself comes from ``python-avatars`` (Avataaars style); everything around it (backgrounds, scenes,
interest icons, device badge, caption band and the "Illustrative" label) is drawn here as plain SVG shapes and
rasterised with ``resvg``. Output depends only on the depicted traits, the seed, the size and the caption, so
the same inputs always give byte-identical PNGs and the images can be cached by prompt hash.

Traits drive what is drawn: age picks hair colour (grey is certain at 65+), brows, glasses and fine lines;
gender picks the hair set and whether facial hair is possible; occupation and income pick clothing and its
palette; interests become accessories and small hand-drawn icons; style and setting pick the backdrop; the
device becomes a corner badge. The seed only decides what the traits leave open (skin tone, the exact hair
style within the allowed set, colours).
"""

from __future__ import annotations

import functools
import hashlib
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET
from xml.sax.saxutils import escape

import python_avatars as pa
import resvg_py

from persona_pipeline.contracts import DepictedTraits

__all__ = [
    "RENDERER_MODEL",
    "AvatarChoice",
    "choose_avatar",
    "render_portrait",
    "render_portrait_svg",
]

#: Identifies the drawing code; part of the image cache key, so bump it whenever the output changes.
RENDERER_MODEL = "avatar-v1"

#: The card is drawn on a fixed canvas and scaled to the requested size by the root viewBox.
_CANVAS = 512
_MIN_SIZE = 64
_MAX_SIZE = 4096

_SVG_NS = "http://www.w3.org/2000/svg"
_XLINK_NS = "http://www.w3.org/1999/xlink"
_FONT_STACK = "DejaVu Sans, Liberation Sans, Arial, Helvetica, sans-serif"
_INK = "#2D3142"

# --------------------------------------------------------------------------------------------------------------
# Palettes and part sets
# --------------------------------------------------------------------------------------------------------------

_SKIN_TONES: tuple[str, ...] = ("#FFDBB4", "#EDB98A", "#D08B5B", "#AE5D29", "#614335")

_NATURAL_HAIR: tuple[tuple[str, float], ...] = (
    ("#2C1B18", 3.0),  # black
    ("#4A312C", 3.0),  # dark brown
    ("#724133", 3.0),  # brown
    ("#A55728", 1.5),  # auburn
    ("#B58143", 1.5),  # blonde
    ("#D6B370", 1.0),  # golden blonde
    ("#C93305", 0.5),  # red
)
_PLAYFUL_HAIR: tuple[tuple[str, float], ...] = (("#F59797", 0.4), ("#ECDCBF", 0.4))  # pastel pink, platinum
#: Silver and greys; 65+ always draws from this set, 55-64 mostly does.
GREY_HAIR: tuple[str, ...] = ("#E8E1E1", "#C9C4C0", "#A9A5A2")

_FEMALE_HAIR_YOUNG = (
    "big_hair",
    "bob",
    "bun",
    "curly",
    "curvy",
    "long_not_too_long",
    "mia_wallace",
    "straight_1",
    "straight_strand",
    "fro",
    "fro_band",
    "dreads",
)
_FEMALE_HAIR_OLDER = ("bob", "bun", "mia_wallace", "curly", "long_not_too_long", "pixie")
_MALE_HAIR_YOUNG = (
    "short_flat",
    "short_round",
    "short_waved",
    "short_curly",
    "caesar",
    "caesar_side_part",
    "frizzle",
    "shaggy",
    "short_dreads_1",
    "short_dreads_2",
    "quiff",
)
_MALE_HAIR_MIDDLE = ("short_flat", "short_round", "short_waved", "short_curly", "caesar", "caesar_side_part")
_MALE_HAIR_OLDER = ("sides", "short_flat", "caesar_side_part", "short_waved", "short_round", "caesar")
_NEUTRAL_HAIR_YOUNG = (
    "pixie",
    "shaggy",
    "short_curly",
    "bob",
    "frizzle",
    "curly",
    "mia_wallace",
    "short_dreads_2",
    "long_not_too_long",
    "fro",
)
_NEUTRAL_HAIR_OLDER = ("pixie", "short_curly", "bob", "short_waved", "curly")

#: Hair styles each gender can get, whatever the age; male and female sets never overlap.
HAIR_STYLES: dict[str, frozenset[str]] = {
    "female": frozenset(_FEMALE_HAIR_YOUNG + _FEMALE_HAIR_OLDER),
    "male": frozenset(_MALE_HAIR_YOUNG + _MALE_HAIR_MIDDLE + _MALE_HAIR_OLDER),
    "non_binary": frozenset(_NEUTRAL_HAIR_YOUNG + _NEUTRAL_HAIR_OLDER),
}

_FACIAL_HAIR = ("beard_light", "beard_medium", "moustache_fancy", "beard_magestic")

_MUTED = ("#3C4F5C", "#25557C", "#262E33", "#5B6770", "#6B2E3A", "#4A5D48", "#8C7355", "#2F4858")
_BRIGHT = ("#FF488E", "#FF5C5C", "#5199E4", "#65C9FF", "#FF9F43", "#8E6CEF", "#1FB5A8", "#FFC93C")
_EVERYDAY = ("#5199E4", "#3C4F5C", "#4F8A8B", "#C0706B", "#7A9E7E", "#B1E2FF", "#FFDEB5", "#929598")
_SHIRTS = ("#FFFFFF", "#B1E2FF", "#E6E6E6", "#5199E4", "#F2D0C9")  # under a (fixed dark) blazer
_WORKWEAR = ("#3B6EA5", "#4A5D48", "#5B6770")
_SHIRT_GRAPHICS = ("bear", "deer", "diamond", "pizza", "bat")

#: (keywords, clothing options, category); the first entry whose keyword occurs in the occupation wins.
_OCCUPATIONS: tuple[tuple[tuple[str, ...], tuple[str, ...], str], ...] = (
    (("executive", "director", "ceo", "founder"), ("blazer_shirt",), "formal"),
    (("manager", "consultant", "lawyer", "banker"), ("blazer_shirt", "blazer_sweater"), "formal"),
    (("teacher", "lecturer", "professor", "librarian"), ("collar_sweater",), "caring"),
    (("health", "nurse", "doctor", "medic", "pharmac"), ("collar_sweater",), "caring"),
    (("student", "pupil"), ("hoodie", "graphic_shirt"), "casual"),
    (("tech", "engineer", "developer", "programmer"), ("hoodie", "shirt_crew_neck"), "casual"),
    (("trade", "construction", "mechanic", "electrician", "plumber", "farmer"), ("overall",), "manual"),
    (("creative", "artist", "designer", "musician", "writer"), ("graphic_shirt",), "casual"),
    (("retail", "sales", "shop"), ("shirt_crew_neck", "shirt_v_neck"), "everyday"),
    (("retired", "pensioner"), ("collar_sweater", "shirt_v_neck"), "everyday"),
    (("homemaker", "parent"), ("shirt_scoop_neck", "shirt_v_neck", "shirt_crew_neck"), "everyday"),
    (("freelance", "self-employed", "self employed"), ("graphic_shirt", "shirt_v_neck", "hoodie"), "everyday"),
)
_DEFAULT_CLOTHING = ("shirt_crew_neck", "shirt_v_neck", "shirt_scoop_neck")

#: (background, accent) pairs for the soft backdrops.
_PASTELS: tuple[tuple[str, str], ...] = (
    ("#FDE8D7", "#F4B393"),
    ("#E3F1E8", "#9FD3B4"),
    ("#E4ECFB", "#9DB8EE"),
    ("#F5E6F8", "#D4A5E0"),
    ("#FFF4CC", "#F2C94C"),
    ("#E0F4F6", "#86CBD3"),
    ("#FCE4EC", "#F2A1B9"),
)

#: Interest keyword -> icon name; unknown interests get a generic star.
_INTEREST_KEYWORDS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("wine", "spirit", "drink"), "wine"),
    (("fashion", "apparel", "clothing", "shoe"), "fashion"),
    (("electronic", "tech", "gadget", "computer"), "electronics"),
    (("beauty", "cosmetic", "makeup", "skincare"), "beauty"),
    (("grocer", "food", "supermarket"), "grocery"),
    (("sport", "fitness", "outdoor", "gym"), "sports"),
    (("book", "reading", "literature"), "books"),
    (("toy", "game", "kids"), "toys"),
    (("garden", "plant", "flower"), "garden"),
    (("home", "furniture", "decor", "kitchen"), "home"),
)

# --------------------------------------------------------------------------------------------------------------
# Trait helpers
# --------------------------------------------------------------------------------------------------------------

_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _xml_text(value: str) -> str:
    """Escape ``value`` for use as SVG text or attribute content (characters XML forbids are dropped)."""
    return escape(_XML_INVALID.sub("", value), {'"': "&quot;", "'": "&apos;"})


def _lower_bound(band: str, default: int) -> int:
    """First number in a band label ("25-34" -> 25, "65+" -> 65, "<25k" -> 0); ``default`` if none."""
    text = band.strip().lower()
    if text.startswith("<"):
        return 0
    match = re.search(r"\d+", text)
    return int(match.group()) if match else default


def _rng_for(seed: str) -> random.Random:
    # A digest (not hash()) keeps choices identical across processes and Python hash randomisation.
    digest = hashlib.sha256(f"{RENDERER_MODEL}|{seed}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _weighted(rng: random.Random, options: Sequence[tuple[str, float]]) -> str:
    return rng.choices([o for o, _ in options], weights=[w for _, w in options], k=1)[0]


def _interest_icons(interests: Sequence[str]) -> tuple[str, ...]:
    """Map free-text interests to at most three distinct icon names, keeping their order."""
    icons: list[str] = []
    for interest in interests:
        text = str(interest).strip().lower()
        icon = next((name for keys, name in _INTEREST_KEYWORDS if any(k in text for k in keys)), "star")
        if icon not in icons:
            icons.append(icon)
    return tuple(icons[:3])


def _occupation(occupation: str) -> tuple[tuple[str, ...], str | None]:
    text = occupation.strip().lower()
    for keys, clothes, category in _OCCUPATIONS:
        if any(k in text for k in keys):
            return clothes, category
    return _DEFAULT_CLOTHING, None


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    return int(hex_colour[1:3], 16), int(hex_colour[3:5], 16), int(hex_colour[5:7], 16)


def _distance(a: str, b: str) -> float:
    return float(sum((x - y) ** 2 for x, y in zip(_rgb(a), _rgb(b), strict=True)) ** 0.5)


def _luminance(hex_colour: str) -> float:
    r, g, b = _rgb(hex_colour)
    return (0.299 * r + 0.587 * g + 0.114 * b) / 255


# --------------------------------------------------------------------------------------------------------------
# Avatar choice
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AvatarChoice:
    """The avatar parts picked for one persona image (python-avatars enum values and hex colours)."""

    skin: str
    hair: str
    hair_colour: str
    facial_hair: str
    eyebrows: str
    eyes: str
    mouth: str
    glasses: str
    clothing: str
    clothing_colour: str
    shirt_graphic: str
    extras: tuple[str, ...]  # hand-drawn additions: "fine_lines", "headphones", "earrings"
    icons: tuple[str, ...]  # interest icons, most distinctive first


def choose_avatar(depicted: DepictedTraits, *, seed: str) -> AvatarChoice:
    """Pick avatar parts from the depicted traits; ``seed`` decides only what the traits leave open."""
    rng = _rng_for(seed)
    age = _lower_bound(depicted.age_band, 35)
    income = _lower_bound(depicted.income_band, 50)
    gender = depicted.gender.strip().lower()
    icons = _interest_icons(depicted.interests)
    clothes, category = _occupation(depicted.occupation)
    affluent = income >= 100 or category == "formal"

    skin = rng.choice(_SKIN_TONES)

    if gender == "female":
        hair = rng.choice(_FEMALE_HAIR_OLDER if age >= 55 else _FEMALE_HAIR_YOUNG)
    elif gender == "male":
        hair = rng.choice(_MALE_HAIR_OLDER if age >= 55 else _MALE_HAIR_MIDDLE if age >= 35 else _MALE_HAIR_YOUNG)
    else:
        hair = rng.choice(_NEUTRAL_HAIR_OLDER if age >= 55 else _NEUTRAL_HAIR_YOUNG)

    grey_chance = 1.0 if age >= 65 else 0.65 if age >= 55 else 0.2 if age >= 45 else 0.0
    natural = _NATURAL_HAIR + (_PLAYFUL_HAIR if age < 35 else ())
    grey = rng.random() < grey_chance
    hair_colour = rng.choice(GREY_HAIR) if grey else _weighted(rng, natural)

    facial_hair = ""
    beard_chance = 0.3 if age < 25 else 0.45
    if gender == "male" and rng.random() < beard_chance:
        facial_hair = rng.choice(_FACIAL_HAIR[:3] if age >= 45 else _FACIAL_HAIR[:2] + _FACIAL_HAIR[3:])

    if age >= 55:
        eyebrows = rng.choice(("flat_natural", "default_natural", "up_down_natural"))
        eyes = rng.choice(("default", "squint", "happy"))
    elif age >= 35:
        eyebrows = rng.choice(("default_natural", "flat_natural", "default"))
        eyes = rng.choice(("default", "happy"))
    else:
        eyebrows = rng.choice(("default_natural", "raised_excited_natural", "default"))
        eyes = rng.choice(("default", "happy", "default", "wink"))
    mouth = rng.choice(("smile", "twinkle", "default"))

    # Glasses become likelier with age, and a bit likelier again for readers and gadget fans.
    glasses_chance = 0.7 if age >= 65 else 0.5 if age >= 55 else 0.3 if age >= 35 else 0.12
    if "books" in icons or "electronics" in icons:
        glasses_chance += 0.15
    glasses = ""
    if rng.random() < glasses_chance:
        glasses = rng.choice(("prescription_01", "prescription_02", "round"))
    elif "fashion" in icons and age < 55 and rng.random() < 0.4:
        glasses = rng.choice(("wayfarers", "kurt"))

    if affluent and category in (None, "everyday"):
        clothes = ("blazer_shirt", "blazer_sweater")
    clothing = rng.choice(clothes)
    if clothing == "blazer_shirt":
        palette: Sequence[str] = _SHIRTS
    elif clothing == "overall":
        palette = _WORKWEAR
    elif affluent:
        palette = _MUTED
    elif age < 35:
        palette = _BRIGHT
    else:
        palette = _EVERYDAY
    if clothing == "graphic_shirt":
        # The graphic is white; keep it readable.
        palette = [c for c in palette if _luminance(c) < 0.6] or list(_MUTED)
    # Clothes that match the skin tone make the bust read as bare; keep some contrast.
    palette = [c for c in palette if _distance(c, skin) > 60] or list(palette)
    clothing_colour = rng.choice(palette)
    shirt_graphic = rng.choice(_SHIRT_GRAPHICS) if clothing == "graphic_shirt" else ""

    extras: list[str] = []
    if age >= 55:
        extras.append("fine_lines")
    if "electronics" in icons and rng.random() < 0.7:
        extras.append("headphones")
    if "beauty" in icons and gender != "male" and rng.random() < 0.7:
        extras.append("earrings")

    return AvatarChoice(
        skin=skin,
        hair=hair,
        hair_colour=hair_colour,
        facial_hair=facial_hair,
        eyebrows=eyebrows,
        eyes=eyes,
        mouth=mouth,
        glasses=glasses,
        clothing=clothing,
        clothing_colour=clothing_colour,
        shirt_graphic=shirt_graphic,
        extras=tuple(extras),
        icons=icons,
    )


def _avatar_svg(choice: AvatarChoice) -> str:
    avatar = pa.Avatar(
        style=pa.AvatarStyle.TRANSPARENT,
        top=pa.HairType(choice.hair),
        eyebrows=pa.EyebrowType(choice.eyebrows),
        eyes=pa.EyeType(choice.eyes),
        nose=pa.NoseType.DEFAULT,
        mouth=pa.MouthType(choice.mouth),
        facial_hair=pa.FacialHairType(choice.facial_hair),
        skin_color=choice.skin,
        hair_color=choice.hair_colour,
        facial_hair_color=choice.hair_colour,
        accessory=pa.AccessoryType(choice.glasses),
        clothing=pa.ClothingType(choice.clothing),
        clothing_color=choice.clothing_colour,
        shirt_graphic=pa.ClothingGraphic(choice.shirt_graphic),
    )
    return str(avatar.render())


_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_URL_REF = re.compile(r"url\(#([^)]+)\)")
_HREF = f"{{{_XLINK_NS}}}href"
_SHAPES = frozenset({"path", "rect", "circle", "ellipse", "polygon", "polyline", "line"})
_WHITE = frozenset({"white", "#fff", "#ffffff"})
_PAINT_ATTRS = frozenset({"opacity", "fill-opacity", "style", "filter", "mask"})


def _local(element: ET.Element) -> str:
    tag = element.tag
    return tag.split("}", 1)[1] if isinstance(tag, str) and tag.startswith(f"{{{_SVG_NS}}}") else ""


def _masks_as_clips(root: ET.Element) -> set[str]:
    """Ids of masks that only paint opaque white shapes.

    Such a mask cuts exactly like a clip path with the same shapes, and resvg draws clip paths much faster
    than luminance masks, so these are emitted as ``clipPath``.
    """
    by_id: dict[str, ET.Element] = {}
    for element in root.iter():
        if element.get("id"):
            by_id.setdefault(element.get("id", ""), element)

    def plain_white(element: ET.Element) -> bool:
        return element.get("fill", "white").lower() in _WHITE and not _PAINT_ATTRS & set(element.attrib)

    verdict: dict[str, bool] = {}
    for mask in root.iter(f"{{{_SVG_NS}}}mask"):
        ok = set(mask.attrib) <= {"id", "fill"} and mask.get("fill", "").lower() in _WHITE and len(mask) > 0
        for child in mask:
            shape = child
            if _local(child) == "use":
                target = by_id.get((child.get(_HREF) or child.get("href") or "#")[1:])
                ok = ok and target is not None and plain_white(child)
                shape = target if target is not None else child
            ok = ok and _local(shape) in _SHAPES and plain_white(shape)
        mask_id = mask.get("id", "")
        verdict[mask_id] = verdict.get(mask_id, True) and ok
    for element in root.iter():
        # An element cannot take two clip paths; keep its mask as it is.
        match = _URL_REF.fullmatch(element.get("mask", ""))
        if match and element.get("clip-path"):
            verdict[match.group(1)] = False
    return {mask_id for mask_id, ok in verdict.items() if ok}


def _avatar_fragment(avatar_svg: str, prefix: str = "pp-av-") -> str:
    """Re-serialise the avatar's drawing as an SVG fragment that can be nested in the card.

    Ids get a prefix (and lose characters like emoji) so they cannot clash with the card's own; titles,
    metadata and attributes from editor namespaces are dropped; plain masks become clip paths.
    """
    root = ET.fromstring(avatar_svg)
    clip_masks = _masks_as_clips(root)

    def ref(name: str) -> str:
        return prefix + _ID_UNSAFE.sub("_", name)

    out: list[str] = []

    def emit(element: ET.Element, fill_rule: str) -> None:
        name = _local(element)
        if not name or name in ("title", "desc", "metadata"):
            return
        fill_rule = element.get("fill-rule", fill_rule)
        as_clip = name == "mask" and element.get("id", "") in clip_masks
        attrs: list[str] = []
        for key, value in element.attrib.items():
            if key == _HREF:
                key, value = "xlink:href", "#" + ref(value[1:]) if value.startswith("#") else value
            elif key.startswith("{") or (as_clip and key == "fill"):
                continue
            elif key == "id":
                value = ref(value)
            elif "url(#" in value:
                match = _URL_REF.fullmatch(value)
                if key == "mask" and match and match.group(1) in clip_masks:
                    key = "clip-path"
                value = _URL_REF.sub(lambda m: f"url(#{ref(m.group(1))})", value)
            attrs.append(f' {key}="{_xml_text(value)}"')
        if as_clip:
            # Mask content inherits fill-rule from where the mask is defined; a clip path needs it spelled out.
            name = "clipPath"
            attrs.append(f' clip-rule="{_xml_text(fill_rule)}"')
        out.append(f"<{name}{''.join(attrs)}>")
        if element.text and element.text.strip():
            out.append(_xml_text(element.text.strip()))
        for child in element:
            emit(child, fill_rule)
        out.append(f"</{name}>")

    for child in root:
        emit(child, root.get("fill-rule", "nonzero"))
    return "".join(out)


def _avatar_extras(extras: Sequence[str]) -> str:
    """Hand-drawn additions in the avatar's own 264x280 coordinate space."""
    parts: list[str] = []
    if "fine_lines" in extras:
        # Crow's feet at the outer eye corners and soft smile lines, subtle enough to read as age, not mood.
        parts.append(
            '<g fill="none" stroke="#000" stroke-opacity="0.16" stroke-width="1.8" stroke-linecap="round">'
            '<path d="M89 106 L83 102.5 M88 112 L82 112.5 M89 118 L83 121.5"/>'
            '<path d="M175 106 L181 102.5 M176 112 L182 112.5 M175 118 L181 121.5"/>'
            '<path d="M113 136 Q106 146 110 156 M151 136 Q158 146 154 156"/>'
            "</g>"
        )
    if "headphones" in extras:
        # Over-ear headphones: band over the top of the head, cups on the ears.
        parts.append(
            f'<g><path d="M68 116 C64 2 200 2 196 116" fill="none" stroke="{_INK}" stroke-width="9" '
            'stroke-linecap="round"/>'
            f'<rect x="54" y="94" width="24" height="44" rx="11" fill="{_INK}"/>'
            f'<rect x="186" y="94" width="24" height="44" rx="11" fill="{_INK}"/>'
            '<rect x="59" y="101" width="11" height="30" rx="5.5" fill="#FF5C5C"/>'
            '<rect x="194" y="101" width="11" height="30" rx="5.5" fill="#FF5C5C"/></g>'
        )
    if "earrings" in extras:
        parts.append(
            '<g fill="#F2C94C" stroke="#B7892B" stroke-width="1.2">'
            '<circle cx="70" cy="137" r="4"/><circle cx="194" cy="137" r="4"/></g>'
        )
    return "".join(parts)


# --------------------------------------------------------------------------------------------------------------
# Icons (each drawn in a 64x64 box)
# --------------------------------------------------------------------------------------------------------------


def _stroke(width: float = 2.5) -> str:
    return f'stroke="{_INK}" stroke-width="{width}" stroke-linejoin="round" stroke-linecap="round"'


_STROKE = _stroke()

_ICONS: dict[str, str] = {
    "wine": (
        f'<path d="M21 8 H43 C44 24 40 34 32 34 C24 34 20 24 21 8 Z" fill="#FFFFFF" {_STROKE}/>'
        '<path d="M22.2 18 H41.8 C41 27 37.5 31.5 32 31.5 C26.5 31.5 23 27 22.2 18 Z" fill="#9B2242"/>'
        f'<path d="M32 34 V50 M22 54 C24 50 40 50 42 54 Z" fill="#FFFFFF" {_STROKE}/>'
    ),
    "fashion": (
        f'<path d="M26 24 V18 C26 10 38 10 38 18 V24" fill="none" {_STROKE}/>'
        f'<path d="M14 24 H50 L52 56 H12 Z" fill="#E86A92" {_STROKE}/>'
        '<path d="M22 30 V34 M42 30 V34" stroke="#FFFFFF" stroke-width="3" stroke-linecap="round"/>'
        f'<path d="M19 44 H45" stroke="#FFFFFF" stroke-opacity="0.6" stroke-width="2"/>'
    ),
    "electronics": (
        f'<rect x="13" y="14" width="38" height="26" rx="3" fill="#2F4858" {_STROKE}/>'
        '<rect x="17" y="18" width="30" height="18" rx="1.5" fill="#65C9FF"/>'
        '<path d="M20 31 L27 24 L32 29 L36 25 L44 33" fill="none" stroke="#FFFFFF" stroke-width="2"/>'
        f'<path d="M6 44 H58 L54 51 H10 Z" fill="#AAB4BE" {_STROKE}/>'
    ),
    "home": (
        f'<path d="M14 30 V54 H50 V30" fill="#F2CC8F" {_STROKE}/>'
        f'<path d="M8 32 L32 11 L56 32" fill="none" {_stroke(4)}/>'
        f'<path d="M10 31 L32 12 L54 31 Z" fill="#E07A5F" {_STROKE}/>'
        f'<rect x="28" y="39" width="9" height="15" fill="#81B29A" {_STROKE}/>'
        f'<rect x="18" y="36" width="7" height="7" fill="#FFFFFF" {_stroke(2)}/>'
        f'<rect x="40" y="36" width="7" height="7" fill="#FFFFFF" {_stroke(2)}/>'
    ),
    "beauty": (
        f'<rect x="23" y="36" width="18" height="20" rx="2" fill="#D9A93B" {_STROKE}/>'
        f'<rect x="25" y="27" width="14" height="10" fill="#E6E6E6" {_STROKE}/>'
        f'<path d="M26 27 V15 L38 9 V27 Z" fill="#D7265B" {_STROKE}/>'
        '<path d="M28 41 V51" stroke="#FFFFFF" stroke-opacity="0.7" stroke-width="2" stroke-linecap="round"/>'
    ),
    "grocery": (
        '<circle cx="25" cy="20" r="7" fill="#7BC67E"/><circle cx="37" cy="18" r="7" fill="#FF9F43"/>'
        f'<path d="M6 12 H13 L20 42 H48 L55 22 H15" fill="#FFFFFF" {_STROKE}/>'
        f'<path d="M18 32 H51" fill="none" {_stroke(2)}/>'
        f'<circle cx="24" cy="50" r="4" fill="{_INK}"/><circle cx="44" cy="50" r="4" fill="{_INK}"/>'
    ),
    "sports": (
        f'<rect x="17" y="29" width="30" height="6" rx="2" fill="#AAB4BE" {_STROKE}/>'
        f'<rect x="10" y="18" width="8" height="28" rx="2" fill="#3D5A80" {_STROKE}/>'
        f'<rect x="46" y="18" width="8" height="28" rx="2" fill="#3D5A80" {_STROKE}/>'
        f'<rect x="4" y="23" width="6" height="18" rx="2" fill="#EE6C4D" {_STROKE}/>'
        f'<rect x="54" y="23" width="6" height="18" rx="2" fill="#EE6C4D" {_STROKE}/>'
    ),
    "books": (
        f'<rect x="10" y="44" width="44" height="10" rx="2" fill="#E07A5F" {_STROKE}/>'
        f'<rect x="14" y="34" width="38" height="10" rx="2" fill="#3D5A80" {_STROKE}/>'
        f'<rect x="8" y="24" width="42" height="10" rx="2" fill="#81B29A" {_STROKE}/>'
        f'<path d="M18 10 H44 V24 H18 Z" fill="#F2CC8F" {_STROKE}/>'
        '<path d="M44 48 H50 M46 38 H49 M12 28 H16" stroke="#FFFFFF" stroke-width="2" stroke-linecap="round"/>'
    ),
    "toys": (
        f'<rect x="8" y="34" width="22" height="22" rx="2" fill="#F2CC8F" {_STROKE}/>'
        f'<rect x="34" y="34" width="22" height="22" rx="2" fill="#81B29A" {_STROKE}/>'
        f'<rect x="21" y="12" width="22" height="22" rx="2" fill="#E07A5F" {_STROKE}/>'
        '<circle cx="19" cy="45" r="4" fill="#FFFFFF"/>'
        '<path d="M40 50 L45 40 L50 50 Z" fill="#FFFFFF"/>'
        '<path d="M27 23 H37 M32 18 V28" stroke="#FFFFFF" stroke-width="3" stroke-linecap="round"/>'
    ),
    "garden": (
        f'<path d="M32 40 V22" {_STROKE} fill="none"/>'
        f'<path d="M32 34 C24 34 20 28 20 24 C26 24 31 28 32 34 Z" fill="#7BC67E" {_stroke(2)}/>'
        '<g fill="#F28482">'
        '<circle cx="32" cy="10" r="5"/><circle cx="40" cy="16" r="5"/><circle cx="24" cy="16" r="5"/>'
        '<circle cx="27" cy="24" r="5"/><circle cx="37" cy="24" r="5"/></g>'
        '<circle cx="32" cy="17.5" r="4" fill="#F2C94C"/>'
        f'<path d="M20 40 H44 L40 58 H24 Z" fill="#C8553D" {_STROKE}/>'
    ),
    "star": (
        f'<path d="M32 8 L38.5 23 L54.5 24.5 L42.5 35 L46 51 L32 42.5 L18 51 L21.5 35 L9.5 24.5 L25.5 23 Z" '
        f'fill="#F2C94C" {_STROKE}/>'
    ),
}


def _icon(name: str, cx: float, cy: float, size: float) -> str:
    scale = size / 64
    return (
        f'<g transform="translate({cx - size / 2:.1f} {cy - size / 2:.1f}) scale({scale:.4f})">'
        f"{_ICONS.get(name, _ICONS['star'])}</g>"
    )


def _icon_badge(name: str, cx: float, cy: float, radius: float = 30) -> str:
    """Interest icon on a round white badge with a flat offset shadow (cheaper than a blur filter)."""
    return (
        f'<circle cx="{cx:.1f}" cy="{cy + 3:.1f}" r="{radius}" fill="#000" fill-opacity="0.08"/>'
        f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="{radius}" fill="#FFFFFF" fill-opacity="0.95"/>'
        + _icon(name, cx, cy, radius * 1.6)
    )


_DEVICE_GLYPHS: dict[str, str] = {
    "mobile": '<rect x="7" y="2.5" width="10" height="19" rx="2"/><path d="M11 18.5 H13"/>',
    "tablet": '<rect x="3.5" y="3" width="17" height="18" rx="2"/><path d="M11 18 H13"/>',
    "desktop": '<rect x="2.5" y="3.5" width="19" height="13" rx="1.5"/><path d="M12 16.5 V20.5 M8 20.5 H16"/>',
    "laptop": '<rect x="5" y="5" width="14" height="10" rx="1"/><path d="M2.5 18.5 H21.5"/>',
}


def _device_badge(device: str, cx: float, cy: float) -> str:
    key = device.strip().lower()
    key = {"phone": "mobile", "smartphone": "mobile", "pc": "desktop", "computer": "desktop"}.get(key, key)
    glyph = _DEVICE_GLYPHS.get(key, _DEVICE_GLYPHS["desktop"])
    return (
        f'<circle cx="{cx}" cy="{cy + 2}" r="21" fill="#000" fill-opacity="0.08"/>'
        f'<circle cx="{cx}" cy="{cy}" r="21" fill="#FFFFFF" fill-opacity="0.95"/>'
        f'<g transform="translate({cx - 15} {cy - 15}) scale(1.25)" fill="none" stroke="{_INK}" '
        f'stroke-width="1.8" stroke-linecap="round" stroke-linejoin="round">{glyph}</g>'
    )


# --------------------------------------------------------------------------------------------------------------
# Backdrops
# --------------------------------------------------------------------------------------------------------------


def _portrait_backdrop(rng: random.Random, cx: float, cy: float, radius: float) -> str:
    background, accent = rng.choice(_PASTELS)
    return (
        '<defs><radialGradient id="pp-glow" cx="50%" cy="42%" r="62%">'
        f'<stop offset="0" stop-color="#FFFFFF"/><stop offset="1" stop-color="{accent}"/></radialGradient></defs>'
        f'<rect width="{_CANVAS}" height="{_CANVAS}" fill="{background}"/>'
        f'<circle cx="{cx}" cy="{cy}" r="{radius + 10}" fill="{accent}" fill-opacity="0.25"/>'
        f'<circle cx="{cx}" cy="{cy}" r="{radius}" fill="url(#pp-glow)"/>'
    )


def _illustration_backdrop(rng: random.Random) -> str:
    background, accent = rng.choice(_PASTELS)
    kind = rng.choice(("dots", "triangles", "rings", "plus", "waves"))
    if kind == "dots":
        tile, shape = (
            28,
            f'<circle cx="7" cy="7" r="3" fill="{accent}"/><circle cx="21" cy="21" r="3" fill="{accent}"/>',
        )
    elif kind == "triangles":
        tile, shape = 40, f'<path d="M8 28 L16 14 L24 28 Z" fill="none" stroke="{accent}" stroke-width="2.5"/>'
    elif kind == "rings":
        tile, shape = 44, f'<circle cx="22" cy="22" r="9" fill="none" stroke="{accent}" stroke-width="3"/>'
    elif kind == "plus":
        tile, shape = 36, f'<path d="M18 11 V25 M11 18 H25" stroke="{accent}" stroke-width="3" stroke-linecap="round"/>'
    else:
        tile, shape = 48, f'<path d="M0 24 Q12 14 24 24 T48 24" fill="none" stroke="{accent}" stroke-width="3"/>'
    blob_x = rng.choice((96, 416))
    return (
        f'<defs><pattern id="pp-pattern" width="{tile}" height="{tile}" patternUnits="userSpaceOnUse">'
        f"{shape}</pattern></defs>"
        f'<rect width="{_CANVAS}" height="{_CANVAS}" fill="{background}"/>'
        f'<rect width="{_CANVAS}" height="{_CANVAS}" fill="url(#pp-pattern)" opacity="0.55"/>'
        f'<circle cx="{blob_x}" cy="120" r="110" fill="{accent}" fill-opacity="0.35"/>'
        f'<path d="M96 512 V250 A160 160 0 0 1 416 250 V512 Z" fill="#FFFFFF" fill-opacity="0.55"/>'
    )


_SKIES: tuple[tuple[str, str], ...] = (("#A8D8F0", "#EAF6FB"), ("#F7C6A3", "#FCE9D9"), ("#B9C7F2", "#EEF0FB"))


def _sky(rng: random.Random) -> str:
    top, bottom = rng.choice(_SKIES)
    sun_x = rng.choice((120, 392))
    return (
        '<defs><linearGradient id="pp-sky" x1="0" y1="0" x2="0" y2="1">'
        f'<stop offset="0" stop-color="{top}"/><stop offset="1" stop-color="{bottom}"/></linearGradient></defs>'
        f'<rect width="{_CANVAS}" height="{_CANVAS}" fill="url(#pp-sky)"/>'
        f'<circle cx="{sun_x}" cy="96" r="34" fill="#FFF3C4" fill-opacity="0.9"/>'
        f'<g fill="#FFFFFF" fill-opacity="0.8"><ellipse cx="{512 - sun_x}" cy="110" rx="46" ry="14"/>'
        f'<ellipse cx="{512 - sun_x + 24}" cy="100" rx="26" ry="12"/></g>'
    )


def _scene_urban(rng: random.Random, horizon: int) -> str:
    parts = [_sky(rng)]
    for layer, (colour, low, high) in enumerate((("#B7C6D3", 120, 230), ("#8397A8", 70, 170))):
        x = -10 - layer * 20
        while x < _CANVAS:
            width = rng.randint(38, 70)
            height = rng.randint(low, high)
            top = horizon - height
            parts.append(f'<rect x="{x}" y="{top}" width="{width}" height="{height}" fill="{colour}"/>')
            if layer == 1:
                # Window grid on the near layer.
                for wy in range(top + 10, horizon - 12, 16):
                    for wx in range(x + 7, x + width - 9, 12):
                        parts.append(
                            f'<rect x="{wx}" y="{wy}" width="5" height="8" fill="#F4E7B8" fill-opacity="0.75"/>'
                        )
            x += width + rng.randint(0, 6)
    parts.append(f'<rect y="{horizon}" width="{_CANVAS}" height="{_CANVAS - horizon}" fill="#D8D3CB"/>')
    parts.append(f'<rect y="{horizon}" width="{_CANVAS}" height="6" fill="#BDB6AC"/>')
    return "".join(parts)


def _house(x: float, base: float, width: float, wall: str, roof: str) -> str:
    height = width * 0.7
    top = base - height
    return (
        f'<rect x="{x}" y="{top}" width="{width}" height="{height}" fill="{wall}"/>'
        f'<path d="M{x - 6} {top + 2} L{x + width / 2} {top - width * 0.42} L{x + width + 6} {top + 2} Z" '
        f'fill="{roof}"/>'
        f'<rect x="{x + width * 0.42}" y="{base - height * 0.5}" width="{width * 0.16}" '
        f'height="{height * 0.5}" fill="#7A5C45"/>'
        f'<rect x="{x + width * 0.12}" y="{top + height * 0.25}" width="{width * 0.18}" '
        f'height="{width * 0.18}" fill="#EAF6FB"/>'
        f'<rect x="{x + width * 0.7}" y="{top + height * 0.25}" width="{width * 0.18}" '
        f'height="{width * 0.18}" fill="#EAF6FB"/>'
    )


def _tree(x: float, base: float, scale: float, leaf: str) -> str:
    return (
        f'<rect x="{x - 4 * scale:.1f}" y="{base - 34 * scale:.1f}" width="{8 * scale:.1f}" '
        f'height="{34 * scale:.1f}" fill="#8D6748"/>'
        f'<circle cx="{x}" cy="{base - 48 * scale:.1f}" r="{24 * scale:.1f}" fill="{leaf}"/>'
        f'<circle cx="{x - 14 * scale:.1f}" cy="{base - 36 * scale:.1f}" r="{15 * scale:.1f}" fill="{leaf}"/>'
        f'<circle cx="{x + 14 * scale:.1f}" cy="{base - 36 * scale:.1f}" r="{15 * scale:.1f}" fill="{leaf}"/>'
    )


def _scene_suburban(rng: random.Random, horizon: int) -> str:
    walls = ("#F6E3C6", "#E8EEF2", "#F3D9D2", "#E4EAD8")
    roofs = ("#C8553D", "#5B6770", "#8C5A3C", "#3D5A80")
    parts = [
        _sky(rng),
        f'<path d="M0 {horizon - 30} Q256 {horizon - 80} 512 {horizon - 30} V512 H0 Z" fill="#CDE5C0"/>',
    ]
    for x in (-20, 130, 290, 430):
        width = rng.randint(80, 100)
        parts.append(_house(x, horizon, width, rng.choice(walls), rng.choice(roofs)))
    parts.append(_tree(112, horizon, 1.0, "#7FB77E"))
    parts.append(_tree(412, horizon, 0.9, "#6FA86E"))
    parts.append(f'<rect y="{horizon}" width="{_CANVAS}" height="{_CANVAS - horizon}" fill="#A9D59C"/>')
    # A picket fence line along the front gardens.
    parts.append(f'<rect y="{horizon - 16}" width="{_CANVAS}" height="4" fill="#FFFFFF" fill-opacity="0.9"/>')
    parts.append(
        "".join(
            f'<rect x="{x}" y="{horizon - 24}" width="6" height="24" fill="#FFFFFF" fill-opacity="0.9"/>'
            for x in range(4, _CANVAS, 22)
        )
    )
    return "".join(parts)


def _scene_rural(rng: random.Random, horizon: int) -> str:
    far = rng.randint(-40, 40)
    parts = [
        _sky(rng),
        f'<path d="M0 {horizon - 70} C120 {horizon - 140 + far} 260 {horizon - 60} 512 {horizon - 120} '
        f'V512 H0 Z" fill="#BFDDA8"/>',
    ]
    for x, scale in ((60 + rng.randint(-20, 20), 0.7), (440 + rng.randint(-20, 20), 0.8), (300, 0.5)):
        parts.append(_tree(x, horizon - 50, scale, "#6FA86E"))
    parts.append(
        f'<path d="M0 {horizon - 20} C150 {horizon - 70} 330 {horizon + 10} 512 {horizon - 40} V512 H0 Z" '
        'fill="#93C47D"/>'
    )
    parts.append(_tree(36, horizon + 4, 1.1, "#4F8F4E"))
    parts.append(f'<rect y="{horizon + 20}" width="{_CANVAS}" height="{_CANVAS - horizon}" fill="#86B870"/>')
    return "".join(parts)


def _scene_home(rng: random.Random, horizon: int) -> str:
    wall = rng.choice(("#F2E6D8", "#E5EEF0", "#F3E1E1", "#E9ECDD"))
    floor = rng.choice(("#C9A27E", "#B98B68", "#D2B48C"))
    return (
        f'<rect width="{_CANVAS}" height="{_CANVAS}" fill="{wall}"/>'
        # Window with a view of the sky.
        '<rect x="30" y="70" width="128" height="150" rx="4" fill="#FFFFFF"/>'
        '<rect x="38" y="78" width="112" height="134" fill="#BFE3F5"/>'
        '<circle cx="120" cy="112" r="16" fill="#FFF3C4"/>'
        '<path d="M38 190 Q80 160 150 186 V212 H38 Z" fill="#A9D59C"/>'
        '<path d="M94 78 V212 M38 145 H150" stroke="#FFFFFF" stroke-width="6"/>'
        '<path d="M22 64 H166" stroke="#8C7355" stroke-width="5" stroke-linecap="round"/>'
        # Shelf for the interest items.
        '<rect x="390" y="214" width="116" height="9" rx="2" fill="#8C7355"/>'
        '<path d="M404 223 L404 236 M492 223 L492 236" stroke="#8C7355" stroke-width="5"/>'
        # Picture frame.
        '<rect x="392" y="74" width="78" height="60" rx="3" fill="#FFFFFF" stroke="#8C7355" stroke-width="4"/>'
        '<path d="M400 126 L420 100 L436 116 L446 106 L462 126 Z" fill="#9FD3B4"/>'
        f'<rect y="{horizon}" width="{_CANVAS}" height="{_CANVAS - horizon}" fill="{floor}"/>'
        f'<rect y="{horizon - 10}" width="{_CANVAS}" height="10" fill="#FFFFFF" fill-opacity="0.7"/>'
    )


# --------------------------------------------------------------------------------------------------------------
# Text
# --------------------------------------------------------------------------------------------------------------

#: Rough advance width of DejaVu/Liberation Sans in ems, used to fit the caption on one line.
_EM_ADVANCE = 0.63
_CAPTION_BAND = 60


def _clean_caption(caption: str | None) -> str:
    """Caption as one line of text XML can hold (control characters dropped, whitespace collapsed)."""
    return " ".join(_XML_INVALID.sub("", caption or "").split())


def _caption(text: str) -> str:
    available = _CANVAS - 40
    font_size = next((fs for fs in (24, 21, 18, 16) if len(text) * fs * _EM_ADVANCE <= available), 16)
    max_chars = int(available / (font_size * _EM_ADVANCE))
    if len(text) > max_chars:
        cut = text[: max_chars - 1]
        # Prefer ending on a whole word unless that throws away too much.
        words = cut.rsplit(" ", 1)[0]
        text = (words if len(words) > max_chars * 0.6 else cut).rstrip(" -,;:") + "\u2026"
    top = _CANVAS - _CAPTION_BAND
    baseline = top + _CAPTION_BAND / 2 + font_size * 0.36
    return (
        f'<rect y="{top}" width="{_CANVAS}" height="{_CAPTION_BAND}" fill="#1F2933" fill-opacity="0.82"/>'
        f'<text x="{_CANVAS / 2}" y="{baseline:.1f}" text-anchor="middle" font-family="{_FONT_STACK}" '
        f'font-size="{font_size}" font-weight="bold" fill="#FFFFFF">{_xml_text(text)}</text>'
    )


def _illustrative_label() -> str:
    return (
        '<rect x="12" y="12" width="96" height="24" rx="12" fill="#FFFFFF" fill-opacity="0.88"/>'
        f'<text x="60" y="28.5" text-anchor="middle" font-family="{_FONT_STACK}" font-size="12.5" '
        'fill="#3E4A56">Illustrative</text>'
    )


# --------------------------------------------------------------------------------------------------------------
# Composition
# --------------------------------------------------------------------------------------------------------------

#: Clip for the portrait style, in avatar coordinates: everything above the circle's centre line stays
#: (hair may rise out of the circle), below it the bust is cut to the circle.
_PORTRAIT_CLIP = (
    '<clipPath id="pp-portrait-clip"><path d="M-60 -60 H324 V160 H252 '
    'A120 120 0 0 1 132 280 A120 120 0 0 1 12 160 H-60 Z"/></clipPath>'
)


def _place_avatar(fragment: str, x: float, y: float, scale: float, clip: str | None = None) -> str:
    inner = f'<g clip-path="url(#{clip})">{fragment}</g>' if clip else fragment
    return f'<g transform="translate({x:.2f} {y:.2f}) scale({scale:.4f})">{inner}</g>'


def render_portrait_svg(depicted: DepictedTraits, *, seed: str, size: int = 512, caption: str | None = None) -> str:
    """Draw the persona card as an SVG document of ``size`` x ``size`` pixels.

    The result is deterministic for the same (depicted, seed, size, caption). Every user-derived string is
    XML-escaped; an "Illustrative" label is always drawn because the image shows no real person.
    """
    if not isinstance(size, int) or not _MIN_SIZE <= size <= _MAX_SIZE:
        raise ValueError(f"size must be an integer between {_MIN_SIZE} and {_MAX_SIZE}, got {size!r}")
    choice = choose_avatar(depicted, seed=seed)
    # Backdrop colours use their own stream so they do not shift when avatar choices change.
    rng = _rng_for(f"backdrop|{seed}")
    avatar = _avatar_fragment(_avatar_svg(choice)) + _avatar_extras(choice.extras)
    caption_text = _clean_caption(caption)
    has_caption = bool(caption_text)
    bottom = _CANVAS - _CAPTION_BAND if has_caption else _CANVAS
    style = depicted.style if depicted.style in ("portrait", "illustration", "lifestyle") else "portrait"

    body: list[str] = []
    if style == "portrait":
        # Centred in the space left above the caption band.
        cx, cy, radius = 256, (238 if has_caption else 262), 168
        scale = radius / 120
        body.append(_portrait_backdrop(rng, cx, cy, radius))
        body.append(f"<defs>{_PORTRAIT_CLIP}</defs>")
        body.append(_place_avatar(avatar, cx - 132 * scale, cy - 160 * scale, scale, "pp-portrait-clip"))
        badges = ((50, cy - 24), (462, cy - 24), (50, cy + 80))
        body.extend(_icon_badge(icon, x, y) for icon, (x, y) in zip(choice.icons, badges, strict=False))
    elif style == "illustration":
        scale = 1.5
        body.append(_illustration_backdrop(rng))
        # The bust ends on the caption band (or the card edge) so the shoulders are never hidden.
        body.append(_place_avatar(avatar, 256 - 132 * scale, bottom - 280 * scale, scale))
        badges = ((54, 190), (458, 190), (54, 292))
        body.extend(_icon_badge(icon, x, y) for icon, (x, y) in zip(choice.icons, badges, strict=False))
    else:
        setting = depicted.setting.strip().lower()
        horizon = 392 if setting == "home" else 360
        scene = {"urban": _scene_urban, "rural": _scene_rural, "home": _scene_home}.get(setting, _scene_suburban)
        body.append(scene(rng, horizon))
        scale = 1.3
        if setting == "home":
            # Items stand on the shelf; a third one sits on the floor by the window.
            spots = [(424, 192, 48), (478, 192, 48), (62, bottom - 40, 60)]
        else:
            spots = [(60, bottom - 40, 64), (452, bottom - 40, 64), (452, 200, 56)]
        props: list[str] = []
        for icon, (x, y, icon_size) in zip(choice.icons, spots, strict=False):
            on_ground = y > 300
            if on_ground:
                props.append(
                    f'<ellipse cx="{x}" cy="{y + icon_size * 0.42:.1f}" rx="{icon_size * 0.45:.1f}" ry="6" '
                    'fill="#000" fill-opacity="0.12"/>'
                )
            elif setting != "home":
                # Outdoors the upper item is a thought bubble, so it reads as on the persona's mind.
                props.append(
                    f'<g fill="#FFFFFF" fill-opacity="0.85"><circle cx="{x}" cy="{y}" r="{icon_size * 0.64:.1f}"/>'
                    f'<circle cx="{x - 40}" cy="{y + 40}" r="7"/><circle cx="{x - 56}" cy="{y + 58}" r="4.5"/></g>'
                )
            props.append(_icon(icon, x, y, icon_size))
        # Props belong to the scene, so the persona stands in front of them.
        body.extend(props)
        body.append(_place_avatar(avatar, 256 - 132 * scale, bottom - 280 * scale, scale))

    body.append(_device_badge(depicted.device, 478, 34))
    body.append(_illustrative_label())
    if has_caption:
        body.append(_caption(caption_text))

    description = (
        f"Illustrative avatar ({style}): age {depicted.age_band}, {depicted.gender}, {depicted.occupation}, "
        f"income {depicted.income_band}; interests: {', '.join(map(str, depicted.interests)) or 'none'}; "
        f"{depicted.channel} via {depicted.device}; {depicted.setting}"
    )
    return (
        f'<svg xmlns="{_SVG_NS}" xmlns:xlink="{_XLINK_NS}" width="{size}" height="{size}" '
        f'viewBox="0 0 {_CANVAS} {_CANVAS}">'
        f"<title>Illustrative persona image</title><desc>{_xml_text(description)}</desc>"
        f"{''.join(body)}</svg>"
    )


_FONT_CANDIDATES: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    (
        "DejaVu Sans",
        (
            "/usr/share/fonts/truetype/dejavu",
            "/usr/share/fonts/dejavu",
            "/usr/share/fonts/TTF",
            "/usr/share/fonts/dejavu-sans-fonts",
            "/usr/local/share/fonts",
        ),
        ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf"),
    ),
    (
        "Liberation Sans",
        (
            "/usr/share/fonts/truetype/liberation",
            "/usr/share/fonts/truetype/liberation2",
            "/usr/share/fonts/liberation",
            "/usr/share/fonts/liberation-sans",
        ),
        ("LiberationSans-Regular.ttf", "LiberationSans-Bold.ttf"),
    ),
)


@functools.lru_cache(maxsize=1)
def _font_options() -> dict[str, Any]:
    """resvg font settings: a known sans font file when one is installed, else the system font scan.

    Loading just the known files is faster than scanning every system font and keeps text identical on
    machines with different font collections. Without any font resvg simply draws no text.
    """
    for family, directories, files in _FONT_CANDIDATES:
        for directory in directories:
            paths = [Path(directory) / name for name in files]
            if paths[0].is_file():
                return {
                    "skip_system_fonts": True,
                    "font_files": [str(p) for p in paths if p.is_file()],
                    "font_family": family,
                    "sans_serif_family": family,
                }
    return {}


def render_portrait(depicted: DepictedTraits, *, seed: str, size: int = 512, caption: str | None = None) -> bytes:
    """Render the persona card to PNG bytes (``size`` x ``size``); see :func:`render_portrait_svg`."""
    svg = render_portrait_svg(depicted, seed=seed, size=size, caption=caption)
    return bytes(resvg_py.svg_to_bytes(svg_string=svg, **_font_options()))
