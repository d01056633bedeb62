"""OpenAIImageProvider with the real ``openai`` client against the local FakeOpenAIServer."""

from __future__ import annotations

import base64
import dataclasses
import logging
import re
import time
from collections.abc import Iterator

import openai
import pytest

from persona_pipeline.config import ImagingSettings
from persona_pipeline.contracts import DepictedTraits, ImagePrompt
from persona_pipeline.exceptions import ImageGenerationError
from persona_pipeline.imaging.base import ImageProvider, cache_key, png_size
from persona_pipeline.imaging.openai_provider import OpenAIImageProvider, safer_prompt
from tests.fake_openai import FakeOpenAIServer

API_KEY = "sk-test-0123456789abcdef"
SAFETY_MESSAGE = (
    "Your request was rejected by the safety system. If you believe this is an error, contact us at "
    "help.openai.com and include the request ID req_123."
)
DEPICTED = DepictedTraits(
    age_band="35-44",
    gender="female",
    income_band="high",
    occupation="nurse",
    interests=("wine", "gardening", "cycling"),
    channel="email",
    device="mobile",
    setting="urban",
    style="portrait",
)
PROMPT = ImagePrompt(
    persona_id="persona-champions",
    variant="portrait-1",
    style="portrait",
    prompt=(
        "Head-and-shoulders portrait photograph of a woman aged 35-44, a nurse who loves wine, gardening and "
        "cycling, shopping by email on her phone, urban setting, warm light."
    ),
    prompt_hash="3f2a9c0d1e4b5a6f",
    depicted=DEPICTED,
)


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(valid_api_keys={API_KEY}) as fake:
        yield fake


def make_settings(**overrides: object) -> ImagingSettings:
    values: dict[str, object] = {
        "provider": "openai",
        "model": "gpt-image-2",
        "size": "1024x1024",
        "quality": "medium",
        "output_format": "png",
        "timeout_s": 5.0,
        "max_retries": 2,
    }
    values.update(overrides)
    return ImagingSettings.model_validate(values)


def make_provider(server: FakeOpenAIServer, **overrides: object) -> OpenAIImageProvider:
    return OpenAIImageProvider(make_settings(**overrides), api_key=API_KEY, base_url=server.base_url)


