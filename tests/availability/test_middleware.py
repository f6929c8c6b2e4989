"""ServeMiddleware: a clean environ, one store deadline per request, and a cap on long responses."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from broker.serve.middleware import SMALL_BODY_BYTES, ServeMiddleware, clean_environ
from broker.store.deadline import remaining_seconds


class Body:
    """A streamed body that records whether the server closed it."""

    def __init__(self, chunks: int, size: int = 65536) -> None:
        self.chunks = chunks
        self.size = size
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        for _ in range(self.chunks):
            yield b"x" * self.size

    def close(self) -> None:
        self.closed = True


class App:
    """A WSGI app answering with ``body`` and the Content-Length it is given."""

    def __init__(self, length: int | None, body: Any) -> None:
        self.length = length
        self.body = body
        self.seen: dict[str, Any] = {}
        self.deadline: float | None = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        self.seen = environ
        self.deadline = remaining_seconds()
        headers = [("Content-Type", "application/octet-stream")]
        if self.length is not None:
            headers.append(("Content-Length", str(self.length)))
        start_response("200 OK", headers)
        return self.body


class Recorder:
    def __init__(self) -> None:
        self.status = ""
        self.headers: list[tuple[str, str]] = []

    def __call__(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        self.status, self.headers = status, headers


ENVIRON = {
    "REQUEST_METHOD": "GET",
    "PATH_INFO": "/data/ds1/x",
    "QUERY_STRING": "",
    "SERVER_PROTOCOL": "HTTP/1.1",
    "REMOTE_ADDR": "127.0.0.1",
    "HTTP_AUTHORIZATION": "Bearer t",
    "wsgi.url_scheme": "http",
    "BROKER_KEYS__ENCRYPTION_SECRET": "do-not-pass-me",
    "HOME": "/root",
    "PATH": "/usr/bin",
}


def test_the_app_never_sees_the_process_environment() -> None:
    app = App(2, [b"ok"])
    ServeMiddleware(app, store_deadline_seconds=2, stream_limit=1)(dict(ENVIRON), Recorder())
    assert "BROKER_KEYS__ENCRYPTION_SECRET" not in app.seen and "HOME" not in app.seen and "PATH" not in app.seen
    assert app.seen["HTTP_AUTHORIZATION"] == "Bearer t" and app.seen["PATH_INFO"] == "/data/ds1/x"
    assert app.seen["wsgi.url_scheme"] == "http"
    assert clean_environ({"REMOTE_ADDR": "1", "SECRET": "x"}) == {"REMOTE_ADDR": "1"}


def test_the_app_runs_inside_one_store_deadline() -> None:
    app = App(2, [b"ok"])
    ServeMiddleware(app, store_deadline_seconds=2, stream_limit=1)(dict(ENVIRON), Recorder())
    assert app.deadline is not None and 1.5 < app.deadline <= 2
    assert remaining_seconds() is None


def test_a_short_body_is_joined_and_never_counts_as_a_stream() -> None:
    middleware = ServeMiddleware(
        App(SMALL_BODY_BYTES, Body(1, SMALL_BODY_BYTES)), store_deadline_seconds=2, stream_limit=1
    )
    answers = [middleware(dict(ENVIRON), Recorder()) for _ in range(5)]
    assert all(isinstance(a, list) and len(a) == 1 and len(a[0]) == SMALL_BODY_BYTES for a in answers)


@pytest.mark.parametrize("length", [None, SMALL_BODY_BYTES + 1], ids=["unknown-length", "long"])
def test_long_bodies_beyond_the_limit_are_refused_with_retry_after_and_closed(length: int | None) -> None:
    bodies = [Body(4) for _ in range(6)]
    apps = iter(bodies)

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        return App(length, next(apps))(environ, start_response)

    middleware = ServeMiddleware(app, store_deadline_seconds=2, stream_limit=2)
    first, second = middleware(dict(ENVIRON), Recorder()), middleware(dict(ENVIRON), Recorder())
    refused = Recorder()
    answer = middleware(dict(ENVIRON), refused)
    assert refused.status.startswith("503") and ("Retry-After", "5") in refused.headers
    assert b'"error": "busy"' in b"".join(answer)
    assert bodies[2].closed  # the refused body was closed unread
    first.close()  # type: ignore[attr-defined]  # one download ends: its slot is free again
    taken = Recorder()
    third = middleware(dict(ENVIRON), taken)
    assert taken.status == "200 OK"
    assert b"".join(third) == b"x" * 4 * 65536  # read to the end: the slot is given back too
    fourth = Recorder()
    middleware(dict(ENVIRON), fourth)
    assert fourth.status == "200 OK"  # the second and this one now stream
    fifth = Recorder()
    middleware(dict(ENVIRON), fifth)
    assert fifth.status.startswith("503")
    second.close()  # type: ignore[attr-defined]
    assert bodies[0].closed and bodies[1].closed


def test_a_generator_app_that_starts_its_response_lazily_is_served() -> None:
    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Length", "5")])
        yield b"hello"

    recorder = Recorder()
    answer = ServeMiddleware(app, store_deadline_seconds=2, stream_limit=1)(dict(ENVIRON), recorder)
    assert recorder.status == "200 OK" and b"".join(answer) == b"hello"
