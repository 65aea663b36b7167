"""Every door, one policy: the same hostile request gets the same status and error shape over v1, v2 and
``/invocations`` (and the matching code over gRPC), a model that raises on a valid request gets the same
generic 500 everywhere with none of its exception text, and each error is counted once, for inference
calls only.

The model is a user's pyfunc that fails on one valid value (a temperature of 999): it passes its warm-up
and serves every other row.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import numpy as np
import pandas as pd
import pytest

from tests import pyfunc_models
from tests.grpc_calls import bearer, infer_request, stub
from tests.pyfunc_models import save_pyfunc
from tests.servers import PredictorProcess, scrape, start_predictor, total

NAME = "picky"
TOKEN = "door-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
FAILING = 999.0  # the temperature the model cannot score: a valid value
SECRET = "calibration table has no entry"  # in the model's exception: must never reach a client


def picky(model_input: pd.DataFrame) -> np.ndarray:
    """Fails on one valid value, as a user's model with a gap in its lookup table would."""
    temperature = model_input["temperature"].to_numpy(dtype=float)
    if (temperature == 999.0).any():
        raise KeyError("calibration table has no entry for 999.0")
    return temperature / 100.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PredictorProcess]:
    directory = tmp_path_factory.mktemp("picky") / "model"
    save_pyfunc(directory, picky)
    process = start_predictor(
        "sqlite:///" + str(directory.parent / "unused.db"),
        directory.parent,
        "--model_uri",
        str(directory),
        "--max_body_bytes",
        "4096",
        model_name=NAME,
        env={"PREDICTOR_AUTH_TOKENS": TOKEN, "PREDICTOR_PROTECT_METRICS": "true"},
    )
    try:
        yield process.wait_ready()
    finally:
        process.stop()


def errors_counted(server: PredictorProcess, error_type: str) -> float:
    return total(scrape(server.http_url, AUTH), "model_prediction_errors_total", error_type=error_type)


ROW = {"temperature": 50.0, "vibration": 0.2}
BAD_ROW = {"temperature": FAILING, "vibration": 0.2}


def rest_bodies(row: dict[str, float]) -> dict[str, tuple[str, Any]]:
    """The same request to this module's model in each REST format: (path, JSON body)."""
    return pyfunc_models.rest_bodies(NAME, row)


def grpc_request(row: dict[str, float], model: str = NAME) -> Any:
    return infer_request(model, [list(row.values())])


# ------------------------------------------------------------------------------------ a model that raises


@pytest.mark.parametrize("door", ["v1", "v2", "invocations"])
def test_a_model_that_raises_is_the_same_generic_500_on_every_rest_door(server: PredictorProcess, door: str) -> None:
    path, body = rest_bodies(BAD_ROW)[door]
    before = errors_counted(server, "internal")
    with httpx.Client(base_url=server.http_url, headers=AUTH, timeout=30) as client:
        answer = client.post(path, json=body)
        assert answer.status_code == 500, answer.text
        error = answer.json()["error"]
        assert SECRET not in error and "KeyError" not in error, error
        assert f"model {NAME}" in error
        # The connection stays usable and the next valid request is served.
        path, body = rest_bodies(ROW)[door]
        assert client.post(path, json=body).status_code == 200
    assert errors_counted(server, "internal") == before + 1


def test_a_model_that_raises_is_internal_over_grpc_without_its_text(server: PredictorProcess) -> None:
    before = errors_counted(server, "internal")
    with stub(server.grpc_target) as client, pytest.raises(grpc.RpcError) as failure:
        client.ModelInfer(grpc_request(BAD_ROW), metadata=bearer(TOKEN), timeout=30)
    assert failure.value.code() == grpc.StatusCode.INTERNAL
    assert SECRET not in (failure.value.details() or "") and "KeyError" not in (failure.value.details() or "")
    assert errors_counted(server, "internal") == before + 1


# ------------------------------------------------------------------------------------ the same hostile bodies

HOSTILE: list[tuple[str, bytes, dict[str, str], int, str]] = [
    # (case, raw body, extra headers, status, error_type counted)
    ("not JSON", b"{instances: [", {"Content-Type": "application/json"}, 400, "bad_request"),
    ("empty body", b"", {"Content-Type": "application/json"}, 400, "bad_request"),
    ("a JSON array", b"[1, 2]", {"Content-Type": "application/json"}, 400, "bad_request"),
    ("a CSV body", b"temperature\n50\n", {"Content-Type": "text/csv"}, 415, "unsupported_media_type"),
    ("over the size limit", b"[" + b"1," * 3000 + b"1]", {"Content-Type": "application/json"}, 413,
     "payload_too_large"),
    ("no token", b"{}", {"Content-Type": "application/json", "Authorization": "Bearer wrong"}, 401, "unauthorized"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "raw", "headers", "status", "error_type"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_the_same_hostile_body_gets_the_same_answer_on_every_rest_door(
    server: PredictorProcess, case: str, raw: bytes, headers: dict[str, str], status: int, error_type: str
) -> None:
    before = errors_counted(server, error_type)
    answers = {}
    with httpx.Client(base_url=server.http_url, timeout=30) as client:
        for door, (path, _) in rest_bodies(ROW).items():
            answer = client.post(path, content=raw, headers={**AUTH, **headers})
            answers[door] = answer.status_code
            assert answer.headers["content-type"] == "application/json", (door, case)
            assert set(answer.json()) == {"error"} and answer.json()["error"], (door, case)
    assert answers == dict.fromkeys(answers, status), case
    assert errors_counted(server, error_type) == before + len(answers), case


def test_an_unknown_model_is_the_same_404_on_every_door_that_names_one(server: PredictorProcess) -> None:
    before = errors_counted(server, "model_not_found")
    with httpx.Client(base_url=server.http_url, headers=AUTH, timeout=30) as client:
        for path, body in (
            ("/v1/models/nope:predict", {"instances": [ROW]}),
            ("/v2/models/nope/infer", rest_bodies(ROW)["v2"][1]),
        ):
            answer = client.post(path, json=body)
            assert answer.status_code == 404 and "'nope' is not served here" in answer.json()["error"], path
    with stub(server.grpc_target) as grpc_client, pytest.raises(grpc.RpcError) as failure:
        grpc_client.ModelInfer(grpc_request(ROW, model="nope"), metadata=bearer(TOKEN), timeout=30)
    assert failure.value.code() == grpc.StatusCode.NOT_FOUND
    assert "'nope' is not served here" in (failure.value.details() or "")
    assert errors_counted(server, "model_not_found") == before + 3


def test_errors_outside_inference_calls_are_answered_but_not_counted(server: PredictorProcess) -> None:
    before = errors_counted(server, "unauthorized")
    for _ in range(3):
        answer = httpx.get(f"{server.http_url}/metrics", timeout=30)  # protected: no token
        assert answer.status_code == 401 and set(answer.json()) == {"error"}
    assert httpx.get(f"{server.http_url}/admin/versions", timeout=30).status_code == 401
    assert errors_counted(server, "unauthorized") == before


def test_kserve_s_own_routes_answer_with_our_shapes(server: PredictorProcess) -> None:
    with httpx.Client(base_url=server.http_url, timeout=30) as client:
        assert client.get("/v1/models").json() == {"models": [NAME]}
        assert client.get("/v2/models").json() == {"models": [NAME]}
        assert client.get("/v2").json()["extensions"] == ["binary_tensor_data", "model_repository"]
        assert client.get("/").json() == {"status": "alive"}
        missing = client.get("/v2/models/nope")
        assert missing.status_code == 404 and set(missing.json()) == {"error"}
