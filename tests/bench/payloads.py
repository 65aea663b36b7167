"""The same rows in each server's request format.

Every value is a float: MLflow's schema enforcement rejects an integer where the signature says double
("Can not safely convert int64 to float64"), so ``50`` must travel as ``50.0``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from predictor.demo.columns import FEATURE_NAMES
from predictor.demo.training import generate_telemetry

Rows = Sequence[Sequence[float]]
Body = dict[str, Any]


def sample_rows(count: int, seed: int = 7) -> list[list[float]]:
    """``count`` realistic feature rows in ``FEATURE_NAMES`` order."""
    frame, _ = generate_telemetry(max(count, 2), seed)
    rows: list[list[float]] = frame.to_numpy(dtype=float)[:count].tolist()
    return rows


def v1_body(rows: Rows) -> Body:
    """KServe v1: ``{"instances": [[...], ...]}`` (ours and the baseline)."""
    return {"instances": [list(row) for row in rows]}


def mlflow_body(rows: Rows) -> Body:
    """``mlflow models serve``'s POST /invocations in its documented pandas "split" form."""
    return {"dataframe_split": {"columns": list(FEATURE_NAMES), "data": [list(row) for row in rows]}}


def v2_columns_body(rows: Rows) -> Body:
    """Open Inference Protocol as MLServer's MLflow runtime wants it for a column signature: one input per column
    (it decodes the request with its pandas codec, each input becoming a DataFrame column)."""
    return {
        "inputs": [
            {"name": name, "shape": [len(rows), 1], "datatype": "FP64", "data": [row[i] for row in rows]}
            for i, name in enumerate(FEATURE_NAMES)
        ]
    }


def write_body(path: Path, build: Callable[[Rows], Body], rows: Rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(build(rows)))
    return path
