"""A plain gRPC client of the Open Inference Protocol (the official protos, as KServe ships them)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import grpc
import numpy as np
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub


@contextmanager
def stub(target: str, credentials: grpc.ChannelCredentials | None = None) -> Iterator[GRPCInferenceServiceStub]:
    channel = grpc.secure_channel(target, credentials) if credentials else grpc.insecure_channel(target)
    try:
        yield GRPCInferenceServiceStub(channel)
    finally:
        channel.close()


def infer_request(model: str, rows: Sequence[Sequence[float]], name: str = "input-0") -> pb.ModelInferRequest:
    array = np.asarray(rows, dtype=np.float64)
    tensor = pb.ModelInferRequest.InferInputTensor(
        name=name,
        datatype="FP64",
        shape=list(array.shape),
        contents=pb.InferTensorContents(fp64_contents=array.ravel()),
    )
    return pb.ModelInferRequest(model_name=model, inputs=[tensor])


def bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


def code_of(call: object) -> tuple[grpc.StatusCode, str]:
    """Run ``call()``; return the status code and message it failed with (OK and "" if it did not)."""
    try:
        call()  # type: ignore[operator]
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""
