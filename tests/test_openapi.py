"""The OpenAPI document: a valid OpenAPI 3.1 file that describes our routes, their bodies and status codes.

Unit tests build it for a fresh FastAPI app carrying our routes; end-to-end tests read it from the
running server at /openapi.json and hold real requests and responses against it.
"""

from __future__ import annotations

from typing import Any

import httpx
import jsonschema
import orjson
import pytest
from fastapi import FastAPI
from openapi_spec_validator import validate as validate_spec

from tests.servers import MODEL_NAME, PROJECT_ROOT, SEED_ROWS, PredictorProcess

FEATURES = (
    "temperature_c",
    "age_months",
    "vibration_rms",
    "load_ratio",
    "pressure_delta_bar",
    "runtime_khours",
    "overheat_alarm",
    "vibration_alarm",
    "lubrication_overdue",
    "recent_repair",
)
OUR_OPERATIONS = {
    ("get", "/health"),
    ("get", "/health/live"),
    ("get", "/ready"),
    ("get", "/health/ready"),
    ("get", "/v2/health/live"),
    ("get", "/v2/health/ready"),
    ("get", "/metrics"),
    ("get", "/v1/models/{model_name}"),
    ("post", "/v1/models/{model_name}:predict"),
    ("get", "/v2/models/{model_name}"),
    ("get", "/v2/models/{model_name}/ready"),
    ("post", "/v2/models/{model_name}/infer"),
    ("get", "/v2/models/{model_name}/versions/{model_version}"),
    ("get", "/v2/models/{model_name}/versions/{model_version}/ready"),
    ("post", "/v2/models/{model_name}/versions/{model_version}/infer"),
    ("get", "/admin/versions"),
    ("post", "/admin/rollback"),
    ("post", "/admin/reload"),
    ("post", "/admin/webhook/mlflow"),
    ("post", "/v1/models/{model_name}:explain"),
    ("get", "/admin/drift"),
    ("get", "/admin/shadow"),
    ("post", "/invocations"),
    ("get", "/ping"),
}
REFERENCE = PROJECT_ROOT.parent / "shared" / "reference" / "protocol" / "oip_open_inference_rest.yaml"


def app_with_our_routes(**options: Any) -> FastAPI:
    from predictor.serving.openapi import install_openapi

    app = FastAPI()  # the document is built from the endpoint table, not from the app's routes
    install_openapi(app, MODEL_NAME, options.pop("feature_names", FEATURES), **options)
    return app


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return app_with_our_routes(entity_key="equipment_id", max_instances=100).openapi()


def operations(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method, path) for path, item in doc["paths"].items() for method in item}


def validator(doc: dict[str, Any], component: str) -> jsonschema.Draft202012Validator:
    """A JSON Schema validator for one component, resolving its $refs inside the document."""
    return jsonschema.Draft202012Validator({"$ref": f"#/components/schemas/{component}", **doc})


def is_valid(doc: dict[str, Any], component: str, instance: Any) -> bool:
    return validator(doc, component).is_valid(instance)


# ---------------------------------------------------------------------------------------- the document


def test_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1")
    validate_spec(document)


def test_the_document_is_valid_before_any_model_is_served_and_lists_every_model_after() -> None:
    from predictor.protocol.codec import DocumentContext
    from predictor.serving.openapi import build_document

    validate_spec(build_document((), DocumentContext()))  # registry discovery has found nothing yet
    many = build_document(("pumps", "fans"), DocumentContext())
    (name,) = [p for p in many["paths"]["/v2/models/{model_name}/infer"]["post"]["parameters"] if p["in"] == "path"]
    assert name["schema"]["enum"] == ["pumps", "fans"]


def test_document_has_exactly_our_operations(document: dict[str, Any]) -> None:
    assert operations(document) == OUR_OPERATIONS  # KServe's (here: repository unload) are left out


