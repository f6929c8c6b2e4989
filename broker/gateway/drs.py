"""GA4GH DRS 1.2 over the gateway's datasets: objects are the files of datasets.

- ``GET /ga4gh/drs/v1/service-info``: the GA4GH service-info record (type ``org.ga4gh:drs:1.2.0``).
- ``GET /objects/{id}`` (Bearer) and ``POST /objects/{id}`` (``{"passports": [...]}``, the
  DRS 1.2 passport flow): the DrsObject with size, sha-256 checksum and one ``https``
  access method, after the same authorisation as the streaming route.
- ``OPTIONS /objects/{id}``: which authorisations the object accepts (DRS 1.2), without
  looking the object up (no existence oracle).
- ``GET``/``POST /objects/{id}/access/https``: a signed URL to the streaming route, valid
  for ``signed_url_lifetime_seconds`` (at most five minutes) and for this object only.

Object ids are the unpadded base64url of ``<dataset>/<object path>``: opaque to clients,
decoded here with the same path rules as request paths, so a crafted id cannot name
anything a crafted URL could not. Each DrsObject also names the streaming route itself as
its ``access_url`` (it takes the same ``Authorization`` header as DRS, and ``Range``).

Bundles (DRS 1.2 ``contents``): the id of a folder is the unpadded base64url of
``<dataset>/`` (the dataset itself) or ``<dataset>/<folder path>/``, a trailing ``/`` telling
it from an object. It is authorised exactly like the dataset's objects (same refusal, before
existence, so no existence oracle) and lists the folder's regular files and sub-folders by
name, id and ``drs_uri``; ``expand`` (query ``?expand=true`` or the POST body) nests every
sub-folder's contents. Only directory stores are listed, walked with ``O_NOFOLLOW`` from the
dataset's folder: symlinks, FIFOs and names the data route would refuse are never listed. At
most ``max_objects`` entries (:data:`MAX_BUNDLE_OBJECTS` by default, lower on request) are
listed and at most :data:`MAX_SCANNED_ENTRIES` directory entries read; a cut listing says
``"contents_truncated": true``. A bundle's ``checksums`` is empty: hashing a whole dataset
to list it would cost more than the listing is worth (DRS asks a checksum over the contents'
checksums); each object's own DrsObject carries its sha-256.

A request may declare its data-use purpose in the ``GA4GH-Purpose`` header
(:data:`broker.gateway.service.PURPOSE_HEADER`) or, for POST, as ``purpose`` in the body (both
at once must agree); a signed access URL is bound to the purpose declared when it was minted.
"""

from __future__ import annotations

import base64
import binascii
import errno
import json
import os
import re
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Response, request

from broker import __version__
from broker.core.untrusted_json import loads_bounded
from broker.gateway import signed_urls
from broker.gateway.c4gh.errors import Crypt4GHError
from broker.gateway.c4gh.served import iter_parts
from broker.gateway.c4gh.stored import FileReader
from broker.gateway.paths import DATASET_ID, ObjectRef, PathError, quote_segments, validate_object_path
from broker.gateway.service import Gateway, Refusal, header_purpose, parse_purpose
from broker.gateway.stores import DirectoryStore, ObjectInfo, StoreError
from broker.web.errors import error_response

BASE = "/ga4gh/drs/v1"
ACCESS_ID = "https"
_ID = re.compile(r"[A-Za-z0-9_-]{2,2800}")
MAX_BUNDLE_OBJECTS = 10_000  # entries (files and folders) one bundle answer lists at most
MAX_SCANNED_ENTRIES = 100_000  # directory entries read for one answer at most, listed or skipped
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW
_MISSING = frozenset({errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.EACCES})


@dataclass(frozen=True)
class BundleRef:
    """A folder of a dataset as a DRS bundle: ``folder`` is () for the dataset itself."""

    dataset: str
    folder: tuple[str, ...]

    @property
    def audit_ref(self) -> ObjectRef:
        """What the authorizer and the audit log see: the folder path with a trailing '/'."""
        return ObjectRef(self.dataset, "/".join(self.folder) + "/")


