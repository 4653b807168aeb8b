"""uvicorn's httptools protocol, with each response leaving in one ``write`` instead of two.

Why: uvicorn writes a response's header block when the app sends ``http.response.start`` and
its body on ``http.response.body``; uvloop sends each ``transport.write`` at once, so every
answer cost two ``write`` syscalls and two TCP segments (and a second wake-up of the client).
In an open-loop run those writes were a tenth of the gateway thread's time (bench/RESULTS.md,
issue 9). Here the transport holds the header block and sends it with the first body write, as
one buffer: the same bytes in the same order. A streamed response still streams; its headers
leave with its first chunk (or when the connection closes, if none comes).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class HeaderHoldingTransport:
    """A transport that holds a response's header block and sends it with the first body write.

    A write is the header block when it is the first one of a response in progress (uvicorn
    writes the status line and headers, then each body chunk, then marks the response complete).
    Everything else is the real transport's (``__getattr__``); closing sends what is held first.
    """

    __slots__ = ("_held", "_held_for", "_protocol", "_transport")

    def __init__(self, transport: asyncio.Transport, protocol: HttpToolsProtocol) -> None:
        self._transport = transport
        self._protocol = protocol
        self._held: bytes | None = None
        self._held_for: int = 0
        """id() of the response whose header block was held last (never held twice)."""

    def write(self, data: bytes | bytearray | memoryview) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held + data)
            return
        cycle = self._protocol.cycle
        if (
            cycle is not None
            and cycle.response_started
            and not cycle.response_complete
            and id(cycle) != self._held_for
        ):
            self._held_for = id(cycle)
            self._held = bytes(data)
            return
        self._transport.write(data)

    def writelines(self, chunks: list[bytes]) -> None:
        for chunk in chunks:
            self.write(chunk)

    def flush(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held)

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + len(self._held or b"")

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class OneWriteHttpToolsProtocol(HttpToolsProtocol):
    """Pass as ``uvicorn.Config(http=...)``: uvicorn's protocol on a :class:`HeaderHoldingTransport`."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # type: ignore[override]
        super().connection_made(HeaderHoldingTransport(transport, self))  # type: ignore[arg-type]

    def on_response_complete(self) -> None:
        self.transport.flush()  # type: ignore[attr-defined]  # a safety net: the body write sent it
        super().on_response_complete()
