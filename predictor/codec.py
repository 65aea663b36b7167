"""Request bodies ↔ arrays, checked against the model's feature names.

v1: ``{"instances": [...]}`` (or ``"inputs"``), each instance a list in signature order or an object keyed
by feature name; with a feature store, an object may carry the entity id and any features to override.
v2 (Open Inference Protocol): one FP32/FP64 tensor ``[N, F]``, or one ``[N]``/``[N, 1]`` tensor per
feature, and/or a BYTES tensor named after the entity key. Every rejection says what was wrong and how
to send it instead; nothing here raises anything but ``BadRequest``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from predictor.errors import BadRequest, PayloadTooLarge

# scikit-learn's trees compare in float32: a larger finite value would overflow inside the model.
MAX_MAGNITUDE = float(np.finfo(np.float32).max)
NUMERIC_DATATYPES = {
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "BOOL": np.bool_,
}
OUTPUT_NAMES = ("predictions", "probabilities")


@dataclass(frozen=True)
class Schema:
    """What a request must match: the model's features (and the entity key when Feast is on)."""

    feature_names: tuple[str, ...]
    entity_key: str | None = None
    max_instances: int = 10_000

    @property
    def width(self) -> int:
        return len(self.feature_names)

    def expected(self) -> str:
        return f"{self.width} features in this order: {', '.join(self.feature_names)}"


@dataclass
class Rows:
    """Decoded rows. ``values`` holds NaN where a feature must come from the feature store."""

    values: np.ndarray  # float64 [N, F]
    entity_ids: list[str | None] | None = None  # per row; None when no row names an entity

    @property
    def count(self) -> int:
        return int(self.values.shape[0])


@dataclass
class V2Request:
    """The parts of a v2 request that shape its response."""

    rows: Rows
    id: str
    binary_outputs: bool = False
    requested: dict[str, bool | None] = field(default_factory=dict)  # output name -> binary_data, if asked


def parse_json(body: bytes) -> Any:
    if not body.strip():
        raise BadRequest('empty request body: send JSON such as {"instances": [[...features...]]}')
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(
            f"body is not valid JSON ({exc.msg} at character {exc.pos}); NaN and Infinity are "
            "not JSON: send null-free finite numbers"
        ) from exc


# ---------------------------------------------------------------------------------------------- v1


def decode_v1(payload: Any, schema: Schema) -> Rows:
    if not isinstance(payload, dict):
        raise BadRequest(f'body must be a JSON object like {{"instances": [[...]]}}, got a JSON {_kind(payload)}')
    key = "instances" if "instances" in payload else "inputs" if "inputs" in payload else None
    if key is None:
        raise BadRequest(f'missing key "instances": send {{"instances": [[...], ...]}} with {schema.expected()}')
    instances = payload[key]
    if not isinstance(instances, list):
        raise BadRequest(f'"{key}" must be a list of instances, got a JSON {_kind(instances)}')
    _check_count(len(instances), schema, key)
    fast = _as_matrix(instances, schema.width)
    if fast is not None:
        return Rows(fast)
    values = np.full((len(instances), schema.width), np.nan)
    entity_ids: list[str | None] = [None] * len(instances)
    for i, instance in enumerate(instances):
        where = f"{key}[{i}]"
        if isinstance(instance, list):
            values[i] = _number_list(instance, schema, where)
        elif isinstance(instance, dict):
            entity_ids[i] = _keyed_instance(instance, schema, values[i], where)
        else:
            raise BadRequest(
                f"{where} must be a list of {schema.width} numbers or an object keyed by feature "
                f"name, got a JSON {_kind(instance)}"
            )
    return Rows(values, entity_ids if any(e is not None for e in entity_ids) else None)


def encode_v1(
    predictions: np.ndarray,
    probabilities: np.ndarray | None,
    model_name: str,
    version: str,
    filled: dict[int, list[str]] | None = None,
) -> dict[str, Any]:
    response: dict[str, Any] = {"predictions": predictions.tolist()}
    if probabilities is not None:
        response["probabilities"] = probabilities.tolist()
    response["model_name"] = model_name
    response["model_version"] = version
    if filled:
        response["filled_features"] = {str(row): names for row, names in sorted(filled.items())}
    return response


