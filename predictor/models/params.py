"""A signature's inference parameters (``params`` in MLflow): read once at load, and a request's checked here.

Every door hands over what its request carries (``/invocations`` ``params``, v2 ``parameters``, gRPC
``parameters``) as plain Python values; ``check`` gives the model only declared names with values of the
declared type, or a ``BadRequest`` naming the parameter. Parameters left out take their declared defaults
(MLflow's pyfunc applies them). A model that declares none ignores what a request sends, as before.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from predictor.errors import BadRequest
from predictor.protocol.schema import show

# Open Inference Protocol parameters that belong to the protocol, not to the model.
PROTOCOL_PARAMETERS = frozenset(
    {
        "binary_data_output",
        "content_type",
        "headers",
        "priority",
        "timeout",
        "sequence_id",
        "sequence_start",
        "sequence_end",
    }
)


@dataclass(frozen=True)
class Param:
    name: str
    type: str  # MLflow's: string, boolean, double, float, long, integer, datetime
    default: Any
    many: bool = False  # shape (-1,): a list of values

    def describe(self) -> str:
        return f"{self.name} ({'list of ' if self.many else ''}{self.type}, default {show(self.default)})"


def from_signature(signature: Any) -> tuple[Param, ...]:
    schema = getattr(signature, "params", None) if signature is not None else None
    if schema is None:
        return ()
    return tuple(
        Param(spec.name, str(getattr(spec.dtype, "name", spec.dtype)), spec.default, spec.shape is not None)
        for spec in schema.params
    )


def check(given: Mapping[str, Any] | None, declared: tuple[Param, ...]) -> dict[str, Any] | None:
    """The request's parameters the model declares, typed; None when it sends none (or declares none)."""
    if not given or not declared:
        return None
    by_name = {param.name: param for param in declared}
    unknown = [name for name in given if name not in by_name and name not in PROTOCOL_PARAMETERS]
    if unknown:
        raise BadRequest(
            f"parameter {unknown[0]!r:.60} is not one this model takes; it takes "
            + ", ".join(param.describe() for param in declared)
        )
    checked = {name: _value(by_name[name], value) for name, value in given.items() if name in by_name}
    return checked or None


def _value(param: Param, value: Any) -> Any:
    if param.many:
        if not isinstance(value, list):
            raise _wrong(param, value)
        return [_scalar(param, item, value) for item in value]
    return _scalar(param, value, value)


def _scalar(param: Param, value: Any, shown: Any) -> Any:
    kind = param.type
    if isinstance(value, str) and kind in ("long", "integer", "double", "float"):
        # The Open Inference Protocol's gRPC parameters have no floating-point field: a number travels as text.
        try:
            value = int(value) if kind in ("long", "integer") else float(value)
        except ValueError:
            raise _wrong(param, shown) from None
    if kind == "boolean" and isinstance(value, bool):
        return value
    if kind in ("long", "integer") and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind in ("double", "float") and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind == "string" and isinstance(value, str):
        return value
    if kind == "datetime" and isinstance(value, str):
        try:
            return dt.datetime.fromisoformat(value)
        except ValueError:
            pass
    raise _wrong(param, shown)


def _wrong(param: Param, value: Any) -> BadRequest:
    wanted = f"a list of {param.type} values" if param.many else f"a {param.type}"
    return BadRequest(f"parameter {param.name} needs {wanted}, got {show(value)}")
