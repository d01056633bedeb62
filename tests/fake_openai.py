"""A local OpenAI-compatible HTTP server for tests and benchmarks.

It speaks enough of the public API for the real ``openai`` client to talk to it::

    with FakeOpenAIServer(valid_api_keys={"sk-test"}) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="sk-test")
        server.script([("rate_limit", 0.1), "ok"])
        client.images.generate(model="gpt-image-2", prompt="...")
        assert server.calls("images") == 2

Endpoints (OpenAI paths under ``/v1``, Azure paths under ``/openai`` with ``?api-version=``):

* ``POST /v1/images/generations`` and ``POST /openai/deployments/{deployment}/images/generations``: validated like
  the real API for GPT image models (unknown parameters such as ``response_format`` give 400
  ``Unknown parameter: 'response_format'.``; bad values give 400 ``invalid_value``). The answer carries real PNG
  bytes as ``b64_json``: a small picture whose pixels are derived from the SHA-256 of the prompt, so different
  prompts give different bytes and the same prompt the same bytes. The requested size is kept in aspect ratio but
  scaled down so the longer side is at most :data:`MAX_IMAGE_SIDE` px, to keep tests fast. ``jpeg``/``webp``
  requests also get PNG bytes (the standard library cannot encode those); ``output_format`` in the answer echoes
  the request like the real API does.
* ``GET /v1/models``, ``GET /v1/models/{id}`` (404 ``model_not_found`` for unknown ids), ``GET /openai/models...``.
* ``POST /v1/chat/completions``, ``POST /v1/responses`` (and the Azure deployment chat path): a deterministic
  "persona narrative" echoing the last user input, in the official response shapes.

Behaviour of image requests is scriptable with :meth:`FakeOpenAIServer.script`; each image request consumes one
entry, and ``"ok"`` is used when the queue is empty:

* ``"ok"``: a normal answer;
* ``"url_only"``: an answer with a ``url`` instead of ``b64_json`` (like retired DALL-E models did);
* ``("rate_limit", retry_after_seconds)``: 429 ``rate_limit_exceeded`` with ``Retry-After`` (seconds, fractional
  values written as such, which the ``openai`` client accepts), ``retry-after-ms`` and ``x-ratelimit-*`` headers;
* ``("error", status, code, message)``: that status with the official error body, e.g.
  ``("error", 400, "moderation_blocked", "Your request was rejected by the safety system.")``;
* ``("hang", seconds)``: wait that long before answering normally (use it to provoke client timeouts).

Errors always have the official shape ``{"error": {"message", "type", "param", "code"}}``. Every request is
recorded in :attr:`FakeOpenAIServer.requests`; :meth:`FakeOpenAIServer.calls` counts them per endpoint.
:attr:`FakeOpenAIServer.max_in_flight` is the most requests the server was handling at the same moment.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import random
import struct
import threading
import time
import uuid
import zlib
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qsl, urlsplit

MAX_IMAGE_SIDE = 64

DEFAULT_MODELS: tuple[str, ...] = (
    "gpt-image-2",
    "gpt-image-2-2026-04-21",
    "gpt-image-2.5-flare",
    "gpt-image-2.5-sunburst",
    "gpt-5-mini",
    "gpt-4.1-mini",
)

#: Parameters ``POST /images/generations`` accepts for GPT image models.
IMAGE_PARAMETERS = frozenset(
    {
        "model",
        "prompt",
        "n",
        "size",
        "quality",
        "output_format",
        "output_compression",
        "background",
        "moderation",
        "user",
        "safety_identifier",
        "stream",
        "partial_images",
    }
)
_ENUMS: dict[str, tuple[str, ...]] = {
    "quality": ("low", "medium", "high", "auto"),
    "output_format": ("png", "jpeg", "webp"),
    "background": ("transparent", "opaque", "auto"),
    "moderation": ("low", "auto"),
}
_OUTPUT_TOKENS = {"low": 272, "medium": 1056, "high": 4160}

Behaviour = str | tuple[Any, ...]


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server saw it."""

    method: str
    path: str  # without the query string
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    body: Any  # parsed JSON, or None
    endpoint: str  # "images", "models", "chat", "responses" or "other"
    received_at: float = field(default_factory=time.monotonic)

    @property
    def api_key(self) -> str | None:
        """Key from ``Authorization: Bearer ...`` (OpenAI) or ``api-key`` (Azure), if any."""
        auth = self.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            return auth[7:].strip() or None
        return self.headers.get("api-key") or None

    @property
    def has_authorization(self) -> bool:
        return self.api_key is not None


