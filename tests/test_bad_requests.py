"""Every malformed request gets a 4xx JSON body that says what was wrong — never a 500, 422 or a reset.

One pooled keep-alive connection sends all of them, then a good request: it must still be served on the
same client, proving no error closed the connection.
"""

from __future__ import annotations

import httpx
import orjson
import pytest

from tests.servers import MODEL_NAME, SEED_ROWS, PredictorProcess

V1 = f"/v1/models/{MODEL_NAME}:predict"
V2 = f"/v2/models/{MODEL_NAME}/infer"
JSON = {"Content-Type": "application/json"}
ROW = SEED_ROWS[0]


def tensor(**overrides):
    base = {"name": "input-0", "shape": [1, 10], "datatype": "FP64", "data": ROW}
    base.update(overrides)
    return {"inputs": [base]}


def binary(header: dict, raw: bytes, length: int | None = None) -> tuple[bytes, dict]:
    encoded = orjson.dumps(header)
    return encoded + raw, {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(encoded) if length is None else length),
    }


FP32_ROW = b"\x00" * 40

# (case id, method path, body (bytes or JSON-able), headers, expected status, fragment of the message)
CASES = [
    ("v1 empty body", V1, b"", JSON, 400, "empty request body"),
    ("v1 bad json", V1, b"{not json", JSON, 400, "not valid JSON"),
    ("v1 NaN literal", V1, b'{"instances": [[NaN, 1]]}', JSON, 400, "not valid JSON"),
    ("v1 body is a list", V1, [ROW], JSON, 400, "must be a JSON object"),
    ("v1 missing instances", V1, {"rows": [ROW]}, JSON, 400, 'missing key "instances"'),
    ("v1 instances not a list", V1, {"instances": "abc"}, JSON, 400, "must be a list"),
    ("v1 empty instances", V1, {"instances": []}, JSON, 400, "is empty"),
    ("v1 too few features", V1, {"instances": [ROW[:9]]}, JSON, 400, "has 9 values; the model expects 10"),
    ("v1 too many features", V1, {"instances": [[*ROW, 1]]}, JSON, 400, "has 11 values"),
    (
        "v1 string value",
        V1,
        {"instances": [[*ROW[:3], "hot", *ROW[4:]]]},
        JSON,
        400,
        "column load_ratio (double) needs a number, got 'hot'",
    ),
    ("v1 null value", V1, {"instances": [[None, *ROW[1:]]]}, JSON, 400, "is null"),
    ("v1 nested list value", V1, {"instances": [[[1], *ROW[1:]]]}, JSON, 400, "(double) needs a number, got [1]"),
    ("v1 instance is a number", V1, {"instances": [5]}, JSON, 400, "must be a list of 10 values"),
    ("v1 ragged rows", V1, {"instances": [ROW, ROW[:5]]}, JSON, 400, "instances[1] has 5 values"),
    ("v1 unknown feature key", V1, {"instances": [{"temprature_c": 1}]}, JSON, 400, "unknown keys ['temprature_c']"),
    ("v1 missing feature key", V1, {"instances": [{"temperature_c": 70}]}, JSON, 400, "is missing required columns"),
    ("v1 entity id without store", V1, {"instances": [{"equipment_id": "pump-0001"}]}, JSON, 400, "unknown keys"),
    ("v1 huge number", V1, b'{"instances": [[1e999, 1, 1, 1, 1, 1, 1, 1, 1, 1]]}', JSON, 400, "number is infinity"),
    ("v1 wrong content type", V1, {"instances": [ROW]}, {"Content-Type": "text/plain"}, 415, "Content-Type text/plain"),
    (
        "v1 form post (curl -d without -H)",
        V1,
        b"instances=1",
        {"Content-Type": "application/x-www-form-urlencoded"},
        415,
        "application/json",
    ),
    ("v1 unknown model", "/v1/models/nope:predict", {"instances": [ROW]}, JSON, 404, "not served here"),
    ("v2 bad json", V2, b"[1,", JSON, 400, "not valid JSON"),
    ("v2 no inputs", V2, {"id": "1"}, JSON, 400, '"inputs" must be a non-empty list'),
    ("v2 inputs not a list", V2, {"inputs": {"name": "x"}}, JSON, 400, '"inputs" must be a non-empty list'),
    ("v2 input not an object", V2, {"inputs": [1]}, JSON, 400, "must be an object"),
    (
        "v2 missing datatype",
        V2,
        {"inputs": [{"name": "x", "shape": [1, 10], "data": ROW}]},
        JSON,
        400,
        'missing "datatype"',
    ),
    ("v2 unknown datatype", V2, tensor(datatype="FLOAT"), JSON, 400, "is not a v2 datatype"),
    ("v2 BYTES features", V2, tensor(datatype="BYTES", data=["a"] * 10), JSON, 400, "an [N, F] tensor must be numeric"),
    ("v2 shape vs data mismatch", V2, tensor(shape=[2, 10]), JSON, 400, "needs 20 values, but carries 10"),
    ("v2 wrong width", V2, tensor(shape=[1, 9], data=ROW[:9]), JSON, 400, "send shape [N, 10]"),
    ("v2 negative shape", V2, tensor(shape=[-1, 10]), JSON, 400, "non-negative integers"),
    ("v2 shape not a list", V2, tensor(shape="1x10"), JSON, 400, "must be a list"),
    ("v2 string in data", V2, tensor(data=[*ROW[:9], "x"]), JSON, 400, "must hold only numbers"),
    ("v2 no data", V2, {"inputs": [{"name": "x", "shape": [1, 10], "datatype": "FP64"}]}, JSON, 400, 'has no "data"'),
    ("v2 id not a string", V2, {"id": 7, **tensor()}, JSON, 400, '"id" must be a string'),
    ("v2 unknown output", V2, {**tensor(), "outputs": [{"name": "logits"}]}, JSON, 400, "asks for 'logits'"),
    ("v2 parameters not an object", V2, {**tensor(), "parameters": [1]}, JSON, 400, "must be a JSON object"),
    (
        "v2 unknown feature tensor",
        V2,
        {
            "inputs": [
                {"name": "temperature_c", "shape": [1], "datatype": "FP64", "data": [1]},
                {"name": "colour", "shape": [1], "datatype": "FP64", "data": [1]},
            ]
        },
        JSON,
        400,
        "not columns of this model",
    ),
    ("v2 wrong content type", V2, tensor(), {"Content-Type": "text/csv"}, 415, "Content-Type text/csv"),
    (
        "v2 binary header not a number",
        V2,
        *binary({"inputs": []}, b"", 0)[:1],
        {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": "ten"},
        400,
        "must be an integer",
    ),
    ("v2 binary header longer than body", V2, *binary(tensor(), b"", 10_000), 400, "but the body has"),
    (
        "v2 binary size lies (short)",
        V2,
        *binary(
            {"inputs": [{"name": "x", "shape": [1, 10], "datatype": "FP32", "parameters": {"binary_data_size": 40}}]},
            FP32_ROW[:36],
        ),
        400,
        "binary_data_size is 40 but only 36",
    ),
    (
        "v2 binary size lies (long)",
        V2,
        *binary(
            {"inputs": [{"name": "x", "shape": [1, 10], "datatype": "FP32", "parameters": {"binary_data_size": 40}}]},
            FP32_ROW + b"\x00" * 8,
        ),
        400,
        "8 bytes of binary data that no input claims",
    ),
    (
        "v2 binary size vs shape",
        V2,
        *binary(
            {"inputs": [{"name": "x", "shape": [1, 10], "datatype": "FP64", "parameters": {"binary_data_size": 40}}]},
            FP32_ROW,
        ),
        400,
        "needs 10 values, but carries 5",
    ),
    ("v2 unknown model", "/v2/models/nope/infer", tensor(), JSON, 404, "not served here"),
    ("v2 unknown version", f"/v2/models/{MODEL_NAME}/versions/99/infer", tensor(), JSON, 404, "version '99'"),
    ("repository unload of an unknown model", "/v2/repository/models/nope/unload", {}, JSON, 404, "not served here"),
]


@pytest.fixture(scope="module")
def client(demo_server: PredictorProcess):
    with httpx.Client(base_url=demo_server.http_url, timeout=10, limits=httpx.Limits(max_connections=1)) as http:
        yield http


@pytest.mark.parametrize(
    ("path", "body", "headers", "status", "fragment"), [case[1:] for case in CASES], ids=[case[0] for case in CASES]
)
def test_bad_request_gets_a_clear_4xx(
    client: httpx.Client, path: str, body, headers: dict, status: int, fragment: str
) -> None:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    response = client.post(path, content=content, headers=headers)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    message = response.json()["error"]
    assert fragment in message
    assert "detail" not in response.json()


def test_every_case_names_the_fault_it_expects() -> None:
    """An empty expected fragment would match any message: each case must say what it looks for."""
    assert [case[0] for case in CASES if not case[-1].strip()] == []
    assert len({case[0] for case in CASES}) == len(CASES), "case ids must be unique"


def test_the_connection_survives_every_error(client: httpx.Client) -> None:
    ports = set()

    def remember_port(response: httpx.Response) -> None:
        stream = response.extensions.get("network_stream")
        assert stream is not None, "httpx no longer exposes the connection: this test would prove nothing"
        ports.add(stream.get_extra_info("client_addr"))  # raises OSError if the server closed the socket

    for _, path, body, headers, _, _ in CASES:
        content = body if isinstance(body, bytes) else orjson.dumps(body)
        response = client.post(path, content=content, headers=headers)
        remember_port(response)
        assert response.status_code < 500
    good = client.post(V1, json={"instances": SEED_ROWS})
    remember_port(good)
    assert good.status_code == 200
    assert len(ports) == 1 and None not in ports, f"the server closed the keep-alive connection: {ports}"


def test_oversized_body_is_413(demo_server: PredictorProcess) -> None:
    huge = b'{"instances": [' + b",".join([orjson.dumps(ROW)] * 300_000) + b"]}"  # ~10 MB > 8 MiB
    response = httpx.post(demo_server.http_url + V1, content=huge, headers=JSON, timeout=30)
    assert response.status_code == 413
    assert "exceeds the limit of 8388608 bytes" in response.json()["error"]


def test_too_many_instances_is_413(demo_server: PredictorProcess) -> None:
    response = httpx.post(demo_server.http_url + V1, json={"instances": [ROW] * 10_001}, timeout=30)
    assert response.status_code == 413
    assert "10001 instances in one request; the limit is 10000" in response.json()["error"]


def test_unknown_route_is_json_404(client: httpx.Client) -> None:
    response = client.get("/v3/whatever")
    assert response.status_code == 404 and "error" in response.json()
