"""The same rows in each server's request format, built from a DataFrame with the model's input dtypes.

Numbers travel as JSON floats: MLflow's schema enforcement rejects an integer where the signature says double
("Can not safely convert int64 to float64"), so ``50`` must travel as ``50.0``. The typed model's string column
travels as JSON strings (v2: a BYTES tensor). Rows by id (issue 26) name only their ``equipment_id``, one of the
ids the bench's Feast repo holds.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from predictor.demo.columns import ENTITY_KEY
from predictor.demo.training import equipment_ids, generate_telemetry
from tests.bench.registry import BENCH_EQUIPMENT, BenchKind
from tests.bench.typed_model import typed_frame

Body = dict[str, Any]
# numpy dtype kind → Open Inference Protocol datatype, for one tensor per column
V2_DATATYPES = {"f": "FP64", "i": "INT64", "b": "BOOL", "O": "BYTES"}


def sample(kind: BenchKind, count: int, seed: int = 7) -> pd.DataFrame:
    """``count`` realistic rows of ``kind``'s input columns in signature order, with the training dtypes (every kind
    but "typed" was trained on the demo telemetry's columns; "nosig" has no signature, only that training order)."""
    frame, _ = typed_frame(max(count, 2), seed) if kind == "typed" else generate_telemetry(max(count, 2), seed)
    return frame.head(count)


def _cells(frame: pd.DataFrame) -> list[list[Any]]:
    """The rows as lists of Python values (float, str): what ``json.dumps`` writes as numbers and strings."""
    cells: list[list[Any]] = frame.astype(object).to_numpy().tolist()
    return cells


def _all_numbers(frame: pd.DataFrame) -> bool:
    return all(dtype.kind in "fi" for dtype in frame.dtypes)


def v1_body(frame: pd.DataFrame) -> Body:
    """KServe v1 (ours and the baseline): ``{"instances": [[...], ...]}`` in column order when every column is a
    number (the demo's form, as today), objects keyed by column otherwise — what a client of a typed model writes
    (issue 11), and what the obvious predictor's ``pd.DataFrame(instances, columns=...)`` reads by name too."""
    if _all_numbers(frame):
        return {"instances": _cells(frame)}
    return {"instances": [dict(zip(frame.columns, row, strict=True)) for row in _cells(frame)]}


def mlflow_body(frame: pd.DataFrame) -> Body:
    """``mlflow models serve``'s POST /invocations in its documented pandas "split" form."""
    return {"dataframe_split": {"columns": list(frame.columns), "data": _cells(frame)}}


def v2_columns_body(frame: pd.DataFrame) -> Body:
    """Open Inference Protocol as MLServer's MLflow runtime wants it for a column signature: one input per column
    (it decodes the request with its pandas codec, each input becoming a DataFrame column), each with the datatype
    of its dtype (BYTES for strings)."""
    return {
        "inputs": [
            {"name": str(name), "shape": [len(frame), 1], "datatype": V2_DATATYPES[frame[name].dtype.kind],
             "data": [row[i] for row in _cells(frame)]}
            for i, name in enumerate(frame.columns)
        ]
    }  # fmt: skip


def write_body(path: Path, build: Callable[[pd.DataFrame], Body], frame: pd.DataFrame) -> Path:
    return write_json(path, build(frame))


def by_id_workers(rows: int, workers: int, seed: int = 7) -> list[list[str]]:
    """The ids each of ``workers`` concurrent senders names, ``rows`` per request: ids of the bench's Feast repo
    (``prepare_feature_repo`` materializes BENCH_EQUIPMENT), shuffled once so that the equipment types mix;
    worker k starts k/workers of the way round, so no two workers send the same request (at 1 row @50: 50
    different ids in flight, so a lookup shared by concurrent requests gains nothing from repeated ids)."""
    ids = equipment_ids(BENCH_EQUIPMENT)
    if rows > len(ids):
        raise ValueError(f"{rows} ids per request, but the bench's Feast repo holds {len(ids)}")
    random.Random(seed).shuffle(ids)
    return [[ids[(k * len(ids) // workers + i) % len(ids)] for i in range(rows)] for k in range(workers)]


def v1_by_id_body(ids: Sequence[str]) -> Body:
    """KServe v1 instances naming only their entity id: ``{"instances": [{"equipment_id": "pump-0017"}, ...]}``."""
    return {"instances": [{ENTITY_KEY: entity_id} for entity_id in ids]}


def write_json(path: Path, body: Body) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(body))
    return path
