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
        assert (cls.__doc__ or "").strip() in ERRORS[str(int(cls.status))], cls.__name__
        assert cls.grpc_code.name in ERRORS[str(int(cls.status))], cls.__name__
