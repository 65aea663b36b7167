"""``POST /invocations`` answered like the real ``mlflow models serve`` on the same model directory.

For each of a few of the user's own models (tests/own_models.py) both servers run as real processes, started
once per model; the same bodies go to both. Where the two agree the status and JSON must be equal; where we
differ on purpose, the difference is asserted explicitly below with the reason next to it, so a change on either
side shows up here.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import own_models
from tests.servers import PredictorProcess, Process, free_port, start_predictor

#: The ColumnTransformer with a string column, XGBoost with a long column, a pyfunc with datetime/boolean columns.
MODELS = ("column_transformer", "xgboost", "custom_pyfunc")
START_TIMEOUT_S = 180  # MLflow's server imports the flavor and the model in its own process: slow on a busy box


@dataclass
class Pair:
    model: own_models.OwnModel
    ours: str  # base URLs
    mlflow: str

    def both(self, body: Any, content_type: str = "application/json") -> tuple[Answer, Answer]:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()  # orjson stops at 64 bits
        headers = {"Content-Type": content_type}
        ours, theirs = (
            Answer.of(httpx.post(f"{base}/invocations", content=content, headers=headers, timeout=30))
            for base in (self.ours, self.mlflow)
        )
        return ours, theirs


@dataclass
class Answer:
    status: int
    body: Any

    @staticmethod
    def of(response: httpx.Response) -> Answer:
        try:
            return Answer(response.status_code, response.json())
        except ValueError:
            return Answer(response.status_code, response.text)


def _start_mlflow(model_dir: Path, root: Path) -> tuple[Process, str]:
    port = free_port()
    # `mlflow models serve` execs uvicorn from PATH: the venv's bin directory must come first.
    bin_dir = str(Path(sys.executable).parent)
    args = ["models", "serve", "-m", str(model_dir), "--env-manager", "local", "-p", str(port), "-h", "127.0.0.1"]
    process = Process(
        [sys.executable, "-m", "mlflow", *args],
        root / "mlflow-serve.log",
        env={"PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")},
        cwd=root,
    )
    return process, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module", params=MODELS)
def pair(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    model = own_models.ALL[request.param]()
    root = tmp_path_factory.mktemp(f"parity-{model.name}")
    model.save(root / "model")
    mlflow, mlflow_url = _start_mlflow(root / "model", root)
    ours: PredictorProcess | None = None
    try:
        mlflow.start()
        ours = start_predictor("sqlite:///" + str(root / "unused.db"), root, "--model_uri", str(root / "model"))
        mlflow.wait_http_ok(f"{mlflow_url}/ping", START_TIMEOUT_S, 0.25, "mlflow models serve's /ping")
        ours.wait_ready(START_TIMEOUT_S)
        yield Pair(model, ours.http_url, mlflow_url)
    finally:
        if ours is not None:
            ours.stop()
        mlflow.stop()


# ------------------------------------------------------------------------------------------ agreed


def _agreed_bodies(model: own_models.OwnModel) -> dict[str, Any]:
    """Bodies both servers must answer identically (status and JSON; errors compared by status only)."""
    frame = model.frame
    columns = list(frame.columns)
    records = own_models.records(frame)
    first = columns[0]
    return {
        "dataframe_split": {"dataframe_split": {"columns": columns, "data": own_models.lists(frame)}},
        # what pandas' to_dict(orient="split") writes, index included
        "dataframe_split with index": {
            "dataframe_split": {"index": list(range(len(frame))), "columns": columns, "data": own_models.lists(frame)}
        },
        "dataframe_records": {"dataframe_records": records},
        "instances as objects": {"instances": records},
        "inputs as objects": {"inputs": records},
        "inputs as columns": {"inputs": {c: [r[c] for r in records] for c in columns}},
        "params": {"dataframe_records": records, "params": {}},
        # bad bodies
        "not JSON": b"not json",
        "a JSON list": [1, 2],
        "no known key": {"nothing": 1},
        "two formats": {"dataframe_records": records, "instances": records},
        "no rows": {"dataframe_records": []},
        "missing column": {"dataframe_records": [{c: v for c, v in records[0].items() if c != columns[-1]}]},
        "a word in a numeric column": {"dataframe_records": [{**records[0], first: "hot"}]},
        "beyond int64": {"dataframe_records": [{**records[0], first: 3 * 10**21}]},
    }


def _assert_same(ours: Answer, theirs: Answer, case: str) -> None:
    assert ours.status == theirs.status, (
        f"{case}: ours {ours.status} {ours.body} / mlflow {theirs.status} {theirs.body}"
    )
    if theirs.status == 200:
        assert ours.body == theirs.body, case
    else:
        # Deliberate: every route of ours answers an error as {"error": message} (the Open Inference Protocol's
        # shape, one classification in predictor/errors.py); MLflow's is its REST API error object. Ours names
        # the row, the column, the expected type and the value instead of pandas' conversion message.
        assert set(ours.body) == {"error"} and ours.body["error"], case
        assert {"error_code", "message"} <= set(theirs.body), case


def test_the_same_bodies_get_the_same_answers(pair: Pair) -> None:
    for case, body in _agreed_bodies(pair.model).items():
        _assert_same(*pair.both(body), case)


def test_ping_answers_alike(pair: Pair) -> None:
    ours, theirs = (httpx.get(f"{base}/ping", timeout=5) for base in (pair.ours, pair.mlflow))
    assert (ours.status_code, ours.text) == (theirs.status_code, theirs.text) == (200, "\n")


def test_an_unsupported_content_type_is_a_415_on_both(pair: Pair) -> None:
    ours, theirs = pair.both(b"x", content_type="text/plain")
    assert ours.status == theirs.status == 415


# ------------------------------------------------------------------------------------------ where we differ


def _records_answer(pair: Pair, rows: list[dict[str, Any]]) -> Any:
    ours, theirs = pair.both({"dataframe_records": rows})
    assert ours.status == theirs.status == 200 and ours.body == theirs.body
    return ours.body


def test_lists_in_signature_order_are_accepted_where_mlflow_refuses_them(pair: Pair) -> None:
    # MLflow turns unnamed lists into columns 0..F-1, which never match a column signature (400). Ours reads
    # them in signature order, as v1 lists: the answer is the one for the same rows as named records.
    frame = pair.model.frame
    expected = _records_answer(pair, own_models.records(frame))
    lists = own_models.lists(frame)
    for body in ({"instances": lists}, {"inputs": lists}, {"dataframe_split": {"data": lists}}):
        ours, theirs = pair.both(body)
        assert theirs.status == 400, body
        assert (ours.status, ours.body) == (200, expected), body


def test_unknown_columns_are_refused_where_mlflow_ignores_them(pair: Pair) -> None:
    # A misspelt column would otherwise be dropped silently and its real column reported missing or filled.
    rows = own_models.records(pair.model.frame.head(1))
    expected = _records_answer(pair, rows)
    ours, theirs = pair.both({"dataframe_records": [{**rows[0], "extra": 1}]})
    assert (theirs.status, theirs.body) == (200, expected)
    assert ours.status == 400 and "extra" in ours.body["error"]


def test_params_must_be_an_object_where_mlflow_ignores_anything(pair: Pair) -> None:
    # params are accepted and ignored by both when they are an object (these models declare none); a list is
    # certainly a client's mistake, so ours says so.
    rows = own_models.records(pair.model.frame.head(1))
    expected = _records_answer(pair, rows)
    ours, theirs = pair.both({"dataframe_records": rows, "params": [1]})
    assert (theirs.status, theirs.body) == (200, expected)
    assert ours.status == 400 and "params" in ours.body["error"]


def test_csv_bodies_are_mlflows_alone(pair: Pair) -> None:
    # `mlflow models serve` also reads text/csv; ours serves JSON only (its decoders are typed JSON readers).
    frame = pair.model.frame.head(2)
    ours, theirs = pair.both(frame.to_csv(index=False).encode(), content_type="text/csv")
    assert ours.status == 415 and "JSON" in ours.body["error"]
    if "installed" in frame.columns:
        # CSV carries no types: MLflow reads the date-time column as text and its schema check refuses it.
        assert theirs.status == 400
    else:
        assert (theirs.status, theirs.body) == (200, _records_answer(pair, own_models.records(frame)))


def test_type_rules_where_they_differ_from_mlflows(pair: Pair) -> None:
    """Values MLflow converts silently (or refuses) that ours refuses (or converts), per model."""
    row, name = own_models.records(pair.model.frame.head(1))[0], pair.model.name
    refused_by_us_only: dict[str, Any] = {}
    if name == "column_transformer":
        # MLflow makes 5 the string "5"; a number in a string column is far likelier a column mix-up.
        refused_by_us_only["5 in a string column"] = {**row, "site": 5}
        # MLflow passes NaN on to the model; the signature says the column is required.
        refused_by_us_only["null in a required column"] = {**row, "temperature": None}
    if name == "xgboost":
        # 3.0 in a long column: both accept it (JSON writers often add the .0) and answer as for 3; both read
        # true as 1 (as in number columns, and as NumPy reads it in every tensor).
        for value, same_as in ((1200.0, 1200), (True, 1)):
            expected = _records_answer(pair, [{**row, "cycles": same_as}])
            ours, theirs = pair.both({"dataframe_records": [{**row, "cycles": value}]})
            assert ours.status == theirs.status == 200 and ours.body == theirs.body == expected, value
        # Both refuse an integer beyond int64; ours names it (it once read "a deeply nested JSON number").
        ours, theirs = pair.both({"dataframe_records": [{**row, "cycles": 3 * 10**21}]})
        assert ours.status == theirs.status == 400 and "got 3000000000000000000000" in ours.body["error"]
        # MLflow truncates 1200.5 to 1200 silently; ours refuses what it would have to truncate.
        refused_by_us_only["1.5 in a long column"] = {**row, "cycles": 1200.5}
    if name == "custom_pyfunc":
        # MLflow reads any non-empty string as true in a boolean column ("no" too).
        refused_by_us_only['"yes" in a boolean column'] = {**row, "active": "yes"}
        # MLflow refuses a zone-aware date-time (its datetime columns are naive); ours converts it to the same
        # instant in UTC, naive — the answer for 2023-12-31T23:00:00, a year earlier than the local date.
        utc = _records_answer(pair, [{**row, "installed": "2023-12-31T23:00:00"}])
        ours, theirs = pair.both({"dataframe_records": [{**row, "installed": "2024-01-01T01:00:00+02:00"}]})
        assert theirs.status == 400
        assert (ours.status, ours.body) == (200, utc)
        assert utc != _records_answer(pair, [{**row, "installed": "2024-01-01T01:00:00"}])
    for case, body in refused_by_us_only.items():
        ours, theirs = pair.both({"dataframe_records": [body]})
        assert theirs.status == 200, f"{case}: mlflow {theirs.status} {theirs.body}"
        assert ours.status == 400, f"{case}: ours {ours.status} {ours.body}"
        assert "dataframe_records[0]" in ours.body["error"], case
