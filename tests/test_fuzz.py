"""Hostile input against the running server: a bounded schemathesis pass and a hand-written list.

The fuzz pass reads the server's own /openapi.json and, per operation, sends schema-valid (positive) and
schema-violating (negative) requests drawn by Hypothesis with a fixed seed (``derandomize``), so CI sees
the same cases every run. (Hypothesis also mixes in literals from the project modules imported so far, so
running a subset with ``-k`` may draw a few different values; the same selection always draws the same.)
Every response must be no 5xx, a documented status code and content type, a body matching the documented
schema, and on 4xx a JSON ``{"error": "..."}``; a schema-valid v1 body must be served (200).

The admin POSTs (rollback, reload) change what the shared server serves, so they are never fuzzed.
"""

from __future__ import annotations

import json
import re
import socket
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.configuration import set_hypothesis_home_dir
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.generation.feedback import NO_FEEDBACK
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.servers import MODEL_NAME, SEED_ROWS, PredictorProcess

# Hypothesis keeps caches in ./.hypothesis by default; tests never write into the source tree.
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "predictor-hypothesis")

V1 = f"/v1/models/{MODEL_NAME}:predict"
V2 = f"/v2/models/{MODEL_NAME}/infer"
JSON = {"Content-Type": "application/json"}
ROW = SEED_ROWS[0]

# operation → (positive, negative) examples. Operations without parameters have no negative form.
BODY, PATH, BARE = (100, 100), (25, 25), (3, 0)
FUZZED = {
    "GET /health": BARE,
    "GET /health/live": BARE,
    "GET /ready": BARE,
    "GET /health/ready": BARE,
    "GET /v2/health/live": BARE,
    "GET /v2/health/ready": BARE,
    "GET /metrics": BARE,
    "GET /admin/versions": BARE,
    "GET /v1/models/{model_name}": PATH,
    "POST /v1/models/{model_name}:predict": BODY,
    "GET /v2/models/{model_name}": PATH,
    "GET /v2/models/{model_name}/ready": PATH,
    "POST /v2/models/{model_name}/infer": BODY,
    "GET /v2/models/{model_name}/versions/{model_version}": PATH,
    "GET /v2/models/{model_name}/versions/{model_version}/ready": PATH,
    "POST /v2/models/{model_name}/versions/{model_version}/infer": (50, 50),
    "POST /admin/webhook/mlflow": (25, 25),  # no secret on the shared server: every body must be a clean 4xx
    "POST /invocations": BODY,
    "GET /ping": BARE,
    "POST /v1/models/{model_name}:explain": (50, 50),  # ~30 ms per explained row: fewer cases
    "GET /admin/drift": BARE,
    "GET /admin/shadow": BARE,
}
NOT_FUZZED = {"POST /admin/rollback", "POST /admin/reload"}

FUZZ_SETTINGS = settings(
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.generate],
    print_blob=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)


def error_json_on_4xx(ctx: Any, response: schemathesis.Response, case: schemathesis.Case) -> None:
    if 400 <= response.status_code < 500:
        body = response.json()
        assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"], (
            f'a {response.status_code} must carry {{"error": "..."}}, got {response.text[:200]}'
        )


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    error_json_on_4xx,
]


@pytest.fixture(scope="module")
def schema(demo_server: PredictorProcess) -> Any:
    loaded = schemathesis.openapi.from_url(f"{demo_server.http_url}/openapi.json", timeout=10)
    labels = {operation.ok().label for operation in loaded.get_all_operations()}
    if "POST /v2/repository/models/{model_name}/unload" in labels or "GET /" in labels:
        pytest.fail(
            "GET /openapi.json serves FastAPI's default document: install_openapi is not wired in predictor/server.py"
        )
    assert labels == set(FUZZED) | NOT_FUZZED, (
        "the served document's operations changed: update FUZZED; "
        f"extra {labels - set(FUZZED) - NOT_FUZZED}, missing {(set(FUZZED) | NOT_FUZZED) - labels}"
    )
    return loaded


@pytest.fixture(scope="module")
def tally(request: pytest.FixtureRequest) -> Iterator[Counter[str]]:
    counts: Counter[str] = Counter()
    yield counts
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None and counts:
        statuses = ", ".join(f"{key}: {n}" for key, n in sorted(counts.items()) if key != "cases")
        with capture.global_and_fixture_disabled():  # the figure belongs in the run's output, not a capture
            reporter.write_line(f"\nfuzz pass: {counts['cases']} cases over {len(FUZZED)} operations ({statuses})")


