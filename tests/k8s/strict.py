"""Strict validation of rendered objects, with the schema that ships in our dependencies.

The API server rejects unknown fields (kubectl's default strict field validation), so a typo such as
``containerport`` or a field in the wrong place must fail here too, not merely be ignored. The types come from
the ``kserve`` SDK models (InferenceService; ``openapi_types``/``attribute_map``) and the ``kubernetes`` client
models (core objects; pydantic models that also check value types and required fields). Keys are matched
against the JSON names of ``attribute_map`` — snake_case spellings, which the client models would accept
but the API server would not, are errors as well.
"""

from __future__ import annotations

import re
from typing import Any

import kserve.models
import kubernetes.client
from pydantic import BaseModel, ValidationError

# Root model of each kind we ship, by (apiVersion, kind).
ROOTS: dict[tuple[str, str], str] = {
    ("v1", "ServiceAccount"): "V1ServiceAccount",
    ("v1", "ConfigMap"): "V1ConfigMap",
    ("networking.k8s.io/v1", "NetworkPolicy"): "V1NetworkPolicy",
    ("serving.kserve.io/v1beta1", "InferenceService"): "V1beta1InferenceService",
    ("serving.kserve.io/v1alpha1", "ServingRuntime"): "V1alpha1ServingRuntime",
    ("serving.kserve.io/v1alpha1", "ClusterServingRuntime"): "V1alpha1ClusterServingRuntime",
    ("v1", "Secret"): "V1Secret",
    ("policy/v1", "PodDisruptionBudget"): "V1PodDisruptionBudget",
    ("batch/v1", "CronJob"): "V1CronJob",
    ("v1", "Pod"): "V1Pod",  # tests/k8s/pod.py's rendering of the predictor
}
PROMETHEUS_RULE = ("monitoring.coreos.com/v1", "PrometheusRule")

_SCALARS: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "datetime": (str,),
    "date": (str,),
    "object": (object,),
    "ResourceQuantity": (int, float, str),  # kserve's name for a Kubernetes quantity
    "V1beta1MetricQuantity": (int, float, str),  # autoScaling targets: a quantity, int-or-string
}
_LIST = re.compile(r"(?:list|List)\[(.+)\]")
_DICT = re.compile(r"(?:dict\(str, (.+)\)|Dict\[str, (.+)\])")


def _model(name: str) -> Any:
    found = getattr(kserve.models, name, None) or getattr(kubernetes.client, name, None)
    if found is None:
        raise LookupError(f"no model class {name!r} in kserve.models or kubernetes.client")
    return found


def _is_pydantic(cls: Any) -> bool:
    return isinstance(cls, type) and issubclass(cls, BaseModel)


def check(value: Any, type_name: str, path: str, inside_pydantic: bool = False) -> list[str]:
    """Errors of ``value`` against the OpenAPI type ``type_name`` (``"V1Container"``, ``"list[str]"``, …)."""
    if type_name in _SCALARS:
        kinds = _SCALARS[type_name]
        wrong_bool = isinstance(value, bool) and bool not in kinds and object not in kinds  # True is an int
        if wrong_bool or not isinstance(value, kinds):
            return [f"{path}: expected {type_name}, got {type(value).__name__} {value!r}"]
        return []
    if match := _LIST.fullmatch(type_name):
        if not isinstance(value, list):
            return [f"{path}: expected a list, got {type(value).__name__}"]
        return [e for i, item in enumerate(value) for e in check(item, match[1], f"{path}[{i}]", inside_pydantic)]
    if match := _DICT.fullmatch(type_name):
        if not isinstance(value, dict):
            return [f"{path}: expected a map, got {type(value).__name__}"]
        inner = match[1] or match[2]
        return [e for k, v in value.items() for e in check(v, inner, f"{path}.{k}", inside_pydantic)]

    cls = _model(type_name)
    if not isinstance(value, dict):
        return [f"{path}: expected an object ({type_name}), got {type(value).__name__} {value!r}"]
    attribute_of = {json_name: attr for attr, json_name in cls.attribute_map.items()}
    errors: list[str] = []
    for key, item in value.items():
        if key not in attribute_of:
            errors.append(f"{path}.{key}: unknown field ({type_name} has no {key!r})")
            continue
        errors += check(
            item, cls.openapi_types[attribute_of[key]], f"{path}.{key}", inside_pydantic or _is_pydantic(cls)
        )
    if _is_pydantic(cls) and not inside_pydantic:
        # Types, ranges of unions and required fields, for this whole subtree at once.
        try:
            cls.model_validate(value)
        except ValidationError as exc:
            errors += [f"{path}.{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in exc.errors()]
    elif not _is_pydantic(cls):
        # The kserve models raise ValueError from their setters when a required field is missing.
        try:
            cls(**{attribute_of[k]: v for k, v in value.items() if k in attribute_of})
        except (ValueError, TypeError) as exc:
            errors.append(f"{path}: {exc}")
    return errors


def _check_prometheus_rule(obj: dict[str, Any]) -> list[str]:
    """PrometheusRule's schema is not in our dependencies: the envelope here, the rule groups by promtool."""
    errors = _unknown(obj, {"apiVersion", "kind", "metadata", "spec"}, obj.get("kind", "?"))
    errors += check(obj.get("metadata"), "V1ObjectMeta", "metadata")
    spec = obj.get("spec") or {}
    errors += _unknown(spec, {"groups"}, "spec")
    for i, group in enumerate(spec.get("groups") or []):
        where = f"spec.groups[{i}]"
        errors += _unknown(group, {"name", "interval", "rules", "limit", "query_offset"}, where)
        for j, rule in enumerate(group.get("rules") or []):
            errors += _unknown(
                rule,
                {"alert", "record", "expr", "for", "keep_firing_for", "labels", "annotations"},
                f"{where}.rules[{j}]",
            )
    return errors


def _unknown(obj: Any, allowed: set[str], path: str) -> list[str]:
    if not isinstance(obj, dict):
        return [f"{path}: expected an object"]
    return [f"{path}.{key}: unknown field" for key in obj if key not in allowed]


def validate(obj: dict[str, Any]) -> list[str]:
    """All the errors the API server would report for this object's shape (an empty list when valid)."""
    key = (obj.get("apiVersion", ""), obj.get("kind", ""))
    name = f"{key[1]}/{(obj.get('metadata') or {}).get('name')}"
    if key == PROMETHEUS_RULE:
        return [f"{name}: {e}" for e in _check_prometheus_rule(obj)]
    if key not in ROOTS:
        return [f"{name}: no schema known for apiVersion {key[0]!r} kind {key[1]!r}"]
    return [f"{name}: {e}" for e in check(obj, ROOTS[key], "")]
