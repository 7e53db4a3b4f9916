"""Every section of the portal, imported so their routes are on the blueprint."""

from __future__ import annotations

from flask import Blueprint

from recova.platform.web.portal import (
    agencies,
    allocation,
    approvals,
    audit,
    billing,
    blp,
    cases,
    compliance,
    files,
    overview,
    settings,
    webhooks,
)

SECTIONS = (
    overview,
    cases,
    allocation,
    agencies,
    compliance,
    approvals,
    audit,
    files,
    billing,
    settings,
    webhooks,
)


def portal_blueprint() -> Blueprint:
    """The portal's blueprint with every section's routes on it."""
    return blp
