"""An OTLP/HTTP traces endpoint for the bench's ``ours-traced``: accepts every export (200) and keeps nothing.

Runs on a thread of the harness, started on first use; spans at 1% sampling are a few dozen exports a run, so it
costs the load generator nothing measurable.
"""

from __future__ import annotations

import threading
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Accept(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@cache
def otlp_sink_url() -> str:
    """The endpoint's base URL (``OTEL_EXPORTER_OTLP_ENDPOINT``); the server lives as long as the harness."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Accept)
    threading.Thread(target=server.serve_forever, name="otlp-sink", daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}"
