"""The enforcement point: path -> credentials -> decision -> existence -> bytes.

One :class:`Gateway` per app holds the settings, the injected authorizer, the stores,
metrics, the URL-signing key and the checksum cache. Every route (streaming, offload,
decision endpoint, DRS) goes through :meth:`Gateway.decide`, so all modes refuse the same
things in the same order:

1. the raw request target is parsed once (400 for anything ambiguous, PX-01/PX-05);
2. credentials are read: ``Authorization: Bearer`` or a signed URL, never both, never a
   token in the query (400, PX-18); query parameters other than a signed URL's are ignored
   (htsget clients and genome browsers send their own), and the declared data-use purpose
   (:data:`PURPOSE_HEADER`) is read and checked strictly (400 ``invalid_purpose``);
3. the authorizer decides (401 with ``WWW-Authenticate``, 403 with a reason code and,
   where settings allow, the required-visas document; an authorizer exception is a 503,
   never an allow);
4. only then is existence checked (404), so a caller without access cannot tell which
   objects exist (PX-17);
5. bytes flow with ``Cache-Control: private, no-store`` (PX-16).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import socket
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import IO, Any, Protocol, cast
from urllib.parse import parse_qsl, quote

from flask import Response

from broker.errors import BrokerError
from broker.gateway import ranges, signed_urls
from broker.gateway.authorize import (
    AUTHORIZER_FAILED,
    INVALID_TOKEN,
    MISSING_TOKEN,
    SIGNED_URL,
    AccessDecision,
    Authorizer,
)
from broker.gateway.c4gh.errors import Crypt4GHError
from broker.gateway.c4gh.keys import RecipientKey
from broker.gateway.c4gh.reencrypt import Reencrypted
from broker.gateway.c4gh.served import Part, iter_parts
from broker.gateway.c4gh.stored import FileReader
from broker.gateway.checksums import ChecksumCache
from broker.gateway.encrypted import Reencryptor, load_key, recipient_from, served_etag
from broker.gateway.metrics import GatewayMetrics
from broker.gateway.paths import ObjectRef, PathError, Target, parse_data_target, validate_object_path
from broker.gateway.settings import DatasetSettings, GatewaySettings
from broker.gateway.stores import (
    OCTET_STREAM,
    BoundedFile,
    DirectoryStore,
    HttpStore,
    ObjectInfo,
    StoreError,
    UpstreamBroken,
    open_stores,
    read_range,
)

log = logging.getLogger("broker.gateway")


class HeaderLookup(Protocol):
    """Request headers as the gateway reads them: a werkzeug ``Headers``/``EnvironHeaders`` or a dict."""

    def get(self, key: str) -> str | None: ...

    def __contains__(self, key: str) -> bool: ...


class PurposeAuthorizer(Protocol):
    """An :class:`~broker.gateway.authorize.Authorizer` that also takes the declared purpose.

    The gateway passes ``purpose`` only when a request declares one, so authorizers that
    know nothing of purposes keep working for every request that declares none.
    """

    def authorize(
        self,
        bearer: str | None,
        dataset: str,
        object_path: str,
        action: str = "read",
        *,
        passports: Sequence[str] = (),
        purpose: str | None = None,
    ) -> AccessDecision: ...


NO_STORE = "private, no-store"
# RFC 6750 section 2.1: b64token.
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_VALIDATOR = re.compile(r'(W/)?"[\x21\x23-\x7e]*"|\*|[A-Za-z0-9 ,:\-"/W]{1,256}')
_CONDITIONAL_MAX = 1024
# Crypt4GH offload: only a plain single range goes to nginx, and no conditional request (nginx's
# validators are the stored file's, not the served stream's).
_SIMPLE_RANGE = re.compile(r"bytes=[0-9]{1,19}-[0-9]{0,19}")
_CONDITIONAL_HEADERS = ("If-Range", "If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since")


class Refusal(BrokerError):
    """A request the gateway answers with an error: status, machine code, message; never cached."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message, status=status, code=code, extra=extra, headers=headers)

    def response_headers(self, realm: str) -> dict[str, str]:
        return {**self.headers, "Cache-Control": "no-store"}