def test_success_sends_the_documented_request(server: FakeOpenAIServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    provider = make_provider(server)
    assert isinstance(provider, ImageProvider)

    image = provider.generate(PROMPT)

    assert server.calls("images") == 1
    request = server.image_requests()[0]
    assert request.path == "/v1/images/generations"
    assert request.body == {
        "model": "gpt-image-2",
        "prompt": PROMPT.prompt,
        "n": 1,
        "size": "1024x1024",
        "quality": "medium",
        "output_format": "png",
    }
    assert "response_format" not in request.body
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert image.data.startswith(b"\x89PNG\r\n\x1a\n")
    assert (image.width, image.height) == png_size(image.data) == (64, 64)
    assert image.content_type == "image/png"
    assert image.model == "gpt-image-2"
    assert image.cost_usd == pytest.approx(0.042) == provider.price_per_image()
    assert image.flags == ()
    assert provider.parameters() == {"size": "1024x1024", "quality": "medium", "output_format": "png"}
    assert len(cache_key(provider, PROMPT)) == 64
    assert API_KEY not in caplog.text
    assert PROMPT.prompt not in caplog.text


def test_different_prompts_give_different_images(server: FakeOpenAIServer) -> None:
    provider = make_provider(server, size="1536x1024")
    first = provider.generate(PROMPT)
    other = dataclasses.replace(PROMPT, prompt="A lifestyle photograph of a person in a park")
    second = provider.generate(other)
    again = provider.generate(PROMPT)
    assert first.data != second.data
    assert first.data == again.data
    assert (first.width, first.height) == (64, 43)


def test_rate_limit_is_retried_after_retry_after(server: FakeOpenAIServer) -> None:
    server.script([("rate_limit", 0.2), "ok"])
    image = make_provider(server).generate(PROMPT)

    assert image.flags == ()
    assert server.calls("images") == 2
    first, second = server.image_requests()
    assert second.received_at - first.received_at >= 0.18  # retry-after-ms / Retry-After honoured
    assert second.headers["x-stainless-retry-count"] == "1"


def test_server_error_is_retried(server: FakeOpenAIServer) -> None:
    server.script([("error", 500, "server_error", "The server had an error while processing your request."), "ok"])
    image = make_provider(server).generate(PROMPT)
    assert image.data.startswith(b"\x89PNG")
    assert server.calls("images") == 2


def test_persistent_server_error_fails_after_all_attempts(server: FakeOpenAIServer) -> None:
    server.script([("error", 503, None, "The engine is currently overloaded, please try again later.")] * 3)
    provider = make_provider(server, max_retries=2)

    with pytest.raises(ImageGenerationError, match="after 3 attempts") as info:
        provider.generate(PROMPT)

    assert server.calls("images") == 3
    assert "imaging.concurrency" in str(info.value)
    assert "overloaded" in str(info.value)


def test_rate_limit_exhausted_suggests_lower_concurrency(server: FakeOpenAIServer) -> None:
    server.script([("rate_limit", 0.01)] * 2)
    provider = make_provider(server, max_retries=1)

    with pytest.raises(ImageGenerationError, match="rate limited after 2 attempts") as info:
        provider.generate(PROMPT)

    assert "PERSONA_IMAGING__CONCURRENCY" in str(info.value)
    assert server.calls("images") == 2


def test_timeout_fails_after_bounded_time(server: FakeOpenAIServer) -> None:
    server.script([("hang", 3.0), ("hang", 3.0)])
    provider = make_provider(server, timeout_s=0.5, max_retries=1)

    started = time.monotonic()
    with pytest.raises(ImageGenerationError, match="timed out after 2 attempts") as info:
        provider.generate(PROMPT)
    elapsed = time.monotonic() - started

    assert elapsed < 2.5
    assert "imaging.timeout_s" in str(info.value)
    assert server.calls("images") == 2


def test_moderation_refusal_is_retried_once_with_a_neutral_prompt(server: FakeOpenAIServer) -> None:
    server.script([("error", 400, "moderation_blocked", SAFETY_MESSAGE), "ok"])
    provider = make_provider(server)

    image = provider.generate(PROMPT)

    assert image.flags == ("moderation_retry",)
    assert image.model == "gpt-image-2"
    assert image.cost_usd == pytest.approx(provider.price_per_image())  # the refused call is not billed
    first, second = server.image_requests()
    assert first.body["prompt"] == PROMPT.prompt
    retry_prompt = second.body["prompt"]
    assert retry_prompt != PROMPT.prompt
    assert retry_prompt == safer_prompt(DEPICTED)
    lowered = retry_prompt.lower()
    for word in ("nurse", "wine", "gardening", "cycling", "email", "mobile", "phone", "woman", "high"):
        assert word not in lowered
    assert "35 to 44" in retry_prompt
    assert "fully clothed" in lowered
    assert "neutral background" in lowered
    assert "person" in lowered


def test_second_refusal_falls_back_to_the_offline_avatar(server: FakeOpenAIServer) -> None:
    pytest.importorskip("persona_pipeline.imaging.offline")
    server.script([("error", 400, "moderation_blocked", SAFETY_MESSAGE)] * 2)

    image = make_provider(server).generate(PROMPT)

    assert image.flags == ("moderation_fallback",)
    assert image.model == "avatar-v1"
    assert image.cost_usd == 0.0
    assert image.content_type == "image/png"
    assert image.data.startswith(b"\x89PNG\r\n\x1a\n")
    assert (image.width, image.height) == png_size(image.data) == (512, 512)
    assert server.calls("images") == 2


def test_refusal_detected_from_message_only(server: FakeOpenAIServer) -> None:
    server.script([("error", 400, "content_policy_violation", "This request violates our content policy."), "ok"])
    assert make_provider(server).generate(PROMPT).flags == ("moderation_retry",)


def test_other_bad_request_is_reported_with_the_server_message(server: FakeOpenAIServer) -> None:
    server.script([("error", 400, "invalid_value", "Invalid size '999x999'.")])
    with pytest.raises(ImageGenerationError, match=r"Invalid size '999x999'") as info:
        make_provider(server).generate(PROMPT)
    assert "imaging.size" in str(info.value)
    assert server.calls("images") == 1


def test_invalid_key_fails_fast(server: FakeOpenAIServer) -> None:
    provider = OpenAIImageProvider(make_settings(), api_key="sk-wrong-key-000000", base_url=server.base_url)

    with pytest.raises(ImageGenerationError, match="openai_default") as info:
        provider.generate(PROMPT)

    assert server.calls("images") == 1
    assert "401" in str(info.value)
    assert "OPENAI_API_KEY" in str(info.value)
    assert "sk-wrong-key-000000" not in str(info.value)


def test_forbidden_explains_organization_verification(server: FakeOpenAIServer) -> None:
    server.script([("error", 403, None, "Your organization must be verified to use the model `gpt-image-2`.")])
    with pytest.raises(ImageGenerationError, match="verif") as info:
        make_provider(server).generate(PROMPT)
    assert "403" in str(info.value)
    assert server.calls("images") == 1


def test_check_passes_for_a_known_model(server: FakeOpenAIServer) -> None:
    make_provider(server).check()
    assert [r.path for r in server.requests] == ["/v1/models/gpt-image-2"]


def test_check_names_the_setting_for_an_unknown_model(server: FakeOpenAIServer) -> None:
    provider = make_provider(server, model="gpt-image-9", prices={"gpt-image-9": {"*": 0.05}})

    with pytest.raises(ImageGenerationError, match=r"imaging\.model") as info:
        provider.check()

    message = str(info.value)
    assert "PERSONA_IMAGING__MODEL" in message
    assert "gpt-image-2" in message  # suggestions from GET /v1/models
    assert server.calls("images") == 0


def test_check_rejects_a_bad_key(server: FakeOpenAIServer) -> None:
    provider = OpenAIImageProvider(make_settings(), api_key="sk-wrong-key-000000", base_url=server.base_url)
    with pytest.raises(ImageGenerationError, match="openai_default"):
        provider.check()
    assert server.calls("models") == 1


def test_missing_api_key_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ImageGenerationError, match="openai_default") as info:
        OpenAIImageProvider(make_settings(), base_url="http://127.0.0.1:9/v1")
    assert "OPENAI_API_KEY" in str(info.value)


