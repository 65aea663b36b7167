"""The HTTP door: the one outermost layer every REST request passes, and the inference calls' whole walk.

Inference calls (the rows of ``endpoints.ENDPOINTS`` with a codec) are answered here from the raw ASGI
messages, without FastAPI: through it a 1-row prediction paid more for the framework than for the model.
Their walk: the model by name from the table (404) → access policy (401, 429) → Content-Type (415) → body
within ``--max_body_bytes`` (413) → ``codec.decode`` (400) → the model → ``codec.encode``.

Every other request passes to the FastAPI app (``routes``), inside the same outer layer: whatever the route,
an exception nobody answered becomes the generic 500 (no exception text leaves the server) and every answer
carries ``connection: close`` while draining. Errors are counted once on model_prediction_errors_total, and
only for inference calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from predictor import errors, logs
from predictor.errors import ModelNotReadyError, PayloadTooLarge, PredictorError, UnsupportedMediaType
from predictor.model import Call, PredictorModel, Serving
from predictor.models.table import ModelTable
from predictor.monitoring.payload_events import PayloadLogger
from predictor.monitoring.tracing import TRACEPARENT, TRACERESPONSE, TRACESTATE, SampledCall, Tracing
from predictor.protocol.codec import Reply, RestCodec, RestRequest
from predictor.serving.access import AccessControl
from predictor.serving.admission import TIMEOUT_HEADER, Admission
from predictor.serving.endpoints import CODECS, InferenceMatcher, Match

if TYPE_CHECKING:
    from collections.abc import Mapping

log = logging.getLogger(__name__)

T = TypeVar("T")
Headers = dict[str, str]
Acquire = Callable[[PredictorModel, str | None], Awaitable[Serving]]
# Which model a call without a model in its path (MLflow's /invocations) is for; absent: the first model.
MODEL_HEADER = "x-model-name"
# The request headers an inference call reads (ASGI servers lower-case the names).
READ_HEADERS = frozenset(
    name.encode("latin-1")
    for name in (
        "content-type",
        "content-length",
        "authorization",
        "x-forwarded-for",
        "x-request-id",
        TRACEPARENT,
        TRACESTATE,
        MODEL_HEADER,
        TIMEOUT_HEADER,
        *(c.binary_header for c in CODECS.values() if c.binary_header),
    )
)
CLOSE = (b"connection", b"close")
TRACERESPONSE_BYTES = TRACERESPONSE.encode("latin-1")
NO_SPAN = contextlib.nullcontext()  # tracing off: the phases' "span" (reusable, costs nothing)


@dataclass(slots=True)
class Exchange:
    """What a payload event of one call needs, filled in as the call goes (it may fail at any step)."""

    body: bytes | None = None
    content_type: str = ""
    request_id: str = ""
    model: str = ""
    version: str = ""


class Disconnected(Exception):
    """The client went away before its body arrived: nobody is left to answer."""


class HttpDoor:
    def __init__(
        self,
        app: ASGIApp,
        table: ModelTable[PredictorModel],
        max_body_bytes: int,
        access: AccessControl,
        draining: Callable[[], bool],
        admission: Admission | None = None,
        acquire: Acquire | None = None,
        codecs: Mapping[str, RestCodec] = CODECS,
        matcher: InferenceMatcher | None = None,
        tracing: Tracing | None = None,
        payload_logger: PayloadLogger | None = None,
    ) -> None:
        self.app = app  # every request that is not an inference call
        self.table = table
        self.max_body_bytes = max_body_bytes
        self.access = access
        self.draining = draining
        self.admission = admission or Admission()
        self.acquire = acquire or _serving
        self.codecs = codecs
        self.matcher = matcher or InferenceMatcher()
        self.tracing = tracing
        self.payload_logger = payload_logger

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        matched = self.matcher.match(scope["path"]) if scope["method"] == "POST" else None
        if matched is None:
            await self._pass(scope, receive, send)
            return
        # One pass over the raw headers, decoding only those read here; the first of repeated headers wins, as in
        # Starlette's mapping.
        headers: Headers = {}
        for key, value in scope["headers"]:
            if key in READ_HEADERS:
                headers.setdefault(key.decode("latin-1"), value.decode("latin-1"))
        exchange = Exchange() if self.payload_logger is not None else None
        traced = None
        if self.tracing is None:
            reply = await self._answer(matched, headers, scope, receive, exchange)
        else:
            name = f"POST {matched.endpoint.path}"
            with self.tracing.server_span(name, headers, matched.endpoint.codec or "") as trace:
                reply = await self._answer(matched, headers, scope, receive, exchange)
                if reply is not None and reply.status >= 400:
                    self.tracing.failed(trace, reply.status)
            traced = trace.response
        if reply is None:
            return  # the client left before its body arrived
        if exchange is not None and exchange.body is not None:
            self._log_payload(exchange, reply, matched.endpoint.codec or "", traced)
        raw = list(_encoded(reply.headers))  # the shared header sets; the call's own traceresponse beside them
        if traced is not None:
            raw.append((TRACERESPONSE_BYTES, traced.encode("latin-1")))
        if self.draining():  # ask keep-alive clients to reconnect (elsewhere) before the listener closes
            raw.append(CLOSE)
        raw.append((b"content-length", str(len(reply.body)).encode()))
        await send({"type": "http.response.start", "status": reply.status, "headers": raw})
        await send({"type": "http.response.body", "body": reply.body})

    # ------------------------------------------------------------------------------ inference calls
    async def _answer(
        self, matched: Match, headers: Headers, scope: Scope, receive: Receive, exchange: Exchange | None
    ) -> Reply | None:
        try:
            if self.admission.unlimited and TIMEOUT_HEADER not in headers:  # no limits: nothing to count or time
                return await self._infer(matched, headers, scope, receive, exchange)
            call = functools.partial(self._infer, matched, headers, scope, receive, exchange)
            return await self.admission.run(call, self.admission.timeout_s(headers.get(TIMEOUT_HEADER)))
        except Disconnected:
            return None
        except Exception as exc:
            return self._error(exc, matched.model_name or headers.get(MODEL_HEADER))

    def _log_payload(self, exchange: Exchange, reply: Reply, protocol: str, traced: str | None) -> None:
        """The call's request and response as payload events (both with the call's request id)."""
        assert self.payload_logger is not None and exchange.body is not None
        response_type = next((value for name, value in reply.headers if name == "content-type"), "application/json")
        self.payload_logger.submit(
            exchange.request_id or uuid.uuid4().hex,
            exchange.model,
            exchange.version,
            protocol,
            (exchange.body, exchange.content_type),
            (reply.body, response_type),
            traced.split("-")[1] if traced else None,
        )

    @staticmethod
    def _phase(name: str, tracing: SampledCall | None) -> AbstractContextManager[object]:
        return NO_SPAN if tracing is None else tracing.span(name)

    async def _infer(
        self, matched: Match, headers: Headers, scope: Scope, receive: Receive, exchange: Exchange | None = None
    ) -> Reply:
        endpoint = matched.endpoint
        assert endpoint.codec is not None and endpoint.access is not None
        codec = self.codecs[endpoint.codec]
        model = self.table.get(matched.model_name or headers.get(MODEL_HEADER))
        model.require_version(matched.model_version)  # 404, before anything else
        logs.request_id.set(headers.get("x-request-id"))
        client = scope.get("client")
        self.access.check_call(
            endpoint.access, headers.get("authorization"), client[0] if client else None, headers.get("x-forwarded-for")
        )
        check_media_type(codec, headers)
        body = await read_body(headers, receive, self.max_body_bytes)
        if exchange is not None:  # what a payload event needs, even if the call fails from here on
            exchange.body, exchange.model = body, model.name
            exchange.content_type = headers.get("content-type", codec.media_types[0])
            exchange.request_id = headers.get("x-request-id", "")
        try:
            serving = model.serving_for_request(matched.model_version)  # captured once: a swap changes nothing
        except ModelNotReadyError:  # evicted (--max_loaded_models): loaded again and awaited; else the same 503
            serving = await self.acquire(model, matched.model_version)
        if exchange is not None:
            exchange.version = serving.version
        tracing = self.tracing.sampled() if self.tracing is not None else None
        with self._phase("decode", tracing):
            decoded = codec.decode(RestRequest(body, headers), serving.schema, serving.outputs)
        if exchange is not None and not exchange.request_id and decoded.request_id:
            exchange.request_id = decoded.request_id  # X-Request-Id first, as KServe's logger; else the body's id
        if tracing is not None:
            tracing.annotate(model.name, serving.version, decoded.rows.count)
        if endpoint.verb == "explain":
            result = await model.explain(decoded.rows, serving)
        else:
            request_id = decoded.request_id or headers.get("x-request-id") or ""
            requested = "contributions" in decoded.requested
            call = Call(codec.name, request_id, requested, decoded.params, tracing)
            if self.admission.unlimited and TIMEOUT_HEADER not in headers:
                result = await model.infer(decoded.rows, serving, call)
            else:  # calls under a deadline or a limit: a caller that leaves frees its place and drops its work
                result = await unless_disconnected(model.infer(decoded.rows, serving, call), receive)
        with self._phase("encode", tracing):
            return codec.encode(decoded, result)

    def _error(self, exc: Exception, model_name: str | None) -> Reply:
        answer = errors.answer(exc)
        if not isinstance(exc, PredictorError):
            log.error("unexpected error answering an inference call", exc_info=exc)
        if (counted := self.table.charged(model_name)) is not None:
            counted.count_error(answer.error_type)
        return error_reply(answer)

    # ------------------------------------------------------------------------------ every other request
    async def _pass(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def answer(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if self.draining():
                    message = {**message, "headers": [*message.get("headers", ()), CLOSE]}
            await send(message)

        try:
            await self.app(scope, receive, answer)
        except Exception as exc:
            log.error("unexpected error answering %s %s", scope["method"], scope["path"], exc_info=exc)
            if started:
                return  # FastAPI's handler answered already (routes.unexpected_error): the same generic 500
            reply = error_reply(errors.answer(exc))
            raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers]
            await answer({"type": "http.response.start", "status": reply.status, "headers": raw})
            await send({"type": "http.response.body", "body": reply.body})


@functools.lru_cache(maxsize=64)
def _encoded(headers: tuple[tuple[str, str], ...]) -> tuple[tuple[bytes, bytes], ...]:
    """Reply headers as ASGI wants them; most replies share a handful of header sets."""
    return tuple((k.encode("latin-1"), v.encode("latin-1")) for k, v in headers)


async def _serving(model: PredictorModel, version: str | None) -> Serving:
    return model.serving_for_request(version)  # no eviction without a lifecycle: the same 503


def error_reply(answer: errors.Answer) -> Reply:
    """The one error body of every REST answer: ``{"error": "..."}`` with the error's headers."""
    headers = (("content-type", "application/json"), *((k.lower(), v) for k, v in answer.headers.items()))
    return Reply(orjson.dumps({"error": answer.message}), headers, int(answer.status))