PURPOSE_HEADER = "GA4GH-Purpose"
"""The request header that declares the data-use purpose of a request (e.g. ``DUO:0000006``).

Why this name: no GA4GH specification defines how a requester declares a purpose (SPEC-DIGEST
10.1: Passports never mention DUO; DUO tags datasets and a requester's research purpose), so
the header is ours. It carries a GA4GH ontology term (DUO), hence the ``GA4GH-`` namespace, and
it has no ``X-`` prefix, as RFC 6648 asks of new fields. A header rather than a query
parameter: the data route's query belongs to signed URLs and to the clients in front of it
(htsget, genome browsers), and nginx ``auth_request`` forwards request headers to the
decision endpoint unchanged, so one spelling reaches every route.
"""
MAX_PURPOSE_CHARS = 16
# Exactly PREFIX:NNNNNNN in ASCII ([0-9], not \d, which matches other scripts' digits too). The
# ontologies: DUO terms, and MONDO diseases for disease-specific research (the shipped
# ``policies/data_use.yaml`` puts MONDO terms under DUO:0000007, DS).
_PURPOSE = re.compile(r"(?:DUO|MONDO):[0-9]{7}")


def parse_purpose(value: str | None, source: str = PURPOSE_HEADER) -> str | None:
    """A declared purpose checked strictly: None when absent, else the CURIE itself.

    Raises :class:`Refusal` 400 ``invalid_purpose`` for anything else (empty, several values,
    another ontology, lower case, spaces, non-ASCII digits). Written by hand because it is a
    one-line grammar; the length is checked before the pattern so no input is scanned long.
    """
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_PURPOSE_CHARS or not _PURPOSE.fullmatch(value):
        raise Refusal(
            400,
            "invalid_purpose",
            f"{source} must be one data use term such as DUO:0000006 (DUO or MONDO, 7 digits).",
        )
    return value


def header_purpose(headers: HeaderLookup) -> str | None:
    """The purpose a request declares in :data:`PURPOSE_HEADER` (repeated headers arrive joined, and fail)."""
    return parse_purpose(headers.get(PURPOSE_HEADER))


def _query_names(query: str) -> set[str]:
    """The decoded parameter names of a raw query (bounded by the request-target limit)."""
    return {name for name, _ in parse_qsl(query, keep_blank_values=True)}


@dataclass(frozen=True)
class AuditEvent:
    """A decision or a finished transfer, for the audit log (who, what, outcome, why, bytes)."""

    kind: str  # "decision" or "transfer"
    subject: str | None
    dataset: str
    object_path: str
    outcome: str  # allow / deny, or complete / broken / aborted
    reason: str
    visas_used: tuple[str, ...] = ()
    basis: Any = None
    bytes_sent: int | None = None
    route: str = ""
    purpose: str | None = None  # the data-use purpose the request declared (a DUO/MONDO term)
    regions: tuple[str, ...] = ()  # htsget tickets: the regions asked for (name:start-end, 0-based)
    recipient: str | None = None  # Crypt4GH re-encryption: fingerprint of the researcher's public key
    # A digest of the presented credential (never the credential): whose repeats are counted
    # together (broker.store.audit.AccessAudit). Kept out of the written record.
    credential: str | None = None


