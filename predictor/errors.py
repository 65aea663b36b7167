"""The error tree. Each class carries its HTTP status; ``rest.py`` maps them to responses in one place.

    PredictorError                      (base; never raised itself)
    ├── BadRequest                  400 malformed body, wrong shape/type/count, bad JSON
    │   ├── UnsupportedMediaType    415 a body that is neither JSON nor the v2 binary extension
    │   └── StaleFeatures           400 a stored feature is null or older than its TTL (policy "reject")
    ├── Unauthorized                401 missing or wrong bearer token
    ├── ModelNotFoundError          404 the URL names a model (or version) this server does not hold
    ├── EntityNotFound              404 an entity id has no row in the online store
    ├── PayloadTooLarge             413 body over --max_body_bytes, or more rows than --max_instances
    ├── RateLimited                 429 the client's token bucket is empty (carries Retry-After)
    ├── ModelNotReadyError          503 still loading, warm-up not passed, or the registry is unreachable
    ├── FeatureStoreUnavailable     503 the online store cannot be reached
    └── ModelLoadError              (not an HTTP error: loading failed; readiness stays off and we retry)

The 400/404/503 classes also subclass kserve's own ``InvalidInput``/``ModelNotFound``/``ModelNotReady``,
so kserve's gRPC interceptor maps them to INVALID_ARGUMENT/NOT_FOUND/UNAVAILABLE without extra code.
"""

from __future__ import annotations

from http import HTTPStatus

from kserve.errors import InvalidInput, ModelNotFound, ModelNotReady


class PredictorError(Exception):
    status: HTTPStatus = HTTPStatus.INTERNAL_SERVER_ERROR
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
    status = HTTPStatus.BAD_REQUEST
    error_type = "bad_request"


class UnsupportedMediaType(BadRequest):
    status = HTTPStatus.UNSUPPORTED_MEDIA_TYPE
    error_type = "unsupported_media_type"


class StaleFeatures(BadRequest):
    error_type = "stale_features"


class Unauthorized(PredictorError):
    status = HTTPStatus.UNAUTHORIZED
    error_type = "unauthorized"

    @property
    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="predictor"'}


class ModelNotFoundError(PredictorError, ModelNotFound):
    status = HTTPStatus.NOT_FOUND
    error_type = "model_not_found"


class EntityNotFound(PredictorError):
    status = HTTPStatus.NOT_FOUND
    error_type = "entity_not_found"

    def __init__(self, entity_key: str, missing_ids: list[str]) -> None:
        shown = ", ".join(missing_ids[:20]) + (" …" if len(missing_ids) > 20 else "")
        super().__init__(
            f"no features stored for {entity_key} {shown}: check the id, or run `feast materialize` "
            "if the equipment is new"
        )
        self.missing_ids = missing_ids


class PayloadTooLarge(PredictorError):
    status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    error_type = "payload_too_large"


class RateLimited(PredictorError):
    status = HTTPStatus.TOO_MANY_REQUESTS
    error_type = "rate_limited"

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(max(1, round(self.retry_after_s + 0.5)))}


class ModelNotReadyError(PredictorError, ModelNotReady):
    status = HTTPStatus.SERVICE_UNAVAILABLE
    error_type = "not_ready"

    def __init__(self, message: str) -> None:
        PredictorError.__init__(self, message)
        self.error_msg = message


class FeatureStoreUnavailable(PredictorError):
    status = HTTPStatus.SERVICE_UNAVAILABLE
    error_type = "feature_store_unavailable"


class ModelLoadError(PredictorError):
    error_type = "load_failed"
