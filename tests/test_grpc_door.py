"""gRPC goes through the same door as REST: tokens, rate limits, size limits, and the same error classes
answered with their gRPC codes — on the real server, with a real gRPC client, on a channel that keeps working.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

from tests.grpc_calls import bearer, code_of, infer_request, stub
from tests.servers import MODEL_NAME, SEED_ROWS, PredictorProcess, start_predictor

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def guarded(tracking_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PredictorProcess]:
    """Auth on, 4 KiB bodies, at most 5 rows per request."""
    logs = tmp_path_factory.mktemp("grpc-door")
    server = start_predictor(
        tracking_uri, logs, "--max_body_bytes", "4096", "--max_instances", "5", env={"PREDICTOR_AUTH_TOKENS": TOKEN}
    )
    try:
        yield server.wait_ready()
    finally:
        server.stop()


def error_count(server: PredictorProcess, error_type: str) -> float:
    text = httpx.get(f"{server.http_url}/metrics", timeout=5).text
    prefix = "model_prediction_errors_total{"
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(prefix) and f'error_type="{error_type}"' in line
    )


def test_inference_needs_the_same_bearer_token_as_rest(guarded: PredictorProcess) -> None:
    before = error_count(guarded, "unauthorized")
    with stub(guarded.grpc_target) as client:
        request = infer_request(MODEL_NAME, SEED_ROWS)
        assert code_of(lambda: client.ModelInfer(request, timeout=10))[0] == grpc.StatusCode.UNAUTHENTICATED
        wrong = code_of(lambda: client.ModelInfer(request, metadata=bearer("wrong"), timeout=10))
        assert wrong[0] == grpc.StatusCode.UNAUTHENTICATED and "wrong" not in wrong[1]  # never echoes a token
        answer = client.ModelInfer(request, metadata=bearer(TOKEN), timeout=10)
    rest = httpx.post(
        f"{guarded.http_url}/v1/models/{MODEL_NAME}:predict",
        json={"instances": SEED_ROWS},
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    ).json()
    predictions = next(o for o in answer.outputs if o.name == "predictions")
    assert list(predictions.shape) == [2] and answer.model_version == rest["model_version"]
    assert error_count(guarded, "unauthorized") == before + 2


def test_probes_metadata_and_health_stay_open_like_their_rest_twins(guarded: PredictorProcess) -> None:
    with stub(guarded.grpc_target) as client:
        assert client.ServerReady(pb.ServerReadyRequest(), timeout=10).ready
        assert client.ModelReady(pb.ModelReadyRequest(name=MODEL_NAME), timeout=10).ready
        metadata = client.ModelMetadata(pb.ModelMetadataRequest(name=MODEL_NAME), timeout=10)
    rest = httpx.get(f"{guarded.http_url}/v2/models/{MODEL_NAME}", timeout=10).json()
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.inputs] == [
        (t["name"], t["datatype"], t["shape"]) for t in rest["inputs"]
    ]
    assert list(metadata.versions) == rest["versions"]
    with grpc.insecure_channel(guarded.grpc_target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        status = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10).status
        assert status == health_pb2.HealthCheckResponse.SERVING
        unknown = code_of(lambda: health.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=10))
        assert unknown[0] == grpc.StatusCode.NOT_FOUND


def test_size_limits_bound_grpc_messages_and_the_channel_keeps_working(guarded: PredictorProcess) -> None:
    with stub(guarded.grpc_target) as client:
        huge = infer_request(MODEL_NAME, [SEED_ROWS[0]] * 100)  # 8 KB of features: over --max_body_bytes
        assert code_of(lambda: client.ModelInfer(huge, metadata=bearer(TOKEN), timeout=10))[0] == (
            grpc.StatusCode.RESOURCE_EXHAUSTED
        )
        six = infer_request(MODEL_NAME, [SEED_ROWS[0]] * 6)  # small, but over --max_instances 5
        code, message = code_of(lambda: client.ModelInfer(six, metadata=bearer(TOKEN), timeout=10))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "the limit is 5" in message
        assert client.ModelInfer(infer_request(MODEL_NAME, SEED_ROWS), metadata=bearer(TOKEN), timeout=10).outputs


def test_errors_come_back_with_the_code_of_their_class_and_a_message_naming_the_fault(
    guarded: PredictorProcess,
) -> None:
    with stub(guarded.grpc_target) as client:
        call = client.ModelInfer
        unknown_model = code_of(lambda: call(infer_request("nope", SEED_ROWS), metadata=bearer(TOKEN), timeout=10))
        assert unknown_model[0] == grpc.StatusCode.NOT_FOUND and "nope" in unknown_model[1]
        narrow = code_of(lambda: call(infer_request(MODEL_NAME, [[1.0, 2.0]]), metadata=bearer(TOKEN), timeout=10))
        assert narrow[0] == grpc.StatusCode.INVALID_ARGUMENT and "shape [1, 2]" in narrow[1]


def test_the_model_repository_is_guarded_like_its_rest_routes(guarded: PredictorProcess) -> None:
    with stub(guarded.grpc_target) as client:
        unload = pb.RepositoryModelUnloadRequest(model_name=MODEL_NAME)
        assert code_of(lambda: client.RepositoryModelUnload(unload, timeout=10))[0] == grpc.StatusCode.UNAUTHENTICATED
        assert client.RepositoryModelUnload(unload, metadata=bearer(TOKEN), timeout=10).isUnloaded
        gone = code_of(lambda: client.ModelInfer(infer_request(MODEL_NAME, SEED_ROWS), metadata=bearer(TOKEN)))
        assert gone[0] == grpc.StatusCode.NOT_FOUND and "is unloaded" in gone[1]
        load = pb.RepositoryModelLoadRequest(model_name=MODEL_NAME)
        assert code_of(lambda: client.RepositoryModelLoad(load, timeout=10))[0] == grpc.StatusCode.UNAUTHENTICATED
        assert client.RepositoryModelLoad(load, metadata=bearer(TOKEN), timeout=120).isLoaded
        assert client.ModelInfer(infer_request(MODEL_NAME, SEED_ROWS), metadata=bearer(TOKEN), timeout=30).outputs


def test_the_rate_limit_applies_to_grpc_per_client(tracking_uri: str, tmp_path: Path) -> None:
    server = start_predictor(
        tracking_uri,
        tmp_path,
        "--rate_limit_rps",
        "0.01",
        "--rate_limit_burst",
        "2",
        env={"PREDICTOR_AUTH_TOKENS": f"{TOKEN},other-token"},
    )
    try:
        server.wait_ready()
        with stub(server.grpc_target) as client:
            request = infer_request(MODEL_NAME, SEED_ROWS)
            codes = [
                code_of(lambda: client.ModelInfer(request, metadata=bearer(TOKEN), timeout=10))[0] for _ in range(3)
            ]
            assert codes == [grpc.StatusCode.OK, grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED]
            # another client (its own token) still has its own burst
            assert client.ModelInfer(request, metadata=bearer("other-token"), timeout=10).outputs
    finally:
        server.stop()
