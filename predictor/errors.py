"""The error tree and the one place that decides how each error is answered, over every transport.

    class                        HTTP  gRPC                 when
    PredictorError                500  INTERNAL             (base) the model failed on a valid request
    ├── BadRequest                400  INVALID_ARGUMENT     malformed body, wrong shape/type/count, bad JSON
    │   ├── UnsupportedMediaType  415  INVALID_ARGUMENT     a body that is neither JSON nor the v2 binary extension
    │   └── StaleFeatures         400  INVALID_ARGUMENT     a stored feature is null or stale (policy "reject")
    ├── Unauthorized              401  UNAUTHENTICATED      missing or wrong bearer token
    ├── ModelNotFoundError        404  NOT_FOUND            the request names a model or version not served here
    ├── EntityNotFound            404  NOT_FOUND            an entity id has no row in the online store
    ├── PayloadTooLarge           413  RESOURCE_EXHAUSTED   body over --max_body_bytes, or rows over --max_instances
    ├── RateLimited               429  RESOURCE_EXHAUSTED   the client's token bucket is empty (Retry-After)
    ├── ModelNotReadyError        503  UNAVAILABLE          loading, warm-up not passed, registry unreachable
    ├── FeatureStoreUnavailable   503  UNAVAILABLE          the online store cannot be reached
    ├── ModelLoadError            503  UNAVAILABLE          a repository load failed (requests meanwhile: not_ready)
    ├── ExplanationNotSupported   501  UNIMPLEMENTED        :explain on a model kind we cannot explain exactly
    ├── Overloaded                503  RESOURCE_EXHAUSTED   --max_concurrency calls in flight already (Retry-After)
    └── DeadlineExceeded          504  DEADLINE_EXCEEDED    the call's deadline passed; its queued work is dropped

``answer(exc)`` gives the HTTP status, gRPC code, message and headers of any exception: ours by their
class attributes, KServe's own errors by their meaning, anything else as a 500 / INTERNAL that does not
leak internals. ``tests/test_errors.py`` checks the table above against the classes, and the README's
table is generated from ``markdown_table()`` (``make docs``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from http import HTTPStatus

from grpc import StatusCode
from kserve.errors import InvalidInput, ModelNotFound, ModelNotReady


class PredictorError(Exception):
    """The model failed on a valid request, or a stored feature's type disagrees with its signature (the base class;
    also any unexpected failure)."""

    status: HTTPStatus = HTTPStatus.INTERNAL_SERVER_ERROR
    grpc_code: StatusCode = StatusCode.INTERNAL
    #: the ``error_type`` label on model_prediction_errors_total
    error_type: str = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.reason = message  # kserve's gRPC interceptor reads ``.reason``

    def __str__(self) -> str:
        return self.reason

    @property
    def headers(self) -> dict[str, str]:
        return {}


class BadRequest(PredictorError, InvalidInput):
    """Malformed body, wrong shape, type or count, bad JSON: the message names the fault."""

    status = HTTPStatus.BAD_REQUEST
    grpc_code = StatusCode.INVALID_ARGUMENT
    error_type = "bad_request"


class UnsupportedMediaType(BadRequest):
    """A body that is neither JSON nor the v2 binary tensor extension."""

    status = HTTPStatus.UNSUPPORTED_MEDIA_TYPE
    grpc_code = StatusCode.INVALID_ARGUMENT
    error_type = "unsupported_media_type"


class StaleFeatures(BadRequest):
    """A stored feature is null or older than its TTL (policy `reject`)."""

    error_type = "stale_features"


class Unauthorized(PredictorError):
    """Bearer token missing or wrong."""

    status = HTTPStatus.UNAUTHORIZED
    grpc_code = StatusCode.UNAUTHENTICATED
    error_type = "unauthorized"

    @property
    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="predictor"'}


class ModelNotFoundError(PredictorError, ModelNotFound):
    """The request names a model or version this server does not hold."""

    status = HTTPStatus.NOT_FOUND
    grpc_code = StatusCode.NOT_FOUND
    error_type = "model_not_found"


class EntityNotFound(PredictorError):
    """An entity id has no row in the online store (every unknown id is named)."""

    status = HTTPStatus.NOT_FOUND
    grpc_code = StatusCode.NOT_FOUND
    error_type = "entity_not_found"

    def __init__(self, entity_key: str, missing_ids: list[str]) -> None:
        shown = ", ".join(missing_ids)  # every one: the caller fixes them all at once (bounded by --max_instances)
        super().__init__(
            f"no features stored for {entity_key} {shown}: check the id, or run `feast materialize` "
            "if the equipment is new"
        )
        self.missing_ids = missing_ids


class PayloadTooLarge(PredictorError):
    """Body over --max_body_bytes, or more rows than --max_instances."""

    status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    grpc_code = StatusCode.RESOURCE_EXHAUSTED
    error_type = "payload_too_large"


class RateLimited(PredictorError):
    """The client's token bucket is empty (REST answers carry Retry-After)."""

    status = HTTPStatus.TOO_MANY_REQUESTS
    grpc_code = StatusCode.RESOURCE_EXHAUSTED
    error_type = "rate_limited"

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(max(1, math.ceil(self.retry_after_s)))}  # whole seconds, rounded up


