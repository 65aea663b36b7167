"""MLflow 3 registry webhooks: a signed notice that an alias moved, so the server checks at once.

MLflow signs ``"{delivery_id}.{timestamp}.{body}"`` with HMAC-SHA256 under the webhook's secret and sends
``X-MLflow-Signature: v1,<base64>``, ``X-MLflow-Delivery-Id`` and ``X-MLflow-Timestamp``. We check the
signature in constant time and refuse timestamps older than ``MAX_AGE_S`` (a replayed delivery). The
notice only wakes the registry check: what to serve is still decided by asking the registry.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Mapping
from typing import Any

import orjson

from predictor.errors import BadRequest, Unauthorized

MAX_AGE_S = 300
RELEVANT_ENTITIES = {"model_version_alias", "model_version", "registered_model", "model_version_tag"}


def verify(secret: str, headers: Mapping[str, str], body: bytes, now: float | None = None) -> None:
    """Raise ``Unauthorized`` unless ``body`` carries MLflow's valid, fresh signature under ``secret``."""
    signature = headers.get("x-mlflow-signature", "")
    delivery_id = headers.get("x-mlflow-delivery-id", "")
    timestamp = headers.get("x-mlflow-timestamp", "")
    if not (signature and delivery_id and timestamp):
        raise Unauthorized(
            "missing X-MLflow-Signature, X-MLflow-Delivery-Id or X-MLflow-Timestamp: create the webhook with a secret"
        )
    if not timestamp.isdigit() or abs((now or time.time()) - int(timestamp)) > MAX_AGE_S:
        raise Unauthorized(f"webhook timestamp is not within {MAX_AGE_S} s of now (a replay, or a skewed clock)")
    version, _, presented = signature.partition(",")
    signed = f"{delivery_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(secret.encode(), signed, hashlib.sha256).digest()).decode()
    if version != "v1" or not hmac.compare_digest(presented.encode(), expected.encode()):
        raise Unauthorized("invalid webhook signature: check that the secret matches the webhook's")


def concerns(body: bytes, registered_name: str | None) -> bool:
    """Whether a verified delivery is about the model we serve (any registry event, when we cannot tell)."""
    try:
        event: Any = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest("webhook body is not JSON") from exc
    if not isinstance(event, dict) or event.get("entity") not in RELEVANT_ENTITIES:
        return False
    data = event.get("data")
    name = data.get("name") if isinstance(data, dict) else None
    return registered_name is None or name in (None, registered_name)
