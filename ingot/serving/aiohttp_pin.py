"""The aiohttp internals the REST front end relies on, in one place.

aiohttp offers no public hook to answer its HTTP parser's errors (a malformed request line or
headers) in our own format, nor a read timeout for a request's headers (slow loris), nor a way
to choose the connection handler class of an `AppRunner`. These three need aiohttp's internals;
everything else in ingot.serving uses its public API. What is relied on, all as in aiohttp 3.14
(pinned exactly in pyproject.toml, and checked by tests/serving/test_aiohttp_pin.py, which fails
when an upgrade changes any of it):

- `AppRunner._make_server()` returns the `web.Server` that is the protocol factory of its sites,
  and `web.Server.__call__` builds `RequestHandler(self, loop=self._loop, **self._kwargs)`: a
  subclass of the server with another `__call__` makes connections use another handler class;
- `RequestHandler.data_received` counts each parsed request in `_request_count`; `_waiter` is
  set while the handler waits for the next request and `_messages` holds parsed ones not yet
  handled; `_force_close` is set once the connection is to close;
- `RequestHandler.handle_error(request, status, exc, message)` builds the answer to a request
  the parser refused or a handler failed on.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler


class HeaderTimeoutHandler(RequestHandler):
    """A connection handler with a read timeout for request headers: once a request's first byte
    arrives while the connection waits for one, its headers must be complete within
    `header_timeout` s, else `headers_timed_out()` is called (subclasses answer and close)."""

    def __init__(self, manager: Any, *, header_timeout: float = 10.0, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self.header_timeout = header_timeout
        self._header_timer: asyncio.TimerHandle | None = None

    def data_received(self, data: bytes) -> None:
        before = self._request_count
        super().data_received(data)
        if self._request_count != before:
            self._cancel_header_timer()
        elif (self._header_timer is None and data and self._waiter is not None
              and not self._force_close and self.header_timeout > 0):
            self._header_timer = asyncio.get_running_loop().call_later(self.header_timeout, self._header_timer_fired)

    def _header_timer_fired(self) -> None:
        self._header_timer = None
        if self.transport is None or self._force_close or self._messages or self._waiter is None:
            return  # the request arrived, or the connection is closing anyway
        self.headers_timed_out()

    def headers_timed_out(self) -> None:
        self.force_close()

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def connection_lost(self, exc: BaseException | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)


class HandlerAppRunner(web.AppRunner):
    """An AppRunner whose connections use `handler_class` (a RequestHandler subclass) with the
    runner's keyword arguments."""

    def __init__(self, app: web.Application, *, handler_class: type[RequestHandler], **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.handler_class = handler_class

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _HandlerServer  # same state, only the handler factory differs
        server.handler_class = self.handler_class  # type: ignore[attr-defined]
        return server


class _HandlerServer(web.Server):
    handler_class: type[RequestHandler]

    def __call__(self) -> RequestHandler:
        return self.handler_class(self, loop=self._loop, **self._kwargs)
