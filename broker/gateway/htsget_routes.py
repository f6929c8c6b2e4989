"""The htsget 1.3 web adapter: ``/ga4gh/htsget/v1/reads/<id>`` and ``/variants/<id>``, and service-info.

``<id>`` is a dataset object, ``<dataset>/<object path>`` exactly as on the data route (the same
raw-target path rules apply), or the object's DRS id (unpadded base64url of the same text).

- ``GET`` reads ``format``, ``class`` (``header`` only), ``referenceName``, ``start``, ``end``;
  ``fields``, ``tags`` and ``notags`` are accepted and checked (``tags`` and ``notags`` may not
  overlap) but every field and tag is served, which the specification allows. Parameters
  this version does not know are ignored (signed-URL parameters and tokens in the query are
  refused by the gateway's own rules). Each parameter may appear once.
- ``POST`` takes the same as a JSON object, with ``regions`` (a list of
  ``{referenceName, start, end}``) instead of the single region.
- Errors are ``{"htsget": {"error": <name>, "message": ...}}``: ``InvalidInput``,
  ``InvalidRange``, ``UnsupportedFormat`` (400), ``InvalidAuthentication`` (401, with
  ``WWW-Authenticate``), ``PermissionDenied`` (403), ``NotFound`` (404); a store or data fault
  is ``ServerError``.

Authorization comes first and is the gateway's (:meth:`Gateway.decide`), so a caller without
access learns nothing about which objects or references exist. How tickets carry it:
:mod:`broker.gateway.htsget_service`.
"""

from __future__ import annotations

import json
from typing import Any, Literal
from urllib.parse import parse_qsl

from flask import Blueprint, Response, request

from broker import __version__
from broker.core.untrusted_json import loads_bounded
from broker.errors import BrokerError
from broker.gateway import signed_urls
from broker.gateway.drs import decode_object_id
from broker.gateway.htsget import HtsgetError, InvalidInput, InvalidRange, Region, check_regions, parse_format
from broker.gateway.htsget.plan import UNPLACED
from broker.gateway.htsget_service import TICKET_CONTENT_TYPE, HtsgetQuery, HtsgetService, post_regions
from broker.gateway.paths import ObjectRef, split_target
from broker.gateway.routes import raw_target
from broker.gateway.service import Gateway, Refusal

BASE = "/ga4gh/htsget/v1"
MAX_UINT32 = (1 << 32) - 1
MAX_BODY_BYTES = 256 * 1024
_KNOWN = frozenset({"format", "class", "referenceName", "start", "end", "fields", "tags", "notags"})
_BY_STATUS = {
    400: "InvalidInput",
    401: "InvalidAuthentication",
    403: "PermissionDenied",
    404: "NotFound",
    416: "InvalidRange",
}


class HtsgetRefusal(BrokerError):
    """Any refusal, in the htsget error shape (the gateway's own code kept as ``code`` for logs)."""

    def __init__(self, name: str, error: BrokerError) -> None:
        super().__init__(error.message, status=error.status, code=error.code, headers=error.headers)
        self.name = name

    def body(self) -> dict[str, Any]:
        return {"htsget": {"error": self.name, "message": self.message}}

    def response_headers(self, realm: str) -> dict[str, str]:
        return {**self.headers, "Cache-Control": "no-store"}


def as_htsget(error: BrokerError) -> HtsgetRefusal:
    """An htsget error for any refusal: its own name for htsget errors, else one by status."""
    if isinstance(error, HtsgetError):
        return HtsgetRefusal(error.htsget_error, error)
    return HtsgetRefusal(_BY_STATUS.get(error.status, "ServerError"), error)


def _json(data: Any) -> Response:
    response = Response(json.dumps(data) + "\n", status=200, content_type=TICKET_CONTENT_TYPE)
    response.headers["Cache-Control"] = "no-store"
    return response


def _error(error: BrokerError) -> Response:
    refusal = as_htsget(error)
    response = Response(json.dumps(refusal.body()) + "\n", status=refusal.status, mimetype="application/json")
    response.headers.update(refusal.response_headers(""))
    return response


def _integer(name: str, text: str | None) -> int | None:
    if text is None:
        return None
    if not (text.isascii() and text.isdigit()) or len(text) > 10 or int(text) > MAX_UINT32:
        raise InvalidInput("bad_position", f"{name} must be an integer between 0 and {MAX_UINT32}")
    return int(text)


def _list_param(value: object, name: str) -> set[str]:
    """``fields``/``tags``/``notags``: comma-separated text (GET) or a list of strings (POST)."""
    if value is None:
        return set()
    if isinstance(value, str):
        items = value.split(",")
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        items = list(value)
    else:
        raise InvalidInput("bad_parameter", f"{name} must be a list of names")
    if len(items) > 1024 or any(not item or len(item) > 256 for item in items):
        raise InvalidInput("bad_parameter", f"{name} must be a list of non-empty names")
    return set(items)


def _check_fields(values: dict[str, object]) -> None:
    _list_param(values.get("fields"), "fields")
    if _list_param(values.get("tags"), "tags") & _list_param(values.get("notags"), "notags"):
        raise InvalidInput("tags_overlap", "tags and notags may not name the same tag")


def _class(value: object) -> str | None:
    if value is None:
        return None
    if value != "header":
        raise InvalidInput("bad_class", "class must be 'header' when given")
    return "header"


