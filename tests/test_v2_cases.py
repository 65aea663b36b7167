"""Open Inference Protocol over REST (``predictor.protocol.v2`` and the tensor rules of ``rows``), case by case:
what each body becomes, and the exact message a wrong one gets. JSON and the binary tensor extension."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest

from predictor.errors import BadRequest, PayloadTooLarge
from predictor.protocol import v2
from predictor.protocol.codec import RestRequest
from predictor.protocol.rows import OUTPUT_NAMES, V2Request
from predictor.protocol.schema import Column, Schema
from tests.protocol_schemas import ENTITY, MIXED, NUMERIC, NUMERIC_COLUMNS

NAN = float("nan")
ONE = Schema((Column("a", "double"),))


def tensor(name: Any, shape: Any, datatype: Any, data: Any = None, **parameters: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": name, "shape": shape, "datatype": datatype}
    if data is not None:
        spec["data"] = data
    if parameters:
        spec["parameters"] = parameters
    return spec


def decode(payload: Any, schema: Schema = NUMERIC, raw: bytes = b"") -> V2Request:
    header = orjson.dumps(payload)
    return v2.decode(header + raw, str(len(header)) if raw else None, schema, OUTPUT_NAMES)


ROW = tensor("x", [1, 3], "FP64", [1, 2, 3])
TENSOR_LIKE = '{"name": "input-0", "shape": [N, 3], "datatype": "FP64", "data": [...]}'
SEND_MATRIX = f"send shape [N, 3] with {NUMERIC_COLUMNS} (or one [N] tensor per column, named after it)"
NOT_A_NUMBER = "inputs[0].shape must be a list of non-negative integers, got "
MIXED_TENSORS = [
    tensor("x", [1], "FP64", [1.5]),
    tensor("n", [1], "INT64", [2]),
    tensor("i", [1], "INT32", [3]),
    tensor("flag", [1], "BOOL", [True]),
    tensor("s", [1], "BYTES", ["s"]),
    tensor("t", [1], "BYTES", ["2024-05-01"]),
    tensor("blob", [1], "BYTES", ["hi"]),
]

REJECTED: list[tuple[str, Any, Schema, str]] = [
    ("array body", [1], NUMERIC, 'body must be a JSON object with "inputs", got a JSON array'),
    ("no inputs", {"id": "x"}, NUMERIC, f'"inputs" must be a non-empty list of tensors like {TENSOR_LIKE}'),
    ("empty inputs", {"inputs": []}, NUMERIC, f'"inputs" must be a non-empty list of tensors like {TENSOR_LIKE}'),
    ("number id", {"inputs": [ROW], "id": 5}, NUMERIC, '"id" must be a string, got a JSON number'),
    ("parameters a list", {"inputs": [ROW], "parameters": [1]}, NUMERIC, '"parameters" must be a JSON object'),
    (
        "tensor a number",
        {"inputs": [ROW, 5]},
        NUMERIC,
        "inputs[1] must be an object with name, shape, datatype and data",
    ),
    (
        "no name",
        {"inputs": [{"shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]}]},
        NUMERIC,
        'inputs[0] is missing "name"',
    ),
    (
        "no shape",
        {"inputs": [{"name": "x", "datatype": "FP64", "data": [1, 2, 3]}]},
        NUMERIC,
        'inputs[0] is missing "shape"',
    ),
    (
        "no datatype",
        {"inputs": [{"name": "x", "shape": [1, 3], "data": [1, 2, 3]}]},
        NUMERIC,
        'inputs[0] is missing "datatype"',
    ),
    ("number name", {"inputs": [tensor(1, [1, 3], "FP64", [1, 2, 3])]}, NUMERIC, "inputs[0].name must be a string"),
    ("negative dimension", {"inputs": [tensor("x", [1, -3], "FP64", [1, 2, 3])]}, NUMERIC, NOT_A_NUMBER + "[1,-3]"),
    (
        "true as a dimension",
        {"inputs": [tensor("x", [True, 3], "FP64", [1, 2, 3])]},
        NUMERIC,
        NOT_A_NUMBER + "[true,3]",
    ),
    ("shape a string", {"inputs": [tensor("x", "13", "FP64", [1, 2, 3])]}, NUMERIC, NOT_A_NUMBER + "'13'"),
    (
        "unknown datatype",
        {"inputs": [tensor("x", [1, 3], "FP128", [1, 2, 3])]},
        NUMERIC,
        "inputs[0].datatype 'FP128' is not a v2 datatype (FP64, INT64, BOOL, BYTES, ...)",
    ),
    (
        "datatype a number",
        {"inputs": [tensor("x", [1, 3], 5, [1, 2, 3])]},
        NUMERIC,
        "inputs[0].datatype 5 is not a v2 datatype (FP64, INT64, BOOL, BYTES, ...)",
    ),
    (
        "no data",
        {"inputs": [tensor("x", [1, 3], "FP64")]},
        NUMERIC,
        'inputs[0] has no "data" (nor binary_data_size for the binary extension)',
    ),
    (
        "fewer values than the shape",
        {"inputs": [tensor("x", [2, 3], "FP64", [1, 2, 3])]},
        NUMERIC,
        "inputs[0] (x) has shape [2, 3], which needs 6 values, but carries 3",
    ),
    (
        "ragged data",
        {"inputs": [tensor("x", [2, 3], "FP64", [[1, 2, 3], [1, 2]])]},
        NUMERIC,
        "inputs[0].data is ragged: nested lists must all have the same length",
    ),
    (
        "BOOL of numbers",
        {"inputs": [tensor("x", [1, 3], "BOOL", [1, 0, 1])]},
        NUMERIC,
        "inputs[0] is BOOL: every element must be true or false",
    ),
    (
        "a string in FP64",
        {"inputs": [tensor("x", [1, 3], "FP64", [1, "a", 3])]},
        NUMERIC,
        "inputs[0].data must hold only numbers for datatype FP64; found 'a'",
    ),
    (
        "BYTES of numbers",
        {"inputs": [tensor("id", [1], "BYTES", [1])]},
        ENTITY,
        "inputs[0] is BYTES: every element must be a string",
    ),
    (
        "an unknown column",
        {"inputs": [tensor("c", [2], "FP32", [3, 6]), tensor("z", [2], "FP64", [1, 4])]},
        NUMERIC,
        f"inputs ['z'] are not columns of this model; expected {NUMERIC_COLUMNS}",
    ),
    (
        "a missing column",
        {"inputs": [tensor("c", [2], "FP32", [3, 6]), tensor("a", [2], "FP64", [1, 4])]},
        NUMERIC,
        "missing inputs ['b']; send one [N] tensor per column or one [N, 3] tensor",
    ),
    (
        "a missing column of object rows",
        {"inputs": MIXED_TENSORS[1:]},
        MIXED,
        "missing inputs ['x']; send one [N] tensor per column",
    ),
    (
        "columns of two lengths",
        {
            "inputs": [
                tensor("c", [2], "FP32", [3, 6]),
                tensor("a", [1], "FP64", [1]),
                tensor("b", [2], "INT64", [2, 5]),
            ]
        },
        NUMERIC,
        "column tensors disagree on the number of rows: [1, 2]",
    ),
    (
        "ids and columns of two lengths",
        {"inputs": [tensor("id", [1], "BYTES", ["e1"]), tensor("a", [2], "FP64", [1, 2])]},
        ENTITY,
        "column tensors disagree on the number of rows: [1, 2]",
    ),
    (
        "fewer ids than rows",
        {"inputs": [tensor("id", [1], "BYTES", ["e1"]), tensor("x", [2, 2], "FP64", [1, 2, 3, 4])]},
        ENTITY,
        "id has 1 ids but the features have 2 rows",
    ),
    (
        "ids of three dimensions",
        {"inputs": [tensor("id", [1, 1, 1], "BYTES", ["e1"]), tensor("x", [1, 2], "FP64", [1, 2])]},
        ENTITY,
        "id has 1 ids but the features have 1 rows",
    ),
    (
        "numeric ids",
        {"inputs": [tensor("id", [1], "FP64", [1]), tensor("x", [1, 2], "FP64", [1, 2])]},
        ENTITY,
        "input id must be BYTES (one string id per row)",
    ),
    (
        "a matrix of the wrong width",
        {"inputs": [tensor("x", [1, 2], "FP64", [1, 2])]},
        NUMERIC,
        f"input x has shape [1, 2]; {SEND_MATRIX}",
    ),
    (
        "a matrix of three dimensions",
        {"inputs": [tensor("x", [1, 3, 1], "FP64", [1, 2, 3])]},
        NUMERIC,
        f"input x has shape [1, 3, 1]; {SEND_MATRIX}",
    ),
    (
        "a matrix for object rows",
        {"inputs": [tensor("m", [1, 8], "FP64", [1] * 8)]},
        MIXED,
        "input m has shape [1, 8]; send one [N] tensor per column, named after it: " + MIXED.expected(),
    ),
    (
        "a BYTES matrix",
        {"inputs": [tensor("x", [1, 3], "BYTES", ["1", "2", "3"])]},
        NUMERIC,
        "input x is BYTES; an [N, F] tensor must be numeric (FP64, FP32, INT64, ...)",
    ),
    (
        "2.5 in a long",
        {"inputs": [tensor("x", [1, 3], "FP64", [1, 2.5, 3])]},
        NUMERIC,
        "x row 0: column b (long) needs an integer, got 2.5",
    ),
    (
        "2.5 in a long column tensor",
        {
            "inputs": [
                tensor("a", [2], "FP64", [1, 1]),
                tensor("b", [2], "FP64", [2, 2.5]),
                tensor("c", [2], "FP32", [3, 3]),
            ]
        },
        NUMERIC,
        "b row 1: column b (long) needs an integer, got 2.5",
    ),
    (
        "beyond int64 in a long",
        {"inputs": [tensor("x", [1, 3], "FP64", [1, 1e19, 3])]},
        NUMERIC,
        "x row 0: column b (long) needs an integer in [-9223372036854775808, 9223372036854775807], "
        "got 10000000000000000000",
    ),
    (
        "text for a double",
        {"inputs": [tensor("a", [1], "BYTES", ["1"]), tensor("b", [1], "INT64", [2]), tensor("c", [1], "FP32", [3])]},
        NUMERIC,
        "input a is BYTES; column a (double) needs FP64, e.g. '1' is not a double",
    ),
    (
        "BOOL for a long",
        {"inputs": [tensor("a", [1], "FP64", [1]), tensor("b", [1], "BOOL", [True]), tensor("c", [1], "FP32", [3])]},
        NUMERIC,
        "input b is BOOL; column b (long) needs INT64, e.g. true is not a long",
    ),
    (
        "INT64 for a string",
        {"inputs": [*MIXED_TENSORS[:4], tensor("s", [1], "INT64", [1]), *MIXED_TENSORS[5:]]},
        MIXED,
        "input s is INT64; column s (string) needs BYTES, e.g. 1 is not a string",
    ),
    (
        "FP64 for a boolean",
        {"inputs": [*MIXED_TENSORS[:3], tensor("flag", [1], "FP64", [1.0]), *MIXED_TENSORS[4:]]},
        MIXED,
        "input flag is FP64; column flag (boolean) needs BOOL, e.g. 1.0 is not a boolean",
    ),
    (
        "a bad date-time",
        {"inputs": [*MIXED_TENSORS[:5], tensor("t", [1], "BYTES", ["soon"]), MIXED_TENSORS[6]]},
        MIXED,
        "t row 0: column t (datetime) needs an ISO-8601 date-time string such as 2024-05-01T12:30:00, got 'soon'",
    ),
    (
        "outputs an object",
        {"inputs": [ROW], "outputs": {"name": "x"}},
        NUMERIC,
        '"outputs" must be a list like [{"name": "probabilities"}]',
    ),
    (
        "an unknown output",
        {"inputs": [ROW], "outputs": [{"name": "zz"}]},
        NUMERIC,
        "outputs[0] asks for 'zz'; this model has ['predictions', 'probabilities']",
    ),
    (
        "an output without a name",
        {"inputs": [ROW], "outputs": [{"name": "predictions"}, {}]},
        NUMERIC,
        'outputs[1] must be an object with a "name"',
    ),
    (
        "an output a string",
        {"inputs": [ROW], "outputs": ["predictions"]},
        NUMERIC,
        'outputs[0] must be an object with a "name"',
    ),
    (
        "output parameters a list",
        {"inputs": [ROW], "outputs": [{"name": "predictions", "parameters": [1]}]},
        NUMERIC,
        "outputs[0].parameters must be a JSON object",
    ),
]


@pytest.mark.parametrize(("payload", "schema", "message"), [c[1:] for c in REJECTED], ids=[c[0] for c in REJECTED])
def test_a_wrong_json_body_is_refused_with_a_message_naming_the_fault(
    payload: Any, schema: Schema, message: str
) -> None:
    with pytest.raises(BadRequest) as refused:
        decode(payload, schema)
    assert str(refused.value) == message


def test_more_rows_than_max_instances_is_payload_too_large() -> None:
    with pytest.raises(PayloadTooLarge) as refused:
        decode({"inputs": [tensor("x", [4, 2], "FP64", [1] * 8)]}, ENTITY)
    assert (
        str(refused.value) == "4 instances in one request; the limit is 3 (split the request, or raise --max_instances)"
    )


DECODED: list[tuple[str, Any, Schema, list[list[Any]], list[str] | None]] = [
    (
        "a flat matrix",
        {"inputs": [tensor("x", [2, 3], "FP64", [1, 2, 3, 4, 5, 6])]},
        NUMERIC,
        [[1, 2, 3], [4, 5, 6]],
        None,
    ),
    (
        "a nested matrix",
        {"inputs": [tensor("x", [2, 3], "INT64", [[1, 2, 3], [4, 5, 6]])]},
        NUMERIC,
        [[1, 2, 3], [4, 5, 6]],
        None,
    ),
    ("one row as [F]", {"inputs": [tensor("x", [3], "FP64", [1, 2, 3])]}, NUMERIC, [[1, 2, 3]], None),
    ("a scalar as data", {"inputs": [tensor("x", [1], "FP64", 5)]}, ONE, [[5]], None),
    ("booleans", {"inputs": [tensor("x", [1, 1], "BOOL", [True])]}, ONE, [[1]], None),
    ("2.0 in a long", {"inputs": [tensor("x", [1, 3], "FP64", [1, 2.0, 3])]}, NUMERIC, [[1, 2, 3]], None),
    (
        "a tensor per column, in any order",
        {
            "inputs": [
                tensor("c", [2], "FP32", [3, 6]),
                tensor("a", [2], "FP64", [1, 4]),
                tensor("b", [2], "INT64", [2, 5]),
            ]
        },
        NUMERIC,
        [[1, 2, 3], [4, 5, 6]],
        None,
    ),
    (
        "ids alone",
        {"inputs": [tensor("id", [2], "BYTES", ["e1", "e2"])]},
        ENTITY,
        [[NAN, NAN], [NAN, NAN]],
        ["e1", "e2"],
    ),
    (
        "ids and one column",
        {"inputs": [tensor("id", [2], "BYTES", ["e1", "e2"]), tensor("a", [2], "FP64", [1, 2])]},
        ENTITY,
        [[1, NAN], [2, NAN]],
        ["e1", "e2"],
    ),
    (
        "ids and a matrix",
        {"inputs": [tensor("x", [1, 2], "FP64", [1, 2]), tensor("id", [1, 1], "BYTES", [["e1"]])]},
        ENTITY,
        [[1, 2]],
        ["e1"],
    ),
]


@pytest.mark.parametrize(
    ("payload", "schema", "values", "entity_ids"), [c[1:] for c in DECODED], ids=[c[0] for c in DECODED]
)
def test_a_json_body_decodes_to_these_rows(
    payload: Any, schema: Schema, values: list[list[Any]], entity_ids: list[str] | None
) -> None:
    rows = decode(payload, schema).rows
    assert rows.values.dtype == np.float64
    np.testing.assert_array_equal(rows.values, np.asarray(values, dtype=np.float64))
    assert rows.entity_ids == entity_ids


def test_typed_column_tensors_become_each_columns_python_values() -> None:
    rows = decode({"inputs": MIXED_TENSORS}, MIXED).rows
    assert rows.values.dtype == object
    assert rows.values.tolist() == [[1.5, 2, 3, True, "s", np.datetime64("2024-05-01", "ns"), b"hi", None]]


def test_the_request_id_outputs_and_binary_output_choice_are_kept() -> None:
    plain = decode({"inputs": [ROW]})
    assert plain.binary_outputs is False and plain.requested == {} and len(plain.id) == 36  # a uuid4
    assert decode({"inputs": [ROW]}).id != plain.id
    asked = decode(
        {
            "inputs": [ROW],
            "id": "r-1",
            "parameters": {"binary_data_output": True},
            "outputs": [
                {"name": "probabilities", "parameters": {"binary_data": False}},
                {"name": "predictions", "parameters": None},
            ],
        }
    )
    assert asked.id == "r-1" and asked.binary_outputs is True
    assert asked.requested == {"probabilities": False, "predictions": None}
    assert decode({"inputs": [ROW], "id": "", "parameters": None}).id != ""  # an empty id gets one
    assert decode({"inputs": [ROW], "parameters": {"binary_data_output": 0}}).binary_outputs is False
    assert decode(
        {"inputs": [ROW], "outputs": [{"name": "predictions", "parameters": {"binary_data": 1}}]}
    ).requested == {"predictions": True}


# ------------------------------------------------------------------------------------ binary extension
FP64_ROW = np.array([[1, 2, 3]], dtype="<f8").tobytes()


def _elements(*items: bytes) -> bytes:
    return b"".join(len(item).to_bytes(4, "little") + item for item in items)


@pytest.mark.parametrize(
    ("datatype", "dtype"), [("FP64", "<f8"), ("FP32", "<f4"), ("INT32", "<i4"), ("UINT8", "u1"), ("FP16", "<f2")]
)
def test_a_raw_little_endian_tensor_decodes_like_its_json_twin(datatype: str, dtype: str) -> None:
    raw = np.array([1, 2, 3], dtype=dtype).tobytes()
    header = {"inputs": [tensor("x", [1, 3], datatype, binary_data_size=len(raw))]}
    assert decode(header, NUMERIC, raw).rows.values.tolist() == [[1, 2, 3]]


def test_binary_tensors_follow_one_another_in_input_order() -> None:
    ids = _elements(b"e1", b"e22")
    header = {
        "inputs": [
            tensor("id", [2], "BYTES", binary_data_size=len(ids)),
            tensor("x", [2, 2], "FP64", binary_data_size=32),
        ]
    }
    rows = decode(header, ENTITY, ids + np.arange(4, dtype="<f8").tobytes()).rows
    assert rows.entity_ids == ["e1", "e22"] and rows.values.tolist() == [[0, 1], [2, 3]]
    empty = _elements(b"")
    rows = decode({"inputs": [tensor("id", [1], "BYTES", binary_data_size=len(empty))]}, ENTITY, empty).rows
    assert rows.entity_ids == [""]


BINARY_REJECTED: list[tuple[str, Any, Schema, bytes, str]] = [
    (
        "bytes no input claims",
        {"inputs": [tensor("x", [1, 3], "FP64", binary_data_size=24)]},
        NUMERIC,
        FP64_ROW + b"xx",
        "the body carries 2 bytes of binary data that no input claims (check each input's binary_data_size)",
    ),
    (
        "a size past the end",
        {"inputs": [tensor("x", [1, 3], "FP64", binary_data_size=30)]},
        NUMERIC,
        FP64_ROW,
        "inputs[0].parameters.binary_data_size is 30 but only 24 bytes of binary data remain",
    ),
    (
        "a boolean size",
        {"inputs": [tensor("x", [1, 3], "FP64", binary_data_size=True)]},
        NUMERIC,
        FP64_ROW,
        "inputs[0].parameters.binary_data_size is true but only 24 bytes of binary data remain",
    ),
    (
        "a negative size",
        {"inputs": [tensor("x", [1, 3], "FP64", binary_data_size=-1)]},
        NUMERIC,
        FP64_ROW,
        "inputs[0].parameters.binary_data_size is -1 but only 24 bytes of binary data remain",
    ),
    (
        "a string size",
        {"inputs": [tensor("x", [1, 3], "FP64", binary_data_size="24")]},
        NUMERIC,
        FP64_ROW,
        "inputs[0].parameters.binary_data_size is '24' but only 24 bytes of binary data remain",
    ),
    (
        "a size not a multiple of the element",
        {"inputs": [tensor("x", [1, 3], "FP64", binary_data_size=23)]},
        NUMERIC,
        FP64_ROW[:23],
        "inputs[0]: binary_data_size 23 is not a multiple of 8 (FP64)",
    ),
    (
        "parameters a list",
        {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP64", "parameters": [1]}]},
        NUMERIC,
        FP64_ROW,
        "inputs[0].parameters must be a JSON object",
    ),
    (
        "a truncated length prefix",
        {"inputs": [tensor("id", [1], "BYTES", binary_data_size=2)]},
        ENTITY,
        b"\x01\x00",
        "inputs[0]: truncated BYTES element length prefix",
    ),
    (
        "an element past the end",
        {"inputs": [tensor("id", [1], "BYTES", binary_data_size=5)]},
        ENTITY,
        (9).to_bytes(4, "little") + b"x",
        "inputs[0]: a BYTES element claims 9 bytes past the end of its data",
    ),
    (
        "an element not UTF-8",
        {"inputs": [tensor("id", [1], "BYTES", binary_data_size=5)]},
        ENTITY,
        (1).to_bytes(4, "little") + b"\xff",
        "inputs[0]: BYTES element is not UTF-8",
    ),
]


@pytest.mark.parametrize(
    ("header", "schema", "raw", "message"), [c[1:] for c in BINARY_REJECTED], ids=[c[0] for c in BINARY_REJECTED]
)
def test_a_wrong_binary_body_is_refused_with_a_message_naming_the_fault(
    header: Any, schema: Schema, raw: bytes, message: str
) -> None:
    with pytest.raises(BadRequest) as refused:
        decode(header, schema, raw)
    assert str(refused.value) == message


@pytest.mark.parametrize(
    ("header_length", "message"),
    [
        ("abc", "Inference-Header-Content-Length must be an integer, got 'abc'"),
        ("0", "Inference-Header-Content-Length is 0 but the body has 16 bytes"),
        ("-1", "Inference-Header-Content-Length is -1 but the body has 16 bytes"),
        ("17", "Inference-Header-Content-Length is 17 but the body has 16 bytes"),
    ],
)
def test_a_header_length_that_is_no_length_of_this_body_is_refused(header_length: str, message: str) -> None:
    with pytest.raises(BadRequest) as refused:
        v2.decode(b'{"inputs": []}xx', header_length, NUMERIC, OUTPUT_NAMES)
    assert str(refused.value) == message


def test_a_header_length_of_the_whole_body_is_json_alone() -> None:
    body = orjson.dumps({"inputs": [ROW]})
    assert v2.decode(body, str(len(body)), NUMERIC, OUTPUT_NAMES).rows.values.tolist() == [[1, 2, 3]]


# ------------------------------------------------------------------------------------------- answers
OUTPUTS = {"predictions": np.array([1, 0]), "probabilities": np.array([[0.25, 0.75], [1.0, 0.0]])}


def _request(**kwargs: Any) -> V2Request:
    return V2Request(rows=decode({"inputs": [ROW]}).rows, id="r-1", **kwargs)


def test_a_json_answer_names_every_output_with_its_exact_datatype_and_shape() -> None:
    body, headers = v2.encode(_request(), OUTPUTS, "m", "2")
    assert headers == {"content-type": "application/json"}
    assert orjson.loads(body) == {
        "id": "r-1",
        "model_name": "m",
        "model_version": "2",
        "outputs": [
            {"name": "predictions", "datatype": "INT64", "shape": [2], "data": [1, 0]},
            {"name": "probabilities", "datatype": "FP64", "shape": [2, 2], "data": [0.25, 0.75, 1.0, 0.0]},
        ],
    }
    body, _ = v2.encode(_request(requested={"probabilities": None}), OUTPUTS, "m", "2")
    assert [o["name"] for o in orjson.loads(body)["outputs"]] == ["probabilities"]


def test_a_binary_answer_puts_raw_tensors_after_the_json_header() -> None:
    body, headers = v2.encode(_request(binary_outputs=True, requested={"predictions": None}), OUTPUTS, "m", "2")
    length = int(headers["inference-header-content-length"])
    assert headers["content-type"] == "application/octet-stream"
    header = orjson.loads(body[:length])
    assert header["outputs"] == [
        {"name": "predictions", "datatype": "INT64", "shape": [2], "parameters": {"binary_data_size": 16}}
    ]
    assert np.frombuffer(body[length:], dtype="<i8").tolist() == [1, 0]
    # per output: binary_data wins over the request-wide choice
    body, headers = v2.encode(
        _request(binary_outputs=True, requested={"predictions": False, "probabilities": True}), OUTPUTS, "m", "2"
    )
    length = int(headers["inference-header-content-length"])
    described = orjson.loads(body[:length])["outputs"]
    assert described[0]["data"] == [1, 0] and described[1]["parameters"] == {"binary_data_size": 32}
    assert np.frombuffer(body[length:], dtype="<f8").tolist() == [0.25, 0.75, 1.0, 0.0]


def test_text_outputs_travel_as_length_prefixed_bytes() -> None:
    labels = {"predictions": np.array(["ok", "fail"], dtype=object)}
    body, headers = v2.encode(_request(binary_outputs=True), labels, "m", "2")
    length = int(headers["inference-header-content-length"])
    assert orjson.loads(body[:length])["outputs"][0]["datatype"] == "BYTES"
    assert body[length:] == _elements(b"ok", b"fail")
    raw = {"predictions": np.array([b"\x00\x01"], dtype=object)}
    body, headers = v2.encode(_request(binary_outputs=True), raw, "m", "2")
    assert body[int(headers["inference-header-content-length"]) :] == _elements(b"\x00\x01")
    float32 = {"probabilities": np.array([0.5], dtype=np.float32)}
    body, headers = v2.encode(_request(binary_outputs=True), float32, "m", "2")
    length = int(headers["inference-header-content-length"])
    assert orjson.loads(body[:length])["outputs"][0]["datatype"] == "FP32" and len(body) - length == 4


EMPTY = f'"inputs" is empty: send at least one instance with {NUMERIC_COLUMNS}'


def test_a_zero_dimension_is_a_shape_and_zero_rows_are_an_empty_request() -> None:
    for body, raw in (
        ({"inputs": [tensor("x", [0, 3], "FP64", [])]}, b""),
        ({"inputs": [tensor("x", [0, 3], "FP64", binary_data_size=0)]}, b"\0"),
    ):
        header = orjson.dumps(body)
        with pytest.raises(BadRequest) as refused:
            v2.decode(header + raw[:0], str(len(header)) if raw else None, NUMERIC, OUTPUT_NAMES)
        assert str(refused.value) == EMPTY


def test_a_scalar_shape_holds_one_value_and_is_no_matrix() -> None:
    with pytest.raises(BadRequest) as refused:
        decode({"inputs": [tensor("x", [], "FP64", 5)]}, ONE)
    assert str(refused.value) == (
        "input x has shape []; send shape [N, 1] with 1 features in this order: a "
        "(or one [N] tensor per column, named after it)"
    )


def test_a_one_byte_json_header_is_read_as_json() -> None:
    with pytest.raises(BadRequest) as refused:
        v2.decode(b'{"inputs": []}', "1", NUMERIC, OUTPUT_NAMES)
    assert str(refused.value).startswith("body is not valid JSON (unexpected end of data at character 1)")


def test_a_binary_request_may_ask_for_outputs_and_get_them_all_as_raw_tensors() -> None:
    asked = {"inputs": [tensor("x", [1, 3], "FP64", binary_data_size=24)], "outputs": [{"name": "predictions"}]}
    assert decode(asked, NUMERIC, FP64_ROW).requested == {"predictions": None}
    body, headers = v2.encode(_request(binary_outputs=True), OUTPUTS, "m", "2")
    length = int(headers["inference-header-content-length"])
    assert body[length:] == np.array([1, 0], dtype="<i8").tobytes() + OUTPUTS["probabilities"].astype("<f8").tobytes()


def test_a_body_without_id_takes_the_callers_x_request_id_and_the_bodys_own_id_wins() -> None:
    """One id per call for the answer, the prediction log and the payload events alike."""
    codec = v2.V2Codec()
    without = codec.decode(RestRequest(orjson.dumps({"inputs": [ROW]}), {"x-request-id": "abc"}), NUMERIC, OUTPUT_NAMES)
    with_id = codec.decode(
        RestRequest(orjson.dumps({"inputs": [ROW], "id": "own"}), {"x-request-id": "abc"}), NUMERIC, OUTPUT_NAMES
    )
    assert (without.request_id, with_id.request_id) == ("abc", "own")
