"""The DRS request of the GA4GH FAQ (vector ``drs-request-with-passport``), sent to the gateway as
written: ``POST .../objects/<id>/access/<access_id>`` with ``Content-Type: application/json`` and
``{"passports": [<Passport>]}``, the placeholder replaced by a real passport that the GA4GH engine
verifies and the policy allows. The spec's placeholder itself is refused (401), and the spec's
``s3`` access id, which this gateway does not offer, is a 404 only once access is granted."""

from __future__ import annotations

import copy

import pytest
import requests

from broker.gateway.drs import encode_object_id
from broker.gateway.paths import ObjectRef
from tests.core.vectors import data
from tests.gateway.conftest import Stack
from tests.gateway.test_passport_authorizer import Parts, parts  # noqa: F401 - the fixture is used by name

DRS_PATH = "/ga4gh/drs/v1/objects/"


def request_line(vector: dict, object_id: str, access_id: str) -> tuple[str, str, dict[str, str]]:
    """Method, path and headers of the vector's request, for our object and access id."""
    first, *header_lines = vector["http"].split("\n")
    method, target, _ = first.split(" ")
    assert target == DRS_PATH + "dataset1/access/s3"
    headers = dict(line.split(": ", 1) for line in header_lines if not line.startswith("Host:"))
    return method, f"{DRS_PATH}{object_id}/access/{access_id}", headers


@pytest.mark.parametrize("vector_id", ["drs-request-with-passport"])
def test_drs_access_request_with_passports_in_the_body(vector_id: str, parts: Parts, stack: Stack) -> None:  # noqa: F811
    vector = data(vector_id)
    assert vector["body"]["passports"] == ["<Passport>"]
    object_id = encode_object_id(ObjectRef("ds1", "small.bin"))
    method, path, headers = request_line(vector, object_id, "https")
    assert method == "POST" and headers == {"Content-Type": "application/json"}
    body = copy.deepcopy(vector["body"])
    body["passports"] = [parts.passport("ds1")]
    r = requests.post(parts.server.url + path, json=body, headers=headers, timeout=10)
    assert r.status_code == 200, r.text
    url = r.json()["url"]
    assert "/data/ds1/small.bin?expires=" in url
    assert requests.get(url, timeout=10).content == stack.files.small  # the signed URL serves the object
    # The spec's access id (s3) is not offered here: 404, and only after the passport was accepted.
    _, s3_path, _ = request_line(vector, object_id, "s3")
    assert requests.post(parts.server.url + s3_path, json=body, headers=headers, timeout=10).status_code == 404
    placeholder = requests.post(parts.server.url + path, json=vector["body"], headers=headers, timeout=10)
    assert placeholder.status_code == 401
