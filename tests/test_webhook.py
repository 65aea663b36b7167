"""MLflow registry webhooks: signatures made by MLflow's own signing code are accepted; anything else is 401."""

from __future__ import annotations

import time

import orjson
import pytest
from mlflow.webhooks.delivery import _generate_hmac_signature

from predictor.errors import Unauthorized
from predictor.serving import webhook

SECRET = "s3cret"
BODY = orjson.dumps(
    {
        "entity": "model_version_alias",
        "action": "created",
        "data": {"name": "predictive_maintenance", "alias": "production", "version": "2"},
    }
)


def headers(secret: str = SECRET, timestamp: int | None = None, body: bytes = BODY) -> dict[str, str]:
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    return {
        "x-mlflow-delivery-id": "d-1",
        "x-mlflow-timestamp": stamp,
        "x-mlflow-signature": _generate_hmac_signature(secret, "d-1", stamp, body.decode()),
    }


def test_mlflows_own_signature_verifies() -> None:
    webhook.verify(SECRET, headers(), BODY)


@pytest.mark.parametrize(
    ("sent", "fragment"),
    [
        (lambda: headers(secret="other"), "invalid webhook signature"),
        (lambda: headers(timestamp=int(time.time()) - 3600), "not within 300 s"),
        (lambda: {k: v for k, v in headers().items() if k != "x-mlflow-signature"}, "missing X-MLflow-Signature"),
        (lambda: {**headers(), "x-mlflow-signature": "v2,abc"}, "invalid webhook signature"),
    ],
)
def test_bad_or_stale_signatures_are_refused(sent, fragment: str) -> None:
    with pytest.raises(Unauthorized, match=fragment):
        webhook.verify(SECRET, sent(), BODY)


def test_a_tampered_body_is_refused() -> None:
    with pytest.raises(Unauthorized):
        webhook.verify(SECRET, headers(), BODY.replace(b'"2"', b'"3"'))


def test_only_events_about_our_model_trigger_a_check() -> None:
    assert webhook.concerns(BODY, "predictive_maintenance")
    assert not webhook.concerns(BODY, "another_model")
    assert not webhook.concerns(orjson.dumps({"entity": "prompt", "data": {}}), "predictive_maintenance")
