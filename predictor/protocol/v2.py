"""Open Inference Protocol over REST: JSON, or JSON followed by raw tensors (the binary tensor extension)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from predictor.errors import BadRequest
from predictor.protocol.codec import JSON_TYPES, Decoded, Description, DocumentContext, Reply, RestRequest, Result
from predictor.protocol.document import BINARY, BOOLEAN, FEATURE, JSON, STRING, Json, obj, ref
from predictor.protocol.rows import (
    DATATYPES,
    NUMERIC_DATATYPES,
    Tensor,
    V2Request,
    datatype_of,
    requested_outputs,
    rows_from_tensors,
)
from predictor.protocol.schema import Schema, flatten, kind, object_or_empty, parse_json, show

if TYPE_CHECKING:
    from predictor.models.registry import LoadedModel

BINARY_HEADER = "inference-header-content-length"  # the binary tensor extension's JSON length


class V2Codec:
    """``POST /v2/models/NAME[/versions/V]/infer``: JSON, or JSON followed by raw tensors."""

    name = "v2"
    media_types: tuple[str, ...] = JSON_TYPES
    expects = "a JSON InferenceRequest (or the binary tensor extension with its Inference-Header-Content-Length)"
    binary_header: str | None = BINARY_HEADER

    def decode(self, raw: RestRequest, schema: Schema, outputs: Sequence[str]) -> Decoded:
        caller_id = raw.headers.get("x-request-id")  # the answer's id, the logs' and the payload events' alike
        request = decode(raw.body, raw.headers.get(BINARY_HEADER), schema, outputs, caller_id)
        return Decoded(request.rows, request.id, request.requested, request.binary_outputs, request.params)

    def encode(self, decoded: Decoded, result: Result) -> Reply:
        assert decoded.request_id is not None  # decode always sets one
        request = V2Request(decoded.rows, decoded.request_id, decoded.binary_outputs, decoded.requested)
        body, headers = encode(request, result.outputs, result.model_name, result.version)
        return Reply(body, tuple(headers.items()))

    def describe(self, context: DocumentContext) -> Description:
        header = {
            "name": "Inference-Header-Content-Length",
            "in": "header",
            "required": False,
            "schema": {"type": "integer", "minimum": 0},
            "description": f"Binary tensor extension: the length of the JSON header that starts an {BINARY} body; "
            "the raw tensors follow it.",
        }
        return Description(REQUEST_BODY, RESPONSE, schemas(), (header,))


def decode(
    body: bytes, header_length: str | None, schema: Schema, outputs: Sequence[str], caller_id: str | None = None
) -> V2Request:
    """``caller_id``: the request id when the body has none (the caller's X-Request-Id), else a new one."""
    if header_length is None:
        return _decode_dict(parse_json(body), b"", schema, outputs, caller_id)
    try:
        json_length = int(header_length)
    except ValueError as exc:
        raise BadRequest(f"Inference-Header-Content-Length must be an integer, got {header_length!r:.40}") from exc
    if not 0 < json_length <= len(body):
        raise BadRequest(f"Inference-Header-Content-Length is {json_length} but the body has {len(body)} bytes")
    return _decode_dict(parse_json(body[:json_length]), body[json_length:], schema, outputs, caller_id)


def _decode_dict(
    payload: Any, raw: bytes, schema: Schema, outputs: Sequence[str], caller_id: str | None = None
) -> V2Request:
    if not isinstance(payload, dict):
        raise BadRequest(f'body must be a JSON object with "inputs", got a JSON {kind(payload)}')
    inputs = payload.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise BadRequest(
            '"inputs" must be a non-empty list of tensors like '
            f'{{"name": "input-0", "shape": [N, {schema.width}], "datatype": "FP64", "data": [...]}}'
        )
    request_id = payload.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise BadRequest(f'"id" must be a string, got a JSON {kind(request_id)}')
    parameters = object_or_empty(payload.get("parameters"), '"parameters"')
    tensors, offset = [], 0
    for i, spec in enumerate(inputs):
        tensor, used = _tensor_from_json(spec, raw[offset:], f"inputs[{i}]")
        tensors.append(tensor)
        offset += used
    if offset != len(raw):
        raise BadRequest(
            f"the body carries {len(raw) - offset} bytes of binary data that no input claims "
            "(check each input's binary_data_size)"
        )
    return V2Request(
        rows=rows_from_tensors(tensors, schema),
        id=request_id or caller_id or str(uuid.uuid4()),
        binary_outputs=bool(parameters.get("binary_data_output", False)),
        params=parameters or None,
        requested=requested_outputs(payload.get("outputs"), outputs),
    )


def _tensor_from_json(spec: Any, raw: bytes, where: str) -> tuple[Tensor, int]:
    if not isinstance(spec, dict):
        raise BadRequest(f"{where} must be an object with name, shape, datatype and data")
    for key in ("name", "shape", "datatype"):
        if key not in spec:
            raise BadRequest(f'{where} is missing "{key}"')
    name, shape, datatype = spec["name"], spec["shape"], spec["datatype"]
    if not isinstance(name, str):
        raise BadRequest(f"{where}.name must be a string")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise BadRequest(f"{where}.shape must be a list of non-negative integers, got {show(shape)}")
    if not isinstance(datatype, str) or (datatype not in NUMERIC_DATATYPES and datatype != "BYTES"):
        raise BadRequest(f"{where}.datatype {show(datatype)} is not a v2 datatype (FP64, INT64, BOOL, BYTES, ...)")
    expected = int(np.prod(shape)) if shape else 1
    parameters = object_or_empty(spec.get("parameters"), f"{where}.parameters")
    if "data" in spec:
        array = _json_data(spec["data"], datatype, where)
        used = 0
    elif "binary_data_size" in parameters:
        size = parameters["binary_data_size"]
        if not isinstance(size, int) or isinstance(size, bool) or size < 0 or size > len(raw):
            raise BadRequest(
                f"{where}.parameters.binary_data_size is {show(size)} but only {len(raw)} bytes of binary data remain"
            )
        array, used = _binary_data(raw[:size], datatype, where), size
    else:
        raise BadRequest(f'{where} has no "data" (nor binary_data_size for the binary extension)')
    if array.size != expected:
        raise BadRequest(f"{where} ({name}) has shape {shape}, which needs {expected} values, but carries {array.size}")
    return Tensor(name, datatype, shape, array), used


def _json_data(data: Any, datatype: str, where: str) -> np.ndarray:
    if not isinstance(data, list):
        data = [data]
    if datatype == "BYTES":
        flat = flatten(data)
        if not all(isinstance(v, str) for v in flat):
            raise BadRequest(f"{where} is BYTES: every element must be a string")
        out = np.empty(len(flat), dtype=object)
        out[:] = flat
        return out
    try:
        array = np.asarray(data)
    except ValueError as exc:
        raise BadRequest(f"{where}.data is ragged: nested lists must all have the same length") from exc
    if datatype == "BOOL":
        if array.dtype.kind != "b":
            raise BadRequest(f"{where} is BOOL: every element must be true or false")
    elif array.dtype.kind == "O" and all(v is None or _number(v) for v in flatten(data)):
        array = np.asarray(data, dtype=np.float64)  # a null is a missing value (NaN), as on v1 and /invocations
    elif array.dtype.kind not in "fiub":
        raise BadRequest(
            f"{where}.data must hold only numbers for datatype {datatype}; found "
            f"{show(next((v for v in flatten(data) if not isinstance(v, (int, float))), None))}"
        )
    return array.reshape(-1)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _binary_data(chunk: bytes, datatype: str, where: str) -> np.ndarray:
    if datatype == "BYTES":
        items, pos = [], 0
        while pos < len(chunk):
            if pos + 4 > len(chunk):
                raise BadRequest(f"{where}: truncated BYTES element length prefix")
            length = int.from_bytes(chunk[pos : pos + 4], "little")
            pos += 4
            if pos + length > len(chunk):
                raise BadRequest(f"{where}: a BYTES element claims {length} bytes past the end of its data")
            try:
                items.append(chunk[pos : pos + length].decode("utf-8"))
            except UnicodeDecodeError as exc:
                raise BadRequest(f"{where}: BYTES element is not UTF-8") from exc
            pos += length
        out = np.empty(len(items), dtype=object)
        out[:] = items
        return out
    dtype = np.dtype(NUMERIC_DATATYPES[datatype]).newbyteorder("<")
    if len(chunk) % dtype.itemsize:
        raise BadRequest(f"{where}: binary_data_size {len(chunk)} is not a multiple of {dtype.itemsize} ({datatype})")
    return np.frombuffer(chunk, dtype=dtype)


def encode(
    request: V2Request, outputs: dict[str, np.ndarray], model_name: str, version: str
) -> tuple[bytes, dict[str, str]]:
    """The v2 REST response body (JSON, or JSON + raw tensors when binary output was asked for)."""
    names = list(request.requested) or list(outputs)
    described, raw = [], []
    for name in names:
        array = outputs[name]
        datatype = datatype_of(array)
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        binary = request.requested.get(name)
        if request.binary_outputs if binary is None else binary:
            chunk = _bytes_elements(array) if datatype == "BYTES" else _numeric_bytes(array, datatype)
            entry["parameters"] = {"binary_data_size": len(chunk)}
            raw.append(chunk)
        else:
            entry["data"] = array.reshape(-1).tolist()
        described.append(entry)
    header = orjson.dumps({"id": request.id, "model_name": model_name, "model_version": version, "outputs": described})
    if not raw:
        return header, {"content-type": "application/json"}
    return header + b"".join(raw), {
        "content-type": "application/octet-stream",
        "inference-header-content-length": str(len(header)),
    }


def _numeric_bytes(array: np.ndarray, datatype: str) -> bytes:
    return np.ascontiguousarray(array, dtype=np.dtype(NUMERIC_DATATYPES[datatype]).newbyteorder("<")).tobytes()


def _bytes_elements(array: np.ndarray) -> bytes:
    # The binary extension's BYTES layout: each element a 4-byte little-endian length, then its bytes.
    parts = []
    for value in array.reshape(-1).tolist():
        data = value if isinstance(value, bytes) else str(value).encode()
        parts.append(len(data).to_bytes(4, "little") + data)
    return b"".join(parts)


# ------------------------------------------------------------------------------------ model metadata


def server_metadata() -> Json:
    """``GET /v2`` (and gRPC ``ServerMetadata``)."""
    from importlib import metadata

    try:
        version = metadata.version("predictive-maintenance-predictor")
    except metadata.PackageNotFoundError:
        version = "0+unknown"
    return {"name": "predictor", "version": version, "extensions": ["binary_tensor_data", "model_repository"]}


def model_metadata(name: str, versions: list[str], schema: Schema, model: LoadedModel) -> Json:
    """``GET /v2/models/NAME`` (and gRPC ``ModelMetadata``): what the model takes and answers, as OIP tensors."""
    return {
        "name": name,
        "versions": versions,
        "platform": "mlflow",
        "inputs": input_metadata(schema),
        "outputs": output_metadata(model),
    }


def input_metadata(schema: Schema) -> list[Json]:
    """One [N, F] tensor when every column is numeric, one [N] tensor per column when not all are doubles
    (both when both fit)."""
    inputs: list[Json] = []
    if schema.numeric:
        inputs.append(
            {
                "name": "input-0",
                "datatype": "FP64",
                "shape": [-1, schema.width],
                "parameters": {"feature_names": ",".join(schema.feature_names)},
            }
        )
    if not schema.tensor and not all(c.type == "double" for c in schema.columns):
        inputs += [
            {
                "name": c.name,
                "datatype": c.datatype,
                "shape": [-1],
                "parameters": {"type": c.type, "required": c.required},
            }
            for c in schema.columns
        ]
    return inputs


def output_metadata(model: LoadedModel) -> list[Json]:
    classes = model.classes
    label_type = datatype_of(classes) if classes is not None else "FP64"
    types = model.output_types or {"predictions": label_type, "probabilities": "FP64"}
    outputs: list[Json] = []
    for name in model.output_names:
        shape = [-1, len(classes)] if name == "probabilities" and classes is not None else [-1]
        outputs.append({"name": name, "datatype": types.get(name, "FP64"), "shape": shape})
    if classes is not None:  # only when a request names it in "outputs"
        outputs.append(
            {
                "name": "contributions",
                "datatype": "FP64",
                "shape": [-1, 1 + len(model.columns)],
                "parameters": {"columns": ",".join(("base_value", *model.feature_names)), "on_request": True},
            }
        )
    return outputs


# ------------------------------------------------------------------------------------ the OpenAPI document

REQUEST_BODY: Json = {
    "required": True,
    "content": {
        JSON: {"schema": ref("InferenceRequest")},
        BINARY: {
            "schema": {
                "type": "string",
                "format": "binary",
                "description": (
                    "Binary tensor extension: a JSON InferenceRequest of Inference-Header-Content-Length bytes, "
                    "whose inputs give parameters.binary_data_size instead of data, followed by the raw "
                    "little-endian tensors."
                ),
            }
        },
    },
}
RESPONSE: Json = {
    "description": "Predictions.",
    "content": {
        JSON: {"schema": ref("InferenceResponse")},
        BINARY: {
            "schema": {
                "type": "string",
                "format": "binary",
                "description": "When binary output was asked for: the JSON response header, then the raw tensors.",
            }
        },
    },
    "headers": {
        "Inference-Header-Content-Length": {
            "description": "Length of the JSON header (binary responses only).",
            "schema": {"type": "integer"},
        }
    },
}


def schemas() -> dict[str, Json]:
    scalar = {"anyOf": [FEATURE, STRING, BOOLEAN]}
    # OIP's tensor_data is recursive; two levels of nesting cover row-major [N, F] data and keep generators finite.
    tensor_data = {
        "type": "array",
        "items": {
            "anyOf": [scalar, {"type": "array", "items": {"anyOf": [scalar, {"type": "array", "items": scalar}]}}]
        },
    }
    parameters = {"type": "object", "description": "Free-form parameters (OIP)."}
    binary_size = {"type": "object", "properties": {"binary_data_size": {"type": "integer", "minimum": 0}}}
    shape = {"type": "array", "items": {"type": "integer", "minimum": 0}}
    return {
        "TensorData": tensor_data,
        "Parameters": parameters,
        "MetadataTensor": obj(
            {
                "name": STRING,
                "datatype": {"enum": list(DATATYPES)},
                "shape": {"type": "array", "items": {"type": "integer", "minimum": -1}},
                "parameters": ref("Parameters"),
            },
            "name",
            "datatype",
            "shape",
        ),
        "MetadataModelResponse": obj(
            {
                "name": STRING,
                "versions": {"type": "array", "items": STRING},
                "platform": STRING,
                "inputs": {"type": "array", "items": ref("MetadataTensor")},
                "outputs": {"type": "array", "items": ref("MetadataTensor")},
            },
            "name",
            "platform",
            "inputs",
            "outputs",
        ),
        "RequestInput": obj(
            {
                "name": STRING,
                "shape": shape,
                "datatype": {"enum": list(DATATYPES)},
                "parameters": {
                    **binary_size,
                    "description": "binary_data_size: bytes of this tensor in the binary "
                    "part of the body (binary extension).",
                },
                "data": ref("TensorData"),
            },
            "name",
            "shape",
            "datatype",
            description="One FP32/FP64 tensor [N, F], or one [N] tensor per feature named "
            "after it; data, or binary_data_size with the binary extension.",
        ),
        "RequestOutput": obj(
            {
                "name": {
                    **STRING,
                    "description": "An output the model's metadata lists: predictions (or the name its output "
                    "schema gives it), probabilities, contributions, or a DataFrame answer's columns.",
                },
                "parameters": {"type": "object", "properties": {"binary_data": BOOLEAN}},
            },
            "name",
        ),
        "InferenceRequest": obj(
            {
                "id": STRING,
                "parameters": {"type": "object", "properties": {"binary_data_output": BOOLEAN}},
                "inputs": {"type": "array", "items": ref("RequestInput"), "minItems": 1},
                "outputs": {"type": "array", "items": ref("RequestOutput")},
            },
            "inputs",
        ),
        "ResponseOutput": obj(
            {
                "name": STRING,
                "shape": {"type": "array", "items": {"type": "integer"}},
                "datatype": {"enum": list(DATATYPES)},
                "parameters": binary_size,
                "data": {"type": "array"},
            },
            "name",
            "shape",
            "datatype",
        ),
        "InferenceResponse": obj(
            {
                "id": STRING,
                "model_name": STRING,
                "model_version": STRING,
                "parameters": ref("Parameters"),
                "outputs": {"type": "array", "items": ref("ResponseOutput")},
            },
            "id",
            "model_name",
            "model_version",
            "outputs",
        ),
    }
