"""Payload events: each inference call's request and response as CloudEvents to an HTTP sink, like KServe's logger.

Binary mode, as KServe's payload logger sends them: the body as received or sent, with its own Content-Type, and
the event in headers — ``ce-specversion: 1.0``, ``ce-type`` ``org.kubeflow.serving.inference.request`` or
``.response``, ``ce-id`` the call's request id (the same for both events of a call), ``ce-source``, ``ce-time``,
and the extensions ``ce-inferenceservicename`` (the model's name), ``ce-modelversion``, ``ce-endpoint`` (the
protocol), ``ce-component: predictor``, ``ce-namespace`` (``POD_NAMESPACE``, when set) and ``ce-traceid`` (when
tracing is on).

Off the request path: ``submit`` only puts the event on a bounded queue (never blocks, never raises); one thread
sends. While the sink is down or slow, events go to a disk spool (``--payload_log_spool``: one file per event,
written whole then renamed), retried with backoff (0.5 s doubling to 10 s), and sent in order once the sink
answers again — also those a previous run left there, and on graceful shutdown whatever is still queued is sent or
spooled. Delivery is at least once: nothing accepted is lost; an event is dropped only when the queue is full or
the spool has reached its size, counted on ``payload_events_total{outcome="dropped"}`` and logged.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson

log = logging.getLogger(__name__)

REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"
MODES = ("all", "request", "response")
BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 8.0, 10.0)
SEND_TIMEOUT_S = 2.0
QUEUE_EVENTS = 10_000
SUFFIX = ".event"


@dataclass(frozen=True)
class PayloadEvent:
    headers: dict[str, str]  # ce-* and content-type
    body: bytes

    def encode(self) -> bytes:
        """The spool's form: one JSON line of headers, then the body."""
        return orjson.dumps(self.headers) + b"\n" + self.body

    @classmethod
    def decode(cls, raw: bytes) -> PayloadEvent:
        head, _, body = raw.partition(b"\n")
        return cls(dict(orjson.loads(head)), body)