@dataclass
class Gateway:
    """Everything the gateway's routes share; built once by :func:`broker.gateway.init_app`."""

    settings: GatewaySettings
    authorizer: Authorizer
    data_dir: Path | None = None
    metrics: GatewayMetrics = field(default_factory=GatewayMetrics)
    audit: Callable[[AuditEvent], None] | None = None
    clock: Callable[[], float] = time.time
    #: Where a refused researcher applies for a dataset (a 403's ``apply`` link); None: no link.
    apply_url: Callable[[str], str | None] | None = None
    stores: dict[str, Any] = field(init=False)
    url_key: bytes = field(init=False)
    checksums: ChecksumCache = field(init=False)
    reencryptor: Reencryptor | None = field(init=False)
    # Set by the htsget service: answers a data-route request of an encrypted file that carries an
    # htsget query (the URL of an encrypted ticket) with (new header, total length, body), else None.
    region_stream: Callable[..., tuple[bytes, int, Iterator[bytes]] | None] | None = field(init=False, default=None)
    _prefixes: dict[str, tuple[str, ...]] = field(init=False)

    def __post_init__(self) -> None:
        self.stores = open_stores(self.settings.stores, self.metrics)
        self._prefixes = {
            name: validate_object_path(ds.prefix) if ds.prefix else () for name, ds in self.settings.datasets.items()
        }
        key_dir = self.data_dir / "gateway" if self.data_dir is not None else None
        self.url_key = signed_urls.load_or_create_key(
            self.settings.url_signing_key.get_secret_value() if self.settings.url_signing_key else None, key_dir
        )
        encrypted = any(ds.encryption == "crypt4gh" for ds in self.settings.datasets.values())
        c4gh = self.settings.crypt4gh
        # The node's key is opened once, here: a wrong passphrase stops the start, not a request.
        self.reencryptor = Reencryptor(load_key(c4gh)) if encrypted and c4gh is not None else None
        cache_dir = self.settings.checksum_cache_dir
        self.checksums = ChecksumCache(
            Path(cache_dir) if cache_dir else (key_dir / "checksums" if key_dir is not None else None)
        )

    # ------------------------------------------------------------------ decisions

    def decide(
        self,
        method: str,
        raw_target: str,
        headers: HeaderLookup,
        prefix: str,
        route: str,
        passports: tuple[str, ...] = (),
        regions: tuple[str, ...] = (),
    ) -> tuple[Target, AccessDecision]:
        """Parse, read credentials, authorise. Raises :class:`Refusal` for every refusal.

        ``regions`` (htsget) go into the decision's audit record: what was asked for, in one record.
        """
        try:
            target = parse_data_target(raw_target, prefix)
        except PathError as exc:
            self._count_decision("deny", exc.code)
            raise Refusal(exc.status, exc.code, exc.message) from None
        return target, self.authorize_ref(method, target.ref, target.query, headers, route, passports, regions=regions)

    def authorize_ref(
        self,
        method: str,
        ref: ObjectRef,
        query: str,
        headers: HeaderLookup,
        route: str,
        passports: tuple[str, ...] = (),
        purpose: str | None = None,
        *,
        regions: tuple[str, ...] = (),
    ) -> AccessDecision:
        """Authorise one object: a signed URL in ``query``, else the bearer or ``passports``.

        ``purpose`` is one already declared elsewhere (a DRS POST body); when None, the
        :data:`PURPOSE_HEADER` of ``headers`` is read. Query parameters that are not a signed
        URL's are ignored; a query naming any signed-URL parameter follows the signed-URL rules.
        """
        bearer = self._bearer(headers.get("Authorization"))
        credential = credential_digest(bearer, passports, query)
        if query and "access_token" in query.lower():
            self._count_decision("deny", "token_in_query")
            raise Refusal(
                400,
                "invalid_request",
                "Access tokens are not accepted in URLs; send them in the Authorization header.",
            )
        try:
            declared = purpose if purpose is not None else header_purpose(headers)
        except Refusal as refusal:
            self._count_decision("deny", refusal.code)
            raise
        if query and _query_names(query) & signed_urls.ALL_PARAMS:
            if bearer is not None or passports:
                raise Refusal(400, "invalid_request", "Use either a signed URL or an Authorization header.")
            return self._signed(method, ref, query, route, declared, credential)
        try:
            if declared is None:
                decision = self.authorizer.authorize(bearer, ref.dataset, ref.path, "read", passports=passports)
            else:
                decision = cast(PurposeAuthorizer, self.authorizer).authorize(
                    bearer, ref.dataset, ref.path, "read", passports=passports, purpose=declared
                )
        except Exception:  # fail closed: an authorizer bug is an outage, never an allow
            log.exception("authorizer failed for %s/%s", ref.dataset, ref.path)
            decision = AccessDecision.denied(503, AUTHORIZER_FAILED, "The access decision could not be made.")
        if not _well_formed(decision):
            log.error("authorizer returned an invalid decision: %r", decision)
            decision = AccessDecision.denied(503, AUTHORIZER_FAILED, "The access decision could not be made.")
        self._record_decision(decision, ref, route, declared, regions, credential)
        if not decision.allow:
            raise self._denial(decision, presented=bearer is not None or bool(passports), dataset=ref.dataset)
        return decision

    def _signed(
        self, method: str, ref: ObjectRef, query: str, route: str, declared: str | None, credential: str
    ) -> AccessDecision:
        """A signed URL decides by itself; its purpose is the one bound into it when it was minted."""
        try:
            verified = signed_urls.verify_url(
                self.url_key, ref, query, method, int(self.clock()), self.settings.signed_url_lifetime_seconds
            )
        except signed_urls.SignatureError as exc:
            decision = AccessDecision.denied(403, exc.code, exc.message)
            self._record_decision(decision, ref, route, declared, credential=credential)
            raise self._denial(decision, presented=True) from None
        if declared is not None and declared != verified.purpose:
            decision = AccessDecision.denied(
                403, "purpose_mismatch", f"This signed URL was issued for another purpose than {declared}."
            )
            self._record_decision(decision, ref, route, declared, credential=credential)
            raise self._denial(decision, presented=True)
        decision = AccessDecision.allowed(None, SIGNED_URL, "Signed URL accepted.", expires_at=verified.expires)
        self._record_decision(decision, ref, route, verified.purpose, credential=credential)
        return decision

    @staticmethod
    def _bearer(header: str | None) -> str | None:
        """The Bearer token, None when there is none (another scheme counts as none, RFC 6750 3.1)."""
        if header is None:
            return None
        scheme, _, credentials = header.strip().partition(" ")
        if scheme.lower() != "bearer":
            return None
        token = credentials.strip()
        if not _B64TOKEN.fullmatch(token):
            # A Bearer credential that is not even a b64token is an invalid token, answered as such.
            return token or " "
        return token

    def _denial(self, decision: AccessDecision, presented: bool, dataset: str | None = None) -> Refusal:
        headers: dict[str, str] = {}
        extra: dict[str, Any] = {}
        if decision.status == 401:
            challenge = f'Bearer realm="{self.settings.realm}"'
            if presented and decision.reason != MISSING_TOKEN:
                challenge += ', error="invalid_token"'
            headers["WWW-Authenticate"] = challenge
        elif decision.status == 503:
            headers["Retry-After"] = "5"
        if decision.status == 403 and decision.required is not None and self.settings.expose_required_visas:
            extra["required"] = decision.required
            link = self.apply_url(dataset) if self.apply_url is not None and dataset else None
            if link is not None:
                extra["apply"] = link  # where the researcher asks the governing DAC for access
        code = decision.reason or (INVALID_TOKEN if decision.status == 401 else "access_denied")
        return Refusal(decision.status, code, decision.message, headers, extra)

    def _count_decision(self, outcome: str, reason: str) -> None:
        self.metrics.decisions.inc(outcome, reason)

    def _record_decision(
        self,
        decision: AccessDecision,
        ref: ObjectRef,
        route: str,
        purpose: str | None = None,
        regions: tuple[str, ...] = (),
        credential: str | None = None,
    ) -> None:
        outcome = "allow" if decision.allow else "deny"
        self._count_decision(outcome, decision.reason)
        if self.audit is not None:
            self.audit(
                AuditEvent(
                    "decision",
                    decision.subject,
                    ref.dataset,
                    ref.path,
                    outcome,
                    decision.reason,
                    decision.visas_used,
                    decision.basis,
                    route=route,
                    purpose=purpose,
                    regions=regions,
                    credential=credential,
                )
            )

    # ------------------------------------------------------------------ datasets

    def dataset(self, ref: ObjectRef) -> tuple[DatasetSettings, Any, tuple[str, ...]]:
        """The dataset's settings, store and prefix segments; 404 for an unknown dataset."""
        ds = self.settings.datasets.get(ref.dataset)
        if ds is None:
            raise Refusal(404, "not_found", "No such object.")
        return ds, self.stores[ds.store], self._prefixes[ref.dataset]

    # ------------------------------------------------------------------ serving

    def serve(
        self,
        method: str,
        ref: ObjectRef,
        headers: HeaderLookup,
        environ: dict[str, Any],
        decision: AccessDecision,
        query: str = "",
    ) -> Response:
        """Answer an authorised GET/HEAD for ``ref`` in the dataset's mode (``query``: the raw query)."""
        ds, store, prefix = self.dataset(ref)
        segments = prefix + ref.segments
        mode = ds.mode or self.settings.mode
        if ds.encryption == "crypt4gh":
            if query and method == "GET" and self.region_stream is not None:
                try:
                    region = self.region_stream(store, prefix, ref, query, headers)
                except Refusal:
                    raise
                except BrokerError as exc:  # the htsget core's errors, answered like the gateway's own
                    raise Refusal(exc.status, exc.code, exc.message) from None
                if region is not None:
                    return self._encrypted_region(ref, region, decision.subject)
            return self._encrypted(method, store, prefix, ref, headers, decision.subject, mode == "offload")
        if mode == "offload":
            response = self._offload(store, prefix, ref)
        elif isinstance(store, DirectoryStore):
            return self._from_directory(method, store, prefix, ref, headers, environ, decision.subject)
        else:
            response = self._from_http(method, store, ref, segments, headers, decision.subject)
        response.headers["Cache-Control"] = NO_STORE
        return response

    def open_encrypted(
        self, store: Any, prefix: tuple[str, ...], ref: ObjectRef, headers: HeaderLookup
    ) -> tuple[IO[bytes], ObjectInfo, RecipientKey, Reencrypted, ObjectInfo]:
        """Open a Crypt4GH object for the researcher whose key ``headers`` carry.

        Returns the open stored file (the caller closes it), its info, the key, the re-encrypted
        header with the body's place, and the info of the served stream (size, validators).
        Raises :class:`Refusal`: 400 without a usable key, 404, 502 for a stored file the node
        cannot serve. The key is checked before existence, after the decision.
        """
        try:
            recipient = recipient_from(headers)
        except Crypt4GHError as exc:
            raise Refusal(exc.status, exc.code, exc.message) from None
        if self.reencryptor is None or not isinstance(store, DirectoryStore):
            raise Refusal(503, "crypt4gh_unavailable", "Encrypted files cannot be served by this gateway now.")
        opened = store.open(prefix, ref.segments)
        if opened is None:
            raise Refusal(404, "not_found", "No such object.")
        file, info = opened
        try:
            reader = FileReader(file.fileno())
            made = self.reencryptor.prepare(
                reader, f"{store.name}/{'/'.join(prefix + ref.segments)}", info.version, recipient
            )
        except Crypt4GHError as exc:
            file.close()
            raise Refusal(exc.status, exc.code, exc.message) from None
        except BaseException:
            file.close()
            raise
        served = ObjectInfo(
            size=made.served_size,
            etag=served_etag(info.etag, recipient),
            last_modified=info.last_modified,
            version=f"{info.version}:c4gh:{recipient.fingerprint}",
        )
        return file, info, recipient, made, served

    def _encrypted(
        self,
        method: str,
        store: Any,
        prefix: tuple[str, ...],
        ref: ObjectRef,
        headers: HeaderLookup,
        subject: str | None,
        offload: bool = False,
    ) -> Response:
        """The header re-encrypted to the researcher, then the stored body; Range in that stream's coordinates.

        With ``offload``, a plain single range lying wholly in the body is handed to nginx when the
        new header is exactly as long as the stored one (a file stored for the node alone): the
        served stream's body bytes then sit at the same offsets as in the stored file, so nginx,
        applying the client's own ``Range`` to the stored file, sends exactly the served bytes.
        Everything else (the header, whole files, conditional requests, a header that changed
        length) is streamed here.
        """
        file, _, recipient, made, served = self.open_encrypted(store, prefix, ref, headers)
        try:
            base = _validator_headers(served)
            base.append(("Cache-Control", NO_STORE))
            if _not_modified(headers, served):
                file.close()
                return Response(b"", status=304, headers=base)
            chosen = self._choose_ranges(method, headers, served)
        except BaseException:
            file.close()
            raise
        if method == "HEAD":
            file.close()
            base += [("Content-Type", OCTET_STREAM), ("Content-Length", str(served.size))]
            return Response((), status=200, headers=base)
        if chosen is not None and len(chosen) > 1:
            chosen = None  # several ranges of a re-encrypted stream: the whole stream (RFC 9110 14.2 allows it)
        if (
            offload
            and chosen is not None
            and chosen[0].start >= len(made.header) == made.body_offset
            and _SIMPLE_RANGE.fullmatch(headers.get("Range") or "")
            and not any(name in headers for name in _CONDITIONAL_HEADERS)
        ):
            file.close()
            self._count_reencryption(ref, subject, recipient, "offload")
            response = self._offload(store, prefix, ref)
            response.headers["Cache-Control"] = NO_STORE
            return response
        if chosen is None:
            status, start, end = 200, 0, served.size - 1
        else:
            status, start, end = 206, chosen[0].start, chosen[0].start + chosen[0].length - 1
            base.append(("Content-Range", chosen[0].content_range(served.size)))
        base += [("Content-Type", OCTET_STREAM), ("Content-Length", str(end - start + 1))]
        self._count_reencryption(ref, subject, recipient, "stream")
        parts = made.layout.parts(start, end)
        body = _encrypted_body(parts, made.header, FileReader(file.fileno()), file, self.settings.chunk_bytes)
        return Response(self._counted(body, ref, subject), status=status, headers=base, direct_passthrough=True)

    def _encrypted_region(
        self, ref: ObjectRef, region: tuple[bytes, int, Iterator[bytes]], subject: str | None
    ) -> Response:
        """An htsget region of an encrypted file, as a new Crypt4GH file (no Range: it is made per request)."""
        header, length, body = region

        def whole() -> Iterator[bytes]:
            yield header
            yield from body

        headers = [("Content-Type", OCTET_STREAM), ("Content-Length", str(length)), ("Cache-Control", NO_STORE)]
        self.metrics.reencryptions.inc(ref.dataset)
        if self.audit is not None:
            self.audit(
                AuditEvent("reencryption", subject, ref.dataset, ref.path, "served", "crypt4gh_region", route="data")
            )
        return Response(self._counted(whole(), ref, subject), status=200, headers=headers, direct_passthrough=True)

    def _count_reencryption(self, ref: ObjectRef, subject: str | None, recipient: RecipientKey, how: str) -> None:
        self.metrics.reencryptions.inc(ref.dataset)
        if self.audit is not None:
            self.audit(
                AuditEvent(
                    "reencryption",
                    subject,
                    ref.dataset,
                    ref.path,
                    "served",
                    f"crypt4gh_{how}",
                    route="data",
                    recipient=recipient.fingerprint,
                )
            )

    def _offload(self, store: Any, prefix: tuple[str, ...], ref: ObjectRef) -> Response:
        """X-Accel-Redirect to the store's internal nginx location (nginx then serves bytes)."""
        segments = prefix + ref.segments
        if isinstance(store, DirectoryStore) and store.head(prefix, ref.segments) is None:
            raise Refusal(404, "not_found", "No such object.")
        location = store.settings.offload_location
        assert location is not None  # checked by check_gateway
        response = Response(b"", status=200, mimetype=OCTET_STREAM)
        response.headers["X-Accel-Redirect"] = location + store_quoted(segments)
        response.headers["X-Accel-Buffering"] = "no"
        return response

    def _from_directory(
        self,
        method: str,
        store: DirectoryStore,
        prefix: tuple[str, ...],
        ref: ObjectRef,
        headers: HeaderLookup,
        environ: dict[str, Any],
        subject: str | None,
    ) -> Response:
        """Serve from an open file: small bodies read at once, large ones by sendfile-able wrapper."""
        opened = store.open(prefix, ref.segments)
        if opened is None:
            raise Refusal(404, "not_found", "No such object.")
        file, info = opened
        try:
            base = _validator_headers(info)
            base.append(("Cache-Control", NO_STORE))
            if _not_modified(headers, info):
                file.close()
                return Response(b"", status=304, headers=base)
            chosen = self._choose_ranges(method, headers, info)
        except BaseException:
            file.close()
            raise
        if method == "HEAD":
            file.close()
            base += [("Content-Type", OCTET_STREAM), ("Content-Length", str(info.size))]
            return Response((), status=200, headers=base)  # a bytes body would reset Content-Length
        chunk = self.settings.chunk_bytes
        if chosen is not None and len(chosen) > 1:
            layout = ranges.multipart_layout(chosen, info.size, OCTET_STREAM)
            base += [("Content-Type", layout.content_type), ("Content-Length", str(layout.content_length))]
            body = self._counted(_multipart_body(file, layout, chunk), ref, subject)
            return Response(body, status=206, headers=base, direct_passthrough=True)
        if chosen is None:
            status, start, length = 200, 0, info.size
        else:
            status, start, length = 206, chosen[0].start, chosen[0].length
            base.append(("Content-Range", chosen[0].content_range(info.size)))
        base += [("Content-Type", OCTET_STREAM), ("Content-Length", str(length))]
        if length <= chunk:
            # Small bodies (the many small Range reads of genome browsers and htsget clients):
            # one pread, file closed at once; cheaper than setting up sendfile.
            try:
                data = os.pread(file.fileno(), length, start)
            finally:
                file.close()
            if len(data) != length:
                raise Refusal(
                    503, "object_changed", "The object changed while it was read; try again.", {"Retry-After": "1"}
                )
            self.finish_transfer(ref, subject, length, "complete")
            return Response([data], status=status, headers=base, direct_passthrough=True)
        wrapper = environ.get("wsgi.file_wrapper")
        corked = _cork(environ.get("gunicorn.socket")) if wrapper is not None else None
        bounded = _CountedFile(BoundedFile(file, start, length), length, self, ref, subject, corked)
        body = wrapper(bounded, chunk) if wrapper is not None else _file_chunks(bounded, chunk)
        return Response(body, status=status, headers=base, direct_passthrough=True)

    def _choose_ranges(self, method: str, headers: HeaderLookup, info: ObjectInfo) -> list[ranges.ByteRange] | None:
        """None for a full 200; ranges for 206; raises Refusal(416)."""
        if method != "GET" or "Range" not in headers:
            return None  # RFC 9110 14.2: Range is defined for GET only
        if not ranges.if_range_holds(headers.get("If-Range"), info.etag, info.last_modified):
            return None
        try:
            specs = ranges.parse_range(
                headers.get("Range"), self.settings.max_ranges, self.settings.max_range_header_bytes
            )
            if specs is None:
                return None
            return ranges.resolve(specs, info.size)
        except ranges.RangeNotSatisfiable as exc:
            raise Refusal(416, exc.code, exc.message, {"Content-Range": f"bytes */{info.size}"}) from None

    def _from_http(
        self,
        method: str,
        store: HttpStore,
        ref: ObjectRef,
        segments: tuple[str, ...],
        headers: HeaderLookup,
        subject: str | None,
    ) -> Response:
        forward: dict[str, str] = {}
        if method == "GET" and headers.get("Range") is not None:
            try:
                specs = ranges.parse_range(
                    headers.get("Range"), self.settings.max_ranges, self.settings.max_range_header_bytes
                )
            except ranges.RangeNotSatisfiable as exc:
                size = self._upstream_size(store, segments)
                raise Refusal(416, exc.code, exc.message, {"Content-Range": f"bytes */{size}"}) from None
            if specs is not None:
                forward["Range"] = ranges.canonical_header(specs)
                if_range = headers.get("If-Range")
                if if_range is not None and _conditional_ok(if_range):
                    forward["If-Range"] = if_range.strip()
        for name in ("If-None-Match", "If-Modified-Since"):
            value = headers.get(name)
            if value is not None and _conditional_ok(value):
                forward[name] = value.strip()
        try:
            reply = store.fetch(segments, method, forward, self.settings.chunk_bytes)
        except StoreError as exc:
            raise Refusal(exc.status, exc.code, exc.message) from None
        if reply.status == 404:
            raise Refusal(404, "not_found", "No such object.")
        body: Iterator[bytes] = reply.body
        if method == "GET" and reply.status in (200, 206):
            body = self._counted(body, ref, subject)
        response = Response(body, status=reply.status, direct_passthrough=True)
        for name, value in reply.headers.items():
            response.headers[_title(name)] = value
        if reply.status == 416 and "content-range" not in reply.headers:
            response.headers["Content-Range"] = "bytes */*"
        return response

    def _upstream_size(self, store: HttpStore, segments: tuple[str, ...]) -> str:
        try:
            info = store.head((), segments)
        except StoreError:
            return "*"
        return str(info.size) if info is not None else "*"

    # ------------------------------------------------------------------ transfers

    def _counted(self, body: Iterator[bytes], ref: ObjectRef, subject: str | None) -> Iterator[bytes]:
        """Count bytes and the transfer's end (complete, broken upstream, aborted by client)."""
        sent = 0
        result = "broken"
        try:
            for chunk in body:
                sent += len(chunk)
                yield chunk
            result = "complete"
        except GeneratorExit:
            result = "aborted"
            raise
        except UpstreamBroken as exc:
            log.warning("transfer of %s/%s broken after %d bytes: %s", ref.dataset, ref.path, sent, exc)
            raise
        finally:
            # Count first, then release the upstream: whoever sees the upstream connection end
            # (the upstream itself, a test, an operator) must find the transfer already counted.
            # The other order let a scrape land between the two (issue 13).
            try:
                self.finish_transfer(ref, subject, sent, result)
            finally:
                close = getattr(body, "close", None)
                if close is not None:
                    close()

    def finish_transfer(self, ref: ObjectRef, subject: str | None, sent: int, result: str) -> None:
        """Count a finished body and hand it to the audit hook."""
        self.metrics.bytes_streamed.inc(ref.dataset, amount=sent)
        self.metrics.transfers.inc(result)
        if self.audit is not None:
            self.audit(
                AuditEvent("transfer", subject, ref.dataset, ref.path, result, result, bytes_sent=sent, route="data")
            )