def _as_matrix(instances: list[Any], width: int) -> np.ndarray | None:
    """The fast path: a clean list of equal-length numeric lists becomes one array without a Python loop."""
    try:
        array = np.asarray(instances)
    except (ValueError, TypeError):
        return None
    if array.ndim != 2 or array.shape[1] != width or array.dtype.kind not in "fiub":
        return None
    array = array.astype(np.float64, copy=False)
    if not (np.abs(array) <= MAX_MAGNITUDE).all():  # also False for NaN and ±inf
        return None  # the slow path names the offending value
    return array


def _number_list(instance: list[Any], schema: Schema, where: str) -> list[float]:
    if len(instance) != schema.width:
        raise BadRequest(f"{where} has {len(instance)} values; the model expects {schema.expected()}")
    pairs = zip(instance, schema.feature_names, strict=True)
    return [_number(value, f"{where}[{j}] ({name})") for j, (value, name) in enumerate(pairs)]


def _keyed_instance(instance: dict[str, Any], schema: Schema, out: np.ndarray, where: str) -> str | None:
    unknown = [k for k in instance if k not in schema.feature_names and k != schema.entity_key]
    if unknown:
        hint = f" or {schema.entity_key}" if schema.entity_key else ""
        raise BadRequest(f"{where} has unknown keys {unknown}; expected {schema.expected()}{hint}")
    for j, name in enumerate(schema.feature_names):
        if name in instance:
            out[j] = _number(instance[name], f"{where}.{name}")
    entity_id = instance.get(schema.entity_key) if schema.entity_key else None
    if entity_id is not None:
        if not isinstance(entity_id, str) or not entity_id or len(entity_id) > 256:
            raise BadRequest(f"{where}.{schema.entity_key} must be a non-empty string id, got {_show(entity_id)}")
        return entity_id
    missing = [name for j, name in enumerate(schema.feature_names) if np.isnan(out[j])]
    if missing:
        hint = f" (or send {schema.entity_key} to fetch them from the feature store)" if schema.entity_key else ""
        raise BadRequest(f"{where} is missing features {missing}{hint}")
    return None


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        number = float(value)
        if not abs(number) <= MAX_MAGNITUDE:
            raise BadRequest(
                f"{where} is {value}: NaN, Infinity and magnitudes beyond {MAX_MAGNITUDE:.3g} are not accepted"
            )
        return number
    if value is None:
        raise BadRequest(f"{where} is null: send a number")
    raise BadRequest(f"{where} is {_show(value)} (a JSON {_kind(value)}); every feature must be a number")


# ---------------------------------------------------------------------------------------------- v2


@dataclass(frozen=True)
class Tensor:
    name: str
    datatype: str
    shape: list[int]
    array: np.ndarray  # flat; BYTES tensors hold Python str objects


def decode_v2_rest(body: bytes, header_length: str | None, schema: Schema) -> V2Request:
    """A v2 REST body: plain JSON, or JSON followed by raw tensors (the binary tensor extension)."""
    if header_length is None:
        return _decode_v2_dict(parse_json(body), b"", schema)
    try:
        json_length = int(header_length)
    except ValueError as exc:
        raise BadRequest(f"Inference-Header-Content-Length must be an integer, got {header_length!r:.40}") from exc
    if not 0 < json_length <= len(body):
        raise BadRequest(f"Inference-Header-Content-Length is {json_length} but the body has {len(body)} bytes")
    return _decode_v2_dict(parse_json(body[:json_length]), body[json_length:], schema)


