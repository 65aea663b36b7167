"""Stock clients work with no workaround: kserve's InferenceRESTClient (v1, v2) and tritonclient (http, grpc)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import numpy as np
import pytest

from tests.servers import MODEL_NAME, SEED_ROWS, PredictorProcess


@pytest.fixture(scope="module")
def expected(demo_server: PredictorProcess) -> dict:
    import httpx

    return httpx.post(f"{demo_server.http_url}/v1/models/{MODEL_NAME}:predict", json={"instances": SEED_ROWS}).json()


def test_kserve_rest_client_v1(demo_server: PredictorProcess, expected: dict) -> None:
    from kserve import InferenceRESTClient, RESTConfig

    async def session() -> dict:
        async with InferenceRESTClient(RESTConfig(protocol="v1")) as client:
            assert await client.is_server_live(demo_server.http_url)
            assert await client.is_model_ready(demo_server.http_url, MODEL_NAME)
            return await client.infer(demo_server.http_url, {"instances": SEED_ROWS}, model_name=MODEL_NAME)

    assert asyncio.run(session()) == expected


def test_kserve_rest_client_v2(demo_server: PredictorProcess, expected: dict) -> None:
    from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig

    async def session():
        async with InferenceRESTClient(RESTConfig(protocol="v2")) as client:
            assert await client.is_server_ready(demo_server.http_url)
            assert await client.is_model_ready(demo_server.http_url, MODEL_NAME)
            tensor = InferInput("input-0", [2, 10], "FP32")
            tensor.set_data_from_numpy(np.array(SEED_ROWS, dtype=np.float32), binary_data=False)
            json_response = await client.infer(demo_server.http_url, InferRequest(MODEL_NAME, [tensor]), MODEL_NAME)
            binary = InferInput("input-0", [2, 10], "FP32")
            binary.set_data_from_numpy(np.array(SEED_ROWS, dtype=np.float32), binary_data=True)
            binary_response = await client.infer(demo_server.http_url, InferRequest(MODEL_NAME, [binary]), MODEL_NAME)
            return json_response, binary_response

    for response in asyncio.run(session()):
        assert response.model_name == MODEL_NAME and response.id  # (kserve's client drops model_version)
        assert response.get_output_by_name("predictions").as_numpy().tolist() == expected["predictions"]
        np.testing.assert_allclose(
            response.get_output_by_name("probabilities").as_numpy(), expected["probabilities"], rtol=1e-6
        )


def test_tritonclient_http_json_and_binary(demo_server: PredictorProcess, expected: dict) -> None:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(demo_server.http_url.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(MODEL_NAME)
    metadata = client.get_model_metadata(MODEL_NAME)
    assert metadata["inputs"][0]["shape"] == [-1, 10]
    for binary in (False, True):
        tensor = httpclient.InferInput("input-0", [2, 10], "FP64")
        tensor.set_data_from_numpy(np.array(SEED_ROWS, dtype=np.float64), binary_data=binary)
        outputs = [
            httpclient.InferRequestedOutput("predictions", binary_data=binary),
            httpclient.InferRequestedOutput("probabilities", binary_data=binary),
        ]
        result = client.infer(MODEL_NAME, [tensor], outputs=outputs)
        assert result.as_numpy("predictions").tolist() == expected["predictions"]
        np.testing.assert_allclose(result.as_numpy("probabilities"), expected["probabilities"])
    plain = httpclient.InferInput("input-0", [2, 10], "FP32")
    plain.set_data_from_numpy(np.array(SEED_ROWS, dtype=np.float32), binary_data=False)
    assert client.infer(MODEL_NAME, [plain]).as_numpy("predictions").tolist() == expected["predictions"]


# tritonclient.grpc and kserve register the same protobuf symbols: they cannot share a process.
GRPC_SESSION = """
import json, sys
import numpy as np
import tritonclient.grpc as grpcclient
target, model, rows = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
client = grpcclient.InferenceServerClient(target)
assert client.is_server_live() and client.is_model_ready(model)
tensor = grpcclient.InferInput("input-0", [len(rows), 10], "FP64")
tensor.set_data_from_numpy(np.array(rows, dtype=np.float64))
result = client.infer(model, [tensor])
try:
    client.infer(model, [grpcclient.InferInput("input-0", [1, 3], "FP64").set_data_from_numpy(np.ones((1, 3)))])
    error = None
except Exception as exc:
    error = {"status": str(exc.status()), "message": exc.message()}
print(json.dumps({"predictions": result.as_numpy("predictions").tolist(),
                  "probabilities": result.as_numpy("probabilities").tolist(),
                  "version": result.get_response().model_version, "error": error}))
"""


def test_tritonclient_grpc(demo_server: PredictorProcess, expected: dict) -> None:
    done = subprocess.run(
        [sys.executable, "-c", GRPC_SESSION, demo_server.grpc_target, MODEL_NAME, json.dumps(SEED_ROWS)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["predictions"] == expected["predictions"]
    np.testing.assert_allclose(result["probabilities"], expected["probabilities"])
    assert result["version"] == "1"
    assert result["error"]["status"] == "StatusCode.INVALID_ARGUMENT"
    assert "send shape [N, 10]" in result["error"]["message"]
