"""``ga4gh-broker download --region``: a region of a BAM or VCF through the broker's htsget 1.3 server.

The ticket is asked of ``<broker>/ga4gh/htsget/v1/reads|variants/<dataset>/<path>`` (``reads`` for
``.bam``, ``variants`` for ``.vcf.gz``) with the logged-in user's token; its pieces are then
fetched in order and written to ``<name>.<region>.<ext>``: ``data:`` URIs decoded, byte ranges
fetched with the headers the ticket gives. A ticket URL must lie on the broker's own origin (the
broker puts the user's bearer into the ticket's headers): any other is refused, so the token is
never sent elsewhere. A region is written as samtools does (1-based, inclusive): ``chr1``,
``chr1:1000-2000``, ``chr1:1000-``. There is no checksum of a region to compare with; the
file's own BGZF structure (and samtools) judges it.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from broker.client.drs import DrsClient, explain_refusal
from broker.client.http import EXIT_USAGE, Bearer, ClientError, printable, read_json

HTSGET_PATH = "/ga4gh/htsget/v1"
MAX_PIECES = 100_000
_REGION = re.compile(r"([^:\s]{1,255})(?::([0-9]{1,10})-([0-9]{0,10}))?")


@dataclass(frozen=True)
class Region:
    """An htsget region: 0-based ``start``, exclusive ``end`` (None: open)."""

    name: str
    start: int | None
    end: int | None

    @property
    def label(self) -> str:
        """For file names: ``chr1``, ``chr1_1000-2000``."""
        if self.start is None and self.end is None:
            return self.name
        return f"{self.name}_{(self.start or 0) + 1}-{'' if self.end is None else self.end}"


def parse_region(text: str) -> Region:
    """``chr1`` / ``chr1:1000-2000`` / ``chr1:1000-`` (1-based inclusive) to an htsget region."""
    found = _REGION.fullmatch(text)
    if found is None:
        raise ClientError("bad_region", f"{printable(text)} is not a region like chr1:1000-2000.", EXIT_USAGE)
    name, first, last = found.groups()
    if first is None:
        return Region(name, None, None)
    start = int(first)
    end = int(last) if last else None
    if start < 1 or (end is not None and end < start):
        raise ClientError("bad_region", f"{printable(text)}: positions are 1-based and start <= end.", EXIT_USAGE)
    return Region(name, start - 1, end)


def endpoint_for(path: str) -> tuple[str, str]:
    """(htsget endpoint, format) by the file's name."""
    if path.endswith(".bam"):
        return "reads", "BAM"
    if path.endswith(".vcf.gz"):
        return "variants", "VCF"
    raise ClientError("bad_region_file", f"{printable(path)}: --region reads .bam and .vcf.gz files.", EXIT_USAGE)


def output_name(path: str, region: Region) -> str:
    name = path.rsplit("/", 1)[-1]
    stem, ext = (name[: -len(".vcf.gz")], ".vcf.gz") if name.endswith(".vcf.gz") else (name[:-4], ".bam")
    return f"{stem}.{region.label}{ext}"


def download_region(drs: DrsClient, dataset: str, path: str, region: Region, out_dir: Path) -> str:
    """Fetch the region into ``out_dir``; returns a line for the person. Raises ClientError."""
    endpoint, fmt = endpoint_for(path)
    broker = drs.tokens.broker.rstrip("/")
    origin = urlsplit(broker)
    url = f"{broker}{HTSGET_PATH}/{endpoint}/{dataset}/{'/'.join(quote(s, safe='') for s in path.split('/'))}"
    params: dict[str, Any] = {"format": fmt, "referenceName": region.name}
    if region.start is not None:
        params["start"] = region.start
    if region.end is not None:
        params["end"] = region.end
    name = f"{dataset}/{path}"
    ticket = _ticket(drs, url, params, name)
    urls = ticket.get("htsget", {}).get("urls") if isinstance(ticket.get("htsget"), dict) else None
    if not isinstance(urls, list) or not urls or len(urls) > MAX_PIECES:
        raise ClientError("bad_ticket", f"{name}: the broker's htsget answer has no usable URLs.")
    dest = out_dir / output_name(path, region)
    out_dir.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    written = 0
    try:
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as out:
            for entry in urls:
                written += _piece(drs, entry, origin.scheme, origin.netloc, out, name)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, dest)
    return f"{name} {parse_label(region)}: {written} bytes in {len(urls)} pieces -> {dest}"


def parse_label(region: Region) -> str:
    if region.start is None and region.end is None:
        return region.name
    return f"{region.name}:{(region.start or 0) + 1}-{'' if region.end is None else region.end}"


def _ticket(drs: DrsClient, url: str, params: dict[str, Any], name: str) -> dict[str, Any]:
    for attempt in (1, 2):
        token = drs.tokens.access_token()
        status, body, _ = drs.http.json("GET", url, auth=Bearer(token), headers=drs.headers(), params=params)
        if status == 200:
            return body
        if status == 401 and attempt == 1 and drs.tokens.refresh_after_401(token):
            continue
        found = body.get("htsget")
        error: dict[str, Any] = found if isinstance(found, dict) else {}
        shaped = {"error": error.get("error", ""), "message": error.get("message", "")}
        raise explain_refusal(status, shaped, name, drs.tokens.broker)
    raise AssertionError("unreachable")


def _piece(drs: DrsClient, entry: object, scheme: str, netloc: str, out: Any, name: str) -> int:
    if not isinstance(entry, dict) or not isinstance(entry.get("url"), str):
        raise ClientError("bad_ticket", f"{name}: a ticket URL is malformed.")
    url = entry["url"]
    if url.startswith("data:"):
        try:
            data = base64.b64decode(url.partition(",")[2], validate=True)
        except (binascii.Error, ValueError):
            raise ClientError("bad_ticket", f"{name}: a data: URI of the ticket is not base64.") from None
        out.write(data)
        return len(data)
    where = urlsplit(url)
    if (where.scheme, where.netloc) != (scheme, netloc):
        raise ClientError("bad_ticket", f"{name}: the ticket points outside the broker ({printable(where.netloc)}).")
    headers = entry.get("headers") or {}
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        raise ClientError("bad_ticket", f"{name}: the headers of a ticket URL are malformed.")
    response = drs.http.request("GET", url, headers=headers, stream=True)
    try:
        if response.status_code not in (200, 206):
            raise explain_refusal(response.status_code, read_json(response, 1024 * 1024), name, drs.tokens.broker)
        total = 0
        for chunk in response.iter_content(1024 * 1024):
            out.write(chunk)
            total += len(chunk)
        expected = response.headers.get("Content-Length")
        if expected is not None and expected.isdigit() and int(expected) != total:
            raise ClientError("incomplete", f"{name}: a piece of the region stopped short; run again.")
        return total
    finally:
        response.close()
