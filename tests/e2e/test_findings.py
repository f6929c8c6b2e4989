"""End-to-end findings from running two brokers side by side: each once a product bug, now fixed.

- two brokers on one host must not share gunicorn's per-user control socket;
- gateway audit records name the reader as ``actor``, so the DAC dataset page says who read the data.
"""

from __future__ import annotations

import html
import re

import requests

from tests.e2e.deployment import Deployment, fetch
from tests.oidc.flow import login as form_login

CONTROL_SOCKET = re.compile(r"Control socket listening at (\S+)")


def test_two_brokers_on_one_host_neither_share_a_control_socket_nor_log_errors(deployment: Deployment) -> None:
    logs = {node.directory.name: node.log_text() for node in deployment.nodes}
    for name, text in logs.items():
        assert "[ERROR]" not in text and "Traceback" not in text, f"{name}:\n{text[-2000:]}"
    sockets = [path for text in logs.values() for path in CONTROL_SOCKET.findall(text)]
    assert len(sockets) == len(set(sockets)), f"brokers share a control socket: {sockets}"


def test_dac_dataset_page_names_who_read_the_data(deployment: Deployment, researcher_token: str) -> None:
    node1, node2 = deployment.nodes
    researcher = deployment.ids["researcher"]
    dataset = "E2E-NEVER"
    assert fetch(node2, dataset, researcher_token).status_code == 403  # a decision with a known subject

    browser = requests.Session()
    page = browser.get(node1.url(f"/login?next=/dac/datasets/{dataset}"), timeout=10)
    done = form_login(browser, node1, page, username="member")
    assert done.status_code == 303, done.text[:300]
    shown = browser.get(node1.url(f"/dac/datasets/{dataset}"), timeout=10)
    assert shown.status_code == 200, shown.text[:300]
    # The access history is a table: one row per record, the holder by name with the id on hover.
    rows = re.findall(r'<tr class="audit">(.*?)</tr>', shown.text, flags=re.S)
    accesses = [row for row in rows if "gateway.decision" in row]
    assert accesses, rows
    assert all(f'title="{html.escape(researcher)}"' in row for row in accesses), accesses
    assert not any("None" in html.unescape(re.sub(r"<[^>]+>", "", row)) for row in accesses), accesses
