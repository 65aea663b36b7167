"""The access policy every transport shares (``AccessControl.check_call``), as pure logic: which kinds of call
need a token, which are rate limited, who the client is, and what is counted. No server: a fake clock."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from predictor.config import load_settings
from predictor.errors import RateLimited, Unauthorized
from predictor.serving.access import AccessControl
from predictor.serving.security import Authenticator, BearerTokens, RateLimiter

TOKEN = "s3cret"
AUTH = f"Bearer {TOKEN}"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def control(
    tokens: str | None = TOKEN, rate: float = 1.0, burst: int = 2, protect_metrics: bool = False, trust: bool = False
) -> tuple[AccessControl, list[None]]:
    limited: list[None] = []
    access = AccessControl(
        Authenticator(BearerTokens(None, tokens)),
        RateLimiter(rate, burst, clock=Clock()),
        protect_metrics,
        trust,
        on_limited=lambda: limited.append(None),
    )
    return access, limited


def test_inference_and_admin_need_a_token_when_tokens_are_set() -> None:
    access, _ = control(rate=0)
    for kind in ("inference", "admin"):
        with pytest.raises(Unauthorized):
            access.check_call(kind, None, "10.0.0.1", None)
        with pytest.raises(Unauthorized):
            access.check_call(kind, "Bearer wrong", "10.0.0.1", None)
        access.check_call(kind, AUTH, "10.0.0.1", None)


def test_metrics_are_open_unless_protected_and_never_rate_limited() -> None:
    open_metrics, _ = control(burst=1)
    for _ in range(5):
        open_metrics.check_call("metrics", None, "10.0.0.1", None)
    protected, limited = control(burst=1, protect_metrics=True)
    with pytest.raises(Unauthorized):
        protected.check_call("metrics", None, "10.0.0.1", None)
    for _ in range(5):
        protected.check_call("metrics", AUTH, "10.0.0.1", None)
    assert limited == []


def test_the_limit_applies_per_client_and_each_refusal_is_counted_once() -> None:
    access, limited = control(burst=2)
    access.check_call("inference", AUTH, "10.0.0.1", None)
    access.check_call("admin", AUTH, "10.0.0.1", None)  # admin calls share the client's bucket
    with pytest.raises(RateLimited):
        access.check_call("inference", AUTH, "10.0.0.1", None)
    assert len(limited) == 1
    anonymous, limited = control(tokens=None, burst=1)
    anonymous.check_call("inference", None, "10.0.0.1", None)
    anonymous.check_call("inference", None, "10.0.0.2", None)  # another address: another bucket
    with pytest.raises(RateLimited):
        anonymous.check_call("inference", None, "10.0.0.1", None)
    assert len(limited) == 1


def test_a_refused_token_is_not_charged_to_anyone() -> None:
    access, limited = control(burst=1)
    for _ in range(3):
        with pytest.raises(Unauthorized):
            access.check_call("inference", "Bearer wrong", "10.0.0.1", None)
    access.check_call("inference", AUTH, "10.0.0.1", None)
    assert limited == []


@pytest.mark.parametrize(("trust", "second_allowed"), [(False, False), (True, True)])
def test_forwarded_for_separates_clients_only_when_trusted(trust: bool, second_allowed: bool) -> None:
    access, _ = control(tokens=None, burst=1, trust=trust)
    access.check_call("inference", None, "10.0.0.9", "198.51.100.1, 10.0.0.9")
    if second_allowed:
        access.check_call("inference", None, "10.0.0.9", "198.51.100.2, 10.0.0.9")
    else:
        with pytest.raises(RateLimited):
            access.check_call("inference", None, "10.0.0.9", "198.51.100.2, 10.0.0.9")


def test_active_only_when_tokens_or_a_rate_limit_are_set() -> None:
    assert not control(tokens=None, rate=0)[0].active
    assert control(tokens=TOKEN, rate=0)[0].active
    assert control(tokens=None, rate=1)[0].active


def test_rest_requests_are_checked_by_their_headers_and_peer() -> None:
    access, _ = control(burst=1, trust=True)

    def request(headers: dict[str, str], host: str | None = "10.0.0.1") -> SimpleNamespace:
        return SimpleNamespace(headers=headers, client=SimpleNamespace(host=host) if host else None)

    with pytest.raises(Unauthorized):
        access.check(request({}), "inference")  # type: ignore[arg-type]
    access.check(request({"authorization": AUTH, "x-forwarded-for": "198.51.100.1"}), "inference")  # type: ignore[arg-type]
    with pytest.raises(RateLimited):  # same token: same client, whatever the address
        access.check(request({"authorization": AUTH}, host=None), "inference")  # type: ignore[arg-type]


def test_built_from_settings() -> None:
    settings = load_settings(
        [
            "--rate_limit_rps",
            "2",
            "--rate_limit_burst",
            "1",
            "--protect_metrics",
            "true",
            "--trust_forwarded_for",
            "true",
        ],
        {"PREDICTOR_AUTH_TOKENS": TOKEN},
    )
    calls: list[None] = []
    access = AccessControl.from_settings(settings, lambda: calls.append(None))
    assert access.protect_metrics and access.trust_forwarded_for and access.active
    access.check_call("inference", AUTH, "10.0.0.1", None)
    with pytest.raises(RateLimited):
        access.check_call("inference", AUTH, "10.0.0.1", None)
    assert calls == [None]
    with pytest.raises(Unauthorized):
        access.check_call("metrics", None, "10.0.0.1", None)


def _rest(headers: dict[str, str], host: str | None = "10.0.0.1") -> SimpleNamespace:
    from starlette.datastructures import Headers

    return SimpleNamespace(headers=Headers(headers), client=SimpleNamespace(host=host) if host else None)


def test_rest_anonymous_clients_are_told_apart_by_peer_or_trusted_forwarded_for() -> None:
    by_peer, _ = control(tokens=None, burst=1)
    by_peer.check(_rest({}, host="10.0.0.1"), "inference")  # type: ignore[arg-type]
    by_peer.check(_rest({}, host="10.0.0.2"), "inference")  # type: ignore[arg-type]
    with pytest.raises(RateLimited):
        by_peer.check(_rest({}, host="10.0.0.1"), "inference")  # type: ignore[arg-type]
    by_forwarded, _ = control(tokens=None, burst=1, trust=True)
    by_forwarded.check(_rest({"X-Forwarded-For": "198.51.100.1"}), "inference")  # type: ignore[arg-type]
    by_forwarded.check(_rest({"x-forwarded-for": "198.51.100.2, 10.0.0.9"}), "inference")  # type: ignore[arg-type]
    with pytest.raises(RateLimited):
        by_forwarded.check(_rest({"X-Forwarded-For": "198.51.100.1"}), "inference")  # type: ignore[arg-type]


def test_rest_metrics_pass_without_a_token_unless_protected() -> None:
    access, _ = control()
    access.check(_rest({}), "metrics")  # type: ignore[arg-type]
    with pytest.raises(Unauthorized):
        access.check(_rest({}), "admin")  # type: ignore[arg-type]


def test_built_from_settings_with_a_token_file(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("from-the-file\n", encoding="utf-8")
    settings = load_settings(["--auth_token_file", str(tokens)], {})
    access = AccessControl.from_settings(settings, lambda: None)
    access.check_call("inference", "Bearer from-the-file", "10.0.0.1", None)
    with pytest.raises(Unauthorized):
        access.check_call("inference", "Bearer other", "10.0.0.1", None)
