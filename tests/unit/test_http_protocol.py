"""The gateway's HTTP protocol (gateway/http_protocol.py): one write per response, same bytes.

Served over a Unix socketpair by uvicorn's own protocol machinery (the unit tier has no TCP),
with a counting wrapper around the real transport to see how many writes each answer took.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from uvicorn.server import ServerState

from gateway.http_protocol import HeaderHoldingTransport, OneWriteHttpToolsProtocol

App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


class CountingTransport:
    """The real transport, counting the writes that reach it."""

    def __init__(self, transport: Any) -> None:
        self.transport = transport
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        self.transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


@asynccontextmanager
async def served(app: App) -> AsyncIterator[tuple[socket.socket, CountingTransport]]:
    config = uvicorn.Config(app, lifespan="off", log_config=None, access_log=False)
    config.load()
    server_end, client_end = socket.socketpair()
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.connect_accepted_socket(
        lambda: OneWriteHttpToolsProtocol(config, ServerState(), {}), server_end
    )
    holding = protocol.transport
    assert isinstance(holding, HeaderHoldingTransport)
    counting = CountingTransport(transport)
    holding._transport = counting  # type: ignore[assignment]  # count what leaves
    client_end.setblocking(False)
    try:
        yield client_end, counting
    finally:
        transport.close()
        client_end.close()


async def read_until(sock: socket.socket, marker: bytes, timeout_s: float = 5.0) -> bytes:
    loop = asyncio.get_running_loop()
    data = b""
    async with asyncio.timeout(timeout_s):
        while marker not in data:
            data += await loop.sock_recv(sock, 65536)
    return data


async def json_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await receive()
    body = b'{"ok":true}'
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def test_a_response_leaves_in_one_write_with_the_same_bytes() -> None:
    async with served(json_app) as (client, counting):
        loop = asyncio.get_running_loop()
        for _ in range(3):  # keep-alive: every response on the connection, not just the first
            await loop.sock_sendall(client, b"POST /x HTTP/1.1\r\nhost: t\r\ncontent-length: 2\r\n\r\n{}")
            data = await read_until(client, b'{"ok":true}')
            assert data.startswith(b"HTTP/1.1 200 OK\r\n")
            assert b"content-length: 11\r\n" in data
            assert data.endswith(b'\r\n\r\n{"ok":true}')
        assert len(counting.writes) == 3
        assert counting.writes[0] == data


async def test_a_streamed_response_streams() -> None:
    """Chunks are not held: the first arrives while the app still waits to send the second."""
    go_on = asyncio.Event()

    async def streaming_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        await go_on.wait()
        await send({"type": "http.response.body", "body": b"second", "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    async with served(streaming_app) as (client, counting):
        await asyncio.get_running_loop().sock_sendall(client, b"GET / HTTP/1.1\r\nhost: t\r\n\r\n")
        head = await read_until(client, b"first\r\n")
        assert b"transfer-encoding: chunked" in head
        assert len(counting.writes) == 1  # header block and first chunk together
        go_on.set()
        rest = await read_until(client, b"0\r\n\r\n")
        assert b"second" in rest
        assert len(counting.writes) == 3


async def test_headers_of_a_response_with_no_body_are_sent() -> None:
    async def no_content(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async with served(no_content) as (client, counting):
        await asyncio.get_running_loop().sock_sendall(client, b"GET / HTTP/1.1\r\nhost: t\r\n\r\n")
        data = await read_until(client, b"\r\n\r\n")
        assert data.startswith(b"HTTP/1.1 204 No Content\r\n")
        assert len(counting.writes) == 1


async def test_held_headers_are_sent_before_the_connection_closes() -> None:
    """An app that fails after starting its response: uvicorn closes the connection, and what
    was held leaves first."""

    async def fails_after_start(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]})
        raise RuntimeError("boom")

    async with served(fails_after_start) as (client, counting):
        await asyncio.get_running_loop().sock_sendall(client, b"GET / HTTP/1.1\r\nhost: t\r\n\r\n")
        data = await read_until(client, b"\r\n\r\n")
        assert data.startswith(b"HTTP/1.1 200 OK\r\n")
        assert counting.writes == [data]


async def test_a_malformed_request_still_gets_its_400() -> None:
    async with served(json_app) as (client, _counting):
        await asyncio.get_running_loop().sock_sendall(client, b"NOT HTTP AT ALL\r\n\r\n")
        data = await read_until(client, b"Invalid HTTP request")
        assert data.startswith(b"HTTP/1.1 400 ")
