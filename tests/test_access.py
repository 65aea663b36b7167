"""Bearer tokens (rotatable by file) and per-client rate limits, against the real server."""

from __future__ import annotations

import httpx
import pytest

from tests.servers import MODEL_NAME, SEED_ROWS, sample, scrape, start_predictor, wait_until

V1 = f"/v1/models/{MODEL_NAME}:predict"
BODY = {"instances": SEED_ROWS}


@pytest.fixture(scope="module")
def guarded(tracking_uri: str, tmp_path_factory: pytest.TempPathFactory):
    token_file = tmp_path_factory.mktemp("secrets") / "tokens"
    token_file.write_text("# rotated by the operator\nalpha-token\n")
    server = start_predictor(
        tracking_uri,
        tmp_path_factory.mktemp("logs"),
        "--auth_token_file",
        str(token_file),
        "--protect_metrics",
        "true",
        "--rate_limit_rps",
        "5",
        "--rate_limit_burst",
        "5",
        env={"PREDICTOR_AUTH_TOKENS": "env-token"},
    )
    try:
        yield server.wait_ready(), token_file
    finally:
        server.stop()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_missing_or_wrong_token_is_401_with_www_authenticate(guarded) -> None:
    server, _ = guarded
    missing = httpx.post(server.http_url + V1, json=BODY)
    assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Bearer")
    assert "missing bearer token" in missing.json()["error"]
    wrong = httpx.post(server.http_url + V1, json=BODY, headers=bearer("nope"))
    assert wrong.status_code == 401 and "nope" not in wrong.text
    assert httpx.post(server.http_url + V1, json=BODY, headers=bearer("env-token")).status_code == 200
    assert "nope" not in server.log(200_000) and "alpha-token" not in server.log(200_000)


def test_probes_stay_open_and_metrics_and_admin_are_protected(guarded) -> None:
    server, _ = guarded
    for path in ("/health", "/ready", "/v2/health/ready", f"/v1/models/{MODEL_NAME}"):
        assert httpx.get(server.http_url + path).status_code == 200, path
    assert httpx.get(server.http_url + "/metrics").status_code == 401
    assert httpx.get(server.http_url + "/metrics", headers=bearer("env-token")).status_code == 200
    assert httpx.get(server.http_url + "/admin/versions").status_code == 401
    assert httpx.post(f"{server.http_url}/v2/repository/models/{MODEL_NAME}/unload").status_code == 401


def test_token_file_rotation_needs_no_restart(guarded) -> None:
    server, token_file = guarded
    assert httpx.post(server.http_url + V1, json=BODY, headers=bearer("alpha-token")).status_code == 200
    token_file.write_text("beta-token\n")
    wait_until(
        lambda: httpx.post(server.http_url + V1, json=BODY, headers=bearer("beta-token")).status_code == 200,
        10,
        0.3,
        "the rotated token to be accepted",
    )
    assert httpx.post(server.http_url + V1, json=BODY, headers=bearer("alpha-token")).status_code == 401


def test_rate_limit_is_429_with_retry_after_per_client(guarded) -> None:
    server, token_file = guarded
    token_file.write_text("alpha-token\n")  # the rotation test (which may run first) leaves beta-token only
    wait_until(
        lambda: httpx.post(server.http_url + V1, json=BODY, headers=bearer("alpha-token")).status_code in (200, 429),
        10,
        0.3,
        "alpha-token to be accepted again",
    )
    metrics_auth = bearer("env-token")
    limited_before = sample(scrape(server.http_url, metrics_auth), "requests_rate_limited_total")
    with httpx.Client(base_url=server.http_url, headers=bearer("alpha-token")) as client:
        statuses = [client.post(V1, json=BODY) for _ in range(20)]
    limited = [r for r in statuses if r.status_code == 429]
    assert limited, [r.status_code for r in statuses]
    assert int(limited[0].headers["retry-after"]) >= 1
    assert "rate limit of 5 requests/s" in limited[0].json()["error"]
    # another client (another token) still has its own full bucket
    with httpx.Client(base_url=server.http_url, headers=bearer("env-token")) as other:
        assert other.post(V1, json=BODY).status_code == 200
    limited_after = sample(scrape(server.http_url, metrics_auth), "requests_rate_limited_total")
    assert limited_after - limited_before >= len(limited)
