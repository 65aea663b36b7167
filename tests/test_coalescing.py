"""One send() per response (``serving/coalescing.py``) changes no byte a client reads: pipelined requests get
their answers in order, a streamed body is not held back waiting for company, ``Connection: close`` still ends
with the whole body. A real uvicorn server with the installed uvicorn's protocol, over real sockets."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import uvicorn

from predictor.serving.coalescing import CoalescingHttpToolsProtocol

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@asynccontextmanager
async def serving(app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> AsyncIterator[int]:
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, http=CoalescingHttpToolsProtocol, lifespan="off", log_level="warning"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(200):  # bounded: 10 s
            if server.started:
                break
            await asyncio.sleep(0.05)
        assert server.started, "uvicorn did not start"
        yield port
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


async def echo_path(scope: Scope, receive: Receive, send: Send) -> None:
    await receive()
    body = f"you asked for {scope['path']}".encode()
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def read_responses(reader: asyncio.StreamReader, count: int) -> list[bytes]:
    bodies = []
    for _ in range(count):
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        length = next(
            int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
        )
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        bodies.append(await asyncio.wait_for(reader.readexactly(length), 10))
    return bodies


def test_pipelined_requests_get_their_own_answers_in_order() -> None:
    async def session() -> list[bytes]:
        async with serving(echo_path) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"".join(f"GET /{n} HTTP/1.1\r\nhost: x\r\n\r\n".encode() for n in range(5)))
            bodies = await read_responses(reader, 5)
            writer.close()
            return bodies

    assert asyncio.run(session()) == [f"you asked for /{n}".encode() for n in range(5)]


def test_a_streamed_chunk_leaves_before_the_next_is_written() -> None:
    """The first chunk must reach the client while the app still waits for it to arrive: held back for
    company, it never would (the wait is bounded and fails the test)."""

    async def session() -> bytes:
        first_chunk_read = asyncio.Event()

        async def streaming(scope: Scope, receive: Receive, send: Send) -> None:
            await receive()
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": b"first;", "more_body": True})
            await asyncio.wait_for(first_chunk_read.wait(), 10)
            await send({"type": "http.response.body", "body": b"second"})

        async with serving(streaming) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            received = await asyncio.wait_for(reader.readuntil(b"first;\r\n"), 10)  # chunked: "6\r\nfirst;\r\n"
            first_chunk_read.set()
            received += await asyncio.wait_for(reader.readuntil(b"0\r\n\r\n"), 10)
            writer.close()
            return received

    received = asyncio.run(session())
    assert b"first;" in received and b"second" in received


def test_connection_close_ends_after_the_whole_body() -> None:
    async def session() -> bytes:
        async with serving(echo_path) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /last HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            everything = await asyncio.wait_for(reader.read(), 10)  # until the server closes
            writer.close()
            return everything

    everything = asyncio.run(session())
    assert everything.startswith(b"HTTP/1.1 200 OK\r\n") and everything.endswith(b"\r\n\r\nyou asked for /last")
