"""The inference routes (v1 ``:predict``, v2 ``/infer``) as one raw ASGI endpoint in front of KServe's FastAPI app.

Through FastAPI a 1-row prediction paid more for the framework than for the model: seven middlewares, a regex
per registered route, dependency resolution and a ``Request`` per call (py-spy under load: ~2/3 of the event
loop's time was spent outside our handler). Here a POST whose path is one of ``ROUTES`` goes from the raw ASGI
messages to the model and back; every other request passes to the app untouched.

It keeps what the FastAPI handlers guaranteed, with the same checks and messages (shared with ``routes``):
404 for another model or an unloaded version, bearer tokens and rate limits (``AccessControl``), 415 for a
body that is not JSON (nor, on v2, the binary extension), 413 past ``--max_body_bytes`` (declared or
streamed), the typed 400s of the protocol modules, the request id in log lines, ``connection: close``
while draining. Every error is answered by ``errors.answer`` and counted once on
model_prediction_errors_total; anything unexpected is a logged JSON 500 on a connection that stays open.
The model keeps its metrics, prediction log and hot swap (``PredictorModel.__call__``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from predictor import errors, logs
from predictor.errors import PredictorError, UnsupportedMediaType
from predictor.model import PredictorModel, V1Body, V2Body
from predictor.protocol.schema import parse_json
from predictor.serving.access import AccessControl
from predictor.serving.routes import BINARY_HEADER, JSON_TYPES, check_name, media_type, too_large

log = logging.getLogger(__name__)

#: The routes answered here, as the OpenAPI document describes them: (method, path, handler).
ROUTES: tuple[tuple[str, str, str], ...] = (
    ("POST", "/v1/models/{model_name}:predict", "v1_predict"),
    ("POST", "/v2/models/{model_name}/infer", "v2_infer"),
    ("POST", "/v2/models/{model_name}/versions/{model_version}/infer", "v2_infer"),
)

Headers = dict[str, str]
# The request headers the inference routes read (ASGI servers lower-case the names).
READ_HEADERS = frozenset(
    name.encode("latin-1")
    for name in ("content-type", "content-length", "authorization", "x-forwarded-for", "x-request-id", BINARY_HEADER)
)
Answer = tuple[int, bytes, list[tuple[bytes, bytes]]]
JSON = [(b"content-type", b"application/json")]


class Disconnected(Exception):
    """The client went away before its body arrived: nobody is left to answer."""


def match(path: str) -> tuple[str, str, str | None] | None:
    """``(handler, model_name, model_version)`` when ``path`` is one of ``ROUTES`` (names as Starlette's
    ``{name}`` matches them: one non-empty path segment), else None."""
    if path.startswith("/v1/models/") and path.endswith(":predict"):
        name = path[11:-8]
        return ("v1_predict", name, None) if name and "/" not in name else None
    if path.startswith("/v2/models/") and path.endswith("/infer"):
        parts = path[11:-6].split("/")
        if len(parts) == 1 and parts[0]:
            return "v2_infer", parts[0], None
        if len(parts) == 3 and parts[0] and parts[1] == "versions" and parts[2]:
            return "v2_infer", parts[0], parts[2]
    return None


class FastPath:
    def __init__(
        self,
        app: ASGIApp,
        model: PredictorModel,
        max_body_bytes: int,
        access: AccessControl,
        draining: Callable[[], bool],
    ) -> None:
        self.app = app  # everything that is not an inference call
        self.model = model
        self.max_body_bytes = max_body_bytes
        self.access = access
        self.draining = draining

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = match(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if route is None:
            await self.app(scope, receive, send)
            return
        handler, name, version = route
        # One pass over the raw headers, decoding only those read here; the first of repeated headers wins, as in
        # Starlette's mapping.
        headers: Headers = {}
        for key, value in scope["headers"]:
            if key in READ_HEADERS:
                headers.setdefault(key.decode("latin-1"), value.decode("latin-1"))
        try:
            if handler == "v1_predict":
                status, body, extra = await self.v1_predict(name, headers, scope, receive)
            else:
                status, body, extra = await self.v2_infer(name, version, headers, scope, receive)
        except Disconnected:
            return
        except Exception as exc:
            status, body, extra = self.error(exc)
        if self.draining():  # ask keep-alive clients to reconnect (elsewhere) before the listener closes
            extra.append((b"connection", b"close"))
        extra.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": extra})
        await send({"type": "http.response.body", "body": body})

    async def v1_predict(self, name: str, headers: Headers, scope: Scope, receive: Receive) -> Answer:
        self.admit(name, None, headers, scope)
        content_type = media_type(headers.get("content-type"))
        if content_type is not None and content_type not in JSON_TYPES:
            raise UnsupportedMediaType(
                f"Content-Type {content_type} is not supported: send JSON with -H 'Content-Type: application/json'"
            )
        payload = parse_json(await self.body(headers, receive))
        response, _ = await self.model(V1Body(payload), headers)
        return 200, orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY), list(JSON)

    async def v2_infer(
        self, name: str, version: str | None, headers: Headers, scope: Scope, receive: Receive
    ) -> Answer:
        self.admit(name, version, headers, scope)
        header_length = headers.get(BINARY_HEADER)
        content_type = media_type(headers.get("content-type"))
        if header_length is None and content_type not in (None, *JSON_TYPES):
            raise UnsupportedMediaType(
                f"Content-Type {content_type} needs the binary tensor extension's {BINARY_HEADER} header; "
                "for plain JSON send Content-Type: application/json"
            )
        body = await self.body(headers, receive)
        (content, answer_headers), _ = await self.model(V2Body(body, header_length), headers, version=version)
        return 200, content, [(k.encode("latin-1"), v.encode("latin-1")) for k, v in answer_headers.items()]

    def admit(self, name: str, version: str | None, headers: Headers, scope: Scope) -> None:
        """The model is ours, and the caller may call it (401, 429); the request id is set for log lines."""
        check_name(self.model, name, version)
        logs.request_id.set(headers.get("x-request-id"))
        client = scope.get("client")
        self.access.check_call(
            "inference", headers.get("authorization"), client[0] if client else None, headers.get("x-forwarded-for")
        )

    async def body(self, headers: Headers, receive: Receive) -> bytes:
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            raise too_large(int(declared), self.max_body_bytes)
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise Disconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise too_large(size, self.max_body_bytes)
            chunks.append(chunk)
            more = message.get("more_body", False)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def error(self, exc: Exception) -> Answer:
        answer = errors.answer(exc)
        if not isinstance(exc, PredictorError):
            log.error("unexpected error answering an inference request", exc_info=exc)
        self.model.count_error(answer.error_type)
        extra = [*JSON, *((k.encode("latin-1"), v.encode("latin-1")) for k, v in answer.headers.items())]
        return int(answer.status), orjson.dumps({"error": answer.message}), extra
