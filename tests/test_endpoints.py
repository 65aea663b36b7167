"""Which requests the HTTP door answers as inference calls: exactly the paths FastAPI's routes for them would
have matched, all derived from the endpoint table.

What it answers is checked end to end by the serving, bad-request, access-control, fuzz and client tests,
which send these requests to a real server; here only the dispatch, which no request can show apart.
"""

from __future__ import annotations

import pytest

from predictor.serving.endpoints import ENDPOINTS, InferenceMatcher

MATCHER = InferenceMatcher()


def match(path: str) -> tuple[str, str | None, str | None] | None:
    found = MATCHER.match(path)
    return None if found is None else (found.endpoint.handler, found.model_name, found.model_version)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/v1/models/m:predict", ("v1_predict", "m", None)),
        ("/v1/models/a:predict:predict", ("v1_predict", "a:predict", None)),  # as Starlette's [^/]+ matches it
        ("/v2/models/m/infer", ("v2_infer", "m", None)),
        ("/v2/models/m/versions/3/infer", ("v2_infer", "m", "3")),
        ("/v1/models/m:explain", ("v1_explain", "m", None)),
        ("/invocations", ("invocations", None, None)),
    ],
)
def test_the_inference_paths_are_taken(path: str, expected: tuple[str, str, str | None]) -> None:
    assert match(path) == expected


@pytest.mark.parametrize(
    "path",
    [
        "/v1/models/:predict",
        "/v1/models/a/b:predict",
        "/v1/models/m",
        "/v2/models//infer",
        "/v2/models/m/versions//infer",
        "/v2/models/m/versions/3/extra/infer",
        "/v2/models/m/ready",
        "/v2/models/m/infer/",
        "/invocations/",
        "/v2/models/m/ready",
    ],
)
def test_every_other_path_goes_to_the_app(path: str) -> None:
    assert match(path) is None


def test_the_table_s_inference_rows_are_the_ones_matched() -> None:
    for endpoint in ENDPOINTS:
        concrete = endpoint.path.replace("{model_name}", "m").replace("{model_version}", "1")
        matched = match(concrete)
        assert (matched is not None) == endpoint.inference, endpoint.path
        if matched is not None:
            assert matched[0] == endpoint.handler, endpoint.path
