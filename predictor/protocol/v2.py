"""Open Inference Protocol over REST: JSON, or JSON followed by raw tensors (the binary tensor extension)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson

from predictor.errors import BadRequest
from predictor.protocol.rows import (
    NUMERIC_DATATYPES,
    Tensor,
    V2Request,
    datatype_of,
    requested_outputs,
    rows_from_tensors,
)
from predictor.protocol.schema import Schema, flatten, kind, object_or_empty, parse_json, show


def decode(body: bytes, header_length: str | None, schema: Schema, outputs: Sequence[str]) -> V2Request:
    if header_length is None:
        return _decode_dict(parse_json(body), b"", schema, outputs)
    try:
        json_length = int(header_length)
    except ValueError as exc:
        raise BadRequest(f"Inference-Header-Content-Length must be an integer, got {header_length!r:.40}") from exc
    if not 0 < json_length <= len(body):
        raise BadRequest(f"Inference-Header-Content-Length is {json_length} but the body has {len(body)} bytes")
    return _decode_dict(parse_json(body[:json_length]), body[json_length:], schema, outputs)


def _decode_dict(payload: Any, raw: bytes, schema: Schema, outputs: Sequence[str]) -> V2Request:
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
        id=request_id or str(uuid.uuid4()),
        binary_outputs=bool(parameters.get("binary_data_output", False)),
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
    elif array.dtype.kind not in "fiub":
        raise BadRequest(
            f"{where}.data must hold only numbers for datatype {datatype}; found "
            f"{show(next((v for v in flatten(data) if not isinstance(v, (int, float))), None))}"
        )
    return array.reshape(-1)


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
