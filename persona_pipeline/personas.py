"""Persona cards, narratives, recommendations and image prompts, built from segment aggregates only.

Everything here reads :class:`SegmentProfile` objects; no customer-level row reaches this module. Texts come from
transparent rules over traits, and every recommendation cites the trait behind it.

A persona is described by its *distinguishing* traits, not by the population's most common ones: for age band,
income band, occupation and region the card uses the value with the highest lift among values that at least
:data:`DISTINCTIVE_SHARE` of the segment has (lift above :data:`DISTINCTIVE_LIFT`), and only falls back to the
most common value when nothing stands out. Otherwise every persona would be "35-44, modest-income".

Image prompts are built from *quantised* traits (age band, chosen values, top-3 interests) so small nightly drift
leaves the prompt — and so the cached image — unchanged. Every choice also has hysteresis: when yesterday's
persona is given, a value it showed is kept while it is still (nearly) as good, so a trait hovering at a
threshold cannot flip the picture back and forth from one night to the next.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from persona_pipeline.config import PersonaSettings
from persona_pipeline.contracts import (
    DepictedTraits,
    ImagePrompt,
    ImageStyle,
    NarrativeSource,
    Persona,
    Recommendation,
    SegmentProfile,
    TraitLift,
    stable_hash,
    to_jsonable,
)

if TYPE_CHECKING:
    from persona_pipeline.narrative import Narrator

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
CHANNEL_PHRASES = {
    "web": "online",
    "app": "in the app",
    "store": "in store",
    "catalogue": "from the catalogue",
    "phone": "by phone",
}
GENDER_WORDS = {"female": "woman", "male": "man", "non_binary": "person"}
GENDER_PLURALS = {"female": "women", "male": "men"}
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
#: How an occupation value reads in a sentence (singular, plural); others read as themselves (+ "s").
OCCUPATION_WORDS: dict[str, tuple[str, str]] = {
    "retired": ("retiree", "retirees"),
    "trades": ("tradesperson", "tradespeople"),
    "healthcare": ("healthcare worker", "healthcare workers"),
    "creative": ("creative", "creatives"),
    "unemployed": ("unemployed", "unemployed"),
}
#: Occupations that only make sense for some age bands (a 35-44 year old "retired" reads as a contradiction).
OCCUPATION_AGE_BANDS: dict[str, frozenset[str]] = {
    "retired": frozenset({"55-64", "65+"}),
    "student": frozenset({"18-24", "25-34"}),
}

#: A trait value distinguishes a segment when at least this share of it has the value ...
DISTINCTIVE_SHARE = 0.20
#: ... and it is this many times as common as in the whole population.
DISTINCTIVE_LIFT = 1.10
# Hysteresis margins: a new value must beat the thresholds by these to replace yesterday's choice, and
# yesterday's choice stays until it falls below the thresholds by as much.
_SHARE_SLACK = 0.03
_LIFT_SLACK = 0.1
_CHALLENGER_LIFT_RATIO = 1.25
_ALLOCATION_SLACK = 0.25
#: Behaviour qualifiers for non-RFM segments: (metric, ratio to the customer base at or beyond which it applies,
#: word). A ratio above 1 means "at least", below 1 "at most".
BEHAVIOUR_WORDS: tuple[tuple[str, float, str], ...] = (
    ("aov", 1.4, "Premium"),
    ("aov", 0.7, "Thrifty"),
    ("frequency", 1.25, "Devoted"),
    ("frequency", 0.75, "Occasional"),
    ("monetary", 1.5, "Big-Spending"),
    ("engagement", 1.5, "Engaged"),
    ("recency_days", 0.6, "Active"),
)
_REUSE_PENALTY = 0.2
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


def occupation_word(value: str, *, plural: bool = False) -> str:
    """An occupation value as it reads in a sentence ("trades" → "tradesperson" / "tradespeople")."""
    token = safe_token(value)
    if token in OCCUPATION_WORDS:
        return OCCUPATION_WORDS[token][1 if plural else 0]
    return f"{token}s" if plural and not token.endswith("s") else token


def _money(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:,.0f}"


def _days(value: float) -> str:
    if not math.isfinite(value):
        return "no purchase yet"
    if value < 60:
        return f"{value:.0f} days"
    return f"{value / 30.4:.0f} months"


def _times(count: float) -> str:
    rounded = round(count)
    return "once" if rounded == 1 else "twice" if rounded == 2 else f"{rounded} times"


def _join(parts: Sequence[str]) -> str:
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def _is_buyer(profile: SegmentProfile) -> bool:
    frequency = profile.numeric.get("frequency", 0.0)
    recency = profile.numeric.get("recency_days", float("nan"))
    return bool(frequency) and math.isfinite(frequency) and math.isfinite(recency)


def _signature_interests(profile: SegmentProfile, limit: int = 3) -> tuple[str, ...]:
    """Categories that characterise the segment, most distinctive first, from purchases and browsing.

    Purchases first (what they buy says more than what they browse), then browsing; within each, values held by
    at least :data:`DISTINCTIVE_SHARE` of the segment with lift above :data:`DISTINCTIVE_LIFT` (by lift), then
    any other over-represented value (by lift). Whatever is left follows by share.
    """
    seen: list[str] = []
    dimensions = ("top_category", "top_interest")
    for dimension in dimensions:
        shares = profile.distributions.get(dimension) or {}
        lifted = sorted((t for t in profile.lifts if t.dimension == dimension and t.lift > 1.0), key=lambda t: -t.lift)
        standing_out = [t for t in lifted if float(shares.get(t.value, 0.0)) >= DISTINCTIVE_SHARE]
        for trait in [*(t for t in standing_out if t.lift > DISTINCTIVE_LIFT), *lifted]:
            if trait.value not in seen:
                seen.append(trait.value)
    for dimension in dimensions:
        for value, _ in sorted((profile.distributions.get(dimension) or {}).items(), key=lambda kv: (-kv[1], kv[0])):
            if value not in seen:
                seen.append(value)
    tokens: list[str] = []
    for value in seen:
        token = safe_token(value)
        if token not in tokens:
            tokens.append(token)
    return tuple(tokens[:limit])


# -- distinguishing traits ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TraitPick:
    """The value a card shows for one dimension, and why."""

    dimension: str
    value: str
    share: float  # within the segment
    lift: float | None  # None when the value is below the lift support floor
    distinctive: bool  # True: chosen for its lift; False: simply the most common value


def pick_trait(
    profile: SegmentProfile,
    dimension: str,
    *,
    previous: str | None = None,
    allowed: Callable[[str], bool] | None = None,
) -> TraitPick | None:
    """The distinguishing value of ``dimension``: highest lift among values held by at least
    :data:`DISTINCTIVE_SHARE` of the segment with lift above :data:`DISTINCTIVE_LIFT`, else the most common value.

    ``previous`` (yesterday's choice) is kept while it is still nearly as good; ``allowed`` filters out values that
    would contradict another chosen trait (ignored if it would leave nothing).
    """
    distribution = {v: float(s) for v, s in (profile.distributions.get(dimension) or {}).items() if s > 0}
    shares = {v: s for v, s in distribution.items() if allowed is None or allowed(v)} or distribution
    if not shares:
        return None
    lifts = {t.value: t.lift for t in profile.lifts if t.dimension == dimension}

    def stands_out(value: str, slack: int = 0) -> bool:
        # slack +1: must clearly pass (to replace yesterday's choice); -1: may have slipped a little (to keep it)
        return (
            shares[value] >= DISTINCTIVE_SHARE + slack * _SHARE_SLACK
            and lifts.get(value, 0.0) > DISTINCTIVE_LIFT + slack * _LIFT_SLACK
        )

    def most_distinctive(values: list[str]) -> str:
        return max(values, key=lambda v: (lifts[v], shares[v], v))

    mode = max(shares, key=lambda v: (shares[v], v))
    kept = next((v for v in shares if previous is not None and (v == previous or safe_token(v) == previous)), None)
    if kept is None:
        candidates = [v for v in shares if stands_out(v)]
        choice = most_distinctive(candidates) if candidates else mode
        distinctive = bool(candidates)
    elif stands_out(kept, -1):
        challengers = [
            v for v in shares if v != kept and stands_out(v, +1) and lifts[v] > lifts[kept] * _CHALLENGER_LIFT_RATIO
        ]
        choice = most_distinctive(challengers) if challengers else kept
        distinctive = True
    elif kept != mode and kept not in lifts and shares[kept] >= DISTINCTIVE_SHARE - _SHARE_SLACK:
        # Yesterday's distinguishing value lost its lift today only because a customer or two fewer hold it than
        # the lift support floor asks; its share still stands, so keep it rather than flip the picture.
        choice, distinctive = kept, True
    else:
        challengers = [v for v in shares if stands_out(v, +1)]
        if challengers:
            choice, distinctive = most_distinctive(challengers), True
        else:
            choice = kept if shares[kept] >= shares[mode] - _SHARE_SLACK else mode
            distinctive = False
    return TraitPick(dimension, choice, shares[choice], lifts.get(choice), distinctive)


def _sticky_mode(profile: SegmentProfile, dimension: str, previous: str | None, default: str = "unknown") -> str:
    """The most common value, or yesterday's while it is within a few points of it."""
    shares = profile.distributions.get(dimension) or {}
    if not shares:
        return default
    mode = max(shares, key=lambda v: (shares[v], v))
    kept = next((v for v in shares if previous is not None and safe_token(v) == previous), None)
    if kept is not None and shares[kept] >= shares[mode] - _SHARE_SLACK:
        return safe_token(kept)
    return safe_token(mode)


def _sticky_interests(profile: SegmentProfile, previous: Sequence[str] | None) -> tuple[str, ...]:
    ranked = _signature_interests(profile, limit=6)
    if previous and len(previous) == len(ranked[:3]) and set(previous) <= set(ranked[: len(previous) + 2]):
        return tuple(previous)
    return ranked[:3]


def _compatible(occupation: str, age: TraitPick | None) -> bool:
    bands = OCCUPATION_AGE_BANDS.get(safe_token(occupation))
    return bands is None or age is None or age.value in bands


@dataclass(frozen=True)
class Signature:
    """Everything a card and its pictures say about who the persona is (chosen once, used everywhere)."""

    age: TraitPick | None
    income: TraitPick | None
    occupation: TraitPick | None
    region: TraitPick | None
    interests: tuple[str, ...]
    channel: str
    device: str
    setting: str


def signature_for(profile: SegmentProfile, previous: DepictedTraits | None = None) -> Signature:
    """Choose the persona's distinguishing traits (with yesterday's depiction as the hysteresis anchor)."""
    age = pick_trait(profile, "age_band", previous=previous.age_band if previous else None)
    income = pick_trait(profile, "income_band", previous=previous.income_band if previous else None)
    occupation = pick_trait(
        profile,
        "occupation",
        previous=previous.occupation if previous else None,
        allowed=lambda value: _compatible(value, age),
    )
    region = pick_trait(profile, "region")
    interests = _sticky_interests(profile, previous.interests if previous else None)
    return Signature(
        age=age,
        income=income,
        occupation=occupation,
        region=region,
        interests=interests,
        channel=_sticky_mode(profile, "preferred_channel", previous.channel if previous else None),
        device=_sticky_mode(profile, "preferred_device", previous.device if previous else None),
        setting=_setting(profile, occupation, interests, previous.setting if previous else None),
    )


def _setting(
    profile: SegmentProfile, occupation: TraitPick | None, interests: Sequence[str], previous: str | None
) -> str:
    occ = safe_token(occupation.value) if occupation else ""
    if occ in ("retired", "homemaker") or tuple(interests[:1]) == ("home",):
        return "home"
    if "garden" in interests[:2] or tuple(interests[:1]) == ("sports",):
        return "rural"
    households = profile.distributions.get("household") or {}
    family = float(households.get("family", 0.0))
    others = max((float(s) for v, s in households.items() if v != "family"), default=0.0)
    # Families live in the suburbs of these pictures; hysteresis keeps a near-tie from flipping the backdrop.
    margin = _SHARE_SLACK if previous == "urban" else -_SHARE_SLACK if previous == "suburban" else 0.0
    return "suburban" if family > 0 and family >= others + margin else "urban"


# -- naming ---------------------------------------------------------------------------------------------------


def _reference(profiles: Sequence[SegmentProfile]) -> dict[str, float]:
    """Size-weighted average of the buyer segments' medians: the customer base a segment is compared with."""
    reference: dict[str, float] = {}
    buyers = [p for p in profiles if _is_buyer(p)]
    for metric, _, _ in BEHAVIOUR_WORDS:
        pairs = [(p.numeric.get(metric, math.nan), p.size) for p in buyers]
        pairs = [(v, w) for v, w in pairs if math.isfinite(v) and v > 0]
        total = sum(w for _, w in pairs)
        reference[metric] = sum(v * w for v, w in pairs) / total if total else math.nan
    return reference


def qualifier_options(profile: SegmentProfile, reference: Mapping[str, float]) -> list[tuple[str, float]]:
    """Behavioural adjectives that fit a segment, strongest first, as (word, strength).

    Absolute facts come first (no order yet, gone for a year, gone for four months, joined recently); then words
    for the metrics that differ most from the customer base (strength = |log ratio|).
    """
    n = profile.numeric
    if not _is_buyer(profile):
        return [("Browsing", math.inf)]
    recency = n["recency_days"]
    if recency > 365:
        return [("Lapsed", math.inf)]
    if recency > 120:
        return [("Drifting", math.inf)]
    if n.get("tenure_days", math.inf) < 90:
        return [("Newcomer", math.inf)]
    options: list[tuple[str, float]] = []
    for metric, threshold, word in BEHAVIOUR_WORDS:
        value, base = n.get(metric, math.nan), reference.get(metric, math.nan)
        if not (math.isfinite(value) and math.isfinite(base)) or value <= 0 or base <= 0:
            continue
        ratio = value / base
        if (threshold >= 1 and ratio >= threshold) or (threshold < 1 and ratio <= threshold):
            options.append((word, abs(math.log(ratio))))
    options.sort(key=lambda ws: -ws[1])
    return [*options, ("Everyday", 0.0)]


def qualifier_for(profile: SegmentProfile, population: Sequence[SegmentProfile]) -> str:
    """A behavioural adjective: the RFM label's word, or the strongest behaviour word for other methods."""
    if profile.label in QUALIFIERS:
        return QUALIFIERS[profile.label]
    return qualifier_options(profile, _reference(population))[0][0]


def _qualifiers(profiles: Sequence[SegmentProfile]) -> dict[str, str]:
    """One qualifier per segment; a word already used loses a little strength so names vary where data allows."""
    reference = _reference(profiles)
    used: Counter[str] = Counter()
    chosen: dict[str, str] = {}
    for profile in sorted(profiles, key=lambda p: (-p.size, p.segment_id)):
        if profile.label in QUALIFIERS:
            chosen[profile.segment_id] = QUALIFIERS[profile.label]
            continue
        options = qualifier_options(profile, reference)
        word = max(enumerate(options), key=lambda iw: (iw[1][1] - _REUSE_PENALTY * used[iw[1][0]], -iw[0]))[1][0]
        chosen[profile.segment_id] = word
        used[word] += 1
    return chosen


def noun_for(profile: SegmentProfile, interests: Sequence[str] | None = None) -> str:
    """A noun from the most distinctive category (or, failing that, the most common one)."""
    interests = interests if interests is not None else _signature_interests(profile, limit=1)
    interest = interests[0] if interests else "other"
    return NOUNS.get(interest, f"{interest.title()} Fan" if interest != "other" else "Shopper")


def name_personas(
    profiles: Sequence[SegmentProfile],
    previous_names: Mapping[str, str] | None = None,
    *,
    signatures: Mapping[str, Signature] | None = None,
    use_labels: bool = False,
) -> dict[str, str]:
    """Unique, stable names: a continuing segment keeps yesterday's name unless another persona now needs it.

    ``use_labels`` names each persona after its segment label (rule segments: the label is the marketer's own).
    """
    previous_names = {} if use_labels else previous_names or {}
    signatures = signatures or {p.segment_id: signature_for(p) for p in profiles}
    qualifiers = _qualifiers(profiles)
    names: dict[str, str] = {}
    taken: set[str] = set()
    # Continuing segments first, so they keep their names.
    order = sorted(profiles, key=lambda p: (p.segment_id not in previous_names, -p.size, p.segment_id))
    for profile in order:
        signature = signatures[profile.segment_id]
        candidate = (
            profile.label
            if use_labels
            else previous_names.get(profile.segment_id)
            or f"{qualifiers[profile.segment_id]} {noun_for(profile, signature.interests)}"
        )
        if candidate in taken:
            suffixes = []
            if signature.age is not None and signature.age.distinctive:
                suffixes.append(f"({signature.age.value})")
            if signature.region is not None and signature.region.distinctive:
                suffixes.append(f"of {safe_token(signature.region.value, 24)}")
            if signature.occupation is not None and signature.occupation.distinctive:
                suffixes.append(f"({occupation_word(signature.occupation.value)})")
            suffixes.append(f"({profile.label})")
            for suffix in suffixes:
                if f"{candidate} {suffix}" not in taken:
                    candidate = f"{candidate} {suffix}"
                    break
            else:
                candidate = f"{candidate} {profile.segment_id}"
        names[profile.segment_id] = candidate
        taken.add(candidate)
    return names


# -- texts ----------------------------------------------------------------------------------------------------


def behaviour_phrase(profile: SegmentProfile) -> str:
    """Orders, channel (when it stands out) and recency of the typical member: "4 orders from the catalogue,
    last 2 months ago"."""
    if not _is_buyer(profile):
        return "browsing, no order yet"
    frequency, recency = profile.numeric["frequency"], profile.numeric["recency_days"]
    channel = pick_trait(profile, "preferred_channel")
    via = ""
    if channel is not None and channel.distinctive:
        token = safe_token(channel.value)
        phrase = CHANNEL_PHRASES.get(token, f"via {token}")
        if channel.value == _top(profile, channel.dimension):
            via = f" {phrase}"
        elif channel.lift is not None and channel.lift >= 1.5 and round(frequency) > 1:
            # Not their main channel, but far more common than average: worth saying, as "often".
            via = f", often {phrase}"
    return f"{frequency:.0f} order{'' if round(frequency) == 1 else 's'}{via}, last {_days(recency)} ago"


def tagline_for(profile: SegmentProfile, signature: Signature) -> str:
    """ "65+, wealthy, retired · 4 orders, last 2 months ago · loves wine & home": who, how they buy, what they love."""
    who: list[str] = []
    if signature.age is not None:
        who.append(signature.age.value)
    if signature.income is not None:
        who.append(INCOME_WORDS.get(signature.income.value, f"{safe_token(signature.income.value)} income"))
    if signature.occupation is not None and signature.occupation.distinctive:
        who.append(occupation_word(signature.occupation.value))
    if signature.region is not None and signature.region.distinctive:
        who.append(f"in {safe_token(signature.region.value)}")
    loves = f"loves {' & '.join(signature.interests[:2])}" if signature.interests else ""
    return " · ".join(part for part in (", ".join(who), behaviour_phrase(profile), loves) if part)


def _trait_phrase(pick: TraitPick) -> str:
    value = safe_token(pick.value)
    if pick.dimension == "age_band":
        text = f"aged {pick.value}"
    elif pick.dimension == "income_band":
        text = f"in the {pick.value} income band"
    elif pick.dimension == "occupation":
        text = occupation_word(pick.value, plural=True)
    else:
        text = f"living in {value}"
    if pick.distinctive and pick.lift is not None:
        return f"{text} ({pick.share:.0%}, {pick.lift:.1f}x the average)"
    return f"{text} ({pick.share:.0%})"


def narrative_for(name: str, profile: SegmentProfile, signature: Signature | None = None) -> tuple[str, str]:
    """(tagline, narrative) from the segment's distinguishing traits and medians."""
    signature = signature or signature_for(profile)
    n = profile.numeric
    story = f"The {name} persona stands for {profile.size:,} customers ({profile.share:.1%} of profiled customers). "
    picks = [p for p in (signature.age, signature.income, signature.occupation, signature.region) if p is not None]
    standout = [_trait_phrase(p) for p in picks if p.distinctive]
    typical = [_trait_phrase(p) for p in picks if not p.distinctive]
    if standout:
        story += f"Compared with all customers they are more often {_join(standout)}. "
    if typical:
        story += f"{'Otherwise they' if standout else 'They'} mirror the customer base: most often {_join(typical)}. "
    gender = _top(profile, "gender")
    if gender in GENDER_PLURALS:
        story += f"{_share(profile, 'gender', gender):.0%} are {GENDER_PLURALS[gender]}. "
    if _is_buyer(profile):
        aov, total = _money(n.get("aov", float("nan"))), _money(n.get("monetary", float("nan")))
        story += (
            f"A typical member has ordered {_times(n['frequency'])}, spending about {aov} per order and "
            f"{total} in total; the last order was {_days(n['recency_days'])} ago. "
        )
    else:
        story += "Most have browsed but not yet completed an order. "
    story += _channel_sentence(profile, signature)
    story += f" Their interest leans to {', '.join(signature.interests) or 'many categories'}."
    return tagline_for(profile, signature), story


def _channel_sentence(profile: SegmentProfile, signature: Signature) -> str:
    mode = _top(profile, "preferred_channel", "")
    device = f", usually on {signature.device}" if signature.device != "unknown" else ""
    if not mode:
        return f"They browse{device}."
    sentence = f"Most often they shop via {safe_token(mode)} ({_share(profile, 'preferred_channel', mode):.0%}){device}"
    pick = pick_trait(profile, "preferred_channel")
    if pick is not None and pick.distinctive and pick.value != mode and pick.lift is not None:
        sentence += f"; {safe_token(pick.value)} is more common than average ({pick.share:.0%}, {pick.lift:.1f}x)"
    return sentence + "."


def goals_and_pains(
    profile: SegmentProfile, signature: Signature | None = None
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    signature = signature or signature_for(profile)
    goals = [GOALS[i] for i in signature.interests if i in GOALS][:2] or ["Find what they need without friction"]
    pains = []
    if signature.channel in PAINS_BY_CHANNEL:
        pains.append(PAINS_BY_CHANNEL[signature.channel])
    if profile.numeric.get("return_rate", 0.0) > 0.08 and _is_buyer(profile):
        pains.append("Products that don't match expectations (frequent returns)")
    income = signature.income.value if signature.income else ""
    if income in ("<25k", "25-50k"):
        pains.append("Delivery costs that eat into a tight budget")
    elif income in ("100-150k", "150k+"):
        pains.append("Generic offers that ignore their preferences")
    recency = profile.numeric.get("recency_days", float("nan"))
    if math.isfinite(recency) and recency > 180:
        pains.append("Nothing new has given them a reason to come back")
    return tuple(goals), tuple(pains[:3] or ["Irrelevant messages"])


def recommendations_for(profile: SegmentProfile, signature: Signature | None = None) -> tuple[Recommendation, ...]:
    """Marketing (channel, offer, timing) and product actions, each citing the trait it rests on."""
    signature = signature or signature_for(profile)
    recs: list[Recommendation] = []
    n = profile.numeric
    # The same choice as the tagline's channel: distinguishing if one stands out, else the most common.
    channel = pick_trait(profile, "preferred_channel")
    if channel is not None:
        token = safe_token(channel.value)
        recs.append(
            Recommendation(
                kind="marketing",
                title=f"Reach them through {token}",
                detail=f"Prioritise {token} for campaigns to this persona.",
                because=f"{channel.share:.0%} prefer {token}"
                + (f" ({channel.lift:.1f}x the average)" if channel.distinctive and channel.lift else ""),
                trait=f"preferred_channel={channel.value}",
            )
        )
    recency = n.get("recency_days", float("nan"))
    frequency = n.get("frequency", 0.0)
    aov = n.get("aov", float("nan"))
    income = signature.income
    if not _is_buyer(profile):
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
    elif (income is not None and income.value in ("100-150k", "150k+")) or (math.isfinite(aov) and aov > 150):
        if income is not None and income.value in ("100-150k", "150k+"):
            because = f"{income.share:.0%} are in the {income.value} income band" + (
                f" ({income.lift:.1f}x the average)" if income.distinctive and income.lift else ""
            )
            trait = f"income_band={income.value}"
        else:
            because, trait = f"median order value {_money(aov)}", f"aov={aov:.0f}"
        offer = Recommendation(
            "marketing",
            "Premium early access",
            "Invite them to previews, limited editions and concierge service rather than discounts.",
            because,
            trait,
        )
    elif round(frequency) <= 1:
        offer = Recommendation(
            "marketing",
            "Second-order incentive",
            "Follow the first order with a time-limited offer on a second one, matched to what they bought.",
            "the median member has ordered once",
            "frequency=1",
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
    if n.get("return_rate", 0.0) > 0.08 and _is_buyer(profile):
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
    if household and household.value == "family" and household.lift > DISTINCTIVE_LIFT:
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


def _allocation_error(distribution: Mapping[str, float], slots: Sequence[str]) -> float:
    positive = {v: s for v, s in distribution.items() if s > 0}
    total = sum(positive.values()) or 1.0
    counts = Counter(slots)
    return sum(abs(counts.get(v, 0) - s / total * len(slots)) for v, s in positive.items())


def sticky_allocate(distribution: Mapping[str, float], n: int, previous: Sequence[str] | None) -> list[str]:
    """:func:`allocate`, but yesterday's slots (and their order) stay while they fit the shares nearly as well."""
    current = allocate(distribution, n)
    if not previous or len(previous) != n or any(float(distribution.get(v, 0.0)) <= 0 for v in previous):
        return current
    if Counter(previous) == Counter(current):
        return list(previous)
    if _allocation_error(distribution, previous) <= _allocation_error(distribution, current) + _ALLOCATION_SLACK:
        return list(previous)
    return current


def _lead_with(slots: list[str], value: str) -> list[str]:
    """Put ``value`` in the first slot (taking the least-supported slot if the allocation has none of it)."""
    if not slots or slots[0] == value:
        return slots
    rest = list(slots)
    if value in rest:
        rest.remove(value)
    else:
        rest.pop()
    return [value, *rest]


def prompt_text(depicted: DepictedTraits) -> str:
    """The image prompt for one depicted variant (deterministic; no customer data)."""
    person = GENDER_WORDS.get(depicted.gender, "person")
    interests = ", ".join(depicted.interests) or "shopping"
    article = "an" if depicted.age_band[:2] in ("18", "11", "80", "85", "8") else "a"
    return (
        f"{STYLE_PHRASES[depicted.style]} of {article} {depicted.age_band} year old {person}, "
        f"{INCOME_WORDS.get(depicted.income_band, 'everyday')} {occupation_word(depicted.occupation)}, "
        f"{SETTING_PHRASES.get(depicted.setting, '')}, with subtle cues of {interests}, "
        f"using a {safe_token(depicted.device)}. Warm natural light, friendly expression, realistic and respectful, "
        "fictional person, no text, no logos, no brand names."
    )


def _previous_slots(
    previous: Sequence[ImagePrompt], styles: Sequence[ImageStyle], variants_per_style: int
) -> list[tuple[str, str]] | None:
    """Yesterday's (age band, gender) per slot, if yesterday used the same styles and variant count."""
    slots: dict[int, tuple[str, str]] = {}
    for prompt in previous:
        style, _, number = prompt.variant.rpartition("-")
        if style not in styles or not number.isdigit() or not 1 <= int(number) <= variants_per_style:
            return None
        slot = (int(number) - 1) * len(styles) + [str(s) for s in styles].index(style)
        slots[slot] = (prompt.depicted.age_band, prompt.depicted.gender)
    total = len(styles) * variants_per_style
    return [slots[i] for i in range(total)] if len(slots) == total else None


def build_prompts(
    persona_id: str,
    profile: SegmentProfile,
    styles: Sequence[ImageStyle],
    variants_per_style: int,
    max_chars: int,
    *,
    signature: Signature | None = None,
    previous: Sequence[ImagePrompt] = (),
) -> tuple[ImagePrompt, ...]:
    """Prompts for every style × variant.

    Depicted genders and age bands follow the segment's real distribution (largest remainder); variant 1 shows
    the distinguishing age band. ``previous`` (yesterday's prompts) keeps slots that still fit.
    """
    signature = signature or signature_for(profile, previous[0].depicted if previous else None)
    total = len(styles) * variants_per_style
    before = _previous_slots(previous, styles, variants_per_style) if previous else None
    genders = (
        sticky_allocate(profile.distributions.get("gender", {}), total, [g for _, g in before] if before else None)
        or ["non_binary"] * total
    )
    ages = (
        sticky_allocate(profile.distributions.get("age_band", {}), total, [a for a, _ in before] if before else None)
        or ["35-44"] * total
    )
    if signature.age is not None:
        ages = _lead_with(ages, signature.age.value)
    # Slot 0 pairs the distinguishing age with the most common gender; interleave so each style gets a mix.
    order = sorted(range(total), key=lambda i: (i % variants_per_style, i // variants_per_style))
    prompts = []
    for slot, index in enumerate(order):
        style = styles[index // variants_per_style]
        variant_no = index % variants_per_style + 1
        depicted = DepictedTraits(
            age_band=ages[slot],
            gender=genders[slot],
            income_band=signature.income.value if signature.income else "unknown",
            occupation=safe_token(signature.occupation.value) if signature.occupation else "other",
            interests=signature.interests,
            channel=signature.channel,
            device=signature.device,
            setting=signature.setting,
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


def _first_slot(prompts: Sequence[ImagePrompt], styles: Sequence[ImageStyle]) -> DepictedTraits | None:
    """The depiction of slot 0 (first style, variant 1): it carries yesterday's distinguishing age band."""
    for prompt in prompts:
        if prompt.style == (styles[0] if styles else prompt.style) and prompt.variant.endswith("-1"):
            return prompt.depicted
    return prompts[0].depicted if prompts else None


def build_personas(
    profiles: Sequence[SegmentProfile],
    settings: PersonaSettings,
    *,
    method: str,
    min_segment_size: int,
    previous_names: Mapping[str, str] | None = None,
    previous: Mapping[str, Persona] | None = None,
    narrator: Narrator | None = None,
) -> list[Persona]:
    """One persona per segment that has at least ``min_segment_size`` customers, largest first.

    ``previous`` maps segment id → yesterday's persona: its name is kept, and its depiction anchors the
    hysteresis of every choice that feeds the image prompts. With ``settings.narrative == "llm"`` the narrative
    comes from ``narrator`` (built from settings when not given), falling back to the template on any failure.
    """
    previous = previous or {}
    names_before = {**{seg: p.name for seg, p in previous.items()}, **(previous_names or {})}
    eligible = [p for p in profiles if p.size >= min_segment_size]
    signatures = {
        p.segment_id: signature_for(
            p, _first_slot(previous[p.segment_id].prompts, settings.styles) if p.segment_id in previous else None
        )
        for p in eligible
    }
    names = name_personas(eligible, names_before, signatures=signatures, use_labels=method == "rules")
    if settings.narrative == "llm" and narrator is None:
        from persona_pipeline.narrative import make_narrator

        narrator = make_narrator(settings)
    personas = []
    for profile in eligible:
        persona_id = persona_id_for(profile.segment_id)
        name = names[profile.segment_id]
        signature = signatures[profile.segment_id]
        tagline, narrative = narrative_for(name, profile, signature)
        goals, pains = goals_and_pains(profile, signature)
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
            recommendations=recommendations_for(profile, signature),
            key_numbers=key_numbers,
            top_traits=tuple(t for t in profile.lifts if t.lift > 1.0)[:8],
            size=profile.size,
            share=profile.share,
            prompts=build_prompts(
                persona_id,
                profile,
                settings.styles,
                settings.variants_per_style,
                settings.max_prompt_chars,
                signature=signature,
                previous=previous[profile.segment_id].prompts if profile.segment_id in previous else (),
            ),
            drift=profile.drift,
        )
        if settings.narrative == "llm":
            source: NarrativeSource = "template_fallback"
            written = narrator.narrate(persona, profile) if narrator is not None else None
            if written:
                persona, source = replace(persona, narrative=written), "llm"
            persona = replace(persona, narrative_source=source)
        personas.append(replace(persona, content_hash=persona_content_hash(persona)))
    return personas


def persona_content_hash(persona: Persona) -> str:
    """Hash of everything a reader sees on the card (drift excluded: it changes every night)."""
    data = to_jsonable(persona)
    data.pop("content_hash", None)
    data.pop("drift", None)
    return stable_hash(data)
