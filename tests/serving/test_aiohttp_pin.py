"""The aiohttp internals ingot.serving.aiohttp_pin relies on (see its docstring). These fail,
loudly, when an aiohttp upgrade changes them: then adapt that module before moving the pin."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import aiohttp
from aiohttp import web

from ingot.serving.aiohttp_pin import HandlerAppRunner, HeaderTimeoutHandler

ROOT = Path(__file__).resolve().parents[2]
REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def test_the_installed_aiohttp_is_the_pinned_one():
    pin = re.search(r'"aiohttp==([^"]+)"', (ROOT / "pyproject.toml").read_text())
    assert pin is not None, "pyproject.toml pins aiohttp exactly"
    assert aiohttp.__version__ == pin.group(1)


async def _ok(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def _with_server(check, header_timeout: float = 0.3):  # type: ignore[no-untyped-def]
    app = web.Application()
    app.router.add_get("/", _ok)
    runner = HandlerAppRunner(app, handler_class=HeaderTimeoutHandler, header_timeout=header_timeout,
                              handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        await check(runner, runner.addresses[0][1])
    finally:
        await runner.cleanup()


async def _answer(reader: asyncio.StreamReader) -> bytes:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    length = int(re.search(rb"(?i)content-length: (\d+)", head).group(1))  # type: ignore[union-attr]
    return head + await reader.readexactly(length)


def test_connections_use_the_handler_class_with_the_runner_arguments():
    async def check(runner, port):  # type: ignore[no-untyped-def]
        handler = runner.server()
        assert isinstance(handler, HeaderTimeoutHandler) and handler.header_timeout == 0.3
        for name in ("_request_count", "_messages", "_waiter", "_force_close"):
            assert hasattr(handler, name), f"aiohttp's RequestHandler has no {name} any more"
        assert handler._request_count == 0 and not handler._messages and handler._force_close is False

    asyncio.run(_with_server(check))


def test_incomplete_headers_time_out_and_complete_requests_do_not():
    async def check(runner, port):  # type: ignore[no-untyped-def]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(REQUEST)
        assert b"200 OK" in await _answer(reader)
        await asyncio.sleep(0.6)  # idle keep-alive longer than the header timeout: still open
        writer.write(REQUEST[:10])
        await asyncio.sleep(0.05)
        writer.write(REQUEST[10:])  # a request in two pieces, well within the timeout
        assert b"200 OK" in await _answer(reader)
        writer.write(REQUEST[:10])  # and one that stops half way: closed after the timeout
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()

    asyncio.run(_with_server(check))