@pytest.mark.parametrize("label", list(FUZZED))
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
def test_fuzz(
    schema: Any, demo_server: PredictorProcess, tally: Counter[str], label: str, mode: GenerationMode
) -> None:
    examples = FUZZED[label][0 if mode.is_positive else 1]
    if not examples:
        pytest.skip(f"{label} takes no input to get wrong")
    operation = schema.find_operation_by_label(label)
    ready = httpx.get(f"{demo_server.http_url}/ready", timeout=10).json()
    # Fix the path unless it is the target (negative GETs), so body cases reach the codec rather than a 404.
    fixed = {"model_name": MODEL_NAME, "model_version": ready["model_version"]}
    fix_path = mode.is_positive or operation.method.upper() == "POST"
    path_parameters = {name: fixed[name] for name in re.findall(r"{(\w+)}", operation.path)} if fix_path else {}
    session = requests.Session()  # keep-alive, as a pooled client would send them

    # No runtime feedback: what earlier responses taught schemathesis would make the cases depend on test order.
    strategy = operation.as_strategy(
        generation_mode=mode, path_parameters=path_parameters or None, feedback=NO_FEEDBACK
    )

    @settings(FUZZ_SETTINGS, max_examples=examples)
    @given(case=strategy)
    def run(case: schemathesis.Case) -> None:
        response = case.call(base_url=demo_server.http_url, session=session, timeout=30)
        tally["cases"] += 1
        tally[str(response.status_code)] += 1
        case.validate_response(response, checks=CHECKS)
        if mode.is_positive and label == "POST /v1/models/{model_name}:predict":
            # The v1 schema is exact: whatever it allows, the server must serve.
            assert response.status_code == 200, f"a schema-valid v1 body was refused: {response.text[:300]}"

    run()
    assert demo_server.alive(), demo_server.log()


# ---------------------------------------------------------------------------------- hand-written hostiles


def nested(depth: int, leaf: str = "1") -> bytes:
    return ("[" * depth + leaf + "]" * depth).encode()


def v2_body(**overrides: Any) -> dict[str, Any]:
    tensor = {"name": "input-0", "shape": [1, 10], "datatype": "FP64", "data": ROW}
    tensor.update(overrides)
    return {"inputs": [tensor]}


def binary(header: Any, raw: bytes, length: Any = None) -> tuple[bytes, dict[str, str]]:
    encoded = header if isinstance(header, bytes) else json.dumps(header).encode()  # json: ints past 64 bits too
    return encoded + raw, {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(encoded) if length is None else length),
    }


def fp32_header(binary_data_size: Any = 40) -> dict[str, Any]:
    return {
        "inputs": [
            {
                "name": "input-0",
                "shape": [1, 10],
                "datatype": "FP32",
                "parameters": {"binary_data_size": binary_data_size},
            }
        ]
    }


FP32_HEADER = fp32_header()
ROW_FP32 = b"\x00\x00\x80\x3f" * 10  # ten 1.0f

WRONG_TYPES: list[Any] = [None, True, 0, -1.5, "x", [], {}, [None], {"a": 1}]
# Values of WRONG_TYPES that are right where they go: the server accepts them, as it should.
ACCEPTED: dict[str, list[Any]] = {
    "v1 feature": [True, 0, -1.5],  # booleans are numbers to the model (0/1 alarm features)
    "v2 id": [None, "x"],
    "v2 parameters": [None, {}, {"a": 1}],
    "v2 outputs": [None, []],
    "v2 tensor.name": ["x"],  # one tensor not named after a feature is the [N, F] matrix
    "v2 tensor.parameters": [None, {}, {"a": 1}],
}


def wrong_type_cases() -> Iterator[tuple[str, str, Any, dict[str, str]]]:
    for value in WRONG_TYPES:
        cases = [
            ("v1 body", V1, value),
            ("v1 instances", V1, {"instances": value}),
            ("v1 instance", V1, {"instances": [value]}),
            ("v1 feature", V1, {"instances": [[value, *ROW[1:]]]}),
            ("v2 body", V2, value),
            ("v2 input", V2, {"inputs": [value]}),
            ("v2 output", V2, {**v2_body(), "outputs": [value]}),
        ]
        cases += [(f"v2 {key}", V2, {**v2_body(), key: value}) for key in ("inputs", "id", "parameters", "outputs")]
        cases += [
            (f"v2 tensor.{key}", V2, v2_body(**{key: value}))
            for key in ("name", "shape", "datatype", "data", "parameters")
        ]
        for where, path, body in cases:
            if not any(type(ok) is type(value) and ok == value for ok in ACCEPTED.get(where, [])):
                yield f"{where} {value!r}", path, body, JSON


