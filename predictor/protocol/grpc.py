"""The Open Inference Protocol over gRPC: ``ModelInferRequest`` ↔ rows, and outputs → ``ModelInferResponse``.

KServe's ``InferRequest``/``InferResponse`` read and write the protobuf tensors (typed contents, raw contents).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

from predictor.errors import BadRequest
from predictor.protocol.codec import Decoded, Result
from predictor.protocol.rows import DATATYPES, Tensor, V2Request, datatype_of, requested_outputs, rows_from_tensors
from predictor.protocol.schema import Schema


class GrpcCodec:
    """``inference.GRPCInferenceService/ModelInfer``."""

    name = "grpc"

    def decode(self, raw: pb.ModelInferRequest, schema: Schema, outputs: Sequence[str]) -> Decoded:
        raw_count = len(raw.raw_input_contents)
        if raw_count and raw_count != len(raw.inputs):
            raise BadRequest(f"{len(raw.inputs)} inputs but {raw_count} raw_input_contents: send one per input")
        for tensor in raw.inputs:
            if raw_count and tensor.HasField("contents"):
                raise BadRequest(f"input {tensor.name!r:.60} has contents as well as raw_input_contents: send one")
            if tensor.datatype not in DATATYPES:
                raise BadRequest(
                    f"input {tensor.name!r:.60} has datatype {tensor.datatype!r:.20}, which is not an Open "
                    f"Inference Protocol datatype ({', '.join(DATATYPES)})"
                )
        try:
            request = InferRequest.from_grpc(raw)  # type: ignore[operator]  # shadowed by a bool attribute
        except Exception as exc:  # kserve raises plain errors for contents it cannot read
            raise BadRequest(f"the request's tensors cannot be read: {exc}") from exc
        decoded = decode(request, schema, outputs)
        return Decoded(decoded.rows, decoded.id, decoded.requested, params=decoded.params)

    def encode(self, decoded: Decoded, result: Result) -> pb.ModelInferResponse:
        assert decoded.request_id is not None  # decode always sets one
        request = V2Request(decoded.rows, decoded.request_id, requested=decoded.requested)
        response = encode(request, result.outputs, result.model_name, result.version)
        return response.to_grpc()


def decode(request: InferRequest, schema: Schema, outputs: Sequence[str]) -> V2Request:
    tensors = []
    for i, tensor in enumerate(request.inputs):
        try:
            array = tensor.as_numpy()
        except Exception as exc:  # kserve raises plain errors for malformed contents
            raise BadRequest(f"inputs[{i}] ({tensor.name}) cannot be read as {tensor.datatype}: {exc}") from exc
        if tensor.datatype == "BYTES":
            text = np.empty(array.size, dtype=object)
            try:
                text[:] = [v.decode() if isinstance(v, bytes) else str(v) for v in array.reshape(-1)]
            except UnicodeDecodeError as exc:
                raise BadRequest(f"inputs[{i}] ({tensor.name}): a BYTES element is not UTF-8") from exc
            array = text
        expected = int(np.prod(tensor.shape)) if tensor.shape else 1
        if array.size != expected:
            raise BadRequest(
                f"inputs[{i}] ({tensor.name}) has shape {list(tensor.shape)} but carries {array.size} values"
            )
        tensors.append(Tensor(tensor.name, tensor.datatype, list(tensor.shape), array.reshape(-1)))
    if not tensors:
        raise BadRequest("the request has no inputs")
    asked = [{"name": o.name} for o in request.request_outputs or []]
    return V2Request(
        rows_from_tensors(tensors, schema),
        request.id or str(uuid.uuid4()),
        requested=requested_outputs(asked or None, outputs),
        params={name: _parameter(value) for name, value in request.parameters.items()} if request.parameters else None,
    )


def _parameter(value: Any) -> Any:
    """An ``InferParameter``'s value (bool, int64 or string: the protocol has no floating-point field)."""
    field = value.WhichOneof("parameter_choice") if isinstance(value, pb.InferParameter) else None
    return getattr(value, field) if field else value


def encode(request: V2Request, outputs: dict[str, np.ndarray], model_name: str, version: str) -> InferResponse:
    names = list(request.requested) or list(outputs)
    return InferResponse(
        response_id=request.id,
        model_name=model_name,
        model_version=version,
        infer_outputs=[_output(name, outputs[name]) for name in names],
    )


def _output(name: str, array: np.ndarray) -> InferOutput:
    datatype = datatype_of(array)
    if datatype == "BYTES":  # kserve serialises BYTES from an object array of bytes
        array = np.asarray([str(v).encode() for v in array.reshape(-1)], dtype=object).reshape(array.shape)
    return InferOutput(name, list(array.shape), datatype, data=array)