def test_every_operation_is_described_with_its_status_codes(document: dict[str, Any]) -> None:
    for method, path in OUR_OPERATIONS:
        operation = document["paths"][path][method]
        assert operation["summary"] != "Not yet described", f"{method} {path}: add it to openapi.OPERATIONS"
        codes = set(operation["responses"])
        if method == "post" and "{model_name}" in path:
            explain = {"501"} if path.endswith(":explain") else set()  # a model it cannot explain exactly
            assert codes == {"200", "400", "401", "404", "413", "415", "429", "503"} | explain, path
            assert set(operation["requestBody"]["content"]) >= {"application/json"}
        elif "{model_name}" in path:
            assert codes == {"200", "404", "503"}, path
        for code, response in operation["responses"].items():
            if code in ("400", "401", "404", "413", "415", "429"):
                assert response["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}


def test_invocations_is_described_with_an_example_of_each_body_shape(document: dict[str, Any]) -> None:
    operation = document["paths"]["/invocations"]["post"]
    assert set(operation["responses"]) == {"200", "400", "401", "404", "413", "415", "429", "503"}
    examples = operation["requestBody"]["content"]["application/json"]["examples"]
    assert set(examples) == {"dataframe_split", "dataframe_records", "instances", "inputs"}
    for shape, example in examples.items():
        assert shape in example["value"]
        assert is_valid(document, "InvocationsRequest", example["value"]), shape
    assert set(document["paths"]["/ping"]["get"]["responses"]) == {"200", "503"}


def test_invocations_request_schema_follows_mlflows_protocol(document: dict[str, Any]) -> None:
    keyed = dict(zip(FEATURES, SEED_ROWS[0], strict=False))
    split = {"columns": list(FEATURES), "data": SEED_ROWS}
    for good in (
        {"dataframe_split": split},
        {"dataframe_split": {**split, "index": [0, 1]}},
        {"dataframe_split": {"data": SEED_ROWS}},
        {"dataframe_records": [keyed]},
        {"dataframe_records": [{"equipment_id": "pump-0001"}]},
        {"instances": SEED_ROWS},
        {"inputs": [keyed], "params": {"anything": 1}},
        {"inputs": {name: [value] for name, value in keyed.items()}},
    ):
        assert is_valid(document, "InvocationsRequest", good), good
    for bad in (
        {},
        {"dataframe_records": [keyed], "instances": SEED_ROWS},  # exactly one shape
        {"dataframe_records": []},
        {"dataframe_records": [{**keyed, "typo": 1}]},
        {"dataframe_split": {"columns": list(FEATURES)}},
        {"instances": SEED_ROWS, "extra": 1},
        {"instances": SEED_ROWS, "params": [1]},
        {"dataframe_records": [keyed] * 101},
    ):
        assert not is_valid(document, "InvocationsRequest", bad), bad


def test_the_model_name_is_the_only_value_of_its_path_parameter(document: dict[str, Any]) -> None:
    operation = document["paths"]["/v1/models/{model_name}:predict"]["post"]
    (parameter,) = operation["parameters"]
    assert parameter["schema"]["enum"] == [MODEL_NAME]


def test_operation_ids_are_unique(document: dict[str, Any]) -> None:
    ids = [op["operationId"] for item in document["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))


def test_v1_request_schema_follows_the_features(document: dict[str, Any]) -> None:
    keyed = dict(zip(FEATURES, SEED_ROWS[0], strict=False))
    assert is_valid(document, "V1PredictRequest", {"instances": SEED_ROWS})
    assert is_valid(document, "V1PredictRequest", {"inputs": [keyed]})
    assert is_valid(document, "V1PredictRequest", {"instances": [{"equipment_id": "pump-0001"}]})
    assert is_valid(document, "V1PredictRequest", {"instances": [{"equipment_id": "pump-0001", "load_ratio": 0.5}]})
    for bad in (
        {"instances": []},
        {"instances": [SEED_ROWS[0][:9]]},
        {"instances": [{**keyed, "typo": 1}]},
        {"instances": [{"load_ratio": 0.5}]},
        {"instances": ["abc"]},
        {"rows": SEED_ROWS},
        {"instances": [SEED_ROWS[0]] * 101},
    ):
        assert not is_valid(document, "V1PredictRequest", bad), bad


def test_v2_request_schema_follows_the_protocol(document: dict[str, Any]) -> None:
    tensor = {"name": "input-0", "shape": [1, 10], "datatype": "FP64", "data": SEED_ROWS[0]}
    assert is_valid(document, "InferenceRequest", {"inputs": [tensor]})
    assert is_valid(
        document,
        "InferenceRequest",
        {
            "id": "1",
            "inputs": [tensor],
            "outputs": [{"name": "predictions"}],
            "parameters": {"binary_data_output": True},
        },
    )
    binary = {"name": "input-0", "shape": [1, 10], "datatype": "FP32", "parameters": {"binary_data_size": 40}}
    assert is_valid(document, "InferenceRequest", {"inputs": [binary]})
    for bad in (
        {"inputs": []},
        {"inputs": [{**tensor, "datatype": "FP128"}]},
        {"inputs": [{**tensor, "shape": [-1]}]},
        {"id": 1, "inputs": [tensor]},
        # (an output's name is any string, as in the protocol: each model's metadata lists its own outputs, which
        # an output schema may name; the server refuses an unknown one with a 400 naming the model's)
    ):
        assert not is_valid(document, "InferenceRequest", bad), bad


def test_before_the_model_loads_any_feature_row_is_documented_then_the_real_ones() -> None:
    names: list[str] = []
    app = app_with_our_routes(feature_names=lambda: names)
    assert is_valid(app.openapi(), "V1PredictRequest", {"instances": [[1, 2, 3]]})
    names.extend(FEATURES)  # the model has loaded: its signature gives the names
    assert not is_valid(app.openapi(), "V1PredictRequest", {"instances": [[1, 2, 3]]})
    assert app.openapi()["components"]["schemas"]["V1Row"]["minItems"] == len(FEATURES)


@pytest.mark.skipif(not REFERENCE.exists(), reason="the shared OIP reference is not beside the project")
def test_v2_schemas_cover_the_open_inference_protocol(document: dict[str, Any]) -> None:
    import yaml

    oip = yaml.safe_load(REFERENCE.read_text())
    oip_paths = {
        path.replace("${MODEL_NAME}", "{model_name}").replace("${MODEL_VERSION}", "{model_version}")
        for path in oip["paths"]
    }
    for _method, path in OUR_OPERATIONS:
        if path.startswith("/v2/models/") and "versions" in path:
            assert path in oip_paths, path  # ours are the protocol's paths
    theirs, ours = oip["components"]["schemas"], document["components"]["schemas"]
    pairs = {
        "inference_request": "InferenceRequest",
        "request_input": "RequestInput",
        "request_output": "RequestOutput",
        "inference_response": "InferenceResponse",
        "response_output": "ResponseOutput",
        "metadata_model_response": "MetadataModelResponse",
        "metadata_tensor": "MetadataTensor",
    }
    for oip_name, our_name in pairs.items():
        missing = set(theirs[oip_name]["properties"]) - set(ours[our_name]["properties"])
        # "properties" of model metadata is optional and we have none to report.
        assert missing <= {"properties"}, f"{our_name} lacks {missing}"
        if oip_name in ("inference_request", "request_input", "request_output"):
            # A request the protocol requires a field in must not be one we let go without it —
            # except "data", which the binary extension replaces with parameters.binary_data_size.
            assert set(ours[our_name]["required"]) <= set(theirs[oip_name]["required"])
        else:  # what we send must have at least what the protocol requires
            assert set(theirs[oip_name]["required"]) - {"data"} <= set(ours[our_name]["required"])


# ------------------------------------------------------------------------------------------ the server


@pytest.fixture(scope="module")
def served(demo_server: PredictorProcess) -> dict[str, Any]:
    response = httpx.get(f"{demo_server.http_url}/openapi.json", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    document: dict[str, Any] = response.json()
    if "V1PredictRequest" not in document.get("components", {}).get("schemas", {}):
        pytest.fail(
            "GET /openapi.json serves FastAPI's default document: install_openapi is not wired in predictor/server.py"
        )
    return document


def test_the_server_serves_our_document(served: dict[str, Any], demo_server: PredictorProcess) -> None:
    validate_spec(served)
    assert operations(served) == OUR_OPERATIONS
    parameter = served["paths"]["/v2/models/{model_name}/infer"]["post"]["parameters"][0]
    assert parameter["schema"]["enum"] == [demo_server.model_name]
    assert served["components"]["schemas"]["V1Row"]["minItems"] == 10  # from the loaded model's signature


def test_v1_request_and_response_match_the_document(served: dict[str, Any], demo_server: PredictorProcess) -> None:
    body = {"instances": SEED_ROWS}
    assert is_valid(served, "V1PredictRequest", body)
    response = httpx.post(f"{demo_server.http_url}/v1/models/{MODEL_NAME}:predict", json=body, timeout=10)
    assert response.status_code == 200
    validator(served, "V1PredictResponse").validate(response.json())


def test_v2_requests_and_responses_match_the_document(served: dict[str, Any], demo_server: PredictorProcess) -> None:
    url = f"{demo_server.http_url}/v2/models/{MODEL_NAME}/infer"
    body = {"inputs": [{"name": "input-0", "shape": [2, 10], "datatype": "FP64", "data": SEED_ROWS}]}
    assert is_valid(served, "InferenceRequest", body)
    response = httpx.post(url, json=body, timeout=10)
    assert response.status_code == 200
    validator(served, "InferenceResponse").validate(response.json())

    body = {**body, "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}]}
    response = httpx.post(url, json=body, timeout=10)
    length = int(response.headers["inference-header-content-length"])
    assert response.headers["content-type"] == "application/octet-stream"
    validator(served, "InferenceResponse").validate(orjson.loads(response.content[:length]))


@pytest.mark.parametrize(
    "path",
    [
        "/ready",
        "/v2/health/ready",
        f"/v1/models/{MODEL_NAME}",
        f"/v2/models/{MODEL_NAME}",
        f"/v2/models/{MODEL_NAME}/ready",
    ],
)
def test_probe_and_metadata_responses_match_the_document(
    served: dict[str, Any], demo_server: PredictorProcess, path: str
) -> None:
    template = path.replace(MODEL_NAME, "{model_name}")
    response = httpx.get(demo_server.http_url + path, timeout=10)
    schema = served["paths"][template]["get"]["responses"][str(response.status_code)]
    jsonschema.Draft202012Validator({**schema["content"]["application/json"]["schema"], **served}).validate(
        response.json()
    )


def test_invocations_examples_are_served_and_answers_match_the_document(
    served: dict[str, Any], demo_server: PredictorProcess
) -> None:
    examples = served["paths"]["/invocations"]["post"]["requestBody"]["content"]["application/json"]["examples"]
    answers = []
    for shape, example in examples.items():
        response = httpx.post(f"{demo_server.http_url}/invocations", json=example["value"], timeout=10)
        assert response.status_code == 200, f"{shape}: {response.text}"
        validator(served, "InvocationsResponse").validate(response.json())
        answers.append(response.json())
    assert all(answer == answers[0] for answer in answers)  # four shapes of the same row
    assert httpx.get(f"{demo_server.http_url}/ping", timeout=10).status_code == 200


def test_errors_match_the_document(served: dict[str, Any], demo_server: PredictorProcess) -> None:
    response = httpx.post(f"{demo_server.http_url}/v1/models/nope:predict", json={"instances": SEED_ROWS}, timeout=10)
    assert response.status_code == 404
    validator(served, "Error").validate(response.json())


def test_the_document_needs_no_cdn(served: dict[str, Any], demo_server: PredictorProcess) -> None:
    text = orjson.dumps(served).decode()
    assert '"$ref":"http' not in text  # self-contained: every $ref is local
    assert httpx.get(f"{demo_server.http_url}/docs", timeout=10).status_code == 404  # no Swagger UI by default
