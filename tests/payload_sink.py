"""A real HTTP sink for payload events (CloudEvents in binary mode), run in the test's process: it keeps every
event's headers and body, and can be taken down and brought back on the same port (tests/test_payload_events.py,
the soak)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.servers import free_port


class Sink:
    """An HTTP endpoint keeping every event posted to it; ``stop`` and ``start`` take it down and up on one port."""

    def __init__(self) -> None:
        self.port = free_port()  # kept across stop() and start(): the sender keeps its URL
        self.events: list[tuple[dict[str, str], bytes]] = []
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None
        self.connections: set[socket.socket] = set()  # open keep-alive connections: a sink going down drops them

    def start(self) -> None:
        events, lock, connections = self.events, self.lock, self.connections

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a real sink: the logger sends over one connection

            def setup(self) -> None:
                super().setup()
                with lock:
                    connections.add(self.connection)

            def finish(self) -> None:
                with lock:
                    connections.discard(self.connection)
                super().finish()

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with lock:
                    events.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Down for real: no new connection, and the open ones cut (their handlers would go on serving them)."""
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        with self.lock:
            open_connections, self.connections = list(self.connections), set()
        for connection in open_connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/events"

    def of(self, request_id: str) -> dict[str, tuple[dict[str, str], bytes]]:
        with self.lock:
            return {h["ce-type"]: (h, b) for h, b in self.events if h.get("ce-id") == request_id}

    def wait_for(self, request_ids: list[str], timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(len(self.of(request_id)) == 2 for request_id in request_ids):
                return
            time.sleep(0.05)
        missing = [r for r in request_ids if len(self.of(r)) != 2]
        raise AssertionError(f"{len(missing)} calls without both events after {timeout_s} s, e.g. {missing[:3]}")
