"""Data stores behind the gateway: a local folder, or an HTTP server we proxy to.

Both are reached only with an object key that :mod:`broker.gateway.paths` produced and
the authorizer approved; the store adds the dataset's configured prefix and nothing in
the request chooses where we connect (THREAT-MODEL PX-05).

``DirectoryStore`` opens the file once and describes it from that open descriptor (size,
strong ETag, Last-Modified), so the bytes sent are the bytes described; bodies are file
wrappers a WSGI server can hand to ``sendfile`` (gunicorn does), or bounded reads.

``HttpStore`` forwards an allow-list of request headers (``Range`` re-serialised from
parsed numbers, ``If-Range``, ``If-None-Match``, ``If-Modified-Since``) plus the
store's own credential headers from settings, never the client's ``Authorization`` or
cookies (PX-03); it never follows redirects (PX-04) nor reads proxy settings or ``.netrc``
from the environment; it relays an allow-list of response headers after removing
hop-by-hop fields and every field the upstream's ``Connection`` names (PX-06), refuses
header values with control characters (PX-08, 502), never decodes content (PX-13), and
when the upstream body ends early or breaks, raises so the server aborts the connection
before the declared length is met: the client sees a truncated transfer, never padding (PX-14).
"""

from __future__ import annotations

import errno
import logging
import os
import re
import stat
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import IO, Any

import requests
import urllib3

from broker.errors import BrokerError
from broker.gateway.metrics import GatewayMetrics
from broker.gateway.paths import quote_segments
from broker.gateway.settings import DataStoreSettings
from broker.net import http as net

log = logging.getLogger("broker.gateway.stores")

OCTET_STREAM = "application/octet-stream"
USER_AGENT = "ga4gh-broker-gateway"
# RFC 9110 7.6.1 and the fields every proxy treats as hop-by-hop.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "proxy-authenticate",
        "proxy-authorization",
    }
)
# Response fields relayed from an upstream (after hop-by-hop removal); everything else is dropped,
# notably Set-Cookie, Location, Cache-Control and X-Accel-* (an upstream must never steer nginx).
RELAYED_RESPONSE_HEADERS = (
    "content-length",
    "content-range",
    "content-type",
    "etag",
    "last-modified",
    "accept-ranges",
    "content-encoding",
)
_FIELD_VALUE = re.compile(r"[\x20-\x7e\t]*")
_CONTENT_RANGE = re.compile(r"bytes (\d{1,19})-(\d{1,19})/(\d{1,19}|\*)|bytes \*/\d{1,19}")
_DIGITS = re.compile(r"\d{1,19}")


class StoreError(BrokerError):
    """The store could not answer (502 bad upstream answer, 504 upstream timeout)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message, status=status, code=code)


class UpstreamBroken(BrokerError):
    """The upstream body broke or ended early after headers were sent; the server must abort."""

    status = 502
    code = "upstream_broken"


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What we tell the client about an object: size and validators."""

    size: int
    etag: str | None
    last_modified: float | None
    version: str  # changes whenever the bytes may have changed (cache key for checksums)


# --------------------------------------------------------------------------- directory


