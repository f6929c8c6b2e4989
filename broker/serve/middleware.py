"""The WSGI layer ``serve`` puts around the broker's app: a clean environ, a store deadline, a cap on streams.

:class:`ServeMiddleware` does three things per request, in this order:

1. **A clean environ.** The app sees only the CGI variables, the ``HTTP_*`` request headers and
   namespaced extensions (``wsgi.*`` and the like). Some servers (granian) copy the whole process
   environment into every request's environ, and ours holds ``BROKER_*`` secrets; nothing that
   prints or forwards an environ may ever see them.
2. **One store deadline.** The app runs inside :func:`broker.store.deadline.store_deadline`, so all
   its store calls share one deadline (with a kernel wrapped in
   :class:`~broker.store.deadline.DeadlineKernel`; without one the scope costs nothing).
3. **A cap on long responses.** A response whose body is a short, known length is joined into one
   piece, so the server sends it without holding a thread. A longer or unknown-length body (a
   download) is streamed by the server from a thread that stays taken until the client has read
   it all: a slow reader holds a thread for as long as it likes. At most ``stream_limit`` such
   bodies are in flight per process; another is answered 503 with ``Retry-After`` (its body is
   closed unread), so the remaining threads always serve tokens, decisions and pages.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any

from broker.store.deadline import store_deadline

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]

#: Bodies up to this many bytes with a Content-Length are joined and sent without a thread.
SMALL_BODY_BYTES = 64 * 1024
#: The CGI variables a WSGI app may see (PEP 3333 and the usual extensions); plus HTTP_* and dotted keys.
CGI_KEYS = frozenset(
    {
        "REQUEST_METHOD",
        "SCRIPT_NAME",
        "PATH_INFO",
        "QUERY_STRING",
        "CONTENT_TYPE",
        "CONTENT_LENGTH",
        "SERVER_NAME",
        "SERVER_PORT",
        "SERVER_PROTOCOL",
        "SERVER_SOFTWARE",
        "GATEWAY_INTERFACE",
        "REMOTE_ADDR",
        "REMOTE_PORT",
        "REMOTE_HOST",
        "RAW_URI",
        "REQUEST_URI",
        "HTTPS",
    }
)
BUSY_RETRY_AFTER_SECONDS = 5


def clean_environ(environ: dict[str, Any]) -> dict[str, Any]:
    """Only the request's own keys of ``environ`` (see the module docstring)."""
    return {k: v for k, v in environ.items() if k in CGI_KEYS or k.startswith("HTTP_") or "." in k}


class _Stream:
    """A streamed body that gives its slot back when the server closes it (or reads it to the end)."""

    def __init__(self, body: Iterable[bytes], release: Callable[[], None]) -> None:
        self._body = body
        self._iterator = iter(body)
        self._release: Callable[[], None] | None = release

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        try:
            return next(self._iterator)
        except BaseException:
            self._give_back()
            raise

    def _give_back(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            release()

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            self._give_back()


def _close(body: Iterable[bytes]) -> None:
    close = getattr(body, "close", None)
    if close is not None:
        close()


class ServeMiddleware:
    """Wraps ``app`` (module docstring): ``store_deadline_seconds`` per request, ``stream_limit`` per process."""

    def __init__(self, app: WSGIApp, *, store_deadline_seconds: float, stream_limit: int) -> None:
        if stream_limit < 1:
            raise ValueError(f"stream_limit must be at least 1, got {stream_limit!r}")
        self.app = app
        self.store_deadline_seconds = store_deadline_seconds
        self.stream_limit = stream_limit
        self._streams = threading.BoundedSemaphore(stream_limit)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        captured: list[Any] = []

        def capture(status: str, headers: list[tuple[str, str]], exc_info: ExcInfo | None = None) -> Any:
            captured[:] = [status, headers, exc_info]
            return _no_write

        with store_deadline(self.store_deadline_seconds):
            body = self.app(clean_environ(environ), capture)
            if not captured:  # a generator app calls start_response at its first item
                body = _Primed(body)
        if not captured:
            _close(body)
            raise RuntimeError("the app returned a body without calling start_response")
        status, headers, exc_info = captured
        length = _content_length(headers)
        if isinstance(body, list) or (length is not None and length <= SMALL_BODY_BYTES):
            try:
                data = b"".join(body) if not isinstance(body, list) else body
            finally:
                if not isinstance(body, list):
                    _close(body)
            start_response(status, headers, exc_info)
            return data if isinstance(data, list) else [data]
        if not self._streams.acquire(blocking=False):
            _close(body)
            return self._busy(start_response)
        start_response(status, headers, exc_info)
        return _Stream(body, self._streams.release)

    def _busy(self, start_response: StartResponse) -> list[bytes]:
        payload = json.dumps(
            {"error": "busy", "message": "The broker is streaming as many downloads as it may; retry shortly."}
        ).encode()
        start_response(
            "503 Service Unavailable",
            [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(payload))),
                ("Retry-After", str(BUSY_RETRY_AFTER_SECONDS)),
                ("Cache-Control", "no-store"),
            ],
        )
        return [payload]


class _Primed:
    """A body whose first item is read now (so start_response has been called), then the rest."""

    def __init__(self, body: Iterable[bytes]) -> None:
        self._body = body
        self._iterator = iter(body)
        self._first: list[bytes] = []
        for item in self._iterator:
            self._first.append(item)
            break

    def __iter__(self) -> Iterator[bytes]:
        yield from self._first
        yield from self._iterator

    def close(self) -> None:
        _close(self._body)


def _content_length(headers: list[tuple[str, str]]) -> int | None:
    for name, value in headers:
        if name.lower() == "content-length":
            return int(value) if value.isdigit() else None
    return None


def _no_write(data: bytes) -> None:
    raise RuntimeError("the write() callable of start_response is not supported; return the body instead")