class _Reply(Exception):
    """Raised inside a handler to send a complete response."""

    def __init__(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.payload = payload
        self.headers = headers or {}


def error_body(
    message: str, *, type_: str = "invalid_request_error", param: str | None = None, code: Any = None
) -> dict[str, Any]:
    """The official error envelope."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _error(
    status: int, message: str, *, code: Any = None, param: str | None = None, type_: str | None = None
) -> _Reply:
    if type_ is None:
        type_ = {401: "invalid_request_error", 429: "requests"}.get(status, "invalid_request_error")
        if status >= 500:
            type_ = "server_error"
    return _Reply(status, error_body(message, type_=type_, param=param, code=code))


def make_png(width: int, height: int, seed: bytes) -> bytes:
    """A valid 8-bit RGB PNG whose pixels are derived from ``seed`` (a diagonal gradient plus a checker)."""
    width, height = max(1, width), max(1, height)
    start, end, accent = seed[0:3], seed[3:6], seed[6:9]
    cell = 4 + seed[9] % 8
    span = max(1, width + height - 2)
    rows = bytearray()
    for y in range(height):
        rows.append(0)  # filter type "None"
        for x in range(width):
            t = (x + y) / span
            if ((x // cell) + (y // cell)) % 2 == 0:
                rows.extend(int(a + (b - a) * t) for a, b in zip(start, end, strict=True))
            else:
                rows.extend(accent)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(bytes(rows), 6))
        + chunk(b"IEND", b"")
    )


def scaled_size(size: str) -> tuple[int, int]:
    """Pixel size of the fake picture for a ``size`` parameter: aspect ratio kept, longer side <= 64."""
    width, height = 1024, 1024
    if size != "auto":
        w_text, _, h_text = size.partition("x")
        width, height = int(w_text), int(h_text)
    scale = min(1.0, MAX_IMAGE_SIDE / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


class FakeOpenAIServer:
    """Threaded local server; use as a context manager (or :meth:`start`/:meth:`stop`)."""

    def __init__(
        self,
        *,
        latency_s: float = 0.0,
        rate_limit_share: float = 0.0,
        rate_limit_retry_after_s: float = 0.05,
        seed: int = 0,
        valid_api_keys: Iterable[str] | None = None,
        models: Sequence[str] = DEFAULT_MODELS,
        deployments: Iterable[str] | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        """
        Args:
            latency_s: extra delay before every POST answer (simulated generation time).
            rate_limit_share: probability that an unscripted image request gets a 429 (benchmarks).
            rate_limit_retry_after_s: ``Retry-After`` of those random 429s.
            seed: seed of the RNG behind ``rate_limit_share``, so benchmark runs are reproducible.
            valid_api_keys: keys accepted; ``None`` accepts any non-empty key. Others get 401 ``invalid_api_key``.
            models: ids served by ``GET /v1/models``; image requests for other models get 404.
            deployments: Azure deployment names accepted; ``None`` accepts any.
        """
        self.latency_s = latency_s
        self.rate_limit_share = rate_limit_share
        self.rate_limit_retry_after_s = rate_limit_retry_after_s
        self.valid_api_keys = None if valid_api_keys is None else frozenset(valid_api_keys)
        self.models = list(models)
        self.deployments = None if deployments is None else frozenset(deployments)
        self._host = host
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._script: deque[Behaviour] = deque()
        self._requests: list[RecordedRequest] = []
        self._in_flight = 0
        self._max_in_flight = 0
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------------------------

    def start(self) -> Self:
        """Bind a free port and serve in a daemon thread."""
        if self._httpd is not None:
            return self
        handler = type("_BoundHandler", (_Handler,), {"fake": self})
        httpd = ThreadingHTTPServer((self._host, 0), handler)
        httpd.daemon_threads = True
        httpd.block_on_close = False
        self._httpd = httpd
        self._stopping.clear()
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; hanging requests are released at once."""
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("FakeOpenAIServer is not running: call start() or use it as a context manager")
        return int(self._httpd.server_address[1])

    @property
    def root_url(self) -> str:
        """``http://127.0.0.1:PORT`` (use as ``azure_endpoint``)."""
        return f"http://{self._host}:{self.port}"

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1`` (use as the OpenAI ``base_url``)."""
        return f"{self.root_url}/v1"

    # -- scripting and inspection -----------------------------------------------------------------------------

    def script(self, behaviours: Iterable[Behaviour]) -> None:
        """Append behaviours for the next image requests (one consumed per request)."""
        items = list(behaviours)
        for item in items:
            _validate_behaviour(item)
        with self._lock:
            self._script.extend(items)

    def pending(self) -> int:
        """Scripted behaviours not consumed yet."""
        with self._lock:
            return len(self._script)

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request received so far."""
        with self._lock:
            return list(self._requests)

    def image_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.endpoint == "images"]

    def calls(self, endpoint: str | None = None) -> int:
        """Requests received for ``endpoint`` ("images", "models", "chat", "responses", "other"), or all."""
        with self._lock:
            return sum(1 for r in self._requests if endpoint is None or r.endpoint == endpoint)

    @property
    def max_in_flight(self) -> int:
        """The most requests being handled at the same moment (from arrival until the answer is ready)."""
        with self._lock:
            return self._max_in_flight

    def reset(self) -> None:
        """Forget recorded requests and pending behaviours."""
        with self._lock:
            self._requests.clear()
            self._max_in_flight = self._in_flight
            self._script.clear()

    # -- used by the handler ----------------------------------------------------------------------------------

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)

    def _done(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def _next_behaviour(self) -> Behaviour:
        with self._lock:
            if self._script:
                return self._script.popleft()
            if self.rate_limit_share > 0 and self._rng.random() < self.rate_limit_share:
                return ("rate_limit", self.rate_limit_retry_after_s)
            return "ok"

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)


