"""A user's custom pyfunc over two sensor columns, saved as an MLflow model directory a test server can load.

Each test module defines the ``predict`` it needs (one that fails, one that is slow on one value); this saves it
with the same signature and input example. The server runs in a scratch directory where ``tests`` is not
importable, as a user's server would not have the user's training code: the defining module is pickled by value.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

FRAME = pd.DataFrame({"temperature": [20.0, 70.0], "vibration": [0.1, 0.3]})


def save_pyfunc(path: Path, predict: Callable[[pd.DataFrame], Any]) -> None:
    """Save a ``PythonModel`` whose ``predict`` is ``predict(model_input)``, with a two-column signature."""
    import cloudpickle
    import mlflow.pyfunc
    from mlflow.models import infer_signature

    with warnings.catch_warnings():  # "add type hints": none on purpose, the signature is given below
        warnings.simplefilter("ignore", UserWarning)

        class UsersModel(mlflow.pyfunc.PythonModel):  # type: ignore[misc]
            def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
                return predict(model_input)

        cloudpickle.register_pickle_by_value(sys.modules[__name__])
        cloudpickle.register_pickle_by_value(sys.modules[predict.__module__])
        mlflow.pyfunc.save_model(
            str(path),
            python_model=UsersModel(),
            signature=infer_signature(FRAME, np.array([0.2, 0.7])),
            input_example=FRAME,
            pip_requirements=["mlflow"],
        )


def rest_bodies(model: str, row: dict[str, float]) -> dict[str, tuple[str, Any]]:
    """The same one-row request to ``model`` in each REST format: (path, JSON body)."""
    return {
        "v1": (f"/v1/models/{model}:predict", {"instances": [row]}),
        "v2": (
            f"/v2/models/{model}/infer",
            {"inputs": [{"name": k, "shape": [1], "datatype": "FP64", "data": [v]} for k, v in row.items()]},
        ),
        "invocations": ("/invocations", {"dataframe_records": [row]}),
    }
