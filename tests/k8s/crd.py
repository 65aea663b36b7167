"""The published InferenceService CRD schema (../shared/reference) as a validator, unknown fields made errors."""

from __future__ import annotations

from functools import cache
from typing import Any

import jsonschema
import pytest
import yaml

from tests.servers import PROJECT_ROOT

CRD = PROJECT_ROOT.parent / "shared" / "reference" / "crd" / "serving.kserve.io_inferenceservices.yaml"


def closed(schema: Any) -> Any:
    """The schema with `additionalProperties: false` wherever it lists properties (unknown fields fail)."""
    if isinstance(schema, dict):
        out = {key: closed(value) for key, value in schema.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [closed(item) for item in schema]
    return schema


@cache
def validator() -> jsonschema.Draft7Validator:
    if not CRD.exists():
        pytest.skip(f"reference CRD not present at {CRD}")
    crd = yaml.safe_load(CRD.read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1beta1"]
    return jsonschema.Draft7Validator(closed(version["schema"]["openAPIV3Schema"]))


def errors(isvc: dict[str, Any]) -> list[str]:
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator().iter_errors(isvc)]
