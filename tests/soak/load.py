"""The soak's mixed load: a few paced clients per door (v1, v2 JSON, gRPC, ``/invocations``, v1 by equipment id),
each call recorded with when it was sent, how it ended and its request id (to find it in the prediction log and
the payload events afterwards)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from dataclasses import dataclass

import grpc
import httpx
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

from predictor.demo.columns import FEATURE_NAMES
from tests.grpc_calls import infer_request
from tests.pyfunc_models import rest_bodies
from tests.servers import MODEL_NAME, SEED_ROWS

DOORS = ("v1", "v2", "grpc", "invocations", "by-id")
REFUSED = "refused"  # no connection: the listener was closed (a restart): never accepted, nothing to lose
TRANSPORT = "transport"  # accepted, then no answer (a worker killed under it)
GRPC_DEADLINE_S = 10  # a call the server never answers costs the soak this much
GRPC_REFUSED = ("failed to connect", "connection refused")
SERVER_SAID = ("model", "feature", "shutting down", "retry")  # words of our own 503 messages


@dataclass(frozen=True, slots=True)
class Outcome:
    sent: float  # seconds since the soak began
    door: str
    status: str  # "200", "503", ..., a gRPC code name, REFUSED or TRANSPORT
    latency_ms: float
    request_id: str

    @property
    def ok(self) -> bool:
        return self.status in ("200", "OK")


@dataclass
class Target:
    """Where the load goes; the soak points it at a new server after a restart."""

    http_url: str
    grpc_target: str


class MixedLoad:
    def __init__(self, target: Target, equipment_ids: list[str], rate_per_door: float, began: float) -> None:
        self.target = target
        self.ids = itertools.cycle(equipment_ids)
        self.interval_s = 1 / rate_per_door
        self.began = began
        self.outcomes: list[Outcome] = []
        self._numbers = itertools.count()
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        async with httpx.AsyncClient(timeout=30) as client:
            await asyncio.gather(*(self._door(door, client) for door in DOORS))

    async def _door(self, door: str, client: httpx.AsyncClient) -> None:
        """One paced client: a call every interval (or as soon as the last one ended, if it took longer)."""
        channel: grpc.aio.Channel | None = None
        channel_target = ""
        try:
            while not self._stop.is_set():
                request_id = f"soak-{door}-{next(self._numbers)}"
                started = time.monotonic()
                if door == "grpc":
                    if channel is None or channel_target != self.target.grpc_target:
                        if channel is not None:
                            await channel.close()
                        channel_target = self.target.grpc_target
                        channel = grpc.aio.insecure_channel(channel_target)
                    status = await self._grpc(GRPCInferenceServiceStub(channel), request_id)
                else:
                    status = await self._rest(client, door, request_id)
                ended = time.monotonic()
                self.outcomes.append(Outcome(started - self.began, door, status, (ended - started) * 1000, request_id))
                pause = self.interval_s - (ended - started)
                if pause > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), pause)
        finally:
            if channel is not None:
                await channel.close()

    async def _rest(self, client: httpx.AsyncClient, door: str, request_id: str) -> str:
        if door == "by-id":
            path, body = f"/v1/models/{MODEL_NAME}:predict", {"instances": [{"equipment_id": next(self.ids)}]}
        else:
            path, body = rest_bodies(MODEL_NAME, dict(zip(FEATURE_NAMES, SEED_ROWS[0], strict=True)))[door]
        try:
            response = await client.post(self.target.http_url + path, json=body, headers={"x-request-id": request_id})
        except httpx.ConnectError:
            return REFUSED
        except httpx.HTTPError:
            return TRANSPORT
        return str(response.status_code)

    async def _grpc(self, stub: GRPCInferenceServiceStub, request_id: str) -> str:
        request: pb.ModelInferRequest = infer_request(MODEL_NAME, SEED_ROWS[:1])
        request.id = request_id
        try:
            await stub.ModelInfer(request, timeout=GRPC_DEADLINE_S)
        except grpc.aio.AioRpcError as exc:
            details = (exc.details() or "").lower()
            if exc.code() == grpc.StatusCode.UNAVAILABLE and any(w in details for w in GRPC_REFUSED):
                return REFUSED
            if exc.code() == grpc.StatusCode.UNAVAILABLE and not any(w in details for w in SERVER_SAID):
                return TRANSPORT  # the channel's own failure (socket closed, GOAWAY, ...), not an answer of ours
            return exc.code().name  # the server's own answer (UNAVAILABLE is also its 503)
        return "OK"