def credential_digest(bearer: str | None, passports: Sequence[str], query: str) -> str:
    """A short digest naming the credentials of a request (bearer, DRS passports, else the query).

    Only for telling repeats of one credential apart in memory; the token itself is never kept.
    """
    digest = hashlib.sha256()
    for part in (bearer or "", *passports) if bearer is not None or passports else (query,):
        digest.update(part.encode("utf-8", "surrogatepass"))
        digest.update(b"\0")
    return digest.hexdigest()[:32]


def _well_formed(decision: object) -> bool:
    """An allow is a 200; a denial is a 401, 403 or 503. Anything else is an authorizer bug."""
    if not isinstance(decision, AccessDecision):
        return False
    return decision.status == 200 if decision.allow else decision.status in (401, 403, 503)


class _CountedFile:
    """A bounded file that reports the transfer when the server closes it (sendfile path)."""

    def __init__(
        self,
        file: BoundedFile,
        length: int,
        gateway: Gateway,
        ref: ObjectRef,
        subject: str | None,
        corked: socket.socket | None = None,
    ) -> None:
        self._file = file
        self._length = length
        self._gateway = gateway
        self._ref = ref
        self._subject = subject
        self._corked = corked
        self._read = 0
        self._closed = False

    def fileno(self) -> int:
        return self._file.fileno()

    def read(self, size: int = -1) -> bytes:
        data = self._file.read(size)
        self._read += len(data)
        return data

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # Iterated: we know what was read. sendfile: the server sent from the descriptor, so
        # the position moved past what was read through us; count the declared length.
        position_sent = self._length if self._read == 0 else self._read
        if self._corked is not None:
            _uncork(self._corked)  # flush the tail to the client first
        result = "complete" if position_sent == self._length else "aborted"
        try:
            # Counted before the file is released, as in Gateway._counted (issue 13).
            self._gateway.finish_transfer(self._ref, self._subject, position_sent, result)
        finally:
            self._file.close()