class BoundedFile:
    """An open file positioned at ``start`` that reads at most ``length`` bytes.

    Exposes ``fileno`` so a WSGI server's ``sendfile`` path sends from the current offset
    for ``Content-Length`` bytes; servers that iterate instead get bounded reads.
    """

    def __init__(self, file: IO[bytes], start: int, length: int) -> None:
        self._file = file
        self._left = length
        file.seek(start)

    def fileno(self) -> int:
        return self._file.fileno()

    def read(self, size: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        want = self._left if size < 0 else min(size, self._left)
        data = self._file.read(want)
        self._left -= len(data)
        return data

    def close(self) -> None:
        self._file.close()


class DirectoryStore:
    """Objects are regular files under a dataset's folder, reached without following symlinks.

    The object path is walked one segment at a time with ``openat`` and ``O_NOFOLLOW``
    from a descriptor of the dataset's folder, so nothing below that folder can lead out
    of it (a planted symlink, even one swapped in between check and use, is refused), in
    line with nginx's ``disable_symlinks on`` for the offload location. Symlinks in the
    configured folder path itself are the operator's business and are followed.
    """

    kind = "directory"
    _DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
    _MISSING = frozenset({errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.EACCES, errno.EISDIR, errno.ENXIO})

    def __init__(self, name: str, settings: DataStoreSettings) -> None:
        assert settings.path is not None
        self.name = name
        self.settings = settings
        self.root = settings.path

    def open(self, prefix: tuple[str, ...], segments: tuple[str, ...]) -> tuple[IO[bytes], ObjectInfo] | None:
        """Open the object for reading; None if there is no regular file there (or only via a symlink)."""
        base = os.path.join(self.root, *prefix)
        # O_NONBLOCK: opening a FIFO planted in the folder must not hang the worker.
        file_flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        dir_fd = -1
        fd = -1
        try:
            if len(segments) == 1:
                # One segment: O_NOFOLLOW on the last component is the whole check (the
                # components before it are the configured folder).
                fd = os.open(os.path.join(base, segments[0]), file_flags)
            else:
                dir_fd = os.open(base, self._DIR_FLAGS)
                for segment in segments[:-1]:
                    next_fd = os.open(segment, self._DIR_FLAGS | os.O_NOFOLLOW, dir_fd=dir_fd)
                    os.close(dir_fd)
                    dir_fd = next_fd
                fd = os.open(segments[-1], file_flags, dir_fd=dir_fd)
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                os.close(fd)
                return None
            # (O_NONBLOCK has no effect on reads of a regular file; no need to clear it.)
            file = open(fd, "rb", buffering=0)  # noqa: SIM115 - returned to the caller, closed by the body
        except OSError as exc:
            if fd >= 0:
                os.close(fd)
            if exc.errno in self._MISSING:
                return None
            raise
        finally:
            if dir_fd >= 0:
                os.close(dir_fd)
        return file, _info(st)

    def head(self, prefix: tuple[str, ...], segments: tuple[str, ...]) -> ObjectInfo | None:
        opened = self.open(prefix, segments)
        if opened is None:
            return None
        file, info = opened
        file.close()
        return info

    def iter_object(
        self, prefix: tuple[str, ...], segments: tuple[str, ...], chunk: int
    ) -> tuple[ObjectInfo, Iterator[bytes]] | None:
        opened = self.open(prefix, segments)
        if opened is None:
            return None
        file, info = opened
        return info, read_range(file, 0, info.size, chunk)


def _info(st: os.stat_result) -> ObjectInfo:
    # Strong validator from what changes when the bytes change: inode, size, mtime in ns.
    tag = f"{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}"
    return ObjectInfo(
        size=st.st_size,
        etag=f'"{tag}"',
        last_modified=float(int(st.st_mtime)),
        version=f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}",
    )


def read_range(file: IO[bytes], start: int, length: int, chunk: int) -> Iterator[bytes]:
    """Yield ``length`` bytes from ``start`` in chunks of at most ``chunk``; close the file after.

    A file that shrank under us ends the iteration with :class:`UpstreamBroken` rather
    than padding: the server then aborts the connection short of Content-Length.
    """
    try:
        file.seek(start)
        left = length
        while left > 0:
            data = file.read(min(chunk, left))
            if not data:
                raise UpstreamBroken("the file is shorter than when it was opened")
            left -= len(data)
            yield data
    finally:
        file.close()


# --------------------------------------------------------------------------- http


@dataclass
class UpstreamReply:
    """An upstream answer we relay: status, allow-listed headers, and a body iterator."""

    status: int
    headers: dict[str, str]
    body: Iterator[bytes]
    length: int | None

    def close(self) -> None:
        close = getattr(self.body, "close", None)
        if close is not None:
            close()


