"""LLM narratives through the real ``openai`` client against the local OpenAI-compatible server.

The model must only ever see aggregates; any failure falls back to the template narrative and says so.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest

from persona_pipeline.config import PersonaSettings
from persona_pipeline.contracts import Persona, SegmentProfile, to_jsonable
from persona_pipeline.narrative import LLMNarrator, make_narrator
from persona_pipeline.personas import build_personas
from persona_pipeline.profiles import build_profiles
from persona_pipeline.segmentation.base import SegmentationResult
from tests.fake_openai import FakeOpenAIServer

API_KEY = "sk-test-narrative-0123456789"
K = 50


def customers() -> tuple[pd.DataFrame, SegmentationResult]:
    """Two segments of synthetic customers with keys and exact spend values that must never leave."""
    rng = np.random.default_rng(21)
    n_a, n_b = 240, 360
    n = n_a + n_b
    frequency = np.r_[rng.integers(8, 20, n_a), rng.integers(1, 4, n_b)]
    monetary = np.round(np.r_[rng.uniform(1500, 4000, n_a), rng.uniform(40, 300, n_b)], 2)
    features = pd.DataFrame(
        {
            "customer_key": [f"cust-{i:06d}-x" for i in range(n)],
            "age": np.r_[rng.integers(58, 80, n_a), rng.integers(19, 33, n_b)].astype("float64"),
            "gender": rng.choice(["female", "male"], n),
            "country": "United Kingdom",
            "region": np.r_[["Surrey"] * n_a, rng.choice(["Greater London", "Kent"], n_b)],
            "income_band": np.r_[["150k+"] * n_a, rng.choice(["<25k", "25-50k"], n_b)],
            "occupation": np.r_[["retired"] * n_a, rng.choice(["student", "creative"], n_b)],
            "household_size": 2.0,
            "preferred_channel": np.r_[["catalogue"] * n_a, ["app"] * n_b],
            "preferred_device": np.r_[["desktop"] * n_a, ["mobile"] * n_b],
            "top_category": np.r_[["wine"] * n_a, ["fashion"] * n_b],
            "top_interest": np.r_[["home"] * n_a, ["beauty"] * n_b],
            "frequency": frequency,
            "monetary": monetary,
            "aov": np.round(monetary / frequency, 2),
            "recency_days": np.r_[rng.uniform(5, 40, n_a), rng.uniform(60, 200, n_b)],
            "tenure_days": 900.0,
            "engagement": 2.0,
            "returns": 0,
            "marketing_consent": True,
        }
    )
    assignments = pd.DataFrame(
        {"customer_key": features["customer_key"], "segment_id": ["seg-cellar"] * n_a + ["seg-style"] * n_b}
    )
    labels = {"seg-cellar": "Champions", "seg-style": "At Risk"}
    return features, SegmentationResult("test", assignments, labels, {})


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, list[SegmentProfile]]:
    features, segmentation = customers()
    profiles = build_profiles(features, segmentation, lift_min_support=K, lift_min_share=0.05)
    return features, profiles


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(valid_api_keys={API_KEY}) as fake:
        yield fake


def llm_settings(**overrides: object) -> PersonaSettings:
    values: dict[str, object] = {"narrative": "llm", "narrative_model": "gpt-4.1-mini", "narrative_max_chars": 600}
    return PersonaSettings.model_validate({**values, **overrides})


def narrator_for(server: FakeOpenAIServer, settings: PersonaSettings, api_key: str = API_KEY) -> LLMNarrator:
    return make_narrator(settings, api_key=api_key, base_url=server.base_url)


def personas_with(
    profiles: list[SegmentProfile], settings: PersonaSettings, narrator: LLMNarrator | None
) -> list[Persona]:
    return build_personas(profiles, settings, method="test", min_segment_size=K, narrator=narrator)


def test_template_is_the_default_and_calls_nothing(data, server: FakeOpenAIServer) -> None:  # type: ignore[no-untyped-def]
    _, profiles = data
    personas = personas_with(profiles, PersonaSettings(), None)
    assert {p.narrative_source for p in personas} == {"template"}
    assert server.calls() == 0


def test_llm_narrative_is_used_scrubbed_and_bounded(data, server: FakeOpenAIServer) -> None:  # type: ignore[no-untyped-def]
    _, profiles = data
    settings = llm_settings()
    template = {p.persona_id: p.narrative for p in personas_with(profiles, PersonaSettings(), None)}
    personas = personas_with(profiles, settings, narrator_for(server, settings))
    assert server.calls("chat") == len(personas) == 2
    for persona in personas:
        assert persona.narrative_source == "llm"
        # The local server answers with a deterministic echo of the facts it was given.
        assert persona.narrative.startswith("Persona narrative:")
        assert persona.narrative != template[persona.persona_id]
        assert persona.name in persona.narrative
        assert len(persona.narrative) <= settings.narrative_max_chars
        assert not re.search(r"\d{4,}|@", persona.narrative)
    # The source travels with the published document.
    again = Persona.from_dict(json.loads(json.dumps(to_jsonable(personas[0]))))
    assert again.narrative_source == "llm" and again == personas[0]


def test_request_carries_only_aggregates(data, server: FakeOpenAIServer) -> None:  # type: ignore[no-untyped-def]
    features, profiles = data
    settings = llm_settings()
    personas_with(profiles, settings, narrator_for(server, settings))
    bodies = [r.body for r in server.requests if r.endpoint == "chat"]
    assert bodies and all(b["model"] == "gpt-4.1-mini" for b in bodies)
    text = json.dumps(bodies)
    for key in features["customer_key"]:
        assert key not in text
    assert "customer_key" not in text
    for value in features["monetary"]:
        assert f"{value:.2f}" not in text  # no individual spend, only medians

    # Every number in the request is an aggregate of the segment: a size, share, median, lift or band edge.
    allowed: set[float] = set()
    for profile in profiles:
        allowed |= {float(profile.size), round(profile.share * 100, 1), float(K)}
        for value in profile.numeric.values():
            if np.isfinite(value):
                allowed |= {float(round(value)), round(value, 1), round(value / 30.4)}
        for shares in profile.distributions.values():
            allowed |= {float(round(s * 100)) for s in shares.values()}
        for trait in profile.lifts:
            allowed |= {float(round(trait.segment_share * 100)), round(trait.lift, 1), float(trait.support)}
    allowed |= {18, 24, 25, 34, 35, 44, 45, 54, 55, 64, 65, 50, 75, 100, 150, 3}  # age/income bands, "3+"
    for body in bodies:
        user = next(m["content"] for m in body["messages"] if m["role"] == "user")
        numbers = {float(x.replace(",", "")) for x in re.findall(r"\d[\d,]*(?:\.\d+)?", user)}
        assert numbers <= allowed, numbers - allowed


@pytest.mark.parametrize(
    ("case", "expected_calls"),
    [
        ("unknown_model", 1),  # 404 from the server: stop calling for this run
        ("bad_key", 1),  # 401: same
        ("no_key", 0),  # nothing to call with
    ],
)
def test_api_errors_fall_back_to_the_template(  # type: ignore[no-untyped-def]
    data, server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch, case: str, expected_calls: int
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    _, profiles = data
    settings = llm_settings(narrative_model="gpt-unknown" if case == "unknown_model" else "gpt-4.1-mini")
    template = {p.persona_id: p.narrative for p in personas_with(profiles, PersonaSettings(), None)}
    if case == "no_key":
        narrator = LLMNarrator(model=settings.narrative_model, max_chars=600, base_url=server.base_url, api_key="")
    else:
        narrator = narrator_for(server, settings, api_key="sk-wrong-key-000000" if case == "bad_key" else API_KEY)
    personas = personas_with(profiles, settings, narrator)
    assert [p.narrative_source for p in personas] == ["template_fallback"] * len(personas)
    assert {p.persona_id: p.narrative for p in personas} == template
    assert server.calls("chat") == expected_calls
    assert narrator.disabled is not None
    assert API_KEY not in " ".join(narrator.failures) and "sk-wrong" not in " ".join(narrator.failures)


def test_unreachable_endpoint_falls_back(data) -> None:  # type: ignore[no-untyped-def]
    _, profiles = data
    with FakeOpenAIServer() as stopped:
        base_url = stopped.base_url
    settings = llm_settings(narrative_timeout_s=2.0)
    narrator = LLMNarrator(model="gpt-4.1-mini", max_chars=600, api_key=API_KEY, base_url=base_url, max_retries=0)
    personas = personas_with(profiles, settings, narrator)
    assert [p.narrative_source for p in personas] == ["template_fallback", "template_fallback"]
    assert narrator.disabled and "APIConnectionError" in narrator.disabled


def test_short_answer_is_rejected(data, server: FakeOpenAIServer) -> None:  # type: ignore[no-untyped-def]
    _, profiles = data

    class Empty:
        class chat:  # mimics the client's attribute layout
            class completions:
                @staticmethod
                def create(**_: object) -> object:
                    message = type("M", (), {"content": "  "})()
                    return type("R", (), {"choices": [type("C", (), {"message": message})()]})()

    narrator = LLMNarrator(model="m", max_chars=600, client=Empty())
    personas = personas_with(profiles, llm_settings(), narrator)
    assert {p.narrative_source for p in personas} == {"template_fallback"}
    assert len(narrator.failures) == 2


def test_stage_writes_llm_narratives_with_the_connection_key(warehouse_copy, settings_factory) -> None:  # type: ignore[no-untyped-def]
    from datetime import date

    from persona_pipeline import stages
    from persona_pipeline.storage import read_json

    with FakeOpenAIServer(valid_api_keys={API_KEY}) as fake:
        settings = settings_factory(
            warehouse_copy, **{"personas.narrative": "llm", "personas.narrative_base_url": fake.base_url}
        )
        ctx = stages.make_context(settings, date(2026, 12, 1), "llm-run", progress=lambda _: None)
        for stage in (stages.extract, stages.validate, stages.segment, stages.profile):
            stage(ctx)
        ids = stages.build_personas(ctx, api_key=API_KEY)
        docs = [read_json(ctx.store, ctx.key("personas", f"{pid}.json")) for pid in ids]
        assert docs and {d["narrative_source"] for d in docs} == {"llm"}
        assert fake.calls("chat") == len(docs)
        assert all(r.api_key == API_KEY for r in fake.requests)
