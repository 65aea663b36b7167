"""The one interface every wire format implements, and the values that cross it.

A codec owns its format end to end: ``decode`` turns a raw request (bytes and headers over REST, the protobuf
message over gRPC) into ``Decoded`` rows against the model's typed ``Schema``; ``encode`` turns the model's
``Result`` into the reply (status, headers and bytes over REST, the protobuf message over gRPC); ``describe``
gives the OpenAPI fragments of its request and response. Parsing and serialisation happen in the codec and
nowhere else: a door only moves bytes, and the model only sees rows and outputs.

Adding a wire format is one module implementing ``Codec`` plus one row in ``serving/endpoints.py``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import numpy as np

from predictor.protocol.rows import Rows
from predictor.protocol.schema import Schema

Json = dict[str, Any]  # a piece of JSON (or of the OpenAPI document)
RawT_contra = TypeVar("RawT_contra", contravariant=True)
ReplyT_co = TypeVar("ReplyT_co", covariant=True)

JSON_TYPES = ("application/json", "application/cloudevents+json", "application/ld+json")
JSON_HEADERS = (("content-type", "application/json"),)
# The values below are made once per request: plain slotted dataclasses (a frozen one sets each field through
# object.__setattr__, which the 1-row hot path measurably pays for).


@dataclass(slots=True)
class RestRequest:
    """A REST request as a door read it: the body, and headers with lower-case names."""

    body: bytes
    headers: Mapping[str, str]


@dataclass(slots=True)
class Decoded:
    """What a request asks for, once its format is read: rows, and what shapes the answer."""

    rows: Rows
    request_id: str | None = None  # the format's own id (v2 ``id``); None: the door takes x-request-id
    requested: dict[str, bool | None] = field(default_factory=dict)  # output name → binary_data, if named
    binary_outputs: bool = False  # v2 binary extension: raw tensors by default
    params: dict[str, Any] | None = None  # inference parameters as sent (the model checks them)


@dataclass(slots=True)
class Result:
    """The model's answer to one request, named and ready to encode."""

    model_name: str
    version: str
    outputs: dict[str, np.ndarray] = field(default_factory=dict)
    filled: dict[int, list[str]] = field(default_factory=dict)  # row → features filled from defaults
    frame_columns: tuple[str, ...] | None = None  # the model answered a DataFrame with these columns
    dict_answer: bool = False  # ... a dict of them, not a DataFrame (what ``/invocations`` writes back)
    explanations: list[dict[str, Any]] | None = None  # set instead of outputs for :explain


@dataclass(slots=True)
class Reply:
    """A REST answer: status, headers (lower-case names) and body."""

    body: bytes
    headers: tuple[tuple[str, str], ...] = JSON_HEADERS
    status: int = 200


@dataclass(frozen=True)
class Description:
    """A format's part of the OpenAPI document for one endpoint."""

    request_body: Json
    ok: Json  # the 200 response
    schemas: dict[str, Json]  # components/schemas it references
    parameters: tuple[Json, ...] = ()  # header parameters beyond the path's


@dataclass(frozen=True)
class DocumentContext:
    """What the document knows of the served model (nothing before it has loaded)."""

    feature_names: Sequence[str] = ()
    entity_key: str | None = None
    max_instances: int | None = None


class Codec(Protocol[RawT_contra, ReplyT_co]):
    #: the format's name: the ``protocol`` of monitoring (prediction log, metrics)
    name: str

    def decode(self, raw: RawT_contra, schema: Schema, outputs: Sequence[str]) -> Decoded:
        """Rows (and the answer's shape) from the raw request; ``BadRequest`` naming the fault otherwise.
        ``outputs``: the names a request may ask for."""
        ...

    def encode(self, decoded: Decoded, result: Result) -> ReplyT_co: ...


class RestCodec(Codec[RestRequest, Reply], Protocol):
    #: the Content-Types its decode reads (a body without one is read as the first: curl -d, tritonclient)
    media_types: tuple[str, ...]
    #: what a 415 tells the caller to send instead
    expects: str
    #: a header that makes any Content-Type acceptable (the v2 binary extension), or None
    binary_header: str | None

    def describe(self, context: DocumentContext) -> Description: ...
