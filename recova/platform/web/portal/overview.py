"""The portal's overview: the book at a glance."""

from __future__ import annotations

from flask import render_template

from recova.platform.web.pages import portal_page
from recova.platform.web.portal import blp


@blp.get("/")
@portal_page
def overview() -> str:
    """Open inventory, recoveries, promises and the three charts of the book."""
    return render_template("portal/overview.html")