class HttpStore:
    """Objects are ``base_url + quote(prefix/path)`` on an HTTP server."""

    kind = "http"

    def __init__(
        self, name: str, settings: DataStoreSettings, metrics: GatewayMetrics | None = None, pool_size: int = 16
    ) -> None:
        assert settings.base_url is not None
        self.name = name
        self.settings = settings
        self.base_url = settings.base_url if settings.base_url.endswith("/") else settings.base_url + "/"
        self.metrics = metrics
        session = net.new_session(pool_size)  # nothing from the environment, no cookies, no retries
        session.headers.clear()
        self._client = net.HttpClient(session, USER_AGENT)
        # The operator names this store by its full address, often on a private network: plain http
        # to it is allowed (never to a URL that came from a request).
        self._limits = net.Limits(
            connect_seconds=settings.connect_timeout_seconds,
            read_seconds=settings.read_timeout_seconds,
            total_seconds=settings.connect_timeout_seconds + settings.read_timeout_seconds,
            max_bytes=None,
            allow_http_loopback=True,
            allow_plain_http=True,
        )

    def url_for(self, segments: tuple[str, ...]) -> str:
        return self.base_url + quote_segments(segments)

    def fetch(self, segments: tuple[str, ...], method: str, forward: Mapping[str, str], chunk: int) -> UpstreamReply:
        """Send one request upstream and return the reply to relay (status 200/206/304/404/416).

        Raises :class:`StoreError` for anything else: redirects, upstream errors, timeouts,
        malformed headers.
        """
        headers = {**self.settings.header_values(), **forward}
        started = time.monotonic()
        try:
            response = self._client.open(method, self.url_for(segments), self._limits, headers=headers)
        except net.NetError as exc:
            if exc.reason == "timeout":
                raise StoreError(504, "upstream_timeout", "The data store did not answer in time.") from None
            log.warning("upstream %s unreachable: %s", self.name, exc.reason)
            raise StoreError(502, "upstream_unreachable", "The data store could not be reached.") from None
        finally:
            if self.metrics is not None:
                self.metrics.upstream_latency.observe(time.monotonic() - started, self.name)
        try:
            return self._relay(response, method, chunk)
        except BaseException:
            response.close()
            raise

    def _relay(self, response: requests.Response, method: str, chunk: int) -> UpstreamReply:
        status = response.status_code
        if 300 <= status < 400 and status != 304:
            raise StoreError(502, "upstream_redirect", "The data store answered with a redirect; not followed.")
        if status not in (200, 206, 304, 404, 416):
            log.warning("upstream %s answered %d", self.name, status)
            raise StoreError(502, "upstream_error", f"The data store answered {status}.")
        headers = relay_headers(response.raw.headers.items())
        if status == 404:
            response.close()
            return UpstreamReply(404, {}, iter(()), 0)
        length: int | None = None
        if "content-length" in headers:
            if not _DIGITS.fullmatch(headers["content-length"]):
                raise StoreError(502, "bad_upstream_header", "The data store sent an invalid Content-Length.")
            length = int(headers["content-length"])
        if "content-range" in headers and not _CONTENT_RANGE.fullmatch(headers["content-range"]):
            raise StoreError(502, "bad_upstream_header", "The data store sent an invalid Content-Range.")
        if (
            status == 206
            and "content-range" not in headers
            and not headers.get("content-type", "").startswith("multipart/byteranges")
        ):
            raise StoreError(502, "bad_upstream_header", "The data store sent 206 without Content-Range.")
        if status != 206 or not headers.get("content-type", "").startswith("multipart/byteranges"):
            headers["content-type"] = OCTET_STREAM  # never let an upstream choose how a browser renders bytes
        if method == "HEAD" or status in (304,):
            response.close()
            return UpstreamReply(status, headers, iter(()), length)
        body = _relay_body(response, length, chunk)
        # Wait for the first bytes before committing to a status: a store that fails right
        # away is then a clean 502, and only a failure after bytes flowed is a cut transfer.
        try:
            first = next(body, b"")
        except UpstreamBroken:
            raise StoreError(502, "upstream_broken", "The data store failed before sending data.") from None
        return UpstreamReply(status, headers, _prepend(first, body), length)

    def head(self, prefix: tuple[str, ...], segments: tuple[str, ...]) -> ObjectInfo | None:
        reply = self.fetch(prefix + segments, "HEAD", {}, 65536)
        if reply.status == 404:
            return None
        return _upstream_info(reply)

    def iter_object(
        self, prefix: tuple[str, ...], segments: tuple[str, ...], chunk: int
    ) -> tuple[ObjectInfo, Iterator[bytes]] | None:
        reply = self.fetch(prefix + segments, "GET", {}, chunk)
        if reply.status == 404:
            return None
        if reply.status != 200:
            reply.close()
            raise StoreError(502, "upstream_error", f"The data store answered {reply.status} to a full read.")
        return _upstream_info(reply), reply.body