HOSTILE: list[tuple[str, str, Any, dict[str, Any], tuple[int, ...]]] = [
    # nesting: past orjson's depth limit, and within it where a list of numbers is expected
    ("v1 100k nested lists", V1, nested(100_000), JSON, (400,)),
    ("v1 100k nested objects", V1, b'{"a":' * 100_000 + b"1" + b"}" * 100_000, JSON, (400,)),
    ("v2 100k nested lists", V2, nested(100_000), JSON, (400,)),
    ("v1 instances nested 500 deep", V1, b'{"instances": ' + nested(500) + b"}", JSON, (400,)),
    (
        "v2 data nested 500 deep",
        V2,
        b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": ' + nested(500) + b"}]}",
        JSON,
        (400,),
    ),
    ("v1 feature nested 300 deep", V1, b'{"instances": [[' + nested(300) + b", 1" * 9 + b"]]}", JSON, (400,)),
    (
        "v1 feature object nested 300 deep",
        V1,
        b'{"instances": [{"temperature_c": ' + nested(300) + b"}]}",
        JSON,
        (400,),
    ),
    (
        "v2 shape nested 300 deep",
        V2,
        b'{"inputs": [{"name": "x", "shape": [' + nested(300) + b'], "datatype": "FP64", "data": [1]}]}',
        JSON,
        (400,),
    ),
    (
        "v2 BYTES data nested 500 deep",
        V2,
        b'{"inputs": [{"name": "x", "shape": [1], "datatype": "BYTES", "data": ' + nested(500, '"a"') + b"}]}",
        JSON,
        (400,),
    ),
    # numbers
    ("v1 1e999", V1, b'{"instances": [[1e999' + b", 1" * 9 + b"]]}", JSON, (400,)),
    ("v1 10k-digit integer", V1, b'{"instances": [[' + b"9" * 10_000 + b", 1" * 9 + b"]]}", JSON, (400,)),
    ("v1 -0 and denormals", V1, {"instances": [[-0.0, 5e-324, *ROW[2:]]]}, JSON, (200,)),
    ("v2 shape that overflows int64", V2, v2_body(shape=[2**62 + 1, 4, 10]), JSON, (400,)),
    (
        "v2 shape beyond uint64",
        V2,
        b'{"inputs": [{"name": "x", "shape": [1' + b"0" * 30 + b', 10], "datatype": "FP64", "data": [1]}]}',
        JSON,
        (400,),
    ),
    ("v2 shape of 10k dims", V2, v2_body(shape=[1] * 10_000), JSON, (400,)),
    ("too many instances", V1, {"instances": [ROW] * 10_001}, JSON, (413,)),
    # unicode junk
    ("invalid UTF-8 in v1", V1, b'{"instances": [["\xff\xfe\xfd"]]}', JSON, (400,)),
    (
        "invalid UTF-8 in v2",
        V2,
        b'{"inputs": [{"name": "\xc3\x28", "shape": [1], "datatype": "FP64", "data": [1]}]}',
        JSON,
        (400,),
    ),
    ("lone surrogate", V1, b'{"instances": [["\\ud800"]]}', JSON, (400,)),
    ("NUL and RTL marks as feature names", V1, {"instances": [{"\x00": 1, "\u202e": 2}]}, JSON, (400,)),
    ("UTF-16 body", V1, '{"instances": [[1]]}'.encode("utf-16"), JSON, (400,)),
    ("BOM then JSON", V1, b"\xef\xbb\xbf" + orjson.dumps({"instances": [ROW]}), JSON, (400,)),  # orjson: no BOM
    ("emoji model name", "/v1/models/%F0%9F%92%A9:predict", {"instances": [ROW]}, JSON, (404,)),
    ("NUL in model name", "/v2/models/%00/infer", v2_body(), JSON, (404,)),
    (
        "Content-Type with junk parameters",
        V1,
        {"instances": [ROW]},
        {"Content-Type": b"application/json; charset=\xe9\xff; ;;=="},
        (200,),
    ),
    # binary extension header lies
    ("header length 0", V2, *binary(FP32_HEADER, ROW_FP32, 0), (400,)),
    ("header length negative", V2, *binary(FP32_HEADER, ROW_FP32, -5), (400,)),
    ("header length past the body", V2, *binary(FP32_HEADER, ROW_FP32, 10**6), (400,)),
    ("header length not a number", V2, *binary(FP32_HEADER, ROW_FP32, "forty"), (400,)),
    ("header length of 40 digits", V2, *binary(FP32_HEADER, ROW_FP32, "9" * 40), (400,)),
    ("header length inside the JSON", V2, *binary(FP32_HEADER, ROW_FP32, 10), (400,)),
    (
        "header length swallowing the tensor",
        V2,
        *binary(FP32_HEADER, ROW_FP32, len(orjson.dumps(FP32_HEADER)) + 40),
        (400,),
    ),
    ("binary_data_size past the data", V2, *binary(FP32_HEADER, ROW_FP32[:20]), (400,)),
    ("binary_data_size not a multiple", V2, *binary(fp32_header(39), ROW_FP32[:39]), (400,)),
    ("binary_data_size negative", V2, *binary(fp32_header(-40), ROW_FP32), (400,)),
    ("binary_data_size huge", V2, *binary(fp32_header(2**70), ROW_FP32), (400,)),
    ("binary_data_size a string", V2, *binary(fp32_header("40"), ROW_FP32), (400,)),
    ("unclaimed binary bytes", V2, *binary(FP32_HEADER, ROW_FP32 + b"junk"), (400,)),
    ("binary NaN and Inf", V2, *binary(FP32_HEADER, b"\x00\x00\xc0\x7f" * 5 + b"\x00\x00\x80\x7f" * 5), (400,)),
    (
        "binary BYTES length prefix lies",
        V2,
        *binary(
            {"inputs": [{"name": "input-0", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 8}}]},
            b"\xff\xff\xff\x7fabcd",
        ),
        (400,),
    ),
    (
        "binary BYTES invalid UTF-8",
        V2,
        *binary(
            {"inputs": [{"name": "input-0", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 6}}]},
            b"\x02\x00\x00\x00\xff\xfe",
        ),
        (400,),
    ),
    ("binary header that is not JSON", V2, *binary(b"\x00" * 16, ROW_FP32), (400,)),
    (
        "binary body, JSON content type",
        V2,
        binary(FP32_HEADER, ROW_FP32)[0],
        {"Content-Type": "application/json", "Inference-Header-Content-Length": "3"},
        (400,),
    ),
    (
        "binary body without the header",
        V2,
        binary(FP32_HEADER, ROW_FP32)[0],
        {"Content-Type": "application/octet-stream"},
        (415,),
    ),
    # sizes
    (
        "9 MB body",
        V1,
        b'{"instances": [' + b"[1,1,1,1,1,1,1,1,1,1]," * 400_000 + b"[1,1,1,1,1,1,1,1,1,1]]}",
        JSON,
        (413,),
    ),
    *((label, path, body, headers, (400,)) for label, path, body, headers in wrong_type_cases()),
]