@dataclass(frozen=True)
class DrsRequest:
    """What a DRS request asks beyond the id: credentials, purpose and listing options."""

    passports: tuple[str, ...] = ()
    purpose: str | None = None
    expand: bool = False
    max_objects: int = MAX_BUNDLE_OBJECTS


def encode_object_id(ref: ObjectRef) -> str:
    return base64.urlsafe_b64encode(f"{ref.dataset}/{ref.path}".encode()).rstrip(b"=").decode("ascii")


def decode_object_id(object_id: str) -> ObjectRef:
    """The object an id names; :class:`Refusal` 400 for anything that is not one of our ids."""
    bad = Refusal(400, "invalid_object_id", "This is not an object id of this service.")
    if not _ID.fullmatch(object_id):
        raise bad
    try:
        text = base64.urlsafe_b64decode(object_id + "=" * (-len(object_id) % 4)).decode("utf-8")
    except (binascii.Error, ValueError):
        raise bad from None
    if encode_object_id_text(text) != object_id:
        raise bad  # non-canonical encodings (extra bits) are refused: one object, one id
    dataset, _, path = text.partition("/")
    if not DATASET_ID.fullmatch(dataset):
        raise bad
    try:
        validate_object_path(path)
    except PathError as exc:
        raise Refusal(400, exc.code, exc.message) from None
    return ObjectRef(dataset, path)