def _upstream_info(reply: UpstreamReply) -> ObjectInfo:
    if reply.length is None:
        reply.close()
        raise StoreError(502, "bad_upstream_header", "The data store sent no Content-Length.")
    last_modified: float | None = None
    if "last-modified" in reply.headers:
        try:
            last_modified = parsedate_to_datetime(reply.headers["last-modified"]).timestamp()
        except (TypeError, ValueError):
            last_modified = None
    etag = reply.headers.get("etag")
    version = f"{reply.length}:{etag}:{reply.headers.get('last-modified')}" if (etag or last_modified) else ""
    return ObjectInfo(size=reply.length, etag=etag, last_modified=last_modified, version=version)


def relay_headers(items: Any) -> dict[str, str]:
    """Upstream response fields we pass on: hop-by-hop and Connection-named fields removed,
    then an allow-list; a value with a control character is a 502 (never a response split)."""
    fields: list[tuple[str, str]] = [(str(k).lower(), str(v)) for k, v in items]
    nominated = set(HOP_BY_HOP)
    for name, value in fields:
        if name == "connection":
            nominated.update(token.strip().lower() for token in value.split(","))
    out: dict[str, str] = {}
    for name, value in fields:
        if name in nominated or name not in RELAYED_RESPONSE_HEADERS:
            continue
        if not _FIELD_VALUE.fullmatch(value):
            raise StoreError(502, "bad_upstream_header", "The data store sent a header with control characters.")
        if name in out:
            raise StoreError(502, "bad_upstream_header", f"The data store sent {name} twice.")
        out[name] = value
    return out


def _relay_body(response: requests.Response, length: int | None, chunk: int) -> Iterator[bytes]:
    """Yield the upstream body undecoded; raise UpstreamBroken on any shortfall or error."""
    sent = 0
    try:
        for data in response.raw.stream(chunk, decode_content=False):
            sent += len(data)
            if length is not None and sent > length:
                raise UpstreamBroken("the data store sent more bytes than it declared")
            yield data
        if length is not None and sent != length:
            raise UpstreamBroken(f"the data store ended after {sent} of {length} bytes")
    except (urllib3.exceptions.HTTPError, requests.RequestException, OSError) as exc:
        raise UpstreamBroken(f"the data store broke off after {sent} bytes: {exc.__class__.__name__}") from None
    finally:
        response.close()


def _prepend(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    try:
        if first:
            yield first
        yield from rest
    finally:
        close = getattr(rest, "close", None)
        if close is not None:
            close()


def open_stores(stores: Mapping[str, DataStoreSettings], metrics: GatewayMetrics | None) -> dict[str, Any]:
    """Build every configured store (no connection is made until a request needs one)."""
    built: dict[str, Any] = {}
    for name, cfg in stores.items():
        if cfg.kind == "directory":
            if not Path(cfg.path or "").is_dir():
                log.warning("gateway store %s: folder %s does not exist (yet)", name, cfg.path)
            built[name] = DirectoryStore(name, cfg)
        else:
            built[name] = HttpStore(name, cfg, metrics)
    return built
