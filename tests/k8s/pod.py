"""The Pod KServe's controller creates for an InferenceService's predictor, built offline from the rendered objects.

Why: policy tools (checkov, tests/test_policy.py) know Pods, Deployments and CronJobs, not KServe's CRDs. On the
rendered InferenceService they check nothing at all, so the predictor's real pod — the one the cluster runs —
would never be checked. This module builds that pod the way KServe (0.20/0.21, Standard mode) does in
``pkg/controller/v1beta1/inferenceservice/components/predictor.go``:

- the pod-level fields are the predictor's own (``PredictorSpec`` embeds a ``PodSpec``), merged over the
  ServingRuntime's pod-level fields (``MergePodSpec``: a strategic merge, the predictor winning);
- the single container is the ServingRuntime's container with the predictor's ``model`` merged over it
  (``MergeRuntimeContainers``: a strategic merge — env by name, ports by containerPort, mounts by path —
  the model winning, and ``args`` *concatenated*, runtime's first);
- the pod's labels and annotations are the predictor's ``labels``/``annotations`` (plus KServe's own label);
- what is not a pod field (``minReplicas``, ``autoScaling``, the model's ``modelFormat``/``runtime``) is the
  controller's input, not the pod's.

A field the conversion does not know fails the conversion instead of vanishing from the checked pod.
"""

from __future__ import annotations

import copy
from typing import Any

import kserve.models
import kubernetes.client

ISVC_LABEL = "serving.kserve.io/inferenceservice"
POD_FIELDS = frozenset(kubernetes.client.V1PodSpec.attribute_map.values())
CONTAINER_FIELDS = frozenset(kubernetes.client.V1Container.attribute_map.values())
# The predictor's fields that configure KServe's controller (replicas, scaling, rollout), not the pod.
CONTROLLER_FIELDS = frozenset(kserve.models.V1beta1ComponentExtensionSpec.attribute_map.values()) - {
    "labels",
    "annotations",
}
# What a `model` carries besides container fields: which runtime runs it, and for which format.
MODEL_FIELDS = frozenset({"modelFormat", "runtime", "protocolVersion", "storageUri", "storage"})
# The ServingRuntime's pod-level fields (ServingRuntimePodSpec) that KServe merges into the pod.
RUNTIME_POD_FIELDS = frozenset(
    {"affinity", "hostIPC", "imagePullSecrets", "nodeSelector", "resourceClaims", "schedulerName"}
    | {"tolerations", "volumes"}
)
# Strategic-merge keys of the lists that occur here (k8s.io/api/core/v1 `patchMergeKey` tags); other lists
# are replaced whole by the overriding side.
MERGE_KEYS = {
    "env": "name",
    "ports": "containerPort",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "volumes": "name",
    "imagePullSecrets": "name",
    "containers": "name",
}


def strategic_merge(base: Any, override: Any, key: str = "") -> Any:
    """``override`` merged over ``base`` as Kubernetes' strategic merge patch does for these fields: maps
    recursively, keyed lists item by item (base order first, new items appended), anything else replaced."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = copy.deepcopy(base)
        for name, value in override.items():
            merged[name] = strategic_merge(base[name], value, name) if name in base else copy.deepcopy(value)
        return merged
    if isinstance(base, list) and isinstance(override, list) and key in MERGE_KEYS:
        by = MERGE_KEYS[key]
        merged_list = [copy.deepcopy(item) for item in base]
        index = {item.get(by): i for i, item in enumerate(merged_list)}
        for item in override:
            if item.get(by) in index:
                position = index[item.get(by)]
                merged_list[position] = strategic_merge(merged_list[position], item)
            else:
                merged_list.append(copy.deepcopy(item))
        return merged_list
    return copy.deepcopy(override)


def merge_runtime_container(runtime_container: dict[str, Any], model: dict[str, Any]) -> dict[str, Any]:
    """KServe's ``MergeRuntimeContainers``: the model's container fields over the runtime's container."""
    unknown = set(model) - CONTAINER_FIELDS - MODEL_FIELDS
    assert not unknown, f"model fields this conversion does not know: {sorted(unknown)}"
    overrides = {k: v for k, v in model.items() if k in CONTAINER_FIELDS}
    merged: dict[str, Any] = strategic_merge(runtime_container, overrides)
    merged["name"] = overrides.get("name") or runtime_container["name"]
    # "Strategic merge patch will replace args but more useful behaviour here is to concatenate" (KServe).
    args = [*runtime_container.get("args", []), *model.get("args", [])]
    if args:
        merged["args"] = args
    return merged


def predictor_pod(objects: list[dict[str, Any]]) -> dict[str, Any]:
    """The pod KServe would run for the (single) InferenceService among ``objects``, as a v1 Pod manifest."""
    (isvc,) = [o for o in objects if o["kind"] == "InferenceService"]
    predictor: dict[str, Any] = isvc["spec"]["predictor"]
    known = POD_FIELDS | CONTROLLER_FIELDS | {"labels", "annotations", "model"}
    unknown = set(predictor) - known
    assert not unknown, f"predictor fields this conversion does not know: {sorted(unknown)}"

    spec = {k: copy.deepcopy(v) for k, v in predictor.items() if k in POD_FIELDS}
    labels = dict(predictor.get("labels", {}))
    annotations = dict(predictor.get("annotations", {}))
    if "model" in predictor:
        model = predictor["model"]
        runtimes = [
            o for o in objects if o["kind"] == "ServingRuntime" and o["metadata"]["name"] == model.get("runtime")
        ]
        assert len(runtimes) == 1, f"the ServingRuntime {model.get('runtime')!r} is not among the objects"
        runtime = runtimes[0]["spec"]
        (runtime_container,) = runtime["containers"]
        assert "containers" not in spec, "a predictor has one implementation"
        runtime_pod = {k: v for k, v in runtime.items() if k in RUNTIME_POD_FIELDS}
        spec = strategic_merge(runtime_pod, spec)
        spec["containers"] = [merge_runtime_container(runtime_container, model)]
        labels = {**runtime.get("labels", {}), **labels}
        annotations = {**runtime.get("annotations", {}), **annotations}
    labels[ISVC_LABEL] = isvc["metadata"]["name"]
    metadata: dict[str, Any] = {"name": f"{isvc['metadata']['name']}-predictor", "labels": labels}
    if "namespace" in isvc["metadata"]:
        metadata["namespace"] = isvc["metadata"]["namespace"]
    if annotations:
        metadata["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}
