"""DRS 1.2 as the client uses it: object ids, DrsObjects, dataset bundles, access URLs.

Ids follow the broker's documented form (``broker/gateway/drs.py``): the unpadded base64url
of ``<dataset>/<object path>`` for an object, of ``<dataset>/`` for a dataset's bundle. Every
request carries the bearer token and, when the user declared one, ``GA4GH-Purpose``. A
refusal becomes a :class:`~broker.client.http.ClientError` whose message says what to do:
401 log in again, 403 what to apply for (from the answer's ``required`` document), 404 not
found.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from broker.client.http import EXIT_USAGE, Bearer, ClientError, Http, check_url, printable
from broker.client.oauth import TokenSource
from broker.gateway.paths import PathError, validate_object_path

CRYPT4GH_KEY_HEADER = "Crypt4GH-Public-Key"
DRS_PATH = "/ga4gh/drs/v1"
PURPOSE_HEADER = "GA4GH-Purpose"
# The broker's grammar for a declared purpose (broker.gateway.service.parse_purpose).
_PURPOSE = re.compile(r"(?:DUO|MONDO):[0-9]{7}")
_DATASET = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~-]{0,127}")
MAX_LISTED = 100_000
MAX_DEPTH = 64


def check_purpose(purpose: str | None) -> str | None:
    if purpose is not None and (len(purpose) > 16 or not _PURPOSE.fullmatch(purpose)):
        raise ClientError("bad_purpose", "--purpose must be a data use term such as DUO:0000006.", EXIT_USAGE)
    return purpose


def split_target(target: str) -> tuple[str, str]:
    """``DATASET/PATH`` into its parts, with the same segment rules as the broker's paths."""
    dataset, _, path = target.partition("/")
    if not _DATASET.fullmatch(dataset) or not path:
        raise ClientError("bad_target", f"{printable(target)} is not DATASET/PATH.", EXIT_USAGE)
    try:
        validate_object_path(path)
    except PathError as exc:
        raise ClientError("bad_target", f"{printable(target)}: {exc.message}", EXIT_USAGE) from None
    return dataset, path


def check_dataset(dataset: str) -> str:
    if not _DATASET.fullmatch(dataset):
        raise ClientError("bad_dataset", f"{printable(dataset)} is not a dataset id.", EXIT_USAGE)
    return dataset


def object_id(dataset: str, path: str) -> str:
    return base64.urlsafe_b64encode(f"{dataset}/{path}".encode()).rstrip(b"=").decode("ascii")


def bundle_id(dataset: str) -> str:
    return base64.urlsafe_b64encode(f"{dataset}/".encode()).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class DrsFile:
    """What a download needs to know about an object."""

    name: str  # DATASET/PATH as the user wrote it
    size: int
    sha256: str
    url: str
    signed: bool  # a signed URL (no Authorization header) rather than the data route


class Refused(ClientError):
    """A 401/403/404 from the broker, with the message a person needs."""


def explain_refusal(status: int, body: dict[str, Any], what: str, broker: str) -> Refused:
    """The message for a refused request (bounded; server text is sanitised)."""
    code = printable(body.get("error", ""), 60)
    text = printable(body.get("msg") or body.get("message") or "", 300)
    if status == 401:
        return Refused(
            "unauthorized", f"{what}: your login is not accepted (401); run: ga4gh-broker login --broker {broker}"
        )
    if status == 404:
        return Refused("not_found", f"{what}: not found (404).")
    if status == 403:
        lines = [f"{what}: access denied (403 {code}). {text}".rstrip()]
        required = body.get("required")
        if isinstance(required, dict):
            lines += describe_required(required)
        return Refused("forbidden", "\n".join(lines))
    return Refused(f"http_{status}", f"{what}: the broker answered {status} {code}. {text}".rstrip())


def describe_required(doc: dict[str, Any]) -> list[str]:
    """The required-visas document as lines a person reads: what to apply for, and the purpose rule."""
    lines = [f"To read {printable(doc.get('dataset', 'this dataset'), 130)} you need:"]
    requires = doc.get("requires")
    if isinstance(requires, dict):
        lines += _describe_node(requires, 1, [0])
    data_use = doc.get("data_use")
    if isinstance(data_use, dict) and data_use.get("term"):
        label = f" ({printable(data_use['label'], 100)})" if data_use.get("label") else ""
        purposes = data_use.get("compatible_purposes")
        choice = ""
        if isinstance(purposes, list) and purposes:
            choice = ": one of " + ", ".join(printable(p, 20) for p in purposes[:20])
        lines.append(
            f"  and a declared purpose within {printable(data_use['term'], 20)}{label}, given with --purpose{choice}"
        )
    return lines


def _describe_node(node: dict[str, Any], depth: int, count: list[int]) -> list[str]:
    count[0] += 1
    pad = "  " * depth
    if depth > 8 or count[0] > 50:
        return [pad + "..."]
    visa = node.get("visa")
    if isinstance(visa, dict):
        parts = [f"a {printable(visa.get('type', 'visa'), 60)} visa"]
        for name in ("value", "source", "by"):
            matcher = visa.get(name)
            if isinstance(matcher, dict):
                values = matcher.get("one_of") or matcher.get("patterns") or matcher.get("split_patterns") or []
                if isinstance(values, list) and values:
                    shown = " or ".join(printable(v, 200) for v in values[:5])
                    parts.append(f"{name} {shown}")
        line = pad + ", ".join(parts)
        if isinstance(visa.get("description"), str):
            line += f" ({printable(visa['description'], 200)})"
        return [line]
    for key, title in (("all_of", "all of:"), ("any_of", "any of:")):
        children = node.get(key)
        if isinstance(children, list):
            out = [pad + title]
            for child in children[:20]:
                if isinstance(child, dict):
                    out += _describe_node(child, depth + 1, count)
            return out
    return [pad + "(a requirement this client cannot show)"]