async def unless_disconnected(work: Awaitable[T], receive: Receive) -> T:
    """``work``'s answer, or ``Disconnected`` as soon as the client goes: the work is cancelled, so a call still
    queued in the micro-batcher is skipped (counted on model_dropped_calls_total). Two tasks per call: only for
    calls under --request_timeout_s, X-Request-Timeout or --max_concurrency, whose callers asked for that."""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnect(receive))
    try:
        await asyncio.wait((task, gone), return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:  # the deadline passed: both go
        task.cancel()
        gone.cancel()
        raise
    if task.done():
        gone.cancel()
        return task.result()
    task.cancel()
    raise Disconnected


async def _disconnect(receive: Receive) -> None:
    """Returns when the client has gone (the request body was read: nothing else can arrive)."""
    while (await receive())["type"] != "http.disconnect":
        pass


def check_media_type(codec: RestCodec, headers: Headers) -> None:
    """One of the codec's media types (or none: curl's -d and tritonclient send none), or its binary extension."""
    content_type = media_type(headers.get("content-type"))
    if content_type is None or content_type in codec.media_types:
        return
    if codec.binary_header is not None and codec.binary_header in headers:
        return
    raise UnsupportedMediaType(
        f"Content-Type {content_type} is not supported here: send {codec.expects} "
        "with -H 'Content-Type: application/json'"
    )


async def read_body(headers: Headers, receive: Receive, limit: int) -> bytes:
    """The whole body, refused (413) as soon as it is declared or streamed past ``limit`` bytes."""
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(int(declared), limit)
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large(size, limit)
        chunks.append(chunk)
        more = message.get("more_body", False)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def too_large(size: int, limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"request body of {size}+ bytes exceeds the limit of {limit} bytes "
        "(split the request, or raise --max_body_bytes)"
    )


def media_type(content_type: str | None) -> str | None:
    """The Content-Type header without its parameters, lower-cased (None when absent or empty)."""
    if not content_type:
        return None
    return content_type.split(";", 1)[0].strip().lower()