def test_api_key_from_environment(server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    OpenAIImageProvider(make_settings(), base_url=server.base_url).generate(PROMPT)
    assert server.image_requests()[0].api_key == API_KEY


def test_url_only_answer_is_rejected(server: FakeOpenAIServer) -> None:
    server.script(["url_only"])
    with pytest.raises(ImageGenerationError, match="URL"):
        make_provider(server).generate(PROMPT)


def test_injected_client_gets_configured_retries(server: FakeOpenAIServer) -> None:
    client = openai.OpenAI(api_key=API_KEY, base_url=server.base_url, max_retries=0)
    server.script([("error", 502, None, "Bad gateway"), "ok"])
    provider = OpenAIImageProvider(make_settings(max_retries=1), client=client)
    assert provider.generate(PROMPT).flags == ()
    assert server.calls("images") == 2


def test_azure_deployment_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with FakeOpenAIServer(valid_api_keys={API_KEY}, deployments={"persona-images"}) as fake:
        settings = make_settings(
            model="persona-images",
            azure_endpoint=fake.root_url,
            azure_api_version="2025-04-01-preview",
            prices={"persona-images": {"*": 0.04}},
        )
        provider = OpenAIImageProvider(settings, api_key=API_KEY)
        assert isinstance(provider._client, openai.AzureOpenAI)

        provider.check()
        image = provider.generate(PROMPT)

        models_request, image_request = fake.requests
        assert models_request.path == "/openai/models"
        assert image_request.path == "/openai/deployments/persona-images/images/generations"
        assert image_request.query == {"api-version": "2025-04-01-preview"}
        assert image_request.headers["api-key"] == API_KEY
        assert "authorization" not in image_request.headers
        assert image.model == "persona-images"
        assert image.cost_usd == pytest.approx(0.04)


def test_fake_server_rejects_response_format_like_the_real_api(server: FakeOpenAIServer) -> None:
    client = openai.OpenAI(api_key=API_KEY, base_url=server.base_url, max_retries=0)
    with pytest.raises(openai.BadRequestError, match=re.escape("Unknown parameter: 'response_format'.")) as info:
        client.images.generate(model="gpt-image-2", prompt="x", response_format="b64_json")
    assert info.value.code == "unknown_parameter"
    assert info.value.param == "response_format"


def test_fake_server_text_endpoints_parse_with_the_client(server: FakeOpenAIServer) -> None:
    client = openai.OpenAI(api_key=API_KEY, base_url=server.base_url, max_retries=0)
    chat = client.chat.completions.create(
        model="gpt-5-mini", messages=[{"role": "user", "content": "Champions who buy wine"}]
    )
    assert chat.choices[0].message.content is not None
    assert "Champions who buy wine" in chat.choices[0].message.content
    response = client.responses.create(model="gpt-5-mini", input="Champions who buy wine")
    assert "Champions who buy wine" in response.output_text
    assert [m.id for m in client.models.list()][:1] == ["gpt-image-2"]
    assert server.calls("chat") == 1
    assert server.calls("responses") == 1


def test_fake_server_random_rate_limits_are_absorbed() -> None:
    with FakeOpenAIServer(rate_limit_share=0.3, rate_limit_retry_after_s=0.01, seed=7) as fake:
        provider = OpenAIImageProvider(make_settings(max_retries=6), api_key=API_KEY, base_url=fake.base_url)
        images = [provider.generate(PROMPT) for _ in range(5)]
        assert all(base64.b64encode(i.data) for i in images)
        assert fake.calls("images") > 5  # some 429s were retried transparently


def test_output_format_is_sent_and_content_type_follows_the_bytes(server: FakeOpenAIServer) -> None:
    image = make_provider(server, output_format="webp", quality="low").generate(PROMPT)
    body = server.image_requests()[0].body
    assert body["output_format"] == "webp"
    assert body["quality"] == "low"
    # The fake server always encodes PNG; the content type is taken from the bytes, not the request.
    assert image.content_type == "image/png"
    assert image.cost_usd == pytest.approx(0.011)


def test_safer_prompt_never_describes_a_minor() -> None:
    young = dataclasses.replace(DEPICTED, age_band="16-24", setting="home", style="illustration")
    assert "young adult" in safer_prompt(young)
    assert "16" not in safer_prompt(young)
    assert "at home" in safer_prompt(young)
    assert "aged 65 or older" in safer_prompt(dataclasses.replace(DEPICTED, age_band="65+"))