class DrsClient:
    """DRS of one broker, as the logged-in user, for one declared purpose (or none)."""

    def __init__(
        self,
        http: Http,
        tokens: TokenSource,
        base: str | None = None,
        purpose: str | None = None,
        crypt4gh_key: str | None = None,
    ):
        self.http = http
        self.tokens = tokens
        self.base = check_url((base or tokens.broker).rstrip("/") + DRS_PATH, "DRS URL")
        self.purpose = check_purpose(purpose)
        self.crypt4gh_key = crypt4gh_key  # the Crypt4GH-Public-Key value (base64 of the .pub file), if any

    def headers(self) -> dict[str, str]:
        """Headers of every DRS and data request: the declared purpose and the Crypt4GH public key."""
        headers = {PURPOSE_HEADER: self.purpose} if self.purpose else {}
        if self.crypt4gh_key:
            headers[CRYPT4GH_KEY_HEADER] = self.crypt4gh_key
        return headers

    def _get(self, drs_id: str, what: str, **params: str) -> dict[str, Any]:
        url = f"{self.base}/objects/{quote(drs_id, safe='')}"
        for attempt in (1, 2):
            token = self.tokens.access_token()
            status, body, _ = self.http.json("GET", url, auth=Bearer(token), headers=self.headers(), params=params)
            if status == 200:
                return body
            if status == 401 and attempt == 1 and self.tokens.refresh_after_401(token):
                continue
            raise explain_refusal(status, body, what, self.tokens.broker)
        raise AssertionError("unreachable")

    def describe(self, dataset: str, path: str) -> DrsFile:
        """Size, sha-256 and where to read an object (its ``access_url``, else a signed URL)."""
        name = f"{dataset}/{path}"
        drs_id = object_id(dataset, path)
        body = self._get(drs_id, name)
        size = body.get("size")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ClientError("bad_drs_object", f"{name}: the DRS object has no valid size.")
        sha = next(
            (
                c.get("checksum")
                for c in body.get("checksums", [])
                if isinstance(c, dict) and str(c.get("type", "")).lower().replace("_", "-") == "sha-256"
            ),
            None,
        )
        if not isinstance(sha, str) or not re.fullmatch(r"[0-9a-fA-F]{64}", sha):
            raise ClientError("no_checksum", f"{name}: the DRS object has no sha-256 checksum to verify against.")
        methods = [m for m in body.get("access_methods", []) if isinstance(m, dict) and m.get("type") == "https"]
        for method in methods:
            access_url = method.get("access_url")
            if isinstance(access_url, dict) and isinstance(access_url.get("url"), str):
                return DrsFile(name, size, sha.lower(), check_url(access_url["url"], "access URL"), signed=False)
        for method in methods:
            if isinstance(method.get("access_id"), str):
                return DrsFile(name, size, sha.lower(), self.signed_url(drs_id, method["access_id"], name), signed=True)
        raise ClientError("no_access_method", f"{name}: the DRS object offers no https access.")

    def signed_url(self, drs_id: str, access_id: str, what: str) -> str:
        url = f"{self.base}/objects/{quote(drs_id, safe='')}/access/{quote(access_id, safe='')}"
        body = self._get_url(url, what)
        signed = body.get("url")
        if not isinstance(signed, str):
            raise ClientError("bad_access_url", f"{what}: the DRS access answer has no URL.")
        return check_url(signed, "access URL")

    def _get_url(self, url: str, what: str) -> dict[str, Any]:
        token = self.tokens.access_token()
        status, body, _ = self.http.json("GET", url, auth=Bearer(token), headers=self.headers())
        if status != 200:
            raise explain_refusal(status, body, what, self.tokens.broker)
        return body

    def list_dataset(self, dataset: str) -> tuple[list[str], bool]:
        """Every object path of a dataset (from its expanded bundle) and whether the listing was cut."""
        body = self._get(bundle_id(check_dataset(dataset)), dataset, expand="true")
        contents = body.get("contents")
        if not isinstance(contents, list):
            raise ClientError("not_a_bundle", f"{dataset}: the broker's answer lists no contents.")
        paths = sorted(_flatten(contents, "", 0))
        return paths[:MAX_LISTED], bool(body.get("contents_truncated")) or len(paths) > MAX_LISTED


def _flatten(contents: list[Any], prefix: str, depth: int) -> Iterator[str]:
    if depth > MAX_DEPTH:
        return
    for item in contents:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            continue
        name = item["name"]
        if "/" in name or name in (".", "..") or not name:
            continue  # a name that would climb out of the dataset is not shown
        if isinstance(item.get("contents"), list):
            yield from _flatten(item["contents"], f"{prefix}{name}/", depth + 1)
        else:
            yield prefix + name