def _decode_v2_dict(payload: Any, raw: bytes, schema: Schema) -> V2Request:
    if not isinstance(payload, dict):
        raise BadRequest(f'body must be a JSON object with "inputs", got a JSON {_kind(payload)}')
    inputs = payload.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise BadRequest(
            '"inputs" must be a non-empty list of tensors like '
            f'{{"name": "input-0", "shape": [N, {schema.width}], "datatype": "FP64", "data": [...]}}'
        )
    request_id = payload.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise BadRequest(f'"id" must be a string, got a JSON {_kind(request_id)}')
    parameters = _object(payload.get("parameters"), '"parameters"')
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
        requested=_requested_outputs(payload.get("outputs")),
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
        raise BadRequest(f"{where}.shape must be a list of non-negative integers, got {_show(shape)}")
    if not isinstance(datatype, str) or (datatype not in NUMERIC_DATATYPES and datatype != "BYTES"):
        raise BadRequest(f"{where}.datatype {_show(datatype)} is not a v2 datatype; use FP32 or FP64 for features")
    expected = int(np.prod(shape)) if shape else 1
    parameters = _object(spec.get("parameters"), f"{where}.parameters")
    if "data" in spec:
        array = _json_data(spec["data"], datatype, where)
        used = 0
    elif "binary_data_size" in parameters:
        size = parameters["binary_data_size"]
        if not isinstance(size, int) or isinstance(size, bool) or size < 0 or size > len(raw):
            raise BadRequest(
                f"{where}.parameters.binary_data_size is {_show(size)} but only {len(raw)} bytes of binary data remain"
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
        flat = _flatten(data)
        if not all(isinstance(v, str) for v in flat):
            raise BadRequest(f"{where} is BYTES: every element must be a string")
        return np.asarray(flat, dtype=object)
    try:
        array = np.asarray(data)
    except ValueError as exc:
        raise BadRequest(f"{where}.data is ragged: nested lists must all have the same length") from exc
    if array.dtype.kind not in "fiub":
        raise BadRequest(
            f"{where}.data must hold only numbers for datatype {datatype}; found "
            f"{_show(next((v for v in _flatten(data) if not isinstance(v, (int, float))), None))}"
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
        return np.asarray(items, dtype=object)
    dtype = np.dtype(NUMERIC_DATATYPES[datatype]).newbyteorder("<")
    if len(chunk) % dtype.itemsize:
        raise BadRequest(f"{where}: binary_data_size {len(chunk)} is not a multiple of {dtype.itemsize} ({datatype})")
    return np.frombuffer(chunk, dtype=dtype)


def rows_from_tensors(tensors: Sequence[Tensor], schema: Schema) -> Rows:
    """One [N, F] tensor, or one tensor per feature, and optionally the entity-id BYTES tensor."""
    ids = next((t for t in tensors if schema.entity_key and t.name == schema.entity_key), None)
    numeric = [t for t in tensors if t is not ids]
    for tensor in numeric:
        if tensor.datatype == "BYTES":
            hint = f" (only {schema.entity_key} may be BYTES)" if schema.entity_key else ""
            raise BadRequest(f"input {tensor.name} is BYTES; features must be FP32 or FP64{hint}")
    rows = None if ids is None else len(ids.array)
    if len(numeric) == 1 and numeric[0].name not in schema.feature_names:
        values = _matrix_tensor(numeric[0], schema)
    elif numeric:
        values = _column_tensors(numeric, schema, rows)
    elif ids is not None:
        values = np.full((len(ids.array), schema.width), np.nan)
    else:
        raise BadRequest("no inputs")
    _check_count(values.shape[0], schema, "inputs")
    present = values[~np.isnan(values)] if ids is not None else values
    if not (np.abs(present) <= MAX_MAGNITUDE).all():
        raise BadRequest(f"inputs hold NaN, Infinity or magnitudes beyond {MAX_MAGNITUDE:.3g}: send finite numbers")
    if ids is None:
        return Rows(values)  # NaN was refused just above: only rows with an entity id may leave gaps
    if len(ids.array) != values.shape[0] or len(ids.shape) > 2:
        raise BadRequest(f"{schema.entity_key} has {len(ids.array)} ids but the features have {values.shape[0]} rows")
    return Rows(values, [str(v) for v in ids.array])


def _matrix_tensor(tensor: Tensor, schema: Schema) -> np.ndarray:
    shape = tensor.shape
    if len(shape) == 1 and shape[0] == schema.width:
        shape = [1, schema.width]
    if len(shape) != 2 or shape[1] != schema.width:
        raise BadRequest(
            f"input {tensor.name} has shape {tensor.shape}; send shape [N, {schema.width}] with "
            f"{schema.expected()} (or one [N] tensor per feature, named after it)"
        )
    return tensor.array.astype(np.float64).reshape(shape)


def _column_tensors(tensors: Sequence[Tensor], schema: Schema, rows: int | None) -> np.ndarray:
    by_name = {t.name: t for t in tensors}
    unknown = [name for name in by_name if name not in schema.feature_names]
    if unknown:
        raise BadRequest(f"inputs {unknown} are not features of this model; expected {schema.expected()}")
    missing = [name for name in schema.feature_names if name not in by_name]
    if missing and rows is None:
        raise BadRequest(f"missing inputs {missing}; send one [N] tensor per feature or one [N, {schema.width}] tensor")
    lengths = {t.array.size for t in tensors} | ({rows} if rows is not None else set())
    if len(lengths) != 1:
        raise BadRequest(f"feature tensors disagree on the number of rows: {sorted(lengths)}")
    count = lengths.pop()
    values = np.full((count, schema.width), np.nan)
    for j, name in enumerate(schema.feature_names):
        if name in by_name:
            values[:, j] = by_name[name].array.astype(np.float64)
    return values


def _requested_outputs(outputs: Any) -> dict[str, bool | None]:
    if outputs is None:
        return {}
    if not isinstance(outputs, list):
        raise BadRequest('"outputs" must be a list like [{"name": "probabilities"}]')
    requested: dict[str, bool | None] = {}
    for i, spec in enumerate(outputs):
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise BadRequest(f'outputs[{i}] must be an object with a "name"')
        if spec["name"] not in OUTPUT_NAMES:
            raise BadRequest(f"outputs[{i}] asks for {spec['name']!r:.60}; this model has {list(OUTPUT_NAMES)}")
        binary = _object(spec.get("parameters"), f"outputs[{i}].parameters").get("binary_data")
        requested[spec["name"]] = None if binary is None else bool(binary)
    return requested


# ------------------------------------------------------------------------------------------ helpers


def datatype_of(array: np.ndarray) -> str:
    kind = array.dtype.kind
    if kind == "b":
        return "BOOL"
    if kind in "iu":
        return "INT64"
    if kind == "f":
        return "FP64"
    return "BYTES"


def _check_count(count: int, schema: Schema, key: str) -> None:
    if count == 0:
        raise BadRequest(f'"{key}" is empty: send at least one instance with {schema.expected()}')
    if count > schema.max_instances:
        raise PayloadTooLarge(
            f"{count} instances in one request; the limit is {schema.max_instances} "
            "(split the request, or raise --max_instances)"
        )


def _object(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest(f"{where} must be a JSON object")
    return value


def _flatten(data: list[Any]) -> list[Any]:
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:  # iterative: a deeply nested body must not exhaust the recursion limit
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            flat.append(item)
        else:
            stack.pop()
    return flat


def _kind(value: Any) -> str:
    return {
        dict: "object",
        list: "array",
        str: "string",
        bool: "boolean",
        type(None): "null",
        int: "number",
        float: "number",
    }.get(type(value), type(value).__name__)


def _show(value: Any) -> str:
    """A short rendering of a client's value for an error message (never fails, whatever the value)."""
    if isinstance(value, str):
        text = repr(value[:80])
    else:
        try:
            text = orjson.dumps(value, default=str).decode()
        except (orjson.JSONEncodeError, TypeError, RecursionError):  # nested deeper than orjson writes
            text = f"a deeply nested JSON {_kind(value)}"
    return text if len(text) <= 60 else text[:57] + "..."


def encode_v2_rest(
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
        if (request.binary_outputs if binary is None else binary) and datatype != "BYTES":
            chunk = np.ascontiguousarray(array, dtype=_wire_dtype(datatype)).tobytes()
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


def _wire_dtype(datatype: str) -> np.dtype[Any]:
    return np.dtype(NUMERIC_DATATYPES[datatype]).newbyteorder("<")
