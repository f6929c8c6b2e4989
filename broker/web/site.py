"""The ``site:`` settings: what every page's header and footer say about this node.

Pages show the product and the node's name in the header, and link the node's privacy notice
and terms of use in the footer (absent links are left out, never invented).
"""

from __future__ import annotations

from pydantic import Field

from broker.settings_model import SettingsModel


class SiteSettings(SettingsModel):
    """The node's name and the links every page's footer carries."""

    product: str = Field("GA4GH broker", description="The product name in every page's header.")
    node_name: str = Field("", description="This node's name (e.g. the institute), shown next to the product.")
    privacy_url: str | None = Field(None, description="The node's privacy notice, linked from every page.")
    terms_url: str | None = Field(None, description="The node's terms of use, linked from every page.")
