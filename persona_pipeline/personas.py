"""Persona cards, narratives, recommendations and image prompts, built from segment aggregates only.

Everything here reads :class:`SegmentProfile` objects; no customer-level row reaches this module. Texts come from
transparent rules over traits, and every recommendation cites the trait behind it. Image prompts are built from
*quantised* traits (age band, dominant values, top-3 interests) so small nightly drift leaves the prompt — and
so the cached image — unchanged.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace

from persona_pipeline.config import PersonaSettings
from persona_pipeline.contracts import (
    DepictedTraits,
    ImagePrompt,
    ImageStyle,
    Persona,
    Recommendation,
    SegmentProfile,
    TraitLift,
    stable_hash,
    to_jsonable,
)

# -- vocabulary -----------------------------------------------------------------------------------------------

QUALIFIERS = {
    "Champions": "Devoted",
    "Loyal": "Loyal",
    "Potential Loyalist": "Rising",
    "New": "Newcomer",
    "Promising": "Promising",
    "Need Attention": "Wavering",
    "About to Sleep": "Fading",
    "Can't Lose Them": "Slipping",
    "At Risk": "Drifting",
    "Hibernating": "Dormant",
    "Lost": "Lapsed",
    "Prospects": "Browsing",
}
NOUNS = {
    "fashion": "Trendsetter",
    "beauty": "Beauty Devotee",
    "electronics": "Tech Enthusiast",
    "books": "Bookworm",
    "wine": "Connoisseur",
    "home": "Homemaker",
    "garden": "Gardener",
    "grocery": "Basket Builder",
    "toys": "Family Shopper",
    "sports": "Active Adventurer",
}
GOALS = {
    "fashion": "Stay ahead of the latest looks without overspending",
    "beauty": "Discover products that fit a personal routine",
    "electronics": "Get the best specs and reliable tech support",
    "books": "Find the next great read quickly",
    "wine": "Curate a cellar and entertain with confidence",
    "home": "Make home a comfortable, well-styled place",
    "garden": "Keep the garden thriving through the seasons",
    "grocery": "Stock up efficiently and keep the weekly budget in check",
    "toys": "Keep the children happy and the household running smoothly",
    "sports": "Stay active with gear that lasts",
}
PAINS_BY_CHANNEL = {
    "app": "Slow or clunky mobile checkout",
    "web": "Hard-to-compare product pages",
    "store": "Stock that is out when they visit",
    "catalogue": "Ordering that assumes a smartphone",
    "phone": "Long waits to speak to someone",
}
GENDER_WORDS = {"female": "woman", "male": "man", "non_binary": "person"}
STYLE_PHRASES: dict[str, str] = {
    "portrait": "Photographic head-and-shoulders portrait",
    "illustration": "Friendly flat vector illustration",
    "lifestyle": "Candid lifestyle photograph",
}
SETTING_PHRASES = {
    "urban": "in a lively city street",
    "suburban": "outside a suburban home",
    "rural": "in the countryside",
    "home": "at home in a warm living room",
}
INCOME_WORDS = {
    "<25k": "budget-conscious",
    "25-50k": "modest-income",
    "50-75k": "middle-income",
    "75-100k": "comfortable",
    "100-150k": "affluent",
    "150k+": "wealthy",
}
_SAFE_TOKEN = re.compile(r"[^A-Za-z &'/-]+")


# -- helpers --------------------------------------------------------------------------------------------------


def _top(profile: SegmentProfile, dimension: str, default: str = "unknown") -> str:
    shares = profile.distributions.get(dimension) or {}
    if not shares:
        return default
    return max(shares.items(), key=lambda kv: (kv[1], kv[0]))[0]


def _share(profile: SegmentProfile, dimension: str, value: str) -> float:
    return float((profile.distributions.get(dimension) or {}).get(value, 0.0))


def _best_lift(profile: SegmentProfile, dimension: str) -> TraitLift | None:
    candidates = [t for t in profile.lifts if t.dimension == dimension and t.lift > 1.0]
    return max(candidates, key=lambda t: (t.lift, t.support, t.value)) if candidates else None


def safe_token(value: str, limit: int = 40) -> str:
    """Keep only plain words from a data value that goes into free text or prompts."""
    cleaned = _SAFE_TOKEN.sub(" ", value).strip()
    return re.sub(r"\s+", " ", cleaned)[:limit].strip() or "other"


def _money(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:,.0f}"


def _days(value: float) -> str:
    if not math.isfinite(value):
        return "no purchase yet"
    if value < 60:
        return f"{value:.0f} days"
    return f"{value / 30.4:.0f} months"


def _signature_interests(profile: SegmentProfile, limit: int = 3) -> tuple[str, ...]:
    """Top categories by lift (then by share), from both purchases and browsing."""
    seen: list[str] = []
    # What they buy says more than what they browse: purchase lifts first, then browsing lifts.
    for dimension in ("top_category", "top_interest"):
        for trait in profile.lifts:
            if trait.dimension == dimension and trait.lift > 1.0 and trait.value not in seen:
                seen.append(trait.value)
    for dimension in ("top_category", "top_interest"):
        for value, _ in sorted((profile.distributions.get(dimension) or {}).items(), key=lambda kv: (-kv[1], kv[0])):
            if value not in seen:
                seen.append(value)
    return tuple(safe_token(v) for v in seen[:limit])


# -- naming ---------------------------------------------------------------------------------------------------


def qualifier_for(profile: SegmentProfile, population: Sequence[SegmentProfile]) -> str:
    """A behavioural adjective: the RFM label's word, or for other methods one derived from recency/frequency."""
    if profile.label in QUALIFIERS:
        return QUALIFIERS[profile.label]
    recency = profile.numeric.get("recency_days", float("nan"))
    frequency = profile.numeric.get("frequency", 0.0)
    freqs = sorted(p.numeric.get("frequency", 0.0) for p in population)
    median_freq = freqs[len(freqs) // 2] if freqs else 0.0
    if not math.isfinite(recency) or frequency == 0:
        return "Browsing"
    if recency > 365:
        return "Lapsed"
    if recency > 120:
        return "Drifting"
    if profile.numeric.get("tenure_days", 1e9) < 90:
        return "Newcomer"
    return "Devoted" if frequency > median_freq else "Occasional"


def noun_for(profile: SegmentProfile) -> str:
    """A noun from the most distinctive category (or, failing that, the most common one)."""
    interests = _signature_interests(profile, limit=1)
    interest = interests[0] if interests else "other"
    return NOUNS.get(interest, f"{interest.title()} Fan" if interest != "other" else "Shopper")


def name_personas(
    profiles: Sequence[SegmentProfile], previous_names: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Unique, stable names: a continuing segment keeps yesterday's name unless another persona now needs it."""
    previous_names = previous_names or {}
    names: dict[str, str] = {}
    taken: set[str] = set()
    # Continuing segments first, so they keep their names.
    order = sorted(profiles, key=lambda p: (p.segment_id not in previous_names, -p.size, p.segment_id))
    for profile in order:
        candidate = previous_names.get(profile.segment_id) or f"{qualifier_for(profile, profiles)} {noun_for(profile)}"
        if candidate in taken:
            region = safe_token(_top(profile, "region", ""), 24)
            age = _top(profile, "age_band", "")
            for suffix in (f"of {region}" if region and region != "other" else "", f"({age})", profile.label):
                if suffix and f"{candidate} {suffix}" not in taken:
                    candidate = f"{candidate} {suffix}"
                    break
            else:
                candidate = f"{candidate} {profile.segment_id}"
        names[profile.segment_id] = candidate
        taken.add(candidate)
    return names


# -- texts ----------------------------------------------------------------------------------------------------


def narrative_for(name: str, profile: SegmentProfile) -> tuple[str, str]:
    """(tagline, narrative) from the segment's dominant traits and medians."""
    n = profile.numeric
    age = _top(profile, "age_band")
    gender = _top(profile, "gender")
    occupation = safe_token(_top(profile, "occupation"))
    income = _top(profile, "income_band")
    region = safe_token(_top(profile, "region"))
    channel = safe_token(_top(profile, "preferred_channel"))
    device = safe_token(_top(profile, "preferred_device"))
    interests = _signature_interests(profile)
    gender_share = _share(profile, "gender", gender)
    gender_text = (
        f"{gender_share:.0%} {GENDER_WORDS.get(gender, 'people').replace('man', 'men').replace('woman', 'women')}"
        if gender in GENDER_WORDS and gender != "non_binary"
        else "a mix of genders"
    )
    tagline = f"{age}, {INCOME_WORDS.get(income, 'mixed-income')}, loves {', '.join(interests[:2]) or 'browsing'}"
    story = (
        f"{name}s are {profile.size:,} customers ({profile.share:.1%} of profiled customers): mostly aged {age}, "
        f"{gender_text}, often {occupation} and typically in the {income} income band, most commonly in {region}. "
    )
    if n.get("frequency", 0) > 0:
        aov, total = _money(n.get("aov", float("nan"))), _money(n.get("monetary", float("nan")))
        story += (
            f"A typical member has ordered {n['frequency']:.0f} times, spending about {aov} per order and "
            f"{total} in total; the last order was {_days(n.get('recency_days', float('nan')))} ago. "
        )
    else:
        story += "Most have browsed but not yet completed an order. "
    leaning = ", ".join(interests) or "many categories"
    story += f"They prefer the {channel} channel, usually on {device}, and their interest leans to {leaning}."
    return tagline, story


def goals_and_pains(profile: SegmentProfile) -> tuple[tuple[str, ...], tuple[str, ...]]:
    interests = _signature_interests(profile)
    goals = [GOALS[i] for i in interests if i in GOALS][:2] or ["Find what they need without friction"]
    pains = []
    channel = _top(profile, "preferred_channel")
    if channel in PAINS_BY_CHANNEL:
        pains.append(PAINS_BY_CHANNEL[channel])
    if profile.numeric.get("return_rate", 0.0) > 0.08:
        pains.append("Products that don't match expectations (frequent returns)")
    income = _top(profile, "income_band")
    if income in ("<25k", "25-50k"):
        pains.append("Delivery costs that eat into a tight budget")
    elif income in ("100-150k", "150k+"):
        pains.append("Generic offers that ignore their preferences")
    recency = profile.numeric.get("recency_days", float("nan"))
    if math.isfinite(recency) and recency > 180:
        pains.append("Nothing new has given them a reason to come back")
    return tuple(goals), tuple(pains[:3] or ["Irrelevant messages"])


def recommendations_for(profile: SegmentProfile) -> tuple[Recommendation, ...]:
    """Marketing (channel, offer, timing) and product actions, each citing the trait it rests on."""
    recs: list[Recommendation] = []
    n = profile.numeric
    channel_lift = _best_lift(profile, "preferred_channel")
    channel = channel_lift.value if channel_lift else _top(profile, "preferred_channel")
    channel_share = _share(profile, "preferred_channel", channel)
    recs.append(
        Recommendation(
            kind="marketing",
            title=f"Reach them through {safe_token(channel)}",
            detail=f"Prioritise {safe_token(channel)} for campaigns to this persona.",
            because=f"{channel_share:.0%} prefer {safe_token(channel)}"
            + (f" ({channel_lift.lift:.1f}x the average)" if channel_lift else ""),
            trait=f"preferred_channel={channel}",
        )
    )
    recency = n.get("recency_days", float("nan"))
    frequency = n.get("frequency", 0.0)
    aov = n.get("aov", float("nan"))
    income = _top(profile, "income_band")
    if frequency == 0 or not math.isfinite(recency):
        offer = Recommendation(
            "marketing",
            "First-purchase incentive",
            "Offer a welcome discount or free delivery on the first order.",
            "the median member has no completed order yet",
            "frequency=0",
        )
    elif recency > 180:
        offer = Recommendation(
            "marketing",
            "Win-back offer",
            "Send a personal 'we miss you' offer with a clear expiry.",
            f"median time since last order is {_days(recency)}",
            f"recency_days={recency:.0f}",
        )
    elif income in ("100-150k", "150k+") or (math.isfinite(aov) and aov > 150):
        offer = Recommendation(
            "marketing",
            "Premium early access",
            "Invite them to previews, limited editions and concierge service rather than discounts.",
            f"most common income band is {income}; median order value {_money(aov)}",
            f"income_band={income}",
        )
    else:
        offer = Recommendation(
            "marketing",
            "Loyalty points and bundles",
            "Reward repeat orders with points and multi-buy bundles.",
            f"median {frequency:.0f} orders at {_money(aov)} each",
            f"frequency={frequency:.0f}",
        )
    recs.append(offer)
    if math.isfinite(recency):
        cadence = "weekly" if recency < 30 else "monthly" if recency < 120 else "a one-off reactivation sequence"
        recs.append(
            Recommendation(
                "marketing",
                f"Contact cadence: {cadence}",
                "Time messages to the persona's buying rhythm; suppress them for a week after each order.",
                f"median {recency:.0f} days since last order",
                f"recency_days={recency:.0f}",
            )
        )
    category_lift = _best_lift(profile, "top_category") or _best_lift(profile, "top_interest")
    if category_lift:
        value = safe_token(category_lift.value)
        recs.append(
            Recommendation(
                "product",
                f"Lead with {value}",
                f"Feature {value} in recommendations, landing pages and bundles for this persona.",
                f"{category_lift.segment_share:.0%} favour {value} ({category_lift.lift:.1f}x the average, "
                f"{category_lift.support:,} customers)",
                category_lift.label,
            )
        )
    if n.get("return_rate", 0.0) > 0.08:
        recs.append(
            Recommendation(
                "product",
                "Reduce returns",
                "Improve size guides, photos and reviews on the categories they buy.",
                f"return rate {n['return_rate']:.0%}",
                f"return_rate={n['return_rate']:.2f}",
            )
        )
    household = _best_lift(profile, "household")
    if household and household.value == "family":
        recs.append(
            Recommendation(
                "product",
                "Family packs",
                "Offer multi-packs and family-sized bundles.",
                f"{household.segment_share:.0%} live in households of 3+ ({household.lift:.1f}x the average)",
                household.label,
            )
        )
    return tuple(recs)


# -- image prompts --------------------------------------------------------------------------------------------

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")
_URL = re.compile(r"(https?://|www\.)\S+", re.IGNORECASE)
_PHONE = re.compile(r"\+?\d[\d\s().-]{6,}\d")
_DIGITS = re.compile(r"\d{4,}")
_ADDRESS = re.compile(
    r"\b\d+\s+\w+(\s\w+)?\s(street|st|road|rd|avenue|ave|lane|ln|drive|dr|close|way|court|place)\b", re.IGNORECASE
)


def scrub_prompt(text: str, max_chars: int) -> str:
    """Remove anything shaped like an email, URL, phone number, id or street address; clamp the length."""
    for pattern in (_EMAIL, _URL, _ADDRESS, _PHONE, _DIGITS):
        text = pattern.sub("", text)
    text = re.sub(r"\s+", " ", text).strip()
    if len(text) > max_chars:
        text = text[: max_chars - 1].rsplit(" ", 1)[0].rstrip(",;") + "."
    return text


def allocate(distribution: Mapping[str, float], n: int) -> list[str]:
    """Largest-remainder allocation of ``n`` slots to values in proportion to their shares."""
    items = sorted(((v, s) for v, s in distribution.items() if s > 0), key=lambda kv: (-kv[1], kv[0]))
    if not items or n <= 0:
        return []
    total = sum(s for _, s in items)
    quotas = [(v, s / total * n) for v, s in items]
    counts = {v: math.floor(q) for v, q in quotas}
    remaining = n - sum(counts.values())
    for v, _ in sorted(quotas, key=lambda vq: (-(vq[1] - math.floor(vq[1])), vq[0]))[:remaining]:
        counts[v] += 1
    return [v for v, _ in items for _ in range(counts[v])]


def _setting(profile: SegmentProfile) -> str:
    occupation = _top(profile, "occupation")
    interests = _signature_interests(profile)
    if occupation in ("retired", "homemaker") or "home" in interests[:1]:
        return "home"
    if "garden" in interests[:2] or "sports" in interests[:1]:
        return "rural"
    if _top(profile, "household") == "family":
        return "suburban"
    return "urban"


def prompt_text(depicted: DepictedTraits) -> str:
    """The image prompt for one depicted variant (deterministic; no customer data)."""
    person = GENDER_WORDS.get(depicted.gender, "person")
    interests = ", ".join(depicted.interests) or "shopping"
    return (
        f"{STYLE_PHRASES[depicted.style]} of a {depicted.age_band} year old {person}, "
        f"{INCOME_WORDS.get(depicted.income_band, 'everyday')} {safe_token(depicted.occupation)}, "
        f"{SETTING_PHRASES.get(depicted.setting, '')}, with subtle cues of {interests}, "
        f"using a {safe_token(depicted.device)}. Warm natural light, friendly expression, realistic and respectful, "
        "fictional person, no text, no logos, no brand names."
    )


def build_prompts(
    persona_id: str, profile: SegmentProfile, styles: Sequence[ImageStyle], variants_per_style: int, max_chars: int
) -> tuple[ImagePrompt, ...]:
    """Prompts for every style × variant; depicted genders and ages follow the segment's real distribution."""
    total = len(styles) * variants_per_style
    genders = allocate(profile.distributions.get("gender", {}), total) or ["non_binary"] * total
    ages = allocate(profile.distributions.get("age_band", {}), total) or ["35-44"] * total
    # Pair the most common gender with the most common age band, and so on; interleave so each style gets a mix.
    order = sorted(range(total), key=lambda i: (i % variants_per_style, i // variants_per_style))
    prompts = []
    for slot, index in enumerate(order):
        style = styles[index // variants_per_style]
        variant_no = index % variants_per_style + 1
        depicted = DepictedTraits(
            age_band=ages[slot],
            gender=genders[slot],
            income_band=_top(profile, "income_band"),
            occupation=safe_token(_top(profile, "occupation")),
            interests=_signature_interests(profile),
            channel=safe_token(_top(profile, "preferred_channel")),
            device=safe_token(_top(profile, "preferred_device")),
            setting=_setting(profile),
            style=style,
        )
        text = scrub_prompt(prompt_text(depicted), max_chars)
        prompt_hash = hashlib.sha256(f"{style}\n{text}".encode()).hexdigest()[:16]
        prompts.append(
            ImagePrompt(
                persona_id=persona_id,
                variant=f"{style}-{variant_no}",
                style=style,
                prompt=text,
                prompt_hash=prompt_hash,
                depicted=depicted,
            )
        )
    prompts.sort(key=lambda p: (styles.index(p.style), p.variant))
    return tuple(prompts)


def persona_id_for(segment_id: str) -> str:
    """A persona is the face of one segment; its id follows the (stable) segment id."""
    return f"p-{segment_id}"


def build_personas(
    profiles: Sequence[SegmentProfile],
    settings: PersonaSettings,
    *,
    method: str,
    min_segment_size: int,
    previous_names: Mapping[str, str] | None = None,
) -> list[Persona]:
    """One persona per segment that has at least ``min_segment_size`` customers, largest first."""
    eligible = [p for p in profiles if p.size >= min_segment_size]
    names = name_personas(eligible, previous_names)
    personas = []
    for profile in eligible:
        persona_id = persona_id_for(profile.segment_id)
        name = names[profile.segment_id]
        tagline, narrative = narrative_for(name, profile)
        goals, pains = goals_and_pains(profile)
        channels = tuple(
            safe_token(v)
            for v, _ in sorted(
                (profile.distributions.get("preferred_channel") or {}).items(), key=lambda kv: (-kv[1], kv[0])
            )[:3]
        )
        key_numbers = {
            "customers": float(profile.size),
            "share": profile.share,
            **{k: profile.numeric[k] for k in ("median_age", "aov", "frequency", "monetary", "recency_days", "clv")},
        }
        persona = Persona(
            persona_id=persona_id,
            segment_id=profile.segment_id,
            method=method,
            name=name,
            tagline=tagline,
            narrative=narrative,
            goals=goals,
            pain_points=pains,
            channels=channels,
            recommendations=recommendations_for(profile),
            key_numbers=key_numbers,
            top_traits=tuple(t for t in profile.lifts if t.lift > 1.0)[:8],
            size=profile.size,
            share=profile.share,
            prompts=build_prompts(
                persona_id, profile, settings.styles, settings.variants_per_style, settings.max_prompt_chars
            ),
            drift=profile.drift,
        )
        personas.append(replace(persona, content_hash=persona_content_hash(persona)))
    return personas


def persona_content_hash(persona: Persona) -> str:
    """Hash of everything a reader sees on the card (drift excluded: it changes every night)."""
    data = to_jsonable(persona)
    data.pop("content_hash", None)
    data.pop("drift", None)
    return stable_hash(data)
