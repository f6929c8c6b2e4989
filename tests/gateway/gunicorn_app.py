"""The WSGI app gunicorn runs in the gateway's process tests (``create()`` factory).

Settings come from the JSON file named by ``GATEWAY_TEST_CONFIG``: the store root, the data
dir, and a canary file that ``/admin/canary`` appends to (request smuggling tests count it).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from flask import Flask

from broker.gateway.settings import DatasetSettings, DataStoreSettings, GatewaySettings
from broker.gateway.wiring import init_app
from tests.gateway.support import Grant, TableAuthorizer


def create() -> Flask:
    config = json.loads(Path(os.environ["GATEWAY_TEST_CONFIG"]).read_text())
    settings = GatewaySettings(
        stores={"local": DataStoreSettings(kind="directory", path=config["root"], offload_location="/_gateway/local/")},
        datasets={
            "ds1": DatasetSettings(store="local", prefix="ds1"),
            "off1": DatasetSettings(store="local", prefix="ds1", mode="offload"),
        },
    )
    authorizer = TableAuthorizer({"tok-ds1": Grant("alice@example.org", frozenset({"ds1", "off1"}))})
    app = Flask("gateway-gunicorn-test")
    init_app(app, authorizer, settings, data_dir=config["data_dir"])
    canary = Path(config["canary"])

    @app.route("/admin/canary", methods=["GET", "POST"])
    def admin_canary() -> str:
        with canary.open("a") as f:
            f.write("hit\n")
        return "canary"

    @app.get("/trivial")
    def trivial() -> str:
        return "ok"

    return app
