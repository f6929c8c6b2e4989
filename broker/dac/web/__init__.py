"""The DAC area's Flask adapters: the REST and permissions API, the OpenAPI document and the pages.

The composition root builds one :class:`DacWeb` and registers :func:`api_blueprint` and
:func:`pages_blueprint` with it; the views take everything from it.
"""

from __future__ import annotations

from broker.dac.web.api import api_blueprint
from broker.dac.web.context import Authenticate, DacWeb, PageSession, Principal
from broker.dac.web.pages import pages_blueprint

__all__ = ["Authenticate", "DacWeb", "PageSession", "Principal", "api_blueprint", "pages_blueprint"]