def _cork(sock: object) -> socket.socket | None:
    """Hold back partial segments while headers and a large file body go out (Linux TCP_CORK).

    nginx does the same around sendfile (``tcp_nopush on``); without it the headers leave in
    a packet of their own and, measured on loopback here, sendfile then moves about 30%
    fewer bytes per second. Only gunicorn hands us its socket; the cork is always removed
    when the server closes the body (:meth:`_CountedFile.close`), which flushes the tail.
    """
    cork = getattr(socket, "TCP_CORK", None)
    if cork is None or not isinstance(sock, socket.socket) or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return None
    try:
        sock.setsockopt(socket.IPPROTO_TCP, cork, 1)
    except OSError:
        return None
    return sock


def _uncork(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # the client may be gone already: nothing left to flush
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)


def _encrypted_body(
    parts: list[Part], header: bytes, reader: FileReader, file: IO[bytes], chunk: int
) -> Iterator[bytes]:
    """The served parts (header slice, stored body range), read in chunks; the stored file closed after."""
    try:
        yield from iter_parts(parts, header, reader, min(chunk, 16 * 1024 * 1024))
    finally:
        file.close()


def _file_chunks(file: _CountedFile, chunk: int) -> Iterator[bytes]:
    try:
        while True:
            data = file.read(chunk)
            if not data:
                return
            yield data
    finally:
        file.close()