def get_query(endpoint: Literal["reads", "variants"], query: str) -> HtsgetQuery:
    """The htsget GET parameters of a raw query string."""
    pairs = parse_qsl(query, keep_blank_values=True)
    values: dict[str, str] = {}
    for key, value in pairs:
        if key in _KNOWN:
            if key in values:
                raise InvalidInput("repeated_parameter", f"{key} may be given once")
            values[key] = value
    fmt = parse_format(values.get("format"), endpoint)
    class_ = _class(values.get("class"))
    _check_fields(dict(values))
    name = values.get("referenceName")
    start, end = _integer("start", values.get("start")), _integer("end", values.get("end"))
    if name is None:
        if start is not None or end is not None:
            raise InvalidInput("range_without_reference", "start and end need a referenceName")
        return HtsgetQuery(fmt, class_, None)
    if class_ == "header":
        raise InvalidInput("class_with_regions", "class=header cannot be combined with referenceName")
    if name == UNPLACED and (start is not None or end is not None):
        raise InvalidInput("unplaced_with_range", "start and end cannot be given with referenceName '*'")
    if start is not None and end is not None and start > end:
        raise InvalidRange("start_after_end", f"start {start} is greater than end {end}")
    regions = (Region(name, start, end),)
    check_regions(regions)
    return HtsgetQuery(fmt, class_, regions)


def post_query(endpoint: Literal["reads", "variants"], raw: bytes, is_json: bool) -> HtsgetQuery:
    """The htsget POST body (a JSON object)."""
    if len(raw) > MAX_BODY_BYTES:
        raise InvalidInput("body_too_large", f"the request body is larger than {MAX_BODY_BYTES} bytes")
    try:
        body = loads_bounded(raw, max_depth=6) if raw else {}
    except ValueError:
        body = None
    if not isinstance(body, dict) or (raw and not is_json):
        raise InvalidInput("bad_body", "the POST body must be a JSON object (Content-Type: application/json)")
    for name in ("format", "class"):
        if body.get(name) is not None and not isinstance(body[name], str):
            raise InvalidInput("bad_parameter", f"{name} must be a string")
    fmt = parse_format(body.get("format"), endpoint)
    class_ = _class(body.get("class"))
    _check_fields(body)
    regions = post_regions(body.get("regions"))
    if class_ == "header" and regions is not None:
        raise InvalidInput("class_with_regions", "class=header cannot be combined with regions")
    return HtsgetQuery(fmt, class_, regions)


def make_htsget_blueprint(gateway: Gateway, service: HtsgetService) -> Blueprint:
    """The htsget routes over ``gateway`` (its own services, never a global)."""
    bp = Blueprint("gateway_htsget", __name__, url_prefix=BASE)

    def service_info(endpoint: str) -> Response:
        s = gateway.settings
        return _json(
            {
                "id": f"{s.drs_service_id}.htsget.{endpoint}",
                "name": f"ga4gh-broker htsget {endpoint}",
                "type": {"group": "org.ga4gh", "artifact": "htsget", "version": "1.3.0"},
                "description": "Regions of controlled-access BAM and VCF files, released on GA4GH passports.",
                "organization": {"name": s.drs_organization_name, "url": s.drs_organization_url},
                "version": __version__,
                "htsget": {
                    "datatype": endpoint,
                    "formats": ["BAM"] if endpoint == "reads" else ["VCF"],
                    "fieldsParametersEffective": False,
                    "tagsParametersEffective": False,
                },
            }
        )

    def ticket(endpoint: Literal["reads", "variants"]) -> Response:
        try:
            raw = raw_target(request.environ)
            # The parameters are read first (their errors say nothing about any object), so the
            # decision's audit record can carry the regions asked for.
            if request.method == "POST":
                query = post_query(endpoint, request.get_data(cache=False), request.is_json)
            else:
                query = get_query(endpoint, split_target(raw)[1])
            ref = _authorize(gateway, endpoint, raw, query.describe())
            base = (gateway.settings.public_base_url or request.host_url).rstrip("/")
            answer = service.ticket(endpoint, ref, query, request.headers, base)
        except BrokerError as error:
            return _error(error)
        return _json(answer)

    @bp.route("/reads/<path:_rest>", methods=["GET", "POST"], merge_slashes=False)
    def reads(_rest: str) -> Response:
        if _rest == "service-info":
            return service_info("reads")
        return ticket("reads")

    @bp.route("/variants/<path:_rest>", methods=["GET", "POST"], merge_slashes=False)
    def variants(_rest: str) -> Response:
        if _rest == "service-info":
            return service_info("variants")
        return ticket("variants")

    @bp.get("/service-info")
    def both() -> Response:
        return service_info("reads")

    @bp.after_request
    def count(response: Response) -> Response:
        endpoint = (request.endpoint or "").rpartition(".")[2]
        gateway.metrics.requests.inc(f"htsget_{endpoint}", request.method, str(response.status_code))
        return response

    return bp


def _authorize(gateway: Gateway, endpoint: str, raw: str, regions: tuple[str, ...]) -> ObjectRef:
    """The object, once the gateway allowed it (else a Refusal); the audit record names ``regions``."""
    prefix = f"{BASE}/{endpoint}/"
    path, query = split_target(raw)
    if {name for name, _ in parse_qsl(query, keep_blank_values=True)} & signed_urls.ALL_PARAMS:
        # A ticket passes the caller's bearer on to its data URLs; a signed URL has none to pass.
        raise Refusal(
            400, "invalid_request", "Signed URLs are for the data route; ask for tickets with a bearer token."
        )
    rest = path[len(prefix) :] if path.startswith(prefix) else ""
    if rest and "/" not in rest:
        # A DRS object id: decoded with the same path rules, then decided like the data route.
        ref = decode_object_id(rest)
        gateway.authorize_ref("GET", ref, query, request.headers, "htsget", regions=regions)
        return ref
    target, _ = gateway.decide("GET", raw, request.headers, prefix, "htsget", regions=regions)
    return target.ref
