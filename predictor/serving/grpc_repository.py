"""The model-repository extension over gRPC, in the message layout Triton and tritonclient use.

KServe's proto lacks ``RepositoryIndex``, and its ``RepositoryModelLoad/UnloadRequest`` put ``model_name`` in
field 1 where Triton's put ``repository_name`` (its ``model_name`` is field 2): against KServe's servicer,
tritonclient's ``unload_model`` names no model at all. The three messages Triton defines are declared here in
a descriptor pool of their own (tritonclient and KServe cannot share a process: their protos clash), and
``RepositoryIndex`` is served by a generic handler beside KServe's service. A load or unload request is read
in both layouts: Triton's ``model_name`` (field 2) when set, else KServe's (field 1).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

SERVICE = "inference.GRPCInferenceService"
_STRING, _BOOL, _MESSAGE = (
    descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
    descriptor_pb2.FieldDescriptorProto.TYPE_BOOL,
    descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE,
)
_OPTIONAL, _REPEATED = (
    descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
    descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED,
)


def _message(
    file: descriptor_pb2.FileDescriptorProto, name: str, fields: list[tuple[str, int, int, str | None, int]]
) -> descriptor_pb2.DescriptorProto:
    message = file.message_type.add(name=name)
    for field_name, number, kind, type_name, label in fields:
        spec = message.field.add(name=field_name, number=number, type=kind, label=label)
        if type_name:
            spec.type_name = type_name
    return message


def _classes() -> dict[str, Any]:
    file = descriptor_pb2.FileDescriptorProto(name="predictor/triton_repository.proto", package="inference")
    _message(
        file,
        "RepositoryIndexRequest",
        [("repository_name", 1, _STRING, None, _OPTIONAL), ("ready", 2, _BOOL, None, _OPTIONAL)],
    )
    model_index_type = ".inference.RepositoryIndexResponse.ModelIndex"
    index = _message(file, "RepositoryIndexResponse", [("models", 1, _MESSAGE, model_index_type, _REPEATED)])
    model_index = index.nested_type.add(name="ModelIndex")
    for number, field_name in enumerate(("name", "version", "state", "reason"), start=1):
        model_index.field.add(name=field_name, number=number, type=_STRING, label=_OPTIONAL)
    _message(
        file,
        "RepositoryModelRequest",
        [("repository_name", 1, _STRING, None, _OPTIONAL), ("model_name", 2, _STRING, None, _OPTIONAL)],
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    names = ("RepositoryIndexRequest", "RepositoryIndexResponse", "RepositoryModelRequest")
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"inference.{name}")) for name in names}


MESSAGES = _classes()
IndexRequest = MESSAGES["RepositoryIndexRequest"]
IndexResponse = MESSAGES["RepositoryIndexResponse"]
TritonModelRequest = MESSAGES["RepositoryModelRequest"]  # Triton's load and unload requests share this layout


def model_name_of(request: Any) -> str:
    """The model a load/unload request names, in Triton's layout or KServe's."""
    triton = TritonModelRequest.FromString(request.SerializeToString())
    return str(triton.model_name or request.model_name)


def index_handler(index: Callable[[], list[dict[str, str]]]) -> grpc.GenericRpcHandler:
    """``RepositoryIndex`` beside KServe's service (the door's interceptor sees it like every other method)."""

    async def repository_index(request: Any, context: Any) -> Any:
        entries = index()
        if request.ready:
            entries = [entry for entry in entries if entry["state"] == "READY"]
        return IndexResponse(models=[IndexResponse.ModelIndex(**entry) for entry in entries])

    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "RepositoryIndex": grpc.unary_unary_rpc_method_handler(
                repository_index,
                request_deserializer=IndexRequest.FromString,
                response_serializer=IndexResponse.SerializeToString,
            )
        },
    )
