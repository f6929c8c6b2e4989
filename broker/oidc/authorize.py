"""Old import path of :func:`broker.web.pages.redirect_303` (the DAC pages use it until they move)."""

from broker.web.pages import redirect_303

__all__ = ["redirect_303"]