def _validate_behaviour(item: Behaviour) -> None:
    if item in ("ok", "url_only"):
        return
    if isinstance(item, tuple) and item:
        kind = item[0]
        if kind == "rate_limit" and len(item) == 2:
            return
        if kind == "error" and len(item) == 4 and isinstance(item[1], int):
            return
        if kind == "hang" and len(item) == 2:
            return
    raise ValueError(
        f"unknown behaviour {item!r}: use 'ok', 'url_only', ('rate_limit', s), ('error', status, code, message) "
        "or ('hang', s)"
    )


class _Handler(BaseHTTPRequestHandler):
    fake: FakeOpenAIServer  # set on the bound subclass
    protocol_version = "HTTP/1.1"
    server_version = "FakeOpenAI/1.0"

    def log_message(self, *args: Any) -> None:
        """Keep test output quiet."""

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # -- plumbing ---------------------------------------------------------------------------------------------

    def _dispatch(self, method: str) -> None:
        parts = urlsplit(self.path)
        path = parts.path.rstrip("/") or "/"
        query = dict(parse_qsl(parts.query))
        headers = {name.lower(): value for name, value in self.headers.items()}
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body: Any = None
        body_error = False
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body_error = True
        record = RecordedRequest(
            method=method, path=path, query=query, headers=headers, body=body, endpoint=_endpoint_of(path)
        )
        self.fake._record(record)
        finished = False
        try:
            if body_error:
                raise _error(
                    400,
                    "We could not parse the JSON body of your request. (HINT: This likely means you "
                    "aren't using your HTTP library correctly.)",
                )
            self._route(method, record)
        except _Reply as reply:
            # Done before the answer goes out: a client may send its next request as soon as it has read it.
            self.fake._done()
            finished = True
            self._send(reply.status, reply.payload, reply.headers)
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            if not finished:
                self.fake._done()

    def _send(self, status: int, payload: Any, headers: dict[str, str]) -> None:
        data = json.dumps(payload).encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("x-request-id", f"req_{uuid.uuid4().hex[:24]}")
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _route(self, method: str, record: RecordedRequest) -> None:
        path = record.path
        azure = path.startswith("/openai/")
        if azure:
            if "api-version" not in record.query:
                raise _error(404, "Resource not found", code="404")
        elif not path.startswith("/v1/"):
            raise _error(404, f"Invalid URL ({method} {path})")
        self._authenticate(record)
        segments = path.strip("/").split("/")[1:]  # drop "v1" / "openai"
        deployment: str | None = None
        if azure and len(segments) >= 2 and segments[0] == "deployments":
            deployment = segments[1]
            if self.fake.deployments is not None and deployment not in self.fake.deployments:
                raise _error(
                    404,
                    "The API deployment for this resource does not exist. If you created the deployment within the "
                    "last 5 minutes, please wait a moment and try again.",
                    code="DeploymentNotFound",
                )
            segments = segments[2:]
        route = "/".join(segments)
        if method == "GET" and route == "models":
            raise _Reply(200, {"object": "list", "data": [_model_object(m) for m in self.fake.models]})
        if method == "GET" and route.startswith("models/"):
            model_id = route[len("models/") :]
            if model_id not in self.fake.models:
                raise _model_not_found(model_id)
            raise _Reply(200, _model_object(model_id))
        if method == "POST" and route == "images/generations":
            self._images(record, deployment)
        if method == "POST" and route == "chat/completions":
            self._chat(record, deployment)
        if method == "POST" and route == "responses" and not azure:
            self._responses(record)
        raise _error(404, f"Invalid URL ({method} {path})")

    def _authenticate(self, record: RecordedRequest) -> None:
        key = record.api_key
        if key is None:
            raise _error(
                401,
                "You didn't provide an API key. You need to provide your API key in an Authorization header using "
                "Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            )
        allowed = self.fake.valid_api_keys
        if allowed is not None and key not in allowed:
            masked = f"{key[:3]}{'*' * 4}{key[-4:]}" if len(key) > 8 else "****"
            raise _error(
                401,
                f"Incorrect API key provided: {masked}. You can find your API key at "
                "https://platform.openai.com/account/api-keys.",
                code="invalid_api_key",
            )

    # -- endpoints --------------------------------------------------------------------------------------------

    def _images(self, record: RecordedRequest, deployment: str | None) -> None:
        body = record.body
        if not isinstance(body, dict):
            raise _error(
                400, "Missing required parameter: 'prompt'.", code="missing_required_parameter", param="prompt"
            )
        model = body.get("model") or deployment
        params = _validate_image_body(body, model)
        if deployment is None and model not in self.fake.models:
            raise _model_not_found(str(model))

        behaviour = self.fake._next_behaviour()
        if isinstance(behaviour, tuple):
            kind = behaviour[0]
            if kind == "rate_limit":
                raise _rate_limited(str(model), float(behaviour[1]))
            if kind == "error":
                _, status, code, message = behaviour
                raise _error(int(status), str(message), code=code, type_=_error_type(int(status), code))
            if kind == "hang":
                self.fake._sleep(float(behaviour[1]))
        self.fake._sleep(self.fake.latency_s)

        prompt = str(params["prompt"])
        width, height = scaled_size(params["size"])
        images = []
        for index in range(params["n"]):
            digest = hashlib.sha256(f"{model}\x00{prompt}\x00{index}".encode()).digest()
            png = make_png(width, height, digest)
            if behaviour == "url_only":
                images.append({"url": f"https://files.invalid/images/{digest.hex()[:16]}.png"})
            else:
                images.append({"b64_json": base64.b64encode(png).decode("ascii")})
        text_tokens = max(1, len(prompt.split()))
        output_tokens = _OUTPUT_TOKENS.get(params["quality"], 1056) * params["n"]
        payload = {
            "created": int(time.time()),
            "data": images,
            "background": "opaque" if params["background"] == "auto" else params["background"],
            "output_format": params["output_format"],
            "quality": "medium" if params["quality"] == "auto" else params["quality"],
            "size": "1024x1024" if params["size"] == "auto" else params["size"],
            "usage": {
                "input_tokens": text_tokens,
                "input_tokens_details": {"text_tokens": text_tokens, "image_tokens": 0},
                "output_tokens": output_tokens,
                "output_tokens_details": {"image_tokens": output_tokens, "text_tokens": 0},
                "total_tokens": text_tokens + output_tokens,
            },
        }
        raise _Reply(200, payload, _ratelimit_headers(remaining=49))

    def _chat(self, record: RecordedRequest, deployment: str | None) -> None:
        body = record.body if isinstance(record.body, dict) else {}
        model = body.get("model") or deployment
        if not model:
            raise _error(400, "Missing required parameter: 'model'.", code="missing_required_parameter", param="model")
        if deployment is None and model not in self.fake.models:
            raise _model_not_found(str(model))
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _error(
                400, "Missing required parameter: 'messages'.", code="missing_required_parameter", param="messages"
            )
        self.fake._sleep(self.fake.latency_s)
        user_text = next((_text_of(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), "")
        text = narrative(user_text)
        prompt_tokens = sum(len(_text_of(m.get("content")).split()) for m in messages)
        completion_tokens = len(text.split())
        payload: dict[str, Any] = {
            "id": f"chatcmpl-{hashlib.sha256(text.encode()).hexdigest()[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "refusal": None, "annotations": []},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
            "service_tier": "default",
            "system_fingerprint": None,
        }
        raise _Reply(200, payload, _ratelimit_headers(remaining=499))

    def _responses(self, record: RecordedRequest) -> None:
        body = record.body if isinstance(record.body, dict) else {}
        model = body.get("model")
        if not model:
            raise _error(400, "Missing required parameter: 'model'.", code="missing_required_parameter", param="model")
        if model not in self.fake.models:
            raise _model_not_found(str(model))
        self.fake._sleep(self.fake.latency_s)
        source = body.get("input")
        if isinstance(source, list):
            user_text = next(
                (
                    _text_of(item.get("content"))
                    for item in reversed(source)
                    if isinstance(item, dict) and item.get("role", "user") == "user"
                ),
                "",
            )
        else:
            user_text = _text_of(source)
        text = narrative(user_text)
        digest = hashlib.sha256(text.encode()).hexdigest()
        input_tokens = len(user_text.split()) + len(_text_of(body.get("instructions")).split())
        output_tokens = len(text.split())
        now = time.time()
        payload = {
            "id": f"resp_{digest[:32]}",
            "object": "response",
            "created_at": now,
            "completed_at": now,
            "status": "completed",
            "model": model,
            "instructions": body.get("instructions"),
            "error": None,
            "incomplete_details": None,
            "metadata": body.get("metadata") or {},
            "output": [
                {
                    "id": f"msg_{digest[32:64]}",
                    "type": "message",
                    "role": "assistant",
                    "status": "completed",
                    "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
                }
            ],
            "parallel_tool_calls": True,
            "temperature": body.get("temperature", 1.0),
            "top_p": body.get("top_p", 1.0),
            "tool_choice": "auto",
            "tools": [],
            "text": {"format": {"type": "text"}},
            "truncation": "disabled",
            "usage": {
                "input_tokens": input_tokens,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": output_tokens,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": input_tokens + output_tokens,
            },
        }
        raise _Reply(200, payload, _ratelimit_headers(remaining=499))


def narrative(source: str) -> str:
    """The deterministic text the chat and responses endpoints answer with."""
    summary = " ".join(source.split())[:400] or "an unnamed segment"
    return f"Persona narrative: this persona stands for customers described as follows: {summary}"


def _endpoint_of(path: str) -> str:
    if path.endswith("/images/generations"):
        return "images"
    if path.endswith("/chat/completions"):
        return "chat"
    if path.endswith("/responses"):
        return "responses"
    if "/models" in path:
        return "models"
    return "other"


def _model_object(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": 1_745_000_000, "owned_by": "system"}


def _model_not_found(model_id: str) -> _Reply:
    return _error(
        404,
        f"The model `{model_id}` does not exist or you do not have access to it.",
        code="model_not_found",
    )


def _error_type(status: int, code: Any) -> str:
    if code == "moderation_blocked":
        return "image_generation_user_error"
    if status == 429:
        return "requests"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


def _format_seconds(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"


def _ratelimit_headers(*, remaining: int, reset_s: float = 1.0) -> dict[str, str]:
    reset = f"{int(reset_s * 1000)}ms" if reset_s < 1 else f"{reset_s:g}s"
    return {
        "x-ratelimit-limit-requests": "50",
        "x-ratelimit-remaining-requests": str(remaining),
        "x-ratelimit-reset-requests": reset,
        "x-ratelimit-limit-tokens": "100000",
        "x-ratelimit-remaining-tokens": str(100_000 if remaining else 0),
        "x-ratelimit-reset-tokens": reset,
    }


def _rate_limited(model: str, retry_after_s: float) -> _Reply:
    headers = _ratelimit_headers(remaining=0, reset_s=retry_after_s)
    headers["Retry-After"] = _format_seconds(retry_after_s)
    headers["retry-after-ms"] = str(max(0, math.ceil(retry_after_s * 1000)))
    return _Reply(
        429,
        error_body(
            f"Rate limit reached for {model} in organization org-fake on requests per min (RPM): Limit 50, Used 50, "
            f"Requested 1. Please try again in {int(retry_after_s * 1000)}ms.",
            type_="requests",
            code="rate_limit_exceeded",
        ),
        headers,
    )


def _validate_image_body(body: dict[str, Any], model: Any) -> dict[str, Any]:
    """Check a ``POST /images/generations`` body like the real API does for GPT image models."""
    for name in body:
        if name not in IMAGE_PARAMETERS:
            raise _error(400, f"Unknown parameter: '{name}'.", code="unknown_parameter", param=name)
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        raise _error(400, "Missing required parameter: 'prompt'.", code="missing_required_parameter", param="prompt")
    if len(prompt) > 32_000:
        raise _error(
            400,
            f"Invalid 'prompt': string too long. Expected a string with maximum length 32000, but got a string "
            f"with length {len(prompt)} instead.",
            code="string_above_max_length",
            param="prompt",
        )
    if not model:
        raise _error(400, "Missing required parameter: 'model'.", code="missing_required_parameter", param="model")
    params: dict[str, Any] = {
        "prompt": prompt,
        "n": body.get("n", 1),
        "size": body.get("size") or "auto",
        "quality": body.get("quality") or "auto",
        "output_format": body.get("output_format") or "png",
        "background": body.get("background") or "auto",
    }
    for name, allowed in _ENUMS.items():
        value = body.get(name)
        if value is not None and value not in allowed:
            raise _invalid_value(name, value, allowed)
    n = params["n"]
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 10:
        raise _error(
            400,
            f"Invalid 'n': integer must be between 1 and 10, got {n!r}.",
            code="integer_out_of_range" if isinstance(n, int) else "invalid_type",
            param="n",
        )
    size = params["size"]
    if size != "auto":
        w_text, sep, h_text = str(size).partition("x")
        if not (
            sep and w_text.isdigit() and h_text.isdigit() and 16 <= int(w_text) <= 4096 and 16 <= int(h_text) <= 4096
        ):
            raise _invalid_value("size", size, ("auto", "1024x1024", "1536x1024", "1024x1536"))
    if body.get("stream"):
        raise _error(400, "Streaming is not supported by this test server.", param="stream", code="unsupported_value")
    if params["background"] == "transparent" and params["output_format"] == "jpeg":
        raise _error(
            400,
            "Transparent background is not supported for output format 'jpeg'. Use 'png' or 'webp'.",
            param="background",
            code="invalid_value",
        )
    return params


def _invalid_value(name: str, value: Any, allowed: Sequence[str]) -> _Reply:
    supported = ", ".join(f"'{v}'" for v in allowed)
    return _error(
        400, f"Invalid value: '{value}'. Supported values are: {supported}.", code="invalid_value", param=name
    )


def _text_of(content: Any) -> str:
    """Plain text of a message ``content`` (string or list of typed parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [part.get("text", "") for part in content if isinstance(part, dict)]
        return " ".join(t for t in texts if isinstance(t, str))
    return str(content)
