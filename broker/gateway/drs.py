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
anything a crafted URL could not.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Response, current_app, request

from broker import __version__
from broker.core.untrusted_json import loads_bounded
from broker.gateway import signed_urls
from broker.gateway.paths import DATASET_ID, ObjectRef, PathError, quote_segments, validate_object_path
from broker.gateway.service import Gateway, Refusal
from broker.gateway.stores import DirectoryStore, ObjectInfo, StoreError
from broker.web.errors import error_response

BASE = "/ga4gh/drs/v1"
ACCESS_ID = "https"
_ID = re.compile(r"[A-Za-z0-9_-]{2,2800}")


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


def _drs_error(refusal: Refusal) -> Response:
    return error_response(DrsError(refusal.status, refusal.code, refusal.message, refusal.headers, refusal.extra))


def _json(data: Any, status: int = 200) -> Response:
    response = Response(json.dumps(data) + "\n", status=status, mimetype="application/json")
    response.headers["Cache-Control"] = "no-store"
    return response


def _passports(gw: Gateway) -> tuple[str, ...]:
    """The ``passports`` of a DRS POST body (DRS 1.2), bounded."""
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
    if "expand" in body and not isinstance(body["expand"], bool):
        raise Refusal(400, "invalid_request", "'expand' must be true or false.")
    return tuple(passports)


def _base_url(gw: Gateway) -> str:
    return (gw.settings.public_base_url or request.host_url).rstrip("/")


def _describe(gw: Gateway, ref: ObjectRef) -> tuple[ObjectInfo, str]:
    """Size, validators and sha-256 of an authorised object; 404 if it does not exist."""
    ds, store, prefix = gw.dataset(ref)
    if not ds.drs:
        raise Refusal(404, "not_found", "No such object.")
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


def make_drs_blueprint() -> Blueprint:
    bp = Blueprint("gateway_drs", __name__, url_prefix=BASE)

    def gw() -> Gateway:
        return current_app.extensions["gateway"]

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
            ref = decode_object_id(object_id)
            if request.method == "OPTIONS":
                return _json({"drs_object_id": object_id, "supported_types": ["PassportAuth", "BearerAuth"]})
            passports = _passports(g) if request.method == "POST" else ()
            g.authorize_ref("GET", ref, "", request.headers, "drs", passports)
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
                "access_methods": [{"type": "https", "access_id": ACCESS_ID}],
            }
        )

    @bp.route("/objects/<object_id>/access/<access_id>", methods=["GET", "POST"])
    def access(object_id: str, access_id: str) -> Response:
        g = gw()
        try:
            ref = decode_object_id(object_id)
            passports = _passports(g) if request.method == "POST" else ()
            decision = g.authorize_ref("GET", ref, "", request.headers, "drs", passports)
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
        query = signed_urls.sign(g.url_key, ref, expires)
        url = f"{_base_url(g)}/data/{ref.dataset}/{quote_segments(ref.segments)}?{query}"
        return _json({"url": url})

    return bp
