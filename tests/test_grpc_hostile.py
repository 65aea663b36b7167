"""Hostile gRPC input: each malformed ModelInferRequest gets its code and a message naming the fault, on one
channel that keeps working; and a property-based fuzz of what a client can put in a request never gets
INTERNAL. The gRPC twin of tests/test_bad_requests.py.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

from tests.grpc_calls import infer_request
from tests.servers import MODEL_NAME, SEED_ROWS, PredictorProcess

ROW = SEED_ROWS[0]
Tensor = pb.ModelInferRequest.InferInputTensor
Contents = pb.InferTensorContents


def request(
    *tensors: Tensor,
    model: str = MODEL_NAME,
    version: str = "",
    raw: list[bytes] | None = None,
    outputs: list[str] | None = None,
) -> pb.ModelInferRequest:
    wanted = [pb.ModelInferRequest.InferRequestedOutputTensor(name=name) for name in outputs or []]
    return pb.ModelInferRequest(
        model_name=model, model_version=version, inputs=list(tensors), raw_input_contents=raw or [], outputs=wanted
    )


def fp64(shape: list[int], values: list[float], name: str = "input-0") -> Tensor:
    return Tensor(name=name, datatype="FP64", shape=shape, contents=Contents(fp64_contents=values))


# (case id, request, expected code, fragment of the message)
CASES = [
    (
        "contents in another datatype's field",
        request(Tensor(name="input-0", datatype="FP64", shape=[1, 10], contents=Contents(int64_contents=[1] * 10))),
        grpc.StatusCode.INVALID_ARGUMENT,
        "input-0",
    ),
    ("shape and contents disagree", request(fp64([1, 10], ROW[:5])), grpc.StatusCode.INVALID_ARGUMENT, "input-0"),
    (
        "raw contents of the wrong size",
        request(Tensor(name="input-0", datatype="FP64", shape=[1, 10]), raw=[np.zeros(5).tobytes()]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "input-0",
    ),
    ("too few features", request(fp64([1, 9], ROW[:9])), grpc.StatusCode.INVALID_ARGUMENT, "shape [1, 9]"),
    ("NaN", request(fp64([1, 10], [math.nan, *ROW[1:]])), grpc.StatusCode.INVALID_ARGUMENT, "NaN"),
    ("Infinity", request(fp64([1, 10], [math.inf, *ROW[1:]])), grpc.StatusCode.INVALID_ARGUMENT, "Infinity"),
    (
        "features as BYTES",
        request(Tensor(name="input-0", datatype="BYTES", shape=[1, 10], contents=Contents(bytes_contents=[b"1"] * 10))),
        grpc.StatusCode.INVALID_ARGUMENT,
        "BYTES",
    ),
    ("no inputs at all", request(), grpc.StatusCode.INVALID_ARGUMENT, "input"),
    (
        "an unknown datatype",
        request(Tensor(name="input-0", datatype="FP128", shape=[1, 10])),
        grpc.StatusCode.INVALID_ARGUMENT,
        "FP128",
    ),
    ("an unknown output", request(fp64([1, 10], ROW), outputs=["nope"]), grpc.StatusCode.INVALID_ARGUMENT, "nope"),
    ("an unknown model", request(fp64([1, 10], ROW), model="nope"), grpc.StatusCode.NOT_FOUND, "nope"),
    ("an unknown version", request(fp64([1, 10], ROW), version="99"), grpc.StatusCode.NOT_FOUND, "99"),
    (
        "a message over the limit",
        request(Tensor(name="input-0", datatype="FP64", shape=[2**20, 10]), raw=[bytes(9 * 2**20)]),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "",
    ),
]


@pytest.fixture(scope="module")
def client(demo_server: PredictorProcess) -> Iterator[GRPCInferenceServiceStub]:
    with grpc.insecure_channel(demo_server.grpc_target) as channel:
        yield GRPCInferenceServiceStub(channel)


@pytest.mark.parametrize(
    ("case", "bad", "code", "fragment"),
    [pytest.param(*case, id=case[0]) if type(case) is tuple else case for case in CASES],
)
def test_a_malformed_request_gets_its_code_and_a_message_naming_the_fault(
    client: GRPCInferenceServiceStub, case: str, bad: pb.ModelInferRequest, code: grpc.StatusCode, fragment: str
) -> None:
    with pytest.raises(grpc.RpcError) as failure:
        client.ModelInfer(bad, timeout=30)
    assert failure.value.code() == code, failure.value.details()
    assert fragment in (failure.value.details() or ""), failure.value.details()
    assert (failure.value.details() or "").strip(), "every answer says what was wrong"
    assert client.ModelInfer(infer_request(MODEL_NAME, SEED_ROWS), timeout=30).outputs  # the channel still works


DATATYPES = ["FP64", "FP32", "FP16", "INT64", "INT32", "INT8", "UINT8", "BOOL", "BYTES", "", "fp64", "X"]
NUMBERS = st.floats(allow_nan=True, allow_infinity=True, width=64)


@st.composite
def hostile_requests(draw: st.DrawFn) -> pb.ModelInferRequest:
    tensors = []
    raw: list[bytes] = []
    for index in range(draw(st.integers(0, 3))):
        datatype = draw(st.sampled_from(DATATYPES))
        shape = draw(st.lists(st.integers(-2, 12), max_size=3))
        name = draw(st.sampled_from(["input-0", "temperature_c", "equipment_id", "", f"x{index}"]))
        if draw(st.booleans()):
            raw.append(draw(st.binary(max_size=200)))
            tensors.append(Tensor(name=name, datatype=datatype, shape=shape))
        else:
            values = draw(st.lists(NUMBERS, max_size=25))
            contents = Contents(
                fp64_contents=values, int64_contents=draw(st.lists(st.integers(-(2**63), 2**63 - 1), max_size=5))
            )
            tensors.append(Tensor(name=name, datatype=datatype, shape=shape, contents=contents))
    if raw and len(raw) != len(tensors):
        raw = raw[: len(tensors)]
    return request(*tensors, raw=raw)


@settings(
    max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(bad=hostile_requests())
def test_no_request_a_client_can_build_gets_internal(
    client: GRPCInferenceServiceStub, bad: pb.ModelInferRequest
) -> None:
    try:
        client.ModelInfer(bad, timeout=30)
    except grpc.RpcError as exc:
        assert exc.code() != grpc.StatusCode.INTERNAL, exc.details()
        assert exc.code() in (
            grpc.StatusCode.INVALID_ARGUMENT,
            grpc.StatusCode.NOT_FOUND,
            grpc.StatusCode.RESOURCE_EXHAUSTED,
        ), (exc.code(), exc.details())