class PayloadLogger:
    def __init__(
        self,
        url: str,
        mode: str = "all",
        spool: Path | None = None,
        spool_max_bytes: int = 512 * 1024 * 1024,
        on_outcome: Callable[[str, int], None] | None = None,
        client: httpx.Client | None = None,
    ) -> None:
        """``on_outcome(outcome, n)``: n events were sent, spooled or dropped (a metric counts them)."""
        if mode not in MODES:
            raise ValueError(f"payload log mode must be one of {MODES}, not {mode!r}")
        self.url = url
        self.mode = mode
        self.spool = spool
        self.spool_max_bytes = spool_max_bytes
        self._on_outcome = on_outcome or (lambda outcome, n: None)
        self._client = client or httpx.Client(timeout=SEND_TIMEOUT_S)
        self._queue: queue.Queue[PayloadEvent | None] = queue.Queue(QUEUE_EVENTS)
        self._source = f"predictor/{socket.gethostname()}"
        self._namespace = os.environ.get("POD_NAMESPACE")
        self._sequence = itertools.count()
        self._closed = False
        self._spool_the_rest = False  # shutdown ran out of time to send: every event left goes to the spool
        self._stop_seen = False  # close()'s end-of-queue mark was taken off the queue by a spool drain
        self._down_until = 0.0  # while the sink is down: the monotonic time of the next try
        self._failures = 0
        self._spool_files = 0  # events waiting in the spool, and their bytes (counted, not listed, per event)
        self._spool_bytes = 0
        if spool is not None:
            spool.mkdir(parents=True, exist_ok=True)
            waiting = list(spool.glob(f"*{SUFFIX}"))  # a previous run's: sent first
            self._spool_files, self._spool_bytes = len(waiting), sum(path.stat().st_size for path in waiting)
        self._thread = threading.Thread(target=self._run, name="payload-events", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------------------ request path
    def submit(
        self,
        request_id: str,
        model: str,
        version: str,
        protocol: str,
        request: tuple[bytes, str] | None,
        response: tuple[bytes, str] | None,
        trace_id: str | None = None,
    ) -> None:
        """One call's events (``(body, content type)`` each; None: not logged by the mode or not known)."""
        if self._closed:
            return
        common = {
            "ce-specversion": "1.0",
            "ce-id": request_id,
            "ce-source": self._source,
            "ce-time": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "ce-inferenceservicename": model,
            "ce-modelversion": version,
            "ce-endpoint": protocol,
            "ce-component": "predictor",
        }
        if self._namespace:
            common["ce-namespace"] = self._namespace
        if trace_id:
            common["ce-traceid"] = trace_id
        for kind, payload, wanted in (
            (REQUEST_TYPE, request, self.mode in ("all", "request")),
            (RESPONSE_TYPE, response, self.mode in ("all", "response")),
        ):
            if not wanted or payload is None:
                continue
            body, content_type = payload
            event = PayloadEvent({**common, "ce-type": kind, "content-type": content_type}, body)
            try:
                self._queue.put_nowait(event)
            except queue.Full:
                self._drop(1, "the payload event queue is full (the sink is too slow and no spool is set)")

    # ------------------------------------------------------------------------------ the sender
    def _run(self) -> None:
        while True:
            self._drain_spool()  # after each event, not only in a lull: steady load never pauses for half a second
            if self._stop_seen:  # the drain took close()'s mark off the queue
                return
            try:
                event = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            if event is None:
                return
            self._deliver(event)

    def _deliver(self, event: PayloadEvent) -> None:
        """Send it now, or keep it: in the spool (in order behind what waits there), or retried in memory."""
        if self._spool_the_rest:
            assert self.spool is not None
            self._to_spool(event)
            return
        if self._spooled() or time.monotonic() < self._down_until:
            if self.spool is not None:
                self._to_spool(event)
                return
            if not self._closed:
                self._wait_for_sink()
        while not self._send(event):
            if self.spool is not None:
                self._to_spool(event)
                return
            if self._closed:
                self._drop(1, "the sink did not answer before shutdown and no spool is set")
                return
            self._wait_for_sink()

    def _send(self, event: PayloadEvent) -> bool:
        try:
            answer = self._client.post(self.url, content=event.body, headers=event.headers)
        except httpx.HTTPError as exc:
            return self._failed(f"{type(exc).__name__}: {exc}")
        except RuntimeError as exc:  # the client closed under us: close() ran out of time; the spool keeps it
            return self._failed(f"closed: {exc}")
        if answer.status_code >= 500 or answer.status_code == 429:
            return self._failed(f"HTTP {answer.status_code}")
        if answer.status_code >= 400:  # the sink refuses this event for good: retrying would not change it
            self._drop(1, f"the sink refused an event with HTTP {answer.status_code}")
            return True
        if self._failures:
            log.info("payload sink %s answers again", self.url)
        self._failures, self._down_until = 0, 0.0
        self._on_outcome("sent", 1)
        return True

    def _failed(self, why: str) -> bool:
        if not self._failures:
            log.warning("payload sink %s unreachable (%s): %s", self.url, why, "spooling" if self.spool else "retrying")
        self._down_until = time.monotonic() + BACKOFF_S[min(self._failures, len(BACKOFF_S) - 1)]
        self._failures += 1
        return False

    def _wait_for_sink(self) -> None:
        time.sleep(max(0.0, self._down_until - time.monotonic()))

    # ------------------------------------------------------------------------------ the spool
    def _spooled(self) -> bool:
        return self._spool_files > 0

    def _to_spool(self, event: PayloadEvent) -> None:
        assert self.spool is not None
        raw = event.encode()
        if self._spool_bytes + len(raw) > self.spool_max_bytes:
            self._drop(1, f"the payload spool {self.spool} is full ({self.spool_max_bytes} bytes)")
            return
        name = f"{time.time_ns():020d}-{next(self._sequence):08d}"
        partial = self.spool / f"{name}.partial"
        partial.write_bytes(raw)
        partial.replace(self.spool / f"{name}{SUFFIX}")  # whole or absent: a crash never leaves half an event
        self._spool_files += 1
        self._spool_bytes += len(raw)
        self._on_outcome("spooled", 1)

    def _drain_spool(self) -> None:
        """Send what waits in the spool, oldest first, while the sink answers — and until a shutdown runs out of
        time (``_spool_the_rest``): then the spool stays for the next run, and the events still queued behind this
        drain are spooled after it instead of lost with the process (found by the soak: a sink back at the very
        moment of a SIGTERM, a spool of thousands, the queue's 99 events gone).

        Events accepted while the spool drains wait on disk behind it, not in memory: a drain of thousands takes
        seconds to minutes, and a worker killed meanwhile (SIGKILL, OOM) would take a queue of them along (found by
        the soak: 22 s of events lost with a worker killed while its spool of a sink outage drained)."""
        if self.spool is None or not self._spool_files or time.monotonic() < self._down_until:
            return
        for path in sorted(self.spool.glob(f"*{SUFFIX}")):
            if self._spool_the_rest:
                return
            self._spool_queued()
            try:
                raw = path.read_bytes()
                event = PayloadEvent.decode(raw)
            except (OSError, ValueError) as exc:
                log.error("unreadable spooled payload event %s (%s): dropped", path, exc)
                self._unspool(path, 0)
                self._on_outcome("dropped", 1)
                continue
            if not self._send(event):
                return
            self._unspool(path, len(raw))

    def _spool_queued(self) -> None:
        """Move what the queue holds to the spool (behind the events already there), up to close()'s mark."""
        while not self._stop_seen:
            try:
                event = self._queue.get_nowait()
            except queue.Empty:
                return
            if event is None:
                self._stop_seen = True
                return
            self._to_spool(event)

    def _unspool(self, path: Path, size: int) -> None:
        path.unlink(missing_ok=True)
        self._spool_files = max(0, self._spool_files - 1)
        self._spool_bytes = max(0, self._spool_bytes - size)

    def _drop(self, count: int, why: str) -> None:
        log.error("payload events dropped: %s", why)
        self._on_outcome("dropped", count)

    # ------------------------------------------------------------------------------ shutdown
    def close(self, timeout_s: float = 10.0) -> None:
        """Stop accepting; send everything accepted within ``timeout_s``, then spool what is still queued (the next
        run sends it): a slow sink at shutdown must not lose the events of calls already answered."""
        self._closed = True
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=timeout_s)
        self._thread.join(timeout_s)
        if self._thread.is_alive() and self.spool is not None:
            self._spool_the_rest = True  # out of time for the network: the disk takes the rest, in order
            self._thread.join(timeout_s)
        elif self.spool is not None:  # the sender finished in time: what the spool still holds goes now
            self._drain_spool()
        self._client.close()
