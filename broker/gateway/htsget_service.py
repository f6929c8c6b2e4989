"""htsget 1.3 tickets over the gateway's datasets: request values in, ticket JSON out (no web framework).

The object an htsget id names is a dataset object, exactly as on the data route
(``<dataset>/<object path>``). For a ticket the service:

1. takes an already made decision (the web adapter asked :meth:`Gateway.decide`, the same
   question every route asks: bearer passport or access token, declared purpose);
2. opens the data file and the index beside it (``.bai`` then ``.csi`` for BAM, ``.tbi`` then
   ``.csi`` for VCF) from the dataset's directory store, with the store's own no-symlink walk;
3. reads header and index with the strict readers of :mod:`broker.gateway.htsget` (why they
   are ours and not pysam: see that package) and keeps the result per file version, so a
   ticket for a cached file reads at most a few BGZF blocks;
4. plans the pieces and builds the ticket, every byte range pointing at the gateway's own
   data route.

Ticket authorization (the choice the issue leaves open): each URL is the data route of the
same object, ``<public base>/data/<dataset>/<path>``, and its ``headers`` carry the caller's
own ``Authorization`` (and ``GA4GH-Purpose`` when one was declared) next to the ``Range``.
So every byte fetched passes through the same decision, metrics and audit as any data
request, and a ticket is worth nothing without the caller's credential: it names no storage
location and carries no credential of its own. Signed URLs were not chosen: they live at most
five minutes, which is shorter than a large region download; a bearer passed through lives
exactly as long as the caller's own token, and revoking the grant stops the download at its
next range.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any, Literal
from urllib.parse import parse_qsl, urlencode

from broker.gateway.c4gh.errors import Crypt4GHError
from broker.gateway.c4gh.keys import NodeKey
from broker.gateway.c4gh.plain import PlainReader, encrypt_stream, encrypted_length
from broker.gateway.c4gh.reencrypt import SEGMENT_SIZE, open_header
from broker.gateway.c4gh.stored import FileReader as C4ghFileReader
from broker.gateway.c4gh.stored import read_header
from broker.gateway.encrypted import KEY_HEADERS, recipient_from
from broker.gateway.htsget import (
    ByteRange,
    Format,
    IndexedFile,
    Inline,
    InvalidInput,
    NotFound,
    Piece,
    Region,
    UnsupportedFormat,
    build_ticket,
    check_regions,
    open_indexed,
    plan,
)
from broker.gateway.htsget.errors import CorruptData, IndexFormatError
from broker.gateway.htsget.limits import DEFAULT_LIMITS, Limits
from broker.gateway.paths import ObjectRef, quote_segments
from broker.gateway.service import PURPOSE_HEADER, Gateway, HeaderLookup, Refusal
from broker.gateway.stores import DirectoryStore, ObjectInfo

Endpoint = Literal["reads", "variants"]
INDEX_SUFFIXES: dict[Format, tuple[str, ...]] = {Format.BAM: (".bai", ".csi"), Format.VCF: (".tbi", ".csi")}
CACHED_FILES = 64
CACHED_PLANS = 512
CACHED_PLAN_INLINE_BYTES = 64 * 1024  # plans with more inline data are not kept (bounds the cache to 32 MiB)
TICKET_CONTENT_TYPE = "application/vnd.ga4gh.htsget.v1.3.0+json; charset=utf-8"


@dataclass(frozen=True)
class HtsgetQuery:
    """One htsget request, already parsed: format, class, regions (None: the whole file)."""

    format: Format
    class_: str | None
    regions: tuple[Region, ...] | None

    def describe(self) -> tuple[str, ...]:
        """The regions asked for, as ``name:start-end`` (0-based, end exclusive) for audit records."""
        if self.class_ == "header":
            return ("header",)
        if self.regions is None:
            return ("*all*",)
        return tuple(
            r.reference_name
            + ("" if r.start is None and r.end is None else f":{r.start or 0}-{'' if r.end is None else r.end}")
            for r in self.regions
        )


class _FdReader:
    """A :class:`~broker.gateway.htsget.reader.RandomReader` over an open regular file (``os.pread``)."""

    def __init__(self, file: IO[bytes], size: int) -> None:
        self._fd = file.fileno()
        self._size = size

    @property
    def size(self) -> int:
        return self._size

    def read(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0:
            raise ValueError("offset and length must be non-negative")
        out = bytearray()
        end = min(offset + length, self._size)
        while offset < end:
            chunk = os.pread(self._fd, end - offset, offset)
            if not chunk:
                break
            out += chunk
            offset += len(chunk)
        return bytes(out)


@dataclass
class HtsgetService:
    """Tickets for one gateway; holds the cache of opened (header + index) files."""

    gateway: Gateway
    limits: Limits = DEFAULT_LIMITS

    def __post_init__(self) -> None:
        self._opened: OrderedDict[tuple[str, ...], IndexedFile] = OrderedDict()
        self._plans: OrderedDict[tuple[object, ...], list[Piece]] = OrderedDict()
        self._lock = threading.Lock()
        self.gateway.region_stream = self.encrypted_region  # the data route answers encrypted ticket URLs

    def ticket(
        self,
        endpoint: Endpoint,
        ref: ObjectRef,
        query: HtsgetQuery,
        headers: HeaderLookup,
        base_url: str,
    ) -> dict[str, Any]:
        """The ticket JSON for an authorised request; raises htsget errors (and gateway Refusals).

        ``base_url`` is the gateway's public base (no trailing '/'): the data route of ``ref`` under
        it is what every byte range of the ticket points at.
        """
        ds, store, prefix = self.gateway.dataset(ref)
        if ds.encryption == "crypt4gh":
            return self._encrypted_ticket(endpoint, ref, store, prefix, query, headers, base_url)
        if not isinstance(store, DirectoryStore):
            raise UnsupportedFormat(
                "htsget_store_unsupported",
                "This dataset's store cannot be read by region; download whole files from the data route.",
            )
        opened = store.open(prefix, ref.segments)
        if opened is None:
            raise NotFound("not_found", "No such object.")
        file, info = opened
        try:
            reader = _FdReader(file, info.size)
            source_key, source = self._indexed(store, prefix, ref, query.format, reader, info)
            pieces = self._plan(source_key, reader, source, query)
        finally:
            file.close()
        url = f"{base_url}/data/{ref.dataset}/{quote_segments(ref.segments)}"
        passed = {name: value for name in ("Authorization", PURPOSE_HEADER) if (value := headers.get(name))}

        def url_for_range(start: int, end: int) -> tuple[str, dict[str, str]]:
            return url, {"Range": f"bytes={start}-{end}", **passed}

        ticket = build_ticket(query.format, pieces, url_for_range)
        # The audit record of a ticket is its decision's (route htsget, with the regions asked for),
        # written before planning: one store write per ticket, as for any data request.
        self.gateway.metrics.htsget_tickets.inc(endpoint, query.format.value, query.class_ or "all")
        return ticket

    # ------------------------------------------------------------------ Crypt4GH files

    def _encrypted_ticket(
        self,
        endpoint: Endpoint,
        ref: ObjectRef,
        store: Any,
        prefix: tuple[str, ...],
        query: HtsgetQuery,
        headers: HeaderLookup,
        base_url: str,
    ) -> dict[str, Any]:
        """One URL: the data route with the query, answered as a new Crypt4GH file of the exact region."""
        try:
            recipient_from(headers)  # 400 with the how-to now, not at the data URL
        except Crypt4GHError as exc:
            raise InvalidInput(exc.code, exc.message) from None
        self._encrypted_pieces(store, prefix, ref, query)  # refusals (NotFound, InvalidRange) come here
        passed = {
            name: value for name in ("Authorization", PURPOSE_HEADER, *KEY_HEADERS) if (value := headers.get(name))
        }
        url = f"{base_url}/data/{ref.dataset}/{quote_segments(ref.segments)}?{encode_query(query)}"
        self.gateway.metrics.htsget_tickets.inc(endpoint, query.format.value, query.class_ or "all")
        return {"htsget": {"format": query.format.value, "urls": [{"url": url, "headers": passed, "class": "body"}]}}

    def _encrypted_pieces(
        self, store: Any, prefix: tuple[str, ...], ref: ObjectRef, query: HtsgetQuery
    ) -> tuple[list[Piece], PlainReader, IO[bytes]]:
        """Plan ``query`` on the plaintext of a Crypt4GH file; returns the pieces, the reader and the open file."""
        reencryptor = self.gateway.reencryptor
        if reencryptor is None or not isinstance(store, DirectoryStore):
            raise UnsupportedFormat("htsget_store_unsupported", "This dataset cannot be read by region here.")
        opened = store.open(prefix, ref.segments)
        if opened is None:
            raise NotFound("not_found", "No such object.")
        file, _ = opened
        try:
            plain = self._plain(file, reencryptor.node_key)
            index = self._encrypted_index(store, prefix, ref, query.format, reencryptor.node_key)
            source = open_indexed(plain, index, query.format, limits=self.limits)
            pieces = plan(plain, source, class_=query.class_, regions=query.regions, limits=self.limits)
        except Crypt4GHError as exc:
            file.close()
            raise Refusal(exc.status, exc.code, exc.message) from None
        except BaseException:
            file.close()
            raise
        return pieces, plain, file

    @staticmethod
    def _plain(file: IO[bytes], node_key: NodeKey) -> PlainReader:
        reader = C4ghFileReader(file.fileno())
        stored = read_header(reader)
        return PlainReader(reader, stored, open_header(stored.header, node_key))

    def _encrypted_index(
        self, store: DirectoryStore, prefix: tuple[str, ...], ref: ObjectRef, fmt: Format, node_key: NodeKey
    ) -> bytes:
        """The index beside ``x.bam.c4gh``: ``x.bam.bai`` (and the like), plain or itself ``.c4gh``."""
        name = ref.segments[-1].removesuffix(".c4gh")
        for suffix in INDEX_SUFFIXES[fmt]:
            for candidate, encrypted in ((name + suffix, False), (name + suffix + ".c4gh", True)):
                found = store.open(prefix, (*ref.segments[:-1], candidate))
                if found is None:
                    continue
                index_file, info = found
                with index_file:
                    if not encrypted:
                        if info.size > self.limits.max_index_bytes:
                            raise IndexFormatError("index_too_large", "the index is larger than this server reads")
                        return _FdReader(index_file, info.size).read(0, info.size)
                    plain = self._plain(index_file, node_key)
                    if plain.size > self.limits.max_index_bytes:
                        raise IndexFormatError("index_too_large", "the index is larger than this server reads")
                    return plain.read(0, plain.size)
        raise NotFound("index_missing", f"No index beside this file ({name}{INDEX_SUFFIXES[fmt][0]} or the like).")

    def encrypted_region(
        self, store: Any, prefix: tuple[str, ...], ref: ObjectRef, raw_query: str, headers: HeaderLookup
    ) -> tuple[bytes, int, Iterator[bytes]] | None:
        """The data route's answer to an encrypted ticket URL: a new Crypt4GH header, the total length, the body.

        None when ``raw_query`` is not an htsget query (the data route then serves the whole file).
        """
        query = decode_query(raw_query)
        if query is None:
            return None
        try:
            recipient = recipient_from(headers)
        except Crypt4GHError as exc:
            raise Refusal(exc.status, exc.code, exc.message) from None
        reencryptor = self.gateway.reencryptor
        assert reencryptor is not None  # checked by _encrypted_pieces
        pieces, plain, file = self._encrypted_pieces(store, prefix, ref, query)
        length = sum(p.end - p.start + 1 if isinstance(p, ByteRange) else len(p.data) for p in pieces)
        header, body = encrypt_stream(_plain_chunks(pieces, plain, file), reencryptor.node_key, recipient)
        return header, len(header) + encrypted_length(length), body

    def _plan(
        self, source_key: tuple[str, ...], reader: _FdReader, source: IndexedFile, query: HtsgetQuery
    ) -> list[Piece]:
        """The pieces for ``query``; kept per file and index version, since planning scans records.

        Genome browsers and pipelines ask for the same windows again and again; a plan depends
        only on the file's bytes, its index and the query, all in the key.
        """
        key = (*source_key, query.class_, query.regions)
        with self._lock:
            found = self._plans.get(key)
            if found is not None:
                self._plans.move_to_end(key)
                return found
        pieces = plan(reader, source, class_=query.class_, regions=query.regions, limits=self.limits)
        if sum(len(p.data) for p in pieces if isinstance(p, Inline)) <= CACHED_PLAN_INLINE_BYTES:
            with self._lock:
                self._plans[key] = pieces
                while len(self._plans) > CACHED_PLANS:
                    self._plans.popitem(last=False)
        return pieces

    def _indexed(
        self,
        store: DirectoryStore,
        prefix: tuple[str, ...],
        ref: ObjectRef,
        fmt: Format,
        reader: _FdReader,
        info: ObjectInfo,
    ) -> tuple[tuple[str, ...], IndexedFile]:
        """Header and index of the file (and their cache key), from the cache when neither changed."""
        name = ref.segments[-1]
        for suffix in INDEX_SUFFIXES[fmt]:
            index_segments = (*ref.segments[:-1], name + suffix)
            found = store.open(prefix, index_segments)
            if found is None:
                continue
            index_file, index_info = found
            key = (store.name, *prefix, *ref.segments, fmt.value, info.version, suffix, index_info.version)
            with self._lock:
                cached = self._opened.get(key)
                if cached is not None:
                    self._opened.move_to_end(key)
            if cached is not None:
                index_file.close()
                return key, cached
            try:
                if index_info.size > self.limits.max_index_bytes:
                    raise IndexFormatError("index_too_large", "the index is larger than this server reads")
                data = _FdReader(index_file, index_info.size).read(0, index_info.size)
            finally:
                index_file.close()
            source = open_indexed(reader, data, fmt, limits=self.limits)
            with self._lock:
                self._opened[key] = source
                while len(self._opened) > CACHED_FILES:
                    self._opened.popitem(last=False)
            return key, source
        raise NotFound(
            "index_missing",
            f"No index beside this file ({' or '.join(name + s for s in INDEX_SUFFIXES[fmt])}); "
            "regions cannot be served without one.",
        )


def _plain_chunks(pieces: list[Piece], plain: PlainReader, file: IO[bytes]) -> Iterator[bytes]:
    """The plaintext of the answer, piece by piece (the stored file closed at the end)."""
    try:
        for piece in pieces:
            if isinstance(piece, Inline):
                yield piece.data
                continue
            offset = piece.start
            while offset <= piece.end:
                data = plain.read(offset, min(SEGMENT_SIZE, piece.end + 1 - offset))
                if not data:
                    raise CorruptData("data_truncated", "the stored file ended inside a planned range")
                yield data
                offset += len(data)
    finally:
        file.close()


REGION_PARAM = "htsget_region"
FORMAT_PARAM = "htsget_format"
CLASS_PARAM = "htsget_class"


def encode_query(query: HtsgetQuery) -> str:
    """An htsget query as data-route parameters (regions as ``start-end:name``, empty for open ends)."""
    params: list[tuple[str, str]] = [(FORMAT_PARAM, query.format.value)]
    if query.class_ is not None:
        params.append((CLASS_PARAM, query.class_))
    for region in query.regions or ():
        start = "" if region.start is None else str(region.start)
        end = "" if region.end is None else str(region.end)
        params.append((REGION_PARAM, f"{start}-{end}:{region.reference_name}"))
    return urlencode(params)


def decode_query(raw: str) -> HtsgetQuery | None:
    """The query :func:`encode_query` wrote, checked again (it is in a URL anyone can edit); None if absent."""
    pairs = parse_qsl(raw, keep_blank_values=True)
    names = {name for name, _ in pairs}
    if FORMAT_PARAM not in names:
        return None
    values = [value for name, value in pairs if name == FORMAT_PARAM]
    classes = [value for name, value in pairs if name == CLASS_PARAM]
    if len(values) != 1 or len(classes) > 1:
        raise InvalidInput("bad_parameter", "an htsget data URL names one format and at most one class")
    fmt = Format(values[0]) if values[0] in {f.value for f in Format} else None
    if fmt is None:
        raise UnsupportedFormat("unsupported_format", "the htsget data URL names an unknown format")
    regions: list[Region] = []
    for name, value in pairs:
        if name != REGION_PARAM:
            continue
        span, sep, reference = value.partition(":")
        start, dash, end = span.partition("-")
        if (
            not sep
            or not dash
            or not all(v == "" or (v.isascii() and v.isdigit() and len(v) <= 19) for v in (start, end))
        ):
            raise InvalidInput("bad_region", "an htsget data URL region is malformed")
        regions.append(Region(reference, int(start) if start else None, int(end) if end else None))
    if regions:
        check_regions(regions)
    if classes and classes[0] != "header":
        raise InvalidInput("bad_class", "class must be 'header' when given")
    return HtsgetQuery(fmt, classes[0] if classes else None, tuple(regions) if regions else None)


def post_regions(value: object, limits: Limits = DEFAULT_LIMITS) -> tuple[Region, ...] | None:
    """The ``regions`` of an htsget POST body, checked (POST rules: ``start < end``)."""
    if value is None:
        return None
    if not isinstance(value, list):
        raise InvalidInput("bad_regions", "regions must be a list of objects")
    if len(value) > limits.max_regions:
        raise InvalidInput("too_many_regions", f"at most {limits.max_regions} regions may be requested at once")
    regions: list[Region] = []
    for item in value:
        if not isinstance(item, dict) or not set(item) <= {"referenceName", "start", "end"}:
            raise InvalidInput("bad_regions", "each region is an object with referenceName, start and end only")
        name = item.get("referenceName")
        if not isinstance(name, str):
            raise InvalidInput("bad_reference_name", "each region needs a referenceName string")
        start, end = item.get("start"), item.get("end")
        for label, number in (("start", start), ("end", end)):
            if number is not None and (not isinstance(number, int) or isinstance(number, bool)):
                raise InvalidInput("bad_position", f"{label} must be an integer")
        regions.append(Region(name, start, end))
    check_regions(regions, limits=limits, allow_empty=False)
    return tuple(regions)