class ModelNotReadyError(PredictorError, ModelNotReady):
    """Still loading, warm-up not passed, registry unreachable, or shutting down."""

    status = HTTPStatus.SERVICE_UNAVAILABLE
    grpc_code = StatusCode.UNAVAILABLE
    error_type = "not_ready"

    def __init__(self, message: str) -> None:
        PredictorError.__init__(self, message)
        self.error_msg = message


class FeatureStoreUnavailable(PredictorError):
    """The online store cannot be reached."""

    status = HTTPStatus.SERVICE_UNAVAILABLE
    grpc_code = StatusCode.UNAVAILABLE
    error_type = "feature_store_unavailable"


class ModelLoadError(PredictorError):
    """A model failed to load: answered to a repository load; the model's requests get not_ready meanwhile."""

    status = HTTPStatus.SERVICE_UNAVAILABLE
    grpc_code = StatusCode.UNAVAILABLE
    error_type = "load_failed"


class ExplanationNotSupported(PredictorError):
    """An explanation was asked of a model kind we cannot explain exactly (the message lists those we can)."""

    status = HTTPStatus.NOT_IMPLEMENTED
    grpc_code = StatusCode.UNIMPLEMENTED
    error_type = "explanation_not_supported"


class Overloaded(PredictorError):
    """This worker already has --max_concurrency calls in flight: retry after the Retry-After seconds."""

    status = HTTPStatus.SERVICE_UNAVAILABLE
    grpc_code = StatusCode.RESOURCE_EXHAUSTED
    error_type = "overloaded"

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": "1"}


class DeadlineExceeded(PredictorError):
    """The call's deadline (--request_timeout_s, X-Request-Timeout or gRPC's) passed; unstarted work is dropped."""

    status = HTTPStatus.GATEWAY_TIMEOUT
    grpc_code = StatusCode.DEADLINE_EXCEEDED
    error_type = "deadline_exceeded"


@dataclass(frozen=True)
class Answer:
    """How one error is answered: the same classification for REST and gRPC."""

    status: HTTPStatus
    grpc_code: StatusCode
    message: str
    error_type: str
    headers: dict[str, str]


# KServe's own errors (raised by its DataPlane for routes we leave to it), by meaning.
_KSERVE: tuple[tuple[type[Exception], HTTPStatus, StatusCode, str], ...] = (
    (InvalidInput, HTTPStatus.BAD_REQUEST, StatusCode.INVALID_ARGUMENT, "bad_request"),
    (ModelNotFound, HTTPStatus.NOT_FOUND, StatusCode.NOT_FOUND, "model_not_found"),
    (ModelNotReady, HTTPStatus.SERVICE_UNAVAILABLE, StatusCode.UNAVAILABLE, "not_ready"),
)


def answer(exc: BaseException) -> Answer:
    if isinstance(exc, PredictorError):
        return Answer(exc.status, exc.grpc_code, str(exc), exc.error_type, exc.headers)
    for kind, status, code, error_type in _KSERVE:
        if isinstance(exc, kind):
            return Answer(status, code, str(getattr(exc, "reason", exc)), error_type, {})
    return Answer(
        HTTPStatus.INTERNAL_SERVER_ERROR,
        StatusCode.INTERNAL,
        "internal server error (the server log has the details)",
        "internal",
        {},
    )


def error_classes() -> list[type[PredictorError]]:
    """Every class of the tree, in the docstring's order (depth first)."""
    ordered: list[type[PredictorError]] = []

    def walk(cls: type[PredictorError]) -> None:
        ordered.append(cls)
        for sub in cls.__subclasses__():
            walk(sub)

    walk(PredictorError)
    return ordered


def markdown_table() -> str:
    """The README's status table, generated from the classes."""
    rows = ["| HTTP | gRPC | error | when |", "|---|---|---|---|"]
    for cls in error_classes():
        when = " ".join((cls.__doc__ or "").split())  # one table row: the docstring's lines joined
        rows.append(f"| {int(cls.status)} | `{cls.grpc_code.name}` | `{cls.error_type}` | {when} |")
    return "\n".join(rows)