def encode_object_id_text(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode("ascii")


class DrsError(Refusal):
    """A refusal in the DRS 1.2 error shape (``msg`` and ``status_code``, plus our ``error`` code)."""

    def body(self) -> dict[str, Any]:
        return {"msg": self.message, "status_code": self.status, "error": self.code, **self.extra}


def encode_bundle_id(dataset: str, folder: tuple[str, ...] = ()) -> str:
    """The DRS id of a dataset (``folder`` empty) or of one of its folders."""
    return encode_object_id_text(dataset + "/" + "".join(segment + "/" for segment in folder))


def decode_drs_id(object_id: str) -> ObjectRef | BundleRef:
    """An object or a bundle; :class:`Refusal` 400 for anything that is neither of our ids."""
    if _ID.fullmatch(object_id):
        try:
            text = base64.urlsafe_b64decode(object_id + "=" * (-len(object_id) % 4)).decode("utf-8")
        except (binascii.Error, ValueError):
            text = ""
        dataset, _, path = text.partition("/")
        if text.endswith("/") and encode_object_id_text(text) == object_id and DATASET_ID.fullmatch(dataset):
            if path == "":
                return BundleRef(dataset, ())
            try:
                return BundleRef(dataset, validate_object_path(path[:-1]))
            except PathError as exc:
                raise Refusal(400, exc.code, exc.message) from None
    return decode_object_id(object_id)


def _drs_error(refusal: Refusal) -> Response:
    return error_response(DrsError(refusal.status, refusal.code, refusal.message, refusal.headers, refusal.extra))


def _json(data: Any, status: int = 200) -> Response:
    response = Response(json.dumps(data) + "\n", status=status, mimetype="application/json")
    response.headers["Cache-Control"] = "no-store"
    return response


def _drs_request(gw: Gateway) -> DrsRequest:
    """The passports, purpose and listing options of a request (DRS 1.2 POST body, or GET query), bounded.

    The purpose comes from the ``GA4GH-Purpose`` header or the body's ``purpose``; both at
    once must name the same term (400 ``purpose_conflict``).
    """
    passports: list[str] = []
    body_purpose: str | None = None
    if request.method == "POST":
        try:
            body = loads_bounded(request.get_data(cache=False), max_depth=8) if request.is_json else None
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise Refusal(400, "invalid_request", "Expected a JSON object body.")
        passports = body.get("passports", [])
        if not isinstance(passports, list) or not all(isinstance(p, str) and p for p in passports):
            raise Refusal(400, "invalid_request", "'passports' must be a list of passport JWTs.")
        if len(passports) > gw.settings.drs_max_passports:
            raise Refusal(400, "too_many_passports", f"At most {gw.settings.drs_max_passports} passports.")
        expand = body.get("expand", False)
        if not isinstance(expand, bool):
            raise Refusal(400, "invalid_request", "'expand' must be true or false.")
        max_objects = body.get("max_objects", MAX_BUNDLE_OBJECTS)
        if "purpose" in body:
            purpose_value = body["purpose"]
            if not isinstance(purpose_value, str):
                raise Refusal(400, "invalid_purpose", "'purpose' must be a data use term such as DUO:0000006.")
            body_purpose = parse_purpose(purpose_value, "'purpose'")
    else:
        expand_text = request.args.get("expand", "false")
        if expand_text not in ("true", "false"):
            raise Refusal(400, "invalid_request", "'expand' must be true or false.")
        expand = expand_text == "true"
        max_text = request.args.get("max_objects", str(MAX_BUNDLE_OBJECTS))
        max_objects = int(max_text) if max_text.isascii() and max_text.isdigit() and len(max_text) <= 6 else -1
    if isinstance(max_objects, bool) or not isinstance(max_objects, int) or not 1 <= max_objects <= MAX_BUNDLE_OBJECTS:
        raise Refusal(400, "invalid_request", f"'max_objects' must be a number from 1 to {MAX_BUNDLE_OBJECTS}.")
    purpose = header_purpose(request.headers)
    if body_purpose is not None:
        if purpose is not None and purpose != body_purpose:
            raise Refusal(400, "purpose_conflict", "The GA4GH-Purpose header and the body's 'purpose' differ.")
        purpose = body_purpose
    return DrsRequest(tuple(passports), purpose, expand, max_objects)


def _base_url(gw: Gateway) -> str:
    return (gw.settings.public_base_url or request.host_url).rstrip("/")


def _describe(gw: Gateway, ref: ObjectRef) -> tuple[ObjectInfo, str]:
    """Size, validators and sha-256 of an authorised object; 404 if it does not exist."""
    ds, store, prefix = gw.dataset(ref)
    if not ds.drs:
        raise Refusal(404, "not_found", "No such object.")
    if ds.encryption == "crypt4gh":
        return _describe_encrypted(gw, store, prefix, ref)
    segments = prefix + ref.segments
    try:
        info = store.head(prefix, ref.segments)
        if info is None:
            raise Refusal(404, "not_found", "No such object.")
        checksum = gw.checksums.get(store.name, "/".join(segments), info.version)
        if checksum is None:
            found = store.iter_object(prefix, ref.segments, gw.settings.chunk_bytes)
            if found is None:
                raise Refusal(404, "not_found", "No such object.")
            info, chunks = found
            checksum = gw.checksums.compute(store.name, "/".join(segments), info.version, chunks)
    except StoreError as exc:
        raise Refusal(exc.status, exc.code, exc.message) from None
    return info, checksum


def _describe_encrypted(gw: Gateway, store: Any, prefix: tuple[str, ...], ref: ObjectRef) -> tuple[ObjectInfo, str]:
    """Size and sha-256 of what a Crypt4GH object is served as to the key in the request.

    The served stream (header re-encrypted to that key, then the stored body) is the same bytes
    for one key and one file version, so its checksum is computed once per key and version
    (a full read of the file) and kept in the checksum cache like any other.
    """
    file, _, recipient, made, served = gw.open_encrypted(store, prefix, ref, request.headers)
    try:
        path = "/".join(prefix + ref.segments) + f"#c4gh:{recipient.fingerprint}"
        checksum = gw.checksums.get(store.name, path, served.version)
        if checksum is None:
            parts = made.layout.parts(0, served.size - 1)
            chunks = iter_parts(parts, made.header, FileReader(file.fileno()), gw.settings.chunk_bytes)
            checksum = gw.checksums.compute(store.name, path, served.version, chunks)
    except Crypt4GHError as exc:
        raise Refusal(exc.status, exc.code, exc.message) from None
    finally:
        file.close()
    return served, checksum


def make_drs_blueprint(gateway: Gateway) -> Blueprint:
    """The DRS routes over ``gateway`` (its own services, never a global)."""
    bp = Blueprint("gateway_drs", __name__, url_prefix=BASE)

    def gw() -> Gateway:
        return gateway

    @bp.get("/service-info")
    def service_info() -> Response:
        s = gw().settings
        return _json(
            {
                "id": s.drs_service_id,
                "name": "ga4gh-broker DRS",
                "type": {"group": "org.ga4gh", "artifact": "drs", "version": "1.2.0"},
                "description": "Files of controlled-access datasets, released on GA4GH passports.",
                "organization": {"name": s.drs_organization_name, "url": s.drs_organization_url},
                "version": __version__,
            }
        )

    @bp.route("/objects/<object_id>", methods=["GET", "POST", "OPTIONS"])
    def get_object(object_id: str) -> Response:
        g = gw()
        try:
            ref = decode_drs_id(object_id)
            if request.method == "OPTIONS":
                return _json({"drs_object_id": object_id, "supported_types": ["PassportAuth", "BearerAuth"]})
            asked = _drs_request(g)
            if isinstance(ref, BundleRef):
                g.authorize_ref("GET", ref.audit_ref, "", request.headers, "drs", asked.passports, asked.purpose)
                return _json(_bundle(g, ref, object_id, asked))
            g.authorize_ref("GET", ref, "", request.headers, "drs", asked.passports, asked.purpose)
            info, checksum = _describe(g, ref)
        except Refusal as refusal:
            return _drs_error(refusal)
        base = _base_url(g)
        when = datetime.fromtimestamp(info.last_modified or g.clock(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return _json(
            {
                "id": object_id,
                "self_uri": f"drs://{urlsplit(base).netloc}/{object_id}",
                "name": ref.segments[-1],
                "size": info.size,
                "created_time": when,
                "updated_time": when,
                "mime_type": "application/octet-stream",
                "checksums": [{"checksum": checksum, "type": "sha-256"}],
                "access_methods": [
                    {"type": "https", "access_id": ACCESS_ID, "access_url": {"url": _data_url(base, ref)}}
                ],
            }
        )

    @bp.route("/objects/<object_id>/access/<access_id>", methods=["GET", "POST"])
    def access(object_id: str, access_id: str) -> Response:
        g = gw()
        try:
            decoded = decode_drs_id(object_id)
            asked = _drs_request(g)
            ref = decoded.audit_ref if isinstance(decoded, BundleRef) else decoded
            decision = g.authorize_ref("GET", ref, "", request.headers, "drs", asked.passports, asked.purpose)
            if isinstance(decoded, BundleRef):
                raise Refusal(404, "not_found", "A bundle has no access methods; fetch its contents.")
            ds, store, prefix = g.dataset(ref)
            if access_id != ACCESS_ID or not ds.drs:
                raise Refusal(404, "not_found", "No such access method for this object.")
            if isinstance(store, DirectoryStore) and store.head(prefix, ref.segments) is None:
                raise Refusal(404, "not_found", "No such object.")
        except Refusal as refusal:
            return _drs_error(refusal)
        lifetime = g.settings.signed_url_lifetime_seconds
        expires = int(g.clock()) + lifetime
        if decision.expires_at is not None:
            expires = min(expires, decision.expires_at)  # never outlive the grant it came from
        query = signed_urls.sign(g.url_key, ref, expires, purpose=asked.purpose)
        return _json({"url": f"{_data_url(_base_url(g), ref)}?{query}"})

    return bp


def _data_url(base: str, ref: ObjectRef) -> str:
    """The streaming route of an object (what signed URLs point at, and the DrsObject's ``access_url``)."""
    return f"{base}/data/{ref.dataset}/{quote_segments(ref.segments)}"


# ---------------------------------------------------------------------------- bundles


@dataclass
class _Budget:
    """What one listing may still spend, and whether it had to stop early."""

    entries: int
    scans: int = MAX_SCANNED_ENTRIES
    truncated: bool = False


def _bundle(g: Gateway, ref: BundleRef, bundle_id: str, asked: DrsRequest) -> dict[str, Any]:
    """The DrsObject of an authorised folder, with its ``contents`` (404 when it is not there)."""
    ds, store, prefix = g.dataset(ref.audit_ref)
    if not ds.drs:
        raise Refusal(404, "not_found", "No such object.")
    if not isinstance(store, DirectoryStore):
        raise Refusal(404, "listing_unsupported", "This dataset's store cannot be listed; ask for objects by id.")
    host = urlsplit(_base_url(g)).netloc
    fd = _open_folder(os.path.join(store.root, *prefix), ref.folder)
    try:
        when = datetime.fromtimestamp(int(os.fstat(fd).st_mtime), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        budget = _Budget(asked.max_objects)
        contents, size = _list_folder(fd, ref.dataset, ref.folder, host, asked.expand, budget)
    finally:
        os.close(fd)
    return {
        "id": bundle_id,
        "self_uri": f"drs://{host}/{bundle_id}",
        "name": ref.folder[-1] if ref.folder else ref.dataset,
        "size": size,
        "created_time": when,
        "updated_time": when,
        "checksums": [],
        "description": (
            f"Listing cut at {asked.max_objects} entries or {MAX_SCANNED_ENTRIES} folder entries read."
            if budget.truncated
            else "Every readable file and folder."
        ),
        "contents": contents,
        "contents_truncated": budget.truncated,
    }


def _open_folder(base: str, folder: tuple[str, ...]) -> int:
    """A descriptor of the dataset's folder (configured path, followed) or a sub-folder (never via a symlink)."""
    fd = -1
    try:
        fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        for segment in folder:
            next_fd = os.open(segment, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = next_fd
    except OSError as exc:
        if fd >= 0:
            os.close(fd)
        if exc.errno in _MISSING:
            raise Refusal(404, "not_found", "No such object.") from None
        raise
    return fd


def _list_folder(
    fd: int, dataset: str, folder: tuple[str, ...], host: str, expand: bool, budget: _Budget
) -> tuple[list[dict[str, Any]], int]:
    """ContentsObjects of one folder (sorted by name) and the bytes of the files listed under it."""
    found: list[tuple[str, bool, int]] = []
    with os.scandir(fd) as entries:
        for entry in entries:
            budget.scans -= 1
            if budget.scans < 0:
                budget.truncated = True
                break
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
                continue  # symlinks, FIFOs, sockets, devices: the data route serves none of them
            try:
                validate_object_path("/".join((*folder, entry.name)))
            except PathError:
                continue  # a name the data route would refuse (a ';', a control character, too long, ...)
            found.append((entry.name, stat.S_ISDIR(info.st_mode), info.st_size))
    found.sort()
    contents: list[dict[str, Any]] = []
    total = 0
    for name, is_dir, size in found:
        if budget.entries <= 0:
            budget.truncated = True
            break
        budget.entries -= 1
        path = (*folder, name)
        drs_id = encode_bundle_id(dataset, path) if is_dir else encode_object_id(ObjectRef(dataset, "/".join(path)))
        item: dict[str, Any] = {"name": name, "id": drs_id, "drs_uri": [f"drs://{host}/{drs_id}"]}
        if not is_dir:
            total += size
        elif expand:
            try:
                child = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError:
                continue  # gone, or swapped for a symlink since it was read: not listed
            try:
                item["contents"], size = _list_folder(child, dataset, path, host, expand, budget)
                total += size
            finally:
                os.close(child)
        contents.append(item)
    return contents, total