def _multipart_body(file: Any, layout: ranges.MultipartLayout, chunk: int) -> Iterator[bytes]:
    try:
        for head, rng in layout.parts:
            yield head
            yield from read_range(cast(IO[bytes], _Unclosable(file)), rng.start, rng.length, chunk)
        yield layout.tail
    finally:
        file.close()


class _Unclosable:
    """Lets read_range share one open file across parts (only the outer body closes it)."""

    def __init__(self, file: Any) -> None:
        self._file = file

    def seek(self, offset: int) -> int:
        return int(self._file.seek(offset))

    def read(self, size: int) -> bytes:
        return bytes(self._file.read(size))

    def close(self) -> None:
        return None


def _validator_headers(info: ObjectInfo) -> list[tuple[str, str]]:
    headers = [("Accept-Ranges", "bytes")]
    if info.etag is not None:
        headers.append(("ETag", info.etag))
    if info.last_modified is not None:
        headers.append(("Last-Modified", ranges.http_date(info.last_modified)))
    return headers


def _not_modified(headers: HeaderLookup, info: ObjectInfo) -> bool:
    """RFC 9110 13.1.2 / 13.1.3 for GET and HEAD: If-None-Match (weak compare), else If-Modified-Since."""
    inm = headers.get("If-None-Match")
    if inm is not None:
        if info.etag is None:
            return False
        if inm.strip() == "*":
            return True
        ours = info.etag.removeprefix("W/")
        return any(tag.strip().removeprefix("W/") == ours for tag in inm.split(","))
    ims = headers.get("If-Modified-Since")
    if ims is not None and info.last_modified is not None:
        try:
            when = parsedate_to_datetime(ims)
        except (TypeError, ValueError, IndexError):
            return False
        if when is None or when.tzinfo is None:
            return False
        return int(info.last_modified) <= int(when.timestamp())
    return False


def _conditional_ok(value: str) -> bool:
    """A conditional header value we are willing to forward (bounded, printable, validator-shaped)."""
    return len(value) <= _CONDITIONAL_MAX and _VALIDATOR.fullmatch(value.strip()) is not None


def _title(name: str) -> str:
    return "-".join(part.capitalize() for part in name.split("-")).replace("Etag", "ETag")


def store_quoted(segments: tuple[str, ...]) -> str:
    """Segments percent-encoded for an nginx internal location (see examples/nginx)."""
    return "/".join(quote(s, safe="") for s in segments)


def identity_header(value: str) -> str:
    """A header-safe spelling of an identity string (percent-encoded outside printable ASCII)."""
    return quote(value, safe="!#$&'()*+,/:;=?@[]~-._ ")