@pytest.fixture(scope="module")
def client(demo_server: PredictorProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=demo_server.http_url, timeout=30) as shared:
        yield shared


def send(client: httpx.Client, path: str, body: Any, headers: dict[str, Any]) -> httpx.Response:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return client.post(path, content=content, headers=headers)


@pytest.mark.parametrize(
    ("path", "body", "headers", "expected"), [case[1:] for case in HOSTILE], ids=[case[0] for case in HOSTILE]
)
def test_hostile_request_is_a_clear_4xx(
    client: httpx.Client,
    demo_server: PredictorProcess,
    path: str,
    body: Any,
    headers: dict[str, Any],
    expected: tuple[int, ...],
) -> None:
    response = send(client, path, body, headers)
    assert response.status_code in expected, response.text[:300]
    if response.status_code >= 400:
        error = response.json()["error"]
        assert isinstance(error, str) and error
    assert response.headers.get("connection", "").lower() != "close", "the error dropped the keep-alive connection"
    assert demo_server.alive(), demo_server.log()


def test_a_content_length_lie_is_a_413_before_the_body_is_read(demo_server: PredictorProcess) -> None:
    # httpx refuses to send a wrong Content-Length, so this one goes over a raw socket.
    body = orjson.dumps({"instances": [ROW]})
    with socket.create_connection(("127.0.0.1", demo_server.http_port), timeout=10) as sock:
        sock.sendall(
            f"POST {V1} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            f"Content-Length: {10**12}\r\n\r\n".encode()
            + body
        )
        received = b""
        while b"\r\n\r\n" not in received or not received.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    head, _, answer = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), received[:300]
    assert orjson.loads(answer)["error"]
    assert demo_server.alive()


def test_the_server_still_serves_on_the_same_connection_afterwards(
    client: httpx.Client, demo_server: PredictorProcess
) -> None:
    assert send(client, V1, {"instances": [{"\x00": 1}]}, JSON).status_code == 400
    response = send(client, V1, {"instances": SEED_ROWS}, JSON)
    assert response.status_code == 200, response.text
    assert demo_server.alive()


@pytest.mark.parametrize(
    ("path", "body"),
    [(V1, {"instances": [[1e39, *ROW[1:]]]}), (V2, v2_body(data=[-1e300, *ROW[1:]]))],
    ids=["v1", "v2"],
)
def test_a_number_beyond_float32_is_a_400(client: httpx.Client, path: str, body: Any) -> None:
    # Finite in JSON, but the model compares in float32: it would overflow there (it once made a 500).
    response = send(client, path, body, JSON)
    assert response.status_code == 400, response.text
    assert "beyond" in response.json()["error"]
