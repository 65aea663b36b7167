"""The status table in errors.py's docstring is what the classes do, and every error is classified once."""

from __future__ import annotations

import re
from http import HTTPStatus

from grpc import StatusCode
from kserve.errors import InvalidInput, ModelNotFound, ModelNotReady

from predictor import errors
from predictor.errors import RateLimited, Unauthorized, answer, error_classes

ROW = re.compile(r"^[\s│├└─]*(?P<name>[A-Za-z]+)\s+(?P<http>\d{3})\s+(?P<grpc>[A-Z_]+)\s+\S")


def _docstring_rows() -> dict[str, tuple[int, str]]:
    rows = {}
    for line in (errors.__doc__ or "").splitlines():
        if match := ROW.match(line):
            rows[match["name"]] = (int(match["http"]), match["grpc"])
    return rows


def test_the_docstring_table_lists_every_error_class_with_its_real_http_status_and_grpc_code() -> None:
    actual = {cls.__name__: (int(cls.status), cls.grpc_code.name) for cls in error_classes()}
    assert _docstring_rows() == actual


def test_every_error_class_says_when_it_is_raised() -> None:
    assert [cls.__name__ for cls in error_classes() if not (cls.__doc__ or "").strip()] == []


def test_our_errors_keep_their_message_and_headers() -> None:
    limited = answer(RateLimited("slow down", retry_after_s=2.2))
    assert (limited.status, limited.grpc_code, limited.message) == (
        HTTPStatus.TOO_MANY_REQUESTS,
        StatusCode.RESOURCE_EXHAUSTED,
        "slow down",
    )
    assert limited.headers == {"Retry-After": "3"}
    assert answer(Unauthorized("no token")).headers["WWW-Authenticate"].startswith("Bearer")


def test_kserves_own_errors_are_classified_by_meaning() -> None:
    assert answer(InvalidInput("bad")).grpc_code == StatusCode.INVALID_ARGUMENT
    assert answer(ModelNotFound("m")).status == HTTPStatus.NOT_FOUND
    assert answer(ModelNotReady("m")).grpc_code == StatusCode.UNAVAILABLE


def test_an_unexpected_exception_is_a_500_that_does_not_leak_its_text() -> None:
    unexpected = answer(KeyError("/secret/path"))
    assert (unexpected.status, unexpected.grpc_code) == (HTTPStatus.INTERNAL_SERVER_ERROR, StatusCode.INTERNAL)
    assert "secret" not in unexpected.message


def test_the_openapi_documents_error_responses_are_the_tables_words() -> None:
    from predictor.serving.openapi import ERRORS

    for cls in error_classes():
        assert " ".join((cls.__doc__ or "").split()) in ERRORS[str(int(cls.status))], cls.__name__
        assert cls.grpc_code.name in ERRORS[str(int(cls.status))], cls.__name__


def test_each_of_our_errors_is_answered_whole_by_its_class() -> None:
    from predictor.errors import Answer, BadRequest, ModelNotReadyError

    assert answer(BadRequest("row 3 is short")) == Answer(
        HTTPStatus.BAD_REQUEST, StatusCode.INVALID_ARGUMENT, "row 3 is short", "bad_request", {}
    )
    assert answer(Unauthorized("no token")) == Answer(
        HTTPStatus.UNAUTHORIZED,
        StatusCode.UNAUTHENTICATED,
        "no token",
        "unauthorized",
        {"WWW-Authenticate": 'Bearer realm="predictor"'},
    )
    not_ready = ModelNotReadyError("loading")
    assert (str(not_ready), not_ready.reason, not_ready.error_msg, not_ready.args) == (
        "loading",
        "loading",
        "loading",
        ("loading",),
    )
    assert answer(not_ready) == Answer(
        HTTPStatus.SERVICE_UNAVAILABLE, StatusCode.UNAVAILABLE, "loading", "not_ready", {}
    )


def test_retry_after_is_whole_seconds_rounded_up_and_at_least_one() -> None:
    waits = (0.0, 0.2, 1.0, 1.0001, 2.2, 2.5, 3.0)
    assert [RateLimited("x", s).headers["Retry-After"] for s in waits] == ["1", "1", "1", "2", "3", "3", "3"]


def test_an_unknown_entity_error_names_every_id() -> None:
    from predictor.errors import Answer, EntityNotFound

    one = EntityNotFound("equipment_id", ["EQ-9"])
    advice = ": check the id, or run `feast materialize` if the equipment is new"
    assert str(one) == "no features stored for equipment_id EQ-9" + advice and one.missing_ids == ["EQ-9"]
    assert answer(one) == Answer(HTTPStatus.NOT_FOUND, StatusCode.NOT_FOUND, str(one), "entity_not_found", {})
    ids = [f"E{i}" for i in range(250)]
    assert str(EntityNotFound("id", ids)) == f"no features stored for id {', '.join(ids)}{advice}"


def test_kserves_own_errors_are_answered_whole_with_their_reason() -> None:
    from predictor.errors import Answer

    assert answer(InvalidInput("bad shape")) == Answer(
        HTTPStatus.BAD_REQUEST, StatusCode.INVALID_ARGUMENT, "bad shape", "bad_request", {}
    )
    assert answer(ModelNotFound("m")) == Answer(
        HTTPStatus.NOT_FOUND, StatusCode.NOT_FOUND, "Model with name m does not exist.", "model_not_found", {}
    )
    assert answer(ModelNotReady("m")) == Answer(
        HTTPStatus.SERVICE_UNAVAILABLE, StatusCode.UNAVAILABLE, "Model with name m is not ready.", "not_ready", {}
    )
    assert answer(KeyError("/secret/path")) == Answer(
        HTTPStatus.INTERNAL_SERVER_ERROR,
        StatusCode.INTERNAL,
        "internal server error (the server log has the details)",
        "internal",
        {},
    )


def test_the_readme_table_has_one_row_per_class_in_the_docstrings_order() -> None:
    lines = errors.markdown_table().splitlines()
    assert lines[:2] == ["| HTTP | gRPC | error | when |", "|---|---|---|---|"]
    assert lines[2] == (
        "| 500 | `INTERNAL` | `internal` | The model failed on a valid request, or a stored feature's type disagrees "
        "with its signature (the base class; also any unexpected failure). |"
    )
    assert lines[3] == (
        "| 400 | `INVALID_ARGUMENT` | `bad_request` | Malformed body, wrong shape, type or count, bad JSON: the "
        "message names the fault. |"
    )
    assert len(lines) == 2 + len(error_classes())
    assert [line.split("`")[3] for line in lines[2:]] == [cls.error_type for cls in error_classes()]
