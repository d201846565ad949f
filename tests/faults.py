"""Fault injection. FaultTransport: under the service's shared httpx client, one target server misbehaves
on demand, every other request goes to the real network (the real llama.cpp server, the Ollama stand-in).
BlackholeProxy: below HTTP, for clients we do not build (qdrant-client's)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Literal

import httpx

from tests.servers import free_port

Mode = Literal["refuse", "status500", "garbage", "slow", "cut"]


class _CutStream(httpx.AsyncByteStream):
    """The real response body, broken off after `after` chunks like a server that died mid-answer."""

    def __init__(self, inner: httpx.AsyncByteStream, after: int) -> None:
        self._inner, self._after = inner, after

    async def __aiter__(self) -> AsyncIterator[bytes]:
        sent = 0
        async for chunk in self._inner:
            yield chunk
            sent += 1
            if sent >= self._after:
                raise httpx.RemoteProtocolError("peer closed connection without sending complete message body")

    async def aclose(self) -> None:
        await self._inner.aclose()


class FaultTransport(httpx.AsyncBaseTransport):
    def __init__(
        self,
        target_url: str,
        mode: Mode | None = None,
        *,
        delay_s: float = 0.0,
        cut_after: int = 8,
        path: str | None = None,
    ):
        """`path`: only requests to that path misbehave (vLLM's /wake_up, say); None: every request."""
        url = httpx.URL(target_url)
        self.target = (url.host, url.port)
        self.path = path
        self.mode: Mode | None = mode
        self.delay_s = delay_s
        self.cut_after = cut_after
        self.hits = 0  # requests that reached the target while a fault was set
        self._real = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if (
            (request.url.host, request.url.port) != self.target
            or self.mode is None
            or (self.path is not None and request.url.path != self.path)
        ):
            return await self._real.handle_async_request(request)
        self.hits += 1
        if self.mode == "refuse":
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        if self.mode == "status500":
            return httpx.Response(500, json={"error": {"message": "internal error"}}, request=request)
        if self.mode == "garbage":
            return httpx.Response(200, content=b"data: {\"choi\x00\n\n", request=request,
                                  headers={"content-type": "text/event-stream"})  # fmt: skip
        if self.mode == "slow":
            await asyncio.sleep(self.delay_s)
            return await self._real.handle_async_request(request)
        response = await self._real.handle_async_request(request)  # "cut"
        assert isinstance(response.stream, httpx.AsyncByteStream)
        return httpx.Response(response.status_code, headers=response.headers, request=request,
                              stream=_CutStream(response.stream, self.cut_after))  # fmt: skip

    async def aclose(self) -> None:
        await self._real.aclose()


class BlackholeProxy:
    """A TCP proxy on 127.0.0.1 in a background thread, for faults below HTTP. With `blackhole` set it
    swallows every byte in both directions, like a network partition or a hung server: connections open,
    requests go out, no answer ever comes. Cleared, it forwards again (new and open connections alike).
    If the target refuses, the client's connection is closed at once, as a dead server's would be."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.blackhole = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        listen = asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self._server = asyncio.run_coroutine_threadsafe(listen, self._loop).result(timeout=10)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                if not self.blackhole:
                    dst.write(data)
                    await dst.drain()
        except OSError:
            pass
        finally:
            dst.close()

    def stop(self) -> None:
        async def shutdown() -> None:
            self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
