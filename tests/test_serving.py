"""A user's session against the real server: the seed's curl commands, v1 and v2 over REST, probes, metrics."""

from __future__ import annotations

import httpx
import numpy as np
import orjson
import pytest

from tests.servers import MODEL_NAME, SEED_ROWS, PredictorProcess

V1 = f"/v1/models/{MODEL_NAME}:predict"
V2 = f"/v2/models/{MODEL_NAME}/infer"
FEATURES = [
    "temperature_c",
    "age_months",
    "vibration_rms",
    "load_ratio",
    "pressure_delta_bar",
    "runtime_khours",
    "overheat_alarm",
    "vibration_alarm",
    "lubrication_overdue",
    "recent_repair",
]


@pytest.fixture(scope="module")
def client(demo_server: PredictorProcess):
    with httpx.Client(base_url=demo_server.http_url, timeout=10) as http:
        yield http


def test_the_seed_curl_session_answers(client: httpx.Client) -> None:
    assert client.get("/health").json() == {"status": "alive"}
    assert client.get("/ready").status_code == 200
    assert client.get(f"/v1/models/{MODEL_NAME}").json() == {
        "name": MODEL_NAME,
        "version": "1",
        "platform": "mlflow",
        "ready": True,
    }
    response = client.post(V1, json={"instances": SEED_ROWS}, headers={"Content-Type": "application/json"})
    assert response.status_code == 200
    body = response.json()
    assert body["model_name"] == MODEL_NAME and body["model_version"] == "1"
    assert len(body["predictions"]) == 2 and all(p in (0, 1) for p in body["predictions"])
    probabilities = np.array(body["probabilities"])
    assert probabilities.shape == (2, 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    assert body["predictions"] == probabilities.argmax(axis=1).tolist()
    metrics = client.get("/metrics").text
    assert f'model_loaded{{model_name="{MODEL_NAME}",model_version="1"}} 1.0' in metrics
    assert f'model_predictions_total{{model_name="{MODEL_NAME}",model_version="1"}}' in metrics


def test_every_probe_path_reports_ready(client: httpx.Client) -> None:
    for path in (
        "/health",
        "/health/live",
        "/ready",
        "/health/ready",
        "/v2/health/live",
        "/v2/health/ready",
        f"/v2/models/{MODEL_NAME}/ready",
    ):
        assert client.get(path).status_code == 200, path


def test_v1_objects_keyed_by_feature_name_equal_lists(client: httpx.Client) -> None:
    as_lists = client.post(V1, json={"instances": SEED_ROWS}).json()
    objects = [dict(zip(FEATURES, row, strict=True)) for row in SEED_ROWS]
    as_objects = client.post(V1, json={"instances": objects}).json()
    as_inputs = client.post(V1, json={"inputs": SEED_ROWS}).json()
    assert as_lists == as_objects == as_inputs


def test_v2_json_infer_matches_v1(client: httpx.Client) -> None:
    v1 = client.post(V1, json={"instances": SEED_ROWS}).json()
    request = {"id": "req-42", "inputs": [{"name": "input-0", "shape": [2, 10], "datatype": "FP64", "data": SEED_ROWS}]}
    response = client.post(V2, json=request)
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == "req-42" and body["model_name"] == MODEL_NAME and body["model_version"] == "1"
    outputs = {o["name"]: o for o in body["outputs"]}
    assert outputs["predictions"] == {
        "name": "predictions",
        "datatype": "INT64",
        "shape": [2],
        "data": v1["predictions"],
    }
    assert outputs["probabilities"]["shape"] == [2, 2]
    np.testing.assert_allclose(np.reshape(outputs["probabilities"]["data"], (2, 2)), v1["probabilities"])


def test_v2_generates_an_id_and_accepts_json_without_content_type(client: httpx.Client) -> None:
    request = {"inputs": [{"name": "x", "shape": [1, 10], "datatype": "FP32", "data": SEED_ROWS[0]}]}
    response = client.post(V2, content=orjson.dumps(request))  # no Content-Type, as tritonclient sends it
    assert response.status_code == 200
    assert isinstance(response.json()["id"], str) and response.json()["id"]


def test_v2_one_tensor_per_feature(client: httpx.Client) -> None:
    columns = np.array(SEED_ROWS).T
    request = {
        "inputs": [
            {"name": name, "shape": [2], "datatype": "FP64", "data": columns[j].tolist()}
            for j, name in enumerate(FEATURES)
        ]
    }
    body = client.post(V2, json=request).json()
    v1 = client.post(V1, json={"instances": SEED_ROWS}).json()
    assert body["outputs"][0]["data"] == v1["predictions"]


def test_v2_binary_tensor_extension_both_ways(client: httpx.Client) -> None:
    raw = np.array(SEED_ROWS, dtype="<f4").tobytes()
    header = orjson.dumps(
        {
            "inputs": [
                {"name": "input-0", "shape": [2, 10], "datatype": "FP32", "parameters": {"binary_data_size": len(raw)}}
            ],
            "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}],
        }
    )
    response = client.post(
        V2,
        content=header + raw,
        headers={"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(header))},
    )
    assert response.status_code == 200
    json_length = int(response.headers["inference-header-content-length"])
    meta = orjson.loads(response.content[:json_length])
    assert [o["name"] for o in meta["outputs"]] == ["probabilities"]
    probabilities = np.frombuffer(response.content[json_length:], dtype="<f8").reshape(2, 2)
    v1 = client.post(V1, json={"instances": np.array(SEED_ROWS, dtype="<f4").tolist()}).json()
    np.testing.assert_allclose(probabilities, v1["probabilities"])


def test_v2_metadata_lists_signature_inputs_and_outputs(client: httpx.Client) -> None:
    body = client.get(f"/v2/models/{MODEL_NAME}").json()
    assert body["name"] == MODEL_NAME and body["versions"] == ["1"] and body["platform"] == "mlflow"
    assert body["inputs"] == [
        {"name": "input-0", "datatype": "FP64", "shape": [-1, 10], "parameters": {"feature_names": ",".join(FEATURES)}}
    ]
    assert [o["name"] for o in body["outputs"]] == ["predictions", "probabilities", "contributions"]
    contributions = body["outputs"][2]  # only when a request names it: explanations as a tensor
    assert contributions["shape"] == [-1, 11]
    assert contributions["parameters"] == {"columns": ",".join(("base_value", *FEATURES)), "on_request": True}
    assert None not in body.values()
    assert client.get(f"/v2/models/{MODEL_NAME}/versions/1").json() == body
    assert (
        client.post(
            f"/v2/models/{MODEL_NAME}/versions/1/infer",
            json={"inputs": [{"name": "x", "shape": [1, 10], "datatype": "FP64", "data": SEED_ROWS[0]}]},
        ).status_code
        == 200
    )


def test_errors_are_counted_by_type(client: httpx.Client) -> None:
    from tests.servers import sample, scrape

    labels = {"model_name": MODEL_NAME, "model_version": "1"}
    base = str(client.base_url)
    before = scrape(base)
    client.post(V1, json={"instances": [[1, 2]]})
    client.post(V1, json={"instances": [[1, 2]]})
    after = scrape(base)
    name = "model_prediction_errors_total"
    assert (
        sample(after, name, error_type="bad_request", **labels)
        == sample(before, name, error_type="bad_request", **labels) + 2
    )
    assert sample(after, name, error_type="internal", **labels) == sample(before, name, error_type="internal", **labels)


def test_latency_histogram_resolves_milliseconds(client: httpx.Client) -> None:
    metrics = client.get("/metrics").text
    for bound in ("0.001", "0.005", "0.01", "0.05", "0.1", "0.5", "1.0"):
        assert f'model_prediction_latency_seconds_bucket{{le="{bound}",model_name="{MODEL_NAME}"' in metrics
